#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "intcore/philox.h"

namespace intcore {
namespace {

TEST(Philox, KnownAnswersFromTheRandom123Paper) {
  std::ifstream file(std::string(INTCORE_TEST_DATA) + "/philox4x32_10_kat.txt");
  ASSERT_TRUE(file.good());
  std::string line;
  int checked = 0;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    uint32_t v[10];
    for (uint32_t& x : v) fields >> std::hex >> x;
    const Philox4x32 out = philox4x32_10({{v[0], v[1], v[2], v[3]}}, v[4], v[5]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out.v[i], v[6 + i]) << line;
    ++checked;
  }
  EXPECT_EQ(checked, 3);
}

TEST(Philox, StreamWordsAreTheBlockWordsInOrder) {
  const RandomStream s{0x0123456789abcdefull, 7};
  const Philox4x32 b0 = s.block(0), b1 = s.block(1);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(s.word(i), b0.v[i]);
    EXPECT_EQ(s.word(4 + i), b1.v[i]);
  }
  // Different offsets and seeds give different streams.
  EXPECT_NE(s.word(0), (RandomStream{s.seed, 8}.word(0)));
  EXPECT_NE(s.word(0), (RandomStream{s.seed + 1, 7}.word(0)));
}

TEST(Philox, StochasticDecisionHasTheRightProbability) {
  // frac = 0.25: exactly a quarter of the 24-bit grid lies below it.
  EXPECT_TRUE(round_up_stochastic(0.25, (0x3FFFFFu) << 8));
  EXPECT_FALSE(round_up_stochastic(0.25, (0x400000u) << 8));
  EXPECT_FALSE(round_up_stochastic(0.0, 0));
  EXPECT_TRUE(round_up_stochastic(1e-9, 0));
}

}  // namespace
}  // namespace intcore

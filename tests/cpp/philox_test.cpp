#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "intcore/cpu_kernel.h"
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

TEST(Philox, BulkWordsEqualTheBlockWordsOnEveryCpuKernel) {
  // stream_words computes sixteen blocks at a time (with AVX-512 under the avx512_vnni kernel):
  // every start and length, across block and sixteen-block boundaries and a 2^32 block carry.
  const CpuKernel saved = active_cpu_kernel();
  for (CpuKernel kernel : supported_cpu_kernels()) {
    set_cpu_kernel(kernel);
    for (uint64_t base : {uint64_t{0}, (uint64_t{1} << 34) - 130}) {
      const RandomStream s{0xfedcba9876543210ull, 0x1234567890ull};
      for (uint64_t first = base; first < base + 9; ++first) {
        for (int64_t count : {1, 3, 4, 63, 64, 65, 200}) {
          std::vector<uint32_t> words(static_cast<size_t>(count));
          stream_words(s, first, count, words.data());
          for (int64_t i = 0; i < count; ++i)
            ASSERT_EQ(words[static_cast<size_t>(i)], s.word(first + static_cast<uint64_t>(i)))
                << cpu_kernel_name(kernel) << " first " << first << " count " << count << " i " << i;
        }
      }
    }
  }
  set_cpu_kernel(saved);
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

#include <cmath>
#include <numeric>

#include "test_util.h"

namespace intcore {
namespace {

using test::Array;
using test::random_floats;

TEST(SplitGradient, ReconstructsWithinOneLowDigitStepWithoutClipping) {
  auto g = random_floats(64, 48, 1);
  for (int i = 0; i < 64; ++i) g(i, 0) *= 50.0f;  // a few large rows: the structure that needs the split
  Array<int8_t> h(64, 48), l(64, 48);
  float s = 0;
  split_gradient(g.view("grad"), {3, 0}, h.view("h"), l.view("l"), TensorView(&s, DType::kFloat32, {1}));
  float absmax = 0;
  for (float v : g.data) absmax = std::max(absmax, std::fabs(v));
  EXPECT_FLOAT_EQ(s, 98.0f / absmax);
  bool extreme = false;
  for (int64_t i = 0; i < 64 * 48; ++i) {
    ASSERT_GE(h.data[i], -7);
    ASSERT_LE(h.data[i], 7);
    ASSERT_GE(l.data[i], -7);
    ASSERT_LE(l.data[i], 7);
    extreme |= std::abs(h.data[i]) == 7;
    const double back = (14.0 * h.data[i] + l.data[i]) / s;
    ASSERT_LT(std::fabs(back - g.data[i]), 1.0 / s);
  }
  EXPECT_TRUE(extreme);  // the largest value uses the full high digit: nothing was clipped away
}

TEST(SplitGradient, PerRowGivesEachRowItsOwnScale) {
  auto g = random_floats(16, 24, 2);
  for (int j = 0; j < 24; ++j) g(3, j) *= 1000.0f;  // one huge row must not coarsen the others
  Array<int8_t> h(16, 24), l(16, 24);
  std::vector<float> s(16);
  split_gradient(g.view("grad"), {3, 0}, h.view("h"), l.view("l"), TensorView(s.data(), DType::kFloat32, {16}));
  for (int64_t r = 0; r < 16; ++r) {
    float absmax = 0;
    for (int64_t j = 0; j < 24; ++j) absmax = std::max(absmax, std::fabs(g(r, j)));
    EXPECT_FLOAT_EQ(s[r], 98.0f / absmax);
    for (int64_t j = 0; j < 24; ++j) {
      const double back = (14.0 * h(r, j) + l(r, j)) / s[r];
      ASSERT_LT(std::fabs(back - g(r, j)), 1.0 / s[r]);
    }
  }
}

TEST(SamplingProbabilities, SumToTheBudgetCappedAtOne) {
  std::vector<double> w = {100, 1, 1, 1, 1, 0, 2, 2};
  std::vector<double> p(w.size());
  sampling_probabilities(w.data(), 8, 3.0, p.data());
  EXPECT_DOUBLE_EQ(p[0], 1.0);  // capped; its excess is spread over the rest
  EXPECT_DOUBLE_EQ(p[5], 0.0);
  EXPECT_NEAR(std::accumulate(p.begin(), p.end(), 0.0), 3.0, 1e-12);
  EXPECT_NEAR(p[6] / p[1], 2.0, 1e-12);
  for (double v : p) EXPECT_LE(v, 1.0);
  sampling_probabilities(w.data(), 8, 10.0, p.data());  // budget above the positive rows: keep them all
  EXPECT_EQ(std::accumulate(p.begin(), p.end(), 0.0), 7.0);
}

TEST(SamplingProbabilities, DrawsKeepTheBudgetOnAverageAndEachRowAtItsRate) {
  std::vector<double> w(40);
  for (int i = 0; i < 40; ++i) w[i] = (i % 7) * (i % 3 + 1) * 0.5;
  std::vector<double> p(40);
  sampling_probabilities(w.data(), 40, 12.0, p.data());
  const int trials = 4000;
  std::vector<int> hits(40, 0);
  double kept = 0;
  for (int t = 0; t < trials; ++t) {
    const std::vector<int64_t> rows = draw_rows(p, {static_cast<uint64_t>(t), 5});
    kept += static_cast<double>(rows.size());
    for (int64_t r : rows) ++hits[r];
  }
  double variance = 0;
  for (double q : p) variance += q * (1 - q);
  EXPECT_NEAR(kept / trials, 12.0, 5 * std::sqrt(variance / trials));
  for (int i = 0; i < 40; ++i) {
    EXPECT_NEAR(hits[i] / static_cast<double>(trials), p[i], 5 * std::sqrt(p[i] * (1 - p[i]) / trials) + 1e-12);
  }
}

TEST(HqLinear, ForwardTracksTheFloatProduct) {
  const int64_t m = 64, k = 128, c = 32;
  auto x = random_floats(m, k, 2), w = random_floats(c, k, 3, 0.1f);
  for (int64_t i = 0; i < m; ++i) x(i, 5) = 40.0f;  // an outlier feature: what the Hadamard spreads out
  Array<float> y(m, c);
  Array<uint8_t> xc(m, k / 2), wc(c, k / 2);
  float sx = 0, sw = 0;
  const HqCodes xq{xc.view("xc"), TensorView(&sx, DType::kFloat32, {1})};
  const HqCodes wq{wc.view("wc"), TensorView(&sw, DType::kFloat32, {1})};
  hq_linear_forward(x.view("x"), w.view("w"), nullptr, 32, false, y.view("y"), xq, wq);
  double signal = 0, noise = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < c; ++j) {
      double ref = 0;
      for (int64_t t = 0; t < k; ++t) ref += static_cast<double>(x(i, t)) * w(j, t);
      signal += ref * ref;
      noise += (y(i, j) - ref) * (y(i, j) - ref);
    }
  EXPECT_GT(10 * std::log10(signal / noise), 10.0);
}

}  // namespace
}  // namespace intcore

#include <cmath>

#include "test_util.h"

namespace intcore {
namespace {

using test::Array;
using test::random_floats;

double snr_db(const Array<float>& approx, const std::vector<double>& exact) {
  double signal = 0, noise = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    signal += exact[i] * exact[i];
    noise += (approx.data[i] - exact[i]) * (approx.data[i] - exact[i]);
  }
  return 10 * std::log10(signal / noise);
}

TEST(AbsmaxLinear, ForwardAndBackwardTrackTheFloatProduct) {
  const int64_t m = 64, k = 96, n = 48;
  auto x = random_floats(m, k, 1), w = random_floats(n, k, 2, 0.1f), g = random_floats(m, n, 3);
  std::vector<double> y_ref(m * n, 0), dx_ref(m * k, 0), dw_ref(n * k, 0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t t = 0; t < k; ++t) {
        y_ref[i * n + j] += static_cast<double>(x(i, t)) * w(j, t);
        dx_ref[i * k + t] += static_cast<double>(g(i, j)) * w(j, t);
        dw_ref[j * k + t] += static_cast<double>(g(i, j)) * x(i, t);
      }
  for (int bits : {8, 4}) {
    Array<float> y(m, n), dx(m, k), dw(n, k);
    absmax_linear_forward(x.view("x"), w.view("w"), nullptr, bits, y.view("out"));
    absmax_linear_grad_input(g.view("grad"), w.view("w"), bits, 42, dx.view("dx"));
    absmax_linear_grad_weight(g.view("grad"), x.view("x"), bits, 42, dw.view("dw"));
    const double floor_db = bits == 8 ? 30 : 8;  // per-row int8 ~ 38 dB; int4 ~ 14 dB on Gaussians
    EXPECT_GT(snr_db(y, y_ref), floor_db) << bits;
    EXPECT_GT(snr_db(dx, dx_ref), floor_db - 3) << bits;
    EXPECT_GT(snr_db(dw, dw_ref), floor_db - 3) << bits;
  }
}

TEST(AbsmaxLinear, MismatchedFeaturesNameBothArguments) {
  Array<float> x(2, 3), w(4, 5), out(2, 4);
  try {
    absmax_linear_forward(x.view("x"), w.view("w"), nullptr, 8, out.view("out"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x has 3 features but w expects 5"), std::string::npos);
  }
}

}  // namespace
}  // namespace intcore

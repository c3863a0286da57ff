#include <cmath>

#include "test_util.h"

namespace intcore {
namespace {

using test::Array;
using test::random_floats;

TEST(RsqrtFixed, IntegerNewtonMatchesTheTrueValue) {
  for (RsqrtMode mode : {RsqrtMode::kInteger, RsqrtMode::kFloat}) {
    for (double d : {1.0, 2.0, 3.0, 4.0, 5.0, 1023.0, 1e6, 123456789.0, 3.9e18, 1e30}) {
      int64_t m;
      int32_t e;
      rsqrt_fixed(static_cast<unsigned __int128>(d), mode, &m, &e);
      const double expected = 1.0 / std::sqrt(static_cast<double>(static_cast<unsigned __int128>(d)));
      EXPECT_NEAR(std::ldexp(static_cast<double>(m), e) / expected, 1.0, 4e-9) << d;
      EXPECT_GT(m, int64_t{1} << 29);
      EXPECT_LE(m, int64_t{1} << 30);
    }
  }
}

struct LayerNormRun {
  Array<float> y, dx, dgamma, dbeta;
  Array<int16_t> xhat;
  std::vector<int32_t> e_xhat{0}, e_x{0}, e_gamma{0}, rstd_e;
  std::vector<int64_t> rstd_m;
  std::vector<int16_t> gamma_q;
  LayerNormRun(int64_t r, int64_t n)
      : y(r, n), dx(r, n), dgamma(n, 1), dbeta(n, 1), xhat(r, n), rstd_e(r), rstd_m(r), gamma_q(n) {}
  LayerNormSaved saved() {
    const int64_t r = xhat.rows, n = xhat.cols;
    return {xhat.view("xhat"),
            TensorView(e_xhat.data(), DType::kInt32, {1}),
            TensorView(e_x.data(), DType::kInt32, {1}),
            TensorView(rstd_m.data(), DType::kInt64, {r}),
            TensorView(rstd_e.data(), DType::kInt32, {r}),
            TensorView(gamma_q.data(), DType::kInt16, {n}),
            TensorView(e_gamma.data(), DType::kInt32, {1})};
  }
};

// fp64 layer norm forward and backward.
void reference(const Array<float>& x, const Array<float>& gamma, const Array<float>& beta, const Array<float>& dy,
               double eps, std::vector<double>& y, std::vector<double>& dx, std::vector<double>& dg,
               std::vector<double>& db) {
  const int64_t rows = x.rows, n = x.cols;
  y.assign(rows * n, 0);
  dx.assign(rows * n, 0);
  dg.assign(n, 0);
  db.assign(n, 0);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mean += x(r, i);
    mean /= n;
    for (int64_t i = 0; i < n; ++i) var += (x(r, i) - mean) * (x(r, i) - mean);
    var /= n;
    const double rstd = 1 / std::sqrt(var + eps);
    double mg = 0, mgx = 0;
    std::vector<double> xh(n), gh(n);
    for (int64_t i = 0; i < n; ++i) {
      xh[i] = (x(r, i) - mean) * rstd;
      y[r * n + i] = gamma(i, 0) * xh[i] + beta(i, 0);
      gh[i] = dy(r, i) * gamma(i, 0);
      mg += gh[i] / n;
      mgx += gh[i] * xh[i] / n;
      dg[i] += dy(r, i) * xh[i];
      db[i] += dy(r, i);
    }
    for (int64_t i = 0; i < n; ++i) dx[r * n + i] = rstd * (gh[i] - mg - xh[i] * mgx);
  }
}

double max_rel_error(const float* got, const std::vector<double>& want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  return err / scale;
}

TEST(FixedPointLayerNorm, ForwardAndBackwardErrorShrinksWithBits) {
  const int64_t rows = 24, n = 96;
  auto x = random_floats(rows, n, 1, 2.0f), dy = random_floats(rows, n, 2);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) x(r, i) += 0.5f * static_cast<float>(r);  // rows with different means
  auto gamma = random_floats(n, 1, 3, 0.2f), beta = random_floats(n, 1, 4, 0.1f);
  for (auto& g : gamma.data) g += 1.0f;
  std::vector<double> y_ref, dx_ref, dg_ref, db_ref;
  reference(x, gamma, beta, dy, 1e-5, y_ref, dx_ref, dg_ref, db_ref);
  double previous[4] = {1, 1, 1, 1};
  for (int bits : {8, 10, 12, 16}) {
    for (RsqrtMode mode : {RsqrtMode::kInteger, RsqrtMode::kFloat}) {
      LayerNormRun run(rows, n);
      const TensorView g = TensorView(gamma.data.data(), DType::kFloat32, {n}, "gamma");
      const TensorView b = TensorView(beta.data.data(), DType::kFloat32, {n}, "beta");
      LayerNormOptions options;
      options.bits = bits;
      options.rsqrt = mode;
      fixed_point_layer_norm_forward(x.view("x"), &g, &b, options, {7, 0}, run.y.view("y"), run.saved());
      const TensorView dgv(run.dgamma.data.data(), DType::kFloat32, {n}), dbv(run.dbeta.data.data(), DType::kFloat32, {n});
      fixed_point_layer_norm_backward(dy.view("dy"), run.saved(), true, true, bits, Rounding::kStochastic, {8, 0},
                                      run.dx.view("dx"), &dgv, &dbv);
      const double errors[4] = {max_rel_error(run.y.data.data(), y_ref), max_rel_error(run.dx.data.data(), dx_ref),
                                max_rel_error(run.dgamma.data.data(), dg_ref),
                                max_rel_error(run.dbeta.data.data(), db_ref)};
      // A few units of the last place of `bits`-bit mantissas, relative to the largest value.
      const double bound = 16 * std::ldexp(1.0, -(bits - 1));
      for (int j = 0; j < 4; ++j) {
        EXPECT_LT(errors[j], bound) << "bits " << bits << " output " << j;
        if (mode == RsqrtMode::kInteger) {
          EXPECT_LT(errors[j], previous[j]) << "bits " << bits << " output " << j;
          previous[j] = errors[j];
        }
      }
    }
  }
}

// fp64 RMSNorm forward and backward: y = gamma x / rms, dx = (G - xhat mean(G xhat)) / rms.
void rms_reference(const Array<float>& x, const Array<float>& gamma, const Array<float>& dy, double eps,
                   std::vector<double>& y, std::vector<double>& dx, std::vector<double>& dg) {
  const int64_t rows = x.rows, n = x.cols;
  y.assign(rows * n, 0);
  dx.assign(rows * n, 0);
  dg.assign(n, 0);
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t i = 0; i < n; ++i) ms += static_cast<double>(x(r, i)) * x(r, i) / n;
    const double rstd = 1 / std::sqrt(ms + eps);
    double mgx = 0;
    for (int64_t i = 0; i < n; ++i) mgx += dy(r, i) * gamma(i, 0) * x(r, i) * rstd / n;
    for (int64_t i = 0; i < n; ++i) {
      const double xh = x(r, i) * rstd;
      y[r * n + i] = gamma(i, 0) * xh;
      dx[r * n + i] = rstd * (dy(r, i) * gamma(i, 0) - xh * mgx);
      dg[i] += dy(r, i) * xh;
    }
  }
}

TEST(FixedPointRmsNorm, ForwardAndBackwardErrorShrinksWithBits) {
  const int64_t rows = 24, n = 96;
  auto x = random_floats(rows, n, 11, 2.0f), dy = random_floats(rows, n, 12);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) x(r, i) += 0.5f * static_cast<float>(r);  // a mean an RMSNorm keeps
  auto gamma = random_floats(n, 1, 13, 0.2f);
  for (auto& g : gamma.data) g += 1.0f;
  std::vector<double> y_ref, dx_ref, dg_ref;
  rms_reference(x, gamma, dy, 1e-6, y_ref, dx_ref, dg_ref);
  double previous[3] = {1, 1, 1};
  for (int bits : {8, 10, 12, 16}) {
    LayerNormRun run(rows, n);
    const TensorView g = TensorView(gamma.data.data(), DType::kFloat32, {n}, "gamma");
    LayerNormOptions options;
    options.bits = bits;
    options.eps = 1e-6;
    options.centered = false;
    fixed_point_layer_norm_forward(x.view("x"), &g, nullptr, options, {7, 0}, run.y.view("y"), run.saved());
    const TensorView dgv(run.dgamma.data.data(), DType::kFloat32, {n});
    fixed_point_layer_norm_backward(dy.view("dy"), run.saved(), true, false, bits, Rounding::kStochastic, {8, 0},
                                    run.dx.view("dx"), &dgv, nullptr);
    const double errors[3] = {max_rel_error(run.y.data.data(), y_ref), max_rel_error(run.dx.data.data(), dx_ref),
                              max_rel_error(run.dgamma.data.data(), dg_ref)};
    const double bound = 16 * std::ldexp(1.0, -(bits - 1));
    for (int j = 0; j < 3; ++j) {
      EXPECT_LT(errors[j], bound) << "bits " << bits << " output " << j;
      EXPECT_LT(errors[j], previous[j]) << "bits " << bits << " output " << j;
      previous[j] = errors[j];
    }
  }
}

TEST(FixedPointRmsNorm, RefusesBeta) {
  auto x = random_floats(2, 8, 14), beta = random_floats(8, 1, 15);
  LayerNormRun run(2, 8);
  LayerNormOptions options;
  options.centered = false;
  const TensorView b = TensorView(beta.data.data(), DType::kFloat32, {8}, "beta");
  EXPECT_THROW(fixed_point_layer_norm_forward(x.view("x"), nullptr, &b, options, {}, run.y.view("y"), run.saved()),
               Error);
}

TEST(FixedPointLayerNorm, IntegerAndFloatRsqrtAgreeClosely) {
  auto x = random_floats(5, 64, 5);
  LayerNormRun a(5, 64), b(5, 64);
  LayerNormOptions options;
  options.rounding = Rounding::kNearest;
  fixed_point_layer_norm_forward(x.view("x"), nullptr, nullptr, options, {}, a.y.view("y"), a.saved());
  options.rsqrt = RsqrtMode::kFloat;
  fixed_point_layer_norm_forward(x.view("x"), nullptr, nullptr, options, {}, b.y.view("y"), b.saved());
  for (size_t i = 0; i < a.xhat.data.size(); ++i) EXPECT_LE(std::abs(a.xhat.data[i] - b.xhat.data[i]), 1);
}

TEST(FixedPointLayerNorm, ConstantRowGivesZeros) {
  Array<float> x(2, 8, 3.0f);
  LayerNormRun run(2, 8);
  LayerNormOptions options;
  options.eps = 0;
  fixed_point_layer_norm_forward(x.view("x"), nullptr, nullptr, options, {}, run.y.view("y"), run.saved());
  for (float v : run.y.data) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace intcore

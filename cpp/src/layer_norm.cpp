#include "intcore/layer_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/isa_clones.h"
#include "fixed_point_rows.h"
#include "float_types.h"
#include "parallel.h"

namespace intcore {
namespace {

using int128 = __int128;
using uint128 = unsigned __int128;

int bit_length(uint128 v) {
  int n = 0;
  while (v != 0) {
    v >>= 1;
    ++n;
  }
  return n;
}

// round(v / 2^shift) for 0 <= shift < 100 (v * 2^-shift for shift < 0), in integers only:
// nearest rounds half to even; stochastic rounds up when the top 24 bits of `bits`, read as a
// fraction, fall below the dropped fraction (the rule of round_up_stochastic, exactly).
int128 shift_round(int128 v, int shift, Rounding rounding, uint32_t bits) {
  if (shift <= 0) return v * (int128{1} << -shift);
  shift = std::min(shift, 120);  // |v| < 2^127: any larger shift rounds the same way
  const int128 floor_v = v >> shift;  // arithmetic shift: floor
  const uint128 rest = static_cast<uint128>(v - (floor_v * (int128{1} << shift)));
  bool up;
  if (rounding == Rounding::kNearest) {
    const uint128 half = uint128{1} << (shift - 1);
    up = rest > half || (rest == half && (floor_v & 1));
  } else {
    up = (static_cast<uint128>(bits >> 8) << shift) < (rest << 24);
  }
  return floor_v + (up ? 1 : 0);
}

// shift_round for a v that fits int64 and 1 <= shift <= 62, in 64-bit arithmetic only (it
// vectorizes; the 128-bit form does not). The stochastic test (u 2^shift < rest 2^24, u the
// top 24 bits of `bits`, 0 <= rest < 2^shift) is rearranged so that neither side leaves 64 bits.
inline int64_t shift_round64(int64_t v, int shift, Rounding rounding, uint32_t bits) {
  const int64_t floor_v = v >> shift;
  const uint64_t rest = static_cast<uint64_t>(v) & ((uint64_t{1} << shift) - 1);
  bool up;
  if (rounding == Rounding::kNearest) {
    const uint64_t half = uint64_t{1} << (shift - 1);
    up = rest > half || (rest == half && (floor_v & 1));
  } else {
    const uint64_t u = bits >> 8;
    up = shift >= 24 ? (u << (shift - 24)) < rest : u < (rest << (24 - shift));
  }
  return floor_v + (up ? 1 : 0);
}

// One row of the layer-norm backward: t_i = n prod_i - sum_g - round(xhat_i sum_gx 2^-s) (ties to
// even), kept modulo 2^64 as the 128-bit form's cast to int64 keeps it, then
// dx_i = t_i m 2^row_exponent. For s in 1..48, sum_gx = hi 2^s + lo splits the product into
// xhat_i hi, an integer, and xhat_i lo (< 2^63), whose low s bits decide the rounding: all in
// 64-bit arithmetic, which vectorizes (cloned per ISA; the engine's baseline is x86-64-v2).
INTCORE_ISA_CLONES void backward_row_split(
    const int64_t* prod, const int16_t* xr, int64_t n, int s, int64_t sum_g, int64_t sum_gx, double m,
    double row_step, float* out) {
  const uint64_t mask = (uint64_t{1} << s) - 1, half = uint64_t{1} << (s - 1);
  const int64_t hi = sum_gx >> s;
  const int64_t lo = static_cast<int64_t>(static_cast<uint64_t>(sum_gx) & mask);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t low_product = xr[i] * lo;
    const uint64_t rest = static_cast<uint64_t>(low_product) & mask;
    const uint64_t floor_all =
        static_cast<uint64_t>(static_cast<int64_t>(xr[i])) * static_cast<uint64_t>(hi) +
        static_cast<uint64_t>(low_product >> s);
    const uint64_t up = (rest > half || (rest == half && (floor_all & 1))) ? 1 : 0;
    const int64_t t = static_cast<int64_t>(static_cast<uint64_t>(n) * static_cast<uint64_t>(prod[i]) -
                                           static_cast<uint64_t>(sum_g) - floor_all - up);
    // t and m are exact doubles (|t| < 2^53 for N < 2^20 at 16 bits), so one rounding here.
    out[i] = static_cast<float>(static_cast<double>(t) * m * row_step);
  }
}

// One row of xhat's codes in 64-bit arithmetic: clamp(shift_round((n q_i - s1) m, shift)), for
// rows where (n q - s1) m fits int64 and 1 <= shift <= 62 (cloned per ISA, see below).
INTCORE_ISA_CLONES void xhat_row64(
    const int32_t* q, int64_t n, int64_t s1, int64_t m, int shift, Rounding rounding, const uint32_t* words, int bits,
    int16_t* xhat) {
  const int64_t qmax = (int64_t{1} << (bits - 1)) - 1;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = shift_round64((n * q[i] - s1) * m, shift, rounding, rounding == Rounding::kStochastic ? words[i] : 0);
    xhat[i] = static_cast<int16_t>(std::clamp(v, -qmax, qmax));
  }
}

// y_i = gamma_i xhat_i 2^(e_xhat + e_gamma) (or xhat_i 2^e_xhat) + beta_i 2^e_beta, in double,
// rounded once to float.
INTCORE_ISA_CLONES void affine_row(
    const int16_t* xhat, int64_t n, const int32_t* gamma, double gamma_step, double xhat_step, const int32_t* beta,
    double beta_step, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t qx = xhat[i];
    double value = gamma ? static_cast<double>(qx * gamma[i]) * gamma_step : static_cast<double>(qx) * xhat_step;
    if (beta) value += static_cast<double>(beta[i]) * beta_step;
    out[i] = static_cast<float>(value);
  }
}

// Row statistics of the quantized input: sum q and sum q^2 (|q| < 2^15 and N <= 2^16, so both
// fit int64), cloned per ISA like the loops below.
INTCORE_ISA_CLONES void row_moments(const int32_t* q, int64_t n, int64_t* s1, int64_t* s2) {
  int64_t a = 0, b = 0;
  for (int64_t i = 0; i < n; ++i) {
    a += q[i];
    b += static_cast<int64_t>(q[i]) * q[i];
  }
  *s1 = a;
  *s2 = b;
}

// max_i |n q_i - s1|.
INTCORE_ISA_CLONES int64_t centered_abs_max(const int32_t* q, int64_t n, int64_t s1) {
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(n * q[i] - s1));
  return m;
}

// prod_i = g_i gamma_i (or g_i), with sum prod and sum prod xhat (< 2^61, see the backward).
INTCORE_ISA_CLONES void row_products(
    const int32_t* g, const int16_t* gamma, const int16_t* xhat, int64_t n, int64_t* prod, int64_t* sum_g,
    int64_t* sum_gx) {
  int64_t a = 0, b = 0;
  for (int64_t i = 0; i < n; ++i) {
    prod[i] = gamma ? static_cast<int64_t>(g[i]) * gamma[i] : g[i];
    a += prod[i];
    b += prod[i] * xhat[i];
  }
  *sum_g = a;
  *sum_gx = b;
}

// pg += g and pgx += g xhat, column by column, over `rows` rows of n.
INTCORE_ISA_CLONES void add_columns(
    const int32_t* g, const int16_t* xhat, int64_t rows, int64_t n, int64_t* pg, int64_t* pgx) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      pg[c] += g[r * n + c];
      pgx[c] += static_cast<int64_t>(g[r * n + c]) * xhat[r * n + c];
    }
  }
}

int64_t clamp_bits(int128 v, int bits) {
  const int128 qmax = (int128{1} << (bits - 1)) - 1;
  return static_cast<int64_t>(v < -qmax ? -qmax : (v > qmax ? qmax : v));
}

// Mantissas of an [N] vector (gamma or beta), nearest rounding, widened to int32.
FixedPointRows quantize_vector(const TensorView& v, int bits) {
  const int64_t shape[2] = {1, v.size(0)}, strides[2] = {0, v.stride(0)};
  return quantize_per_tensor(TensorView(v.data(), v.dtype(), 2, shape, strides, v.device(), v.name()), bits,
                             Rounding::kNearest, {});
}

// The saved tensors are written (forward) or read (backward) as contiguous CPU arrays.
void check_saved(const std::string& fn, const LayerNormSaved& s, int64_t rows, int64_t cols) {
  check_dtype(fn, s.xhat, DType::kInt16);
  check_shape(fn, s.xhat, {rows, cols});
  check_contiguous(fn, s.xhat);
  for (const TensorView* e : {&s.xhat_exponent, &s.gamma_exponent}) {
    check_dtype(fn, *e, DType::kInt32);
    check_shape(fn, *e, {1});
  }
  check_dtype(fn, s.x_exponent, DType::kInt32);
  check_scale_shape(fn, s.x_exponent, rows);
  check_dtype(fn, s.rstd_mantissa, DType::kInt64);
  check_shape(fn, s.rstd_mantissa, {rows});
  check_dtype(fn, s.rstd_exponent, DType::kInt32);
  check_shape(fn, s.rstd_exponent, {rows});
  check_dtype(fn, s.gamma, DType::kInt16);
  check_shape(fn, s.gamma, {cols});
  for (const TensorView* t : {&s.xhat_exponent, &s.x_exponent, &s.rstd_mantissa, &s.rstd_exponent, &s.gamma,
                              &s.gamma_exponent, &s.xhat}) {
    check_contiguous(fn, *t);
    check_cpu(fn, *t);
  }
}

void check_features(const std::string& fn, const TensorView& x, int64_t n) {
  if (n > kLayerNormMaxFeatures) {
    throw_value_error(fn + ": " + x.name() + " has " + std::to_string(n) + " features; at most " +
                      std::to_string(kLayerNormMaxFeatures) + " are supported");
  }
}

void check_vector(const std::string& fn, const TensorView* v, int64_t n) {
  if (v == nullptr) return;
  check_cpu(fn, *v);
  check_floating(fn, *v);
  check_shape(fn, *v, {n});
}

}  // namespace

void rsqrt_fixed(uint128 d, RsqrtMode mode, int64_t* m, int32_t* e) {
  // d = u * 4^k with u in [1, 4), held as U = u * 2^60.
  const int k = (bit_length(d) - 1) / 2;
  const int shift = 60 - 2 * k;
  const uint128 u = shift >= 0 ? d << shift : d >> -shift;
  int128 y;
  if (mode == RsqrtMode::kInteger) {
    // y ~ 1/sqrt(u) in Q30. Start at 1 - u/8 (within 12.5% on [1, 4), inside Newton's basin
    // y0 < sqrt(3/u)); each step y <- y (3 - u y^2) / 2 squares the error: 6 steps reach Q30.
    y = (int128{1} << 30) - static_cast<int128>(u >> 33);
    const int128 three = int128{3} << 60;
    for (int i = 0; i < 6; ++i) {
      const int128 uy2 = static_cast<int128>((u * static_cast<uint128>(y * y)) >> 60);
      y = (y * (three - uy2)) >> 61;
    }
  } else {
    y = static_cast<int128>(std::llround(std::ldexp(1.0 / std::sqrt(std::ldexp(static_cast<double>(u), -60)), 30)));
  }
  *m = static_cast<int64_t>(y);
  *e = -k - 30;
}

void fixed_point_layer_norm_forward(const TensorView& x, const TensorView* gamma, const TensorView* beta,
                                    const LayerNormOptions& options, RandomStream stream, const TensorView& y,
                                    const LayerNormSaved& saved) {
  const std::string fn = options.centered ? "fixed_point_layer_norm" : "fixed_point_rms_norm";
  check_cpu(fn, x);
  check_floating(fn, x);
  check_dim(fn, x, 2);
  const int bits = options.bits;
  if (bits < 2 || bits > 16) throw_value_error(fn + ": bits must be in 2..16, got " + std::to_string(bits));
  if (!(options.eps >= 0 && std::isfinite(options.eps))) throw_value_error(fn + ": eps must be finite and >= 0");
  const int64_t rows = x.size(0), n = x.size(1);  // n = 0 gives empty results, as torch's layer norm
  check_features(fn, x, n);
  check_vector(fn, gamma, n);
  check_vector(fn, beta, n);
  if (!options.centered && beta != nullptr) throw_value_error(fn + ": an RMSNorm (centered = false) takes no beta");
  check_dtype(fn, y, DType::kFloat32);
  check_shape(fn, y, {rows, n});
  check_contiguous(fn, y);
  check_cpu(fn, y);
  check_saved(fn, saved, rows, n);
  check_disjoint(fn,
                 {&y, &saved.xhat, &saved.xhat_exponent, &saved.x_exponent, &saved.rstd_mantissa, &saved.rstd_exponent,
                  &saved.gamma, &saved.gamma_exponent},
                 {&x, gamma, beta});

  // Streams: offset 0 for x, 1 for xhat.
  check_shape(fn, saved.x_exponent, {options.per_row_input && rows > 1 ? rows : 1});
  const FixedPointRows q =
      quantize_rows(x, bits, options.rounding, {stream.seed, stream.offset * 2}, options.per_row_input);
  const RandomStream xhat_stream{stream.seed, stream.offset * 2 + 1};
  // eps in units of the row's input step squared, times N^2, rounded once.
  auto eps_in_steps = [&](int64_t r) {
    return std::nearbyint(std::ldexp(options.eps * static_cast<double>(n) * static_cast<double>(n), -2 * q.exponent(r)));
  };
  for (int32_t e : q.exponents) {
    if (std::ldexp(options.eps * static_cast<double>(n) * static_cast<double>(n), -2 * e) > 1e30) {
      throw_value_error(fn + ": eps is too large for the input's range");
    }
  }

  int64_t* rstd_m = saved.rstd_mantissa.data_as<int64_t>();
  int32_t* rstd_e = saved.rstd_exponent.data_as<int32_t>();
  std::vector<int32_t> row_top(static_cast<size_t>(rows), INT32_MIN);  // bit length + exponent of max |xhat|
  // Pass 1: per-row statistics and the reciprocal square root.
  std::vector<int64_t> row_s1(static_cast<size_t>(rows), 0), centered_max(static_cast<size_t>(rows), 0);
  parallel_for(rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t* qr = q.mantissa.data() + r * n;
      int64_t s1 = 0, s2 = 0;
      row_moments(qr, n, &s1, &s2);
      if (!options.centered) s1 = 0;  // RMSNorm: D = N S2 + eps_q, xhat = N q r
      const int128 d = static_cast<int128>(n) * s2 - static_cast<int128>(s1) * s1 + static_cast<int128>(eps_in_steps(r));
      if (d <= 0) {  // a constant row with eps = 0: xhat is 0 there
        rstd_m[r] = 0;
        rstd_e[r] = 0;
        continue;
      }
      rsqrt_fixed(static_cast<uint128>(d), options.rsqrt, &rstd_m[r], &rstd_e[r]);
      // max |(n q - s1) m| = max |n q - s1| m, as m > 0.
      centered_max[r] = centered_abs_max(qr, n, s1);
      row_s1[r] = s1;
      const uint128 top = static_cast<uint128>(centered_max[r]) * static_cast<uint64_t>(rstd_m[r]);
      if (top != 0) row_top[r] = bit_length(top) + rstd_e[r];
    }
  });
  // |xhat| < 2^e_max; its LSB exponent follows the fixed-point rule.
  const int32_t e_max = rows ? *std::max_element(row_top.begin(), row_top.end()) : INT32_MIN;
  const int32_t e_xhat = (e_max == INT32_MIN ? 0 : e_max) - (bits - 1);
  saved.xhat_exponent.data_as<int32_t>()[0] = e_xhat;
  std::copy(q.exponents.begin(), q.exponents.end(), saved.x_exponent.data_as<int32_t>());

  FixedPointRows g, b;
  if (gamma) g = quantize_vector(*gamma, bits);
  if (beta) b = quantize_vector(*beta, bits);
  int16_t* g_saved = saved.gamma.data_as<int16_t>();
  for (int64_t i = 0; i < n; ++i) g_saved[i] = static_cast<int16_t>(gamma ? g.mantissa[i] : 0);
  const int32_t gamma_exponent = gamma ? g.exponent(0) : 0;
  saved.gamma_exponent.data_as<int32_t>()[0] = gamma_exponent;

  // Pass 2: xhat mapped to `bits` bits, then y = gamma * xhat + beta.
  const double xhat_step = pow2(e_xhat), gamma_step = pow2(e_xhat + gamma_exponent);
  const double beta_step = beta ? pow2(b.exponent(0)) : 0.0;
  int16_t* xhat = saved.xhat.data_as<int16_t>();
  float* out = y.data_as<float>();
  parallel_for(rows, n * 4, [&](int64_t r0, int64_t r1) {
    std::vector<uint32_t> random(static_cast<size_t>(options.rounding == Rounding::kStochastic ? n : 0));
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t* qr = q.mantissa.data() + r * n;
      const int64_t s1 = row_s1[r];
      if (!random.empty()) stream_words(xhat_stream, static_cast<uint64_t>(r * n), n, random.data());
      // (n q - s1) m fits int64 when max |n q - s1| m < 2^62: then the 64-bit rounding gives
      // the same integers as the 128-bit one.
      const int shift = e_xhat - rstd_e[r];
      int16_t* xhat_row = xhat + r * n;
      if (shift >= 1 && shift <= 62 && (rstd_m[r] == 0 || centered_max[r] <= (int64_t{1} << 62) / rstd_m[r])) {
        xhat_row64(qr, n, s1, rstd_m[r], shift, options.rounding, random.data(), bits, xhat_row);
      } else {
        for (int64_t i = 0; i < n; ++i) {
          const int128 v = static_cast<int128>(n * qr[i] - s1) * rstd_m[r];
          xhat_row[i] = static_cast<int16_t>(
              clamp_bits(shift_round(v, shift, options.rounding, random.empty() ? 0 : random[i]), bits));
        }
      }
      affine_row(xhat_row, n, gamma ? g.mantissa.data() : nullptr, gamma_step, xhat_step,
                 beta ? b.mantissa.data() : nullptr, beta_step, out + r * n);
    }
  });
}

void fixed_point_layer_norm_backward(const TensorView& dy, const LayerNormSaved& saved, bool has_gamma,
                                     bool centered, int grad_bits, Rounding rounding, RandomStream stream, const TensorView& dx,
                                     const TensorView* dgamma, const TensorView* dbeta) {
  const std::string fn = centered ? "fixed_point_layer_norm_backward" : "fixed_point_rms_norm_backward";
  check_cpu(fn, dy);
  check_floating(fn, dy);
  check_dim(fn, dy, 2);
  if (grad_bits < 2 || grad_bits > 16) {
    throw_value_error(fn + ": grad_bits must be in 2..16, got " + std::to_string(grad_bits));
  }
  const int64_t rows = dy.size(0), n = dy.size(1);
  check_features(fn, dy, n);
  check_saved(fn, saved, rows, n);
  const int32_t saved_e_xhat = saved.xhat_exponent.data_as<int32_t>()[0];
  if (saved_e_xhat < kLayerNormMinXhatExponent || saved_e_xhat > kLayerNormMaxXhatExponent) {
    throw_value_error(fn + ": xhat_exponent must be in [" + std::to_string(kLayerNormMinXhatExponent) + ", " +
                      std::to_string(kLayerNormMaxXhatExponent) + "], got " + std::to_string(saved_e_xhat));
  }
  check_dtype(fn, dx, DType::kFloat32);
  check_shape(fn, dx, {rows, n});
  check_contiguous(fn, dx);
  check_cpu(fn, dx);
  for (const TensorView* v : {dgamma, dbeta}) {
    if (v == nullptr) continue;
    check_cpu(fn, *v);
    check_dtype(fn, *v, DType::kFloat32);
    check_shape(fn, *v, {n});
    check_contiguous(fn, *v);
  }
  if (!centered && dbeta != nullptr) throw_value_error(fn + ": an RMSNorm (centered = false) has no dbeta");
  check_disjoint(fn, {&dx, dgamma, dbeta},
                 {&dy, &saved.xhat, &saved.xhat_exponent, &saved.x_exponent, &saved.rstd_mantissa, &saved.rstd_exponent,
                  &saved.gamma, &saved.gamma_exponent});

  const FixedPointRows g = quantize_per_tensor(dy, grad_bits, rounding, stream);
  const int16_t* xhat = saved.xhat.data_as<int16_t>();
  const int16_t* gamma = saved.gamma.data_as<int16_t>();
  const int32_t e_xhat = saved.xhat_exponent.data_as<int32_t>()[0];
  const int32_t* e_x = saved.x_exponent.data_as<int32_t>();
  const bool per_row_x = saved.x_exponent.size(0) > 1;
  const int32_t e_gamma = has_gamma ? saved.gamma_exponent.data_as<int32_t>()[0] : 0;
  const int64_t* rstd_m = saved.rstd_mantissa.data_as<int64_t>();
  const int32_t* rstd_e = saved.rstd_exponent.data_as<int32_t>();
  const int32_t e_g = g.exponent(0) + e_gamma;

  float* out = dx.data_as<float>();
  parallel_for(rows, n * 4, [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> prod(static_cast<size_t>(n));
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t* gr = g.mantissa.data() + r * n;
      const int16_t* xr = xhat + r * n;
      // |prod| < 2^30, |xhat| < 2^15 and N <= 2^16, so sum_gx < 2^61 fits int64.
      int64_t sum_g = 0, sum_gx = 0;
      row_products(gr, has_gamma ? gamma : nullptr, xr, n, prod.data(), &sum_g, &sum_gx);
      if (!centered) sum_g = 0;  // RMSNorm: no mean was subtracted, so no mean-of-G term
      const double row_step = pow2(rstd_e[r] - e_x[per_row_x ? r : 0] + e_g);
      // xhat_q sum_gx 2^(2 e_xhat), rounded to the nearest integer (ties to even), then
      // t = n prod - sum_g - that, kept modulo 2^64 as the cast below keeps it. With
      // s = -2 e_xhat in 1..48 (e_xhat < 0 for any useful width), sum_gx = hi 2^s + lo splits
      // the product into xhat_q hi, an integer, and xhat_q lo (< 2^63), whose rounding decides;
      // all in 64-bit arithmetic, which the compiler vectorizes.
      const int s = -2 * e_xhat;
      if (s >= 1 && s <= 48) {
        backward_row_split(prod.data(), xr, n, s, sum_g, sum_gx, static_cast<double>(rstd_m[r]), row_step, out + r * n);
        continue;
      }
      for (int64_t i = 0; i < n; ++i) {
        const int128 correction = shift_round(static_cast<int128>(xr[i]) * sum_gx, s, Rounding::kNearest, 0);
        const int64_t t = static_cast<int64_t>(static_cast<int128>(n) * prod[i] - sum_g - correction);
        // t and m are exact doubles (|t| < 2^53 for N < 2^20 at 16 bits), so one rounding here.
        out[r * n + i] = static_cast<float>(static_cast<double>(t) * static_cast<double>(rstd_m[r]) * row_step);
      }
    }
  });

  // Column sums over rows, exact in int64: partial sums per block of rows, added in block
  // order, so the result never depends on the thread count.
  if (dgamma != nullptr || dbeta != nullptr) {
    const int64_t blocks = std::min<int64_t>(rows, 64);
    std::vector<int64_t> part_g(static_cast<size_t>(blocks * n), 0), part_gx(static_cast<size_t>(blocks * n), 0);
    parallel_for(blocks, (rows / std::max<int64_t>(blocks, 1) + 1) * n * 2, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        int64_t* pg = part_g.data() + b * n;
        int64_t* pgx = part_gx.data() + b * n;
        const int64_t first = b * rows / blocks, last = (b + 1) * rows / blocks;
        add_columns(g.mantissa.data() + first * n, xhat + first * n, last - first, n, pg, pgx);
      }
    });
    for (int64_t c = 0; c < n; ++c) {
      int64_t s_g = 0, s_gx = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        s_g += part_g[b * n + c];
        s_gx += part_gx[b * n + c];
      }
      if (dgamma) dgamma->data_as<float>()[c] = static_cast<float>(std::ldexp(static_cast<double>(s_gx), g.exponent(0) + e_xhat));
      if (dbeta) dbeta->data_as<float>()[c] = static_cast<float>(std::ldexp(static_cast<double>(s_g), g.exponent(0)));
    }
  }
}

}  // namespace intcore

#include "intcore/int4_training.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <numeric>
#include <vector>

#include "fixed_point_rows.h"
#include "float_types.h"
#include "intcore/gemm.h"
#include "intcore/hadamard.h"
#include "intcore/quantize.h"
#include "parallel.h"

namespace intcore {
namespace {

// x H quantized to int4 codes (round to nearest), written to `codes`: with absmax scales (one per
// row when codes.scale has a row's worth, else one per tensor), or with the given step (which is
// then also the codes' scale).
void hadamard_quantize(const TensorView& x, int64_t block, const HqCodes& codes, const TensorView* step) {
  const int64_t rows = x.size(0), k = x.size(1);
  std::vector<float> transformed(static_cast<size_t>(rows * k));
  const TensorView xh(transformed.data(), DType::kFloat32, {rows, k}, x.name());
  hadamard_transform(x, block, xh);
  if (step == nullptr) {
    quantize_absmax(xh, codes.codes, codes.scale, 4, Rounding::kNearest, {});
    return;
  }
  codes.scale.data_as<float>()[0] = step->data_as<float>()[0];
  quantize_scaled(xh, codes.codes, codes.scale, 4, Rounding::kNearest, {});
}

void check_codes(const std::string& fn, const HqCodes& c, int64_t rows, int64_t k, bool per_row) {
  check_cpu(fn, c.codes);
  check_dtype(fn, c.codes, DType::kUInt8);
  check_shape(fn, c.codes, {rows, (k + 1) / 2});
  check_contiguous(fn, c.codes);
  check_cpu(fn, c.scale);
  check_dtype(fn, c.scale, DType::kFloat32);
  check_shape(fn, c.scale, {per_row ? rows : 1});
}

// A float32 [1] output or step on the CPU.
void check_scalar(const std::string& fn, const TensorView& t) {
  check_cpu(fn, t);
  check_dtype(fn, t, DType::kFloat32);
  check_shape(fn, t, {1});
}

// Unpacked int8 copy of packed int4 codes.
std::vector<int8_t> unpack(const HqCodes& c, int64_t k) {
  const int64_t rows = c.codes.size(0);
  std::vector<int8_t> values(static_cast<size_t>(rows * k));
  unpack_int4(c.codes, TensorView(values.data(), DType::kInt8, {rows, k}, c.codes.name()));
  return values;
}

// Applies the Hadamard transform along the rows of a float32 [rows, k] buffer into out.
void hadamard_into(std::vector<float>& values, int64_t rows, int64_t k, int64_t block, const TensorView& out) {
  hadamard_transform(TensorView(values.data(), DType::kFloat32, {rows, k}, "gradient"), block, out);
}

struct Split {
  int64_t rows = 0, cols = 0;
  std::vector<int8_t> high, low;  // [rows, cols]
  std::vector<float> scale;       // s of each row (the tensor's s repeated): G ~ (14 h + l) / s

  bool any_nonzero() const {
    return std::any_of(scale.begin(), scale.end(), [](float s) { return s != 0; });
  }
  // 1 / s in float32, the digit codes' row scale (0 for an all-zero row).
  std::vector<float> inverse() const {
    std::vector<float> out(scale.size());
    for (size_t r = 0; r < out.size(); ++r) out[r] = scale[r] > 0 ? 1.0f / scale[r] : 0.0f;
    return out;
  }
  // 1 / s in float64 (0 for an all-zero row).
  double inverse64(int64_t r) const { return scale[r] > 0 ? 1.0 / static_cast<double>(scale[r]) : 0.0; }
};

// A float32 [rows, cols] gradient matrix split with one s per row or per tensor.
Split split(const std::vector<float>& g, int64_t rows, int64_t cols, bool per_row, RandomStream stream) {
  Split s;
  s.rows = rows;
  s.cols = cols;
  s.high.resize(static_cast<size_t>(rows * cols));
  s.low.resize(static_cast<size_t>(rows * cols));
  std::vector<float> scale(static_cast<size_t>(per_row ? rows : 1));
  split_gradient(TensorView(const_cast<float*>(g.data()), DType::kFloat32, {rows, cols}, "grad"), stream,
                 TensorView(s.high.data(), DType::kInt8, {rows, cols}, "high"),
                 TensorView(s.low.data(), DType::kInt8, {rows, cols}, "low"),
                 TensorView(scale.data(), DType::kFloat32, {static_cast<int64_t>(scale.size())}));
  s.scale = per_row ? scale : std::vector<float>(static_cast<size_t>(rows), scale[0]);
  return s;
}

// Stacked digit row i: the high digits of token i (weight 14) or, for i >= M, the low digits of
// token i - M (weight 1). Token t's digits are row t of the split, or column t of a split of G^T
// (`transposed`), whose rows are the output channels.
struct StackedRows {
  const Split& split;
  bool transposed;
  int64_t tokens() const { return transposed ? split.cols : split.rows; }
  int64_t width() const { return transposed ? split.rows : split.cols; }
  double weight(int64_t i) const { return i < tokens() ? 14.0 : 1.0; }
  int8_t digit(int64_t i, int64_t j) const {
    const std::vector<int8_t>& d = i < tokens() ? split.high : split.low;
    const int64_t t = i % tokens();
    return transposed ? d[j * split.cols + t] : d[t * split.cols + j];
  }
  // weight * ||row i||, from the exact integer sum of squares.
  double norm(int64_t i) const {
    int64_t sum = 0;
    for (int64_t j = 0; j < width(); ++j) sum += digit(i, j) * digit(i, j);
    return weight(i) * std::sqrt(static_cast<double>(sum));
  }
};

// Combined exact digits 14 h + l (in [-105, 105]) for the no-sampling path.
std::vector<int8_t> combined(const Split& s) {
  std::vector<int8_t> out(s.high.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int8_t>(14 * s.high[i] + s.low[i]);
  return out;
}

// Reads grad [m, c] (any float dtype, any strides) as float32, times scale[j] along columns
// (or scale[0]), into [m, c] (transpose false) or [c, m] with the factor along rows (transpose
// true: G^T with column i times scale[i]).
std::vector<float> scaled_grad(const std::string& fn, const TensorView& grad, const float* scale, bool per_row,
                               bool transpose) {
  const int64_t m = grad.size(0), c = grad.size(1);
  std::vector<float> out(static_cast<size_t>(m * c));
  dispatch_float(fn, grad, [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(grad.data());
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < c; ++j) {
        const float v = to_float(g[i * grad.stride(0) + j * grad.stride(1)]);
        if (transpose) out[j * m + i] = v * scale[per_row ? i : 0];
        else out[i * c + j] = v * scale[per_row ? j : 0];
      }
    }
  });
  return out;
}

void check_grad(const std::string& fn, const TensorView& grad) {
  check_cpu(fn, grad);
  check_floating(fn, grad);
  check_dim(fn, grad, 2);
}

void check_block(const std::string& fn, int64_t k, int64_t block) {
  if (k < 0) throw_value_error(fn + ": k (in_features) must be >= 0, got " + std::to_string(k));
  if (block < 1 || (block & (block - 1)) != 0 || block > 32768 || k % block != 0) {
    throw_value_error(fn + ": block_size must be a power of two dividing in_features (" + std::to_string(k) +
                      "), got " + std::to_string(block));
  }
}

void check_sampling(const std::string& fn, const SamplingOptions& s) {
  if (!(s.budget > 0 && s.budget <= 1)) {
    throw_value_error(fn + ": the sampling budget must be in (0, 1], got " + std::to_string(s.budget));
  }
}

}  // namespace

void split_gradient(const TensorView& grad, RandomStream stream, const TensorView& high, const TensorView& low,
                    const TensorView& scale) {
  const std::string fn = "split_gradient";
  check_grad(fn, grad);
  const int64_t m = grad.size(0), c = grad.size(1);
  for (const TensorView* t : {&high, &low}) {
    check_cpu(fn, *t);
    check_dtype(fn, *t, DType::kInt8);
    check_shape(fn, *t, {m, c});
    check_contiguous(fn, *t);
  }
  check_cpu(fn, scale);
  check_dtype(fn, scale, DType::kFloat32);
  check_scale_shape(fn, scale, m);
  check_contiguous(fn, scale);
  check_disjoint(fn, {&high, &low, &scale}, {&grad});
  const bool per_row = scale.size(0) == m && m != 1;
  const std::vector<float> absmax = quantizer_absmax(fn, grad, per_row);  // raises on NaN/Inf
  std::vector<float> s(static_cast<size_t>(per_row ? m : 1));
  for (size_t r = 0; r < s.size(); ++r) {
    // max|G| as 127 (max|G| / 127) in float32, the int8 absmax scale times 127: not always
    // max|G| itself, but the rule every recorded INT4 run used, kept so that they reproduce.
    const float g_max = absmax.empty() ? 0.0f : absmax[r] / 127.0f * 127.0f;  // empty: a [0, c] gradient
    // Capped at FLT_MAX: a row of max |G| below ~2.9e-37 would otherwise get s = inf. Either
    // way |G| s stays within 98 (1 + eps).
    s[r] = g_max > 0 ? std::min(98.0f / g_max, FLT_MAX) : 0.0f;
  }
  std::copy(s.begin(), s.end(), scale.data_as<float>());
  int8_t* h = high.data_as<int8_t>();
  int8_t* l = low.data_as<int8_t>();
  dispatch_float(fn, grad, [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(grad.data());
    parallel_for(m, c * 8, [&](int64_t r0, int64_t r1) {
      std::vector<uint32_t> bits(static_cast<size_t>(c));
      for (int64_t r = r0; r < r1; ++r) {
        const double s_row = static_cast<double>(s[per_row ? r : 0]);
        stream_words(stream, static_cast<uint64_t>(r * c), c, bits.data());
        for (int64_t j = 0; j < c; ++j) {
          // |v| <= 98 (1 + eps), so |h| <= 7 and |v - 14 h| <= 7: neither digit needs clipping.
          const double v = static_cast<double>(to_float(g[r * grad.stride(0) + j * grad.stride(1)])) * s_row;
          const double hi = std::nearbyint(v / 14.0);
          const double rest = v - 14.0 * hi;
          const double lo = std::floor(rest);
          const double up = round_up_stochastic(rest - lo, bits[j]) ? 1.0 : 0.0;
          h[r * c + j] = static_cast<int8_t>(hi);
          l[r * c + j] = static_cast<int8_t>(std::clamp(lo + up, -7.0, 7.0));
        }
      }
    });
  });
}

std::vector<int64_t> draw_rows(const std::vector<double>& p, RandomStream stream) {
  std::vector<uint32_t> words(p.size());
  stream_words(stream, 0, static_cast<int64_t>(p.size()), words.data());
  std::vector<int64_t> kept;
  for (size_t i = 0; i < p.size(); ++i) {
    if (static_cast<double>(words[i] >> 8) < p[i] * 16777216.0) kept.push_back(static_cast<int64_t>(i));
  }
  return kept;
}

void sampling_probabilities(const double* weights, int64_t n, double budget, double* p) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return weights[a] > weights[b]; });
  int64_t positive = 0;
  double rest = 0;  // sum of the weights not capped at 1
  for (int64_t i = 0; i < n; ++i) {
    if (weights[i] > 0) {
      ++positive;
      rest += weights[i];
    }
  }
  std::fill(p, p + n, 0.0);
  if (positive == 0) return;
  if (budget >= static_cast<double>(positive)) {
    for (int64_t i = 0; i < n; ++i) p[i] = weights[i] > 0 ? 1.0 : 0.0;
    return;
  }
  // Cap the largest weights at 1 while c * w would exceed 1, re-spreading their excess.
  int64_t capped = 0;
  double c = budget / rest;
  while (capped < positive && c * weights[order[capped]] >= 1.0) {
    rest -= weights[order[capped]];
    ++capped;
    c = (budget - static_cast<double>(capped)) / rest;
  }
  for (int64_t i = 0; i < capped; ++i) p[order[i]] = 1.0;
  for (int64_t i = capped; i < n; ++i) p[order[i]] = std::min(1.0, c * weights[order[i]]);
}

void hq_linear_forward(const TensorView& x, const TensorView& w, const TensorView* bias, int64_t block, bool per_row,
                       const TensorView& out, const HqCodes& x_codes, const HqCodes& w_codes, const TensorView* x_step,
                       const TensorView* w_step) {
  const std::string fn = "hq_linear";
  for (const TensorView* t : {&x, &w}) {
    check_cpu(fn, *t);
    check_floating(fn, *t);
    check_dim(fn, *t, 2);
  }
  const int64_t m = x.size(0), k = x.size(1), c = w.size(0);
  if (w.size(1) != k) {
    throw_value_error(fn + ": " + x.name() + " has " + std::to_string(k) + " features but " + w.name() + " expects " +
                      std::to_string(w.size(1)));
  }
  check_block(fn, k, block);
  check_codes(fn, x_codes, m, k, per_row);
  check_codes(fn, w_codes, c, k, per_row);
  check_dtype(fn, out, DType::kFloat32);
  check_shape(fn, out, {m, c});
  check_contiguous(fn, out);
  check_cpu(fn, out);
  for (const TensorView* step : {x_step, w_step}) {
    if (step != nullptr) check_scalar(fn, *step);
  }
  if (per_row && (x_step != nullptr || w_step != nullptr)) {
    throw_value_error(fn + ": learned steps (x_step, w_step) are per tensor; per_row needs absmax scales");
  }
  if (bias != nullptr) check_cpu(fn, *bias);
  check_disjoint(fn, {&out, &x_codes.codes, &x_codes.scale, &w_codes.codes, &w_codes.scale},
                 {&x, &w, bias, x_step, w_step});
  std::vector<float> bias_f32;
  TensorView bias_view;
  if (bias != nullptr) {
    check_floating(fn, *bias);
    check_shape(fn, *bias, {c});
    bias_f32.resize(static_cast<size_t>(c));
    dispatch_float(fn, *bias, [&](auto tag) {
      using T = decltype(tag);
      for (int64_t j = 0; j < c; ++j) bias_f32[j] = to_float(static_cast<const T*>(bias->data())[j * bias->stride(0)]);
    });
    bias_view = TensorView(bias_f32.data(), DType::kFloat32, {c}, bias->name());
  }
  hadamard_quantize(x, block, x_codes, x_step);
  hadamard_quantize(w, block, w_codes, w_step);
  gemm_scaled(IntMatrix::int4(x_codes.codes, k), x_codes.scale, IntMatrix::int4(w_codes.codes, k), w_codes.scale,
              bias ? &bias_view : nullptr, out);
}

namespace {

// Keep probabilities moved up onto the grid the draw resolves (multiples of 2^-24; draw_rows keeps
// row i with probability ceil(p_i 2^24) / 2^24), at least one step for every positive score,
// so that dividing a kept row by p_i is exactly unbiased. Scores spanning float32's range (rows
// divided by tiny s) can give p_i below 2^-24, or 0 by cancellation in the water-filling sums.
void on_draw_grid(const std::vector<double>& scores, std::vector<double>& p) {
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] = scores[i] > 0 ? std::max(std::ceil(p[i] * 16777216.0), 1.0) / 16777216.0 : 0.0;
  }
}

// dx = (G (QW sw)) H: w's scales folded into G's columns, G split per token (or per tensor).
void grad_input(const TensorView& grad, const HqCodes& w_codes, int64_t k, int64_t block, bool per_row,
                SamplingOptions sampling, uint64_t seed, const TensorView& dx) {
  const int64_t m = grad.size(0), c = grad.size(1);
  const Split s = split(scaled_grad("hq_linear_backward", grad, w_codes.scale.data_as<float>(), per_row, false), m,
                        c, per_row, {seed, 0});
  const std::vector<int8_t> wq = unpack(w_codes, k);
  const TensorView wt = TensorView(const_cast<int8_t*>(wq.data()), DType::kInt8, {c, k}, "w codes").transposed();
  const float one = 1.0f;
  const TensorView one_view(const_cast<float*>(&one), DType::kFloat32, {1});
  std::vector<float> dxh(static_cast<size_t>(m * k), 0.0f);
  if (!sampling.enabled || !s.any_nonzero()) {
    std::vector<int8_t> digits = combined(s);
    std::vector<float> row_scale = s.inverse();
    gemm_scaled(IntMatrix::of(TensorView(digits.data(), DType::kInt8, {m, c}, "grad digits")),
                TensorView(row_scale.data(), DType::kFloat32, {m}), IntMatrix::of(wt), one_view, nullptr,
                TensorView(dxh.data(), DType::kFloat32, {m, k}));
  } else {
    const StackedRows rows{s, false};
    std::vector<double> scores(static_cast<size_t>(2 * m)), p(static_cast<size_t>(2 * m));
    for (int64_t i = 0; i < 2 * m; ++i) scores[i] = rows.norm(i) * s.inverse64(i % m);
    sampling_probabilities(scores.data(), 2 * m, sampling.budget * 2.0 * static_cast<double>(m), p.data());
    on_draw_grid(scores, p);
    const std::vector<int64_t> kept = draw_rows(p, {seed, 1});
    const int64_t n = static_cast<int64_t>(kept.size());
    std::vector<int8_t> compact(static_cast<size_t>(n * c));
    std::vector<float> factor(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t t = 0; t < c; ++t) compact[j * c + t] = rows.digit(kept[j], t);
      factor[j] = static_cast<float>(rows.weight(kept[j]) /
                                     (static_cast<double>(s.scale[kept[j] % m]) * p[kept[j]]));
    }
    std::vector<float> partial(static_cast<size_t>(n * k));
    if (n > 0) {
      gemm_scaled(IntMatrix::of(TensorView(compact.data(), DType::kInt8, {n, c}, "kept digits")),
                  TensorView(factor.data(), DType::kFloat32, {n}), IntMatrix::of(wt), one_view, nullptr,
                  TensorView(partial.data(), DType::kFloat32, {n, k}));
    }
    // Each token's row gathers its kept high and low contributions (high rows come first, so
    // the order of the additions is fixed).
    for (int64_t j = 0; j < n; ++j) {
      float* dst = dxh.data() + (kept[j] % m) * k;
      const float* src = partial.data() + j * k;
      for (int64_t t = 0; t < k; ++t) dst[t] += src[t];
    }
  }
  hadamard_into(dxh, m, k, block, dx);
}

// dw = (G^T (QX sx)) H: x's scales folded into G's rows, G^T split per output channel (or per
// tensor). Sampled token rows, scaled by weight / p, are requantized to int8 per channel (or per
// tensor), stochastically.
void grad_weight(const TensorView& grad, const HqCodes& x_codes, int64_t k, int64_t block, bool per_row,
                 SamplingOptions sampling, uint64_t seed, const TensorView& dw) {
  const int64_t m = grad.size(0), c = grad.size(1);
  const Split s = split(scaled_grad("hq_linear_backward", grad, x_codes.scale.data_as<float>(), per_row, true), c,
                        m, per_row, {seed, 4});
  const std::vector<int8_t> xq = unpack(x_codes, k);
  const float one = 1.0f;
  const TensorView one_view(const_cast<float*>(&one), DType::kFloat32, {1});
  std::vector<float> dwh(static_cast<size_t>(c * k), 0.0f);
  const TensorView out(dwh.data(), DType::kFloat32, {c, k});
  if (!sampling.enabled || !s.any_nonzero()) {
    std::vector<int8_t> digits = combined(s);
    std::vector<float> row_scale = s.inverse();
    gemm_scaled(IntMatrix::of(TensorView(digits.data(), DType::kInt8, {c, m}, "grad digits")),
                TensorView(row_scale.data(), DType::kFloat32, {c}),
                IntMatrix::of(TensorView(const_cast<int8_t*>(xq.data()), DType::kInt8, {m, k}, "x codes").transposed()),
                one_view, nullptr, out);
  } else {
    const StackedRows rows{s, true};
    std::vector<double> scores(static_cast<size_t>(2 * m)), p(static_cast<size_t>(2 * m));
    std::vector<double> x_norm(static_cast<size_t>(m));
    for (int64_t t = 0; t < m; ++t) {
      int64_t sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += xq[t * k + j] * xq[t * k + j];
      x_norm[t] = std::sqrt(static_cast<double>(sum));
    }
    for (int64_t i = 0; i < 2 * m; ++i) scores[i] = rows.norm(i) * x_norm[i % m];
    sampling_probabilities(scores.data(), 2 * m, sampling.budget * 2.0 * static_cast<double>(m), p.data());
    on_draw_grid(scores, p);
    const std::vector<int64_t> kept = draw_rows(p, {seed, 2});
    const int64_t n = static_cast<int64_t>(kept.size());
    if (n > 0) {
      // R^T [C, n]: channel j of kept row r is (weight_r / p_r) digit / s_j.
      std::vector<float> rt(static_cast<size_t>(c * n));
      std::vector<int8_t> x_kept(static_cast<size_t>(n * k));
      for (int64_t r = 0; r < n; ++r) {
        const double f = rows.weight(kept[r]) / p[kept[r]];
        for (int64_t j = 0; j < c; ++j) rt[j * n + r] = static_cast<float>((f * rows.digit(kept[r], j)) * s.inverse64(j));
        std::copy(xq.data() + (kept[r] % m) * k, xq.data() + (kept[r] % m + 1) * k, x_kept.data() + r * k);
      }
      std::vector<int8_t> r_codes(static_cast<size_t>(c * n));
      std::vector<float> r_scale(static_cast<size_t>(per_row ? c : 1));
      quantize_absmax(TensorView(rt.data(), DType::kFloat32, {c, n}, "sampled gradient"),
                      TensorView(r_codes.data(), DType::kInt8, {c, n}),
                      TensorView(r_scale.data(), DType::kFloat32, {static_cast<int64_t>(r_scale.size())}), 8,
                      Rounding::kStochastic, {seed, 3});
      gemm_scaled(IntMatrix::of(TensorView(r_codes.data(), DType::kInt8, {c, n}, "sampled digits")),
                  TensorView(r_scale.data(), DType::kFloat32, {static_cast<int64_t>(r_scale.size())}),
                  IntMatrix::of(TensorView(x_kept.data(), DType::kInt8, {n, k}, "kept x codes").transposed()),
                  one_view, nullptr, out);
    }
  }
  hadamard_into(dwh, c, k, block, dw);
}

}  // namespace

void hq_linear_backward(const TensorView& grad, const HqCodes& x_codes, const HqCodes& w_codes, int64_t k,
                        int64_t block, bool per_row, SamplingOptions sampling, uint64_t seed, const TensorView* dx,
                        const TensorView* dw) {
  const std::string fn = "hq_linear_backward";
  check_grad(fn, grad);
  const int64_t m = grad.size(0), c = grad.size(1);
  check_block(fn, k, block);
  check_sampling(fn, sampling);
  for (const auto& [out, rows] : {std::pair{dx, m}, std::pair{dw, c}}) {
    if (out == nullptr) continue;
    check_cpu(fn, *out);
    check_dtype(fn, *out, DType::kFloat32);
    check_shape(fn, *out, {rows, k});
    check_contiguous(fn, *out);
  }
  if (dx != nullptr) check_codes(fn, w_codes, c, k, per_row);
  if (dw != nullptr) check_codes(fn, x_codes, m, k, per_row);
  check_disjoint(fn, {dx, dw}, {&grad, &x_codes.codes, &x_codes.scale, &w_codes.codes, &w_codes.scale});
  if (dx != nullptr) grad_input(grad, w_codes, k, block, per_row, sampling, seed, *dx);
  if (dw != nullptr) grad_weight(grad, x_codes, k, block, per_row, sampling, seed, *dw);
}

}  // namespace intcore

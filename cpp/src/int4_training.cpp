#include "intcore/int4_training.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "float_types.h"
#include "intcore/gemm.h"
#include "intcore/hadamard.h"
#include "intcore/quantize.h"
#include "parallel.h"

namespace intcore {
namespace {

// x H quantized to per-tensor int4 codes (round to nearest), written to `codes`: with the
// absmax scale, or with the given step (which is then also the codes' scale).
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

void check_codes(const std::string& fn, const HqCodes& c, int64_t rows, int64_t k) {
  check_cpu(fn, c.codes);
  check_dtype(fn, c.codes, DType::kUInt8);
  check_shape(fn, c.codes, {rows, (k + 1) / 2});
  check_contiguous(fn, c.codes);
  check_cpu(fn, c.scale);
  check_dtype(fn, c.scale, DType::kFloat32);
  check_shape(fn, c.scale, {1});
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
  std::vector<int8_t> high, low;
  float scale = 0;  // s: G ~ (14 h + l) / s
};

Split split(const TensorView& grad, uint64_t seed) {
  const int64_t m = grad.size(0), c = grad.size(1);
  Split s;
  s.high.resize(static_cast<size_t>(m * c));
  s.low.resize(static_cast<size_t>(m * c));
  split_gradient(grad, {seed, 0}, TensorView(s.high.data(), DType::kInt8, {m, c}, "high"),
                 TensorView(s.low.data(), DType::kInt8, {m, c}, "low"), TensorView(&s.scale, DType::kFloat32, {1}));
  return s;
}

// Stacked digit row i: the high digits of token i (weight 14) or, for i >= M, the low digits of
// token i - M (weight 1).
struct StackedRows {
  const Split& split;
  int64_t m, c;
  const int8_t* row(int64_t i) const { return (i < m ? split.high.data() : split.low.data()) + (i % m) * c; }
  double weight(int64_t i) const { return i < m ? 14.0 : 1.0; }
  double norm(int64_t i) const {
    const int8_t* r = row(i);
    int64_t sum = 0;
    for (int64_t j = 0; j < c; ++j) sum += r[j] * r[j];
    return weight(i) * std::sqrt(static_cast<double>(sum));
  }
};

// Combined exact digits 14 h + l (in [-105, 105]) for the no-sampling path.
std::vector<int8_t> combined(const Split& s) {
  std::vector<int8_t> out(s.high.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<int8_t>(14 * s.high[i] + s.low[i]);
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
  check_scalar(fn, scale);
  check_disjoint(fn, {&high, &low, &scale}, {&grad});
  // max|G| through the absmax quantizer's scale (which also rejects NaN/Inf): 127 * scale.
  std::vector<int8_t> unused(static_cast<size_t>(m * c));
  float absmax_scale = 0;
  quantize_absmax(grad, TensorView(unused.data(), DType::kInt8, {m, c}), TensorView(&absmax_scale, DType::kFloat32, {1}),
                  8, Rounding::kNearest, {});
  const float absmax = absmax_scale * 127.0f;
  const float s = absmax > 0 ? 98.0f / absmax : 0.0f;
  scale.data_as<float>()[0] = s;
  int8_t* h = high.data_as<int8_t>();
  int8_t* l = low.data_as<int8_t>();
  dispatch_float(fn, grad, [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(grad.data());
    parallel_for(m, c * 8, [&](int64_t r0, int64_t r1) {
      std::vector<uint32_t> bits(static_cast<size_t>(c));
      for (int64_t r = r0; r < r1; ++r) {
        stream_words(stream, static_cast<uint64_t>(r * c), c, bits.data());
        for (int64_t j = 0; j < c; ++j) {
          // |v| <= 98, so |h| <= 7 and |v - 14 h| <= 7: neither digit needs clipping.
          const double v = static_cast<double>(to_float(g[r * grad.stride(0) + j * grad.stride(1)])) * s;
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

void hq_linear_forward(const TensorView& x, const TensorView& w, const TensorView* bias, int64_t block,
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
  check_codes(fn, x_codes, m, k);
  check_codes(fn, w_codes, c, k);
  check_dtype(fn, out, DType::kFloat32);
  check_shape(fn, out, {m, c});
  check_contiguous(fn, out);
  check_cpu(fn, out);
  for (const TensorView* step : {x_step, w_step}) {
    if (step != nullptr) check_scalar(fn, *step);
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

// dx from the split gradient (arguments checked by hq_linear_backward).
void grad_input(const Split& s, int64_t m, int64_t c, const HqCodes& w_codes, int64_t k, int64_t block,
                SamplingOptions sampling, uint64_t seed, const TensorView& dx) {
  const float w_scale = w_codes.scale.data_as<float>()[0];
  const std::vector<int8_t> wq = unpack(w_codes, k);
  const TensorView wt = TensorView(const_cast<int8_t*>(wq.data()), DType::kInt8, {c, k}, "w codes").transposed();
  std::vector<float> dxh(static_cast<size_t>(m * k), 0.0f);
  if (!sampling.enabled || s.scale == 0) {
    std::vector<int8_t> digits = combined(s);
    const float row_scale = s.scale > 0 ? 1.0f / s.scale : 0.0f;
    gemm_scaled(IntMatrix::of(TensorView(digits.data(), DType::kInt8, {m, c}, "grad digits")),
                TensorView(const_cast<float*>(&row_scale), DType::kFloat32, {1}), IntMatrix::of(wt),
                TensorView(const_cast<float*>(&w_scale), DType::kFloat32, {1}), nullptr,
                TensorView(dxh.data(), DType::kFloat32, {m, k}));
  } else {
    const StackedRows rows{s, m, c};
    std::vector<double> norms(static_cast<size_t>(2 * m)), p(static_cast<size_t>(2 * m));
    for (int64_t i = 0; i < 2 * m; ++i) norms[i] = rows.norm(i);
    sampling_probabilities(norms.data(), 2 * m, sampling.budget * 2.0 * static_cast<double>(m), p.data());
    const std::vector<int64_t> kept = draw_rows(p, {seed, 1});
    const int64_t n = static_cast<int64_t>(kept.size());
    std::vector<int8_t> compact(static_cast<size_t>(n * c));
    std::vector<float> factor(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      std::copy(rows.row(kept[j]), rows.row(kept[j]) + c, compact.data() + j * c);
      factor[j] = static_cast<float>(rows.weight(kept[j]) / (static_cast<double>(s.scale) * p[kept[j]]));
    }
    std::vector<float> partial(static_cast<size_t>(n * k));
    if (n > 0) {
      gemm_scaled(IntMatrix::of(TensorView(compact.data(), DType::kInt8, {n, c}, "kept digits")),
                  TensorView(factor.data(), DType::kFloat32, {n}), IntMatrix::of(wt),
                  TensorView(const_cast<float*>(&w_scale), DType::kFloat32, {1}), nullptr,
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

// dw from the split gradient (arguments checked by hq_linear_backward).
void grad_weight(const Split& s, int64_t m, int64_t c, const HqCodes& x_codes, int64_t k, int64_t block,
                 SamplingOptions sampling, uint64_t seed, const TensorView& dw) {
  const float x_scale = x_codes.scale.data_as<float>()[0];
  const std::vector<int8_t> xq = unpack(x_codes, k);
  std::vector<float> dwh(static_cast<size_t>(c * k), 0.0f);
  const TensorView out(dwh.data(), DType::kFloat32, {c, k});
  if (!sampling.enabled || s.scale == 0) {
    std::vector<int8_t> digits = combined(s);
    const float row_scale = s.scale > 0 ? 1.0f / s.scale : 0.0f;
    gemm_scaled(IntMatrix::of(TensorView(digits.data(), DType::kInt8, {m, c}, "grad digits").transposed()),
                TensorView(const_cast<float*>(&row_scale), DType::kFloat32, {1}),
                IntMatrix::of(TensorView(const_cast<int8_t*>(xq.data()), DType::kInt8, {m, k}, "x codes").transposed()),
                TensorView(const_cast<float*>(&x_scale), DType::kFloat32, {1}), nullptr, out);
  } else {
    const StackedRows rows{s, m, c};
    std::vector<double> scores(static_cast<size_t>(2 * m)), p(static_cast<size_t>(2 * m));
    std::vector<double> x_norm(static_cast<size_t>(m));
    for (int64_t t = 0; t < m; ++t) {
      int64_t sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += xq[t * k + j] * xq[t * k + j];
      x_norm[t] = std::sqrt(static_cast<double>(sum));
    }
    for (int64_t i = 0; i < 2 * m; ++i) scores[i] = rows.norm(i) * x_norm[i % m];
    sampling_probabilities(scores.data(), 2 * m, sampling.budget * 2.0 * static_cast<double>(m), p.data());
    const std::vector<int64_t> kept = draw_rows(p, {seed, 2});
    const int64_t n = static_cast<int64_t>(kept.size());
    // Kept rows scaled by weight / p, requantized to int4 with one scale (stochastic).
    std::vector<float> scaled(static_cast<size_t>(n * c));
    std::vector<int8_t> x_kept(static_cast<size_t>(n * k));
    for (int64_t j = 0; j < n; ++j) {
      const double f = rows.weight(kept[j]) / p[kept[j]];
      const int8_t* r = rows.row(kept[j]);
      for (int64_t t = 0; t < c; ++t) scaled[j * c + t] = static_cast<float>(f * r[t]);
      std::copy(xq.data() + (kept[j] % m) * k, xq.data() + (kept[j] % m + 1) * k, x_kept.data() + j * k);
    }
    if (n > 0) {
      std::vector<int8_t> r_codes(static_cast<size_t>(n * c));
      float r_scale = 0;
      quantize_absmax(TensorView(scaled.data(), DType::kFloat32, {n, c}, "sampled gradient"),
                      TensorView(r_codes.data(), DType::kInt8, {n, c}), TensorView(&r_scale, DType::kFloat32, {1}),
                      8, Rounding::kStochastic, {seed, 3});
      const float a_scale = r_scale / s.scale;
      gemm_scaled(IntMatrix::of(TensorView(r_codes.data(), DType::kInt8, {n, c}, "sampled digits").transposed()),
                  TensorView(const_cast<float*>(&a_scale), DType::kFloat32, {1}),
                  IntMatrix::of(TensorView(x_kept.data(), DType::kInt8, {n, k}, "kept x codes").transposed()),
                  TensorView(const_cast<float*>(&x_scale), DType::kFloat32, {1}), nullptr, out);
    }
  }
  hadamard_into(dwh, c, k, block, dw);
}

}  // namespace

void hq_linear_backward(const TensorView& grad, const HqCodes& x_codes, const HqCodes& w_codes, int64_t k,
                        int64_t block, SamplingOptions sampling, uint64_t seed, const TensorView* dx,
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
  if (dx != nullptr) check_codes(fn, w_codes, c, k);
  if (dw != nullptr) check_codes(fn, x_codes, m, k);
  check_disjoint(fn, {dx, dw}, {&grad, &x_codes.codes, &x_codes.scale, &w_codes.codes, &w_codes.scale});
  if (dx == nullptr && dw == nullptr) return;
  const Split s = split(grad, seed);  // one split serves both gradients
  if (dx != nullptr) grad_input(s, m, c, w_codes, k, block, sampling, seed, *dx);
  if (dw != nullptr) grad_weight(s, m, c, x_codes, k, block, sampling, seed, *dw);
}

}  // namespace intcore

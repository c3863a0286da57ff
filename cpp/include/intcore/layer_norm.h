// Layer norm over the last dimension in dynamic fixed point (docs/integer-finetuning.md):
// integer sums and products throughout, results mapped back to float at the end.
//
// Forward, per row of N mapped inputs q (shared exponent e_x):
//   S1 = sum q, S2 = sum q^2                               (int64)
//   D  = N S2 - S1^2 + eps_q   (= N^2 (var + eps) in units of 2^(2 e_x); eps_q rounded once)
//   r  = 1/sqrt(D) as m * 2^e (m has 30 fractional bits)   (integer Newton iteration, or a
//                                                            per-row float option)
//   xhat = (N q - S1) * r, mapped to `bits` bits with one shared exponent
//   y = gamma * xhat + beta (gamma, beta mapped to `bits` bits; integer product, exponents add)
// Backward, with dy mapped to `grad_bits` bits (stochastic by default) and G = dy_q gamma_q:
//   dbeta = sum_rows dy, dgamma = sum_rows dy * xhat               (int64 column sums)
//   dx = m 2^(e - e_x + e_g) (N G - sum G - xhat_q sum(G xhat_q) 2^(2 e_xhat))   (int128)
// RMSNorm (centered = false) is the same pipeline with S1 taken as 0 (D = N S2 + eps_q =
// N^2 (mean(x^2) + eps), xhat = N q r = x / rms) and no beta, and its backward drops the
// sum G term: dx = m 2^(e - e_x + e_g) (N G - xhat_q sum(G xhat_q) 2^(2 e_xhat)).
#pragma once

#include <cstdint>

#include "intcore/philox.h"
#include "intcore/quantize.h"
#include "intcore/tensor_view.h"

namespace intcore {

enum class RsqrtMode { kInteger, kFloat };

// Widest row (features N) the layer norm accepts: its integer bounds are checked up to it
// (N S2 and S1^2 below 2^62, (N q - S1) * rstd and the backward's row sums of products in
// int64), which the portable kernels (python/intcore/backends/portable/layer_norm.py) rely on.
constexpr int64_t kLayerNormMaxFeatures = 65536;

// The saved xhat exponents the backward accepts. The forward writes -15..9 (|xhat| <= sqrt(N));
// beyond [-62, 25] the correction xhat sum(G xhat) 2^(2e) (|xhat| < 2^15, |sum| < 2^61) or its
// shift -2e would leave the backward's 128-bit arithmetic.
constexpr int32_t kLayerNormMinXhatExponent = -62;
constexpr int32_t kLayerNormMaxXhatExponent = 25;

struct LayerNormOptions {
  int bits = 16;         // input, xhat, gamma and beta mantissas
  double eps = 1e-5;
  Rounding rounding = Rounding::kStochastic;  // for the input and xhat; gamma/beta use nearest
  RsqrtMode rsqrt = RsqrtMode::kInteger;
  // One input exponent per row instead of per tensor: rows are normalized independently, so
  // a row with a few huge activations no longer coarsens every other row's grid.
  bool per_row_input = false;
  // false: RMSNorm (no mean subtracted; beta must be null).
  bool centered = true;
};

// What the forward keeps for the backward, allocated by the caller (R rows of N).
struct LayerNormSaved {
  TensorView xhat;            // int16 [R, N]
  TensorView xhat_exponent;   // int32 [1]
  TensorView x_exponent;      // int32 [1], or [R] with per_row_input
  TensorView rstd_mantissa;   // int64 [R]
  TensorView rstd_exponent;   // int32 [R]
  TensorView gamma;           // int16 [N] (ignored without gamma)
  TensorView gamma_exponent;  // int32 [1]
};

// x: [R, N] any float dtype; gamma, beta: [N] float or null; y: float32 [R, N].
void fixed_point_layer_norm_forward(const TensorView& x, const TensorView* gamma, const TensorView* beta,
                                    const LayerNormOptions& options, RandomStream stream, const TensorView& y,
                                    const LayerNormSaved& saved);

// dy: [R, N] any float dtype. dx: float32 [R, N]; dgamma, dbeta: float32 [N] or null.
// has_gamma says whether the forward had gamma (saved.gamma is then valid); centered is the
// forward's option (false: RMSNorm, dbeta must be null).
void fixed_point_layer_norm_backward(const TensorView& dy, const LayerNormSaved& saved, bool has_gamma,
                                     bool centered, int grad_bits, Rounding rounding, RandomStream stream, const TensorView& dx,
                                     const TensorView* dgamma, const TensorView* dbeta);

// 1/sqrt(d) for d > 0 as m * 2^e with m in (2^29, 2^30]: fixed-point Newton iteration in
// integers only (kInteger) or one double square root (kFloat). Exposed for tests.
void rsqrt_fixed(unsigned __int128 d, RsqrtMode mode, int64_t* m, int32_t* e);

}  // namespace intcore

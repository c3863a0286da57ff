// INT4 training (docs/int4-training.md): the Hadamard quantizer (HQ) forward, and the
// backward's bit splitting and leverage score sampling (LSS).
//
// Notation: y = x w^T, x [M, K] (tokens x in_features), w [C, K], G = dL/dy [M, C].
// Forward: XH = x H, WH = w H (H block-diagonal Hadamard along K), each quantized to int4
// codes in [-7, 7], round to nearest, with absmax scales: one per tensor, or (per_row) one per
// row of XH (token) and of WH (output channel). y = QX QW^T sx sw^T + b.
// Backward: a gradient matrix is split into two int4 digits, G ~ (14 h + l) / s with
// s = 98 / max|G| (per row of the matrix split, or per tensor), h = round(G s / 14),
// l = stochastic_round(G s - 14 h); no digit is clipped. Each gradient folds the saved
// operand's scales into G where they lie along its reduction, so that the integer product needs
// none:
//   grad-input:  dX H = G (QW sw) = (G sw) QW: G's columns times w's scales, split per token;
//                dX H = sum over digit rows of (w_i / (s_t p_i)) row_i QW.
//   grad-weight: dW H = G^T (QX sx) = (G^T sx) QX: G^T's columns times x's scales, split per
//                output channel; dW H = (digits / s) QX, the digits' token rows summed.
// The 2M stacked digit rows (h rows weighted 14, l rows weighted 1) are sampled: row i is kept
// with probability p_i (sum p_i = budget * 2M, each p_i <= 1, the excess re-spread), kept rows
// are divided by p_i, so both gradients are unbiased estimates of the products with the mapped G.
//   grad-input:  p_i ~ w_i ||row i|| / s_t (the row's true size);
//   grad-weight: p_i ~ w_i ||row i|| ||QX row of its token|| (the digits alone: with one s per
//                channel, a true norm would need float sums whose order the backends must
//                share); the kept rows, scaled by w_i / p_i and divided by their channel's s,
//                are re-encoded in int8 (stochastic rounding, unbiased; per channel or per
//                tensor) and dW H = R^T QX_kept. The re-encoding is int8, not int4: the rows mix
//                high digits (x14) and low digits, and one int4 grid would crush the low ones
//                (measured on a 256x128x64 layer: dW SNR 6.2 dB with int4, 10.8 dB with int8,
//                10.8 dB without sampling). An int8 x int4 product costs what int4 x int4 does
//                on the CPU and on Hopper (no int4 tensor cores).
// Then dX = (dX H) H and dW = (dW H) H. With sampling off, the digits combine exactly into
// 14 h + l (an int8 code) and each gradient is one GEMM over all rows.
#pragma once

#include <cstdint>
#include <vector>

#include "intcore/philox.h"
#include "intcore/tensor_view.h"

namespace intcore {

struct HqCodes {
  TensorView codes;  // uint8 [rows, ceil(K / 2)], packed int4
  TensorView scale;  // float32 [rows] (per row) or [1] (per tensor)
};

// x: [M, K], w: [C, K] (any float dtype/strides), bias: [C] or null, K % block == 0.
// out: float32 [M, C]; x_codes / w_codes receive the int4 codes the backward reuses, with
// scales [M] and [C] (per_row) or [1]. x_step / w_step: float32 [1] learned step sizes (LSQ) to
// quantize with instead of absmax scales (per tensor only), or null.
void hq_linear_forward(const TensorView& x, const TensorView& w, const TensorView* bias, int64_t block, bool per_row,
                       const TensorView& out, const HqCodes& x_codes, const HqCodes& w_codes,
                       const TensorView* x_step = nullptr, const TensorView* w_step = nullptr);

struct SamplingOptions {
  bool enabled = true;
  double budget = 0.5;  // expected fraction of the 2M stacked digit rows kept
};

// dx: float32 [M, K] (needs w_codes), dw: float32 [C, K] (needs x_codes); either may be null.
// per_row: the codes' scales are per row (as the forward wrote them), and G is split per token
// for dx and per output channel for dw. Random streams of `seed`: offset 0 the split for dx, 1
// the grad-input sampling, 2 the grad-weight sampling, 3 its requantization, 4 the split for dw.
void hq_linear_backward(const TensorView& grad, const HqCodes& x_codes, const HqCodes& w_codes, int64_t k,
                        int64_t block, bool per_row, SamplingOptions sampling, uint64_t seed, const TensorView* dx,
                        const TensorView* dw);

// The pieces, exposed for tests and the bindings.
// G [M, C] -> high, low: int8 [M, C] in [-7, 7]; scale: float32 [1] (one s) or [M] (s per row).
void split_gradient(const TensorView& grad, RandomStream stream, const TensorView& high, const TensorView& low,
                    const TensorView& scale);
// Keep probabilities proportional to weights (>= 0), each at most 1, summing to
// min(budget, number of positive weights): the water-filling solution.
void sampling_probabilities(const double* weights, int64_t n, double budget, double* p);
// Rows kept by independent Bernoulli draws with probabilities p: row i is kept when the top 24
// bits of stream word i, read as a fraction, fall below p[i].
std::vector<int64_t> draw_rows(const std::vector<double>& p, RandomStream stream);

}  // namespace intcore

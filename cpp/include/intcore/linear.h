// Linear layers on absmax-scaled integers (int8 or int4): y = x w^T + bias, with x [M, K] and
// w [N, K] of any float dtype and strides.
//
// Forward: x and w quantized per row (round to nearest), one integer GEMM, scales and bias in
// the epilogue. Backward: every GEMM again has its reduction dimension inside the quantized
// rows, so that the per-row scales factor out of the sum:
//   dx = G W   uses G per row (stochastic rounding, stream offset 0) and W^T per row;
//   dw = G^T X uses G^T per row (stochastic, stream offset 1) and X^T per row.
#pragma once

#include <cstdint>

#include "intcore/tensor_view.h"

namespace intcore {

// out: float32 [M, N] contiguous. bias: float32 [N] contiguous, or null.
void absmax_linear_forward(const TensorView& x, const TensorView& w, const TensorView* bias, int bits,
                           const TensorView& out);

// dx = grad w: grad [M, N], w [N, K] (any float dtype and strides) -> dx float32 [M, K].
void absmax_linear_grad_input(const TensorView& grad, const TensorView& w, int bits, uint64_t seed,
                              const TensorView& dx);

// dw = grad^T x: grad [M, N], x [M, K] -> dw float32 [N, K]. With the same seed as
// grad_input, the two draw from independent streams (offsets 0 and 1).
void absmax_linear_grad_weight(const TensorView& grad, const TensorView& x, int bits, uint64_t seed,
                               const TensorView& dw);

}  // namespace intcore

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

// out: float32 [M, N] contiguous. bias: [N] any float dtype, or null.
void absmax_linear_forward(const TensorView& x, const TensorView& w, const TensorView* bias, int bits,
                           const TensorView& out);

// grad: [M, N] any float dtype. dx: float32 [M, K], dw: float32 [N, K], contiguous; either may
// be null when that gradient is not needed. `seed` keys the stochastic rounding of grad.
void absmax_linear_backward(const TensorView& grad, const TensorView& x, const TensorView& w, int bits,
                            uint64_t seed, const TensorView* dx, const TensorView* dw);

}  // namespace intcore

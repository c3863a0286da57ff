// Exact integer GEMMs in the nn.Linear layout: C = A B^T with A [M, K] and B [N, K].
//
// Operands are int8 or int16 matrices, or int4 packed two per byte (uint8 [rows, ceil(K/2)],
// low nibble = even column). Any strides are accepted: packing into the kernel's panel layout
// is where a transposed operand gets transposed, so `x.transposed()` costs no extra pass.
// int16 operands are split into 8-bit limbs (hi signed, lo unsigned) and combined in int64,
// so 9..16-bit mantissas stay exact (docs/design.md, "Numbers").
#pragma once

#include <cstdint>

#include "intcore/tensor_view.h"

namespace intcore {

struct IntMatrix {
  TensorView values;  // int8 / int16 [rows, k], or uint8 [rows, ceil(k / 2)] packed int4
  int64_t k = 0;
  bool packed_int4 = false;

  static IntMatrix of(const TensorView& values);                // int8 or int16
  static IntMatrix int4(const TensorView& packed, int64_t k);   // packed int4
  int64_t rows() const { return values.size(0); }
};

// c = a b^T exactly. c is int32 [M, N] (int8/int4 operands, K < 2^17 so no sum can overflow)
// or int64 [M, N] (any operands), contiguous.
void gemm_exact(const IntMatrix& a, const IntMatrix& b, const TensorView& c);

// out[i, j] = float(acc[i, j] * sa[i] * sb[j]) + bias[j], acc = (a b^T)[i, j] exact.
// Scales are float32 (a multiplier) or int32 (a power-of-two exponent), each of shape [1] or
// [rows]. The product is formed in double, so exponents and the int64 limb sums are rounded
// once. bias: float32 [N] or null. out: float32 [M, N] contiguous.
void gemm_scaled(const IntMatrix& a, const TensorView& a_scale, const IntMatrix& b, const TensorView& b_scale,
                 const TensorView* bias, const TensorView& out);

}  // namespace intcore

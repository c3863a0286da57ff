// Quantizers: float tensors to integers and back.
//
// Dynamic fixed point (docs/integer-finetuning.md): x ~= q * 2^e, q a signed `bits`-bit
// mantissa (2..16), e the exponent of the least significant bit, shared per tensor or per row.
// e = e_max - (bits - 1) where |x| < 2^e_max (frexp convention), so |q| <= 2^(bits-1) - 1.
// Mantissas are int8 for bits <= 8 and int16 above.
//
// Absmax scaled integers (int8 and int4): x ~= q * s with s = absmax / qmax (qmax = 127 or 7),
// per tensor or per row; int4 codes are packed two per byte, the low nibble holding the even
// column. A row (or tensor) of zeros gets s = 0 and q = 0.
//
// Inputs are 2-D views of any float dtype and any strides (a transposed view quantizes the
// transpose with no copy). Rows are dimension 0. NaN or Inf in the input raises ValueError.
// Stochastic rounding draws element (r, c)'s bits from `stream` at index r * cols + c.
#pragma once

#include <cstdint>

#include "intcore/philox.h"
#include "intcore/tensor_view.h"

namespace intcore {

enum class Rounding { kNearest, kStochastic };
enum class Granularity { kPerTensor, kPerRow };

// mantissa: int8 (bits <= 8) or int16, contiguous [rows, cols]. exponent: int32 [1] or [rows].
void quantize_fixed_point(const TensorView& x, const TensorView& mantissa, const TensorView& exponent,
                          int bits, Rounding rounding, RandomStream stream);
// out: float32 [rows, cols] = mantissa * 2^exponent.
void dequantize_fixed_point(const TensorView& mantissa, const TensorView& exponent, const TensorView& out);

// Moves per-row mantissas onto one shared exponent (the largest): each mantissa is shifted
// right by (e_max - e_row) and rounded to nearest (ties to even) -- the hardware view of the
// spec. mantissa/out: int8 or int16 [rows, cols] (same dtype); exponent: int32 [rows];
// out_exponent: int32 [1]. Lets per-row operands serve in GEMMs that reduce across rows.
void align_fixed_point(const TensorView& mantissa, const TensorView& exponent, const TensorView& out,
                       const TensorView& out_exponent);

// bits 8: q int8 [rows, cols]; bits 4: q uint8 [rows, ceil(cols / 2)] packed. scale: float32
// [1] or [rows] (the granularity follows the scale's shape).
void quantize_absmax(const TensorView& x, const TensorView& q, const TensorView& scale, int bits,
                     Rounding rounding, RandomStream stream);
// The same rounding with scales given rather than computed (learned step sizes): float32 [1]
// or [rows], finite and >= 0 (a zero scale gives zero codes). CPU only so far.
void quantize_scaled(const TensorView& x, const TensorView& q, const TensorView& scale, int bits, Rounding rounding,
                     RandomStream stream);
// out: float32 [rows, cols] = q * scale; for bits 4, cols is out's size 1.
void dequantize_absmax(const TensorView& q, const TensorView& scale, int bits, const TensorView& out);

// int4 packing: int8 values in [-8, 7], [rows, cols] <-> uint8 [rows, ceil(cols / 2)].
void pack_int4(const TensorView& values, const TensorView& packed);
void unpack_int4(const TensorView& packed, const TensorView& values);

}  // namespace intcore

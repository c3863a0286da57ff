// Internal helper for the fixed-point ops: quantize a 2-D float view and hand back the
// mantissas widened to int32, so the integer arithmetic downstream has one element type.
#pragma once

#include <cstdint>
#include <vector>

#include "intcore/quantize.h"

namespace intcore {

struct FixedPointRows {
  std::vector<int32_t> mantissa;   // [rows * cols]
  std::vector<int32_t> exponents;  // [1] (per tensor) or [rows]
  int32_t exponent(int64_t row) const { return exponents.size() == 1 ? exponents[0] : exponents[row]; }
};

// Per-row max |x| of a 2-D float view; raises ValueError naming x on NaN or Inf.
std::vector<float> row_absmax(const std::string& fn, const TensorView& x);
// The max |x| each row is quantized with: its own (per_row), or the whole tensor's in every entry.
std::vector<float> quantizer_absmax(const std::string& fn, const TensorView& x, bool per_row);

// The LSB exponent of `bits`-bit mantissas shared by all of x: frexp(max |x|) - (bits - 1).
int32_t shared_exponent(const std::string& fn, const TensorView& x, int bits);

FixedPointRows quantize_per_tensor(const TensorView& x, int bits, Rounding rounding, RandomStream stream);
// The same with one exponent per row when per_row is set.
FixedPointRows quantize_rows(const TensorView& x, int bits, Rounding rounding, RandomStream stream, bool per_row);

}  // namespace intcore

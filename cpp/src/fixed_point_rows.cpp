#include "fixed_point_rows.h"

#include <algorithm>
#include <cmath>

namespace intcore {

int32_t shared_exponent(const std::string& fn, const TensorView& x, int bits) {
  const std::vector<float> absmax = row_absmax(fn, x);
  int e_max = 0;
  std::frexp(absmax.empty() ? 0.0f : *std::max_element(absmax.begin(), absmax.end()), &e_max);
  return e_max - (bits - 1);
}

FixedPointRows quantize_per_tensor(const TensorView& x, int bits, Rounding rounding, RandomStream stream) {
  return quantize_rows(x, bits, rounding, stream, false);
}

FixedPointRows quantize_rows(const TensorView& x, int bits, Rounding rounding, RandomStream stream, bool per_row) {
  const int64_t rows = x.size(0), cols = x.size(1);
  FixedPointRows out;
  out.mantissa.resize(static_cast<size_t>(rows * cols));
  out.exponents.resize(per_row && rows > 1 ? static_cast<size_t>(rows) : 1);
  const TensorView exponent(out.exponents.data(), DType::kInt32, {static_cast<int64_t>(out.exponents.size())},
                            x.name() + " exponent");
  if (bits <= 8) {
    std::vector<int8_t> q(out.mantissa.size());
    quantize_fixed_point(x, TensorView(q.data(), DType::kInt8, {rows, cols}, x.name() + " mantissa"), exponent, bits,
                         rounding, stream);
    for (size_t i = 0; i < q.size(); ++i) out.mantissa[i] = q[i];
  } else {
    std::vector<int16_t> q(out.mantissa.size());
    quantize_fixed_point(x, TensorView(q.data(), DType::kInt16, {rows, cols}, x.name() + " mantissa"), exponent, bits,
                         rounding, stream);
    for (size_t i = 0; i < q.size(); ++i) out.mantissa[i] = q[i];
  }
  return out;
}

}  // namespace intcore

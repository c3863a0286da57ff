// Reading the float dtypes a TensorView may hold as float, and dispatching on them once per
// call rather than once per element.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "intcore/tensor_view.h"

namespace intcore {

struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

inline float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline float to_float(float v) { return v; }
inline float to_float(double v) { return static_cast<float>(v); }
inline float to_float(BFloat16 v) { return bits_to_float(static_cast<uint32_t>(v.bits) << 16); }
inline float to_float(Half v) {
  const uint32_t sign = static_cast<uint32_t>(v.bits & 0x8000u) << 16;
  const uint32_t exponent = (v.bits >> 10) & 0x1Fu;
  uint32_t mantissa = v.bits & 0x3FFu;
  if (exponent == 0x1F) return bits_to_float(sign | 0x7F800000u | (mantissa << 13));  // Inf, NaN
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_to_float(sign);
  // Subnormal half: normalize into a float.
  int shift = 0;
  while (!(mantissa & 0x400u)) {
    mantissa <<= 1;
    ++shift;
  }
  return bits_to_float(sign | static_cast<uint32_t>(113 - shift) << 23 | ((mantissa & 0x3FFu) << 13));
}

// 2^e as a double, exactly, without a libm call (the quantizers' inner loops multiply by it).
inline double pow2(int e) {
  if (e < -1022 || e > 1023) return std::ldexp(1.0, e);
  const uint64_t bits = static_cast<uint64_t>(e + 1023) << 52;
  double d;
  std::memcpy(&d, &bits, sizeof(d));
  return d;
}

// Calls fn(T{}) with T the C++ type of a float dtype.
template <class Fn>
void dispatch_float(const std::string& fn_name, const TensorView& t, Fn&& fn) {
  switch (t.dtype()) {
    case DType::kFloat32: fn(float{}); return;
    case DType::kFloat64: fn(double{}); return;
    case DType::kBFloat16: fn(BFloat16{}); return;
    case DType::kFloat16: fn(Half{}); return;
    default: check_floating(fn_name, t);
  }
}

}  // namespace intcore

// Reading the float dtypes a TensorView may hold as float, and dispatching on them once per
// call rather than once per element.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <climits>

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

inline uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// float -> bfloat16 / float16 with round-to-nearest-even (NaN stays NaN).
inline BFloat16 to_bfloat16(float f) {
  const uint32_t bits = float_to_bits(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return BFloat16{static_cast<uint16_t>((bits >> 16) | 0x40u)};
  return BFloat16{static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16)};
}

inline Half to_half(float f) {
  const uint32_t bits = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return Half{static_cast<uint16_t>(sign | 0x7E00u)};  // NaN
  if (abs >= 0x477FF000u) return Half{static_cast<uint16_t>(sign | 0x7C00u)};  // rounds to Inf
  if (abs < 0x38800000u) {  // half subnormal (or zero): round abs * 2^24 to an integer
    const float scaled = bits_to_float(abs) * 16777216.0f;  // exact: a power-of-two scaling
    return Half{static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)))};
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
  const uint32_t rounded = abs + 0xFFFu + ((abs >> 13) & 1u);
  return Half{static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13))};
}

// 2^e as a double, exactly, without a libm call (the quantizers' inner loops multiply by it).
inline double pow2(int e) {
  if (e < -1022 || e > 1023) return std::ldexp(1.0, e);
  const uint64_t bits = static_cast<uint64_t>(e + 1023) << 52;
  double d;
  std::memcpy(&d, &bits, sizeof(d));
  return d;
}

// The exponent the CUDA fixed-point quantizer writes for a row (or tensor) holding NaN or Inf,
// where raising would need a host synchronization. Every backend reads it as a NaN step, so
// such codes stay NaN wherever they go (the CPU quantizer raises instead and never writes it).
constexpr int32_t kNanExponent = INT32_MIN;

// The step 2^e of fixed-point codes with exponent e: NaN for kNanExponent.
inline double exponent_step(int32_t e) { return e == kNanExponent ? std::nan("") : pow2(e); }

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

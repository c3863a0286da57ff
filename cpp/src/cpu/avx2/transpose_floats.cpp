// 8 x 8 float blocks (transpose_floats.h): eight 8-float columns read along memory, then the
// usual three rounds in ymm registers: unpack pairs within 128-bit lanes, shuffle 64-bit
// halves, swap 128-bit lanes.
#include "transpose_floats.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
// GCC 12 reports the intrinsics' own placeholder operands as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace intcore {

__attribute__((target("avx2"))) void transpose8_floats_avx2(const float* src, int64_t cs, float* dst, int64_t ld) {
  __m256 w[8], t[8];
  for (int c = 0; c < 8; ++c) w[c] = _mm256_loadu_ps(src + c * cs);
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(w[2 * i], w[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(w[2 * i], w[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {  // w[4i + q]: word q (and q + 4) of rows 4i .. 4i + 3
    w[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    w[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    w[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    w[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int q = 0; q < 4; ++q) {
    _mm256_storeu_ps(dst + q * ld, _mm256_permute2f128_ps(w[q], w[q + 4], 0x20));
    _mm256_storeu_ps(dst + (q + 4) * ld, _mm256_permute2f128_ps(w[q], w[q + 4], 0x31));
  }
}

}  // namespace intcore

#else  // not x86-64: never selected

namespace intcore {
void transpose8_floats_avx2(const float*, int64_t, float*, int64_t) {}
}  // namespace intcore

#endif

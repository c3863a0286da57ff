// 16 x 16 float blocks (transpose_floats.h): sixteen 16-float columns read along memory, then
// the register transpose of transpose16.h.
#include "transpose_floats.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
// GCC 12 reports the intrinsics' own placeholder operands as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "cpu/avx512/transpose16.h"

namespace intcore {

__attribute__((target("avx512f"))) void transpose16_floats_avx512(const float* src, int64_t cs, float* dst,
                                                                   int64_t ld) {
  __m512i w[16];
  for (int c = 0; c < 16; ++c) w[c] = _mm512_castps_si512(_mm512_loadu_ps(src + c * cs));
  transpose16_avx512(w);
  for (int r = 0; r < 16; ++r) _mm512_storeu_ps(dst + r * ld, _mm512_castsi512_ps(w[r]));
}

}  // namespace intcore

#else  // not x86-64: never selected

namespace intcore {
void transpose16_floats_avx512(const float*, int64_t, float*, int64_t) {}
}  // namespace intcore

#endif

// Streamed output (gemm_epilogue.h): the scaled epilogue of a full tile row in the order of
// operations of scale_tile_row (gemm.cpp), so the floats are the same.
#include "gemm_epilogue.h"

#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
// GCC 12 reports the intrinsics' own placeholder operands as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace intcore {

__attribute__((target("avx512f"))) void scale_row_stream_avx512(const int32_t* tile, double rs, const double* cs,
                                                                 const float* bias, float* dst) {
  const __m512d row_scale = _mm512_set1_pd(rs);
  for (int j = 0; j < kNR; j += 16) {
    const __m512i t = _mm512_loadu_si512(tile + j);
    const __m512d lo = _mm512_mul_pd(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(t)), row_scale),
                                     _mm512_loadu_pd(cs + j));
    const __m512d hi = _mm512_mul_pd(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(t, 1)), row_scale),
                                     _mm512_loadu_pd(cs + j + 8));
    __m512 v = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo))),
                                                    _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1));
    if (bias != nullptr) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + j));
    _mm512_stream_ps(dst + j, v);
  }
}

}  // namespace intcore

#else

namespace intcore {
void scale_row_stream_avx512(const int32_t*, double, const double*, const float*, float*) {}  // never selected
}  // namespace intcore

#endif

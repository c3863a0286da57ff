// AVX-512 VNNI micro-kernel: 6 x 64 int32 accumulators in 24 zmm registers. Per group of four
// k it loads four 64-byte B vectors, broadcasts four A bytes per row, and issues 24 vpdpbusd
// (u8 x s8, four products summed into each int32 lane, no saturation).
// Compiled with a target attribute, so the rest of the engine stays baseline x86-64 and this
// kernel only runs where cpu_kernel.cpp has seen the instructions.
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <cstring>

namespace intcore {
namespace {

// Four A bytes as one int32, read straight from the panel: the broadcast then loads from memory
// (vpbroadcastd m32), with no trip through a stack copy or a general register.
inline int32_t load_u32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void microkernel_avx512_vnni(const uint8_t* a,
                                                                                   const int8_t* b, int64_t k4,
                                                                                   const int32_t* start,
                                                                                   int32_t* c, int64_t ldc,
                                                                                   bool stream) {
  __m512i c00 = _mm512_loadu_si512(start), c01 = _mm512_loadu_si512(start + 16);
  __m512i c02 = _mm512_loadu_si512(start + 32), c03 = _mm512_loadu_si512(start + 48);
  __m512i c10 = c00, c11 = c01, c12 = c02, c13 = c03;
  __m512i c20 = c00, c21 = c01, c22 = c02, c23 = c03;
  __m512i c30 = c00, c31 = c01, c32 = c02, c33 = c03;
  __m512i c40 = c00, c41 = c01, c42 = c02, c43 = c03;
  __m512i c50 = c00, c51 = c01, c52 = c02, c53 = c03;
  // Two groups per iteration: a few percent over one, from fewer loop branches.
#pragma GCC unroll 2
  for (int64_t k = 0; k < k4; ++k) {
    const int8_t* bk = b + k * kNR * 4;
    const uint8_t* ak = a + k * kMR * 4;
    const __m512i b0 = _mm512_loadu_si512(bk);
    const __m512i b1 = _mm512_loadu_si512(bk + 64);
    const __m512i b2 = _mm512_loadu_si512(bk + 128);
    const __m512i b3 = _mm512_loadu_si512(bk + 192);
#define INTCORE_ROW(i, r0, r1, r2, r3)                                \
  {                                                                   \
    const __m512i ai = _mm512_set1_epi32(load_u32(ak + 4 * (i))); \
    r0 = _mm512_dpbusd_epi32(r0, ai, b0);                             \
    r1 = _mm512_dpbusd_epi32(r1, ai, b1);                             \
    r2 = _mm512_dpbusd_epi32(r2, ai, b2);                             \
    r3 = _mm512_dpbusd_epi32(r3, ai, b3);                             \
  }
    INTCORE_ROW(0, c00, c01, c02, c03)
    INTCORE_ROW(1, c10, c11, c12, c13)
    INTCORE_ROW(2, c20, c21, c22, c23)
    INTCORE_ROW(3, c30, c31, c32, c33)
    INTCORE_ROW(4, c40, c41, c42, c43)
    INTCORE_ROW(5, c50, c51, c52, c53)
#undef INTCORE_ROW
  }
  const __m512i rows[kMR][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                                {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
  if (stream) {
    for (int i = 0; i < kMR; ++i)
      for (int q = 0; q < 4; ++q) _mm512_stream_si512(reinterpret_cast<__m512i*>(c + i * ldc + q * 16), rows[i][q]);
  } else {
    for (int i = 0; i < kMR; ++i)
      for (int q = 0; q < 4; ++q) _mm512_storeu_si512(c + i * ldc + q * 16, rows[i][q]);
  }
}

}  // namespace intcore

#else  // not x86-64: cpu_kernel.cpp never selects this kernel

namespace intcore {
void microkernel_avx512_vnni(const uint8_t* a, const int8_t* b, int64_t k4, const int32_t* start, int32_t* c,
                             int64_t ldc, bool stream) {
  microkernel_generic(a, b, k4, start, c, ldc, stream);
}
}  // namespace intcore

#endif

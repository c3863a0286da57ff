// A 16 x 16 transpose of 32-bit words in AVX-512 registers: unpack within 128-bit lanes, then
// two rounds of lane shuffles (64 shuffles for what scalar code does with 256 loads and
// stores). Used by the quantizers (float tiles of transposed views) and the GEMM packer (int8
// rows into kernel panels). Only call under a CPU kernel with AVX-512 (cpu_kernel.h).
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace intcore {

// On return w[j] holds word j of every input: lane i of w[j] = lane j of the input row w[i].
__attribute__((target("avx512f"), always_inline)) inline void transpose16_avx512(__m512i w[16]) {
  __m512i t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(w[2 * i], w[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(w[2 * i], w[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {  // w[4i + q]: lane L holds word 4L + q of rows 4i .. 4i + 3
    w[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    w[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    w[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    w[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {  // t[q]: lanes 0, 2 of rows 0-3 and 4-7; t[q + 4]: lanes 1, 3
    t[q] = _mm512_shuffle_i32x4(w[q], w[q + 4], 0x88);
    t[q + 4] = _mm512_shuffle_i32x4(w[q], w[q + 4], 0xDD);
    t[q + 8] = _mm512_shuffle_i32x4(w[q + 8], w[q + 12], 0x88);
    t[q + 12] = _mm512_shuffle_i32x4(w[q + 8], w[q + 12], 0xDD);
  }
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {  // word j from lanes 0, 2; word j + 8 from lanes 1, 3
    w[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
    w[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xDD);
  }
}

}  // namespace intcore

#endif

// Streamed output of the CPU GEMM: tiles written past the caches. A large C is written once
// and not read back soon; ordinary stores would first read every line of it from memory.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace intcore {

// dst[j] = float(tile[j] rs cs[j]) (+ bias[j]) for one full tile row (kNR columns), streamed
// (dst 64-byte aligned): the scaled epilogue of a large float output under the AVX-512 kernel,
// the same floats as gemm.cpp's scale_tile_row (cpu/avx512/gemm_epilogue.cpp).
void scale_row_stream_avx512(const int32_t* tile, double rs, const double* cs, const float* bias, float* dst);

// Orders this thread's streamed stores before anything it writes next (x86 sfence); each
// thread that streamed calls it before its work is handed on. Kernels elsewhere store plainly.
inline void stream_fence() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_sfence();
#endif
}

}  // namespace intcore

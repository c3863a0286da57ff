// AVX-VNNI micro-kernel: the VEX (256-bit) vpdpbusd of Intel Alder Lake and later and AMD Zen 5,
// which lack AVX-512 or (client Intel) have it fused off. Same operation as the AVX-512 VNNI
// kernel (u8 x s8, four products summed into each int32 lane, no saturation), so no widening:
// a row's group of four A bytes is one 4-byte broadcast. With 16 ymm registers the 64 columns
// go sixteen at a time: two B vectors, six broadcast rows, twelve accumulators. K goes in blocks
// of kBlockK4 groups so that the B block the four passes read again stays in L1 (16 KiB). No CPU
// of ours has exposed AVX-VNNI, and qemu 7.2 does not emulate it: this kernel has only been
// compiled; the tests run it wherever a CPU has the flag.
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace intcore {
namespace {

constexpr int kCols = 16;
constexpr int64_t kBlockK4 = 64;

__attribute__((target("avx2,avxvnni"), always_inline)) inline void column_pass(const uint8_t* a, const int8_t* b,
                                                                                int64_t k4, __m256i (&acc)[kMR][2]) {
  for (int64_t k = 0; k < k4; ++k) {
    const int8_t* bk = b + k * kNR * 4;
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bk));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bk + 32));
    const uint8_t* ak = a + k * kMR * 4;
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      int32_t group;
      std::memcpy(&group, ak + 4 * i, sizeof(group));
      const __m256i ai = _mm256_set1_epi32(group);
      acc[i][0] = _mm256_dpbusd_avx_epi32(acc[i][0], ai, b0);
      acc[i][1] = _mm256_dpbusd_avx_epi32(acc[i][1], ai, b1);
    }
  }
}

// One K block of all four column passes, part[p] += the block's sums. Not inlined: inlined into
// the kernel, GCC 12 kept copies of the accumulators on the stack inside the loop.
__attribute__((target("avx2,avxvnni"), noinline)) void block_passes(const uint8_t* a, const int8_t* b, int64_t len,
                                                                    __m256i (*part)[kMR][2]) {
  for (int p = 0; p < kNR / kCols; ++p) {
    __m256i acc[kMR][2];
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      acc[i][0] = part[p][i][0];
      acc[i][1] = part[p][i][1];
    }
    column_pass(a, b + p * kCols * 4, len, acc);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      part[p][i][0] = acc[i][0];
      part[p][i][1] = acc[i][1];
    }
  }
}

}  // namespace

__attribute__((target("avx2,avxvnni"))) void microkernel_avx_vnni(const uint8_t* a, const int8_t* b, int64_t k4,
                                                                  const int32_t* start, int32_t* c, int64_t ldc,
                                                                  bool stream) {
  alignas(32) __m256i part[kNR / kCols][kMR][2];
  for (int p = 0; p < kNR / kCols; ++p) {
    const __m256i s0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(start + p * kCols));
    const __m256i s1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(start + p * kCols + 8));
    for (int i = 0; i < kMR; ++i) {
      part[p][i][0] = s0;
      part[p][i][1] = s1;
    }
  }
  for (int64_t k0 = 0; k0 < k4; k0 += kBlockK4) {
    block_passes(a + k0 * kMR * 4, b + k0 * kNR * 4, std::min(kBlockK4, k4 - k0), part);
  }
  for (int p = 0; p < kNR / kCols; ++p) {
    for (int i = 0; i < kMR; ++i) {
      for (int h = 0; h < 2; ++h) {
        __m256i* dst = reinterpret_cast<__m256i*>(c + i * ldc + p * kCols + h * 8);
        if (stream) _mm256_stream_si256(dst, part[p][i][h]);
        else _mm256_storeu_si256(dst, part[p][i][h]);
      }
    }
  }
}

}  // namespace intcore

#else  // not x86-64: cpu_kernel.cpp never selects this kernel

namespace intcore {
void microkernel_avx_vnni(const uint8_t* a, const int8_t* b, int64_t k4, const int32_t* start, int32_t* c,
                          int64_t ldc, bool stream) {
  microkernel_generic(a, b, k4, start, c, ldc, stream);
}
}  // namespace intcore

#endif

// AVX2 micro-kernels, exact for every input: products in 16-bit lanes (vpmaddwd), no saturation.
//
// AVX2 has no vpdpbusd. Its byte multiply, vpmaddubsw, adds two u8 x s8 products into a
// saturating int16, which an A byte above 127 can overflow (2 * 255 * 128 > 32767); the usual
// way around it (ggml: |x| times sign(y, x)) is exact only while no operand byte is -128 and costs
// a sign instruction per product vector, which is what it saves. So both operands are widened to
// 16 bits and vpmaddwd forms a0 b0 + a1 b1 in int32: 16 multiply-adds per instruction, exact.
//
// Layout: A is int16 in the kernel ([k4][kMR][4]: widened once per call from the byte panel, or
// packed so by the driver for int16 operands), so a row's group of four k is one 8-byte
// broadcast. The 64 columns are walked eight at a time: two B vectors of four columns x four k
// (vpmovsxbw from 16 bytes each), six broadcast rows, twelve accumulators whose int32 lanes hold
// (column, k pair) sums; a horizontal add per row folds the pairs at the end. K goes in blocks
// of kBlockK4 groups, so the block of B that the eight column passes read again stays in L1
// (16 KiB); the accumulators wait in `part` between blocks.
//
// 16-bit A (microkernel_avx2_int16): the same passes with the int16 values themselves against
// one byte limb of B, so an int16 x int16 product takes two byte-limb products instead of the
// four of the byte kernels (half the instructions). A lane then gains up to 2 * 2^15 * 2^7 per
// group, so each block's int32 sums (at most 2 * 64 * 2^23 = 2^30) are moved into int64.
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

// GCC 12 reports the intrinsics' own placeholder operands as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace intcore {
namespace {

constexpr int kCols = 8;           // columns per pass
constexpr int64_t kBlockK4 = 64;   // groups of four k per block: 64 x 256 bytes of B

__attribute__((target("avx2"))) void widen_a(const uint8_t* a, int64_t bytes, int16_t* out) {
  int64_t t = 0;
  for (; t + 16 <= bytes; t += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + t));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + t), _mm256_cvtepu8_epi16(v));
  }
  for (; t < bytes; ++t) out[t] = a[t];
}

// Eight columns of B (from `b`, a panel row of 256 bytes per group) against the six widened
// rows, over `k4` groups: acc[i][h] += the (column, k pair) sums of columns 4h .. 4h + 3.
__attribute__((target("avx2"), always_inline)) inline void column_pass(const int16_t* aw, const int8_t* b,
                                                                       int64_t k4, __m256i (&acc)[kMR][2]) {
  for (int64_t k = 0; k < k4; ++k) {
    const int8_t* bk = b + k * kNR * 4;
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bk)));
    const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bk + 16)));
    const int16_t* ak = aw + k * kMR * 4;
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      int64_t group;
      std::memcpy(&group, ak + 4 * i, sizeof(group));
      const __m256i ai = _mm256_set1_epi64x(group);
      acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(ai, b0));
      acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(ai, b1));
    }
  }
}

// One K block (len <= kBlockK4 groups) of all eight column passes: part[p] = (accumulate ?
// part[p] : 0) + the block's sums. Not inlined, so both kernels run this one compiled loop, whose
// twelve accumulators stay in registers (inlined into the int16 kernel, GCC 12 spilled seven).
__attribute__((target("avx2"), noinline)) void block_passes(const int16_t* aw, const int8_t* b, int64_t len,
                                                            bool accumulate, __m256i (*part)[kMR][2]) {
  for (int p = 0; p < kNR / kCols; ++p) {
    __m256i acc[kMR][2];
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      acc[i][0] = accumulate ? part[p][i][0] : _mm256_setzero_si256();
      acc[i][1] = accumulate ? part[p][i][1] : _mm256_setzero_si256();
    }
    column_pass(aw, b + p * kCols * 4, len, acc);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      part[p][i][0] = acc[i][0];
      part[p][i][1] = acc[i][1];
    }
  }
}

// Row i of pass p's sums in column order: hadd gives columns (0 1 4 5 | 2 3 6 7), the 64-bit
// permute puts them in order.
__attribute__((target("avx2"), always_inline)) inline __m256i pass_row(const __m256i (&row)[2]) {
  return _mm256_permute4x64_epi64(_mm256_hadd_epi32(row[0], row[1]), 0xD8);
}

}  // namespace

__attribute__((target("avx2"))) void microkernel_avx2(const uint8_t* a, const int8_t* b, int64_t k4,
                                                      const int32_t* start, int32_t* c, int64_t ldc, bool stream) {
  thread_local std::vector<int16_t> widened;
  if (widened.size() < static_cast<size_t>(kBlockK4 * kMR * 4)) widened.resize(kBlockK4 * kMR * 4);
  alignas(32) __m256i part[kNR / kCols][kMR][2];
  for (int64_t k0 = 0; k0 < std::max<int64_t>(k4, 1); k0 += kBlockK4) {
    const int64_t len = std::min(kBlockK4, k4 - k0);
    widen_a(a + k0 * kMR * 4, len * kMR * 4, widened.data());
    block_passes(widened.data(), b + k0 * kNR * 4, len, k0 != 0, part);
  }
  for (int p = 0; p < kNR / kCols; ++p) {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(start + p * kCols));
    for (int i = 0; i < kMR; ++i) {
      const __m256i row = _mm256_add_epi32(pass_row(part[p][i]), s);
      __m256i* dst = reinterpret_cast<__m256i*>(c + i * ldc + p * kCols);
      if (stream) _mm256_stream_si256(dst, row);
      else _mm256_storeu_si256(dst, row);
    }
  }
}

__attribute__((target("avx2"))) void microkernel_avx2_int16(const int16_t* a, const int8_t* b, int64_t k4,
                                                            int64_t* c) {
  for (int i = 0; i < kMR * kNR; ++i) c[i] = 0;
  alignas(32) __m256i part[kNR / kCols][kMR][2];
  for (int64_t k0 = 0; k0 < k4; k0 += kBlockK4) {
    block_passes(a + k0 * kMR * 4, b + k0 * kNR * 4, std::min(kBlockK4, k4 - k0), false, part);
    for (int p = 0; p < kNR / kCols; ++p) {
      for (int i = 0; i < kMR; ++i) {
        const __m256i sums = pass_row(part[p][i]);
        __m256i* d = reinterpret_cast<__m256i*>(c + i * kNR + p * kCols);
        const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(sums));
        const __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(sums, 1));
        _mm256_storeu_si256(d, _mm256_add_epi64(_mm256_loadu_si256(d), lo));
        _mm256_storeu_si256(d + 1, _mm256_add_epi64(_mm256_loadu_si256(d + 1), hi));
      }
    }
  }
}

}  // namespace intcore

#else  // not x86-64: cpu_kernel.cpp never selects this kernel

namespace intcore {
void microkernel_avx2(const uint8_t* a, const int8_t* b, int64_t k4, const int32_t* start, int32_t* c, int64_t ldc,
                      bool stream) {
  microkernel_generic(a, b, k4, start, c, ldc, stream);
}
void microkernel_avx2_int16(const int16_t*, const int8_t*, int64_t, int64_t*) {}  // never selected
}  // namespace intcore

#endif

// The int8 row packer in AVX-512: 16 rows x 64 k at a time are loaded (the tail masked to zero
// bytes), offset by XOR, transposed in registers so that each register holds one group of four
// k for 16 rows, and stored in panel order; the byte sums come from the same registers (one
// vpdpbusd against ones per group). Same bytes and sums as pack_row_blocks in gemm_pack.cpp,
// which the tests check under both CPU kernels; 3x less time than it on 2048 x 2048.
#include "gemm_pack.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <algorithm>

#include "cpu/avx512/transpose16.h"

// GCC 12 reports the intrinsics' own placeholder operands as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace intcore {

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void pack_int8_rows_avx512(
    const int8_t* rows, int64_t rs, int64_t first, int64_t count, uint8_t flip, bool unsigned_bytes,
    const PackedMatrix& p, PackedLimb& limb, int64_t panel) {
  const int64_t R = p.panel_rows, padded_rows = p.panels * R, chunk_k = kChunkK4 * 4;
  uint8_t* dst = limb.bytes + panel * p.k4 * R * 4;
  const __m512i flips = _mm512_set1_epi8(static_cast<char>(flip)), ones = _mm512_set1_epi8(1);
  for (int64_t r0 = 0; r0 < count; r0 += 16) {
    const int n = static_cast<int>(std::min<int64_t>(16, count - r0));
    const __mmask16 lanes = static_cast<__mmask16>((1u << n) - 1);
    __m512i sums = _mm512_setzero_si512();
    for (int64_t k0 = 0; k0 < p.k; k0 += 64) {
      const int64_t len = std::min<int64_t>(64, p.k - k0);
      const __mmask64 real = len == 64 ? ~__mmask64{0} : (__mmask64{1} << len) - 1;
      const __m512i flip_real = _mm512_maskz_mov_epi8(real, flips);  // pad bytes stay zero
      __m512i w[16];
      for (int i = 0; i < 16; ++i) {
        w[i] = i < n ? _mm512_xor_si512(_mm512_maskz_loadu_epi8(real, rows + (r0 + i) * rs + k0), flip_real)
                     : _mm512_setzero_si512();
      }
      transpose16_avx512(w);
      const int64_t g0 = k0 / 4, words = std::min<int64_t>(16, p.k4 - g0);
      for (int64_t j = 0; j < words; ++j) {
        _mm512_mask_storeu_epi32(dst + ((g0 + j) * R + r0) * 4, lanes, w[j]);
        sums = unsigned_bytes ? _mm512_dpbusd_epi32(sums, w[j], ones) : _mm512_dpbusd_epi32(sums, ones, w[j]);
      }
      if (k0 + 64 >= p.k || (k0 + 64) % chunk_k == 0) {  // the end of a K chunk: its sums are done
        _mm512_mask_storeu_epi32(limb.sums.data() + (k0 / chunk_k) * padded_rows + first + r0, lanes, sums);
        sums = _mm512_setzero_si512();
      }
    }
  }
}

}  // namespace intcore

#else

namespace intcore {
void pack_int8_rows_avx512(const int8_t*, int64_t, int64_t, int64_t, uint8_t, bool, const PackedMatrix&, PackedLimb&,
                           int64_t) {}  // never called: cpu_kernel.cpp only selects AVX-512 on x86-64
}  // namespace intcore

#endif

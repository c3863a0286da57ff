// Philox bulk words with one block per 32-bit lane of a zmm register (philox_blocks.h): the
// 32 x 32 -> 64-bit products as a low half (vpmulld) and a high half from the even and odd
// lanes' 64-bit products (vpmuludq). The compiler does not vectorize the scalar form's 64-bit
// products.
#include "philox_blocks.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
// GCC 12 reports the intrinsics' own placeholder operands as uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace intcore {
namespace {

__attribute__((target("avx512f"))) __m512i mulhi_epu32(__m512i a, __m512i m) {
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(a, m), 32);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  return _mm512_mask_blend_epi32(0xAAAA, even, odd);
}

}  // namespace

__attribute__((target("avx512f"))) void sixteen_blocks_avx512(const RandomStream& stream, uint64_t b0, uint32_t* out) {
  alignas(64) uint32_t index_lo[kPhiloxBulkBlocks], index_hi[kPhiloxBulkBlocks];
  for (int64_t j = 0; j < kPhiloxBulkBlocks; ++j) {
    const uint64_t index = b0 + static_cast<uint64_t>(j);
    index_lo[j] = static_cast<uint32_t>(index);
    index_hi[j] = static_cast<uint32_t>(index >> 32);
  }
  __m512i c0 = _mm512_load_si512(index_lo), c1 = _mm512_load_si512(index_hi);
  __m512i c2 = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(stream.offset)));
  __m512i c3 = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(stream.offset >> 32)));
  const __m512i mul0 = _mm512_set1_epi32(static_cast<int32_t>(0xD2511F53u));
  const __m512i mul1 = _mm512_set1_epi32(static_cast<int32_t>(0xCD9E8D57u));
  uint32_t key0 = static_cast<uint32_t>(stream.seed), key1 = static_cast<uint32_t>(stream.seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m512i hi0 = mulhi_epu32(c0, mul0), lo0 = _mm512_mullo_epi32(c0, mul0);
    const __m512i hi1 = mulhi_epu32(c2, mul1), lo1 = _mm512_mullo_epi32(c2, mul1);
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int32_t>(key0)));
    c1 = lo1;
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int32_t>(key1)));
    c3 = lo0;
    key0 += 0x9E3779B9u;
    key1 += 0xBB67AE85u;
  }
  alignas(64) uint32_t words[4][kPhiloxBulkBlocks];
  _mm512_store_si512(words[0], c0);
  _mm512_store_si512(words[1], c1);
  _mm512_store_si512(words[2], c2);
  _mm512_store_si512(words[3], c3);
  for (int64_t j = 0; j < kPhiloxBulkBlocks; ++j)
    for (int w = 0; w < 4; ++w) out[4 * j + w] = words[w][j];
}

}  // namespace intcore

#else  // not x86-64: never selected

namespace intcore {
void sixteen_blocks_avx512(const RandomStream& stream, uint64_t b0, uint32_t* out) {
  sixteen_blocks_generic(stream, b0, out);
}
}  // namespace intcore

#endif

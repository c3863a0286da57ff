// Philox bulk words with one block per 32-bit lane of a ymm register (philox_blocks.h), two
// registers of eight blocks: the AVX-512 form's arithmetic (cpu/avx512/philox.cpp) on 256-bit
// lanes, the high halves of the 32 x 32 products blended from the even and odd lanes' vpmuludq.
#include "philox_blocks.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace intcore {
namespace {

__attribute__((target("avx2"))) __m256i mulhi_epu32(__m256i a, __m256i m) {
  const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(a, m), 32);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  return _mm256_blend_epi32(even, odd, 0xAA);
}

}  // namespace

__attribute__((target("avx2"))) void sixteen_blocks_avx2(const RandomStream& stream, uint64_t b0, uint32_t* out) {
  constexpr int kLanes = 8;
  alignas(32) uint32_t index_lo[kPhiloxBulkBlocks], index_hi[kPhiloxBulkBlocks];
  for (int64_t j = 0; j < kPhiloxBulkBlocks; ++j) {
    const uint64_t index = b0 + static_cast<uint64_t>(j);
    index_lo[j] = static_cast<uint32_t>(index);
    index_hi[j] = static_cast<uint32_t>(index >> 32);
  }
  const __m256i mul0 = _mm256_set1_epi32(static_cast<int32_t>(0xD2511F53u));
  const __m256i mul1 = _mm256_set1_epi32(static_cast<int32_t>(0xCD9E8D57u));
  alignas(32) uint32_t words[4][kPhiloxBulkBlocks];
  for (int h = 0; h < kPhiloxBulkBlocks; h += kLanes) {
    __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(index_lo + h));
    __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(index_hi + h));
    __m256i c2 = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(stream.offset)));
    __m256i c3 = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(stream.offset >> 32)));
    uint32_t key0 = static_cast<uint32_t>(stream.seed), key1 = static_cast<uint32_t>(stream.seed >> 32);
    for (int round = 0; round < 10; ++round) {
      const __m256i hi0 = mulhi_epu32(c0, mul0), lo0 = _mm256_mullo_epi32(c0, mul0);
      const __m256i hi1 = mulhi_epu32(c2, mul1), lo1 = _mm256_mullo_epi32(c2, mul1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int32_t>(key0)));
      c1 = lo1;
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int32_t>(key1)));
      c3 = lo0;
      key0 += 0x9E3779B9u;
      key1 += 0xBB67AE85u;
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(words[0] + h), c0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(words[1] + h), c1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(words[2] + h), c2);
    _mm256_store_si256(reinterpret_cast<__m256i*>(words[3] + h), c3);
  }
  for (int64_t j = 0; j < kPhiloxBulkBlocks; ++j)
    for (int w = 0; w < 4; ++w) out[4 * j + w] = words[w][j];
}

}  // namespace intcore

#else  // not x86-64: never selected

namespace intcore {
void sixteen_blocks_avx2(const RandomStream& stream, uint64_t b0, uint32_t* out) {
  sixteen_blocks_generic(stream, b0, out);
}
}  // namespace intcore

#endif

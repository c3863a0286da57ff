// Philox4x32-10 (Salmon et al., SC'11): a counter-based generator. The same (key, counter) gives
// the same four 32-bit words on every backend, which is what makes stochastic rounding and
// sampling reproducible and bit-identical between the CPU engine and CUDA kernels.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define INTCORE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define INTCORE_HOST_DEVICE inline
#endif

namespace intcore {

struct Philox4x32 {
  uint32_t v[4];
};

INTCORE_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

// Ten rounds of Philox4x32 on `counter` with `key`.
INTCORE_HOST_DEVICE Philox4x32 philox4x32_10(Philox4x32 counter, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t* c = counter.v;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, c[0], &hi0, &lo0);
    philox_mulhilo(kMul1, c[2], &hi1, &lo1);
    const uint32_t next[4] = {hi1 ^ c[1] ^ key0, lo1, hi0 ^ c[3] ^ key1, lo0};
    c[0] = next[0]; c[1] = next[1]; c[2] = next[2]; c[3] = next[3];
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return counter;
}

// The stream every intcore op uses: a 64-bit seed is the key; a 64-bit offset selects an
// independent sub-stream; element i of that sub-stream is word (i mod 4) of the block at
// counter (i / 4, offset). Ops that need several streams per call use offsets 0, 1, ...
struct RandomStream {
  uint64_t seed = 0;
  uint64_t offset = 0;

  INTCORE_HOST_DEVICE Philox4x32 block(uint64_t block_index) const {
    const Philox4x32 counter = {{static_cast<uint32_t>(block_index), static_cast<uint32_t>(block_index >> 32),
                                 static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32)}};
    return philox4x32_10(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  }
  INTCORE_HOST_DEVICE uint32_t word(uint64_t index) const { return block(index >> 2).v[index & 3]; }
};

// Words [first, first + count) of a stream, in bulk: a plain loop over blocks that the
// compiler vectorizes (the CPU quantizers draw their bits through this).
void stream_words(const RandomStream& stream, uint64_t first, int64_t count, uint32_t* out);

// Stochastic rounding decision shared by all quantizers: round v up from floor(v) when the top
// 24 bits of `bits`, read as a fraction u in [0, 1), are below frac = v - floor(v). The
// comparison is exact in double (frac has at most 53 bits, u has 24), so P(up) = frac up to
// 2^-24 and every backend makes the same decision.
INTCORE_HOST_DEVICE bool round_up_stochastic(double frac, uint32_t bits) {
  return static_cast<double>(bits >> 8) < frac * 16777216.0;
}

}  // namespace intcore

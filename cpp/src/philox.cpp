#include "intcore/philox.h"

namespace intcore {

// One clone per ISA, picked at load time: with AVX-512 sixteen blocks run per instruction.
__attribute__((target_clones("avx512f", "avx2", "default"))) void stream_words(const RandomStream& stream,
                                                                                uint64_t first, int64_t count,
                                                                                uint32_t* out) {
  if (count <= 0) return;
  const uint64_t first_block = first >> 2, last_block = (first + count - 1) >> 2;
  const int64_t skip = static_cast<int64_t>(first & 3);
  // Whole blocks go straight to out (shifted by `skip`); the first and last are clipped.
  for (uint64_t b = first_block; b <= last_block; ++b) {
    const Philox4x32 r = stream.block(b);
    for (int i = 0; i < 4; ++i) {
      const int64_t at = static_cast<int64_t>((b - first_block) * 4 + i) - skip;
      if (at >= 0 && at < count) out[at] = r.v[i];
    }
  }
}

}  // namespace intcore

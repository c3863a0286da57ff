#include "intcore/philox.h"

#include <algorithm>
#include <cstring>

namespace intcore {

// One clone per ISA, picked at load time: with AVX-512, sixteen blocks run per instruction.
// Blocks are generated sixteen at a time into a buffer (a loop the compiler vectorizes), then
// the requested words are copied out.
__attribute__((target_clones("avx512f", "avx2", "default"))) void stream_words(const RandomStream& stream,
                                                                                uint64_t first, int64_t count,
                                                                                uint32_t* out) {
  if (count <= 0) return;
  constexpr int64_t kBlocks = 16;
  uint32_t buffer[kBlocks * 4];
  const uint64_t first_block = first >> 2, end_block = ((first + count - 1) >> 2) + 1;
  int64_t written = 0;
  for (uint64_t b0 = first_block; b0 < end_block; b0 += kBlocks) {
    const int64_t blocks = std::min<int64_t>(kBlocks, static_cast<int64_t>(end_block - b0));
    for (int64_t j = 0; j < blocks; ++j) {
      const Philox4x32 r = stream.block(b0 + j);
      buffer[4 * j + 0] = r.v[0];
      buffer[4 * j + 1] = r.v[1];
      buffer[4 * j + 2] = r.v[2];
      buffer[4 * j + 3] = r.v[3];
    }
    const int64_t skip = b0 == first_block ? static_cast<int64_t>(first & 3) : 0;
    const int64_t take = std::min<int64_t>(blocks * 4 - skip, count - written);
    std::memcpy(out + written, buffer + skip, static_cast<size_t>(take) * sizeof(uint32_t));
    written += take;
  }
}

}  // namespace intcore

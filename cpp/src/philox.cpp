#include "intcore/philox.h"

#include "intcore/cpu_kernel.h"
#include "philox_blocks.h"

#include <algorithm>
#include <cstring>

namespace intcore {

// The portable form: one block at a time.
void sixteen_blocks_generic(const RandomStream& stream, uint64_t b0, uint32_t* out) {
  for (int64_t j = 0; j < kPhiloxBulkBlocks; ++j) {
    const Philox4x32 r = stream.block(b0 + static_cast<uint64_t>(j));
    for (int w = 0; w < 4; ++w) out[4 * j + w] = r.v[w];
  }
}

// Blocks are generated sixteen at a time into a buffer, then the requested words copied out.
void stream_words(const RandomStream& stream, uint64_t first, int64_t count, uint32_t* out) {
  if (count <= 0) return;
  // Each CPU kernel set with wide 32-bit lanes has its form; the tests that switch sets check
  // them against each other.
  const CpuKernel set = active_cpu_kernel();
  const auto sixteen_blocks = set == CpuKernel::kAvx512Vnni                           ? sixteen_blocks_avx512
                              : set == CpuKernel::kAvx2 || set == CpuKernel::kAvxVnni ? sixteen_blocks_avx2
                                                                                       : sixteen_blocks_generic;
  uint32_t buffer[kPhiloxBulkBlocks * 4];
  const uint64_t first_block = first >> 2, end_block = ((first + count - 1) >> 2) + 1;
  int64_t written = 0;
  for (uint64_t b0 = first_block; b0 < end_block; b0 += kPhiloxBulkBlocks) {
    const int64_t blocks = std::min<int64_t>(kPhiloxBulkBlocks, static_cast<int64_t>(end_block - b0));
    sixteen_blocks(stream, b0, buffer);  // a few blocks past the end are computed and dropped
    const int64_t skip = b0 == first_block ? static_cast<int64_t>(first & 3) : 0;
    const int64_t take = std::min<int64_t>(blocks * 4 - skip, count - written);
    std::memcpy(out + written, buffer + skip, static_cast<size_t>(take) * sizeof(uint32_t));
    written += take;
  }
}

}  // namespace intcore

// Sixteen consecutive Philox4x32-10 blocks at a time, the unit of stream_words (philox.cpp):
// blocks b0 .. b0 + 15 of `stream`, word w of block j at out[4 j + w]. A portable form and one
// per instruction set that has 32-bit lanes wide enough to pay (one block per lane); the CPU
// kernel set picks one, and the tests require the same words from each.
#pragma once

#include <cstdint>

#include "intcore/philox.h"

namespace intcore {

constexpr int64_t kPhiloxBulkBlocks = 16;

void sixteen_blocks_generic(const RandomStream& stream, uint64_t b0, uint32_t* out);
void sixteen_blocks_avx2(const RandomStream& stream, uint64_t b0, uint32_t* out);    // cpu/avx2/philox.cpp
void sixteen_blocks_avx512(const RandomStream& stream, uint64_t b0, uint32_t* out);  // cpu/avx512/philox.cpp

}  // namespace intcore

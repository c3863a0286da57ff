// Tile choices per architecture and shape, kept apart from the kernels (as DeepGEMM does).
#pragma once

#include <cstdint>

namespace intcore::cuda {

enum class Sm80Tile {
  kLarge,   // 128 x 256 x 64, 3 stages: large M and N
  kSmallM,  // 64 x 128 x 64, 4 stages: few rows (batch-1 fine-tuning rows, decoding)
};

// Small-M shapes waste most of a 128-row tile and leave SMs idle; below 128 rows, or when the
// large tiles would not fill the GPU's SMs once, take the small tile.
inline Sm80Tile choose_sm80_tile(int64_t m, int64_t n, int sm_count) {
  const int64_t large_tiles = ((m + 127) / 128) * ((n + 255) / 256);
  return (m < 128 || large_tiles < sm_count) ? Sm80Tile::kSmallM : Sm80Tile::kLarge;
}

}  // namespace intcore::cuda

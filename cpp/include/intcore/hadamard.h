// Block-diagonal normalized Walsh-Hadamard transform along the last dimension
// (docs/int4-training.md): every run of `block` consecutive elements (block = 2^k,
// k = 0..15) becomes H x / sqrt(block), H the Sylvester Hadamard matrix. H / sqrt(block) is
// symmetric and orthonormal, so the transform is its own inverse.
#pragma once

#include <cstdint>

#include "intcore/tensor_view.h"

namespace intcore {

// x: [R, N] float32/bfloat16/float16/float64, any strides, N a multiple of block.
// out: [R, N] float32, bfloat16 or float16, contiguous (converted with round-to-nearest-even).
void hadamard_transform(const TensorView& x, int64_t block, const TensorView& out);

}  // namespace intcore

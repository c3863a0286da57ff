// Square blocks of a transposed float32 view, transposed in registers: dst[r * ld + c] =
// src[r + c * cs] for r, c below the block size (16 with AVX-512, 8 with AVX2). The quantizers
// read tiles of transposed operands (the gradient's transpose in a backward) this way instead
// of one strided float at a time; the CPU kernel set picks the form (quantize.cpp).
#pragma once

#include <cstdint>

namespace intcore {

void transpose16_floats_avx512(const float* src, int64_t cs, float* dst, int64_t ld);  // cpu/avx512/
void transpose8_floats_avx2(const float* src, int64_t cs, float* dst, int64_t ld);     // cpu/avx2/

}  // namespace intcore

// CPU GEMM micro-kernels. Each computes one kMR x kNR int32 tile
//   acc[i][j] = sum over k of a[i][k] * b[j][k]   (a unsigned 8-bit, b signed 8-bit)
// from panels packed by gemm_pack: a as [k4][kMR][4] bytes, b as [k4][kNR][4] bytes, four
// consecutive k per group (the operand shape of the VNNI instruction vpdpbusd). Sums wrap
// modulo 2^32; the driver keeps every true sum inside int32, so wrapping never changes a result.
#pragma once

#include <cstdint>

namespace intcore {

constexpr int kMR = 6;
constexpr int kNR = 64;

using MicroKernel = void (*)(const uint8_t* a, const int8_t* b, int64_t k4, int32_t* acc);

void microkernel_generic(const uint8_t* a, const int8_t* b, int64_t k4, int32_t* acc);
void microkernel_avx512_vnni(const uint8_t* a, const int8_t* b, int64_t k4, int32_t* acc);

MicroKernel active_microkernel();

}  // namespace intcore

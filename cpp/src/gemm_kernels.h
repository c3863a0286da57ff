// CPU GEMM micro-kernels. Each computes one kMR x kNR int32 tile
//   c[i * ldc + j] = start[j] + sum over k of a[i][k] * b[j][k]   (a unsigned 8-bit, b signed 8-bit)
// Starting every row from a per-column value lets the driver fold the packing offset of a
// signed A operand (a per-column correction) into the accumulators, so an int8 tile leaves
// the kernel exact and can go straight to C. With `stream` the tile is stored past the caches
// (non-temporal; c 64-byte aligned, ldc a multiple of 16; gemm_epilogue.h). Kernels without
// such stores (generic) store plainly.
// from panels packed by gemm_pack: a as [k4][kMR][4] bytes, b as [k4][kNR][4] bytes, four
// consecutive k per group (the operand shape of the VNNI instruction vpdpbusd). Sums wrap
// modulo 2^32; the driver keeps every true sum inside int32, so wrapping never changes a result.
#pragma once

#include <cstdint>

namespace intcore {

constexpr int kMR = 6;
constexpr int kNR = 64;

using MicroKernel = void (*)(const uint8_t* a, const int8_t* b, int64_t k4, const int32_t* start, int32_t* c,
                             int64_t ldc, bool stream);

// One per CPU kernel set (intcore/cpu_kernel.h), in cpu/<isa>/gemm_kernel.cpp. Each is defined
// in every build; on another architecture it forwards to the generic kernel, which
// cpu_kernel.cpp then never replaces with it.
#define INTCORE_MICROKERNEL(name)                                                                          \
  void name(const uint8_t* a, const int8_t* b, int64_t k4, const int32_t* start, int32_t* c, int64_t ldc, \
            bool stream)
INTCORE_MICROKERNEL(microkernel_generic);
INTCORE_MICROKERNEL(microkernel_avx2);
INTCORE_MICROKERNEL(microkernel_avx_vnni);
INTCORE_MICROKERNEL(microkernel_avx512_vnni);
INTCORE_MICROKERNEL(microkernel_neon_dot);
INTCORE_MICROKERNEL(microkernel_neon_i8mm);

MicroKernel active_microkernel();

// int16 A times one byte limb of B, exact in int64: c[i * kNR + j] = sum over k of a[i][k] b[j][k]
// (a signed 16-bit, panels [k4][kMR][4] int16; b as above). Where a set multiplies 16-bit lanes
// (AVX2's vpmaddwd), an int16 A then takes one product per B limb instead of one per limb
// pair: half the instructions of two byte limbs. Sets whose byte products are fast (VNNI) have
// none.
using Int16MicroKernel = void (*)(const int16_t* a, const int8_t* b, int64_t k4, int64_t* c);
void microkernel_avx2_int16(const int16_t* a, const int8_t* b, int64_t k4, int64_t* c);
// The active set's, or nullptr where it has none (gemm.cpp then splits A into byte limbs).
Int16MicroKernel active_int16_microkernel();

}  // namespace intcore

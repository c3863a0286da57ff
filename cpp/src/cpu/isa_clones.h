// INTCORE_ISA_CLONES: the engine's shared loops (quantizer rounding, layer-norm rows, packing,
// epilogues) compiled once per x86 level (x86-64-v4, AVX2, the x86-64-v2 baseline) and chosen by
// the loader from the CPU. They are the same C++ in each clone, and the engine never contracts
// to FMA (-ffp-contract=off), so every clone gives the same bits. Elsewhere (aarch64, whose
// baseline has NEON) they compile once. The GEMM micro-kernels, the packers and the Philox bulk
// words are hand-written per instruction set instead (cpu/<isa>/) and follow the CPU kernel
// chosen in cpu_kernel.cpp, so tests can run each on any CPU that supports it.
#pragma once

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define INTCORE_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define INTCORE_ISA_CLONES
#endif

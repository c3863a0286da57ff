// Which set of CPU kernels the engine runs: the GEMM micro-kernel with its packing, and the
// hand-written loops of the same instruction set (Philox bulk words, transposes). The best set
// the CPU supports is chosen at load time; INTCORE_CPU_KERNEL=<name> in the environment forces
// one, and tests switch between them to check that every set gives the generic set's bits.
//
//   generic      portable C++ (the reference), every CPU
//   avx2         x86-64 with AVX2 (Intel Haswell and later, AMD Zen 1 and later)
//   avx_vnni     x86-64 with AVX-VNNI, 256-bit vpdpbusd (Intel Alder Lake and later, AMD Zen 5)
//   avx512_vnni  x86-64 with AVX-512 F/BW/VNNI (Intel Cascade Lake and later, AMD Zen 4 and later)
//   neon_dot     Linux on aarch64 with the dot-product extension (udot; Arm v8.2+: Graviton 2+, Ampere,
//                Apple silicon under Linux)
//   neon_i8mm    the same with I8MM (mixed-sign sudot; Arm v8.6+: Graviton 3+, Apple M2+ under Linux)
// (The sets are found from Linux's HWCAP bits; other aarch64 systems run generic.)
#pragma once

#include <string>
#include <vector>

namespace intcore {

enum class CpuKernel { kGeneric, kAvx2, kAvxVnni, kAvx512Vnni, kNeonDot, kNeonI8mm };

const char* cpu_kernel_name(CpuKernel kernel);
// Every kernel set this build knows, supported here or not.
std::vector<CpuKernel> all_cpu_kernels();
bool cpu_kernel_supported(CpuKernel kernel);
std::vector<CpuKernel> supported_cpu_kernels();
CpuKernel active_cpu_kernel();
// Throws ValueError if the CPU lacks the kernel's instructions.
void set_cpu_kernel(CpuKernel kernel);
// The set named `name` (cpu_kernel_name); ValueError naming `fn` and the known names otherwise.
CpuKernel parse_cpu_kernel(const std::string& fn, const std::string& name);

}  // namespace intcore

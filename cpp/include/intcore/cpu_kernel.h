// Which CPU micro-kernel the GEMMs run. The best one the CPU supports is chosen at load time;
// INTCORE_CPU_KERNEL=generic (or avx512_vnni) in the environment overrides it, and tests
// switch between them to check that every kernel gives the same bits.
#pragma once

#include <vector>

namespace intcore {

enum class CpuKernel { kGeneric, kAvx512Vnni };

const char* cpu_kernel_name(CpuKernel kernel);
bool cpu_kernel_supported(CpuKernel kernel);
std::vector<CpuKernel> supported_cpu_kernels();
CpuKernel active_cpu_kernel();
// Throws ValueError if the CPU lacks the kernel's instructions.
void set_cpu_kernel(CpuKernel kernel);

}  // namespace intcore

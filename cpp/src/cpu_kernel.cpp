#include "intcore/cpu_kernel.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "gemm_kernels.h"
#include "intcore/error.h"

namespace intcore {
namespace {

CpuKernel best_supported() {
  return cpu_kernel_supported(CpuKernel::kAvx512Vnni) ? CpuKernel::kAvx512Vnni : CpuKernel::kGeneric;
}

CpuKernel initial_kernel() {
  const char* env = std::getenv("INTCORE_CPU_KERNEL");
  if (env != nullptr) {
    for (CpuKernel k : supported_cpu_kernels()) {
      if (std::string(env) == cpu_kernel_name(k)) return k;
    }
  }
  return best_supported();
}

std::atomic<CpuKernel>& current() {
  static std::atomic<CpuKernel> kernel{initial_kernel()};
  return kernel;
}

}  // namespace

const char* cpu_kernel_name(CpuKernel kernel) {
  return kernel == CpuKernel::kAvx512Vnni ? "avx512_vnni" : "generic";
}

bool cpu_kernel_supported(CpuKernel kernel) {
  if (kernel == CpuKernel::kGeneric) return true;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

std::vector<CpuKernel> supported_cpu_kernels() {
  std::vector<CpuKernel> kernels;
  for (CpuKernel k : {CpuKernel::kGeneric, CpuKernel::kAvx512Vnni}) {
    if (cpu_kernel_supported(k)) kernels.push_back(k);
  }
  return kernels;
}

CpuKernel active_cpu_kernel() { return current().load(); }

void set_cpu_kernel(CpuKernel kernel) {
  if (!cpu_kernel_supported(kernel)) {
    throw_value_error(std::string("set_cpu_kernel: this CPU does not support the ") + cpu_kernel_name(kernel) +
                      " kernel");
  }
  current().store(kernel);
}

MicroKernel active_microkernel() {
  return active_cpu_kernel() == CpuKernel::kAvx512Vnni ? microkernel_avx512_vnni : microkernel_generic;
}

}  // namespace intcore

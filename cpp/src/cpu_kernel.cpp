// The one place that picks the CPU kernel set: from CPUID on x86-64 (through the compiler's
// __builtin_cpu_supports, which also checks that the OS saves the wide registers) and from the
// auxiliary vector's HWCAP bits on aarch64 Linux.
#include "intcore/cpu_kernel.h"

#include <atomic>
#include <cstdlib>

#include "gemm_kernels.h"
#include "intcore/error.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace intcore {
namespace {

constexpr CpuKernel kAll[] = {CpuKernel::kGeneric,    CpuKernel::kAvx2,    CpuKernel::kAvxVnni,
                              CpuKernel::kAvx512Vnni, CpuKernel::kNeonDot, CpuKernel::kNeonI8mm};

// Fastest first: the choice when nothing is forced.
constexpr CpuKernel kByPreference[] = {CpuKernel::kAvx512Vnni, CpuKernel::kAvxVnni, CpuKernel::kAvx2,
                                       CpuKernel::kNeonI8mm, CpuKernel::kNeonDot};

CpuKernel best_supported() {
  for (CpuKernel k : kByPreference) {
    if (cpu_kernel_supported(k)) return k;
  }
  return CpuKernel::kGeneric;
}

// INTCORE_CPU_KERNEL, when set to a set this CPU runs, is the start; a typo or a set the CPU
// lacks leaves the best set (the engine cannot raise at load time: `import intcore` does,
// python/intcore/cpu_kernels.py).
CpuKernel initial_kernel() {
  const char* env = std::getenv("INTCORE_CPU_KERNEL");
  if (env == nullptr) return best_supported();
  for (CpuKernel k : supported_cpu_kernels()) {
    if (std::string(env) == cpu_kernel_name(k)) return k;
  }
  return best_supported();
}

std::atomic<CpuKernel>& current() {
  static std::atomic<CpuKernel> kernel{initial_kernel()};
  return kernel;
}

}  // namespace

const char* cpu_kernel_name(CpuKernel kernel) {
  switch (kernel) {
    case CpuKernel::kGeneric: return "generic";
    case CpuKernel::kAvx2: return "avx2";
    case CpuKernel::kAvxVnni: return "avx_vnni";
    case CpuKernel::kAvx512Vnni: return "avx512_vnni";
    case CpuKernel::kNeonDot: return "neon_dot";
    case CpuKernel::kNeonI8mm: return "neon_i8mm";
  }
  return "unknown";
}

std::vector<CpuKernel> all_cpu_kernels() { return {std::begin(kAll), std::end(kAll)}; }

CpuKernel parse_cpu_kernel(const std::string& fn, const std::string& name) {
  std::string known;
  for (CpuKernel k : kAll) {
    if (name == cpu_kernel_name(k)) return k;
    known += (known.empty() ? "" : ", ") + std::string(cpu_kernel_name(k));
  }
  throw_value_error(fn + ": unknown CPU kernel '" + name + "' (known: " + known + ")");
}

bool cpu_kernel_supported(CpuKernel kernel) {
  if (kernel == CpuKernel::kGeneric) return true;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  switch (kernel) {
    case CpuKernel::kAvx2: return __builtin_cpu_supports("avx2");
    case CpuKernel::kAvxVnni: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni");
    case CpuKernel::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni");
    default: return false;
  }
#elif defined(__aarch64__) && defined(__linux__)
  // HWCAP_ASIMDDP (bit 20 of AT_HWCAP) and HWCAP2_I8MM (bit 13 of AT_HWCAP2), from the kernel's
  // uapi asm/hwcap.h; spelled out so older C libraries' headers build too.
  const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
  const bool dot = (hwcap & (1ul << 20)) != 0, i8mm = (hwcap2 & (1ul << 13)) != 0;
  switch (kernel) {
    case CpuKernel::kNeonDot: return dot;
    case CpuKernel::kNeonI8mm: return dot && i8mm;
    default: return false;
  }
#else
  return false;
#endif
}

std::vector<CpuKernel> supported_cpu_kernels() {
  std::vector<CpuKernel> kernels;
  for (CpuKernel k : kAll) {
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
  switch (active_cpu_kernel()) {
    case CpuKernel::kAvx2: return microkernel_avx2;
    case CpuKernel::kAvxVnni: return microkernel_avx_vnni;
    case CpuKernel::kAvx512Vnni: return microkernel_avx512_vnni;
    case CpuKernel::kNeonDot: return microkernel_neon_dot;
    case CpuKernel::kNeonI8mm: return microkernel_neon_i8mm;
    default: return microkernel_generic;
  }
}

Int16MicroKernel active_int16_microkernel() {
  return active_cpu_kernel() == CpuKernel::kAvx2 ? microkernel_avx2_int16 : nullptr;
}

}  // namespace intcore

// Every CPU kernel set against the generic one, the way XNNPACK tests its micro-kernels: the
// micro-kernel alone on panels of every byte value (A bytes 0..255, B bytes -128..127), K below,
// at and across the kernels' K blocks, extreme bytes at the largest K the driver gives a kernel,
// and stored plainly and streamed. Bit equality is required; sets the CPU lacks are skipped by
// supported_cpu_kernels (the aarch64 ones run under qemu: tests/cross_aarch64.sh).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gemm_kernels.h"
#include "gemm_pack.h"
#include "intcore/cpu_kernel.h"
#include "intcore/error.h"
#include "test_util.h"

namespace intcore {
namespace {

using test::for_each_cpu_kernel;

struct Panels {
  std::vector<uint8_t> a;
  std::vector<int8_t> b;
  std::vector<int32_t> start;
};

Panels random_panels(int64_t k4, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  Panels p;
  p.a.resize(static_cast<size_t>(k4 * kMR * 4));
  p.b.resize(static_cast<size_t>(k4 * kNR * 4));
  p.start.resize(kNR);
  for (auto& v : p.a) v = static_cast<uint8_t>(byte(rng));
  for (auto& v : p.b) v = static_cast<int8_t>(byte(rng) - 128);
  for (auto& v : p.start) v = static_cast<int32_t>(rng());
  return p;
}

// The kernel's tile with row stride ldc, in a 64-byte aligned buffer (streaming stores need it).
std::vector<int32_t> run(MicroKernel kernel, const Panels& p, int64_t k4, int64_t ldc, bool stream) {
  std::vector<int32_t> buffer(static_cast<size_t>(kMR * ldc + 16), -7);
  int32_t* c = buffer.data();
  while (reinterpret_cast<uintptr_t>(c) % 64 != 0) ++c;
  kernel(p.a.data(), p.b.data(), k4, p.start.data(), c, ldc, stream);
  std::vector<int32_t> tile;
  for (int i = 0; i < kMR; ++i) tile.insert(tile.end(), c + i * ldc, c + i * ldc + kNR);
  return tile;
}

TEST(CpuKernel, MicroKernelsEqualGenericOnEveryByte) {
  for (int64_t k4 : {0, 1, 2, 5, 63, 64, 65, 130, 300}) {
    const Panels p = random_panels(k4, static_cast<uint32_t>(k4 + 1));
    const std::vector<int32_t> want = run(microkernel_generic, p, k4, kNR, false);
    for_each_cpu_kernel([&](CpuKernel) {
      const MicroKernel kernel = active_microkernel();
      for (int64_t ldc : {int64_t{kNR}, int64_t{80}}) {
        for (bool stream : {false, true}) {
          EXPECT_EQ(run(kernel, p, k4, ldc, stream), want) << "k4 " << k4 << " ldc " << ldc << " stream " << stream;
        }
      }
    });
  }
}

TEST(CpuKernel, MicroKernelsExactAtExtremeBytesAndLargestK) {
  // The driver hands a kernel at most kChunkK4 groups; with A = 255 and B = -128 (or 127) every
  // true sum is near -2^30 (or 2^30), inside int32, so each kernel must give it exactly.
  for (int8_t b_value : {int8_t{-128}, int8_t{127}}) {
    Panels p;
    p.a.assign(static_cast<size_t>(kChunkK4 * kMR * 4), 255);
    p.b.assign(static_cast<size_t>(kChunkK4 * kNR * 4), b_value);
    p.start.assign(kNR, 0);
    const std::vector<int32_t> want(kMR * kNR, 255 * b_value * 4 * static_cast<int32_t>(kChunkK4));
    ASSERT_EQ(run(microkernel_generic, p, kChunkK4, kNR, false), want);
    for_each_cpu_kernel([&](CpuKernel) { EXPECT_EQ(run(active_microkernel(), p, kChunkK4, kNR, false), want); });
  }
}

// The int16 micro-kernels (sets that have one) against a plain int64 loop: random int16 A and
// byte B panels, and the extremes at the largest K, whose sums (2^37) only int64 holds.
std::vector<int64_t> int16_reference(const std::vector<int16_t>& a, const std::vector<int8_t>& b, int64_t k4) {
  std::vector<int64_t> c(kMR * kNR, 0);
  for (int64_t g = 0; g < k4; ++g)
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j)
        for (int t = 0; t < 4; ++t) c[i * kNR + j] += int64_t{a[(g * kMR + i) * 4 + t]} * b[(g * kNR + j) * 4 + t];
  return c;
}

TEST(CpuKernel, Int16MicroKernelsExactInInt64) {
  int sets = 0;
  for_each_cpu_kernel([&](CpuKernel) {
    const Int16MicroKernel kernel = active_int16_microkernel();
    if (kernel == nullptr) return;
    ++sets;
    std::mt19937 rng(3);
    for (int64_t k4 : {0, 1, 2, 63, 64, 65, 300}) {
      std::vector<int16_t> a(static_cast<size_t>(k4 * kMR * 4));
      for (auto& v : a) v = static_cast<int16_t>(rng());
      const Panels p = random_panels(k4, static_cast<uint32_t>(k4 + 7));
      std::vector<int64_t> c(kMR * kNR, -1);
      kernel(a.data(), p.b.data(), k4, c.data());
      EXPECT_EQ(c, int16_reference(a, p.b, k4)) << "k4 " << k4;
    }
    for (int8_t b_value : {int8_t{-128}, int8_t{127}}) {
      const std::vector<int16_t> a(static_cast<size_t>(kChunkK4 * kMR * 4), int16_t{-32768});
      const std::vector<int8_t> b(static_cast<size_t>(kChunkK4 * kNR * 4), b_value);
      std::vector<int64_t> c(kMR * kNR, -1);
      kernel(a.data(), b.data(), kChunkK4, c.data());
      EXPECT_EQ(c, std::vector<int64_t>(kMR * kNR, int64_t{-32768} * b_value * 4 * kChunkK4));
    }
  });
#if defined(__x86_64__)
  if (cpu_kernel_supported(CpuKernel::kAvx2)) EXPECT_GE(sets, 1);
#endif
}

// INTCORE_EXPECT_CPU_KERNELS (comma-separated, set by tests/cross_aarch64.sh for each emulated
// CPU) must equal the sets found: proof that the sweeps here really ran those kernels.
TEST(CpuKernel, SupportedSetsAreTheExpectedOnes) {
  std::string found;
  for (CpuKernel k : supported_cpu_kernels()) found += (found.empty() ? "" : ",") + std::string(cpu_kernel_name(k));
  std::printf("CPU kernel sets here: %s (active %s)\n", found.c_str(), cpu_kernel_name(active_cpu_kernel()));
  const char* expected = std::getenv("INTCORE_EXPECT_CPU_KERNELS");
  if (expected == nullptr) GTEST_SKIP() << "INTCORE_EXPECT_CPU_KERNELS is not set";
  EXPECT_EQ(found, expected);
}

TEST(CpuKernel, NamesParseAndUnsupportedSetsAreRefused) {
  for (CpuKernel k : all_cpu_kernels()) EXPECT_EQ(parse_cpu_kernel("t", cpu_kernel_name(k)), k);
  try {
    parse_cpu_kernel("set_cpu_kernel", "avx3");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("set_cpu_kernel: unknown CPU kernel 'avx3' (known: generic, avx2"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(cpu_kernel_supported(CpuKernel::kGeneric));
  for (CpuKernel k : all_cpu_kernels()) {
    if (!cpu_kernel_supported(k)) EXPECT_THROW(set_cpu_kernel(k), Error) << cpu_kernel_name(k);
  }
#if defined(__x86_64__)
  EXPECT_FALSE(cpu_kernel_supported(CpuKernel::kNeonDot));
#elif defined(__aarch64__)
  EXPECT_FALSE(cpu_kernel_supported(CpuKernel::kAvx2));
#endif
}

}  // namespace
}  // namespace intcore

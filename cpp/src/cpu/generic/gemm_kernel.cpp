// Portable micro-kernel: plain C++ that GCC and Clang vectorize for the host's baseline ISA.
// Used on CPUs without AVX-512 VNNI and as the cross-check for the VNNI kernel.
#include "gemm_kernels.h"

namespace intcore {

void microkernel_generic(const uint8_t* a, const int8_t* b, int64_t k4, const int32_t* start, int32_t* c,
                         int64_t ldc, bool /*stream*/) {
  uint32_t sum[kMR][kNR];
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) sum[i][j] = static_cast<uint32_t>(start[j]);
  for (int64_t k = 0; k < k4; ++k) {
    const uint8_t* ak = a + k * kMR * 4;
    const int8_t* bk = b + k * kNR * 4;
    for (int i = 0; i < kMR; ++i) {
      const int32_t a0 = ak[i * 4 + 0], a1 = ak[i * 4 + 1], a2 = ak[i * 4 + 2], a3 = ak[i * 4 + 3];
      for (int j = 0; j < kNR; ++j) {
        const int32_t dot = a0 * bk[j * 4 + 0] + a1 * bk[j * 4 + 1] + a2 * bk[j * 4 + 2] + a3 * bk[j * 4 + 3];
        sum[i][j] += static_cast<uint32_t>(dot);  // |dot| <= 4 * 255 * 128: never overflows
      }
    }
  }
  for (int i = 0; i < kMR; ++i)
    for (int j = 0; j < kNR; ++j) c[i * ldc + j] = static_cast<int32_t>(sum[i][j]);
}

}  // namespace intcore

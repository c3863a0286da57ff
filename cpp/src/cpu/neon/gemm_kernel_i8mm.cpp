// aarch64 micro-kernel on I8MM's mixed-sign dot product (Arm v8.6: sudot, s8 x u8, four
// products summed into each int32 lane): exactly the panels' u8 A x s8 B, so unlike the DotProd
// kernel (gemm_kernel_dot.cpp, same register plan) no flip of B and no row-sum correction.
// (I8MM's smmla 2x8x2 block products would need panels packed eight k deep; not done.)
#include "gemm_kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <algorithm>

namespace intcore {
namespace {

constexpr int kCols = 16;
constexpr int64_t kBlockK4 = 64;

}  // namespace

__attribute__((target("arch=armv8.2-a+dotprod+i8mm"))) void microkernel_neon_i8mm(const uint8_t* a, const int8_t* b,
                                                                                 int64_t k4, const int32_t* start,
                                                                                 int32_t* c, int64_t ldc, bool) {
  int32x4_t part[kNR / kCols][kMR][4];
  for (int p = 0; p < kNR / kCols; ++p)
    for (int i = 0; i < kMR; ++i)
      for (int q = 0; q < 4; ++q) part[p][i][q] = vld1q_s32(start + p * kCols + q * 4);
  for (int64_t k0 = 0; k0 < k4; k0 += kBlockK4) {
    const int64_t len = std::min(kBlockK4, k4 - k0);
    for (int p = 0; p < kNR / kCols; ++p) {
      int32x4_t acc[kMR][4];
      for (int i = 0; i < kMR; ++i)
        for (int q = 0; q < 4; ++q) acc[i][q] = part[p][i][q];
      for (int64_t k = k0; k < k0 + len; ++k) {
        const uint8_t* ak = a + k * kMR * 4;
        const uint8x16_t a_lo = vld1q_u8(ak);
        const uint8x8_t a_hi = vld1_u8(ak + 16);
        const int8_t* bk = b + (k * kNR + p * kCols) * 4;
        for (int q = 0; q < 4; ++q) {
          const int8x16_t bq = vld1q_s8(bk + 16 * q);
          acc[0][q] = vsudotq_laneq_s32(acc[0][q], bq, a_lo, 0);
          acc[1][q] = vsudotq_laneq_s32(acc[1][q], bq, a_lo, 1);
          acc[2][q] = vsudotq_laneq_s32(acc[2][q], bq, a_lo, 2);
          acc[3][q] = vsudotq_laneq_s32(acc[3][q], bq, a_lo, 3);
          acc[4][q] = vsudotq_lane_s32(acc[4][q], bq, a_hi, 0);
          acc[5][q] = vsudotq_lane_s32(acc[5][q], bq, a_hi, 1);
        }
      }
      for (int i = 0; i < kMR; ++i)
        for (int q = 0; q < 4; ++q) part[p][i][q] = acc[i][q];
    }
  }
  for (int p = 0; p < kNR / kCols; ++p)
    for (int i = 0; i < kMR; ++i)
      for (int q = 0; q < 4; ++q) vst1q_s32(c + i * ldc + p * kCols + q * 4, part[p][i][q]);
}

}  // namespace intcore

#else  // not aarch64: cpu_kernel.cpp never selects this kernel

namespace intcore {
void microkernel_neon_i8mm(const uint8_t* a, const int8_t* b, int64_t k4, const int32_t* start, int32_t* c,
                           int64_t ldc, bool stream) {
  microkernel_generic(a, b, k4, start, c, ldc, stream);
}
}  // namespace intcore

#endif

// aarch64 micro-kernel on the dot-product extension (Arm v8.2 DotProd: udot/sdot, four byte
// products summed into each int32 lane). DotProd has no mixed-sign form, and the panels hold
// u8 A and s8 B, so B is read as unsigned (b ^ 0x80 = b + 128) and the surplus 128 * (sum of
// the row's A bytes) is taken off where the accumulators start. Exact: everything is modulo 2^32,
// and the driver keeps each true sum inside int32.
//
// 32 NEON registers: the 64 columns go sixteen at a time (four B vectors of four columns x four
// k), rows 0-3 and 4-5 of each A group in two registers used lane by lane (udot by element), 24
// accumulators. K goes in blocks of kBlockK4 groups so that the B block the four passes read
// again stays in L1 (16 KiB).
#include "gemm_kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <algorithm>

namespace intcore {
namespace {

constexpr int kCols = 16;
constexpr int64_t kBlockK4 = 64;

}  // namespace

__attribute__((target("arch=armv8.2-a+dotprod"))) void microkernel_neon_dot(const uint8_t* a, const int8_t* b,
                                                                            int64_t k4, const int32_t* start,
                                                                            int32_t* c, int64_t ldc, bool) {
  // Row sums of A: rows 0-3 in one vector, rows 4-5 in a half vector (udot against ones).
  uint32x4_t sum_lo = vdupq_n_u32(0);
  uint32x2_t sum_hi = vdup_n_u32(0);
  for (int64_t k = 0; k < k4; ++k) {
    sum_lo = vdotq_u32(sum_lo, vld1q_u8(a + k * kMR * 4), vdupq_n_u8(1));
    sum_hi = vdot_u32(sum_hi, vld1_u8(a + k * kMR * 4 + 16), vdup_n_u8(1));
  }
  uint32_t surplus[kMR];
  vst1q_u32(surplus, vshlq_n_u32(sum_lo, 7));
  vst1_u32(surplus + 4, vshl_n_u32(sum_hi, 7));

  uint32x4_t part[kNR / kCols][kMR][4];
  for (int p = 0; p < kNR / kCols; ++p)
    for (int i = 0; i < kMR; ++i)
      for (int q = 0; q < 4; ++q) {
        const uint32x4_t s = vreinterpretq_u32_s32(vld1q_s32(start + p * kCols + q * 4));
        part[p][i][q] = vsubq_u32(s, vdupq_n_u32(surplus[i]));
      }
  const uint8x16_t flip = vdupq_n_u8(0x80);
  for (int64_t k0 = 0; k0 < k4; k0 += kBlockK4) {
    const int64_t len = std::min(kBlockK4, k4 - k0);
    for (int p = 0; p < kNR / kCols; ++p) {
      uint32x4_t acc[kMR][4];
      for (int i = 0; i < kMR; ++i)
        for (int q = 0; q < 4; ++q) acc[i][q] = part[p][i][q];
      for (int64_t k = k0; k < k0 + len; ++k) {
        const uint8_t* ak = a + k * kMR * 4;
        const uint8x16_t a_lo = vld1q_u8(ak);
        const uint8x8_t a_hi = vld1_u8(ak + 16);
        const uint8_t* bk = reinterpret_cast<const uint8_t*>(b) + (k * kNR + p * kCols) * 4;
        for (int q = 0; q < 4; ++q) {
          const uint8x16_t bq = veorq_u8(vld1q_u8(bk + 16 * q), flip);
          acc[0][q] = vdotq_laneq_u32(acc[0][q], bq, a_lo, 0);
          acc[1][q] = vdotq_laneq_u32(acc[1][q], bq, a_lo, 1);
          acc[2][q] = vdotq_laneq_u32(acc[2][q], bq, a_lo, 2);
          acc[3][q] = vdotq_laneq_u32(acc[3][q], bq, a_lo, 3);
          acc[4][q] = vdotq_lane_u32(acc[4][q], bq, a_hi, 0);
          acc[5][q] = vdotq_lane_u32(acc[5][q], bq, a_hi, 1);
        }
      }
      for (int i = 0; i < kMR; ++i)
        for (int q = 0; q < 4; ++q) part[p][i][q] = acc[i][q];
    }
  }
  for (int p = 0; p < kNR / kCols; ++p)
    for (int i = 0; i < kMR; ++i)
      for (int q = 0; q < 4; ++q) vst1q_s32(c + i * ldc + p * kCols + q * 4, vreinterpretq_s32_u32(part[p][i][q]));
}

}  // namespace intcore

#else  // not aarch64: cpu_kernel.cpp never selects this kernel

namespace intcore {
void microkernel_neon_dot(const uint8_t* a, const int8_t* b, int64_t k4, const int32_t* start, int32_t* c,
                          int64_t ldc, bool stream) {
  microkernel_generic(a, b, k4, start, c, ldc, stream);
}
}  // namespace intcore

#endif

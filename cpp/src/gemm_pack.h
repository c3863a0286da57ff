// Packing GEMM operands into micro-kernel panels, split into 8-bit limbs.
//
// The kernels multiply unsigned bytes (A side) by signed bytes (B side). An operand value is
// split into limbs: int8 and int4 have one signed limb; int16 has a signed high byte (shift 8)
// and an unsigned low byte (shift 0). A limb of value v is stored as v + offset on the A side
// (offset 128 for a signed limb, 0 for an unsigned one) and as v - offset on the B side
// (offset 0 for signed, 128 for unsigned), and the driver undoes the offsets exactly:
//   sum a b = sum a'b' + off_b sum a' - off_a sum b' - k off_a off_b
// which is why each limb carries the sums of its stored bytes per K chunk.
#pragma once

#include <cstdint>
#include <vector>

#include "intcore/gemm.h"

namespace intcore {

// K is processed in chunks short enough that every limb product sum fits in int32
// (255 * 255 * 32768 < 2^31); chunk results are combined in int64.
constexpr int64_t kChunkK4 = 8192;

// `bytes` point into `owned` or into the packing thread's cache (gemm_pack.cpp, panel_memory),
// so a PackedLimb moves but never copies, and one packed operand per side is alive per thread.
struct PackedLimb {
  PackedLimb() = default;
  PackedLimb(PackedLimb&&) = default;
  PackedLimb& operator=(PackedLimb&&) = default;
  PackedLimb(const PackedLimb&) = delete;
  PackedLimb& operator=(const PackedLimb&) = delete;

  uint8_t* bytes = nullptr;    // [panel][k4][R][4], stored as u8 (A side) or s8 (B side)
  std::vector<uint8_t> owned;  // holds `bytes` when they are too large for the thread's cache
  std::vector<int32_t> sums;   // [chunk][padded row]: sum of the stored bytes of that row
  int32_t offset = 0;
  int shift = 0;
  // The XOR that stores a limb value with its offset: v + 128 and v - 128 are v ^ 0x80 as bytes.
  uint8_t flip() const { return offset != 0 ? 0x80 : 0; }
};

struct PackedMatrix {
  int64_t rows = 0;
  int64_t k = 0;
  int64_t k4 = 0;       // ceil(k / 4)
  int64_t panels = 0;   // ceil(rows / R)
  int panel_rows = 0;   // R: kMR on the A side, kNR on the B side
  // 2 where an int16 A operand is kept whole, one limb of int16 values (pack_operand's
  // whole_int16, for a set with an Int16MicroKernel); 1 for byte limbs.
  int element_bytes = 1;
  std::vector<PackedLimb> limbs;

  int64_t chunks() const { return k4 == 0 ? 1 : (k4 + kChunkK4 - 1) / kChunkK4; }
  const uint8_t* panel(int limb, int64_t p, int64_t chunk) const {
    return limbs[limb].bytes + (p * k4 + chunk * kChunkK4) * panel_rows * 4 * element_bytes;
  }
  const int32_t* sums(int limb, int64_t chunk) const {
    return limbs[limb].sums.data() + chunk * panels * panel_rows;
  }
};

enum class PackSide { kA, kB };
// With whole_int16 (an int16 operand on the A side only) the values are stored whole as int16,
// one limb of offset 0, with their sums per chunk; otherwise split into byte limbs.
PackedMatrix pack_operand(const IntMatrix& m, PackSide side, bool whole_int16 = false);

// One panel's int8 rows (contiguous, `rs` apart, starting at operand row `first`) into `limb`,
// stored bytes v ^ flip read unsigned or signed: the AVX-512 form of the row packer, chosen by
// pack_operand under the AVX-512 CPU kernel (gemm_pack_avx512.cpp).
void pack_int8_rows_avx512(const int8_t* rows, int64_t rs, int64_t first, int64_t count, uint8_t flip,
                           bool unsigned_bytes, const PackedMatrix& p, PackedLimb& limb, int64_t panel);

}  // namespace intcore

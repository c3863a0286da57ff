#include "gemm_pack.h"

#include <algorithm>

#include "gemm_kernels.h"
#include "parallel.h"

namespace intcore {
namespace {

// Reads logical row r of the operand (k values) into `out` as int32.
void read_row(const IntMatrix& m, int64_t r, int32_t* out) {
  const TensorView& v = m.values;
  const int64_t rs = v.stride(0), cs = v.stride(1);
  if (m.packed_int4) {
    const uint8_t* base = static_cast<const uint8_t*>(v.data()) + r * rs;
    for (int64_t k = 0; k < m.k; ++k) {
      const uint8_t byte = base[(k >> 1) * cs];
      out[k] = static_cast<int8_t>(static_cast<uint8_t>((k & 1 ? byte >> 4 : byte) << 4)) >> 4;
    }
  } else if (v.dtype() == DType::kInt8) {
    const int8_t* base = static_cast<const int8_t*>(v.data()) + r * rs;
    if (cs == 1) {
      for (int64_t k = 0; k < m.k; ++k) out[k] = base[k];
    } else {
      for (int64_t k = 0; k < m.k; ++k) out[k] = base[k * cs];
    }
  } else {
    const int16_t* base = static_cast<const int16_t*>(v.data()) + r * rs;
    if (cs == 1) {
      for (int64_t k = 0; k < m.k; ++k) out[k] = base[k];
    } else {
      for (int64_t k = 0; k < m.k; ++k) out[k] = base[k * cs];
    }
  }
}

}  // namespace

PackedMatrix pack_operand(const IntMatrix& m, PackSide side) {
  PackedMatrix p;
  p.rows = m.rows();
  p.k = m.k;
  p.k4 = (m.k + 3) / 4;
  p.panel_rows = side == PackSide::kA ? kMR : kNR;
  p.panels = (p.rows + p.panel_rows - 1) / p.panel_rows;
  const bool wide = !m.packed_int4 && m.values.dtype() == DType::kInt16;
  // Limbs: (signed?, shift). Signed limbs come first.
  struct LimbSpec { bool is_signed; int shift; };
  std::vector<LimbSpec> specs = wide ? std::vector<LimbSpec>{{true, 8}, {false, 0}} : std::vector<LimbSpec>{{true, 0}};
  const int64_t R = p.panel_rows, chunks = p.chunks(), padded_rows = p.panels * R;
  for (const LimbSpec& s : specs) {
    PackedLimb limb;
    limb.shift = s.shift;
    limb.offset = (side == PackSide::kA) == s.is_signed ? 128 : 0;
    limb.bytes.assign(static_cast<size_t>(p.panels * p.k4 * R * 4), 0);
    limb.sums.assign(static_cast<size_t>(chunks * padded_rows), 0);
    p.limbs.push_back(std::move(limb));
  }

  parallel_for(p.rows, p.k, [&](int64_t r0, int64_t r1) {
    std::vector<int32_t> row(static_cast<size_t>(p.k));
    for (int64_t r = r0; r < r1; ++r) {
      read_row(m, r, row.data());
      const int64_t panel = r / R, i = r % R;
      for (size_t l = 0; l < specs.size(); ++l) {
        PackedLimb& limb = p.limbs[l];
        uint8_t* dst = limb.bytes.data() + panel * p.k4 * R * 4 + i * 4;
        // stored = limb value + offset (A side) or - offset (B side); as a byte either way.
        const int32_t bias = side == PackSide::kA ? limb.offset : -limb.offset;
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t k_begin = c * kChunkK4 * 4, k_end = std::min(p.k, k_begin + kChunkK4 * 4);
          int32_t sum = 0;
          for (int64_t k = k_begin; k < k_end; ++k) {
            const int32_t v = row[k];
            const int32_t limb_value = specs[l].shift == 8 ? (v >> 8) : (wide ? (v & 0xFF) : v);
            const int32_t stored = limb_value + bias;
            // Sums use the byte as the kernel reads it: unsigned on A, signed on B.
            sum += side == PackSide::kA ? static_cast<int32_t>(static_cast<uint8_t>(stored))
                                        : static_cast<int32_t>(static_cast<int8_t>(stored));
            dst[(k >> 2) * R * 4 + (k & 3)] = static_cast<uint8_t>(stored);
          }
          limb.sums[c * padded_rows + r] = sum;
        }
      }
    }
  });
  return p;
}

}  // namespace intcore

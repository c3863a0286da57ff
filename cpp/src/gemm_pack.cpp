#include "gemm_pack.h"

#include <algorithm>
#include <cstring>

#include "gemm_kernels.h"
#include "parallel.h"

namespace intcore {
namespace {

// Reads logical rows [r0, r0 + count) of the operand into out[i * k + t] as int32. Operands
// whose rows are strided (a transposed view) are read column block by column block, so that
// memory is walked along its contiguous dimension instead of one cache line per element.
template <typename T>
void read_rows_transposed(const T* base, int64_t rs, int64_t cs, int64_t r0, int64_t count, int64_t k, int32_t* out) {
  for (int64_t t = 0; t < k; ++t) {
    const T* src = base + t * cs + r0 * rs;
    for (int64_t i = 0; i < count; ++i) out[i * k + t] = src[i * rs];
  }
}

void read_row(const IntMatrix& m, int64_t r, int32_t* out);

void read_rows(const IntMatrix& m, int64_t r0, int64_t count, int32_t* out) {
  const TensorView& v = m.values;
  const int64_t rs = v.stride(0), cs = v.stride(1);
  if (!m.packed_int4 && cs != 1 && std::abs(rs) < std::abs(cs)) {
    if (v.dtype() == DType::kInt8) {
      read_rows_transposed(static_cast<const int8_t*>(v.data()), rs, cs, r0, count, m.k, out);
    } else {
      read_rows_transposed(static_cast<const int16_t*>(v.data()), rs, cs, r0, count, m.k, out);
    }
    return;
  }
  for (int64_t i = 0; i < count; ++i) read_row(m, r0 + i, out + i * m.k);
}

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


// Stores `limb` of every value of a row as bytes (limb value + bias), branch-free so the
// compiler vectorizes it.
enum class LimbKind { kWhole, kHigh, kLow };

template <LimbKind kind>
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default"))) void limb_bytes(const int32_t* row, int64_t k, int32_t bias, uint8_t* out) {
  for (int64_t i = 0; i < k; ++i) {
    const int32_t v = row[i];
    const int32_t limb = kind == LimbKind::kWhole ? v : kind == LimbKind::kHigh ? (v >> 8) : (v & 0xFF);
    out[i] = static_cast<uint8_t>(limb + bias);
  }
}

// Sum of stored bytes as the kernel reads them: unsigned on the A side, signed on the B side.
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default"))) int32_t byte_sum(const uint8_t* bytes, int64_t n,
                                                                                     PackSide side) {
  int32_t sum = 0;
  if (side == PackSide::kA) {
    for (int64_t i = 0; i < n; ++i) sum += bytes[i];
  } else {
    for (int64_t i = 0; i < n; ++i) sum += static_cast<int8_t>(bytes[i]);
  }
  return sum;
}

// Records row r's stored bytes (k4 * 4 of them, the tail zero) in `limb`: their sums per K
// chunk, as the kernel reads them, and each group of four k as one 32-bit word in the panel
// row's slot.
void store_row_bytes(const uint8_t* bytes, int64_t r, PackSide side, const PackedMatrix& p, PackedLimb& limb) {
  const int64_t R = p.panel_rows, padded_rows = p.panels * R;
  for (int64_t c = 0; c < p.chunks(); ++c) {
    const int64_t k_begin = c * kChunkK4 * 4, k_end = std::min(p.k, k_begin + kChunkK4 * 4);
    limb.sums[c * padded_rows + r] = byte_sum(bytes + k_begin, k_end - k_begin, side);
  }
  uint8_t* dst = limb.bytes.data() + (r / R) * p.k4 * R * 4 + (r % R) * 4;
  for (int64_t g = 0; g < p.k4; ++g) std::memcpy(dst + g * R * 4, bytes + g * 4, 4);
}

// Packs panel `panel` of an int8 operand (one limb) straight from its bytes: the stored byte is
// v + 128 on the A side (v ^ 0x80 as a byte) and v on the B side; pad bytes stay 0. Rows may be
// contiguous (copied four bytes at a time into their slots) or strided, as in a transposed view
// (read along the contiguous dimension, one k at a time across the panel's rows).
void pack_int8_panel(const TensorView& v, PackSide side, PackedMatrix& p, int64_t panel) {
  const int64_t R = p.panel_rows, first = panel * R, count = std::min<int64_t>(R, p.rows - first);
  const int64_t rs = v.stride(0), cs = v.stride(1), padded_rows = p.panels * R;
  const int8_t* base = static_cast<const int8_t*>(v.data());
  const uint8_t flip = side == PackSide::kA ? 0x80 : 0;
  PackedLimb& limb = p.limbs[0];
  uint8_t* dst = limb.bytes.data() + panel * p.k4 * R * 4;
  if (cs == 1 || std::abs(rs) >= std::abs(cs)) {
    std::vector<uint8_t> bytes(static_cast<size_t>(p.k4 * 4), 0);  // zero tail pads the last group
    for (int64_t i = 0; i < count; ++i) {
      const int8_t* src = base + (first + i) * rs;
      for (int64_t t = 0; t < p.k; ++t) bytes[t] = static_cast<uint8_t>(src[t * cs]) ^ flip;
      store_row_bytes(bytes.data(), first + i, side, p, limb);
    }
    return;
  }
  for (int64_t t = 0; t < p.k; ++t) {
    const int8_t* src = base + t * cs + first * rs;
    uint8_t* out = dst + (t >> 2) * R * 4 + (t & 3);
    int32_t* sums = limb.sums.data() + (t / (kChunkK4 * 4)) * padded_rows + first;
    for (int64_t i = 0; i < count; ++i) {
      const uint8_t byte = static_cast<uint8_t>(src[i * rs]) ^ flip;
      out[i * 4] = byte;
      sums[i] += side == PackSide::kA ? static_cast<int32_t>(byte) : static_cast<int32_t>(static_cast<int8_t>(byte));
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
  // int8 / int4: one signed limb. int16: signed high byte (shift 8), unsigned low byte.
  struct LimbSpec { LimbKind kind; bool is_signed; int shift; };
  const std::vector<LimbSpec> specs =
      wide ? std::vector<LimbSpec>{{LimbKind::kHigh, true, 8}, {LimbKind::kLow, false, 0}}
           : std::vector<LimbSpec>{{LimbKind::kWhole, true, 0}};
  const int64_t R = p.panel_rows, chunks = p.chunks(), padded_rows = p.panels * R;
  for (const LimbSpec& s : specs) {
    PackedLimb limb;
    limb.shift = s.shift;
    limb.offset = (side == PackSide::kA) == s.is_signed ? 128 : 0;
    limb.bytes.assign(static_cast<size_t>(p.panels * p.k4 * R * 4), 0);
    limb.sums.assign(static_cast<size_t>(chunks * padded_rows), 0);
    p.limbs.push_back(std::move(limb));
  }

  // Writes one row's limbs into its slot of the panel and records its byte sums.
  auto pack_row = [&](const int32_t* row, int64_t r, uint8_t* bytes) {
    for (size_t l = 0; l < specs.size(); ++l) {
      PackedLimb& limb = p.limbs[l];
      // stored = limb value + offset (A side) or - offset (B side)
      const int32_t bias = side == PackSide::kA ? limb.offset : -limb.offset;
      switch (specs[l].kind) {
        case LimbKind::kWhole: limb_bytes<LimbKind::kWhole>(row, p.k, bias, bytes); break;
        case LimbKind::kHigh: limb_bytes<LimbKind::kHigh>(row, p.k, bias, bytes); break;
        case LimbKind::kLow: limb_bytes<LimbKind::kLow>(row, p.k, bias, bytes); break;
      }
      store_row_bytes(bytes, r, side, p, limb);
    }
  };

  if (!m.packed_int4 && m.values.dtype() == DType::kInt8) {  // the common case, without int32 rows
    parallel_for(p.panels, R * p.k, [&](int64_t p0, int64_t p1) {
      for (int64_t panel = p0; panel < p1; ++panel) pack_int8_panel(m.values, side, p, panel);
    });
    return p;
  }
  parallel_for(p.panels, R * p.k, [&](int64_t p0, int64_t p1) {
    std::vector<int32_t> rows(static_cast<size_t>(R * p.k));
    std::vector<uint8_t> bytes(static_cast<size_t>(p.k4 * 4), 0);  // zero tail pads the last group
    for (int64_t panel = p0; panel < p1; ++panel) {
      const int64_t first = panel * R, count = std::min<int64_t>(R, p.rows - first);
      read_rows(m, first, count, rows.data());
      for (int64_t i = 0; i < count; ++i) pack_row(rows.data() + i * p.k, first + i, bytes.data());
    }
  });
  return p;
}

}  // namespace intcore

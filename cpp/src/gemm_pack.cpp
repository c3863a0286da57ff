#include "gemm_pack.h"

#include <algorithm>
#include <cstring>

#include "cpu/isa_clones.h"
#include "gemm_kernels.h"
#include "intcore/cpu_kernel.h"
#include "parallel.h"

namespace intcore {
namespace {

// Unpacks logical row r of a packed int4 operand (k values, low nibble first) to int8.
void unpack_int4_row(const IntMatrix& m, int64_t r, int8_t* out) {
  const TensorView& v = m.values;
  const uint8_t* base = static_cast<const uint8_t*>(v.data()) + r * v.stride(0);
  const int64_t cs = v.stride(1);
  for (int64_t k = 0; k < m.k; ++k) {
    const uint8_t byte = base[(k >> 1) * cs];
    out[k] = static_cast<int8_t>(static_cast<uint8_t>((k & 1 ? byte >> 4 : byte) << 4)) >> 4;
  }
}

// The stored byte of one limb of v. int8 has one limb, the value; int16 a high limb (v >> 8,
// signed) and a low limb (v & 0xFF, unsigned). `flip` is 0x80 where the limb carries the offset
// 128 on this side: v + 128 (a signed limb on the A side) and v - 128 (an unsigned limb on the
// B side) are both v ^ 0x80 as bytes.
template <typename T>
inline uint8_t limb_byte(T v, bool high, uint8_t flip) {
  const uint16_t u = static_cast<uint16_t>(v);
  return static_cast<uint8_t>((high ? u >> 8 : u) ^ flip);
}

// A stored byte as the kernel reads it: unsigned on the A side, signed on the B side.
inline int32_t byte_value(uint8_t b, bool a_side) {
  return a_side ? static_cast<int32_t>(b) : static_cast<int32_t>(static_cast<int8_t>(b));
}

// Stores one limb of a row's k values as bytes, the tail of the last group of four zero.
// Cloned per ISA so that the unit-stride loop is vectorized.
template <typename T>
INTCORE_ISA_CLONES void row_limb_bytes(
    const T* src, int64_t cs, int64_t k, int64_t k_padded, bool high, uint8_t flip, uint8_t* out) {
  if (cs == 1) {
    for (int64_t t = 0; t < k; ++t) out[t] = limb_byte(src[t], high, flip);
  } else {
    for (int64_t t = 0; t < k; ++t) out[t] = limb_byte(src[t * cs], high, flip);
  }
  for (int64_t t = k; t < k_padded; ++t) out[t] = 0;
}

// Sum of stored bytes as the kernel reads them: unsigned on the A side, signed on the B side.
INTCORE_ISA_CLONES int32_t byte_sum(const uint8_t* bytes, int64_t n, PackSide side) {
  int32_t sum = 0;
  if (side == PackSide::kA) {
    for (int64_t i = 0; i < n; ++i) sum += bytes[i];
  } else {
    for (int64_t i = 0; i < n; ++i) sum += static_cast<int8_t>(bytes[i]);
  }
  return sum;
}

// Panel memory is rebuilt by every GEMM. It is kept per thread and slot (side, limb) and
// reused: fresh pages cost a fault and a clear each, ~10% of a 4096^3 int8 GEMM. A thread that
// ran GEMMs keeps at most four buffers (two operands, two limbs), 128 MiB at the very most and
// 32 MiB after a 4096^3 int8 GEMM; buffers over kCachedBytes are owned by the limb instead, so
// a rare huge GEMM leaves nothing behind. One packed operand per slot is alive at a time: a GEMM
// packs its A and its B, uses them, and returns. The contents are not cleared. The packers
// write every byte a result depends on: each real row's words, zero bytes past K in its last
// group (pad times pad would otherwise add old bytes' products). The slots of pad rows past the
// operand's end keep old bytes: they only reach rows or columns of C that are never stored.
constexpr size_t kCachedBytes = size_t{32} << 20;

uint8_t* panel_memory(PackSide side, size_t limb, size_t size, std::vector<uint8_t>& owned) {
  if (size > kCachedBytes) {
    owned.resize(size);
    return owned.data();
  }
  static thread_local std::vector<uint8_t> cache[2][2];  // [side][limb]
  std::vector<uint8_t>& buffer = cache[side == PackSide::kA ? 0 : 1][limb];
  if (buffer.size() < size) buffer = std::vector<uint8_t>(size);
  return buffer.data();
}

// One group of four k of `count` rows whose elements lie along the contiguous dimension (a
// transposed view: row stride rs small, column stride large): the four columns c[0..3] are
// read side by side, and each row gets its limb word and its byte sum in one pass. Cloned per
// ISA; with rs == 1 the loop is vectorized.
template <typename T, bool kHigh, bool kUnsigned>
INTCORE_ISA_CLONES void column_group_words(
    const T* c0, const T* c1, const T* c2, const T* c3, int64_t rs, int64_t count, uint8_t flip, uint32_t* words,
    int32_t* sums) {
  auto run = [&](int64_t stride) {
    for (int64_t i = 0; i < count; ++i) {
      const uint8_t b0 = limb_byte(c0[i * stride], kHigh, flip), b1 = limb_byte(c1[i * stride], kHigh, flip);
      const uint8_t b2 = limb_byte(c2[i * stride], kHigh, flip), b3 = limb_byte(c3[i * stride], kHigh, flip);
      words[i] = uint32_t{b0} | uint32_t{b1} << 8 | uint32_t{b2} << 16 | uint32_t{b3} << 24;
      sums[i] += byte_value(b0, kUnsigned) + byte_value(b1, kUnsigned) + byte_value(b2, kUnsigned) +
                 byte_value(b3, kUnsigned);
    }
  };
  if (rs == 1) run(1);
  else run(rs);
}

// column_group_words with the limb and the byte kind as constants, so that the vectorized loop
// carries no selects on them.
template <typename T>
void column_group_words(const T* c0, int64_t cs, int64_t rs, int64_t count, bool high, bool unsigned_bytes,
                        uint8_t flip, uint32_t* words, int32_t* sums) {
  const T *c1 = c0 + cs, *c2 = c0 + 2 * cs, *c3 = c0 + 3 * cs;
  if (high) {
    if (unsigned_bytes) column_group_words<T, true, true>(c0, c1, c2, c3, rs, count, flip, words, sums);
    else column_group_words<T, true, false>(c0, c1, c2, c3, rs, count, flip, words, sums);
  } else {
    if (unsigned_bytes) column_group_words<T, false, true>(c0, c1, c2, c3, rs, count, flip, words, sums);
    else column_group_words<T, false, false>(c0, c1, c2, c3, rs, count, flip, words, sums);
  }
}

// k per block of the row-wise packer: the panel's rows of one block (16 KiB on the B side)
// stay in L1 while their words are interleaved into the panel.
constexpr int64_t kRowBlock = 256;
static_assert(kChunkK4 * 4 % kRowBlock == 0, "a row block must not straddle two K chunks");

// Rows of one panel laid out along k (contiguous rows, or rows farther apart than columns), one
// limb: a block of k at a time, each row's limb bytes are made in one vectorized pass, then the
// block's words are interleaved group by group, so the panel is written in order. (Writing
// each row's words straight into its slot touches a new cache line per word: 4x slower.)
// `rows` points at the panel's first row (operand row `first`); `block` is the caller's scratch
// of panel_rows * kRowBlock bytes, reused across panels.
template <typename T>
void pack_row_blocks(const T* rows, int64_t rs, int64_t cs, int64_t first, int64_t count, bool high, uint8_t flip,
                     PackSide side, const PackedMatrix& p, PackedLimb& limb, int64_t panel, uint8_t* block) {
  const int64_t R = p.panel_rows, padded_rows = p.panels * R, k_padded = p.k4 * 4;
  uint8_t* dst = limb.bytes + panel * p.k4 * R * 4;
  for (int64_t k0 = 0; k0 < k_padded; k0 += kRowBlock) {
    const int64_t real = std::min(kRowBlock, p.k - k0), padded = std::min(kRowBlock, k_padded - k0);
    int32_t* sums = limb.sums.data() + (k0 / (kChunkK4 * 4)) * padded_rows + first;  // blocks never straddle chunks
    for (int64_t i = 0; i < count; ++i) {
      uint8_t* row = block + i * kRowBlock;
      row_limb_bytes(rows + i * rs + k0 * cs, cs, real, padded, high, flip, row);
      sums[i] += byte_sum(row, real, side);
    }
    for (int64_t g = 0; g < padded / 4; ++g) {
      uint8_t* out = dst + (k0 / 4 + g) * R * 4;
      for (int64_t i = 0; i < count; ++i) std::memcpy(out + i * 4, block + i * kRowBlock + g * 4, 4);
    }
  }
}

// Rows per call of the column packer: rows of several panels at once (32 A panels, 3 B panels),
// so that each call reads four runs of 192 values and A's six-row panels do not each pay for a
// call. The words go to a small buffer, then to their panels.
constexpr int64_t kColumnRows = 192;

// Panels [p0, p1) of a transposed view (rows strided by rs, small; columns by cs, large), one
// limb: four columns at a time, read along the contiguous dimension.
template <typename T>
void pack_column_panels(const T* base, int64_t rs, int64_t cs, bool high, uint8_t flip, PackSide side,
                        const PackedMatrix& p, PackedLimb& limb, int64_t p0, int64_t p1) {
  const int64_t R = p.panel_rows, padded_rows = p.panels * R, full = p.k / 4;
  const bool a_side = side == PackSide::kA;
  const int64_t per_block = std::max<int64_t>(1, kColumnRows / R);
  std::vector<uint32_t> words(static_cast<size_t>(per_block * R));
  for (int64_t q0 = p0; q0 < p1; q0 += per_block) {
    const int64_t q1 = std::min(p1, q0 + per_block), first = q0 * R, count = std::min(q1 * R, p.rows) - first;
    for (int64_t g = 0; g < full; ++g) {
      int32_t* sums = limb.sums.data() + (g / kChunkK4) * padded_rows + first;
      column_group_words(base + 4 * g * cs + first * rs, cs, rs, count, high, a_side, flip, words.data(), sums);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t rows = std::min(R, p.rows - q * R);
        std::memcpy(limb.bytes + (q * p.k4 + g) * R * 4, words.data() + (q - q0) * R, static_cast<size_t>(rows * 4));
      }
    }
    if (full == p.k4) continue;
    // The last, partial group: its missing k stay zero bytes and add nothing to the sums.
    int32_t* sums = limb.sums.data() + (full / kChunkK4) * padded_rows + first;
    for (int64_t q = q0; q < q1; ++q) {
      std::memset(limb.bytes + (q * p.k4 + full) * R * 4, 0, static_cast<size_t>(std::min(R, p.rows - q * R) * 4));
    }
    for (int64_t t = 4 * full; t < p.k; ++t) {
      for (int64_t i = 0; i < count; ++i) {
        const int64_t row = first + i;
        const uint8_t b = limb_byte(base[t * cs + row * rs], high, flip);
        limb.bytes[((row / R) * p.k4 + full) * R * 4 + (row % R) * 4 + (t & 3)] = b;
        sums[i] += byte_value(b, a_side);
      }
    }
  }
}

// Packs panels [p0, p1) of an int8 or int16 operand, every limb, straight from its values (no
// int32 copy). Rows may be contiguous (AVX-512 register transposes for int8 under that kernel,
// else blocks of 256 k interleaved in panel order) or strided, as in a transposed view
// (pack_column_panels). Bytes past K in the last group are zero; the slots of pad rows are not
// written (see panel_memory).
template <typename T>
void pack_panels(const TensorView& v, PackSide side, PackedMatrix& p, int64_t p0, int64_t p1) {
  const int64_t R = p.panel_rows, rs = v.stride(0), cs = v.stride(1);
  const T* base = static_cast<const T*>(v.data());
  constexpr bool wide = sizeof(T) == 2;
  const bool a_side = side == PackSide::kA, rows_along_k = cs == 1 || std::abs(rs) >= std::abs(cs);
  std::vector<uint8_t> block(static_cast<size_t>(rows_along_k ? R * kRowBlock : 0));
  for (size_t l = 0; l < p.limbs.size(); ++l) {
    PackedLimb& limb = p.limbs[l];
    const bool high = wide && l == 0;
    const uint8_t flip = limb.flip();
    if (!rows_along_k) {
      pack_column_panels(base, rs, cs, high, flip, side, p, limb, p0, p1);
      continue;
    }
    for (int64_t panel = p0; panel < p1; ++panel) {
      const int64_t first = panel * R, count = std::min<int64_t>(R, p.rows - first);
      if constexpr (!wide) {
        if (cs == 1 && active_cpu_kernel() == CpuKernel::kAvx512Vnni) {
          pack_int8_rows_avx512(base + first * rs, rs, first, count, flip, a_side, p, limb, panel);
          continue;
        }
      }
      pack_row_blocks(base + first * rs, rs, cs, first, count, high, flip, side, p, limb, panel, block.data());
    }
  }
}

// The sum of n int16 values (a row's part in one K chunk), cloned per ISA to vectorize.
INTCORE_ISA_CLONES int32_t int16_sum(const int16_t* v, int64_t n) {
  int32_t sum = 0;
  for (int64_t t = 0; t < n; ++t) sum += v[t];
  return sum;
}

// Panels [p0, p1) of an int16 operand kept whole: each row's groups of four k as four int16
// (zero past K), and each row's sum per K chunk. Contiguous rows copy 8 bytes per group; other
// views read k by k across the panel's rows; the partial last group is done row by row.
void pack_whole_int16_panels(const TensorView& v, PackedMatrix& p, int64_t p0, int64_t p1) {
  const int64_t R = p.panel_rows, rs = v.stride(0), cs = v.stride(1), padded_rows = p.panels * R;
  const int64_t full = p.k / 4, chunk_k = kChunkK4 * 4;
  const int16_t* base = static_cast<const int16_t*>(v.data());
  PackedLimb& limb = p.limbs[0];
  for (int64_t panel = p0; panel < p1; ++panel) {
    int16_t* dst = reinterpret_cast<int16_t*>(limb.bytes) + panel * p.k4 * R * 4;
    const int64_t first = panel * R, count = std::min<int64_t>(R, p.rows - first);
    if (cs == 1) {
      for (int64_t i = 0; i < count; ++i) {
        const int16_t* row = base + (first + i) * rs;
        for (int64_t g = 0; g < full; ++g) std::memcpy(dst + (g * R + i) * 4, row + 4 * g, 4 * sizeof(int16_t));
        for (int64_t k0 = 0; k0 < p.k; k0 += chunk_k) {  // every real k, the partial group's too
          limb.sums[(k0 / chunk_k) * padded_rows + first + i] += int16_sum(row + k0, std::min(chunk_k, p.k - k0));
        }
      }
    } else {
      // Other views (a transposed operand): k by k across the panel's rows, which a transposed
      // view holds side by side in memory.
      for (int64_t g = 0; g < full; ++g) {
        int32_t* sums = limb.sums.data() + (g / kChunkK4) * padded_rows + first;
        for (int64_t t = 0; t < 4; ++t) {
          const int16_t* column = base + (4 * g + t) * cs + first * rs;
          for (int64_t i = 0; i < count; ++i) {
            dst[(g * R + i) * 4 + t] = column[i * rs];
            sums[i] += column[i * rs];
          }
        }
      }
    }
    if (full == p.k4) continue;
    // The last, partial group, zero past K (its values are already in the sums of contiguous rows).
    int32_t* sums = limb.sums.data() + (full / kChunkK4) * padded_rows + first;
    for (int64_t i = 0; i < count; ++i) {
      int16_t* out = dst + (full * R + i) * 4;
      for (int64_t t = 0; t < 4; ++t) {
        out[t] = 4 * full + t < p.k ? base[(first + i) * rs + (4 * full + t) * cs] : 0;
        if (cs != 1) sums[i] += out[t];
      }
    }
  }
}

}  // namespace

PackedMatrix pack_operand(const IntMatrix& m, PackSide side, bool whole_int16) {
  PackedMatrix p;
  p.rows = m.rows();
  p.k = m.k;
  p.k4 = (m.k + 3) / 4;
  p.panel_rows = side == PackSide::kA ? kMR : kNR;
  p.panels = (p.rows + p.panel_rows - 1) / p.panel_rows;
  const bool wide = !m.packed_int4 && m.values.dtype() == DType::kInt16;
  whole_int16 = whole_int16 && wide && side == PackSide::kA;
  // int8 / int4: one signed limb. int16: signed high byte (shift 8), unsigned low byte; or,
  // kept whole, one limb of int16 values (offset 0: the kernel reads them signed).
  struct LimbSpec { bool is_signed; int shift; };
  const std::vector<LimbSpec> specs = wide && !whole_int16 ? std::vector<LimbSpec>{{true, 8}, {false, 0}}
                                                           : std::vector<LimbSpec>{{true, 0}};
  p.element_bytes = whole_int16 ? 2 : 1;
  const int64_t R = p.panel_rows, chunks = p.chunks(), padded_rows = p.panels * R;
  for (const LimbSpec& s : specs) {
    PackedLimb limb;
    limb.shift = s.shift;
    limb.offset = (side == PackSide::kA) == s.is_signed && !whole_int16 ? 128 : 0;
    limb.bytes = panel_memory(side, p.limbs.size(), static_cast<size_t>(p.panels * p.k4 * R * 4 * p.element_bytes),
                              limb.owned);
    limb.sums.assign(static_cast<size_t>(chunks * padded_rows), 0);
    p.limbs.push_back(std::move(limb));
  }
  if (whole_int16) {
    parallel_for(p.panels, R * p.k, [&](int64_t p0, int64_t p1) { pack_whole_int16_panels(m.values, p, p0, p1); });
    return p;
  }

  if (!m.packed_int4) {
    parallel_for(p.panels, R * p.k * static_cast<int64_t>(specs.size()), [&](int64_t p0, int64_t p1) {
      if (wide) pack_panels<int16_t>(m.values, side, p, p0, p1);
      else pack_panels<int8_t>(m.values, side, p, p0, p1);
    });
    return p;
  }
  // Packed int4: one signed limb. Each panel's rows are unpacked to int8, then packed as int8 rows.
  parallel_for(p.panels, R * p.k, [&](int64_t p0, int64_t p1) {
    std::vector<int8_t> rows(static_cast<size_t>(R * p.k));
    std::vector<uint8_t> block(static_cast<size_t>(R * kRowBlock));
    for (int64_t panel = p0; panel < p1; ++panel) {
      const int64_t first = panel * R, count = std::min<int64_t>(R, p.rows - first);
      for (int64_t i = 0; i < count; ++i) unpack_int4_row(m, first + i, rows.data() + i * p.k);
      pack_row_blocks(rows.data(), p.k, 1, first, count, false, p.limbs[0].flip(), side, p, p.limbs[0], panel,
                      block.data());
    }
  });
  return p;
}

}  // namespace intcore

// GEMM driver: packs both operands, then walks C in kMR x kNR tiles. An int8 or int4 pair over
// one K chunk takes one kernel call per tile, exact in int32, written straight into C where the
// tile is full. Other pairs run the micro-kernel once per (K chunk, A limb, B limb), add the
// row term of the packing offsets, and shift each limb product into place in an int64 tile.
// Either tile then goes to the epilogue.
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/isa_clones.h"
#include "float_types.h"
#include "gemm_epilogue.h"
#include "gemm_kernels.h"
#include "gemm_pack.h"
#include "huge_pages.h"
#include "intcore/cpu_kernel.h"
#include "intcore/gemm.h"
#include "parallel.h"
#include "cuda_dispatch.h"

namespace intcore {
namespace {

constexpr int64_t kPanelsPerBlock = 16;  // A panels per work item: 96 rows share one B panel

// An int32 C (or float out) at least this large is written with streaming stores: larger than
// a core's L2, it ends in L3 or memory either way, and skipping the read of each line before
// its write made int8_mm 7% faster at 2048 x 768 x 768 and 2048 x 3072 x 768 (Zen 4).
constexpr int64_t kStreamBytes = int64_t{2} << 20;

// Whether an [m, n] output of 4-byte elements gets streaming stores: large enough, and every
// full tile row 64-byte aligned (an aligned base with rows of 16k elements).
bool streams(const void* data, int64_t m, int64_t n) {
  return m * n * 4 >= kStreamBytes && reinterpret_cast<uintptr_t>(data) % 64 == 0 && n % 16 == 0;
}

// The per-column start of a limb pair's accumulators: the offset terms that depend on the
// column, -off_a sum b' - k off_a off_b, modulo 2^32 (the exact limb product sum fits int32,
// kChunkK4, so the wrapped value is that sum once the row term is added).
void column_start(const int32_t* col_sums, uint32_t off_a, uint32_t off_b, uint32_t k_real, int32_t* start) {
  const uint32_t constant = k_real * off_a * off_b;
  for (int j = 0; j < kNR; ++j) {
    start[j] = static_cast<int32_t>(0u - off_a * static_cast<uint32_t>(col_sums[j]) - constant);
  }
}

// tile (= when first, else +=) (acc + off_b sum a') 2^shift: the row term of the offsets, then
// the limb's place. Cloned per ISA: the engine's baseline is x86-64-v2, and this runs once per
// tile and limb pair.
INTCORE_ISA_CLONES void merge_tile(
    const int32_t* acc, const int32_t* row_sums, uint32_t off_b, int shift, bool first, int64_t* tile) {
  for (int i = 0; i < kMR; ++i) {
    const uint32_t row_term = off_b * static_cast<uint32_t>(row_sums[i]);
    for (int j = 0; j < kNR; ++j) {
      const uint32_t exact = static_cast<uint32_t>(acc[i * kNR + j]) + row_term;
      const int64_t v = static_cast<int64_t>(static_cast<int32_t>(exact)) * (int64_t{1} << shift);
      tile[i * kNR + j] = first ? v : tile[i * kNR + j] + v;
    }
  }
}

// tile (= when first, else +=) (acc + off_b sum a) 2^shift in int64: merge_tile for a whole
// int16 A, whose products and row sums need not fit int32.
INTCORE_ISA_CLONES void merge_tile64(const int64_t* acc, const int32_t* row_sums, int64_t off_b, int shift,
                                     bool first, int64_t* tile) {
  for (int i = 0; i < kMR; ++i) {
    const int64_t row_term = off_b * row_sums[i];
    for (int j = 0; j < kNR; ++j) {
      const int64_t v = (acc[i * kNR + j] + row_term) * (int64_t{1} << shift);
      tile[i * kNR + j] = first ? v : tile[i * kNR + j] + v;
    }
  }
}

// dst[j] = float(tile[j] rs cs[j]) (+ bias[j]): the scaled epilogue of one tile row, cloned per ISA.
template <typename T>
INTCORE_ISA_CLONES void scale_tile_row(
    const T* tile, int64_t cols, double rs, const double* cs, const float* bias, float* dst) {
  for (int64_t j = 0; j < cols; ++j) {
    const float v = static_cast<float>(static_cast<double>(tile[j]) * rs * cs[j]);
    dst[j] = bias ? v + bias[j] : v;
  }
}

// Walks C in kMR x kNR tiles, kPanelsPerBlock A panels per work item sharing one B panel.
// An operand pair of one limb each (int8, int4) over one K chunk, whose B limb has no offset,
// leaves the kernel exact in int32: the column start undoes the A offset. Such tiles go to C
// directly when the epilogue can take them (a full tile of an int32 result), else to the
// epilogue as int32. Other pairs sum every (chunk, A limb, B limb) product into an int64 tile.
// `int16_kernel` is the set's Int16MicroKernel that A was packed for when A is an int16 kept whole
// (chosen once by the caller, with the packing).
template <class Epilogue>
void run_gemm(const PackedMatrix& a, const PackedMatrix& b, const Epilogue& epilogue, Int16MicroKernel int16_kernel) {
  const MicroKernel kernel = active_microkernel();
  const int64_t m_blocks = (a.panels + kPanelsPerBlock - 1) / kPanelsPerBlock;
  const int64_t items = m_blocks * b.panels;
  const int64_t cost = kPanelsPerBlock * kMR * kNR * (a.k + 1) *
                       static_cast<int64_t>(a.limbs.size() * b.limbs.size());
  const bool whole_a = a.element_bytes == 2;
  const bool single =
      !whole_a && a.limbs.size() == 1 && b.limbs.size() == 1 && a.chunks() == 1 && b.limbs[0].offset == 0;
  parallel_for(items, cost, [&](int64_t begin, int64_t end) {
    alignas(64) int32_t acc[kMR * kNR];
    alignas(64) int64_t tile[kMR * kNR];
    std::vector<int32_t> starts(static_cast<size_t>(a.chunks()) * a.limbs.size() * b.limbs.size() * kNR);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t nb = item / m_blocks, mb = item % m_blocks;
      const int64_t mp_end = std::min(a.panels, (mb + 1) * kPanelsPerBlock);
      // The column starts depend on the B panel, the chunk and the limb pair, not on the A panel
      // (a whole int16 A has no offset, so it needs none).
      for (int64_t chunk = 0, at = 0; chunk < a.chunks() && !whole_a; ++chunk) {
        const uint32_t k_real = static_cast<uint32_t>(std::min(kChunkK4 * 4, a.k - chunk * kChunkK4 * 4));
        for (size_t la = 0; la < a.limbs.size(); ++la)
          for (size_t lb = 0; lb < b.limbs.size(); ++lb, at += kNR) {
            column_start(b.sums(static_cast<int>(lb), chunk) + nb * kNR, static_cast<uint32_t>(a.limbs[la].offset),
                         static_cast<uint32_t>(b.limbs[lb].offset), k_real, starts.data() + at);
          }
      }
      if (single) {
        const int8_t* b_panel = reinterpret_cast<const int8_t*>(b.panel(0, nb, 0));
        for (int64_t mp = mb * kPanelsPerBlock; mp < mp_end; ++mp) {
          int64_t ldc = kNR;
          int32_t* c = epilogue.direct(mp * kMR, nb * kNR, &ldc);
          kernel(a.panel(0, mp, 0), b_panel, a.k4, starts.data(), c ? c : acc, ldc, c != nullptr && epilogue.stream);
          if (!c) epilogue(acc, mp * kMR, nb * kNR);
        }
        continue;
      }
      if (whole_a) {  // one product per B limb; no column starts (A has no offset)
        alignas(64) int64_t acc64[kMR * kNR];
        for (int64_t mp = mb * kPanelsPerBlock; mp < mp_end; ++mp) {
          bool first = true;
          for (int64_t chunk = 0; chunk < a.chunks(); ++chunk) {
            const int64_t k4 = std::min(kChunkK4, a.k4 - chunk * kChunkK4);
            const int32_t* row_sums = a.sums(0, chunk) + mp * kMR;
            for (size_t lb = 0; lb < b.limbs.size(); ++lb) {
              int16_kernel(reinterpret_cast<const int16_t*>(a.panel(0, mp, chunk)),
                           reinterpret_cast<const int8_t*>(b.panel(static_cast<int>(lb), nb, chunk)), k4, acc64);
              merge_tile64(acc64, row_sums, b.limbs[lb].offset, b.limbs[lb].shift, first, tile);
              first = false;
            }
          }
          epilogue(tile, mp * kMR, nb * kNR);
        }
        continue;
      }
      for (int64_t mp = mb * kPanelsPerBlock; mp < mp_end; ++mp) {
        bool first = true;
        const int32_t* pair_start = starts.data();
        for (int64_t chunk = 0; chunk < a.chunks(); ++chunk) {
          const int64_t k4 = std::min(kChunkK4, a.k4 - chunk * kChunkK4);
          for (size_t la = 0; la < a.limbs.size(); ++la) {
            const int32_t* row_sums = a.sums(static_cast<int>(la), chunk) + mp * kMR;
            for (size_t lb = 0; lb < b.limbs.size(); ++lb, pair_start += kNR) {
              const uint32_t off_b = static_cast<uint32_t>(b.limbs[lb].offset);
              kernel(a.panel(static_cast<int>(la), mp, chunk),
                     reinterpret_cast<const int8_t*>(b.panel(static_cast<int>(lb), nb, chunk)), k4, pair_start, acc,
                     kNR, false);
              merge_tile(acc, row_sums, off_b, a.limbs[la].shift + b.limbs[lb].shift, first, tile);
              first = false;
            }
          }
        }
        epilogue(tile, mp * kMR, nb * kNR);
      }
    }
    if (epilogue.stream) stream_fence();
  });
}

// dst[j] = tile[j] as Out (int32 when the caller has checked it cannot overflow), cloned per ISA.
template <typename T, typename Out>
INTCORE_ISA_CLONES void store_tile_row(const T* tile, int64_t cols, Out* dst) {
  for (int64_t j = 0; j < cols; ++j) dst[j] = static_cast<Out>(tile[j]);
}

// Writes the exact int32 or int64 result.
template <typename Out>
struct ExactEpilogue {
  Out* c;
  int64_t m, n;
  bool stream = false;  // direct tiles are streamed (set where C allows it: gemm_exact)
  // Where a kernel may write a full int32 tile of C itself, with C's row stride; nullptr otherwise.
  int32_t* direct(int64_t row0, int64_t col0, int64_t* ldc) const {
    if constexpr (!std::is_same_v<Out, int32_t>) return nullptr;
    if (row0 + kMR > m || col0 + kNR > n) return nullptr;
    *ldc = n;
    return reinterpret_cast<int32_t*>(c + row0 * n + col0);
  }
  template <typename T>
  void operator()(const T* tile, int64_t row0, int64_t col0) const {
    const int64_t rows = std::min<int64_t>(kMR, m - row0), cols = std::min<int64_t>(kNR, n - col0);
    for (int64_t i = 0; i < rows; ++i) store_tile_row<T, Out>(tile + i * kNR, cols, c + (row0 + i) * n + col0);
  }
};

// Per-row multipliers as doubles, one per row (a per-tensor scale is repeated).
using ScaleVector = std::vector<double>;

struct ScaledEpilogue {
  float* out;
  int64_t m, n;
  ScaleVector row_scale, col_scale;
  const float* bias;
  bool stream = false;  // full int32 tile rows are streamed (set where out allows it: gemm_scaled)
  int32_t* direct(int64_t, int64_t, int64_t*) const { return nullptr; }
  template <typename T>
  void operator()(const T* tile, int64_t row0, int64_t col0) const {
    const int64_t rows = std::min<int64_t>(kMR, m - row0), cols = std::min<int64_t>(kNR, n - col0);
    const double* cs = col_scale.data() + col0;
    if constexpr (std::is_same_v<T, int32_t>) {
      if (stream && cols == kNR) {
        for (int64_t i = 0; i < rows; ++i) {
          scale_row_stream_avx512(tile + i * kNR, row_scale[row0 + i], cs, bias ? bias + col0 : nullptr,
                                  out + (row0 + i) * n + col0);
        }
        return;
      }
    }
    for (int64_t i = 0; i < rows; ++i) {
      scale_tile_row(tile + i * kNR, cols, row_scale[row0 + i], cs, bias ? bias + col0 : nullptr,
                     out + (row0 + i) * n + col0);
    }
  }
};

void check_operand(const std::string& fn, const IntMatrix& m) {
  // The dtype first, then the rank: the order of every other check in the engine.
  if (m.packed_int4) {
    check_dtype(fn, m.values, DType::kUInt8);
    check_dim(fn, m.values, 2);
    if (m.k < 0) throw_value_error(fn + ": K (int4_k) must be >= 0, got " + std::to_string(m.k));
    if (m.values.size(1) != (m.k + 1) / 2) {
      throw_value_error(fn + ": " + m.values.name() + " holds packed int4 with K = " + std::to_string(m.k) +
                        ", so it needs " + std::to_string((m.k + 1) / 2) + " bytes per row, got " +
                        m.values.shape_str());
    }
  } else {
    if (m.values.dtype() != DType::kInt8 && m.values.dtype() != DType::kInt16) {
      throw_type_error(fn + ": " + m.values.name() + " must be int8 or int16 (or packed int4), got " +
                       dtype_name(m.values.dtype()));
    }
    check_dim(fn, m.values, 2);
  }
}

void check_operands(const std::string& fn, const IntMatrix& a, const IntMatrix& b) {
  check_operand(fn, a);
  check_operand(fn, b);
  if (a.k != b.k) {
    throw_value_error(fn + ": " + a.values.name() + " and " + b.values.name() +
                      " must have the same K (reduction size), got " + std::to_string(a.k) + " and " +
                      std::to_string(b.k));
  }
}

void check_scales(const std::string& fn, const TensorView& s, int64_t rows) {
  check_contiguous(fn, s);
  check_scale_shape(fn, s, rows);
  if (s.dtype() != DType::kFloat32 && s.dtype() != DType::kInt32) {
    throw_type_error(fn + ": " + s.name() + " must be float32 (scales) or int32 (exponents), got " +
                     dtype_name(s.dtype()));
  }
}

// The scales as doubles, one per row (host memory: CPU only).
ScaleVector scale_vector(const TensorView& s, int64_t rows) {
  const bool per_row = s.size(0) == rows && rows != 1;
  ScaleVector v(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t at = per_row ? i : 0;
    if (s.dtype() == DType::kFloat32) v[i] = static_cast<const float*>(s.data())[at];
    else v[i] = exponent_step(static_cast<const int32_t*>(s.data())[at]);
  }
  return v;
}

}  // namespace

IntMatrix IntMatrix::of(const TensorView& values) {
  IntMatrix m;
  m.values = values;
  m.k = values.dim() == 2 ? values.size(1) : 0;
  return m;
}

IntMatrix IntMatrix::int4(const TensorView& packed, int64_t k) {
  IntMatrix m;
  m.values = packed;
  m.k = k;
  m.packed_int4 = true;
  return m;
}

void gemm_exact(const IntMatrix& a, const IntMatrix& b, const TensorView& c) {
  const std::string fn = "gemm_exact";
  check_operands(fn, a, b);
  const int64_t m = a.rows(), n = b.rows();
  check_shape(fn, c, {m, n});
  check_contiguous(fn, c);
  check_disjoint(fn, {&c}, {&a.values, &b.values});
  const bool narrow = a.values.dtype() != DType::kInt16 && b.values.dtype() != DType::kInt16;
  if (c.dtype() == DType::kInt32) {
    if (!narrow) throw_type_error(fn + ": " + c.name() + " must be int64 for int16 operands (int32 can overflow)");
    if (a.k >= (int64_t{1} << 17)) {
      throw_value_error(fn + ": K = " + std::to_string(a.k) + " can overflow an int32 result; K must be below 131072 "
                        "(pass an int64 " + c.name() + ")");
    }
  } else if (c.dtype() != DType::kInt64) {
    throw_type_error(fn + ": " + c.name() + " must be int32 or int64, got " + dtype_name(c.dtype()));
  }
  if (runs_on_cuda(fn, {&a.values, &b.values, &c})) {
    INTCORE_ON_CUDA(cuda::gemm_exact(a, b, c));
    return;
  }
  if (m == 0 || n == 0) return;
  advise_huge_pages(c.data(), static_cast<size_t>(m * n) * dtype_size(c.dtype()));
  const Int16MicroKernel int16_kernel = active_int16_microkernel();
  const PackedMatrix pa = pack_operand(a, PackSide::kA, int16_kernel != nullptr);
  const PackedMatrix pb = pack_operand(b, PackSide::kB);
  if (c.dtype() == DType::kInt32) {
    run_gemm(pa, pb, ExactEpilogue<int32_t>{static_cast<int32_t*>(c.data()), m, n, streams(c.data(), m, n)},
             int16_kernel);
  } else run_gemm(pa, pb, ExactEpilogue<int64_t>{static_cast<int64_t*>(c.data()), m, n}, int16_kernel);
}

void gemm_scaled(const IntMatrix& a, const TensorView& a_scale, const IntMatrix& b, const TensorView& b_scale,
                 const TensorView* bias, const TensorView& out) {
  const std::string fn = "gemm_scaled";
  check_operands(fn, a, b);
  const int64_t m = a.rows(), n = b.rows();
  check_dtype(fn, out, DType::kFloat32);
  check_shape(fn, out, {m, n});
  check_contiguous(fn, out);
  check_scales(fn, a_scale, m);
  check_scales(fn, b_scale, n);
  if (bias != nullptr) {
    check_dtype(fn, *bias, DType::kFloat32);
    check_shape(fn, *bias, {n});
    check_contiguous(fn, *bias);
  }
  check_disjoint(fn, {&out}, {&a.values, &b.values, &a_scale, &b_scale, bias});
  if (runs_on_cuda(fn, {&a.values, &b.values, &a_scale, &b_scale, bias, &out})) {
    INTCORE_ON_CUDA(cuda::gemm_scaled(a, a_scale, b, b_scale, bias, out));
    return;
  }
  if (bias != nullptr) {  // NaN or Inf in the bias is refused like in every other input
    const float* values = static_cast<const float*>(bias->data());
    for (int64_t j = 0; j < n; ++j) {
      if (!std::isfinite(values[j])) throw_value_error(fn + ": " + bias->name() + " contains NaN or Inf");
    }
  }
  if (m == 0 || n == 0) return;
  advise_huge_pages(out.data(), static_cast<size_t>(m * n) * sizeof(float));
  ScaledEpilogue epilogue{static_cast<float*>(out.data()), m, n, scale_vector(a_scale, m), scale_vector(b_scale, n),
                          bias ? static_cast<const float*>(bias->data()) : nullptr};
  // Streamed like a large int32 C, where the AVX-512 kernel runs (the streamed epilogue is AVX-512).
  epilogue.stream = active_cpu_kernel() == CpuKernel::kAvx512Vnni && streams(out.data(), m, n);
  const Int16MicroKernel int16_kernel = active_int16_microkernel();
  run_gemm(pack_operand(a, PackSide::kA, int16_kernel != nullptr), pack_operand(b, PackSide::kB), epilogue,
           int16_kernel);
}

}  // namespace intcore

// GEMM driver: packs both operands, then walks C in kMR x kNR tiles. Each tile runs the
// micro-kernel once per (K chunk, A limb, B limb), removes the packing offsets, shifts the
// limb product into place in an int64 tile, and hands the tile to the epilogue.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "float_types.h"
#include "gemm_kernels.h"
#include "gemm_pack.h"
#include "intcore/gemm.h"
#include "parallel.h"
#include "cuda_dispatch.h"

namespace intcore {
namespace {

constexpr int64_t kPanelsPerBlock = 16;  // A panels per work item: 96 rows share one B panel

// tile += (acc with the byte offsets undone) 2^shift. The offsets are undone modulo 2^32: the
// exact limb product sum fits int32 (kChunkK4), so the wrapped value is that sum. Cloned per
// ISA: the engine's baseline is x86-64-v2, and this runs once per tile and limb pair.
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default"))) void merge_tile(
    const int32_t* acc, const int32_t* row_sums, const int32_t* col_sums, uint32_t off_a, uint32_t off_b,
    uint32_t k_real, int shift, int64_t* tile) {
  const uint32_t constant = k_real * off_a * off_b;
  for (int i = 0; i < kMR; ++i) {
    const uint32_t row_term = off_b * static_cast<uint32_t>(row_sums[i]) - constant;
    for (int j = 0; j < kNR; ++j) {
      const uint32_t exact =
          static_cast<uint32_t>(acc[i * kNR + j]) + row_term - off_a * static_cast<uint32_t>(col_sums[j]);
      tile[i * kNR + j] += static_cast<int64_t>(static_cast<int32_t>(exact)) * (int64_t{1} << shift);
    }
  }
}

// dst[j] = float(tile[j] rs cs[j]) (+ bias[j]): the scaled epilogue of one tile row, cloned per ISA.
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default"))) void scale_tile_row(
    const int64_t* tile, int64_t cols, double rs, const double* cs, const float* bias, float* dst) {
  for (int64_t j = 0; j < cols; ++j) {
    const float v = static_cast<float>(static_cast<double>(tile[j]) * rs * cs[j]);
    dst[j] = bias ? v + bias[j] : v;
  }
}

template <class Epilogue>
void run_gemm(const PackedMatrix& a, const PackedMatrix& b, const Epilogue& epilogue) {
  const MicroKernel kernel = active_microkernel();
  const int64_t m_blocks = (a.panels + kPanelsPerBlock - 1) / kPanelsPerBlock;
  const int64_t items = m_blocks * b.panels;
  const int64_t cost = kPanelsPerBlock * kMR * kNR * (a.k + 1) *
                       static_cast<int64_t>(a.limbs.size() * b.limbs.size());
  parallel_for(items, cost, [&](int64_t begin, int64_t end) {
    alignas(64) int32_t acc[kMR * kNR];
    alignas(64) int64_t tile[kMR * kNR];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t nb = item / m_blocks, mb = item % m_blocks;
      const int64_t mp_end = std::min(a.panels, (mb + 1) * kPanelsPerBlock);
      for (int64_t mp = mb * kPanelsPerBlock; mp < mp_end; ++mp) {
        std::memset(tile, 0, sizeof(tile));
        for (int64_t chunk = 0; chunk < a.chunks(); ++chunk) {
          const int64_t k4 = std::min(kChunkK4, a.k4 - chunk * kChunkK4);
          const uint32_t k_real = static_cast<uint32_t>(std::min(kChunkK4 * 4, a.k - chunk * kChunkK4 * 4));
          for (size_t la = 0; la < a.limbs.size(); ++la) {
            const int32_t* row_sums = a.sums(static_cast<int>(la), chunk) + mp * kMR;
            const uint32_t off_a = static_cast<uint32_t>(a.limbs[la].offset);
            for (size_t lb = 0; lb < b.limbs.size(); ++lb) {
              const int32_t* col_sums = b.sums(static_cast<int>(lb), chunk) + nb * kNR;
              const uint32_t off_b = static_cast<uint32_t>(b.limbs[lb].offset);
              const int shift = a.limbs[la].shift + b.limbs[lb].shift;
              kernel(a.panel(static_cast<int>(la), mp, chunk),
                     reinterpret_cast<const int8_t*>(b.panel(static_cast<int>(lb), nb, chunk)), k4, acc);
              merge_tile(acc, row_sums, col_sums, off_a, off_b, k_real, shift, tile);
            }
          }
        }
        epilogue(tile, mp * kMR, nb * kNR);
      }
    }
  });
}

// dst[j] = tile[j] as Out (int32 when the caller has checked it cannot overflow), cloned per ISA.
template <typename Out>
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default"))) void store_tile_row(const int64_t* tile,
                                                                                       int64_t cols, Out* dst) {
  for (int64_t j = 0; j < cols; ++j) dst[j] = static_cast<Out>(tile[j]);
}

// Writes the exact int32 or int64 result.
template <typename Out>
struct ExactEpilogue {
  Out* c;
  int64_t m, n;
  void operator()(const int64_t* tile, int64_t row0, int64_t col0) const {
    const int64_t rows = std::min<int64_t>(kMR, m - row0), cols = std::min<int64_t>(kNR, n - col0);
    for (int64_t i = 0; i < rows; ++i) store_tile_row<Out>(tile + i * kNR, cols, c + (row0 + i) * n + col0);
  }
};

// Per-row multipliers as doubles, one per row (a per-tensor scale is repeated).
using ScaleVector = std::vector<double>;

struct ScaledEpilogue {
  float* out;
  int64_t m, n;
  ScaleVector row_scale, col_scale;
  const float* bias;
  void operator()(const int64_t* tile, int64_t row0, int64_t col0) const {
    const int64_t rows = std::min<int64_t>(kMR, m - row0), cols = std::min<int64_t>(kNR, n - col0);
    const double* cs = col_scale.data() + col0;
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
  if (s.dim() != 1 || (s.size(0) != 1 && s.size(0) != rows)) {
    throw_value_error(fn + ": " + s.name() + " must have shape [1] or [" + std::to_string(rows) + "], got " +
                      s.shape_str());
  }
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
    else v[i] = pow2(static_cast<const int32_t*>(s.data())[at]);
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
  const PackedMatrix pa = pack_operand(a, PackSide::kA), pb = pack_operand(b, PackSide::kB);
  if (c.dtype() == DType::kInt32) run_gemm(pa, pb, ExactEpilogue<int32_t>{static_cast<int32_t*>(c.data()), m, n});
  else run_gemm(pa, pb, ExactEpilogue<int64_t>{static_cast<int64_t*>(c.data()), m, n});
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
  ScaledEpilogue epilogue{static_cast<float*>(out.data()), m, n, scale_vector(a_scale, m), scale_vector(b_scale, n),
                          bias ? static_cast<const float*>(bias->data()) : nullptr};
  run_gemm(pack_operand(a, PackSide::kA), pack_operand(b, PackSide::kB), epilogue);
}

}  // namespace intcore

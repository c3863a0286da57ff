// CPU quantizers. Both quantizers make two passes over the input: per-row absmax (which also
// catches NaN/Inf before anything is written), then the rounding pass. Contiguous float32 rows
// are read in place; other inputs are walked in 64 x 64 tiles, each read along its contiguous
// dimension into a small buffer, so a transposed view costs no more than a contiguous one.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/isa_clones.h"
#include "fixed_point_rows.h"
#include "float_types.h"
#include "intcore/cpu_kernel.h"
#include "intcore/quantize.h"
#include "parallel.h"
#include "transpose_floats.h"
#include "cuda_dispatch.h"

namespace intcore {
namespace {

constexpr int64_t kTile = 64;

struct Tile {
  int64_t r0, r1, c0, c1;
  float values[kTile][kTile];  // values[r - r0][c - c0]
};

// Loads the tile of a float32 view whose rows are adjacent in memory (rs == 1, a transposed
// matrix): square blocks transposed in registers under a CPU kernel set with AVX2 or AVX-512
// (transpose_floats.h), the edges one by one. False under the other sets.
bool load_transposed_float_tile(const float* base, int64_t cs, Tile& tile) {
  const CpuKernel set = active_cpu_kernel();
  const int64_t block = set == CpuKernel::kAvx512Vnni                           ? 16
                        : set == CpuKernel::kAvx2 || set == CpuKernel::kAvxVnni ? 8
                                                                                 : 0;
  if (block == 0) return false;
  const auto transpose = block == 16 ? transpose16_floats_avx512 : transpose8_floats_avx2;
  const int64_t nr = tile.r1 - tile.r0, nc = tile.c1 - tile.c0;
  const int64_t full_r = nr / block * block, full_c = nc / block * block;
  for (int64_t c = 0; c < full_c; c += block)
    for (int64_t r = 0; r < full_r; r += block)
      transpose(base + (tile.r0 + r) + (tile.c0 + c) * cs, cs, &tile.values[r][c], kTile);
  for (int64_t c = 0; c < nc; ++c) {
    const float* src = base + tile.r0 + (tile.c0 + c) * cs;
    for (int64_t r = c < full_c ? full_r : 0; r < nr; ++r) tile.values[r][c] = src[r];
  }
  return true;
}

// Loads x[r0:r1, c0:c1] into tile.values, reading memory in its contiguous order.
template <typename T>
void load_tile(const TensorView& x, Tile& tile) {
  const T* base = static_cast<const T*>(x.data());
  const int64_t rs = x.stride(0), cs = x.stride(1);
  if (cs == 1) {  // contiguous rows: unit-stride loops the compiler vectorizes
    for (int64_t r = tile.r0; r < tile.r1; ++r) {
      const T* src = base + r * rs + tile.c0;
      float* dst = tile.values[r - tile.r0];
      for (int64_t c = 0; c < tile.c1 - tile.c0; ++c) dst[c] = to_float(src[c]);
    }
  } else if (std::abs(cs) <= std::abs(rs)) {
    for (int64_t r = tile.r0; r < tile.r1; ++r)
      for (int64_t c = tile.c0; c < tile.c1; ++c) tile.values[r - tile.r0][c - tile.c0] = to_float(base[r * rs + c * cs]);
  } else {
    if constexpr (std::is_same_v<T, float>) {
      if (rs == 1 && load_transposed_float_tile(base, cs, tile)) return;
    }
    for (int64_t c = tile.c0; c < tile.c1; ++c)
      for (int64_t r = tile.r0; r < tile.r1; ++r) tile.values[r - tile.r0][c - tile.c0] = to_float(base[r * rs + c * cs]);
  }
}

// Calls fn(tile) for every tile of rows [row_begin, row_end), in row-block order.
template <class Fn>
void for_each_tile(const std::string& fn_name, const TensorView& x, int64_t row_begin, int64_t row_end, Fn&& fn) {
  dispatch_float(fn_name, x, [&](auto type_tag) {
    using T = decltype(type_tag);
    Tile tile;
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kTile) {
      for (int64_t c0 = 0; c0 < x.size(1); c0 += kTile) {
        tile.r0 = r0;
        tile.r1 = std::min(r0 + kTile, row_end);
        tile.c0 = c0;
        tile.c1 = std::min(c0 + kTile, x.size(1));
        load_tile<T>(x, tile);
        fn(tile);
      }
    }
  });
}

// The two rounding rules on a value already in units of the step, clamped to [-qmax, qmax].
// The stochastic rule is round_up_stochastic's, written out so it vectorizes: the top 24 bits
// of the word, as an int32, against frac * 2^24. Inlined into the run loops below (fixed_point_run,
// scaled_run), each cloned per ISA so that they run 4 or 8 doubles per instruction where the CPU
// allows.
inline double nearest_code(double v, double qmax) { return std::clamp(std::nearbyint(v), -qmax, qmax); }

inline double stochastic_code(double v, uint32_t word, double qmax) {
  const double f = std::floor(v);
  const double u = static_cast<double>(static_cast<int32_t>(word >> 8));
  const double up = u < (v - f) * 16777216.0 ? 1.0 : 0.0;
  return std::clamp(f + up, -qmax, qmax);
}

void check_input(const std::string& fn, const TensorView& x) {
  check_floating(fn, x);
  check_dim(fn, x, 2);
}

void check_scale_vector(const std::string& fn, const TensorView& scale, DType dtype, int64_t rows) {
  check_dtype(fn, scale, dtype);
  check_contiguous(fn, scale);
  check_scale_shape(fn, scale, rows);
}

// Fixed-point codes of a run of floats in one loop: q_i = clamp(round(x_i 2^-e), -qmax, qmax),
// x_i 2^-e formed in double and rounded by nearest_code or stochastic_code (words: the run's
// stream words, or null for nearest), narrowed and stored in the same pass.
template <typename Q>
INTCORE_ISA_CLONES void fixed_point_run(
    const float* x, int64_t n, double inv_step, int32_t qmax_int, const uint32_t* words, Q* out) {
  const double qmax = qmax_int;
  if (words == nullptr) {
    for (int64_t i = 0; i < n; ++i)
      out[i] = static_cast<Q>(static_cast<int32_t>(nearest_code(static_cast<double>(x[i]) * inv_step, qmax)));
  } else {
    for (int64_t i = 0; i < n; ++i)
      out[i] = static_cast<Q>(static_cast<int32_t>(stochastic_code(static_cast<double>(x[i]) * inv_step, words[i], qmax)));
  }
}

// Calls run(r, c0, values, len, words) for every run of up to kRun values of every row of x
// (values: columns [c0, c0 + len) of row r as float32), in parallel over rows: float32 rows read
// in place, other inputs through tiles. words are the run's stream words for stochastic
// rounding (word r * cols + c for element (r, c)), or null for round to nearest.
constexpr int64_t kRun = 256;  // even, and tiles start at even columns: int4 pairs never straddle two runs

template <class Run>
void for_each_run(const std::string& fn, const TensorView& x, Rounding rounding, RandomStream stream, Run&& run) {
  const int64_t rows = x.size(0), cols = x.size(1);
  const int64_t cost = cols * (rounding == Rounding::kStochastic ? 8 : 1);
  // Runs of n values of row r from column c0, drawing their words from the stream.
  auto row_runs = [&](uint32_t* words, int64_t r, int64_t c0, const float* values, int64_t n) {
    for (int64_t i0 = 0; i0 < n; i0 += kRun) {
      const int64_t len = std::min(kRun, n - i0);
      const uint32_t* w = nullptr;
      if (rounding == Rounding::kStochastic) {
        stream_words(stream, static_cast<uint64_t>(r * cols + c0 + i0), len, words);
        w = words;
      }
      run(r, c0 + i0, values + i0, len, w);
    }
  };
  if (x.dtype() == DType::kFloat32 && x.stride(1) == 1) {  // float rows in place: no tiles
    const float* base = static_cast<const float*>(x.data());
    parallel_for(rows, cost, [&](int64_t r0, int64_t r1) {
      uint32_t words[kRun];
      for (int64_t r = r0; r < r1; ++r) row_runs(words, r, 0, base + r * x.stride(0), cols);
    });
    return;
  }
  parallel_for((rows + kTile - 1) / kTile, kTile * cost, [&](int64_t b0, int64_t b1) {
    uint32_t words[kRun];
    for_each_tile(fn, x, b0 * kTile, std::min(b1 * kTile, rows), [&](const Tile& tile) {
      for (int64_t r = tile.r0; r < tile.r1; ++r) {
        row_runs(words, r, tile.c0, tile.values[r - tile.r0], tile.c1 - tile.c0);
      }
    });
  });
}

template <typename Q>
void write_fixed_point(const TensorView& x, const TensorView& mantissa, const std::vector<int32_t>& exponent_of_row,
                       int bits, Rounding rounding, RandomStream stream, const std::string& fn) {
  const int64_t cols = x.size(1);
  Q* out = static_cast<Q*>(mantissa.data());
  const int32_t qmax = (1 << (bits - 1)) - 1;
  for_each_run(fn, x, rounding, stream,
               [&](int64_t r, int64_t c0, const float* values, int64_t len, const uint32_t* words) {
                 fixed_point_run<Q>(values, len, pow2(-exponent_of_row[r]), qmax, words, out + r * cols + c0);
               });
}

}  // namespace

// Per-row max |x|. Raises ValueError naming x if any element is NaN or Inf.
// The maximum is taken over the float bit patterns with the sign cleared: for finite values
// they order like the magnitudes, and every NaN or Inf pattern lies above the largest finite
// one, so one integer max (which vectorizes) finds both the absmax and any non-finite value.
namespace {
constexpr uint32_t kNonFiniteBits = 0x7F800000u;

inline uint32_t magnitude_bits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits & 0x7FFFFFFFu;
}

template <typename T>
INTCORE_ISA_CLONES uint32_t contiguous_max_bits(const T* src, int64_t n) {
  uint32_t m = 0;
  for (int64_t c = 0; c < n; ++c) {
    const uint32_t b = magnitude_bits(to_float(src[c]));
    m = b > m ? b : m;
  }
  return m;
}

// max_bits[i] = max(max_bits[i], |src[i]| bits) for n values of one column of a transposed view
// (consecutive rows, unit stride): the view's rows are updated side by side, so the column is
// read along memory with no transposing tile.
template <typename T>
INTCORE_ISA_CLONES void column_max_bits(const T* src, int64_t n, uint32_t* max_bits) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t b = magnitude_bits(to_float(src[i]));
    max_bits[i] = b > max_bits[i] ? b : max_bits[i];
  }
}
}  // namespace

std::vector<float> row_absmax(const std::string& fn_name, const TensorView& x) {
  const int64_t rows = x.size(0), cols = x.size(1);
  std::vector<uint32_t> max_bits(rows, 0);
  if (x.stride(1) == 1) {
    dispatch_float(fn_name, x, [&](auto tag) {
      using T = decltype(tag);
      const T* base = static_cast<const T*>(x.data());
      parallel_for(rows, cols, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) max_bits[r] = contiguous_max_bits(base + r * x.stride(0), cols);
      });
    });
  } else if (x.stride(0) == 1) {  // a transposed contiguous matrix: walk its columns
    dispatch_float(fn_name, x, [&](auto tag) {
      using T = decltype(tag);
      const T* base = static_cast<const T*>(x.data());
      parallel_for((rows + kTile - 1) / kTile, kTile * cols, [&](int64_t b0, int64_t b1) {
        const int64_t r0 = b0 * kTile, r1 = std::min(b1 * kTile, rows);
        for (int64_t c = 0; c < cols; ++c) column_max_bits(base + r0 + c * x.stride(1), r1 - r0, max_bits.data() + r0);
      });
    });
  } else {
    parallel_for((rows + kTile - 1) / kTile, kTile * cols, [&](int64_t b0, int64_t b1) {
      for_each_tile(fn_name, x, b0 * kTile, std::min(b1 * kTile, rows), [&](const Tile& tile) {
        for (int64_t r = tile.r0; r < tile.r1; ++r) {
          uint32_t m = max_bits[r];
          for (int64_t c = tile.c0; c < tile.c1; ++c) {
            const uint32_t b = magnitude_bits(tile.values[r - tile.r0][c - tile.c0]);
            m = b > m ? b : m;
          }
          max_bits[r] = m;
        }
      });
    });
  }
  std::vector<float> absmax(rows);
  for (int64_t r = 0; r < rows; ++r) {
    if (max_bits[r] >= kNonFiniteBits) throw_value_error(fn_name + ": " + x.name() + " contains NaN or Inf");
    std::memcpy(&absmax[r], &max_bits[r], sizeof(float));
  }
  return absmax;
}

std::vector<float> quantizer_absmax(const std::string& fn, const TensorView& x, bool per_row) {
  std::vector<float> absmax = row_absmax(fn, x);
  if (!per_row) {
    const float m = absmax.empty() ? 0.0f : *std::max_element(absmax.begin(), absmax.end());
    std::fill(absmax.begin(), absmax.end(), m);
  }
  return absmax;
}

void quantize_fixed_point(const TensorView& x, const TensorView& mantissa, const TensorView& exponent, int bits,
                          Rounding rounding, RandomStream stream) {
  const std::string fn = "quantize_fixed_point";
  check_input(fn, x);
  if (bits < 2 || bits > 16) throw_value_error(fn + ": bits must be in 2..16, got " + std::to_string(bits));
  const int64_t rows = x.size(0), cols = x.size(1);
  check_dtype(fn, mantissa, bits <= 8 ? DType::kInt8 : DType::kInt16);
  check_shape(fn, mantissa, {rows, cols});
  check_contiguous(fn, mantissa);
  check_scale_vector(fn, exponent, DType::kInt32, rows);
  check_disjoint(fn, {&mantissa, &exponent}, {&x});
  if (runs_on_cuda(fn, {&x, &mantissa, &exponent})) {
    INTCORE_ON_CUDA(cuda::quantize_fixed_point(x, mantissa, exponent, bits, rounding, stream));
    return;
  }

  const bool per_row = exponent.size(0) == rows && rows != 1;
  const std::vector<float> absmax = quantizer_absmax(fn, x, per_row);
  // |x| < 2^e_max (frexp: x = f 2^e_max, 0.5 <= f < 1); the LSB has weight 2^(e_max - bits + 1).
  std::vector<int32_t> exponent_of_row(rows);
  for (int64_t r = 0; r < rows; ++r) {
    int e_max = 0;
    std::frexp(absmax[r], &e_max);
    exponent_of_row[r] = e_max - (bits - 1);
  }
  int32_t* e_out = exponent.data_as<int32_t>();
  if (per_row) {
    std::copy(exponent_of_row.begin(), exponent_of_row.end(), e_out);
  } else {
    int e_max = 0;
    std::frexp(absmax.empty() ? 0.0f : absmax[0], &e_max);
    e_out[0] = e_max - (bits - 1);
  }
  if (bits <= 8) {
    write_fixed_point<int8_t>(x, mantissa, exponent_of_row, bits, rounding, stream, fn);
  } else {
    write_fixed_point<int16_t>(x, mantissa, exponent_of_row, bits, rounding, stream, fn);
  }
}

void dequantize_fixed_point(const TensorView& mantissa, const TensorView& exponent, const TensorView& out) {
  const std::string fn = "dequantize_fixed_point";
  if (mantissa.dtype() != DType::kInt8 && mantissa.dtype() != DType::kInt16) {
    throw_type_error(fn + ": " + mantissa.name() + " must be int8 or int16, got " + dtype_name(mantissa.dtype()));
  }
  check_dim(fn, mantissa, 2);
  check_contiguous(fn, mantissa);
  const int64_t rows = mantissa.size(0), cols = mantissa.size(1);
  check_scale_vector(fn, exponent, DType::kInt32, rows);
  check_dtype(fn, out, DType::kFloat32);
  check_shape(fn, out, {rows, cols});
  check_contiguous(fn, out);
  check_disjoint(fn, {&out}, {&mantissa, &exponent});
  if (runs_on_cuda(fn, {&mantissa, &exponent, &out})) {
    INTCORE_ON_CUDA(cuda::dequantize_fixed_point(mantissa, exponent, out));
    return;
  }
  const int32_t* e = exponent.data_as<int32_t>();
  const bool per_row = exponent.size(0) == rows && rows != 1;
  float* y = out.data_as<float>();
  auto run = [&](auto* q) {
    parallel_for(rows, cols, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const double step = exponent_step(e[per_row ? r : 0]);
        for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = static_cast<float>(q[r * cols + c] * step);
      }
    });
  };
  if (mantissa.dtype() == DType::kInt8) run(static_cast<const int8_t*>(mantissa.data()));
  else run(static_cast<const int16_t*>(mantissa.data()));
}

namespace {
// One row's mantissas times 2^-shift (scale), rounded to nearest: cloned per ISA, so that it runs
// in vector registers where the CPU has them (the engine's baseline is SSE only).
template <typename Q>
INTCORE_ISA_CLONES void aligned_row(const Q* in, int64_t n, double scale, Q* out) {
  for (int64_t c = 0; c < n; ++c) out[c] = static_cast<Q>(std::nearbyint(static_cast<double>(in[c]) * scale));
}
}  // namespace

void align_fixed_point(const TensorView& mantissa, const TensorView& exponent, const TensorView& out,
                       const TensorView& out_exponent) {
  const std::string fn = "align_fixed_point";
  check_cpu(fn, mantissa);
  if (mantissa.dtype() != DType::kInt8 && mantissa.dtype() != DType::kInt16) {
    throw_type_error(fn + ": " + mantissa.name() + " must be int8 or int16, got " + dtype_name(mantissa.dtype()));
  }
  check_dim(fn, mantissa, 2);
  check_contiguous(fn, mantissa);
  const int64_t rows = mantissa.size(0), cols = mantissa.size(1);
  check_dtype(fn, exponent, DType::kInt32);
  check_shape(fn, exponent, {rows});
  check_contiguous(fn, exponent);
  check_dtype(fn, out, mantissa.dtype());
  check_shape(fn, out, {rows, cols});
  check_contiguous(fn, out);
  check_dtype(fn, out_exponent, DType::kInt32);
  check_shape(fn, out_exponent, {1});
  for (const TensorView* t : {&exponent, &out, &out_exponent}) check_cpu(fn, *t);
  check_disjoint(fn, {&out, &out_exponent}, {&mantissa, &exponent});
  const int32_t* e = exponent.data_as<int32_t>();
  const int32_t e_max = rows ? *std::max_element(e, e + rows) : 0;
  // A NaN row (kNanExponent, from the CUDA quantizer) makes the whole aligned matrix NaN: it
  // takes part in every sum across rows.
  const bool nan_row = std::find(e, e + rows, kNanExponent) != e + rows;
  out_exponent.data_as<int32_t>()[0] = nan_row ? kNanExponent : e_max;
  auto run = [&](auto* in, auto* dst) {
    parallel_for(rows, cols, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        // In 64 bits: exponents far apart would overflow int32. A shift of 62 already rounds
        // every int16 mantissa to 0.
        const int64_t shift = std::min<int64_t>(static_cast<int64_t>(e_max) - e[r], 62);
        aligned_row(in + r * cols, cols, pow2(static_cast<int>(-shift)), dst + r * cols);
      }
    });
  };
  if (mantissa.dtype() == DType::kInt8) run(static_cast<const int8_t*>(mantissa.data()), static_cast<int8_t*>(out.data()));
  else run(static_cast<const int16_t*>(mantissa.data()), static_cast<int16_t*>(out.data()));
}

namespace {

// The arguments shared by the scaled quantizers: x, its codes q (int8, or packed int4) and
// the float32 scale vector.
void check_scaled_codes(const std::string& fn, const TensorView& x, const TensorView& q, const TensorView& scale,
                        int bits) {
  if (bits != 8 && bits != 4) throw_value_error(fn + ": bits must be 8 or 4, got " + std::to_string(bits));
  const int64_t rows = x.size(0), cols = x.size(1);
  check_dtype(fn, q, bits == 8 ? DType::kInt8 : DType::kUInt8);
  check_shape(fn, q, {rows, bits == 8 ? cols : (cols + 1) / 2});
  check_contiguous(fn, q);
  check_scale_vector(fn, scale, DType::kFloat32, rows);
}

// Scaled-integer codes of a run of floats in one loop: q_i = clamp(round(x_i / s), -qmax, qmax),
// x_i / s divided in float and rounded by nearest_code or stochastic_code (words: the run's
// stream words, or null for nearest). A zero scale means an all-zero row: zero codes.
// Rounding to nearest runs in float: the quotient is a float, and the integer nearest to it (and
// its clamp) is the same in float as in double, at twice the lanes. The stochastic rule stays in
// double: for a negative quotient the fraction v - floor(v) = 1 - |v| needs more bits than a
// float has.
inline float nearest_code(float v, float qmax) { return std::clamp(std::nearbyint(v), -qmax, qmax); }

INTCORE_ISA_CLONES void scaled_run(
    const float* x, int64_t n, float scale, int32_t qmax_int, const uint32_t* words, int8_t* out) {
  if (!(scale > 0.0f)) {
    std::fill(out, out + n, int8_t{0});
  } else if (words == nullptr) {
    const float qmax = static_cast<float>(qmax_int);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(static_cast<int32_t>(nearest_code(x[i] / scale, qmax)));
  } else {
    const double qmax = qmax_int;
    for (int64_t i = 0; i < n; ++i)
      out[i] = static_cast<int8_t>(
          static_cast<int32_t>(stochastic_code(static_cast<double>(x[i] / scale), words[i], qmax)));
  }
}

// int4 codes (int8 values in [-7, 7]) of columns [c0, c0 + n) of a row, packed two per byte into
// the row's packed bytes (c0 even; an odd last column pairs with a zero).
void pack_run(const int8_t* codes, int64_t n, int64_t c0, uint8_t* packed_row) {
  for (int64_t i = 0; i < n; i += 2) {
    const uint8_t lo = static_cast<uint8_t>(codes[i]) & 0x0Fu;
    const uint8_t hi = i + 1 < n ? static_cast<uint8_t>(codes[i + 1]) & 0x0Fu : 0u;
    packed_row[(c0 + i) / 2] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

// Codes of x in units of scale_of_row[r] (rounded, clamped to +-qmax): int8, or int4 packed
// two per byte.
void write_scaled_codes(const std::string& fn, const TensorView& x, const TensorView& q,
                        const std::vector<float>& scale_of_row, int bits, Rounding rounding, RandomStream stream) {
  const int64_t cols = x.size(1), q_cols = q.size(1);
  const int32_t qmax = bits == 8 ? 127 : 7;
  uint8_t* out = static_cast<uint8_t*>(q.data());
  // Codes of one run, into the output (int8) or through a buffer into packed bytes (int4).
  for_each_run(fn, x, rounding, stream,
               [&](int64_t r, int64_t c0, const float* values, int64_t len, const uint32_t* words) {
                 if (bits == 8) {
                   int8_t* dst = reinterpret_cast<int8_t*>(out) + r * cols + c0;
                   scaled_run(values, len, scale_of_row[r], qmax, words, dst);
                 } else {
                   int8_t buffer[kRun];
                   scaled_run(values, len, scale_of_row[r], qmax, words, buffer);
                   pack_run(buffer, len, c0, out + r * q_cols);
                 }
               });
}

}  // namespace

void quantize_absmax(const TensorView& x, const TensorView& q, const TensorView& scale, int bits, Rounding rounding,
                     RandomStream stream) {
  const std::string fn = "quantize_absmax";
  check_input(fn, x);
  check_scaled_codes(fn, x, q, scale, bits);
  check_disjoint(fn, {&q, &scale}, {&x});
  const int64_t rows = x.size(0);
  if (runs_on_cuda(fn, {&x, &q, &scale})) {
    INTCORE_ON_CUDA(cuda::quantize_absmax(x, q, scale, bits, rounding, stream));
    return;
  }

  const int32_t qmax = bits == 8 ? 127 : 7;
  const bool per_row = scale.size(0) == rows && rows != 1;
  const std::vector<float> absmax = quantizer_absmax(fn, x, per_row);
  std::vector<float> scale_of_row(rows);
  for (int64_t r = 0; r < rows; ++r) scale_of_row[r] = absmax[r] / static_cast<float>(qmax);
  float* s_out = scale.data_as<float>();
  if (per_row) std::copy(scale_of_row.begin(), scale_of_row.end(), s_out);
  else s_out[0] = absmax.empty() ? 0.0f : scale_of_row[0];

  write_scaled_codes(fn, x, q, scale_of_row, bits, rounding, stream);
}

void quantize_scaled(const TensorView& x, const TensorView& q, const TensorView& scale, int bits, Rounding rounding,
                     RandomStream stream) {
  const std::string fn = "quantize_scaled";
  check_input(fn, x);
  check_cpu(fn, x);
  check_scaled_codes(fn, x, q, scale, bits);
  check_cpu(fn, q);
  check_cpu(fn, scale);
  check_disjoint(fn, {&q}, {&x, &scale});
  const int64_t rows = x.size(0);
  row_absmax(fn, x);  // raises on NaN/Inf before anything is written
  const float* s = scale.data_as<float>();
  for (int64_t i = 0; i < scale.size(0); ++i) {  // every value, used or not (no rows uses none)
    if (!(s[i] >= 0.0f && s[i] <= FLT_MAX)) throw_value_error(fn + ": " + scale.name() + " must hold finite values >= 0");
  }
  const bool per_row = scale.size(0) == rows && rows != 1;
  std::vector<float> scale_of_row(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) scale_of_row[r] = s[per_row ? r : 0];
  write_scaled_codes(fn, x, q, scale_of_row, bits, rounding, stream);
}

void dequantize_absmax(const TensorView& q, const TensorView& scale, int bits, const TensorView& out) {
  const std::string fn = "dequantize_absmax";
  if (bits != 8 && bits != 4) throw_value_error(fn + ": bits must be 8 or 4, got " + std::to_string(bits));
  check_dtype(fn, q, bits == 8 ? DType::kInt8 : DType::kUInt8);
  check_dim(fn, q, 2);
  check_contiguous(fn, q);
  check_dtype(fn, out, DType::kFloat32);
  check_dim(fn, out, 2);
  check_contiguous(fn, out);
  const int64_t rows = q.size(0), cols = out.size(1);
  check_shape(fn, q, {rows, bits == 8 ? cols : (cols + 1) / 2});
  check_shape(fn, out, {rows, cols});
  check_scale_vector(fn, scale, DType::kFloat32, rows);
  check_disjoint(fn, {&out}, {&q, &scale});
  if (runs_on_cuda(fn, {&q, &scale, &out})) {
    INTCORE_ON_CUDA(cuda::dequantize_absmax(q, scale, bits, out));
    return;
  }
  const float* s = scale.data_as<float>();
  const bool per_row = scale.size(0) == rows && rows != 1;
  const uint8_t* codes = static_cast<const uint8_t*>(q.data());
  const int64_t q_cols = q.size(1);
  float* y = out.data_as<float>();
  parallel_for(rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float sr = s[per_row ? r : 0];
      for (int64_t c = 0; c < cols; ++c) {
        int32_t v;
        if (bits == 8) {
          v = static_cast<int8_t>(codes[r * q_cols + c]);
        } else {
          const uint8_t byte = codes[r * q_cols + c / 2];
          v = static_cast<int8_t>(static_cast<uint8_t>((c & 1 ? byte >> 4 : byte) << 4)) >> 4;
        }
        y[r * cols + c] = static_cast<float>(v) * sr;
      }
    }
  });
}

void pack_int4(const TensorView& values, const TensorView& packed) {
  const std::string fn = "pack_int4";
  check_cpu(fn, values);
  check_dtype(fn, values, DType::kInt8);
  check_dim(fn, values, 2);
  const int64_t rows = values.size(0), cols = values.size(1);
  check_dtype(fn, packed, DType::kUInt8);
  check_shape(fn, packed, {rows, (cols + 1) / 2});
  check_contiguous(fn, packed);
  check_cpu(fn, packed);
  check_disjoint(fn, {&packed}, {&values});
  const int8_t* v = values.data_as<int8_t>();
  uint8_t* p = packed.data_as<uint8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int8_t x = v[r * values.stride(0) + c * values.stride(1)];
      if (x < -8 || x > 7) {
        throw_value_error(fn + ": " + values.name() + " must hold values in [-8, 7], found " + std::to_string(x));
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; c += 2) {
      const uint8_t lo = static_cast<uint8_t>(v[r * values.stride(0) + c * values.stride(1)]) & 0x0Fu;
      const uint8_t hi =
          c + 1 < cols ? static_cast<uint8_t>(v[r * values.stride(0) + (c + 1) * values.stride(1)]) & 0x0Fu : 0u;
      p[r * packed.size(1) + c / 2] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void unpack_int4(const TensorView& packed, const TensorView& values) {
  const std::string fn = "unpack_int4";
  check_cpu(fn, packed);
  check_dtype(fn, packed, DType::kUInt8);
  check_dim(fn, packed, 2);
  check_dtype(fn, values, DType::kInt8);
  check_dim(fn, values, 2);
  check_contiguous(fn, values);
  const int64_t rows = values.size(0), cols = values.size(1);
  check_shape(fn, packed, {rows, (cols + 1) / 2});
  check_cpu(fn, values);
  check_disjoint(fn, {&values}, {&packed});
  const uint8_t* p = packed.data_as<uint8_t>();
  int8_t* v = values.data_as<int8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const uint8_t byte = p[r * packed.stride(0) + (c / 2) * packed.stride(1)];
      v[r * cols + c] = static_cast<int8_t>(static_cast<uint8_t>((c & 1 ? byte >> 4 : byte) << 4)) >> 4;
    }
  }
}

}  // namespace intcore

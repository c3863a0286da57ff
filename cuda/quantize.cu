// Quantizers on the GPU, bit-identical to the CPU engine (cpp/src/quantize.cpp): the same
// exponent and scale rules, the same rounding decisions, the same Philox words per element.
// Three launches, no host synchronization: per-row max |x| (as magnitude bit patterns),
// per-row (or per-tensor) exponent or scale, then one thread per output element.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "backend.h"
#include "cuda_check.h"
#include "float_load.cuh"

namespace intcore::cuda {
namespace {

constexpr int kThreads = 256;
constexpr uint32_t kNonFiniteBits = 0x7F800000u;

template <typename T>
__global__ void row_max_bits_kernel(Strided2D<T> x, uint32_t* row_bits) {
  __shared__ uint32_t partial[kThreads];
  const int64_t r = blockIdx.x;
  uint32_t m = 0;
  for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) {
    const uint32_t bits = __float_as_uint(x.at(r, c)) & 0x7FFFFFFFu;
    m = bits > m ? bits : m;
  }
  partial[threadIdx.x] = m;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) partial[threadIdx.x] = max(partial[threadIdx.x], partial[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) row_bits[r] = partial[0];
}

// Max over rows of row_bits, for per-tensor granularity (one block).
__device__ uint32_t block_max(const uint32_t* row_bits, int64_t rows) {
  __shared__ uint32_t partial[kThreads];
  uint32_t m = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) m = max(m, row_bits[r]);
  partial[threadIdx.x] = m;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) partial[threadIdx.x] = max(partial[threadIdx.x], partial[threadIdx.x + s]);
    __syncthreads();
  }
  return partial[0];
}

// exponent[r] (or exponent[0]) = frexp(max |x|) - (bits - 1); INT32_MIN marks NaN/Inf input.
__global__ void fixed_point_exponent_kernel(const uint32_t* row_bits, int64_t rows, bool per_row, int bits,
                                            int32_t* exponent) {
  auto exponent_of = [bits](uint32_t b) {
    if (b >= kNonFiniteBits) return INT32_MIN;
    int e = 0;
    frexpf(__uint_as_float(b), &e);
    return e - (bits - 1);
  };
  if (per_row) {
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) exponent[r] = exponent_of(row_bits[r]);
  } else {
    const uint32_t m = block_max(row_bits, rows);
    if (threadIdx.x == 0) exponent[0] = exponent_of(m);
  }
}

// scale[r] (or scale[0]) = max |x| / qmax; NaN for NaN/Inf input.
__global__ void absmax_scale_kernel(const uint32_t* row_bits, int64_t rows, bool per_row, int qmax, float* scale) {
  auto scale_of = [qmax](uint32_t b) {
    return b >= kNonFiniteBits ? __int_as_float(0x7FC00000) : __uint_as_float(b) / static_cast<float>(qmax);
  };
  if (per_row) {
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) scale[r] = scale_of(row_bits[r]);
  } else {
    const uint32_t m = block_max(row_bits, rows);
    if (threadIdx.x == 0) scale[0] = scale_of(m);
  }
}

// The CPU engine's rounding: nearest-even, or floor plus a Bernoulli(frac) decision taken from
// the top 24 bits of the element's Philox word.
__device__ inline int32_t round_value(double v, int32_t qmax, bool stochastic, const RandomStream& stream,
                                      uint64_t index) {
  double q;
  if (!stochastic) {
    q = rint(v);
  } else {
    const double f = floor(v);
    const double u = static_cast<double>(static_cast<int32_t>(stream.word(index) >> 8));
    q = f + (u < (v - f) * 16777216.0 ? 1.0 : 0.0);
  }
  return static_cast<int32_t>(fmin(fmax(q, -static_cast<double>(qmax)), static_cast<double>(qmax)));
}

template <typename T, typename Q>
__global__ void fixed_point_kernel(Strided2D<T> x, const int32_t* exponent, bool per_row, int32_t qmax,
                                   bool stochastic, RandomStream stream, Q* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= x.rows * x.cols) return;
  const int64_t r = i / x.cols, c = i % x.cols;
  const int32_t e = exponent[per_row ? r : 0];
  if (e == INT32_MIN) {
    out[i] = 0;
    return;
  }
  const double v = static_cast<double>(x.at(r, c)) * pow2(-e);
  out[i] = static_cast<Q>(round_value(v, qmax, stochastic, stream, static_cast<uint64_t>(i)));
}

template <typename T>
__device__ inline int32_t absmax_code(const Strided2D<T>& x, int64_t r, int64_t c, float s, int32_t qmax,
                                      bool stochastic, const RandomStream& stream) {
  const float v = s > 0.0f ? x.at(r, c) / s : 0.0f;
  return round_value(static_cast<double>(v), qmax, stochastic, stream, static_cast<uint64_t>(r * x.cols + c));
}

template <typename T>
__global__ void absmax_int8_kernel(Strided2D<T> x, const float* scale, bool per_row, bool stochastic,
                                   RandomStream stream, int8_t* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= x.rows * x.cols) return;
  const int64_t r = i / x.cols, c = i % x.cols;
  out[i] = static_cast<int8_t>(absmax_code(x, r, c, scale[per_row ? r : 0], 127, stochastic, stream));
}

// One thread per packed byte: columns 2b (low nibble) and 2b + 1 (high nibble, 0 past the end).
template <typename T>
__global__ void absmax_int4_kernel(Strided2D<T> x, const float* scale, bool per_row, bool stochastic,
                                   RandomStream stream, uint8_t* out) {
  const int64_t bytes_per_row = (x.cols + 1) / 2;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= x.rows * bytes_per_row) return;
  const int64_t r = i / bytes_per_row, c = 2 * (i % bytes_per_row);
  const float s = scale[per_row ? r : 0];
  const uint32_t lo = static_cast<uint32_t>(absmax_code(x, r, c, s, 7, stochastic, stream)) & 0x0Fu;
  const uint32_t hi = c + 1 < x.cols ? static_cast<uint32_t>(absmax_code(x, r, c + 1, s, 7, stochastic, stream)) & 0x0Fu : 0u;
  out[i] = static_cast<uint8_t>(lo | (hi << 4));
}

template <typename Q>
__global__ void dequantize_fixed_point_kernel(const Q* q, int64_t rows, int64_t cols, const int32_t* exponent,
                                              bool per_row, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const int32_t e = exponent[per_row ? i / cols : 0];
  out[i] = e == INT32_MIN ? __int_as_float(0x7FC00000) : static_cast<float>(q[i] * pow2(e));
}

__global__ void dequantize_absmax_kernel(const uint8_t* q, int64_t rows, int64_t cols, int64_t q_cols, int bits,
                                         const float* scale, bool per_row, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols;
  int32_t v;
  if (bits == 8) {
    v = static_cast<int8_t>(q[r * q_cols + c]);
  } else {
    const uint8_t byte = q[r * q_cols + c / 2];
    v = static_cast<int8_t>(static_cast<uint8_t>((c & 1 ? byte >> 4 : byte) << 4)) >> 4;
  }
  out[i] = static_cast<float>(v) * scale[per_row ? r : 0];
}

// Per-row max magnitude bits of x into a fresh buffer.
struct RowBits {
  DeviceBuffer buffer;
  explicit RowBits(const TensorView& x) : buffer(static_cast<size_t>(x.size(0)) * sizeof(uint32_t)) {
    if (x.size(0) == 0) return;
    dispatch_float(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      row_max_bits_kernel<T><<<static_cast<unsigned>(x.size(0)), kThreads, 0, stream()>>>(strided<T>(x), bits());
    });
    check_launch("row_max_bits_kernel");
  }
  uint32_t* bits() const { return static_cast<uint32_t*>(buffer.data()); }
};

bool is_per_row(const TensorView& params, int64_t rows) { return params.size(0) == rows && rows != 1; }

}  // namespace

void quantize_fixed_point(const TensorView& x, const TensorView& mantissa, const TensorView& exponent, int bits,
                          Rounding rounding, RandomStream random) {
  const int64_t rows = x.size(0), n = x.numel();
  const bool per_row = is_per_row(exponent, rows);
  // No rows: nothing to write but a per-tensor exponent, that of max |x| = 0 as on the CPU.
  // Empty rows (no columns) get that exponent too; no kernel below reads an element then.
  if (per_row && rows == 0) return;
  const RowBits row_bits(x);
  int32_t* e = static_cast<int32_t*>(exponent.data());
  fixed_point_exponent_kernel<<<1, kThreads, 0, stream()>>>(row_bits.bits(), rows, per_row, bits, e);
  check_launch("fixed_point_exponent_kernel");
  if (n == 0) return;
  const bool stochastic = rounding == Rounding::kStochastic;
  const int32_t qmax = (1 << (bits - 1)) - 1;
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (bits <= 8) {
      fixed_point_kernel<T, int8_t><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
          strided<T>(x), e, per_row, qmax, stochastic, random, static_cast<int8_t*>(mantissa.data()));
    } else {
      fixed_point_kernel<T, int16_t><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
          strided<T>(x), e, per_row, qmax, stochastic, random, static_cast<int16_t*>(mantissa.data()));
    }
  });
  check_launch("fixed_point_kernel");
}

void dequantize_fixed_point(const TensorView& mantissa, const TensorView& exponent, const TensorView& out) {
  const int64_t rows = mantissa.size(0), cols = mantissa.size(1), n = rows * cols;
  if (n == 0) return;
  const bool per_row = is_per_row(exponent, rows);
  const int32_t* e = static_cast<const int32_t*>(exponent.data());
  float* y = static_cast<float*>(out.data());
  if (mantissa.dtype() == DType::kInt8) {
    dequantize_fixed_point_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        static_cast<const int8_t*>(mantissa.data()), rows, cols, e, per_row, y);
  } else {
    dequantize_fixed_point_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
        static_cast<const int16_t*>(mantissa.data()), rows, cols, e, per_row, y);
  }
  check_launch("dequantize_fixed_point_kernel");
}

void quantize_absmax(const TensorView& x, const TensorView& q, const TensorView& scale, int bits, Rounding rounding,
                     RandomStream random) {
  const int64_t rows = x.size(0), cols = x.size(1);
  const bool per_row = is_per_row(scale, rows);
  if (per_row && rows == 0) return;  // as in quantize_fixed_point: a per-tensor scale of an empty x is 0
  const RowBits row_bits(x);
  float* s = static_cast<float*>(scale.data());
  absmax_scale_kernel<<<1, kThreads, 0, stream()>>>(row_bits.bits(), rows, per_row, bits == 8 ? 127 : 7, s);
  check_launch("absmax_scale_kernel");
  const bool stochastic = rounding == Rounding::kStochastic;
  const int64_t n = bits == 8 ? rows * cols : rows * ((cols + 1) / 2);
  if (n == 0) return;
  dispatch_float(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (bits == 8) {
      absmax_int8_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
          strided<T>(x), s, per_row, stochastic, random, static_cast<int8_t*>(q.data()));
    } else {
      absmax_int4_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
          strided<T>(x), s, per_row, stochastic, random, static_cast<uint8_t*>(q.data()));
    }
  });
  check_launch("absmax_kernel");
}

void dequantize_absmax(const TensorView& q, const TensorView& scale, int bits, const TensorView& out) {
  const int64_t rows = q.size(0), cols = out.size(1), n = rows * cols;
  if (n == 0) return;
  dequantize_absmax_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(
      static_cast<const uint8_t*>(q.data()), rows, cols, q.size(1), bits, static_cast<const float*>(scale.data()),
      is_per_row(scale, rows), static_cast<float*>(out.data()));
  check_launch("dequantize_absmax_kernel");
}

}  // namespace intcore::cuda

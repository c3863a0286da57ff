// The CUDA GEMM driver, exact like the CPU one (cpp/src/gemm.cpp) and bit-identical to it.
//
// Operands of any kind (int8, int16, packed int4; any strides) are packed into int8 limb
// matrices with K padded to a multiple of 16 and rows padded so the tensor-core GEMM's
// alignment rules hold. An int16 value v becomes a signed high byte v >> 8 (stored as is) and
// an unsigned low byte v & 255 (stored as (v & 255) - 128, offset 128), so every product is
// s8 x s8 and the offsets come back exactly:
//   sum a b = P + off_b * sum a' + off_a * sum b' + K * off_a * off_b,   P = sum a' b'
// Limb products are shifted into place in an int64 accumulator; the epilogue writes the exact
// int32/int64 result or applies row/column scales (or power-of-two exponents) and bias.
// K runs in chunks of 65536 so that every P fits int32 (|a' b'| <= 2^14).
// int8 x int8 with aligned, contiguous operands goes straight to the GEMM.
// Empty shapes never reach CUTLASS: M = 0 or N = 0 has nothing to write, and K = 0 (an
// int8_linear with in_features 0, the weight gradient of a batch of 0 rows) is the empty sum,
// written as zeros (scaled: the epilogue of zero, that is zero plus bias) without a GEMM. With
// K = 0 the sm90 kernel's TMA descriptor would be built over a null, stride-0 operand; under
// NDEBUG that fails silently and the kernel waits forever for loads that never come.
#include <cuda_runtime.h>

#include <climits>
#include <stdexcept>
#include <vector>

#include "backend.h"
#include "cuda_check.h"
#include "gemm_int8.h"

namespace intcore::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunkK = 65536;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

enum class Kind : int { kInt8, kInt16, kInt4 };

struct OperandView {
  const void* data;
  Kind kind;
  int64_t rows, k, row_stride, col_stride;

  __device__ int32_t at(int64_t r, int64_t c) const {
    switch (kind) {
      case Kind::kInt8: return static_cast<const int8_t*>(data)[r * row_stride + c * col_stride];
      case Kind::kInt16: return static_cast<const int16_t*>(data)[r * row_stride + c * col_stride];
      default: {
        const uint8_t byte = static_cast<const uint8_t*>(data)[r * row_stride + (c >> 1) * col_stride];
        return static_cast<int8_t>(static_cast<uint8_t>((c & 1 ? byte >> 4 : byte) << 4)) >> 4;
      }
    }
  }
};

OperandView view_of(const IntMatrix& m) {
  const Kind kind = m.packed_int4 ? Kind::kInt4 : (m.values.dtype() == DType::kInt16 ? Kind::kInt16 : Kind::kInt8);
  return {m.values.data(), kind, m.rows(), m.k, m.values.stride(0), m.values.stride(1)};
}

// Limb matrices of one operand: int8 [padded_rows, padded_k] each, plus per-chunk row sums of
// the stored bytes over the real K.
struct Packed {
  int64_t rows, padded_rows, k, padded_k, chunks;
  int limbs;              // 1 (int8, int4) or 2 (int16: high, low)
  int offset[2];          // 0 for a signed limb, 128 for the unsigned low limb
  int shift[2];           // 8 for the high limb of an int16, else 0
  DeviceBuffer bytes;     // limbs x padded_rows x padded_k
  DeviceBuffer sums;      // limbs x chunks x padded_rows, int32

  Packed(int64_t rows_, int64_t padded_rows_, int64_t k_, int limbs_)
      : rows(rows_), padded_rows(padded_rows_), k(k_), padded_k(round_up(k_, 16)),
        chunks(k_ == 0 ? 1 : (k_ + kChunkK - 1) / kChunkK), limbs(limbs_),
        bytes(static_cast<size_t>(limbs_ * padded_rows_ * round_up(k_, 16))),
        sums(static_cast<size_t>(limbs_ * (k_ == 0 ? 1 : (k_ + kChunkK - 1) / kChunkK) * padded_rows_) * 4) {}

  int8_t* limb(int l) const { return static_cast<int8_t*>(bytes.data()) + l * padded_rows * padded_k; }
  int32_t* limb_sums(int l, int64_t chunk) const {
    return static_cast<int32_t*>(sums.data()) + (l * chunks + chunk) * padded_rows;
  }
};

__global__ void pack_kernel(OperandView v, bool wide, int64_t padded_rows, int64_t padded_k, int8_t* high,
                            int8_t* low) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= padded_rows * padded_k) return;
  const int64_t r = i / padded_k, c = i % padded_k;
  const bool real = r < v.rows && c < v.k;
  const int32_t value = real ? v.at(r, c) : 0;
  if (!wide) {
    high[i] = static_cast<int8_t>(value);
  } else {
    high[i] = static_cast<int8_t>(value >> 8);
    low[i] = real ? static_cast<int8_t>((value & 0xFF) - 128) : 0;  // padding stays 0: no product, no sum
  }
}

// One block per row: sums of stored bytes over each K chunk's real columns.
__global__ void sums_kernel(const int8_t* limb, int64_t padded_k, int64_t k, int64_t chunks, int64_t padded_rows,
                            int32_t* sums) {
  __shared__ int32_t partial[kThreads];
  const int64_t r = blockIdx.x;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t begin = chunk * kChunkK, end = k < begin + kChunkK ? k : begin + kChunkK;
    int32_t s = 0;
    for (int64_t c = begin + threadIdx.x; c < end; c += blockDim.x) s += limb[r * padded_k + c];
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int step = blockDim.x / 2; step > 0; step /= 2) {
      if (threadIdx.x < step) partial[threadIdx.x] += partial[threadIdx.x + step];
      __syncthreads();
    }
    if (threadIdx.x == 0) sums[chunk * padded_rows + r] = partial[0];
    __syncthreads();
  }
}

Packed pack(const IntMatrix& m, int64_t padded_rows) {
  const bool wide = !m.packed_int4 && m.values.dtype() == DType::kInt16;
  Packed p(m.rows(), padded_rows, m.k, wide ? 2 : 1);
  p.offset[0] = 0;
  p.shift[0] = wide ? 8 : 0;
  p.offset[1] = 128;
  p.shift[1] = 0;
  const int64_t n = padded_rows * p.padded_k;
  if (n > 0) {
    pack_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(view_of(m), wide, padded_rows, p.padded_k,
                                                                     p.limb(0), wide ? p.limb(1) : nullptr);
    check_launch("pack_kernel");
  }
  for (int l = 0; l < p.limbs && padded_rows > 0; ++l) {
    sums_kernel<<<static_cast<unsigned>(padded_rows), kThreads, 0, stream()>>>(
        p.limb(l), p.padded_k, p.k, p.chunks, padded_rows, p.limb_sums(l, 0));
    check_launch("sums_kernel");
  }
  return p;
}

// acc[i, j] (+)= (P + off_b * sum_a[i] + off_a * sum_b[j] + k * off_a * off_b) << shift
__global__ void accumulate_kernel(const int32_t* product, int64_t ldp, int64_t m, int64_t n, const int32_t* sum_a,
                                  const int32_t* sum_b, int off_a, int off_b, int64_t k, int shift, bool first,
                                  int64_t* acc) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * n) return;
  const int64_t r = i / n, c = i % n;
  const int64_t exact = static_cast<int64_t>(product[r * ldp + c]) + static_cast<int64_t>(off_b) * sum_a[r] +
                        static_cast<int64_t>(off_a) * sum_b[c] + k * off_a * off_b;
  const int64_t shifted = exact * (int64_t{1} << shift);
  acc[i] = first ? shifted : acc[i] + shifted;
}

// A per-row multiplier: float scales or power-of-two exponents (INT32_MIN: NaN input).
struct Scales {
  const float* scale;
  const int32_t* exponent;
  bool per_row;
  __device__ double at(int64_t i) const {
    const int64_t at = per_row ? i : 0;
    if (scale != nullptr) return static_cast<double>(scale[at]);
    return exponent[at] == INT32_MIN ? __longlong_as_double(0x7FF8000000000000LL) : pow2(exponent[at]);
  }
};

template <typename Out>
__global__ void exact_kernel(const int64_t* acc, int64_t count, Out* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = static_cast<Out>(acc[i]);
}

// The CPU epilogue's arithmetic: float(acc * rs * cs) in double, then + bias in float.
__device__ inline float scaled_value(int64_t acc, double rs, double cs, const float* bias, int64_t c) {
  const float v = static_cast<float>(__dmul_rn(__dmul_rn(static_cast<double>(acc), rs), cs));
  return bias ? __fadd_rn(v, bias[c]) : v;
}

// K = 0: the epilogue of an empty sum (zero times the scales, plus bias), as the CPU writes it.
__global__ void scaled_empty_sum_kernel(int64_t m, int64_t n, Scales row, Scales col, const float* bias, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * n) return;
  const int64_t r = i / n, c = i % n;
  out[i] = scaled_value(0, row.at(r), col.at(c), bias, c);
}

__global__ void scaled_kernel(const int64_t* acc, int64_t m, int64_t n, Scales row, Scales col, const float* bias,
                              float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * n) return;
  const int64_t r = i / n, c = i % n;
  out[i] = scaled_value(acc[i], row.at(r), col.at(c), bias, c);
}

// Single int8 x int8 product with no offsets: scale the int32 result directly.
__global__ void scaled_direct_kernel(const int32_t* product, int64_t ldp, int64_t m, int64_t n, Scales row,
                                     Scales col, const float* bias, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * n) return;
  const int64_t r = i / n, c = i % n;
  out[i] = scaled_value(product[r * ldp + c], row.at(r), col.at(c), bias, c);
}

// The tensor-core GEMMs load and store 16 bytes at a time.
bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

bool aligned_int8(const IntMatrix& m) {
  return !m.packed_int4 && m.values.dtype() == DType::kInt8 && m.values.stride(1) == 1 &&
         m.values.stride(0) == m.k && m.k % 16 == 0 && m.k < (int64_t{1} << 17) && aligned16(m.values.data());
}

// The exact product into an int64 accumulator [m, n] (the general path).
DeviceBuffer exact_product(const IntMatrix& a, const IntMatrix& b) {
  const int64_t m = a.rows(), n = b.rows(), padded_n = round_up(n, 4);
  const Packed pa = pack(a, m), pb = pack(b, padded_n);
  DeviceBuffer acc(static_cast<size_t>(m * n) * sizeof(int64_t));
  DeviceBuffer product(static_cast<size_t>(m * padded_n) * sizeof(int32_t));
  bool first = true;
  for (int64_t chunk = 0; chunk < pa.chunks; ++chunk) {
    const int64_t k0 = chunk * kChunkK, k_real = std::min(a.k - k0, kChunkK);
    const int64_t k_gemm = std::min(pa.padded_k - k0, kChunkK);
    for (int la = 0; la < pa.limbs; ++la) {
      for (int lb = 0; lb < pb.limbs; ++lb) {
        const Int8GemmArgs args{m, padded_n, k_gemm, pa.limb(la) + k0, pa.padded_k, pb.limb(lb) + k0,
                                pb.padded_k, static_cast<int32_t*>(product.data()), padded_n};
        if (m > 0 && k_gemm > 0) {
          int8_gemm(args, stream());
        } else {
          check(cudaMemsetAsync(product.data(), 0, static_cast<size_t>(m * padded_n) * 4, stream()), "memset");
        }
        accumulate_kernel<<<blocks_for(m * n, kThreads), kThreads, 0, stream()>>>(
            static_cast<int32_t*>(product.data()), padded_n, m, n, pa.limb_sums(la, chunk), pb.limb_sums(lb, chunk),
            pa.offset[la], pb.offset[lb], std::max<int64_t>(k_real, 0), pa.shift[la] + pb.shift[lb], first,
            static_cast<int64_t*>(acc.data()));
        check_launch("accumulate_kernel");
        first = false;
      }
    }
  }
  return acc;
}

Scales scales_of(const TensorView& s, int64_t rows) {
  const bool per_row = s.size(0) == rows && rows != 1;
  if (s.dtype() == DType::kFloat32) return {static_cast<const float*>(s.data()), nullptr, per_row};
  return {nullptr, static_cast<const int32_t*>(s.data()), per_row};
}

}  // namespace

void int8_gemm(const Int8GemmArgs& args, cudaStream_t s) {
  // The drivers below never pass empty shapes; this guard keeps any caller off CUTLASS with
  // them (see the top of this file).
  if (args.m <= 0 || args.n <= 0) return;
  if (args.k <= 0) {
    check(cudaMemset2DAsync(args.c, static_cast<size_t>(args.ldc) * sizeof(int32_t), 0,
                            static_cast<size_t>(args.n) * sizeof(int32_t), static_cast<size_t>(args.m), s),
          "cudaMemset2DAsync");
    return;
  }
  // Both kernels load and store 16 bytes at a time; CUTLASS's own checks miss misaligned
  // addresses (sm80 counts alignment in elements, sm90's TMA descriptor fails silently and its
  // kernel waits forever), so every caller passes aligned operands and this says so.
  if (!aligned16(args.a) || !aligned16(args.b) || !aligned16(args.c)) {
    throw std::logic_error("intcore CUDA: int8_gemm needs 16-byte aligned operands (an engine bug)");
  }
#ifdef INTCORE_WITH_SM90
  static const bool hopper = [] {
    int device = 0, major = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    return major == 9;
  }();
  if (hopper && gemm_kernel() == GemmKernel::kAuto && args.lda == args.k && args.ldb == args.k && args.ldc == args.n) {
    int8_gemm_sm90(args, s);
    return;
  }
#endif
  int8_gemm_sm80(args, s);
}

void gemm_exact(const IntMatrix& a, const IntMatrix& b, const TensorView& c) {
  const int64_t m = a.rows(), n = b.rows();
  if (m == 0 || n == 0) return;
  if (a.k == 0) {
    const size_t bytes = static_cast<size_t>(m * n) * (c.dtype() == DType::kInt32 ? sizeof(int32_t) : sizeof(int64_t));
    check(cudaMemsetAsync(c.data(), 0, bytes, stream()), "cudaMemsetAsync");
    return;
  }
  // Straight into the caller's C only where the GEMMs' epilogues may store 16 bytes at a time:
  // C's address 16-byte aligned (a view starting mid-buffer goes through the accumulator).
  if (c.dtype() == DType::kInt32 && aligned_int8(a) && aligned_int8(b) && n % 4 == 0 && aligned16(c.data())) {
    int8_gemm({m, n, a.k, static_cast<const int8_t*>(a.values.data()), a.k,
               static_cast<const int8_t*>(b.values.data()), b.k, static_cast<int32_t*>(c.data()), n},
              stream());
    return;
  }
  const DeviceBuffer acc = exact_product(a, b);
  if (c.dtype() == DType::kInt32) {
    exact_kernel<<<blocks_for(m * n, kThreads), kThreads, 0, stream()>>>(static_cast<const int64_t*>(acc.data()),
                                                                          m * n, static_cast<int32_t*>(c.data()));
  } else {
    check(cudaMemcpyAsync(c.data(), acc.data(), static_cast<size_t>(m * n) * 8, cudaMemcpyDeviceToDevice, stream()),
          "cudaMemcpyAsync");
  }
  check_launch("exact_kernel");
}

void gemm_scaled(const IntMatrix& a, const TensorView& a_scale, const IntMatrix& b, const TensorView& b_scale,
                 const TensorView* bias, const TensorView& out) {
  const int64_t m = a.rows(), n = b.rows();
  if (m == 0 || n == 0) return;
  const Scales rows = scales_of(a_scale, m), cols = scales_of(b_scale, n);
  const float* bias_data = bias ? static_cast<const float*>(bias->data()) : nullptr;
  float* y = static_cast<float*>(out.data());
  if (a.k == 0) {
    scaled_empty_sum_kernel<<<blocks_for(m * n, kThreads), kThreads, 0, stream()>>>(m, n, rows, cols, bias_data, y);
    check_launch("scaled_empty_sum_kernel");
    return;
  }
  if (aligned_int8(a) && aligned_int8(b)) {
    const int64_t padded_n = round_up(n, 4);
    const bool direct_b = padded_n == n;
    const Packed pb = direct_b ? Packed(0, 0, 0, 1) : pack(b, padded_n);
    DeviceBuffer product(static_cast<size_t>(m * padded_n) * sizeof(int32_t));
    int8_gemm({m, padded_n, a.k, static_cast<const int8_t*>(a.values.data()), a.k,
               direct_b ? static_cast<const int8_t*>(b.values.data()) : pb.limb(0), direct_b ? b.k : pb.padded_k,
               static_cast<int32_t*>(product.data()), padded_n},
              stream());
    scaled_direct_kernel<<<blocks_for(m * n, kThreads), kThreads, 0, stream()>>>(
        static_cast<const int32_t*>(product.data()), padded_n, m, n, rows, cols, bias_data, y);
    check_launch("scaled_direct_kernel");
    return;
  }
  const DeviceBuffer acc = exact_product(a, b);
  scaled_kernel<<<blocks_for(m * n, kThreads), kThreads, 0, stream()>>>(static_cast<const int64_t*>(acc.data()), m, n,
                                                                         rows, cols, bias_data, y);
  check_launch("scaled_kernel");
}

}  // namespace intcore::cuda

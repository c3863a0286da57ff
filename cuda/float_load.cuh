// Reading any float dtype a TensorView holds as float on the device (exact conversions, as the
// CPU engine's to_float), and a dispatch on the dtype.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "intcore/tensor_view.h"

namespace intcore::cuda {

__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(double v) { return static_cast<float>(v); }
__device__ inline float to_float(__half v) { return __half2float(v); }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class Fn>
void dispatch_float(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32: fn(float{}); return;
    case DType::kFloat64: fn(double{}); return;
    case DType::kFloat16: fn(__half{}); return;
    case DType::kBFloat16: fn(__nv_bfloat16{}); return;
    default: return;  // the engine checked the dtype before dispatching here
  }
}

// A strided 2-D view as the kernels see it.
template <typename T>
struct Strided2D {
  const T* data;
  int64_t rows, cols, row_stride, col_stride;
  __device__ float at(int64_t r, int64_t c) const { return to_float(data[r * row_stride + c * col_stride]); }
};

template <typename T>
Strided2D<T> strided(const TensorView& v) {
  return {static_cast<const T*>(v.data()), v.size(0), v.size(1), v.stride(0), v.stride(1)};
}

}  // namespace intcore::cuda

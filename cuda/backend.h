// The CUDA backend's entry points, called by the engine when a TensorView is on a CUDA device.
// Plain C++: the engine includes this without the CUDA toolkit. Every function validates nothing
// the engine already validated (shapes, dtypes) and runs on the calling thread's current stream,
// without synchronizing with the host.
#pragma once

#include <cstddef>
#include <string>

#include "intcore/gemm.h"
#include "intcore/philox.h"
#include "intcore/quantize.h"
#include "intcore/tensor_view.h"

namespace intcore::cuda {

// Whether a CUDA device can run the kernels; if not, *reason says why.
bool available(std::string* reason);

// The stream kernels of this thread run on (a cudaStream_t); the bindings set it from
// PyTorch's current stream before each call. Null is the legacy default stream.
void set_current_stream(void* stream);
void* current_stream();

// Stream-ordered device memory for temporaries.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_) { other.data_ = nullptr; }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return data_; }

 private:
  void* data_ = nullptr;
};

// Same contracts as the engine functions of the same names (quantize.h, gemm.h). On CUDA a
// NaN or Inf input is not raised (that would need a host synchronization): it makes the
// scale NaN (absmax) or the exponent INT32_MIN (fixed point), which the GEMM epilogue turns
// into NaN outputs.
void quantize_fixed_point(const TensorView& x, const TensorView& mantissa, const TensorView& exponent, int bits,
                          Rounding rounding, RandomStream stream);
void dequantize_fixed_point(const TensorView& mantissa, const TensorView& exponent, const TensorView& out);
void quantize_absmax(const TensorView& x, const TensorView& q, const TensorView& scale, int bits, Rounding rounding,
                     RandomStream stream);
void dequantize_absmax(const TensorView& q, const TensorView& scale, int bits, const TensorView& out);
void gemm_exact(const IntMatrix& a, const IntMatrix& b, const TensorView& c);
void gemm_scaled(const IntMatrix& a, const TensorView& a_scale, const IntMatrix& b, const TensorView& b_scale,
                 const TensorView* bias, const TensorView& out);

}  // namespace intcore::cuda

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

// Stream-ordered device memory for temporaries, from the current device's memory pool (the one
// cudaMallocAsync uses), which is kept from shrinking: see runtime.cu.
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

// Hands the free memory that the current device's pool keeps for intcore's temporaries back to
// the driver (the pool does not shrink on its own), as torch.cuda.empty_cache() does for
// PyTorch's cache. Synchronizes the current device first, so that every pending free counts.
void release_cached_memory();

// The current device's pool, as intcore's temporaries see it: its release threshold, the bytes
// it holds from the driver and the bytes handed out now.
struct PoolStats {
  unsigned long long release_threshold, reserved_bytes, used_bytes;
};
PoolStats pool_stats();

// Which tensor-core GEMM the int8 products use. kAuto: the sm90 (wgmma, TMA) kernel on Hopper
// where it was built and the operands are packed, the sm80 (mma.sync) kernel otherwise. kSm80:
// always the sm80 kernel, so that a Hopper GPU can test the Ampere/Ada path too. Process-wide.
enum class GemmKernel { kAuto, kSm80 };
void set_gemm_kernel(GemmKernel kernel);
GemmKernel gemm_kernel();

// Same contracts as the engine functions of the same names (quantize.h, gemm.h). On CUDA a
// NaN or Inf input is not raised (that would need a host synchronization): it makes the
// scale NaN (absmax) or the exponent INT32_MIN (fixed point; kNanExponent of the CPU engine,
// which reads it as NaN too), which the GEMM epilogue turns into NaN outputs; a NaN or Inf
// bias reaches the outputs as it is. Empty shapes launch nothing that would read an operand: M = 0 or N = 0
// writes nothing, and K = 0 writes the empty sum (zeros; the scaled epilogue of zero plus bias)
// without running a GEMM.
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

// Device discovery, the per-thread current stream, stream-ordered allocation, error checks.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "backend.h"
#include "cuda_check.h"

namespace intcore::cuda {

namespace {
thread_local cudaStream_t g_stream = nullptr;
}

bool available(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (reason) *reason = std::string("the CUDA runtime reports: ") + cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error of a failed probe
    return false;
  }
  if (count == 0) {
    if (reason) *reason = "no CUDA device is visible";
    return false;
  }
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (major < 8) {
    if (reason) *reason = "intcore's CUDA kernels need compute capability 8.0 or newer (Ampere, Ada, Hopper)";
    return false;
  }
  if (reason) reason->clear();
  return true;
}

void set_current_stream(void* stream) { g_stream = static_cast<cudaStream_t>(stream); }
void* current_stream() { return g_stream; }

DeviceBuffer::DeviceBuffer(size_t bytes) {
  if (bytes > 0) check(cudaMallocAsync(&data_, bytes, g_stream), "cudaMallocAsync");
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFreeAsync(data_, g_stream);
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("intcore CUDA: ") + what + " failed: " + cudaGetErrorString(status));
  }
}

void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace intcore::cuda

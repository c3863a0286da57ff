// Device discovery, the per-thread current stream, stream-ordered allocation, error checks.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda_check.h"

namespace intcore::cuda {

namespace {
thread_local cudaStream_t g_stream = nullptr;
std::atomic<GemmKernel> g_gemm_kernel{GemmKernel::kAuto};

// Temporaries (packed operands, int32 products, int64 accumulators, CUTLASS workspaces) come
// from cudaMallocAsync, that is from the current device's memory pool. A pool's release
// threshold is 0 unless set: at every synchronization it hands all its free memory back to the
// driver, so each op after a torch.cuda.synchronize() (every training step) maps its
// temporaries afresh, and memory use goes up and down outside PyTorch's caching allocator.
// We set the threshold of that pool to UINT64_MAX, once per device: freed temporaries stay in
// the pool and the next op reuses them, as PyTorch reuses its cached blocks.
//
// The other fix, taking workspaces from PyTorch's allocator, would be the larger and riskier
// change: the engine knows nothing of PyTorch, so it would have to call back into Python
// (taking the GIL the bindings release around every engine call) or link c10 into the
// bindings and tie the build to one torch version. PyTorch's own cudaMallocAsync backend
// (PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync) sets the same threshold on the same default
// pool, so the two agree. The cost: memory kept for intcore's temporaries is reserved in this
// pool, not in torch.cuda.memory_reserved(), until release_cached_memory() or the process ends.
void keep_pool_of_current_device() {
  thread_local int configured = -1;  // the device this thread last saw configured
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  if (device == configured) return;
  static std::mutex mutex;
  static std::vector<bool> done;
  std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<size_t>(device) >= done.size()) done.resize(static_cast<size_t>(device) + 1, false);
  if (!done[static_cast<size_t>(device)]) {
    cudaMemPool_t pool = nullptr;
    check(cudaDeviceGetMemPool(&pool, device), "cudaDeviceGetMemPool");
    uint64_t threshold = UINT64_MAX;
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
          "cudaMemPoolSetAttribute(cudaMemPoolAttrReleaseThreshold)");
    done[static_cast<size_t>(device)] = true;
  }
  configured = device;
}
}  // namespace

bool available(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    // The runtime reports a machine without an NVIDIA driver as "driver version is insufficient";
    // cudaDriverGetVersion tells that apart from a real old driver by returning version 0.
    int driver = 0;
    const bool no_driver = status == cudaErrorInsufficientDriver &&
                           cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0;
    if (reason) {
      if (no_driver) {
        *reason = "no GPU (no NVIDIA driver is installed)";
      } else if (status == cudaErrorNoDevice) {
        *reason = "no GPU (the NVIDIA driver sees no CUDA device)";
      } else {
        *reason = std::string("the CUDA runtime reports: ") + cudaGetErrorString(status);
        if (status == cudaErrorInsufficientDriver) {
          *reason += " (the driver supports CUDA " + std::to_string(driver / 1000) + "." +
                     std::to_string(driver % 1000 / 10) + ", intcore was built with CUDA " +
                     std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10) +
                     ": update the driver)";
        }
      }
    }
    cudaGetLastError();  // clear the sticky error of a failed probe
    return false;
  }
  if (count == 0) {
    if (reason) *reason = "no GPU (no CUDA device is visible)";
    return false;
  }
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (major < 8) {
    if (reason) *reason = "intcore's CUDA kernels need compute capability 8.0 or newer (Ampere, Ada, Hopper)";
    return false;
  }
  // Every temporary comes from cudaMallocAsync (the device's memory pool).
  int pools = 0;
  cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, 0);
  if (!pools) {
    if (reason) *reason = "the GPU or its driver does not support CUDA memory pools (cudaMallocAsync), which intcore's CUDA kernels use";
    return false;
  }
  if (reason) reason->clear();
  return true;
}

void set_current_stream(void* stream) { g_stream = static_cast<cudaStream_t>(stream); }
void* current_stream() { return g_stream; }

DeviceBuffer::DeviceBuffer(size_t bytes) {
  if (bytes == 0) return;
  keep_pool_of_current_device();
  check(cudaMallocAsync(&data_, bytes, g_stream), "cudaMallocAsync");
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFreeAsync(data_, g_stream);
}

void release_cached_memory() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  cudaMemPool_t pool = nullptr;
  check(cudaDeviceGetMemPool(&pool, device), "cudaDeviceGetMemPool");
  check(cudaMemPoolTrimTo(pool, 0), "cudaMemPoolTrimTo");
}

PoolStats pool_stats() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaMemPool_t pool = nullptr;
  check(cudaDeviceGetMemPool(&pool, device), "cudaDeviceGetMemPool");
  auto attribute = [pool](cudaMemPoolAttr attr) {
    uint64_t value = 0;
    check(cudaMemPoolGetAttribute(pool, attr, &value), "cudaMemPoolGetAttribute");
    return static_cast<unsigned long long>(value);
  };
  return {attribute(cudaMemPoolAttrReleaseThreshold), attribute(cudaMemPoolAttrReservedMemCurrent),
          attribute(cudaMemPoolAttrUsedMemCurrent)};
}

void set_gemm_kernel(GemmKernel kernel) { g_gemm_kernel.store(kernel); }
GemmKernel gemm_kernel() { return g_gemm_kernel.load(); }

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("intcore CUDA: ") + what + " failed: " + cudaGetErrorString(status));
  }
}

void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace intcore::cuda

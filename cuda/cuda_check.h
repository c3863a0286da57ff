// Error checking and launch helpers shared by the .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend.h"

namespace intcore::cuda {

// Throws std::runtime_error (RuntimeError in Python) naming the failed call.
void check(cudaError_t status, const char* what);
void check_launch(const char* kernel);

inline cudaStream_t stream() { return static_cast<cudaStream_t>(current_stream()); }

inline unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// 2^e exactly, as the CPU engine's pow2 (float_types.h) computes it.
__host__ __device__ inline double pow2(int e) {
  if (e < -1022 || e > 1023) return ldexp(1.0, e);
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(e + 1023) << 52);
#else
  return ldexp(1.0, e);
#endif
}

}  // namespace intcore::cuda

// The tensor-core int8 GEMMs the CUDA driver calls: C = A B^T with A [m, k] row-major,
// B [n, k] row-major (column-major k x n to CUTLASS), C [m, n] int32 row-major.
// k and both leading dimensions of A and B are multiples of 16; ldc a multiple of 4.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace intcore::cuda {

struct Int8GemmArgs {
  int64_t m, n, k;
  const int8_t* a;
  int64_t lda;
  const int8_t* b;
  int64_t ldb;
  int32_t* c;
  int64_t ldc;
};

// Throws the RuntimeError of a failed CUTLASS call: which kernel, which step (can_implement,
// initialize, run), CUTLASS's status and the CUDA error behind it, and the problem, so that a
// failure on a GPU says enough to fix without another run.
[[noreturn]] inline void throw_gemm_failure(const char* kernel, const char* step, const char* status,
                                            const Int8GemmArgs& a) {
  const cudaError_t cuda_error = cudaGetLastError();
  throw std::runtime_error(std::string("intcore CUDA: CUTLASS ") + kernel + " int8 GEMM failed in " + step + ": " +
                           status + (cuda_error != cudaSuccess ? std::string(" (") + cudaGetErrorString(cuda_error) + ")" : "") +
                           "; m=" + std::to_string(a.m) + " n=" + std::to_string(a.n) + " k=" + std::to_string(a.k) +
                           " lda=" + std::to_string(a.lda) + " ldb=" + std::to_string(a.ldb) +
                           " ldc=" + std::to_string(a.ldc));
}

// CUTLASS 2.x, mma.sync m16n8k32 (Ampere and Ada; also runs on Hopper).
void int8_gemm_sm80(const Int8GemmArgs& args, cudaStream_t stream);
// CUTLASS 3.x, wgmma with TMA, warp-specialized (Hopper, sm_90a). Defined only when the build
// targets sm_90a (INTCORE_WITH_SM90).
void int8_gemm_sm90(const Int8GemmArgs& args, cudaStream_t stream);

// The GEMM for this device: sm90 where built and running on Hopper, sm80 otherwise.
void int8_gemm(const Int8GemmArgs& args, cudaStream_t stream);

}  // namespace intcore::cuda

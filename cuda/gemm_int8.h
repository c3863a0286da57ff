// The tensor-core int8 GEMMs the CUDA driver calls: C = A B^T with A [m, k] row-major,
// B [n, k] row-major (column-major k x n to CUTLASS), C [m, n] int32 row-major.
// k and both leading dimensions of A and B are multiples of 16; ldc a multiple of 4.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

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

// CUTLASS 2.x, mma.sync m16n8k32 (Ampere and Ada; also runs on Hopper).
void int8_gemm_sm80(const Int8GemmArgs& args, cudaStream_t stream);
// CUTLASS 3.x, wgmma with TMA, warp-specialized (Hopper, sm_90a). Defined only when the build
// targets sm_90a (INTCORE_WITH_SM90).
void int8_gemm_sm90(const Int8GemmArgs& args, cudaStream_t stream);

// The GEMM for this device: sm90 where built and running on Hopper, sm80 otherwise.
void int8_gemm(const Int8GemmArgs& args, cudaStream_t stream);

}  // namespace intcore::cuda

// int8 x int8 -> int32 tensor-core GEMM with CUTLASS 2.x (mma.sync.m16n8k32.s8).
#include <cutlass/cutlass.h>
#include <cutlass/gemm/device/gemm.h>

#include <string>

#include "cuda_check.h"
#include "gemm_heuristics.h"
#include "gemm_int8.h"

namespace intcore::cuda {
namespace {

template <class ThreadblockShape, class WarpShape, int Stages>
using Sm80Gemm = cutlass::gemm::device::Gemm<
    int8_t, cutlass::layout::RowMajor,     // A [m, k]
    int8_t, cutlass::layout::ColumnMajor,  // B: our row-major [n, k] is column-major k x n
    int32_t, cutlass::layout::RowMajor,    // C [m, n]
    int32_t,                               // accumulator: exact for k < 2^17 (|a b| <= 2^14)
    cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80, ThreadblockShape, WarpShape,
    cutlass::gemm::GemmShape<16, 8, 32>,
    cutlass::epilogue::thread::LinearCombination<int32_t, 4, int32_t, int32_t>,
    cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<>, Stages, 16, 16>;

using LargeTile = Sm80Gemm<cutlass::gemm::GemmShape<128, 256, 64>, cutlass::gemm::GemmShape<64, 64, 64>, 3>;
using SmallMTile = Sm80Gemm<cutlass::gemm::GemmShape<64, 128, 64>, cutlass::gemm::GemmShape<32, 64, 64>, 4>;

template <class Gemm>
void run(const Int8GemmArgs& a, const char* kernel, cudaStream_t stream) {
  const cutlass::gemm::GemmCoord size(static_cast<int>(a.m), static_cast<int>(a.n), static_cast<int>(a.k));
  typename Gemm::Arguments args(size, {a.a, a.lda}, {a.b, a.ldb}, {a.c, a.ldc}, {a.c, a.ldc}, {1, 0});
  Gemm gemm;
  cutlass::Status status = gemm.can_implement(args);
  if (status != cutlass::Status::kSuccess) throw_gemm_failure(kernel, "can_implement", cutlassGetStatusString(status), a);
  status = gemm.initialize(args, nullptr, stream);
  if (status != cutlass::Status::kSuccess) throw_gemm_failure(kernel, "initialize", cutlassGetStatusString(status), a);
  status = gemm(stream);
  if (status != cutlass::Status::kSuccess) throw_gemm_failure(kernel, "run", cutlassGetStatusString(status), a);
}

}  // namespace

void int8_gemm_sm80(const Int8GemmArgs& args, cudaStream_t stream) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (choose_sm80_tile(args.m, args.n, sms) == Sm80Tile::kSmallM) run<SmallMTile>(args, "sm80 (64 x 128 tile)", stream);
  else run<LargeTile>(args, "sm80 (128 x 256 tile)", stream);
}

}  // namespace intcore::cuda

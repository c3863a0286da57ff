// int8 x int8 -> int32 GEMM for Hopper with CUTLASS 3.x: wgmma (MMA_64x128x32_S32S8S8), TMA
// loads, a warp-specialized cooperative kernel. Built for sm_90a only.
#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>

#include <string>

#include "cuda_check.h"
#include "gemm_int8.h"

namespace intcore::cuda {
namespace {

using namespace cute;

using TileShape = Shape<_128, _128, _128>;
using ClusterShape = Shape<_1, _2, _1>;

using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
    cutlass::epilogue::collective::EpilogueTileAuto, int32_t, int32_t,
    int32_t, cutlass::layout::RowMajor, 4, int32_t, cutlass::layout::RowMajor, 4,
    cutlass::epilogue::TmaWarpSpecializedCooperative>::CollectiveOp;

using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, int8_t, cutlass::layout::RowMajor, 16, int8_t,
    cutlass::layout::ColumnMajor, 16, int32_t, TileShape, ClusterShape,
    cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
    cutlass::gemm::KernelTmaWarpSpecializedCooperative>::CollectiveOp;

using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

}  // namespace

void int8_gemm_sm90(const Int8GemmArgs& a, cudaStream_t stream) {
  const int m = static_cast<int>(a.m), n = static_cast<int>(a.n), k = static_cast<int>(a.k);
  // Packed strides assume lda == k, ldb == k and ldc == n: the driver allocates them that way.
  if (a.lda != a.k || a.ldb != a.k || a.ldc != a.n) {
    throw std::runtime_error("intcore CUDA: the sm90 GEMM needs packed operands (lda = ldb = k, ldc = n)");
  }
  auto stride_a = cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, make_shape(m, k, 1));
  auto stride_b = cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, make_shape(n, k, 1));
  auto stride_c = cutlass::make_cute_packed_stride(typename Kernel::StrideC{}, make_shape(m, n, 1));
  auto stride_d = cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, make_shape(m, n, 1));
  typename Gemm::Arguments args{cutlass::gemm::GemmUniversalMode::kGemm,
                                {m, n, k, 1},
                                {a.a, stride_a, a.b, stride_b},
                                {{1, 0}, a.c, stride_c, a.c, stride_d}};
  Gemm gemm;
  cutlass::Status status = gemm.can_implement(args);
  if (status != cutlass::Status::kSuccess) throw_gemm_failure("sm90", "can_implement", cutlassGetStatusString(status), a);
  DeviceBuffer workspace(Gemm::get_workspace_size(args));
  status = gemm.initialize(args, workspace.data(), stream);
  if (status != cutlass::Status::kSuccess) throw_gemm_failure("sm90", "initialize", cutlassGetStatusString(status), a);
  status = gemm.run(stream);
  if (status != cutlass::Status::kSuccess) throw_gemm_failure("sm90", "run", cutlassGetStatusString(status), a);
}

}  // namespace intcore::cuda

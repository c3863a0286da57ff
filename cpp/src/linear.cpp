#include "intcore/linear.h"

#include <vector>

#include "workspace.h"
#include "intcore/gemm.h"
#include "intcore/quantize.h"

namespace intcore {
namespace {

// Per-row absmax codes of a 2-D float view, in memory on x's device.
struct QuantizedRows {
  Workspace codes, scales;
  IntMatrix matrix;
  TensorView scale_view;

  QuantizedRows(const TensorView& x, int bits, Rounding rounding, RandomStream stream)
      : codes(x.device(), static_cast<size_t>(x.size(0) * (bits == 8 ? x.size(1) : (x.size(1) + 1) / 2))),
        scales(x.device(), static_cast<size_t>(x.size(0)) * sizeof(float)) {
    const int64_t rows = x.size(0), k = x.size(1);
    const TensorView q = codes.view(bits == 8 ? DType::kInt8 : DType::kUInt8, {rows, bits == 8 ? k : (k + 1) / 2},
                                    x.name() + " codes");
    scale_view = scales.view(DType::kFloat32, {rows}, x.name() + " scales");
    quantize_absmax(x, q, scale_view, bits, rounding, stream);
    matrix = bits == 8 ? IntMatrix::of(q) : IntMatrix::int4(q, k);
  }
};

void check_operand(const std::string& fn, const TensorView& t) {
  check_floating(fn, t);
  check_dim(fn, t, 2);
}

void check_bits(const std::string& fn, int bits) {
  if (bits != 8 && bits != 4) throw_value_error(fn + ": bits must be 8 or 4, got " + std::to_string(bits));
}

void check_output(const std::string& fn, const TensorView& t, int64_t rows, int64_t cols) {
  check_dtype(fn, t, DType::kFloat32);
  check_shape(fn, t, {rows, cols});
  check_contiguous(fn, t);
}

}  // namespace

void absmax_linear_forward(const TensorView& x, const TensorView& w, const TensorView* bias, int bits,
                           const TensorView& out) {
  const std::string fn = "absmax_linear_forward";
  check_bits(fn, bits);
  check_operand(fn, x);
  check_operand(fn, w);
  const int64_t m = x.size(0), k = x.size(1), n = w.size(0);
  if (w.size(1) != k) {
    throw_value_error(fn + ": " + x.name() + " has " + std::to_string(k) + " features but " + w.name() + " expects " +
                      std::to_string(w.size(1)) + " (x is " + x.shape_str() + ", w is " + w.shape_str() + ")");
  }
  check_output(fn, out, m, n);
  if (bias != nullptr) {
    check_dtype(fn, *bias, DType::kFloat32);
    check_shape(fn, *bias, {n});
    check_contiguous(fn, *bias);
  }
  check_disjoint(fn, {&out}, {&x, &w, bias});
  runs_on_cuda(fn, {&x, &w, bias, &out});  // one device for all (the called functions dispatch)
  const QuantizedRows qx(x, bits, Rounding::kNearest, {});
  const QuantizedRows qw(w, bits, Rounding::kNearest, {});
  gemm_scaled(qx.matrix, qx.scale_view, qw.matrix, qw.scale_view, bias, out);
}

void absmax_linear_grad_input(const TensorView& grad, const TensorView& w, int bits, uint64_t seed,
                              const TensorView& dx) {
  const std::string fn = "absmax_linear_grad_input";
  check_bits(fn, bits);
  check_operand(fn, grad);
  check_operand(fn, w);
  if (grad.size(1) != w.size(0)) {
    throw_value_error(fn + ": " + grad.name() + " " + grad.shape_str() + " and " + w.name() + " " + w.shape_str() +
                      " disagree on the number of output features");
  }
  check_output(fn, dx, grad.size(0), w.size(1));
  check_disjoint(fn, {&dx}, {&grad, &w});
  runs_on_cuda(fn, {&grad, &w, &dx});
  const QuantizedRows qg(grad, bits, Rounding::kStochastic, {seed, 0});
  const QuantizedRows qwt(w.transposed(), bits, Rounding::kNearest, {});
  gemm_scaled(qg.matrix, qg.scale_view, qwt.matrix, qwt.scale_view, nullptr, dx);
}

void absmax_linear_grad_weight(const TensorView& grad, const TensorView& x, int bits, uint64_t seed,
                               const TensorView& dw) {
  const std::string fn = "absmax_linear_grad_weight";
  check_bits(fn, bits);
  check_operand(fn, grad);
  check_operand(fn, x);
  if (grad.size(0) != x.size(0)) {
    throw_value_error(fn + ": " + grad.name() + " " + grad.shape_str() + " and " + x.name() + " " + x.shape_str() +
                      " disagree on the number of rows");
  }
  check_output(fn, dw, grad.size(1), x.size(1));
  check_disjoint(fn, {&dw}, {&grad, &x});
  runs_on_cuda(fn, {&grad, &x, &dw});
  const QuantizedRows qgt(grad.transposed(), bits, Rounding::kStochastic, {seed, 1});
  const QuantizedRows qxt(x.transposed(), bits, Rounding::kNearest, {});
  gemm_scaled(qgt.matrix, qgt.scale_view, qxt.matrix, qxt.scale_view, nullptr, dw);
}

}  // namespace intcore

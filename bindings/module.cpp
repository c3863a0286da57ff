// intcore._C: the engine's functions over DLPack arrays. Each function turns its array
// arguments into named TensorViews, releases the GIL, and calls the engine; the engine checks
// dtypes, shapes and layouts and raises intcore::Error, which becomes TypeError/ValueError.
// No maths here. Outputs are arrays the caller allocated.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "dlpack_view.h"
#include "intcore/intcore.h"
#ifdef INTCORE_WITH_CUDA
#include "../cuda/backend.h"
#endif

namespace py = pybind11;
using namespace intcore;
using bindings::DLPackView;

namespace {

Rounding parse_rounding(const std::string& rounding) {
  if (rounding == "nearest") return Rounding::kNearest;
  if (rounding == "stochastic") return Rounding::kStochastic;
  throw Error(ErrorKind::kValue,
              bindings::BindingCall::prefix() + "rounding must be 'nearest' or 'stochastic', got '" + rounding + "'");
}

RsqrtMode parse_rsqrt(const std::string& rsqrt) {
  if (rsqrt == "integer") return RsqrtMode::kInteger;
  if (rsqrt == "float") return RsqrtMode::kFloat;
  throw Error(ErrorKind::kValue,
              bindings::BindingCall::prefix() + "rsqrt must be 'integer' or 'float', got '" + rsqrt + "'");
}


// An optional array argument: None -> no view.
struct OptionalView {
  std::unique_ptr<DLPackView> holder;
  OptionalView(const py::object& array, const std::string& name) {
    if (!array.is_none()) holder = std::make_unique<DLPackView>(array, name);
  }
  const TensorView* get() const { return holder ? &holder->view() : nullptr; }
};

// An int argument of the engine (a bit width), taken as int64 so that a huge Python int reaches
// the engine's own range check (clamped to int, still out of range) in the engine's order of
// checks, instead of failing pybind11's conversion with its overload message.
int narrow_int(int64_t value) {
  return static_cast<int>(std::clamp<int64_t>(value, std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
}

IntMatrix operand(const DLPackView& v, std::optional<int64_t> int4_k) {
  return int4_k ? IntMatrix::int4(v.view(), *int4_k) : IntMatrix::of(v.view());
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "intcore engine bindings (internal: use the intcore package)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(e.kind() == ErrorKind::kType ? PyExc_TypeError : PyExc_ValueError, e.what());
    }
  });

#ifdef INTCORE_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif

  m.def(
      "cuda_available",
      [] {
#ifdef INTCORE_WITH_CUDA
        std::string reason;
        const bool ok = cuda::available(&reason);
        return std::make_pair(ok, reason);
#else
        return std::make_pair(false, std::string("this build of intcore has no CUDA backend (no nvcc was found when "
                                                 "it was built; rebuild with -DINTCORE_CUDA=ON)"));
#endif
      },
      "(available, reason): whether intcore's CUDA kernels can run here, and if not, why.");

  m.def(
      "set_cuda_stream",
      [](uintptr_t stream) {
#ifdef INTCORE_WITH_CUDA
        cuda::set_current_stream(reinterpret_cast<void*>(stream));
#else
        (void)stream;
#endif
      },
      py::arg("stream"), "The cudaStream_t (as an integer) this thread's engine calls run on.");

  m.def(
      "build_info",
      [] {
        py::dict info;
        info["compiler"] = INTCORE_BUILD_COMPILER;
        info["cuda_architectures"] = INTCORE_BUILD_CUDA_ARCHS;
        info["cutlass"] = INTCORE_BUILD_CUTLASS;
        return info;
      },
      "How this build was made: C++ compiler, CUDA architectures and CUTLASS version (empty without CUDA).");

  m.def("supported_cpu_kernels", [] {
    std::vector<std::string> names;
    for (CpuKernel k : supported_cpu_kernels()) names.emplace_back(cpu_kernel_name(k));
    return names;
  });
  m.def("all_cpu_kernels", [] {
    std::vector<std::string> names;
    for (CpuKernel k : all_cpu_kernels()) names.emplace_back(cpu_kernel_name(k));
    return names;
  });
  m.def("cpu_kernel", [] { return std::string(cpu_kernel_name(active_cpu_kernel())); });
  m.def("set_cpu_kernel", [](const std::string& name) { set_cpu_kernel(parse_cpu_kernel("set_cpu_kernel", name)); }, py::arg("name"));

  m.def(
      "set_cuda_gemm_kernel",
      [](const std::string& name) {
        const bindings::BindingCall call("set_cuda_gemm_kernel");
        if (name != "auto" && name != "sm80") {
          throw Error(ErrorKind::kValue, "unknown CUDA GEMM kernel '" + name + "' (known: auto, sm80)");
        }
#ifdef INTCORE_WITH_CUDA
        cuda::set_gemm_kernel(name == "sm80" ? cuda::GemmKernel::kSm80 : cuda::GemmKernel::kAuto);
#endif
      },
      py::arg("name"),
      "The int8 tensor-core GEMM CUDA calls use: 'auto' (sm90 wgmma/TMA on Hopper, else sm80) or 'sm80' "
      "(mma.sync everywhere: tests the Ampere/Ada path on Hopper). Process-wide.");
  m.def("cuda_gemm_kernel", [] {
#ifdef INTCORE_WITH_CUDA
    return std::string(cuda::gemm_kernel() == cuda::GemmKernel::kSm80 ? "sm80" : "auto");
#else
    return std::string("auto");
#endif
  });
  m.def(
      "cuda_release_cached_memory",
      [] {
#ifdef INTCORE_WITH_CUDA
        py::gil_scoped_release release;
        cuda::release_cached_memory();
#endif
      },
      "Synchronizes the current CUDA device and hands the free memory of intcore's temporaries back to the "
      "driver (their pool does not shrink on its own), as torch.cuda.empty_cache() does for PyTorch's cache.");
  m.def(
      "cuda_memory_pool_stats",
      [] {
        py::dict stats;
#ifdef INTCORE_WITH_CUDA
        const cuda::PoolStats s = cuda::pool_stats();
        stats["release_threshold"] = s.release_threshold;
        stats["reserved_bytes"] = s.reserved_bytes;
        stats["used_bytes"] = s.used_bytes;
#endif
        return stats;
      },
      "The current CUDA device's memory pool, which holds intcore's temporaries: release_threshold, "
      "reserved_bytes (held from the driver, outside torch.cuda.memory_reserved()) and used_bytes.");

  m.def(
      "quantize_fixed_point",
      [](py::object x, py::object mantissa, py::object exponent, int64_t bits_arg, const std::string& rounding,
         uint64_t seed, uint64_t offset) {
        const bindings::BindingCall call("quantize_fixed_point");
        const int bits = narrow_int(bits_arg);
        DLPackView xv(x, "x"), mv(mantissa, "mantissa"), ev(exponent, "exponent");
        const Rounding r = parse_rounding(rounding);
        py::gil_scoped_release release;
        quantize_fixed_point(xv.view(), mv.view(), ev.view(), bits, r, {seed, offset});
      },
      py::arg("x"), py::arg("mantissa"), py::arg("exponent"), py::arg("bits"), py::arg("rounding"),
      py::arg("seed") = 0, py::arg("offset") = 0);

  m.def(
      "dequantize_fixed_point",
      [](py::object mantissa, py::object exponent, py::object out) {
        const bindings::BindingCall call("dequantize_fixed_point");
        DLPackView mv(mantissa, "mantissa"), ev(exponent, "exponent"), ov(out, "out");
        py::gil_scoped_release release;
        dequantize_fixed_point(mv.view(), ev.view(), ov.view());
      },
      py::arg("mantissa"), py::arg("exponent"), py::arg("out"));

  m.def(
      "quantize_absmax",
      [](py::object x, py::object q, py::object scale, int64_t bits_arg, const std::string& rounding, uint64_t seed,
         uint64_t offset) {
        const bindings::BindingCall call("quantize_absmax");
        const int bits = narrow_int(bits_arg);
        DLPackView xv(x, "x"), qv(q, "q"), sv(scale, "scale");
        const Rounding r = parse_rounding(rounding);
        py::gil_scoped_release release;
        quantize_absmax(xv.view(), qv.view(), sv.view(), bits, r, {seed, offset});
      },
      py::arg("x"), py::arg("q"), py::arg("scale"), py::arg("bits"), py::arg("rounding"), py::arg("seed") = 0,
      py::arg("offset") = 0);

  m.def(
      "dequantize_absmax",
      [](py::object q, py::object scale, int64_t bits_arg, py::object out) {
        const bindings::BindingCall call("dequantize_absmax");
        const int bits = narrow_int(bits_arg);
        DLPackView qv(q, "q"), sv(scale, "scale"), ov(out, "out");
        py::gil_scoped_release release;
        dequantize_absmax(qv.view(), sv.view(), bits, ov.view());
      },
      py::arg("q"), py::arg("scale"), py::arg("bits"), py::arg("out"));

  m.def(
      "pack_int4",
      [](py::object values, py::object packed) {
        const bindings::BindingCall call("pack_int4");
        DLPackView vv(values, "values"), pv(packed, "packed");
        py::gil_scoped_release release;
        pack_int4(vv.view(), pv.view());
      },
      py::arg("values"), py::arg("packed"));

  m.def(
      "unpack_int4",
      [](py::object packed, py::object values) {
        const bindings::BindingCall call("unpack_int4");
        DLPackView pv(packed, "packed"), vv(values, "values");
        py::gil_scoped_release release;
        unpack_int4(pv.view(), vv.view());
      },
      py::arg("packed"), py::arg("values"));

  m.def(
      "gemm_exact",
      [](py::object a, py::object b, py::object c, std::optional<int64_t> int4_k) {
        const bindings::BindingCall call("gemm_exact");
        DLPackView av(a, "a"), bv(b, "b"), cv(c, "c");
        const IntMatrix am = operand(av, int4_k), bm = operand(bv, int4_k);
        py::gil_scoped_release release;
        gemm_exact(am, bm, cv.view());
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("int4_k") = py::none(),
      "c = a @ b.T exactly. int4_k: both operands are packed int4 with this K.");

  m.def(
      "gemm_scaled",
      [](py::object a, py::object a_scale, py::object b, py::object b_scale, py::object bias, py::object out,
         std::optional<int64_t> int4_k) {
        const bindings::BindingCall call("gemm_scaled");
        DLPackView av(a, "a"), asv(a_scale, "a_scale"), bv(b, "b"), bsv(b_scale, "b_scale"), ov(out, "out");
        OptionalView biasv(bias, "bias");
        const IntMatrix am = operand(av, int4_k), bm = operand(bv, int4_k);
        py::gil_scoped_release release;
        gemm_scaled(am, asv.view(), bm, bsv.view(), biasv.get(), ov.view());
      },
      py::arg("a"), py::arg("a_scale"), py::arg("b"), py::arg("b_scale"), py::arg("bias"), py::arg("out"),
      py::arg("int4_k") = py::none());

  m.def(
      "absmax_linear_forward",
      [](py::object x, py::object w, py::object bias, py::object out, int64_t bits_arg) {
        const bindings::BindingCall call("absmax_linear_forward");
        const int bits = narrow_int(bits_arg);
        DLPackView xv(x, "x"), wv(w, "w"), ov(out, "out");
        OptionalView biasv(bias, "bias");
        py::gil_scoped_release release;
        absmax_linear_forward(xv.view(), wv.view(), biasv.get(), bits, ov.view());
      },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("out"), py::arg("bits"));

  m.def(
      "absmax_linear_grad_input",
      [](py::object grad, py::object w, int64_t bits_arg, uint64_t seed, py::object dx) {
        const bindings::BindingCall call("absmax_linear_grad_input");
        const int bits = narrow_int(bits_arg);
        DLPackView gv(grad, "grad"), wv(w, "w"), dxv(dx, "dx");
        py::gil_scoped_release release;
        absmax_linear_grad_input(gv.view(), wv.view(), bits, seed, dxv.view());
      },
      py::arg("grad"), py::arg("w"), py::arg("bits"), py::arg("seed"), py::arg("dx"));

  m.def(
      "absmax_linear_grad_weight",
      [](py::object grad, py::object x, int64_t bits_arg, uint64_t seed, py::object dw) {
        const bindings::BindingCall call("absmax_linear_grad_weight");
        const int bits = narrow_int(bits_arg);
        DLPackView gv(grad, "grad"), xv(x, "x"), dwv(dw, "dw");
        py::gil_scoped_release release;
        absmax_linear_grad_weight(gv.view(), xv.view(), bits, seed, dwv.view());
      },
      py::arg("grad"), py::arg("x"), py::arg("bits"), py::arg("seed"), py::arg("dw"));

  m.def(
      "align_fixed_point",
      [](py::object mantissa, py::object exponent, py::object out, py::object out_exponent) {
        const bindings::BindingCall call("align_fixed_point");
        DLPackView mv(mantissa, "mantissa"), ev(exponent, "exponent"), ov(out, "out"), oev(out_exponent, "out_exponent");
        py::gil_scoped_release release;
        align_fixed_point(mv.view(), ev.view(), ov.view(), oev.view());
      },
      py::arg("mantissa"), py::arg("exponent"), py::arg("out"), py::arg("out_exponent"));

  m.def(
      "fixed_point_layer_norm_forward",
      [](py::object x, py::object gamma, py::object beta, int64_t bits_arg, double eps, const std::string& rounding,
         const std::string& rsqrt, bool per_row_input, bool centered, uint64_t seed, py::object y, py::object xhat,
         py::object xhat_exponent,
         py::object x_exponent, py::object rstd_mantissa, py::object rstd_exponent, py::object gamma_mantissa,
         py::object gamma_exponent) {
        const bindings::BindingCall call("fixed_point_layer_norm_forward");
        const int bits = narrow_int(bits_arg);
        DLPackView xv(x, "x"), yv(y, "y"), xh(xhat, "xhat"), xhe(xhat_exponent, "xhat_exponent"),
            xe(x_exponent, "x_exponent"), rm(rstd_mantissa, "rstd_mantissa"), re(rstd_exponent, "rstd_exponent"),
            gm(gamma_mantissa, "gamma_mantissa"), ge(gamma_exponent, "gamma_exponent");
        OptionalView gv(gamma, "weight"), bv(beta, "bias");
        LayerNormOptions options;
        options.bits = bits;
        options.eps = eps;
        options.rounding = parse_rounding(rounding);
        options.rsqrt = parse_rsqrt(rsqrt);
        options.per_row_input = per_row_input;
        options.centered = centered;
        const LayerNormSaved saved{xh.view(), xhe.view(), xe.view(), rm.view(), re.view(), gm.view(), ge.view()};
        py::gil_scoped_release release;
        fixed_point_layer_norm_forward(xv.view(), gv.get(), bv.get(), options, {seed, 0}, yv.view(), saved);
      },
      py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("bits"), py::arg("eps"), py::arg("rounding"),
      py::arg("rsqrt"), py::arg("per_row_input"), py::arg("centered"), py::arg("seed"), py::arg("y"), py::arg("xhat"),
      py::arg("xhat_exponent"),
      py::arg("x_exponent"), py::arg("rstd_mantissa"), py::arg("rstd_exponent"), py::arg("gamma_mantissa"),
      py::arg("gamma_exponent"));

  m.def(
      "fixed_point_layer_norm_backward",
      [](py::object dy, py::object xhat, py::object xhat_exponent, py::object x_exponent, py::object rstd_mantissa,
         py::object rstd_exponent, py::object gamma_mantissa, py::object gamma_exponent, bool has_gamma,
         bool centered, int64_t grad_bits_arg, const std::string& rounding, uint64_t seed, py::object dx, py::object dgamma,
         py::object dbeta) {
        const bindings::BindingCall call("fixed_point_layer_norm_backward");
        const int grad_bits = narrow_int(grad_bits_arg);
        DLPackView dyv(dy, "grad"), xh(xhat, "xhat"), xhe(xhat_exponent, "xhat_exponent"), xe(x_exponent, "x_exponent"),
            rm(rstd_mantissa, "rstd_mantissa"), re(rstd_exponent, "rstd_exponent"), gm(gamma_mantissa, "gamma_mantissa"),
            ge(gamma_exponent, "gamma_exponent"), dxv(dx, "dx");
        OptionalView dgv(dgamma, "dgamma"), dbv(dbeta, "dbeta");
        const Rounding r = parse_rounding(rounding);
        const LayerNormSaved saved{xh.view(), xhe.view(), xe.view(), rm.view(), re.view(), gm.view(), ge.view()};
        py::gil_scoped_release release;
        fixed_point_layer_norm_backward(dyv.view(), saved, has_gamma, centered, grad_bits, r, {seed, 0}, dxv.view(), dgv.get(),
                                        dbv.get());
      },
      py::arg("dy"), py::arg("xhat"), py::arg("xhat_exponent"), py::arg("x_exponent"), py::arg("rstd_mantissa"),
      py::arg("rstd_exponent"), py::arg("gamma_mantissa"), py::arg("gamma_exponent"), py::arg("has_gamma"),
      py::arg("centered"), py::arg("grad_bits"), py::arg("rounding"), py::arg("seed"), py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"));

  m.def(
      "fixed_point_embedding_forward",
      [](py::object ids, py::object table, int64_t bits_arg, py::object out) {
        const bindings::BindingCall call("fixed_point_embedding_forward");
        const int bits = narrow_int(bits_arg);
        DLPackView iv(ids, "input"), tv(table, "weight"), ov(out, "out");
        py::gil_scoped_release release;
        fixed_point_embedding_forward(iv.view(), tv.view(), bits, ov.view());
      },
      py::arg("ids"), py::arg("table"), py::arg("bits"), py::arg("out"));

  m.def(
      "fixed_point_embedding_backward",
      [](py::object ids, py::object grad, int64_t grad_bits_arg, const std::string& rounding, uint64_t seed,
         int64_t padding_idx, py::object dtable) {
        const bindings::BindingCall call("fixed_point_embedding_backward");
        const int grad_bits = narrow_int(grad_bits_arg);
        DLPackView iv(ids, "input"), gv(grad, "grad"), dv(dtable, "dtable");
        const Rounding r = parse_rounding(rounding);
        py::gil_scoped_release release;
        fixed_point_embedding_backward(iv.view(), gv.view(), grad_bits, r, {seed, 0}, padding_idx, dv.view());
      },
      py::arg("ids"), py::arg("grad"), py::arg("grad_bits"), py::arg("rounding"), py::arg("seed"),
      py::arg("padding_idx"), py::arg("dtable"));

  m.def(
      "hadamard_transform",
      [](py::object x, int64_t block, py::object out) {
        const bindings::BindingCall call("hadamard_transform");
        DLPackView xv(x, "x"), ov(out, "out");
        py::gil_scoped_release release;
        hadamard_transform(xv.view(), block, ov.view());
      },
      py::arg("x"), py::arg("block"), py::arg("out"));

  m.def(
      "split_gradient",
      [](py::object grad, uint64_t seed, py::object high, py::object low, py::object scale) {
        const bindings::BindingCall call("split_gradient");
        DLPackView gv(grad, "grad"), hv(high, "high"), lv(low, "low"), sv(scale, "scale");
        py::gil_scoped_release release;
        split_gradient(gv.view(), {seed, 0}, hv.view(), lv.view(), sv.view());
      },
      py::arg("grad"), py::arg("seed"), py::arg("high"), py::arg("low"), py::arg("scale"));

  m.def(
      "hq_linear_forward",
      [](py::object x, py::object w, py::object bias, int64_t block, bool per_row, py::object out,
         py::object x_codes, py::object x_scale, py::object w_codes, py::object w_scale, py::object x_step,
         py::object w_step) {
        const bindings::BindingCall call("hq_linear_forward");
        DLPackView xv(x, "x"), wv(w, "w"), ov(out, "out"), xc(x_codes, "x_codes"), xs(x_scale, "x_scale"),
            wc(w_codes, "w_codes"), ws(w_scale, "w_scale");
        OptionalView bv(bias, "bias"), xsv(x_step, "x_step"), wsv(w_step, "w_step");
        py::gil_scoped_release release;
        hq_linear_forward(xv.view(), wv.view(), bv.get(), block, per_row, ov.view(), {xc.view(), xs.view()},
                          {wc.view(), ws.view()}, xsv.get(), wsv.get());
      },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("block"), py::arg("per_row"), py::arg("out"),
      py::arg("x_codes"),
      py::arg("x_scale"), py::arg("w_codes"), py::arg("w_scale"), py::arg("x_step") = py::none(),
      py::arg("w_step") = py::none());

  m.def(
      "hq_linear_backward",
      [](py::object grad, py::object x_codes, py::object x_scale, py::object w_codes, py::object w_scale, int64_t k,
         int64_t block, bool per_row, bool sampling, double budget, uint64_t seed, py::object dx, py::object dw) {
        const bindings::BindingCall call("hq_linear_backward");
        DLPackView gv(grad, "grad"), xc(x_codes, "x_codes"), xs(x_scale, "x_scale"), wc(w_codes, "w_codes"),
            ws(w_scale, "w_scale");
        OptionalView dxv(dx, "dx"), dwv(dw, "dw");
        py::gil_scoped_release release;
        hq_linear_backward(gv.view(), {xc.view(), xs.view()}, {wc.view(), ws.view()}, k, block, per_row,
                           {sampling, budget},
                           seed, dxv.get(), dwv.get());
      },
      py::arg("grad"), py::arg("x_codes"), py::arg("x_scale"), py::arg("w_codes"), py::arg("w_scale"), py::arg("k"),
      py::arg("block"), py::arg("per_row"), py::arg("sampling"), py::arg("budget"), py::arg("seed"), py::arg("dx"),
      py::arg("dw"));
}

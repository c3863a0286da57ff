"""Native CUDA kernels: the ops the engine's CUDA backend implements, on PyTorch's current stream.

Registered only when intcore was built with CUDA. Ops not listed here run their portable kernel
on CUDA tensors (torch's own CUDA kernels underneath).
"""

import functools

import torch

from intcore import _C
from intcore import _ops  # noqa: F401  (defines the schemas these kernels register against)
from intcore.backends import portable
from intcore.backends.dispatch import register_native
from intcore.backends.engine_kernels import KERNELS

CUDA_OPS = (
    "quantize_fixed_point",
    "dequantize_fixed_point",
    "quantize_absmax",
    "dequantize_absmax",
    "int8_mm",
    "int4_mm",
    "int16_mm",
    "int8_linear",
    "int8_linear_grad_input",
    "int8_linear_grad_weight",
    "int4_linear",
    "int4_linear_grad_input",
    "int4_linear_grad_weight",
    # Fixed-point linear layers compose the quantizer and GEMM above.
    "fixed_point_linear",
)


def _on_current_stream(fn):
    """Runs fn with the engine on the inputs' device and that device's current PyTorch stream."""

    @functools.wraps(fn)
    def run(*args):
        device = next(a.device for a in args if isinstance(a, torch.Tensor) and a.is_cuda)
        with torch.cuda.device(device):
            _C.set_cuda_stream(torch.cuda.current_stream(device).cuda_stream)
            return fn(*args)

    return run


def _fixed_point_linear_backward(grad, x_mantissa, x_exponent, w_mantissa, w_exponent, *args):
    # Per-row exponents need align_fixed_point before the GEMMs, which the engine has on the CPU
    # only: that case runs the portable kernel.
    if x_exponent.numel() != 1 or w_exponent.numel() != 1:
        return portable.KERNELS["fixed_point_linear_backward"](grad, x_mantissa, x_exponent, w_mantissa, w_exponent, *args)
    return _on_current_stream(KERNELS["fixed_point_linear_backward"])(grad, x_mantissa, x_exponent, w_mantissa, w_exponent, *args)


if _C.built_with_cuda:
    for _name in CUDA_OPS:
        register_native(_name, "cuda", _on_current_stream(KERNELS[_name]))
    register_native("fixed_point_linear_backward", "cuda", _fixed_point_linear_backward,
                    note="portable with per-row exponents")

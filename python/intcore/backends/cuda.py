"""CUDA kernels: the ops the engine's CUDA backend implements, on PyTorch's current stream.

Registered only when intcore was built with CUDA. Ops not listed here have no CUDA kernel yet:
called with CUDA tensors they raise NotImplementedError naming the op and the device.
"""

import functools

import torch

from intcore import _C
from intcore import _ops  # noqa: F401  (defines the schemas these kernels register against)
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
    # Fixed-point linear layers compose the quantizer and GEMM above; per-row granularity also
    # needs align_fixed_point, which is CPU-only so far (it raises a ValueError on CUDA tensors).
    "fixed_point_linear",
    "fixed_point_linear_backward",
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


if _C.built_with_cuda:
    for _name in CUDA_OPS:
        torch.library.register_kernel(f"intcore::{_name}", "cuda")(_on_current_stream(KERNELS[_name]))

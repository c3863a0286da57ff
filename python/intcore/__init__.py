"""intcore: training and fine-tuning transformers with integer arithmetic.

Ops (``torch.ops.intcore.*``) are declared in ``intcore._ops``, their kernels live in
``intcore.backends``, and the functions below are the public way to call them.
"""

from intcore import _C, _ops, backends, _autograd  # noqa: F401  (registers ops, kernels, autograd)
from intcore import cpu_kernels

cpu_kernels.check_forced_kernel()
from intcore import memory, nn, peft, recipes
from intcore.backends.dispatch import kernel_table, portable_kernels
from intcore.convert import convert, summary
from intcore.fixed_point import (
    FixedPointConfig,
    fixed_point_embedding,
    fixed_point_layer_norm,
    fixed_point_linear,
    fixed_point_rms_norm,
)
from intcore.int4_training import Int4Config, hadamard, int4_linear, search_block_size
from intcore.functional import (
    FixedPoint,
    dequantize_absmax,
    dequantize_fixed_point,
    int4_mm,
    int8_linear,
    int8_mm,
    int16_mm,
    quantize_absmax,
    quantize_fixed_point,
)

__version__ = "0.1.0"


def cuda_available() -> bool:
    """Whether intcore's CUDA kernels can run here; ``cuda_unavailable_reason()`` says why not."""
    return _C.cuda_available()[0]


def cuda_unavailable_reason() -> str:
    """Why intcore's CUDA kernels cannot run here ("" when they can)."""
    return _C.cuda_available()[1]

__all__ = [
    "FixedPoint",
    "FixedPointConfig",
    "Int4Config",
    "hadamard",
    "kernel_table",
    "portable_kernels",
    "search_block_size",
    "convert",
    "cuda_available",
    "cuda_unavailable_reason",
    "fixed_point_embedding",
    "fixed_point_layer_norm",
    "fixed_point_rms_norm",
    "fixed_point_linear",
    "recipes",
    "summary",
    "dequantize_absmax",
    "dequantize_fixed_point",
    "int4_linear",
    "int4_mm",
    "int8_linear",
    "int8_mm",
    "int16_mm",
    "memory",
    "nn",
    "peft",
    "quantize_absmax",
    "quantize_fixed_point",
]

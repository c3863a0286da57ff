"""Schemas and fake (meta) implementations of every intcore op, in one place.

Each op is a ``torch.library.custom_op`` in the ``intcore`` namespace. The body registered here
only runs on devices that have no kernel (it raises); the real kernels live in
``intcore/backends/<device>.py`` and autograd formulas in ``intcore/_autograd.py``. Fake
implementations give shapes and dtypes without data, so ``torch.compile`` traces the ops without
graph breaks.

Conventions: 2-D operands, ``a @ b.T`` layout for products (``y = x @ w.T`` as in nn.Linear),
random bits from a ``seed`` tensor (int64, 0-dim) that the public functions draw from PyTorch's
generator, so ``torch.manual_seed`` reproduces a run.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def _no_kernel(op: str, *tensors: Optional[Tensor]):
    devices = sorted({str(t.device) for t in tensors if t is not None})
    raise NotImplementedError(
        f"intcore.{op} has no kernel for device {', '.join(devices)} in this build of intcore "
        f"(CPU is always available; CUDA needs a build with nvcc and CUTLASS)"
    )


def _exponent_shape(x: Tensor, per_row: bool) -> tuple:
    return (x.shape[0],) if per_row else (1,)


# ---- quantizers ----------------------------------------------------------------------------


@torch.library.custom_op("intcore::quantize_fixed_point", mutates_args=())
def quantize_fixed_point(x: Tensor, bits: int, rounding: str, per_row: bool, seed: Tensor) -> tuple[Tensor, Tensor]:
    _no_kernel("quantize_fixed_point", x)


@quantize_fixed_point.register_fake
def _(x, bits, rounding, per_row, seed):
    dtype = torch.int8 if bits <= 8 else torch.int16
    return x.new_empty(x.shape, dtype=dtype), x.new_empty(_exponent_shape(x, per_row), dtype=torch.int32)


@torch.library.custom_op("intcore::dequantize_fixed_point", mutates_args=())
def dequantize_fixed_point(mantissa: Tensor, exponent: Tensor) -> Tensor:
    _no_kernel("dequantize_fixed_point", mantissa)


@dequantize_fixed_point.register_fake
def _(mantissa, exponent):
    return mantissa.new_empty(mantissa.shape, dtype=torch.float32)


@torch.library.custom_op("intcore::quantize_absmax", mutates_args=())
def quantize_absmax(x: Tensor, bits: int, rounding: str, per_row: bool, seed: Tensor) -> tuple[Tensor, Tensor]:
    _no_kernel("quantize_absmax", x)


@quantize_absmax.register_fake
def _(x, bits, rounding, per_row, seed):
    if bits == 8:
        q = x.new_empty(x.shape, dtype=torch.int8)
    else:
        q = x.new_empty((x.shape[0], (x.shape[1] + 1) // 2), dtype=torch.uint8)
    return q, x.new_empty(_exponent_shape(x, per_row), dtype=torch.float32)


@torch.library.custom_op("intcore::dequantize_absmax", mutates_args=())
def dequantize_absmax(q: Tensor, scale: Tensor, bits: int, cols: int) -> Tensor:
    _no_kernel("dequantize_absmax", q)


@dequantize_absmax.register_fake
def _(q, scale, bits, cols):
    return q.new_empty((q.shape[0], cols), dtype=torch.float32)


# ---- exact integer products ----------------------------------------------------------------


@torch.library.custom_op("intcore::int8_mm", mutates_args=())
def int8_mm(a: Tensor, b: Tensor) -> Tensor:
    _no_kernel("int8_mm", a, b)


@int8_mm.register_fake
def _(a, b):
    return a.new_empty((a.shape[0], b.shape[0]), dtype=torch.int32)


@torch.library.custom_op("intcore::int4_mm", mutates_args=())
def int4_mm(a: Tensor, b: Tensor, k: int) -> Tensor:
    _no_kernel("int4_mm", a, b)


@int4_mm.register_fake
def _(a, b, k):
    return a.new_empty((a.shape[0], b.shape[0]), dtype=torch.int32)


@torch.library.custom_op("intcore::int16_mm", mutates_args=())
def int16_mm(a: Tensor, b: Tensor) -> Tensor:
    _no_kernel("int16_mm", a, b)


@int16_mm.register_fake
def _(a, b):
    return a.new_empty((a.shape[0], b.shape[0]), dtype=torch.int64)


# ---- linear layers on absmax-scaled integers (int8, int4) ----------------------------------


def _define_absmax_linear(name: str):
    """Defines intcore::<name>, <name>_grad_input and <name>_grad_weight."""

    @torch.library.custom_op(f"intcore::{name}", mutates_args=())
    def forward(x: Tensor, w: Tensor, bias: Optional[Tensor]) -> Tensor:
        _no_kernel(name, x, w, bias)

    @forward.register_fake
    def _(x, w, bias):
        return x.new_empty((x.shape[0], w.shape[0]))

    @torch.library.custom_op(f"intcore::{name}_grad_input", mutates_args=())
    def grad_input(grad: Tensor, w: Tensor, seed: Tensor) -> Tensor:
        _no_kernel(f"{name}_grad_input", grad, w)

    @grad_input.register_fake
    def _(grad, w, seed):
        return grad.new_empty((grad.shape[0], w.shape[1]))

    @torch.library.custom_op(f"intcore::{name}_grad_weight", mutates_args=())
    def grad_weight(grad: Tensor, x: Tensor, seed: Tensor) -> Tensor:
        _no_kernel(f"{name}_grad_weight", grad, x)

    @grad_weight.register_fake
    def _(grad, x, seed):
        return grad.new_empty((grad.shape[1], x.shape[1]))

    return forward, grad_input, grad_weight


int8_linear, int8_linear_grad_input, int8_linear_grad_weight = _define_absmax_linear("int8_linear")
int4_linear, int4_linear_grad_input, int4_linear_grad_weight = _define_absmax_linear("int4_linear")

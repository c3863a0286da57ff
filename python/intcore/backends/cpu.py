"""CPU kernels: allocate outputs with torch and let the C++ engine fill them.

The engine reads inputs of any float dtype and strides through DLPack and checks every argument
itself (raising TypeError/ValueError naming it), so these functions only allocate and convert.
Outputs of the float-facing ops are computed in float32 and returned in the input's dtype.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from intcore import _C
from intcore import _ops  # noqa: F401  (defines the schemas these kernels register against)


def _seed_value(seed: Tensor) -> int:
    if seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError(f"seed must be a one-element int64 tensor, got {seed.dtype} of shape {tuple(seed.shape)}")
    return int(seed.item()) & (2**64 - 1)


def _size(t: Tensor, dim: int) -> int:
    # Shapes of outputs for the engine to fill; a wrongly shaped input makes the engine raise
    # an error naming that input, which it checks before the outputs.
    return t.shape[dim] if t.dim() > dim else 0


def _detached(t: Optional[Tensor]) -> Optional[Tensor]:
    # DLPack refuses tensors that require grad; the engine never needs their graph.
    return None if t is None else t.detach()


@torch.library.register_kernel("intcore::quantize_fixed_point", "cpu")
def _(x, bits, rounding, per_row, seed):
    mantissa = torch.empty(x.shape, dtype=torch.int8 if bits <= 8 else torch.int16)
    exponent = torch.empty((_size(x, 0),) if per_row else (1,), dtype=torch.int32)
    _C.quantize_fixed_point(_detached(x), mantissa, exponent, bits, rounding, _seed_value(seed), 0)
    return mantissa, exponent


@torch.library.register_kernel("intcore::dequantize_fixed_point", "cpu")
def _(mantissa, exponent):
    out = torch.empty(mantissa.shape, dtype=torch.float32)
    _C.dequantize_fixed_point(mantissa, exponent, out)
    return out


@torch.library.register_kernel("intcore::quantize_absmax", "cpu")
def _(x, bits, rounding, per_row, seed):
    if bits == 4:
        q = torch.empty((_size(x, 0), (_size(x, 1) + 1) // 2), dtype=torch.uint8)
    else:
        q = torch.empty(x.shape, dtype=torch.int8)
    scale = torch.empty((_size(x, 0),) if per_row else (1,), dtype=torch.float32)
    _C.quantize_absmax(_detached(x), q, scale, bits, rounding, _seed_value(seed), 0)
    return q, scale


@torch.library.register_kernel("intcore::dequantize_absmax", "cpu")
def _(q, scale, bits, cols):
    out = torch.empty((_size(q, 0), cols), dtype=torch.float32)
    _C.dequantize_absmax(q, scale, bits, out)
    return out


def _mm(a: Tensor, b: Tensor, dtype: torch.dtype, int4_k: Optional[int] = None) -> Tensor:
    c = torch.empty((_size(a, 0), _size(b, 0)), dtype=dtype)
    _C.gemm_exact(a, b, c, int4_k)
    return c


@torch.library.register_kernel("intcore::int8_mm", "cpu")
def _(a, b):
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise TypeError(f"int8_mm: a and b must be int8, got {a.dtype} and {b.dtype}")
    return _mm(a, b, torch.int32)


@torch.library.register_kernel("intcore::int4_mm", "cpu")
def _(a, b, k):
    return _mm(a, b, torch.int32, int4_k=k)


@torch.library.register_kernel("intcore::int16_mm", "cpu")
def _(a, b):
    return _mm(a, b, torch.int64)


def _register_absmax_linear(name: str, bits: int) -> None:
    @torch.library.register_kernel(f"intcore::{name}", "cpu")
    def _(x, w, bias):
        out = torch.empty((_size(x, 0), _size(w, 0)), dtype=torch.float32)
        _C.absmax_linear_forward(_detached(x), _detached(w), _detached(bias), out, bits)
        return out.to(x.dtype)

    @torch.library.register_kernel(f"intcore::{name}_grad_input", "cpu")
    def _(grad, w, seed):
        dx = torch.empty((_size(grad, 0), _size(w, 1)), dtype=torch.float32)
        _C.absmax_linear_grad_input(_detached(grad), _detached(w), bits, _seed_value(seed), dx)
        return dx.to(grad.dtype)

    @torch.library.register_kernel(f"intcore::{name}_grad_weight", "cpu")
    def _(grad, x, seed):
        dw = torch.empty((_size(grad, 1), _size(x, 1)), dtype=torch.float32)
        _C.absmax_linear_grad_weight(_detached(grad), _detached(x), bits, _seed_value(seed), dw)
        return dw.to(grad.dtype)


_register_absmax_linear("int8_linear", 8)
_register_absmax_linear("int4_linear", 4)

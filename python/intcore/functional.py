"""The public functions of intcore: integer linear layers, quantizers and exact integer GEMMs.

All take ordinary torch tensors (any float dtype; any strides), check their arguments, and call
the ``intcore`` torch ops, which work with autograd and ``torch.compile``. Bad arguments raise
TypeError/ValueError naming the function and the argument (``_checks.public``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from intcore import _checks
from intcore._random import seed_tensor

ops = torch.ops.intcore


class FixedPoint(NamedTuple):
    """A dynamic fixed-point tensor: value = mantissa * 2**exponent.

    ``mantissa`` has the input's shape (int8 for bits <= 8, int16 above); ``exponent`` (int32)
    is the exponent of the least significant bit: 0-dim when shared by the whole tensor, or
    one per row (shape ``x.shape[:-1]``).
    """

    mantissa: Tensor
    exponent: Tensor


@_checks.public("quantize_fixed_point")
def quantize_fixed_point(
    x: Tensor, bits: int, rounding: str = "stochastic", *, per_row: bool = False, seed: Optional[int] = None
) -> FixedPoint:
    """Maps x to dynamic fixed point with ``bits``-bit signed mantissas (2..16).

    The exponent is chosen so the largest |x| (of the tensor, or of each row along the last
    dimension with ``per_row=True``) fits: |mantissa| <= 2**(bits-1) - 1. Stochastic rounding
    is unbiased; its random bits come from ``seed`` or, when None, from PyTorch's generator.
    Raises ValueError if x holds NaN or Inf.
    """
    _checks.check_float("x", x)
    _checks.check_bits(bits, range(2, 17))
    _checks.check_rounding(rounding)
    rows = _checks.as_rows(x)
    mantissa, exponent = ops.quantize_fixed_point(rows, bits, rounding, bool(per_row), seed_tensor(seed, x.device))
    exponent_shape = x.shape[:-1] if per_row and x.dim() > 0 else ()
    return FixedPoint(mantissa.reshape(x.shape), exponent.reshape(exponent_shape))


@_checks.public("dequantize_fixed_point")
def dequantize_fixed_point(mantissa: Tensor, exponent: Tensor) -> Tensor:
    """mantissa * 2**exponent as float32 (exact for mantissas of up to 24 bits)."""
    _checks.check_int("mantissa", mantissa, (torch.int8, torch.int16))
    _checks.check_int("exponent", exponent, (torch.int32,))
    _checks.check_same_device(mantissa=mantissa, exponent=exponent)
    rows = _checks.as_rows(mantissa)
    if exponent.numel() not in (1, rows.shape[0]):
        raise ValueError(
            f"exponent must have one element (per tensor) or one per row ({rows.shape[0]}), got shape "
            f"{tuple(exponent.shape)}"
        )
    out = ops.dequantize_fixed_point(rows.contiguous(), exponent.reshape(-1).contiguous())
    return out.reshape(mantissa.shape)


@_checks.public("quantize_absmax")
def quantize_absmax(
    x: Tensor, bits: int = 8, rounding: str = "nearest", *, per_row: bool = True, seed: Optional[int] = None
) -> tuple[Tensor, Tensor]:
    """Symmetric absmax quantization of a 2-D tensor to int8 or int4: x ~= q * scale.

    scale = max|x| / qmax (qmax 127 or 7) per row (default) or per tensor (shape [1]). int8
    codes are returned as int8 [rows, cols]; int4 codes packed two per byte as uint8
    [rows, ceil(cols / 2)], the low nibble holding the even column.
    """
    _checks.check_float("x", x)
    _checks.check_dim("x", x, 2)
    _checks.check_bits(bits, (4, 8))
    _checks.check_rounding(rounding)
    return ops.quantize_absmax(x, bits, rounding, bool(per_row), seed_tensor(seed, x.device))


@_checks.public("dequantize_absmax")
def dequantize_absmax(q: Tensor, scale: Tensor, bits: int = 8, cols: Optional[int] = None) -> Tensor:
    """q * scale as float32. For int4, ``cols`` is the unpacked width (default 2 * bytes)."""
    _checks.check_bits(bits, (4, 8))
    _checks.check_int("q", q, (torch.int8,) if bits == 8 else (torch.uint8,))
    _checks.check_dim("q", q, 2)
    _checks.check_int("scale", scale, (torch.float32,))
    _checks.check_same_device(q=q, scale=scale)
    if cols is None:
        cols = q.shape[1] if bits == 8 else 2 * q.shape[1]
    cols = _checks.check_count("cols", cols)
    if (cols if bits == 8 else (cols + 1) // 2) != q.shape[1]:
        raise ValueError(f"cols ({cols}) does not match q, which holds {q.shape[1]} {'codes' if bits == 8 else 'bytes'} "
                         f"per row")
    return ops.dequantize_absmax(q, scale.detach(), bits, cols)


@_checks.public("int8_mm")
def int8_mm(a: Tensor, b: Tensor) -> Tensor:
    """Exact ``a @ b.T`` of int8 matrices a [M, K], b [N, K] as int32 (K < 2**17)."""
    _checks.check_int("a", a, (torch.int8,))
    _checks.check_int("b", b, (torch.int8,))
    _checks.check_same_device(a=a, b=b)
    return ops.int8_mm(a, b)


@_checks.public("int4_mm")
def int4_mm(a: Tensor, b: Tensor, k: int) -> Tensor:
    """Exact ``a @ b.T`` of packed int4 matrices (uint8 [M, ceil(k/2)], [N, ceil(k/2)]) as int32."""
    _checks.check_int("a", a, (torch.uint8,))
    _checks.check_int("b", b, (torch.uint8,))
    k = _checks.check_count("k", k)
    _checks.check_same_device(a=a, b=b)
    return ops.int4_mm(a, b, k)


@_checks.public("int16_mm")
def int16_mm(a: Tensor, b: Tensor) -> Tensor:
    """Exact ``a @ b.T`` of int16 (or int8) matrices as int64, through 8-bit limb GEMMs."""
    _checks.check_int("a", a, (torch.int8, torch.int16))
    _checks.check_int("b", b, (torch.int8, torch.int16))
    _checks.check_same_device(a=a, b=b)
    return ops.int16_mm(a, b)


def _absmax_linear(op, x: Tensor, w: Tensor, bias: Optional[Tensor]) -> Tensor:
    _checks.check_linear_args(x, w, bias)
    y = op(_checks.as_rows(x), w, bias)
    return y.reshape(*x.shape[:-1], w.shape[0])


@_checks.public("int8_linear")
def int8_linear(x: Tensor, w: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``x @ w.T + bias`` through int8 tensor arithmetic, forward and backward.

    Forward: x and w quantized per row to int8 (absmax, round to nearest), one exact int8
    GEMM, scales and bias applied in float32. Backward: the output gradient is quantized per row
    with stochastic rounding and dx, dw come from int8 GEMMs too. x: [..., in_features] of any
    float dtype; w: [out_features, in_features]. Returns x's dtype.
    """
    return _absmax_linear(ops.int8_linear, x, w, bias)

"""Exact integer products as ops, and the absmax-scaled int8/int4 linear layers.

The linear layers compose the quantizer and the scaled GEMM exactly as the engine's
cpp/src/linear.cpp does: per-row absmax codes (nearest) of x and w in the forward; in the
backward the output gradient is rounded stochastically (stream offset 0 for dx, 1 for dw) and
the other operand is quantized along the reduction it enters (w^T for dx, x^T for dw).
"""

from __future__ import annotations

import torch
from torch import Tensor

from intcore.backends.portable import portable_kernel
from intcore.backends.portable.common import check_float_matrix, check_int_matrix, check_size, seed_value
from intcore.backends.portable.gemm import exact_mm, gemm_scaled
from intcore.backends.portable.quantize import absmax_codes, unpack_int4

_INT32_K_LIMIT = 1 << 17  # int8 products summed over K >= 2^17 can overflow int32


def _check_same_k(fn: str, a_k: int, b_k: int) -> None:
    if a_k != b_k:
        raise ValueError(f"{fn}: a and b must have the same K (reduction size), got {a_k} and {b_k}")


def _check_int32_k(fn: str, k: int) -> None:
    if k >= _INT32_K_LIMIT:
        raise ValueError(f"{fn}: K = {k} can overflow an int32 result; K must be below 131072")


@portable_kernel("int8_mm")
def _int8_mm(a, b):
    fn = "int8_mm"
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise TypeError(f"{fn}: a and b must be int8, got {a.dtype} and {b.dtype}")
    check_int_matrix(fn, "a", a, (torch.int8,))
    check_int_matrix(fn, "b", b, (torch.int8,))
    _check_same_k(fn, a.shape[1], b.shape[1])
    _check_int32_k(fn, a.shape[1])
    return exact_mm(a, b).to(torch.int32)


def check_int4_operands(a: Tensor, b: Tensor, k: int) -> None:
    """Packed int4 operands of K = k: uint8 matrices of ceil(k / 2) bytes per row, k below the
    int32 limit. The engine kernel runs these checks too, so both refuse in the same order."""
    fn = "int4_mm"
    for name, t in (("a", a), ("b", b)):
        check_int_matrix(fn, name, t, (torch.uint8,))
    check_size(fn, "k", k)
    for name, t in (("a", a), ("b", b)):
        if t.shape[1] != (k + 1) // 2:
            raise ValueError(
                f"{fn}: {name} holds packed int4 with K = {k}, so it needs {(k + 1) // 2} bytes per row, "
                f"got {tuple(t.shape)}"
            )
    _check_int32_k(fn, k)


@portable_kernel("int4_mm")
def _int4_mm(a, b, k):
    check_int4_operands(a, b, k)
    return exact_mm(unpack_int4(a, k), unpack_int4(b, k)).to(torch.int32)


@portable_kernel("int16_mm")
def _int16_mm(a, b):
    fn = "int16_mm"
    check_int_matrix(fn, "a", a, (torch.int8, torch.int16))
    check_int_matrix(fn, "b", b, (torch.int8, torch.int16))
    _check_same_k(fn, a.shape[1], b.shape[1])
    return exact_mm(a, b)


def _codes(t: Tensor, bits: int, rounding: str, seed: int, offset: int, name: str):
    """Per-row absmax codes of t as int8 values (int4 unpacked) and their scales; errors name
    t `name`, as the engine names the operand it quantizes."""
    q, scale = absmax_codes(t, bits, rounding, True, seed, offset, name)
    return (q if bits == 8 else unpack_int4(q, t.shape[1])), scale


def _check_operands(fn: str, a_name: str, a: Tensor, b_name: str, b: Tensor) -> None:
    check_float_matrix(fn, a_name, a)
    check_float_matrix(fn, b_name, b)


def _register_absmax_linear(name: str, bits: int) -> None:
    @portable_kernel(name)
    def _forward(x: Tensor, w: Tensor, bias):
        fn = "absmax_linear_forward"
        _check_operands(fn, "x", x, "w", w)
        if w.shape[1] != x.shape[1]:
            raise ValueError(f"{fn}: x has {x.shape[1]} features but w expects {w.shape[1]}")
        if bias is not None and bias.shape != (w.shape[0],):
            raise ValueError(f"{fn}: bias must have shape [{w.shape[0]}], got {tuple(bias.shape)}")
        qx, sx = _codes(x, bits, "nearest", 0, 0, "x")
        qw, sw = _codes(w, bits, "nearest", 0, 0, "w")
        bias32 = None if bias is None else bias.detach().to(torch.float32)
        return gemm_scaled(qx, sx, qw, sw, bias32).to(x.dtype)

    @portable_kernel(f"{name}_grad_input")
    def _grad_input(grad: Tensor, w: Tensor, seed: Tensor):
        fn = "absmax_linear_grad_input"
        _check_operands(fn, "grad", grad, "w", w)
        if grad.shape[1] != w.shape[0]:
            raise ValueError(f"{fn}: grad and w disagree on the number of output features")
        qg, sg = _codes(grad, bits, "stochastic", seed_value(seed), 0, "grad")
        qwt, swt = _codes(w.T, bits, "nearest", 0, 0, "w")
        return gemm_scaled(qg, sg, qwt, swt, None).to(grad.dtype)

    @portable_kernel(f"{name}_grad_weight")
    def _grad_weight(grad: Tensor, x: Tensor, seed: Tensor):
        fn = "absmax_linear_grad_weight"
        _check_operands(fn, "grad", grad, "x", x)
        if grad.shape[0] != x.shape[0]:
            raise ValueError(f"{fn}: grad and x disagree on the number of rows")
        qgt, sgt = _codes(grad.T, bits, "stochastic", seed_value(seed), 1, "grad")
        qxt, sxt = _codes(x.T, bits, "nearest", 0, 0, "x")
        return gemm_scaled(qgt, sgt, qxt, sxt, None).to(grad.dtype)


_register_absmax_linear("int8_linear", 8)
_register_absmax_linear("int4_linear", 4)

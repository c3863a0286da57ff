"""The kernels of the intcore ops: allocate outputs with torch and let the C++ engine fill them.

They are device-agnostic: outputs go on the inputs' device and the engine dispatches on it.
``cpu.py`` and ``cuda.py`` register them for their device (CUDA: the subset with CUDA kernels).
The engine reads inputs of any float dtype and strides through DLPack and checks every argument
itself (raising TypeError/ValueError naming it), so these functions only allocate and convert.
Outputs of the float-facing ops are computed in float32 and returned in the input's dtype.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from intcore import _C, _ops
from intcore.backends.portable.common import check_size, check_tensor_args
from intcore.backends.portable.int4_training import check_backward_args as check_hq_backward_args
from intcore.backends.portable.linear import check_int4_operands
from intcore.backends.portable.quantize import check_dequantize_absmax_args


KERNELS: dict = {}


def kernel(name: str):
    """Records fn as the engine kernel of op intcore::<name>. The recorded kernel refuses None
    where the schema says Tensor (as the portable kernels do) and hands fn its tensors detached:
    DLPack refuses tensors that require grad, and the engine never needs their graph."""

    def record(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            check_tensor_args(name, args, kwargs)
            args = tuple(a.detach() if isinstance(a, Tensor) else a for a in args)
            kwargs = {k: v.detach() if isinstance(v, Tensor) else v for k, v in kwargs.items()}
            return fn(*args, **kwargs)

        KERNELS[name] = run
        return fn

    return record


def _seed_value(seed: Tensor) -> int:
    if seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError(f"seed must be a one-element int64 tensor, got {seed.dtype} of shape {tuple(seed.shape)}")
    return int(seed.item()) & (2**64 - 1)


def _empty(like: Tensor, shape, dtype=torch.float32) -> Tensor:
    """An output on the device of the kernel's first tensor argument."""
    return torch.empty(shape, dtype=dtype, device=like.device)


def _size(t: Tensor, dim: int) -> int:
    # Shapes of outputs for the engine to fill; a wrongly shaped input makes the engine raise
    # an error naming that input, which it checks before the outputs.
    return t.shape[dim] if t.dim() > dim else 0


def _detached(t: Optional[Tensor]) -> Optional[Tensor]:
    # DLPack refuses tensors that require grad; the engine never needs their graph.
    return None if t is None else t.detach()


def _fixed_point_codes(x: Tensor, bits: int, rounding: str, per_row: bool, seed: int, offset: int):
    mantissa = _empty(x, x.shape, dtype=torch.int8 if bits <= 8 else torch.int16)
    exponent = _empty(x, (_size(x, 0),) if per_row else (1,), dtype=torch.int32)
    _C.quantize_fixed_point(x.detach(), mantissa, exponent, bits, rounding, seed, offset)
    return mantissa, exponent


@kernel("quantize_fixed_point")
def _quantize_fixed_point(x, bits, rounding, per_row, seed):
    return _fixed_point_codes(x, bits, rounding, per_row, _seed_value(seed), 0)


@kernel("dequantize_fixed_point")
def _dequantize_fixed_point(mantissa, exponent):
    mantissa, exponent = mantissa.contiguous(), exponent.contiguous()  # the portable kernel takes any strides
    out = _empty(mantissa, mantissa.shape, dtype=torch.float32)
    _C.dequantize_fixed_point(mantissa, exponent, out)
    return out


@kernel("quantize_absmax")
def _quantize_absmax(x, bits, rounding, per_row, seed):
    if bits == 4:
        q = _empty(x, (_size(x, 0), (_size(x, 1) + 1) // 2), dtype=torch.uint8)
    else:
        q = _empty(x, x.shape, dtype=torch.int8)
    scale = _empty(x, (_size(x, 0),) if per_row else (1,), dtype=torch.float32)
    _C.quantize_absmax(_detached(x), q, scale, bits, rounding, _seed_value(seed), 0)
    return q, scale


@kernel("dequantize_absmax")
def _dequantize_absmax(q, scale, bits, cols):
    check_dequantize_absmax_args(q, bits, cols)  # cols sizes the output: checked before it is allocated
    out = _empty(q, (_size(q, 0), cols), dtype=torch.float32)
    _C.dequantize_absmax(q, scale, bits, out)
    return out


def _mm(a: Tensor, b: Tensor, dtype: torch.dtype, int4_k: Optional[int] = None) -> Tensor:
    c = _empty(a, (_size(a, 0), _size(b, 0)), dtype=dtype)
    _C.gemm_exact(a, b, c, int4_k)
    return c


@kernel("int8_mm")
def _int8_mm(a, b):
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise TypeError(f"int8_mm: a and b must be int8, got {a.dtype} and {b.dtype}")
    return _mm(a, b, torch.int32)


@kernel("int4_mm")
def _int4_mm(a, b, k):
    check_int4_operands(a, b, k)
    return _mm(a, b, torch.int32, int4_k=k)


@kernel("int16_mm")
def _int16_mm(a, b):
    return _mm(a, b, torch.int64)


def _register_absmax_linear(name: str, bits: int) -> None:
    @kernel(name)
    def _forward(x, w, bias):
        out = _empty(x, (_size(x, 0), _size(w, 0)), dtype=torch.float32)
        bias32 = None if bias is None else bias.detach().float().contiguous()
        _C.absmax_linear_forward(_detached(x), _detached(w), bias32, out, bits)
        return out.to(x.dtype)

    @kernel(f"{name}_grad_input")
    def _grad_input(grad, w, seed):
        dx = _empty(grad, (_size(grad, 0), _size(w, 1)), dtype=torch.float32)
        _C.absmax_linear_grad_input(_detached(grad), _detached(w), bits, _seed_value(seed), dx)
        return dx.to(grad.dtype)

    @kernel(f"{name}_grad_weight")
    def _grad_weight(grad, x, seed):
        dw = _empty(grad, (_size(grad, 1), _size(x, 1)), dtype=torch.float32)
        _C.absmax_linear_grad_weight(_detached(grad), _detached(x), bits, _seed_value(seed), dw)
        return dw.to(grad.dtype)


_register_absmax_linear("int8_linear", 8)
_register_absmax_linear("int4_linear", 4)


# ---- dynamic fixed point ---------------------------------------------------------------------


def _check_need_grad(fn: str, need_grad: list) -> None:
    if len(need_grad) != 2:
        raise ValueError(f"{fn}: need_grad must list [dx, dw], got {need_grad}")


def _shared_exponent(mantissa: Tensor, exponent: Tensor):
    """Per-row codes moved onto one exponent, for GEMMs that reduce across those rows."""
    if exponent.numel() == 1:
        return mantissa, exponent
    # Contiguous copies where needed: the portable kernel takes any strides.
    mantissa, exponent = mantissa.contiguous(), exponent.contiguous()
    out, out_exponent = torch.empty_like(mantissa), _empty(mantissa, (1,), dtype=torch.int32)
    _C.align_fixed_point(mantissa, exponent, out, out_exponent)
    return out, out_exponent


@kernel("fixed_point_linear")
def _fixed_point_linear(x, w, bias, bits, rounding, per_row, seed):
    if len(bits) != 3:
        raise ValueError(f"fixed_point_linear: bits must list [activation, weight, grad] widths, got {bits}")
    qx, ex = _fixed_point_codes(x, bits[0], rounding, per_row, _seed_value(seed), 0)
    qw, ew = _fixed_point_codes(w, bits[1], "nearest", per_row, 0, 0)
    y = _empty(x, (_size(x, 0), _size(w, 0)), dtype=torch.float32)
    bias32 = None if bias is None else bias.detach().float().contiguous()
    _C.gemm_scaled(qx, ex, qw, ew, bias32, y)
    return y.to(x.dtype), qx, ex, qw, ew


@kernel("fixed_point_linear_backward")
def _fixed_point_linear_backward(grad, x_mantissa, x_exponent, w_mantissa, w_exponent, grad_bits, rounding, per_row, need_grad, seed):
    _check_need_grad("fixed_point_linear_backward", need_grad)
    grad, seed_value = grad.detach(), _seed_value(seed)
    dx = _empty(grad, (0,), dtype=torch.float32)
    dw = _empty(grad, (0,), dtype=torch.float32)
    if need_grad[0]:  # dx = G W: rows of G are rows of dx, so G may carry per-row exponents
        qg, eg = _fixed_point_codes(grad, grad_bits, rounding, per_row, seed_value, 0)
        qw, ew = _shared_exponent(w_mantissa, w_exponent)
        dx = _empty(grad, (_size(grad, 0), _size(qw, 1)), dtype=torch.float32)
        _C.gemm_scaled(qg, eg, qw.T, ew, None, dx)
    if need_grad[1]:  # dw = G^T X: reduces over tokens, so X needs one exponent
        if per_row or not need_grad[0]:
            qgt, egt = _fixed_point_codes(grad.T, grad_bits, rounding, per_row, seed_value, 1)
        else:  # one shared exponent: G^T is the transposed view of the same codes
            qgt, egt = qg.T, eg
        qx, ex = _shared_exponent(x_mantissa, x_exponent)
        dw = _empty(grad, (_size(grad, 1), _size(qx, 1)), dtype=torch.float32)
        _C.gemm_scaled(qgt, egt, qx.T, ex, None, dw)
    return dx, dw


def _norm_forward(fn, x, weight, bias, bits, eps, rounding, rsqrt, per_row, centered, seed):
    """The layer norm (centered) or RMSNorm forward, on the engine's one routine; errors name fn."""
    if not x.is_floating_point():
        raise TypeError(f"{fn}: x must be a floating-point tensor, got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{fn}: x must be 2-D, got shape {tuple(x.shape)}")
    y, xhat, xhat_e, x_e, rstd_m, rstd_e, gamma_m, gamma_e = _ops._layer_norm_outputs(x, per_row)
    y = _empty(x, y.shape, dtype=torch.float32)
    _C.fixed_point_layer_norm_forward(
        x.detach(), _detached(weight), _detached(bias), bits, eps, rounding, rsqrt, per_row, centered,
        _seed_value(seed), y, xhat, xhat_e, x_e, rstd_m, rstd_e, gamma_m, gamma_e,
    )
    return y.to(x.dtype), xhat, xhat_e, x_e, rstd_m, rstd_e, gamma_m, gamma_e


def _norm_backward(grad, saved, has_affine, centered, grad_bits, rounding, seed):
    """(dx, dgamma, dbeta) of either norm; an RMSNorm (not centered) computes no dbeta."""
    xhat = saved[0]
    n = _size(xhat, 1)
    dx = _empty(grad, xhat.shape, dtype=torch.float32)
    dgamma = _empty(grad, (n,) if has_affine else (0,), dtype=torch.float32)
    dbeta = _empty(grad, (n,) if has_affine and centered else (0,), dtype=torch.float32)
    _C.fixed_point_layer_norm_backward(
        grad.detach(), *saved, has_affine, centered, grad_bits, rounding, _seed_value(seed), dx,
        dgamma if has_affine else None, dbeta if has_affine and centered else None,
    )
    return dx, dgamma, dbeta


@kernel("fixed_point_layer_norm")
def _fixed_point_layer_norm(x, weight, bias, bits, grad_bits, eps, rounding, rsqrt, per_row, seed):
    return _norm_forward("fixed_point_layer_norm", x, weight, bias, bits, eps, rounding, rsqrt, per_row, True, seed)


@kernel("fixed_point_layer_norm_backward")
def _fixed_point_layer_norm_backward(grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa,
                                     gamma_exponent, has_affine, grad_bits, rounding, seed):
    saved = (xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa, gamma_exponent)
    return _norm_backward(grad, saved, has_affine, True, grad_bits, rounding, seed)


@kernel("fixed_point_rms_norm")
def _fixed_point_rms_norm(x, weight, bits, grad_bits, eps, rounding, rsqrt, per_row, seed):
    return _norm_forward("fixed_point_rms_norm", x, weight, None, bits, eps, rounding, rsqrt, per_row, False, seed)


@kernel("fixed_point_rms_norm_backward")
def _fixed_point_rms_norm_backward(grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa,
                                   gamma_exponent, has_weight, grad_bits, rounding, seed):
    saved = (xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa, gamma_exponent)
    dx, dgamma, _ = _norm_backward(grad, saved, has_weight, False, grad_bits, rounding, seed)
    return dx, dgamma


@kernel("fixed_point_embedding")
def _fixed_point_embedding(ids, weight, bits, grad_bits, rounding, padding_idx):
    out = _empty(ids, (_size(ids, 0), _size(weight, 1)), dtype=torch.float32)
    _C.fixed_point_embedding_forward(ids, weight.detach(), bits, out)
    return out.to(weight.dtype)


@kernel("fixed_point_embedding_backward")
def _fixed_point_embedding_backward(grad, ids, num_embeddings, grad_bits, rounding, padding_idx, seed):
    check_size("fixed_point_embedding_backward", "num_embeddings", num_embeddings)
    dweight = _empty(grad, (num_embeddings, _size(grad, 1)), dtype=torch.float32)
    _C.fixed_point_embedding_backward(ids, grad.detach(), grad_bits, rounding, _seed_value(seed), padding_idx, dweight)
    return dweight


# ---- INT4 training ---------------------------------------------------------------------------


@kernel("hadamard")
def _hadamard(x, block_size):
    out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.float32
    out = _empty(x, x.shape, dtype=out_dtype)
    _C.hadamard_transform(x.detach(), block_size, out)
    return out


@kernel("hq_linear")
def _hq_linear(x, w, bias, block_size, sampling, budget, x_step, w_step, per_row=False):
    k = _size(x, 1)
    y = _empty(x, (_size(x, 0), _size(w, 0)), dtype=torch.float32)
    x_codes = _empty(x, (_size(x, 0), (k + 1) // 2), dtype=torch.uint8)
    w_codes = _empty(x, (_size(w, 0), (k + 1) // 2), dtype=torch.uint8)
    x_scale = _empty(x, _size(x, 0) if per_row else 1)
    w_scale = _empty(x, _size(w, 0) if per_row else 1)
    _C.hq_linear_forward(x.detach(), w.detach(), _detached(bias), block_size, per_row, y, x_codes, x_scale, w_codes,
                         w_scale, _detached(x_step), _detached(w_step))
    return y.to(x.dtype), x_codes, x_scale, w_codes, w_scale


@kernel("hq_linear_backward")
def _hq_linear_backward(grad, x_codes, x_scale, w_codes, w_scale, k, block_size, sampling, budget, need_grad, seed,
                        per_row=False):
    check_size("hq_linear_backward", "k", k)
    _check_need_grad("hq_linear_backward", need_grad)
    grad, seed_value = grad.detach(), _seed_value(seed)
    # Checked before outputs of k columns are allocated (the engine checks the same again).
    check_hq_backward_args(grad, x_codes, x_scale, w_codes, w_scale, k, block_size, budget, need_grad, per_row)
    dx = _empty(grad, (_size(grad, 0), k) if need_grad[0] else (0,), dtype=torch.float32)
    dw = _empty(grad, (_size(grad, 1), k) if need_grad[1] else (0,), dtype=torch.float32)
    _C.hq_linear_backward(grad, x_codes, x_scale, w_codes, w_scale, k, block_size, per_row, sampling, budget,
                          seed_value, dx if need_grad[0] else None, dw if need_grad[1] else None)
    return dx, dw

"""Autograd formulas for the intcore ops (``torch.library.register_autograd``).

Linear layers: y = x w^T + b. The backward GEMMs are integer GEMMs too (see the ops'
``_grad_input`` / ``_grad_weight`` variants); the bias gradient is a float sum. A fresh seed is
drawn from PyTorch's generator at every backward, so successive steps round differently and
``torch.manual_seed`` reproduces them.
"""

from __future__ import annotations

import math

import torch

from intcore import _ops
from intcore._checks import errors_named
from intcore._random import draw_seed


def _register_linear_autograd(forward, grad_input, grad_weight, public: str) -> None:
    def setup_context(ctx, inputs, output):
        x, w, bias = inputs
        ctx.save_for_backward(x, w)
        ctx.bias_dtype = None if bias is None else bias.dtype

    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        seed = draw_seed(grad.device)
        dx = dw = db = None
        with errors_named(f"{public} backward", grad=grad):
            if ctx.needs_input_grad[0]:
                dx = grad_input(grad, w, seed).to(x.dtype)
            if ctx.needs_input_grad[1]:
                dw = grad_weight(grad, x, seed).to(w.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            db = grad.sum(0).to(ctx.bias_dtype)
        return dx, dw, db

    forward.register_autograd(backward, setup_context=setup_context)


_register_linear_autograd(_ops.int8_linear, _ops.int8_linear_grad_input, _ops.int8_linear_grad_weight, "int8_linear")
_register_linear_autograd(_ops.int4_linear, _ops.int4_linear_grad_input, _ops.int4_linear_grad_weight, "int4_linear")


def _fixed_point_linear_setup(ctx, inputs, output):
    x, w, bias, bits, rounding, per_row, seed = inputs
    _, qx, ex, qw, ew = output
    ctx.save_for_backward(qx, ex, qw, ew)
    ctx.grad_bits, ctx.rounding, ctx.per_row = bits[2], rounding, per_row
    ctx.x_dtype, ctx.w_dtype = x.dtype, w.dtype
    ctx.bias_dtype = None if bias is None else bias.dtype


def _fixed_point_linear_backward(ctx, grad, *_code_grads):
    qx, ex, qw, ew = ctx.saved_tensors
    need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
    dx = dw = db = None
    if any(need):
        with errors_named("fixed_point_linear backward", grad=grad):
            dx, dw = _ops.fixed_point_linear_backward(
                grad, qx, ex, qw, ew, ctx.grad_bits, ctx.rounding, ctx.per_row, need, draw_seed(grad.device)
            )
        dx = dx.to(ctx.x_dtype) if need[0] else None
        dw = dw.to(ctx.w_dtype) if need[1] else None
    if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
        db = grad.sum(0).to(ctx.bias_dtype)
    return dx, dw, db, None, None, None, None


_ops.fixed_point_linear.register_autograd(_fixed_point_linear_backward, setup_context=_fixed_point_linear_setup)


def _fixed_point_layer_norm_setup(ctx, inputs, output):
    x, weight, bias, bits, grad_bits, eps, rounding, rsqrt, per_row, seed = inputs
    ctx.save_for_backward(*output[1:])
    ctx.has_affine = weight is not None
    ctx.grad_bits, ctx.rounding = grad_bits, rounding
    ctx.dtypes = (x.dtype, None if weight is None else weight.dtype, None if bias is None else bias.dtype)


def _fixed_point_layer_norm_backward(ctx, grad, *_saved_grads):
    with errors_named("fixed_point_layer_norm backward", grad=grad):
        dx, dgamma, dbeta = _ops.fixed_point_layer_norm_backward(
            grad, *ctx.saved_tensors, ctx.has_affine, ctx.grad_bits, ctx.rounding, draw_seed(grad.device)
        )
    x_dtype, w_dtype, b_dtype = ctx.dtypes
    dgamma = dgamma.to(w_dtype) if w_dtype is not None and ctx.needs_input_grad[1] else None
    dbeta = dbeta.to(b_dtype) if b_dtype is not None and ctx.needs_input_grad[2] else None
    return dx.to(x_dtype), dgamma, dbeta, None, None, None, None, None, None, None


_ops.fixed_point_layer_norm.register_autograd(
    _fixed_point_layer_norm_backward, setup_context=_fixed_point_layer_norm_setup
)


def _fixed_point_rms_norm_setup(ctx, inputs, output):
    x, weight, bits, grad_bits, eps, rounding, rsqrt, per_row, seed = inputs
    ctx.save_for_backward(*output[1:])
    ctx.has_weight = weight is not None
    ctx.grad_bits, ctx.rounding = grad_bits, rounding
    ctx.dtypes = (x.dtype, None if weight is None else weight.dtype)


def _fixed_point_rms_norm_backward(ctx, grad, *_saved_grads):
    with errors_named("fixed_point_rms_norm backward", grad=grad):
        dx, dgamma = _ops.fixed_point_rms_norm_backward(
            grad, *ctx.saved_tensors, ctx.has_weight, ctx.grad_bits, ctx.rounding, draw_seed(grad.device)
        )
    x_dtype, w_dtype = ctx.dtypes
    dgamma = dgamma.to(w_dtype) if w_dtype is not None and ctx.needs_input_grad[1] else None
    return dx.to(x_dtype), dgamma, None, None, None, None, None, None, None


_ops.fixed_point_rms_norm.register_autograd(_fixed_point_rms_norm_backward, setup_context=_fixed_point_rms_norm_setup)


def _fixed_point_embedding_setup(ctx, inputs, output):
    ids, weight, bits, grad_bits, rounding, padding_idx = inputs
    ctx.save_for_backward(ids)
    ctx.num_embeddings, ctx.weight_dtype = weight.shape[0], weight.dtype
    ctx.grad_bits, ctx.rounding, ctx.padding_idx = grad_bits, rounding, padding_idx


def _fixed_point_embedding_backward(ctx, grad):
    (ids,) = ctx.saved_tensors
    dweight = None
    if ctx.needs_input_grad[1]:
        with errors_named("fixed_point_embedding backward", grad=grad):
            dweight = _ops.fixed_point_embedding_backward(
                grad, ids, ctx.num_embeddings, ctx.grad_bits, ctx.rounding, ctx.padding_idx, draw_seed(grad.device)
            ).to(ctx.weight_dtype)
    return None, dweight, None, None, None, None


_ops.fixed_point_embedding.register_autograd(
    _fixed_point_embedding_backward, setup_context=_fixed_point_embedding_setup
)


def _hadamard_backward(ctx, grad):
    # H / sqrt(g) is symmetric and orthonormal: the transform is its own adjoint.
    with errors_named("hadamard backward", grad=grad):
        return _ops.hadamard(grad, ctx.block_size).to(ctx.dtype), None


def _hadamard_setup(ctx, inputs, output):
    x, block_size = inputs
    ctx.block_size, ctx.dtype = block_size, x.dtype


_ops.hadamard.register_autograd(_hadamard_backward, setup_context=_hadamard_setup)


_INT4_MAX = 7


def _hq_linear_setup(ctx, inputs, output):
    x, w, bias, block_size, sampling, budget, x_step, w_step, per_row = inputs
    _, x_codes, x_scale, w_codes, w_scale = output
    ctx.lsq, ctx.per_row = x_step is not None, per_row
    # LSQ needs the operands themselves: its step gradient and clipping mask depend on x H / s.
    extra = (x, w, x_step, w_step) if ctx.lsq else ()
    ctx.save_for_backward(x_codes, x_scale, w_codes, w_scale, *extra)
    ctx.k, ctx.block_size, ctx.sampling, ctx.budget = x.shape[1], block_size, sampling, budget
    ctx.x_dtype, ctx.w_dtype = x.dtype, w.dtype
    ctx.bias_dtype = None if bias is None else bias.dtype


def _lsq(operand_grad_h, operand, step, block_size):
    """LSQ (Esser et al., 2020) for per-tensor int4 codes of v = operand H / step: the gradient
    passed to the operand (zero where v was clipped) and the step's gradient, with LSQ's
    1 / sqrt(numel * 7) scaling."""
    v = _ops.hadamard(operand.detach().float(), block_size) / step
    inside = (v >= -_INT4_MAX) & (v <= _INT4_MAX)
    d_step_elem = torch.where(inside, torch.round(v) - v, torch.sign(v) * _INT4_MAX)
    scale = 1.0 / math.sqrt(max(operand.numel(), 1) * _INT4_MAX)  # no values (0 rows): d_step is 0
    d_step = (operand_grad_h * d_step_elem).sum().reshape(1) * scale
    return _ops.hadamard(operand_grad_h * inside, block_size), d_step


def _hq_linear_backward(ctx, grad, *_code_grads):
    x_codes, x_scale, w_codes, w_scale, *extra = ctx.saved_tensors
    need = [ctx.needs_input_grad[0] or ctx.lsq, ctx.needs_input_grad[1] or ctx.lsq]
    dx = dw = db = dx_step = dw_step = None
    if any(need):
        with errors_named("int4_linear backward", grad=grad):
            dx, dw = _ops.hq_linear_backward(grad, x_codes, x_scale, w_codes, w_scale, ctx.k, ctx.block_size,
                                             ctx.sampling, ctx.budget, need, draw_seed(grad.device), ctx.per_row)
            if ctx.lsq:
                x, w, x_step, w_step = extra
                # dx, dw are (dL/d(x H)) H; H is its own inverse, so H brings back dL/d(x H).
                dx, dx_step = _lsq(_ops.hadamard(dx, ctx.block_size), x, x_step, ctx.block_size)
                dw, dw_step = _lsq(_ops.hadamard(dw, ctx.block_size), w, w_step, ctx.block_size)
        dx = dx.to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
        dw = dw.to(ctx.w_dtype) if ctx.needs_input_grad[1] else None
    if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
        db = grad.sum(0).to(ctx.bias_dtype)
    return dx, dw, db, None, None, None, dx_step, dw_step, None


_ops.hq_linear.register_autograd(_hq_linear_backward, setup_context=_hq_linear_setup)

"""Autograd formulas for the intcore ops (``torch.library.register_autograd``).

Linear layers: y = x w^T + b. The backward GEMMs are integer GEMMs too (see the ops'
``_grad_input`` / ``_grad_weight`` variants); the bias gradient is a float sum. A fresh seed is
drawn from PyTorch's generator at every backward, so successive steps round differently and
``torch.manual_seed`` reproduces them.
"""

from __future__ import annotations

import torch

from intcore import _ops
from intcore._random import draw_seed


def _register_linear_autograd(forward, grad_input, grad_weight) -> None:
    def setup_context(ctx, inputs, output):
        x, w, bias = inputs
        ctx.save_for_backward(x, w)
        ctx.bias_dtype = None if bias is None else bias.dtype

    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        seed = draw_seed(grad.device)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = grad_input(grad, w, seed).to(x.dtype)
        if ctx.needs_input_grad[1]:
            dw = grad_weight(grad, x, seed).to(w.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            db = grad.sum(0).to(ctx.bias_dtype)
        return dx, dw, db

    forward.register_autograd(backward, setup_context=setup_context)


_register_linear_autograd(_ops.int8_linear, _ops.int8_linear_grad_input, _ops.int8_linear_grad_weight)
_register_linear_autograd(_ops.int4_linear, _ops.int4_linear_grad_input, _ops.int4_linear_grad_weight)

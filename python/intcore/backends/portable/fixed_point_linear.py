"""The dynamic fixed-point linear layer, forward and backward, composed like the engine's
kernels: fixed-point codes of x (stochastic, stream offset 0) and w (nearest), one scaled GEMM
whose epilogue applies the power-of-two exponents and the bias. Backward: dx = G W with G
quantized per row when per_row (rows of G are rows of dx); dw = G^T X reduces over tokens, so X
(and W for dx) must share one exponent: per-row codes are aligned first.
"""

from __future__ import annotations

import torch

from intcore.backends.portable import portable_kernel
from intcore.backends.portable.common import seed_value
from intcore.backends.portable.gemm import gemm_scaled
from intcore.backends.portable.quantize import align_fixed_point, fixed_point_codes


def _shared_exponent(mantissa, exponent):
    """Per-row codes moved onto one exponent, for GEMMs that reduce across those rows."""
    if exponent.numel() == 1:
        return mantissa, exponent
    return align_fixed_point(mantissa, exponent)


@portable_kernel("fixed_point_linear")
def _fixed_point_linear(x, w, bias, bits, rounding, per_row, seed):
    fn = "fixed_point_linear"
    if len(bits) != 3:
        raise ValueError(f"{fn}: bits must list [activation, weight, grad] widths, got {bits}")
    qx, ex = fixed_point_codes(x, bits[0], rounding, per_row, seed_value(seed), 0)
    qw, ew = fixed_point_codes(w, bits[1], "nearest", per_row, 0, 0)
    if qw.shape[1] != qx.shape[1]:
        raise ValueError(f"gemm_scaled: x and w must have the same K (reduction size), got {qx.shape[1]} and {qw.shape[1]}")
    bias32 = None if bias is None else bias.detach().to(torch.float32)
    y = gemm_scaled(qx, ex, qw, ew, bias32)
    return y.to(x.dtype), qx, ex, qw, ew


@portable_kernel("fixed_point_linear_backward")
def _fixed_point_linear_backward(
    grad, x_mantissa, x_exponent, w_mantissa, w_exponent, grad_bits, rounding, per_row, need_grad, seed
):
    if len(need_grad) != 2:
        raise ValueError(f"fixed_point_linear_backward: need_grad must list [dx, dw], got {need_grad}")
    grad, seed_v = grad.detach(), seed_value(seed)
    # Two tensors: a custom op's outputs may not alias each other.
    dx, dw = grad.new_empty((0,), dtype=torch.float32), grad.new_empty((0,), dtype=torch.float32)
    if need_grad[0]:
        qg, eg = fixed_point_codes(grad, grad_bits, rounding, per_row, seed_v, 0)
        qw, ew = _shared_exponent(w_mantissa, w_exponent)
        dx = gemm_scaled(qg, eg, qw.T, ew, None)
    if need_grad[1]:
        if per_row or not need_grad[0]:
            qgt, egt = fixed_point_codes(grad.T, grad_bits, rounding, per_row, seed_v, 1)
        else:  # one shared exponent: G^T is the transposed view of the same codes
            qgt, egt = qg.T, eg
        qx, ex = _shared_exponent(x_mantissa, x_exponent)
        dw = gemm_scaled(qgt, egt, qx.T, ex, None)
    return dx, dw

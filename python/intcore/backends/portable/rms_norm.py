"""The fixed-point RMSNorm, forward and backward, as the engine computes it: the layer norm's
pipeline (``layer_norm.py``, cpp/src/layer_norm.cpp) with no mean subtracted (S1 taken as 0:
D = N S2 + eps_q, xhat = N q r = x / rms), no bias, and a backward without the mean-of-G term
(dx = r (N G - xhat sum(G xhat))). The bounds of layer_norm.py hold unchanged: N q is below the
N q - S1 bound there, and the backward's terms are a subset of the layer norm's."""

from __future__ import annotations

from intcore.backends.portable import layer_norm, portable_kernel


@portable_kernel("fixed_point_rms_norm")
def _fixed_point_rms_norm(x, weight, bits, grad_bits, eps, rounding, rsqrt, per_row, seed):
    return layer_norm.forward("fixed_point_rms_norm", x, weight, None, bits, eps, rounding, rsqrt, per_row, False, seed)


@portable_kernel("fixed_point_rms_norm_backward")
def _fixed_point_rms_norm_backward(
    grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa, gamma_exponent,
    has_weight, grad_bits, rounding, seed,
):
    dx, dgamma, _ = layer_norm.backward(
        "fixed_point_rms_norm_backward", grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent,
        gamma_mantissa, gamma_exponent, has_weight, False, grad_bits, rounding, seed,
    )
    return dx, dgamma

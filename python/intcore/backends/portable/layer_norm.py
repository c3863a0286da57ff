"""The fixed-point layer norm, forward and backward, as the engine computes it
(cpp/src/layer_norm.cpp), with every per-row quantity a [rows] tensor.

Bounds, for N <= 65536 features (the engine refuses wider rows) and mantissas |q| < 2^15:
  S1 = sum q: |S1| < 2^31; S2 = sum q^2 < 2^46; N S2 and S1^2 < 2^62, so their difference V
  (the variance times N^2, >= 0) is exact in int64.
  D = V + eps_q with eps_q (eps in input steps, refused above 1e30 < 2^100) is up to ~2^100:
  two int64 limbs (wide_int).
  rsqrt: D scaled into u in [2^60, 2^62); Newton's products u y^2 (y^2 <= 2^60) and
  y (3 2^60 - u y^2 / 2^60) reach ~2^122 and ~2^92: limb products.
  xhat: N q - S1 is below N 2^16 <= 2^32 and the rstd mantissa m <= 2^30, so (N q - S1) m
  < 2^62 fits int64; only its rounding shift (up to 88 bits) goes through the wide shift_round.
  Backward: prod = dy_q gamma_q < 2^30, sum(prod xhat_q) < N 2^45 <= 2^61; xhat_q times that
  (< 2^76) is a limb product; the correction after its shift and every dx numerator t stay
  far inside int64 (|xhat| <= sqrt(N) and Cauchy-Schwarz give |correction| <= N^1.5 2^30).
Float arithmetic repeats the engine's float64 operations in its order; powers of two come from
their bit patterns (common.pow2), and 2^k scalings stand for ldexp, which they equal exactly.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from intcore.backends.portable import portable_kernel, wide_int
from intcore.backends.portable.common import check_float_matrix, check_scale_shape, pow2, seed_value
from intcore.backends.portable.philox import random_words
from intcore.backends.portable.quantize import fixed_point_codes

# Rows wider than this are refused (by the engine too): the int64 bounds above need N <= 2^16.
MAX_FEATURES = 65536
# Newton's iteration: y ~ 1/sqrt(u) in Q30 for u = U / 2^60 in [1, 4).
_NEWTON_STEPS = 6
_THREE_Q60 = 3 << 60
# eps in input steps above this (~2^99.7) is refused: D stays below 2^101.
_MAX_EPS_STEPS = 1e30
# Stand-in for the engine's INT32_MIN "no bit set" of rows whose xhat is all zero.
_NO_TOP = -(1 << 31)
# The saved xhat exponents the backward accepts (the engine's too): the forward writes -15..9
# (|xhat| <= sqrt(N)); beyond these the correction xhat sum(G xhat) 2^(2e) or its shift -2e
# leaves the engine's 128-bit arithmetic.
_MIN_XHAT_EXPONENT, _MAX_XHAT_EXPONENT = -62, 25


def _check_choice(fn: str, name: str, value: str, choices: tuple) -> None:
    """The bindings' check of a mode string, named after the binding (fn)."""
    if value not in choices:
        raise ValueError(f"{fn}: {name} must be {' or '.join(repr(c) for c in choices)}, got {value!r}")


def _check_bits(fn: str, name: str, bits: int) -> None:
    if not 2 <= bits <= 16:
        raise ValueError(f"{fn}: {name} must be in 2..16, got {bits}")


def _check_features(fn: str, name: str, n: int) -> None:
    if n > MAX_FEATURES:
        raise ValueError(f"{fn}: {name} has {n} features; at most {MAX_FEATURES} are supported")


def _check_vector(fn: str, name: str, v: Optional[Tensor], n: int) -> None:
    if v is None:
        return
    if not v.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor, got {v.dtype}")
    if v.shape != (n,):
        raise ValueError(f"{fn}: {name} must have shape [{n}], got {list(v.shape)}")


def _check_saved(fn: str, name: str, t: Tensor, dtype: torch.dtype, shape: tuple) -> None:
    """A tensor the forward saved: its dtype, shape and (as the engine reads it) contiguity."""
    if t.dtype != dtype:
        raise TypeError(f"{fn}: {name} must be {dtype}, got {t.dtype}")
    if t.shape != shape:
        raise ValueError(f"{fn}: {name} must have shape {list(shape)}, got {list(t.shape)}")


def _vector_codes(v: Tensor, name: str, bits: int):
    """Mantissas (int64 [N]) and exponent ([1]) of gamma or beta: per tensor, nearest."""
    mantissa, exponent = fixed_point_codes(v.detach()[None, :], bits, "nearest", False, 0, 0, name=name)
    return mantissa[0].to(torch.int64), exponent


def _llround(v: Tensor) -> Tensor:
    """Round half away from zero, for v >= 0 (v - floor v is exact)."""
    floor = torch.floor(v)
    return (floor + (v - floor >= 0.5).to(torch.float64)).to(torch.int64)


def rsqrt_fixed(d: wide_int.Wide, rsqrt: str):
    """1/sqrt(d) for d > 0 as m 2^e, m in (2^29, 2^30]: the engine's rsqrt_fixed per element."""
    k = (wide_int.wide_bit_length(d) - 1) // 2  # d = u 4^k, u in [1, 4)
    shift = 60 - 2 * k
    u = torch.where(
        shift >= 0, wide_int.to_int64(d) << shift.clamp(min=0), wide_int.floor_shift(d, (-shift).clamp(min=0))
    )
    if rsqrt == "integer":
        y = (1 << 30) - (u >> 33)  # within 12.5% of 1/sqrt(u) in Q30, inside Newton's basin
        for _ in range(_NEWTON_STEPS):
            uy2 = wide_int.floor_shift(wide_int.multiply(u, y * y), 60)
            y = wide_int.floor_shift(wide_int.multiply(y, _THREE_Q60 - uy2), 61)
    else:
        y = _llround(1.0 / torch.sqrt(u.to(torch.float64) * 2.0**-60) * 2.0**30)
    return y, -k - 30


@portable_kernel("fixed_point_layer_norm")
def _fixed_point_layer_norm(x, weight, bias, bits, grad_bits, eps, rounding, rsqrt, per_row, seed):
    return forward("fixed_point_layer_norm", x, weight, bias, bits, eps, rounding, rsqrt, per_row, True, seed)


def forward(fn, x, weight, bias, bits, eps, rounding, rsqrt, per_row, centered, seed):
    """The layer norm (centered) or RMSNorm (not centered: S1 taken as 0, no bias) forward;
    errors name fn, the op."""
    check_float_matrix(fn, "x", x)
    rows, n = x.shape
    seed_v = seed_value(seed)
    _check_choice("fixed_point_layer_norm_forward", "rounding", rounding, ("nearest", "stochastic"))
    _check_choice("fixed_point_layer_norm_forward", "rsqrt", rsqrt, ("integer", "float"))
    check_float_matrix(fn, "x", x)
    _check_bits(fn, "bits", bits)
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"{fn}: eps must be finite and >= 0")
    _check_features(fn, "x", n)
    _check_vector(fn, "weight", weight, n)
    _check_vector(fn, "bias", bias, n)

    q, x_exponent = fixed_point_codes(x.detach(), bits, rounding, per_row and rows > 1, seed_v, 0)
    eps_steps = (eps * float(n) * float(n)) * pow2(-2 * x_exponent)  # eps N^2 in input steps squared
    if bool((eps_steps > _MAX_EPS_STEPS).any()):
        raise ValueError(f"{fn}: eps is too large for the input's range")

    # Pass 1: per-row statistics and the reciprocal square root.
    q = q.to(torch.int64)
    s1 = q.sum(1) if centered else q.new_zeros(rows)  # RMSNorm: D = N S2 + eps_q, xhat = N q r
    variance_n2 = n * (q * q).sum(1) - s1 * s1
    eps_q = wide_int.from_integral_double(torch.round(eps_steps).expand(rows))
    d = wide_int.add(wide_int.from_int64(variance_n2), eps_q)
    positive = (d.hi != 0) | (d.lo != 0)  # D = 0: a constant row with eps = 0, whose xhat is 0
    one = torch.ones_like(d.lo)
    m, e = rsqrt_fixed(wide_int.Wide(torch.where(positive, d.hi, 0), torch.where(positive, d.lo, one)), rsqrt)
    m, e = torch.where(positive, m, 0), torch.where(positive, e, 0)

    numerator = n * q - s1[:, None]  # xhat = numerator r
    # max |xhat| in units of 2^e (m >= 0); no features (n = 0): no xhat at all
    top = m * numerator.abs().amax(1) if n else torch.zeros_like(m)
    row_top = torch.where(top != 0, wide_int.bit_length(top) + e, _NO_TOP)
    e_max = row_top.amax() if rows else torch.tensor(_NO_TOP, device=x.device)
    e_xhat = torch.where(e_max == _NO_TOP, 0, e_max) - (bits - 1)  # |xhat| < 2^e_max

    # Pass 2: xhat mapped to `bits` bits (stream offset 1), then y = gamma xhat + beta.
    words = random_words(seed_v, 1, 0, rows * n, x.device).reshape(rows, n) if rounding == "stochastic" else None
    qmax = (1 << (bits - 1)) - 1
    shift = (e_xhat - e)[:, None]
    xhat = wide_int.shift_round(wide_int.from_int64(numerator * m[:, None]), shift, rounding, words).clamp(-qmax, qmax)

    gamma_exponent = torch.zeros(1, dtype=torch.int32, device=x.device)
    if weight is not None:
        gamma, gamma_exponent = _vector_codes(weight, "weight", bits)
        value = (xhat * gamma).to(torch.float64) * pow2(e_xhat + gamma_exponent)
    else:
        gamma = torch.zeros(n, dtype=torch.int64, device=x.device)
        value = xhat.to(torch.float64) * pow2(e_xhat)
    if bias is not None:
        beta, beta_exponent = _vector_codes(bias, "bias", bits)
        value = value + beta.to(torch.float64) * pow2(beta_exponent)
    return (
        value.to(torch.float32).to(x.dtype),
        xhat.to(torch.int16),
        e_xhat.reshape(1).to(torch.int32),
        x_exponent,
        m,
        e.to(torch.int32),
        gamma.to(torch.int16),
        gamma_exponent,
    )


@portable_kernel("fixed_point_layer_norm_backward")
def _fixed_point_layer_norm_backward(
    grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa, gamma_exponent,
    has_affine, grad_bits, rounding, seed,
):
    return backward(
        "fixed_point_layer_norm_backward", grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent,
        gamma_mantissa, gamma_exponent, has_affine, True, grad_bits, rounding, seed,
    )


def backward(
    fn, grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa, gamma_exponent,
    has_affine, centered, grad_bits, rounding, seed,
):
    """dx, dgamma and dbeta of the layer norm (centered) or RMSNorm (not centered: no sum G
    term; dbeta is computed but an RMSNorm's op drops it); errors name fn, the op."""
    seed_v = seed_value(seed)
    _check_choice(fn, "rounding", rounding, ("nearest", "stochastic"))
    check_float_matrix(fn, "grad", grad)
    _check_bits(fn, "grad_bits", grad_bits)
    rows, n = grad.shape
    _check_features(fn, "grad", n)
    _check_saved(fn, "xhat", xhat, torch.int16, (rows, n))
    if not xhat.is_contiguous():
        raise ValueError(f"{fn}: xhat must be contiguous")
    _check_saved(fn, "xhat_exponent", xhat_exponent, torch.int32, (1,))
    _check_saved(fn, "gamma_exponent", gamma_exponent, torch.int32, (1,))
    if x_exponent.dtype != torch.int32:
        raise TypeError(f"{fn}: x_exponent must be {torch.int32}, got {x_exponent.dtype}")
    check_scale_shape(fn, "x_exponent", x_exponent, rows)
    _check_saved(fn, "rstd_mantissa", rstd_mantissa, torch.int64, (rows,))
    _check_saved(fn, "rstd_exponent", rstd_exponent, torch.int32, (rows,))
    _check_saved(fn, "gamma_mantissa", gamma_mantissa, torch.int16, (n,))
    for name, t in (("xhat_exponent", xhat_exponent), ("x_exponent", x_exponent), ("rstd_mantissa", rstd_mantissa),
                    ("rstd_exponent", rstd_exponent), ("gamma_mantissa", gamma_mantissa),
                    ("gamma_exponent", gamma_exponent)):
        if not t.is_contiguous():
            raise ValueError(f"{fn}: {name} must be contiguous")
    e_xhat = int(xhat_exponent.item())
    if not _MIN_XHAT_EXPONENT <= e_xhat <= _MAX_XHAT_EXPONENT:
        raise ValueError(f"{fn}: xhat_exponent must be in [{_MIN_XHAT_EXPONENT}, {_MAX_XHAT_EXPONENT}], got {e_xhat}")

    grad = grad.detach()
    g, g_exponent = fixed_point_codes(grad, grad_bits, rounding, False, seed_v, 0, name="grad")
    g = g.to(torch.int64)
    x = xhat.to(torch.int64)
    prod = g * gamma_mantissa.to(torch.int64) if has_affine else g  # G = dy_q gamma_q
    e_g = g_exponent + (gamma_exponent if has_affine else 0)
    sum_g = prod.sum(1, keepdim=True) if centered else 0  # RMSNorm: no mean-of-G term
    sum_gx = (prod * x).sum(1, keepdim=True)
    # xhat_q sum(G xhat_q) 2^(2 e_xhat), rounded to an integer.
    correction = wide_int.shift_round(wide_int.multiply(x, sum_gx), -2 * xhat_exponent, "nearest", None)
    t = n * prod - sum_g - correction
    e_x = x_exponent if x_exponent.shape[0] > 1 else x_exponent.expand(rows)
    row_step = pow2(rstd_exponent - e_x + e_g)[:, None]
    dx = (t.to(torch.float64) * rstd_mantissa.to(torch.float64)[:, None] * row_step).to(torch.float32)

    if not has_affine:
        none = grad.new_empty((0,), dtype=torch.float32)
        return dx, none, none.clone()
    dgamma = ((g * x).sum(0).to(torch.float64) * pow2(g_exponent + xhat_exponent)).to(torch.float32)
    dbeta = (g.sum(0).to(torch.float64) * pow2(g_exponent)).to(torch.float32)
    return dx, dgamma, dbeta

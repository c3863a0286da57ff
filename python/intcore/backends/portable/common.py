"""Arithmetic the portable kernels share with the engine: seeds, exact powers of two, rounding
to integer codes, and the non-finite check."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from intcore._checks import check_tensor_args, with_tensor_args_checked  # noqa: F401  (re-exported)


def seed_value(seed: Tensor) -> int:
    """The op's seed tensor as the engine's 64-bit Philox key."""
    if seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError(f"seed must be a one-element int64 tensor, got {seed.dtype} of shape {tuple(seed.shape)}")
    return int(seed.item()) & (2**64 - 1)


def pow2(e: Tensor) -> Tensor:
    """2^e as float64, exactly, for any integer e (0 below 2^-1074, inf above 2^1023), built from
    bit patterns as the engine's pow2 does: exp2 is not guaranteed exact on every device."""
    e = e.to(torch.int64)
    normal = ((e.clamp(-1022, 1023) + 1023) << 52).view(torch.float64)
    subnormal = (torch.ones_like(e) << (e.clamp(-1074, -1023) + 1074)).view(torch.float64)
    small = torch.where(e >= -1074, subnormal, torch.zeros_like(subnormal))
    return torch.where(e > 1023, torch.full_like(normal, math.inf), torch.where(e >= -1022, normal, small))


# The exponent the CUDA fixed-point quantizer writes for a row (or tensor) holding NaN or Inf (it
# cannot raise without a host synchronization); every backend reads it as a NaN step.
NAN_EXPONENT = -(2**31)


def exponent_step(e: Tensor) -> Tensor:
    """The float64 step 2^e of fixed-point codes with exponents e: NaN for NAN_EXPONENT."""
    return torch.where(e == NAN_EXPONENT, math.nan, pow2(e))


def round_codes(v: Tensor, rounding: str, qmax: int, words: Optional[Tensor]) -> Tensor:
    """v (float64, in units of the quantization step) rounded to integers in [-qmax, qmax].

    nearest: half to even (the engine's nearbyint). stochastic: up from floor(v) when the top 24
    bits of the word, as an integer, are below (v - floor v) * 2^24; exact in float64, so every
    backend takes the same decision.
    """
    if rounding == "nearest":
        rounded = torch.round(v)
    else:
        floor = torch.floor(v)
        up = (words >> 8).to(torch.float64) < (v - floor) * 16777216.0
        rounded = floor + up.to(torch.float64)
    return rounded.clamp(-qmax, qmax).to(torch.int64)


def check_finite(fn: str, name: str, x: Tensor) -> None:
    """Raises ValueError naming x when it holds NaN or Inf (x already float32)."""
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{fn}: {name} contains NaN or Inf")


def check_float_matrix(fn: str, name: str, t: Tensor) -> None:
    """The engine's checks of a float operand: a floating dtype, then two dimensions."""
    if not t.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor, got {t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"{fn}: {name} must be 2-D, got shape {tuple(t.shape)}")


def check_int_matrix(fn: str, name: str, t: Tensor, dtypes: tuple) -> None:
    if t.dtype not in dtypes:
        raise TypeError(f"{fn}: {name} must be {' or '.join(str(d) for d in dtypes)}, got {t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"{fn}: {name} must be 2-D, got shape {tuple(t.shape)}")


def check_scale_vector(fn: str, name: str, t: Tensor, dtype: torch.dtype, rows: int) -> None:
    if t.dtype != dtype:
        raise TypeError(f"{fn}: {name} must be {dtype}, got {t.dtype}")
    check_scale_shape(fn, name, t, rows)


def check_scale_shape(fn: str, name: str, t: Tensor, rows: int) -> None:
    """A vector of scales or exponents: shape [1] (one for the whole tensor) or [rows] (one a row)."""
    if t.dim() != 1 or t.shape[0] not in (1, rows):
        raise ValueError(f"{fn}: {name} must have shape [1] (per tensor) or [{rows}] (per row), got {list(t.shape)}")


def as_float32(x: Tensor) -> Tensor:
    """x as the engine reads it: every element converted to float32 (float64 rounds to nearest),
    laid out row-major so that the codes derived from it are contiguous like the engine's."""
    return x.detach().to(torch.float32).contiguous()


def check_size(fn: str, name: str, value: int) -> None:
    """A size argument (a column count, K, a vocabulary size) must be >= 0; checked before any
    output is allocated with it, by the engine kernels and the portable ones alike."""
    if value < 0:
        raise ValueError(f"{fn}: {name} must be >= 0, got {value}")

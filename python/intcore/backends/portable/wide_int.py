"""Integers wider than int64 in two int64 limbs: what the portable layer norm uses where the
engine computes in __int128.

A wide value is hi * 2^62 + lo with 0 <= lo < 2^62 and hi a signed int64, so every value in
(-2^125, 2^125) has one representation, and sums and products of limbs stay inside int64 under
the bounds each function states. Only the few operations the layer norm needs are here; each
works elementwise on tensors of any shape (shifts may be tensors that broadcast).
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch import Tensor

LIMB_BITS = 62
_LOW = (1 << LIMB_BITS) - 1
_HALF_BITS = 31
_HALF = (1 << _HALF_BITS) - 1
_FRACTION_BITS = 24  # the engine's stochastic rule compares 24 bits of the dropped fraction
_MAX_ENGINE_SHIFT = 120  # shift_round clamps larger shifts (|v| < 2^127 rounds the same)

Shift = Union[int, Tensor]


class Wide(NamedTuple):
    hi: Tensor  # signed int64
    lo: Tensor  # int64 in [0, 2^62)


def from_int64(v: Tensor) -> Wide:
    return Wide(v >> LIMB_BITS, v & _LOW)


def from_integral_double(d: Tensor) -> Wide:
    """d: float64 holding integers in [0, 2^124). Exact: hi * 2^62 is exact, and the remainder
    d - hi * 2^62 (< 2^62) keeps a subset of d's 53 significand bits, so it is a double too."""
    hi = torch.floor(d * 2.0**-LIMB_BITS)
    return Wide(hi.to(torch.int64), (d - hi * 2.0**LIMB_BITS).to(torch.int64))


def to_int64(w: Wide) -> Tensor:
    """The value, for a w known to fit in int64 (the shifted hi limb wraps into place)."""
    return (w.hi << LIMB_BITS) + w.lo


def add(a: Wide, b: Wide) -> Wide:
    low = a.lo + b.lo  # < 2^63
    return Wide(a.hi + b.hi + (low >> LIMB_BITS), low & _LOW)


def negate(w: Wide) -> Wide:
    borrow = (w.lo != 0).to(torch.int64)
    return Wide(-w.hi - borrow, (-w.lo) & _LOW)


def multiply(a: Tensor, b: Tensor) -> Wide:
    """a * b exactly, for int64 |a|, |b| < 2^62 (so each has 31-bit halves a1 a0, b1 b0).

    |a| |b| = a1 b1 2^62 + (a1 b0 + a0 b1) 2^31 + a0 b0: every partial product is below 2^62 and
    the middle sum below 2^63; the middle's low 31 bits shifted up plus a0 b0 stay below 2^63.
    """
    negative = (a < 0) != (b < 0)
    a, b = a.abs(), b.abs()
    a1, a0 = a >> _HALF_BITS, a & _HALF
    b1, b0 = b >> _HALF_BITS, b & _HALF
    middle = a1 * b0 + a0 * b1
    low = ((middle & _HALF) << _HALF_BITS) + a0 * b0
    magnitude = Wide(a1 * b1 + (middle >> _HALF_BITS) + (low >> LIMB_BITS), low & _LOW)
    product = negate(magnitude)
    return Wide(torch.where(negative, product.hi, magnitude.hi), torch.where(negative, product.lo, magnitude.lo))


def _as_tensor(t: Shift, like: Tensor) -> Tensor:
    """t as int64: masks 1 << t built from a narrower t would wrap at its width."""
    return t.to(torch.int64) if isinstance(t, Tensor) else torch.tensor(t, dtype=torch.int64, device=like.device)


def floor_shift(w: Wide, t: Shift) -> Tensor:
    """floor(w / 2^t) for 0 <= t < 126, for a result known to fit in int64."""
    t = _as_tensor(t, w.lo)
    from_both = (w.hi << (LIMB_BITS - t).clamp(0, LIMB_BITS)) + (w.lo >> t.clamp(0, LIMB_BITS))
    from_hi = w.hi >> (t - LIMB_BITS).clamp(0, 63)
    return torch.where(t <= LIMB_BITS, from_both, from_hi)


def low_bits_nonzero(w: Wide, t: Shift) -> Tensor:
    """Whether w mod 2^t != 0 (any of the t lowest bits set), for 0 <= t < 126."""
    t = _as_tensor(t, w.lo)
    in_lo = (w.lo & ((1 << t.clamp(0, LIMB_BITS)) - 1)) != 0
    in_both = (w.lo != 0) | ((w.hi & ((1 << (t - LIMB_BITS).clamp(0, LIMB_BITS)) - 1)) != 0)
    return torch.where(t <= LIMB_BITS, in_lo, in_both)


def bit_length(v: Tensor) -> Tensor:
    """Bits of int64 v >= 0 (0 for 0), by halving the search range: six shifts, no floats."""
    length = torch.zeros_like(v)
    for step in (32, 16, 8, 4, 2, 1):
        above = (v >> step) != 0
        v = torch.where(above, v >> step, v)
        length = length + above.to(torch.int64) * step
    return length + (v != 0).to(torch.int64)


def wide_bit_length(w: Wide) -> Tensor:
    """Bits of w >= 0."""
    return torch.where(w.hi > 0, LIMB_BITS + bit_length(w.hi), bit_length(w.lo))


def shift_round(w: Wide, shift: Shift, rounding: str, words) -> Tensor:
    """The engine's shift_round: round(w / 2^shift) as int64 (w * 2^-shift for shift <= 0),
    for a result known to fit in int64.

    nearest: half to even, read from q = floor(w / 2^(shift-1)): its low bit says the dropped
    fraction is >= 1/2, and any lower bit set makes it > 1/2.
    stochastic: up when the top 24 bits of the word are below the dropped fraction times 2^24.
    With f24 the fraction's first 24 bits as an integer, that is word24 < f24 + (any lower
    bit set), exactly the engine's uint128 comparison while word24 << shift fits in 128 bits
    (shift <= 104; the layer norm's shifts stay below 90). Shifts under 24 have no lower bits:
    f24 is the whole fraction moved up.
    """
    shift = _as_tensor(shift, w.lo)
    scaled_up = to_int64(w) << (-shift).clamp(0, 63)
    s = shift.clamp(1, _MAX_ENGINE_SHIFT)
    floor_v = floor_shift(w, s)
    if rounding == "nearest":
        q = floor_shift(w, s - 1)
        up = ((q & 1) != 0) & (low_bits_nonzero(w, s - 1) | ((floor_v & 1) != 0))
    else:
        wide_fraction = s >= _FRACTION_BITS
        below = (s - _FRACTION_BITS).clamp(min=0)
        f24_long = (floor_shift(w, below) & ((1 << _FRACTION_BITS) - 1)) + low_bits_nonzero(w, below).to(torch.int64)
        f24_short = (w.lo & ((1 << s.clamp(max=_FRACTION_BITS - 1)) - 1)) << (_FRACTION_BITS - s).clamp(min=0)
        up = (words >> 8) < torch.where(wide_fraction, f24_long, f24_short)
    return torch.where(shift <= 0, scaled_up, floor_v + up.to(torch.int64))

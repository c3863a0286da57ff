"""Philox4x32-10 in torch integer ops: the same words as the engine's RandomStream.

Words are uint32 values held in int64 tensors. The 32 x 32 -> 64-bit products of the rounds
are split into 16-bit halves of the multiplier so that every intermediate stays below 2^50:
no signed overflow, whatever the device's int64 multiply does on overflow.
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASK = 0xFFFFFFFF
_MUL0, _MUL1 = 0xD2511F53, 0xCD9E8D57
_WEYL0, _WEYL1 = 0x9E3779B9, 0xBB67AE85


def _mulhilo(a: Tensor, multiplier: int) -> tuple[Tensor, Tensor]:
    """High and low 32-bit words of a * multiplier (a: uint32 values in int64)."""
    p_lo = a * (multiplier & 0xFFFF)  # < 2^48
    p_hi = a * (multiplier >> 16)  # < 2^48; the product is p_lo + p_hi 2^16
    low = p_lo + ((p_hi & 0xFFFF) << 16)  # < 2^49
    return (p_hi >> 16) + (low >> 32), low & _MASK


def philox4x32_10(c0: Tensor, c1: Tensor, c2: Tensor, c3: Tensor, key0: int, key1: int):
    """Ten Philox rounds on counters (c0, c1, c2, c3) with a 64-bit key given as two words."""
    for _ in range(10):
        hi0, lo0 = _mulhilo(c0, _MUL0)
        hi1, lo1 = _mulhilo(c2, _MUL1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ key0, lo1, hi0 ^ c3 ^ key1, lo0
        key0 = (key0 + _WEYL0) & _MASK
        key1 = (key1 + _WEYL1) & _MASK
    return c0, c1, c2, c3


def random_words(seed: int, offset: int, first: int, count: int, device) -> Tensor:
    """Words first .. first + count - 1 of the stream (seed, offset), as int64 [count].

    Word i is word (i mod 4) of the block at counter (i / 4 as two words, offset as two words).
    """
    if count <= 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    first_block, last_block = first >> 2, (first + count - 1) >> 2
    block = torch.arange(first_block, last_block + 1, dtype=torch.int64, device=device)
    c0 = block & _MASK
    c1 = block >> 32
    c2 = torch.full_like(block, offset & _MASK)
    c3 = torch.full_like(block, (offset >> 32) & _MASK)
    words = torch.stack(philox4x32_10(c0, c1, c2, c3, seed & _MASK, (seed >> 32) & _MASK), dim=1).reshape(-1)
    skip = first & 3
    return words[skip : skip + count]

"""Activations in llama.cpp's 8-bit blocks: the form its CPU dot products give the activations
before multiplying them by Q4_0 / Q4_1 weights (Q8_0 and Q8_1 in ggml-common.h).

Along a row, every 32 values share one scale (ggml's reference quantizer, quantize_row_q8_0_ref):

    d = amax / 127,   q = roundf(x / d)  (half away from zero; q = 0 where amax = 0),
    d is stored in fp16; Q8_1 adds s = fp16(d * sum q), the block's sum for the Q4_1 min term.

Computed as gguf-py's Q8_0 quantizer computes it, so the codes and fp16 scales agree with it bit
for bit (tested). Scales above fp16's range (|x| > 127 * 65504) become inf, as they do in llama.cpp.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

BLOCK = 32


class Q8Blocks(NamedTuple):
    codes: torch.Tensor   # int8 [..., blocks, 32]
    scales: torch.Tensor  # float32 [..., blocks]: d as stored (rounded to fp16)
    sums: torch.Tensor    # float32 [..., blocks]: s = fp16(d * sum q), Q8_1's block sum


def _roundf(v: torch.Tensor) -> torch.Tensor:
    """C's roundf (ties away from zero), written so that it cannot round up at 0.49999997 as
    floor(|v| + 0.5) does in float32."""
    a = v.abs()
    whole = a.floor()
    return torch.copysign(whole + (2 * (a - whole)).floor(), v)


def quantize_q8_blocks(x: torch.Tensor) -> Q8Blocks:
    """float [..., K] (K a multiple of 32) -> its Q8 blocks along the last dimension."""
    if x.shape[-1] % BLOCK:
        raise ValueError(f"quantize_q8_blocks: the last dimension must be a multiple of {BLOCK}, got {x.shape[-1]}")
    blocks = x.float().reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK)
    d = blocks.abs().amax(-1) / 127
    inverse = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    codes = _roundf(blocks * inverse[..., None])
    sums = (d * codes.sum(-1)).half().float()
    return Q8Blocks(codes.to(torch.int8), d.half().float(), sums)

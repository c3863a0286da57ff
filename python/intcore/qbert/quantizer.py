"""Q-BERT's group-wise asymmetric uniform quantizer, and how its codes are stored.

A matrix is split by output rows into groups; group g has the range [lo_g, hi_g] of its values
(min/max, or the 0.1/99.9 percentiles with ``percentile``), the step d_g = (hi_g - lo_g) /
(2^k - 1) and codes q = round((clamp(w, lo, hi) - lo) / d) in [0, 2^k - 1], so that
w ~ lo_g + d_g q. Training sees the dequantized values with a straight-through gradient.

Storage: 8-bit codes one per byte, 3- and 4-bit codes two per byte (int4 storage), 2-bit
codes four per byte; per group a float32 step and offset (lo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

ALLOWED_BITS = (2, 3, 4, 5, 6, 7, 8)


def check_bits(fn: str, bits) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in ALLOWED_BITS:
        raise ValueError(f"{fn}: bits must be one of {list(ALLOWED_BITS)}, got {bits!r}")


def rows_per_group(rows: int, groups: int) -> int:
    """Rows in each group when a matrix of `rows` rows is split into `groups` groups (the last
    group may be smaller when groups does not divide rows)."""
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    return -(-rows // min(groups, max(rows, 1)))


def group_ranges(w: Tensor, group_rows: int, percentile: Optional[float]) -> tuple[Tensor, Tensor]:
    """(lo, hi) per group of `group_rows` consecutive rows of a 2-D tensor."""
    rows = w.shape[0]
    pad = (-rows) % group_rows
    flat = w.detach().float()
    if pad:  # repeat the last row: it does not change the last group's range
        flat = torch.cat([flat, flat[-1:].expand(pad, -1)])
    flat = flat.reshape(-1, group_rows * w.shape[1])
    if percentile is None:
        return flat.amin(dim=1), flat.amax(dim=1)
    q = torch.tensor([percentile / 100, 1 - percentile / 100])
    lo, hi = torch.quantile(flat, q, dim=1)
    return lo, hi


@dataclass
class GroupCodes:
    """Integer codes [rows, cols] in [0, 2^bits - 1] (uint8), with float32 step and lo per group."""

    codes: Tensor
    step: Tensor
    lo: Tensor
    bits: int
    group_rows: int

    def row_step(self) -> Tensor:
        return self.step.repeat_interleave(self.group_rows)[: self.codes.shape[0]]

    def row_lo(self) -> Tensor:
        return self.lo.repeat_interleave(self.group_rows)[: self.codes.shape[0]]

    def dequantize(self) -> Tensor:
        return self.row_lo()[:, None] + self.row_step()[:, None] * self.codes.float()


def quantize_groups(w: Tensor, bits: int, groups: int, percentile: Optional[float] = None) -> GroupCodes:
    """Codes of a 2-D float tensor in `groups` groups of output rows."""
    check_bits("quantize_groups", bits)
    if w.dim() != 2:
        raise ValueError(f"quantize_groups: w must be 2-D, got shape {tuple(w.shape)}")
    g = rows_per_group(w.shape[0], groups)
    lo, hi = group_ranges(w, g, percentile)
    levels = 2**bits - 1
    # A constant group has hi == lo: any positive step represents it exactly with code 0.
    step = torch.where(hi > lo, (hi - lo) / levels, torch.ones_like(lo))
    row_lo, row_step = lo.repeat_interleave(g)[: w.shape[0], None], step.repeat_interleave(g)[: w.shape[0], None]
    clamped = torch.minimum(torch.maximum(w.detach().float(), row_lo), row_lo + row_step * levels)
    codes = torch.round((clamped - row_lo) / row_step).clamp(0, levels).to(torch.uint8)
    return GroupCodes(codes, step, lo, bits, g)


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, bits, groups, percentile):
        return quantize_groups(w, bits, groups, percentile).dequantize().to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None


def fake_quantize(w: Tensor, bits: int, groups: int, percentile: Optional[float] = None) -> Tensor:
    """The dequantized codes of w, with the gradient passed straight through to w."""
    return _StraightThrough.apply(w, bits, groups, percentile)


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """uint8 codes [rows, cols] packed: 8 bits one per byte, 3-4 bits two per byte, 2 bits four
    per byte (lowest bits first)."""
    per_byte = 1 if bits > 4 else (2 if bits > 2 else 4)
    if per_byte == 1:
        return codes.contiguous()
    rows, cols = codes.shape
    width = 8 // per_byte
    padded = torch.nn.functional.pad(codes.to(torch.int32), (0, (-cols) % per_byte))
    parts = padded.reshape(rows, -1, per_byte)
    packed = sum(parts[:, :, i] << (width * i) for i in range(per_byte))
    return packed.to(torch.uint8)


def unpack_codes(packed: Tensor, bits: int, cols: int) -> Tensor:
    """The inverse of pack_codes."""
    per_byte = 1 if bits > 4 else (2 if bits > 2 else 4)
    if per_byte == 1:
        return packed
    width = 8 // per_byte
    wide = packed.to(torch.int32)
    parts = [(wide >> (width * i)) & ((1 << width) - 1) for i in range(per_byte)]
    return torch.stack(parts, dim=2).reshape(packed.shape[0], per_byte * packed.shape[1])[:, :cols].to(torch.uint8)


def storage_bytes(rows: int, cols: int, bits: int, groups_count: int) -> int:
    """Bytes of packed codes plus a float32 step and offset per group."""
    per_byte = 1 if bits > 4 else (2 if bits > 2 else 4)
    return rows * -(-cols // per_byte) + 8 * groups_count

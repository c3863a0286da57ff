"""Exact integer products and the scaled epilogue, on torch._int_mm.

``exact_mm(a, b)`` is a @ b.T of int8/int16 matrices, exact in int64. int8 operands go straight
to ``torch._int_mm`` (int32 accumulation, exact for K chunks below 2^17; we cut K into chunks of
2^16 and add the chunks in int64). An int16 operand is split into 8-bit limbs like the engine
does: a = 256 hi + lo with hi = a >> 8 (signed) and lo = a & 255, stored as lo - 128 so that it
fits int8; the constant 128 comes back through row sums (see ``_offset_terms``).

``gemm_scaled`` applies the engine's epilogue to the exact product: per element
float32(double(acc) * double(row scale) * double(col scale)), then + bias in float32.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from intcore.backends.portable.common import check_finite, check_scale_shape, exponent_step

_K_CHUNK = 1 << 16  # 2^16 * 128 * 128 = 2^30: a chunk's int32 accumulation never overflows


def _padded(t: Tensor, rows: int, cols: int) -> Tensor:
    return torch.nn.functional.pad(t, (0, cols - t.shape[1], 0, rows - t.shape[0]))


def _round_up(v: int, to: int) -> int:
    return (v + to - 1) // to * to


def _int8_mm(a: Tensor, b: Tensor) -> Tensor:
    """a @ b.T of int8 matrices as int64, exactly."""
    m, k = a.shape
    n = b.shape[0]
    out = torch.zeros(m, n, dtype=torch.int64, device=a.device)
    if m == 0 or n == 0 or k == 0:
        return out
    for k0 in range(0, k, _K_CHUNK):
        a_chunk, b_chunk = a[:, k0 : k0 + _K_CHUNK], b[:, k0 : k0 + _K_CHUNK]
        if a.device.type == "cpu":
            # Fresh row-major copies: torch 2.13's CPU _int_mm reads a [1, n] operand with
            # strides (1, 1) (what a transposed [n, 1] view is, and what .contiguous() keeps)
            # wrongly.
            row_major = torch.contiguous_format
            part = torch._int_mm(a_chunk.clone(memory_format=row_major), b_chunk.T.clone(memory_format=row_major))
        else:
            # CUDA's _int_mm wants M > 16 and K, N multiples of 8: zero padding adds nothing.
            kc = a_chunk.shape[1]
            mp, kp, np_ = max(_round_up(m, 8), 32), max(_round_up(kc, 8), 16), _round_up(n, 8)
            part = torch._int_mm(_padded(a_chunk, mp, kp), _padded(b_chunk, np_, kp).T)[:m, :n]
        out += part
    return out


def _limbs(t: Tensor) -> tuple[list[tuple[Tensor, int]], int]:
    """t as sum(weight * limb) + offset, every limb int8."""
    if t.dtype == torch.int8:
        return [(t, 1)], 0
    if t.dtype != torch.int16:
        raise TypeError(f"gemm: operands must be int8 or int16, got {t.dtype}")
    wide = t.to(torch.int32)
    high = (wide >> 8).to(torch.int8)
    low = ((wide & 255) - 128).to(torch.int8)
    return [(high, 256), (low, 1)], 128


def exact_mm(a: Tensor, b: Tensor) -> Tensor:
    """a @ b.T for int8/int16 a [m, k], b [n, k] (any strides), exact in int64."""
    limbs_a, offset_a = _limbs(a)
    limbs_b, offset_b = _limbs(b)
    acc = torch.zeros(a.shape[0], b.shape[0], dtype=torch.int64, device=a.device)
    for limb_a, weight_a in limbs_a:
        for limb_b, weight_b in limbs_b:
            acc += (weight_a * weight_b) * _int8_mm(limb_a, limb_b)
    if offset_a or offset_b:
        # With a = a' + ca and b = b' + cb (a', b' the limb sums above):
        # a b^T = a' b'^T + cb rowsum(a') + ca rowsum(b') + ca cb K, rowsum(a') = rowsum(a) - ca K.
        k = a.shape[1]
        sum_a = a.to(torch.int64).sum(dim=1) - offset_a * k
        sum_b = b.to(torch.int64).sum(dim=1) - offset_b * k
        acc += offset_b * sum_a[:, None] + offset_a * sum_b[None, :] + offset_a * offset_b * k
    return acc


def scale_vector(s: Tensor, rows: int) -> Tensor:
    """A float32 scale or int32 exponent vector ([1] or [rows]) as float64 multipliers [rows]."""
    per_row = s.shape[0] == rows and rows != 1
    s = s if per_row else s[:1].expand(rows)
    return exponent_step(s) if s.dtype == torch.int32 else s.to(torch.float64)


def _check_scales(name: str, s: Tensor, rows: int) -> None:
    """The engine's check of a scale vector: contiguous, [1] or [rows], float32 or int32."""
    if not s.is_contiguous():
        raise ValueError(f"gemm_scaled: {name} must be contiguous")
    check_scale_shape("gemm_scaled", name, s, rows)
    if s.dtype not in (torch.float32, torch.int32):
        raise TypeError(f"gemm_scaled: {name} must be float32 (scales) or int32 (exponents), got {s.dtype}")


def gemm_scaled(a: Tensor, a_scale: Tensor, b: Tensor, b_scale: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """float32 (a @ b.T) * row scales * column scales (+ bias), as the engine's epilogue rounds it.
    A bias holding NaN or Inf is refused, as the engine refuses it."""
    for name, t in (("a", a), ("b", b)):
        if t.dtype not in (torch.int8, torch.int16):
            raise TypeError(f"gemm_scaled: {name} must be int8 or int16 (or packed int4), got {t.dtype}")
        if t.dim() != 2:
            raise ValueError(f"gemm_scaled: {name} must be 2-D, got shape {list(t.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"gemm_scaled: a and b must have the same K (reduction size), got {a.shape[1]} and {b.shape[1]}")
    m, n = a.shape[0], b.shape[0]
    _check_scales("a_scale", a_scale, m)
    _check_scales("b_scale", b_scale, n)
    if bias is not None:
        if bias.dtype != torch.float32:
            raise TypeError(f"gemm_scaled: bias must be float32, got {bias.dtype}")
        if bias.shape != (n,):
            raise ValueError(f"gemm_scaled: bias must have shape [{n}], got {list(bias.shape)}")
        check_finite("gemm_scaled", "bias", bias)
    acc = exact_mm(a, b).to(torch.float64)
    out = (acc * scale_vector(a_scale, m)[:, None] * scale_vector(b_scale, n)[None, :]).to(torch.float32)
    return out if bias is None else out + bias

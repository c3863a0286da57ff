"""The quantizers: dynamic fixed point (mantissa * 2^exponent) and scaled integers (absmax or
given scales, int8 or packed int4), their inverses, int4 packing and exponent alignment.

Same rules as the engine's cpp/src/quantize.cpp: inputs are read as float32; the fixed-point
exponent comes from frexp of the absmax; values are scaled in float64 (fixed point) or divided
in float32 (scaled integers) and rounded by ``round_codes``; the random word of element (r, c)
of the 2-D view is word r * cols + c of the stream (seed, offset).
"""

from __future__ import annotations

import torch
from torch import Tensor

from intcore.backends.portable import portable_kernel
from intcore.backends.portable.common import (
    as_float32,
    check_finite,
    check_float_matrix,
    check_int_matrix,
    check_scale_vector,
    check_size,
    exponent_step,
    NAN_EXPONENT,
    pow2,
    round_codes,
    seed_value,
)
from intcore.backends.portable.philox import random_words


def row_absmax(fn: str, name: str, x32: Tensor) -> Tensor:
    """Per-row max |x| of a float32 [rows, cols] tensor (0 for empty rows); raises on NaN/Inf."""
    check_finite(fn, name, x32)
    if x32.shape[1] == 0:
        return x32.new_zeros(x32.shape[0])
    return x32.abs().amax(dim=1)


def _shared_absmax(absmax: Tensor, per_row: bool) -> Tensor:
    """The absmax each row is quantized with: its own (per row) or the tensor's."""
    if per_row and absmax.shape[0] != 1:
        return absmax
    whole = absmax.max() if absmax.numel() else absmax.new_zeros(())
    return whole.expand(absmax.shape[0])


def _words(x32: Tensor, rounding: str, seed: int, offset: int):
    if rounding != "stochastic":
        return None
    rows, cols = x32.shape
    return random_words(seed, offset, 0, rows * cols, x32.device).reshape(rows, cols)


def _check_rounding(fn: str, rounding: str) -> None:
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"{fn}: rounding must be 'nearest' or 'stochastic', got {rounding!r}")


def fixed_point_codes(x: Tensor, bits: int, rounding: str, per_row: bool, seed: int, offset: int, name: str = "x"):
    """x as `bits`-bit mantissas and int32 exponents ([rows] per row, else [1]); errors name
    the input `name`, as the engine names the tensor it quantizes."""
    fn = "quantize_fixed_point"
    _check_rounding(fn, rounding)  # first, as the engine's binding parses it
    check_float_matrix(fn, name, x)
    if not 2 <= bits <= 16:
        raise ValueError(f"{fn}: bits must be in 2..16, got {bits}")
    x32 = as_float32(x)
    rows = x32.shape[0]
    absmax = _shared_absmax(row_absmax(fn, name, x32), per_row)
    # |x| < 2^e (frexp: x = f 2^e, 0.5 <= f < 1); the LSB then weighs 2^(e - bits + 1).
    exponent_of_row = torch.frexp(absmax).exponent - (bits - 1)
    if per_row:
        exponent = exponent_of_row.to(torch.int32)
    else:
        whole = absmax[:1] if rows else x32.new_zeros(1)
        exponent = (torch.frexp(whole).exponent - (bits - 1)).to(torch.int32)
    v = x32.to(torch.float64) * pow2(-exponent_of_row)[:, None]
    codes = round_codes(v, rounding, (1 << (bits - 1)) - 1, _words(x32, rounding, seed, offset))
    return codes.to(torch.int8 if bits <= 8 else torch.int16), exponent


def pack_int4(codes: Tensor) -> Tensor:
    """[rows, k] values in [-8, 7] as [rows, (k + 1) / 2] bytes, low nibble = even column."""
    rows, k = codes.shape
    nibbles = (codes.to(torch.int64) & 0xF)
    if k % 2:
        nibbles = torch.cat([nibbles, nibbles.new_zeros(rows, 1)], dim=1)
    pairs = nibbles.reshape(rows, (k + 1) // 2, 2)
    return (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).to(torch.uint8)


def unpack_int4(packed: Tensor, k: int) -> Tensor:
    """The int8 values [rows, k] of packed int4 codes (sign-extended nibbles)."""
    b = packed.to(torch.int64)
    nibbles = torch.stack([b & 0xF, (b >> 4) & 0xF], dim=2).reshape(packed.shape[0], 2 * packed.shape[1])[:, :k]
    return ((nibbles ^ 8) - 8).to(torch.int8)


def _scaled_codes(fn: str, x32: Tensor, scale_of_row: Tensor, bits: int, rounding: str, seed: int, offset: int):
    """Codes of x in units of scale_of_row (a zero scale means a zero row: zero codes)."""
    s = scale_of_row[:, None]
    v = torch.where(s > 0, x32 / torch.where(s > 0, s, 1.0), 0.0).to(torch.float64)
    codes = round_codes(v, rounding, 127 if bits == 8 else 7, _words(x32, rounding, seed, offset))
    return codes.to(torch.int8) if bits == 8 else pack_int4(codes)


def _check_scaled_bits(fn: str, bits: int) -> None:
    if bits not in (8, 4):
        raise ValueError(f"{fn}: bits must be 8 or 4, got {bits}")


def absmax_codes(x: Tensor, bits: int, rounding: str, per_row: bool, seed: int, offset: int, name: str = "x"):
    """Symmetric absmax codes of x (int8, or int4 packed two per byte) and float32 scales
    absmax / qmax ([rows] per row, else [1]); errors name x `name`."""
    fn = "quantize_absmax"
    _check_rounding(fn, rounding)  # first, as the engine's binding parses it
    check_float_matrix(fn, name, x)
    _check_scaled_bits(fn, bits)
    x32 = as_float32(x)
    rows = x32.shape[0]
    # A tensor divisor: dividing by a Python scalar becomes a reciprocal multiply on CUDA,
    # which rounds differently from the engine's division.
    qmax = torch.tensor(127.0 if bits == 8 else 7.0, device=x32.device)
    scale_of_row = _shared_absmax(row_absmax(fn, name, x32), per_row) / qmax
    if per_row:
        scale = scale_of_row.clone()
    else:
        scale = scale_of_row[:1].clone() if rows else x32.new_zeros(1)
    return _scaled_codes(fn, x32, scale_of_row, bits, rounding, seed, offset), scale


def scaled_codes(x: Tensor, scale: Tensor, bits: int, rounding: str, seed: int, offset: int) -> Tensor:
    """Codes of x with given float32 scales ([1] or [rows]): the engine's quantize_scaled."""
    fn = "quantize_scaled"
    check_float_matrix(fn, "x", x)
    _check_scaled_bits(fn, bits)
    x32 = as_float32(x)
    rows = x32.shape[0]
    check_scale_vector(fn, "scale", scale, torch.float32, rows)
    row_absmax(fn, "x", x32)  # refuses NaN/Inf before anything else
    if not bool(((scale >= 0) & (scale <= torch.finfo(torch.float32).max)).all()):
        raise ValueError(f"{fn}: scale must hold finite values >= 0")
    scale_of_row = scale if scale.shape[0] == rows and rows != 1 else scale[:1].expand(rows)
    return _scaled_codes(fn, x32, scale_of_row, bits, rounding, seed, offset)


def align_fixed_point(mantissa: Tensor, exponent: Tensor):
    """Per-row mantissas moved onto the largest exponent (rounded to nearest), for products
    that reduce across rows."""
    fn = "align_fixed_point"
    check_int_matrix(fn, "mantissa", mantissa, (torch.int8, torch.int16))
    rows = mantissa.shape[0]
    if exponent.dtype != torch.int32:
        raise TypeError(f"{fn}: exponent must be int32, got {exponent.dtype}")
    if exponent.shape != (rows,):
        raise ValueError(f"{fn}: exponent must have shape [{rows}], got {list(exponent.shape)}")
    e_max = exponent.max() if rows else exponent.new_zeros(())
    # In int64: exponents far apart would overflow int32. A shift of 62 rounds every mantissa to 0.
    scale = pow2(-torch.clamp(e_max.to(torch.int64) - exponent.to(torch.int64), max=62))[:, None]
    out = torch.round(mantissa.to(torch.float64) * scale).to(mantissa.dtype)
    # A NaN row (NAN_EXPONENT, from the CUDA quantizer) makes the whole aligned matrix NaN: it
    # takes part in every sum across rows.
    out_exponent = torch.where((exponent == NAN_EXPONENT).any(), NAN_EXPONENT, e_max)
    return out, out_exponent.reshape(1).to(torch.int32)


# ---- the ops ---------------------------------------------------------------------------------


@portable_kernel("quantize_fixed_point")
def _quantize_fixed_point(x, bits, rounding, per_row, seed):
    return fixed_point_codes(x, bits, rounding, per_row, seed_value(seed), 0)


@portable_kernel("dequantize_fixed_point")
def _dequantize_fixed_point(mantissa, exponent):
    fn = "dequantize_fixed_point"
    check_int_matrix(fn, "mantissa", mantissa, (torch.int8, torch.int16))
    rows = mantissa.shape[0]
    check_scale_vector(fn, "exponent", exponent, torch.int32, rows)
    step = exponent_step(exponent if exponent.shape[0] == rows and rows != 1 else exponent[:1].expand(rows))
    return (mantissa.to(torch.float64) * step[:, None]).to(torch.float32)


@portable_kernel("quantize_absmax")
def _quantize_absmax(x, bits, rounding, per_row, seed):
    return absmax_codes(x, bits, rounding, per_row, seed_value(seed), 0)


def check_dequantize_absmax_args(q: Tensor, bits: int, cols: int) -> None:
    """bits, the codes q and the width cols they unpack to; the engine kernel runs these checks
    too, before it allocates an output of cols columns."""
    fn = "dequantize_absmax"
    _check_scaled_bits(fn, bits)
    check_int_matrix(fn, "q", q, (torch.int8,) if bits == 8 else (torch.uint8,))
    check_size(fn, "cols", cols)
    expected = cols if bits == 8 else (cols + 1) // 2
    if q.shape[1] != expected:
        raise ValueError(f"{fn}: q must have shape [{q.shape[0]}, {expected}] for {cols} columns, got {tuple(q.shape)}")


@portable_kernel("dequantize_absmax")
def _dequantize_absmax(q, scale, bits, cols):
    fn = "dequantize_absmax"
    check_dequantize_absmax_args(q, bits, cols)
    rows = q.shape[0]
    check_scale_vector(fn, "scale", scale, torch.float32, rows)
    values = q if bits == 8 else unpack_int4(q, cols)
    s = scale if scale.shape[0] == rows and rows != 1 else scale[:1].expand(rows)
    return values.to(torch.float32) * s[:, None]

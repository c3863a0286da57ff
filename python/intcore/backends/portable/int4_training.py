"""INT4 training: the Hadamard transform and the HQ linear layer (forward, and the backward's
bit splitting with leverage score sampling), as the engine's cpp/src/hadamard.cpp and
cpp/src/int4_training.cpp compute them (the method: cpp/include/intcore/int4_training.h).

Every float operation of the engine is repeated on whole tensors, in the engine's order:

- The Hadamard transform runs the engine's Sylvester butterflies one stage at a time over all
  blocks at once: stage h pairs elements h apart inside groups of 2h, which is a reshape. float32
  sums and differences, then a multiply by the float32 1/sqrt(block). A block whose max |x|
  reaches 2^(127 - log2 block) is scaled by 2^-(log2 block + 1) before the butterflies and
  multiplied by 1/sqrt(block) * 2^(log2 block + 1) after, so that its sums cannot overflow.
- The backward scores all 2M stacked digit rows at once. The engine's sampling probabilities
  sum doubles one after the other; cumsum on the CPU adds in the same order. Its loop capping the
  largest weights becomes the length of the leading run of its condition, evaluated at every
  position of the sorted weights.
- Division by a constant is written as tensor / tensor. torch computes `scalar / t` as
  `t.reciprocal() * scalar`, and on CUDA computes `t / scalar` as a multiply by the reciprocal;
  neither rounds like the engine's division.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from intcore.backends.portable import portable_kernel
from intcore.backends.portable.common import (
    as_float32,
    check_finite,
    check_float_matrix,
    check_size,
    round_codes,
    seed_value,
)
from intcore.backends.portable.gemm import gemm_scaled
from intcore.backends.portable.philox import random_words
from intcore.backends.portable.quantize import absmax_codes, row_absmax, scaled_codes, unpack_int4

_MAX_BLOCK = 32768
_HIGH_DIGIT_WEIGHT = 14.0  # G ~ (14 high + low) / s
_SPLIT_RANGE = 98.0  # s maps max|G| to 98 = 14 * 7: both digits stay within [-7, 7]

# Stream offsets under the op's seed, as the engine assigns them: the split of G for dX, the
# grad-input sampling, the grad-weight sampling, its requantization, the split of G^T for dW.
_SPLIT_STREAM, _GRAD_INPUT_STREAM, _GRAD_WEIGHT_STREAM, _REQUANTIZE_STREAM, _SPLIT_T_STREAM = 0, 1, 2, 3, 4


def _is_valid_block(block: int) -> bool:
    return 1 <= block <= _MAX_BLOCK and block & (block - 1) == 0


def _divide(numerator: float, t: Tensor) -> Tensor:
    """numerator / t rounded as one IEEE division (see the module docstring)."""
    return torch.full_like(t, numerator) / t


# ---- the Hadamard transform -------------------------------------------------------------------


def hadamard_float32(x32: Tensor, block: int, name: str = "x") -> Tensor:
    """x32 [rows, n] (float32) times the block-diagonal Sylvester Hadamard matrix, normalized by
    1/sqrt(block): the engine's fwht on every block. Raises ValueError naming x32 `name` when it
    holds NaN or Inf, as the engine does."""
    check_finite("hadamard", name, x32)
    rows, n = x32.shape
    blocks = n // block
    values = x32.reshape(rows, blocks, block)
    # Blocks whose sums could overflow float32 run scaled down by 2^-(log2 block + 1), exactly.
    log2_block = block.bit_length() - 1
    f32 = dict(dtype=torch.float32, device=x32.device)
    scaled = values.abs().amax(dim=2, keepdim=True) >= torch.tensor(2.0 ** (127 - log2_block), **f32)
    values = torch.where(scaled, values * torch.tensor(2.0 ** -(log2_block + 1), **f32), values)
    h = 1
    while h < block:
        pairs = values.reshape(rows, blocks, block // (2 * h), 2, h)
        a, b = pairs[:, :, :, 0], pairs[:, :, :, 1]
        values = torch.stack([a + b, a - b], dim=3).reshape(rows, blocks, block)
        h *= 2
    norm = torch.tensor(1.0 / math.sqrt(block), **f32)
    norm = torch.where(scaled, norm * torch.tensor(2.0 ** (log2_block + 1), **f32), norm)
    return (values * norm).reshape(rows, n)


def _int16_of_bits(bits: Tensor) -> Tensor:
    """16-bit patterns held in int64 [0, 2^16) as int16 with the same bits."""
    return (bits - ((bits >> 15) << 16)).to(torch.int16)


def _narrowed(values: Tensor, dtype: torch.dtype) -> Tensor:
    """float32 -> bfloat16 / float16 as the engine converts: round to nearest even (what torch's
    .to() does), and NaN written the engine's way (torch writes its own NaN patterns)."""
    out = values.to(dtype)
    bits = values.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    if dtype == torch.bfloat16:
        nan_bits = (bits >> 16) | 0x40  # the sign and top payload bits, quieted
    else:
        nan_bits = ((bits >> 16) & 0x8000) | 0x7E00  # the sign, with the default quiet NaN
    return torch.where(torch.isnan(values), _int16_of_bits(nan_bits).view(dtype), out)


@portable_kernel("hadamard")
def _hadamard(x, block_size):
    fn = "hadamard"
    check_float_matrix(fn, "x", x)
    if not _is_valid_block(block_size):
        raise ValueError(f"{fn}: block_size must be a power of two in 1..{_MAX_BLOCK}, got {block_size}")
    if x.shape[1] % block_size != 0:
        raise ValueError(
            f"{fn}: the last dimension of x ({x.shape[1]}) must be a multiple of block_size ({block_size})"
        )
    out = hadamard_float32(as_float32(x), block_size)
    return _narrowed(out, x.dtype) if x.dtype in (torch.bfloat16, torch.float16) else out


# ---- forward ----------------------------------------------------------------------------------


def _check_block(fn: str, k: int, block: int) -> None:
    if not _is_valid_block(block) or k % block != 0:
        raise ValueError(f"{fn}: block_size must be a power of two dividing in_features ({k}), got {block}")


def _hadamard_codes(t: Tensor, block: int, step: Optional[Tensor], per_row: bool, name: str) -> tuple[Tensor, Tensor]:
    """t H as packed int4 codes (round to nearest) and their float32 scales: absmax per row
    ([rows]) or per tensor ([1]), or the given LSQ step."""
    th = hadamard_float32(as_float32(t), block, name)
    if step is None:
        return absmax_codes(th, 4, "nearest", per_row, 0, 0, name)
    step = step.detach()
    return scaled_codes(th, step, 4, "nearest", 0, 0), step.clone()


def _check_step(name: str, step: Optional[Tensor]) -> None:
    """An LSQ step: float32 [1] (checked before anything is computed, as the engine does)."""
    if step is None:
        return
    if step.dtype != torch.float32:
        raise TypeError(f"hq_linear: {name}_step must be float32, got {step.dtype}")
    if tuple(step.shape) != (1,):
        raise ValueError(f"hq_linear: {name}_step must have shape [1], got {tuple(step.shape)}")


@portable_kernel("hq_linear")
def _hq_linear(x, w, bias, block_size, sampling, budget, x_step, w_step, per_row=False):
    # sampling and budget configure the backward only.
    fn = "hq_linear"
    check_float_matrix(fn, "x", x)
    check_float_matrix(fn, "w", w)
    k, c = x.shape[1], w.shape[0]
    if w.shape[1] != k:
        raise ValueError(f"{fn}: x has {k} features but w expects {w.shape[1]}")
    _check_block(fn, k, block_size)
    _check_step("x", x_step)
    _check_step("w", w_step)
    if per_row and (x_step is not None or w_step is not None):
        raise ValueError(f"{fn}: learned steps (x_step, w_step) are per tensor; per_row needs absmax scales")
    bias32 = None
    if bias is not None:
        if not bias.is_floating_point():
            raise TypeError(f"{fn}: bias must be a floating-point tensor, got {bias.dtype}")
        if tuple(bias.shape) != (c,):
            raise ValueError(f"{fn}: bias must have shape [{c}], got {tuple(bias.shape)}")
        bias32 = bias.detach().to(torch.float32)
    x_codes, x_scale = _hadamard_codes(x, block_size, x_step, per_row, "x")
    w_codes, w_scale = _hadamard_codes(w, block_size, w_step, per_row, "w")
    y = gemm_scaled(unpack_int4(x_codes, k), x_scale, unpack_int4(w_codes, k), w_scale, bias32)
    return y.to(x.dtype), x_codes, x_scale, w_codes, w_scale


# ---- backward: bit splitting ------------------------------------------------------------------


class _Split(NamedTuple):
    high: Tensor  # int8 [rows, cols], in [-7, 7]
    low: Tensor  # int8 [rows, cols], in [-7, 7]
    scale: Tensor  # float32 [rows] (one s per row, or the tensor's s repeated), G ~ (14 high + low) / s


def _split_gradient(g32: Tensor, per_row: bool, seed: int, offset: int) -> _Split:
    """A float32 gradient matrix as two int4 digits, with s = 98 / max|G| per row or per tensor:
    high rounded to nearest, low stochastically (stream (seed, offset), word r * cols + c)."""
    absmax = row_absmax("split_gradient", "grad", g32)
    rows, cols = g32.shape
    if not per_row or rows == 1:
        absmax = (absmax.max() if rows else absmax.new_zeros(())).expand(rows)
    # max|G| as 127 (max|G| / 127) in float32, as in the engine: the rule every recorded INT4 run
    # used (tensor divisors: a scalar divisor is a reciprocal multiply on CUDA).
    g_max = absmax / torch.full_like(absmax, 127.0) * 127.0
    # Capped at the largest float32, as in the engine (a row of max |G| below ~2.9e-37).
    s = torch.where(g_max > 0, _divide(_SPLIT_RANGE, g_max).clamp(max=torch.finfo(torch.float32).max), 0.0)
    v = g32.to(torch.float64) * s.to(torch.float64)[:, None]
    high = torch.round(v / torch.full_like(v, _HIGH_DIGIT_WEIGHT))
    rest = v - _HIGH_DIGIT_WEIGHT * high
    words = random_words(seed, offset, 0, rows * cols, g32.device).reshape(rows, cols)
    low = round_codes(rest, "stochastic", 7, words)
    return _Split(high.to(torch.int8), low.to(torch.int8), s)


def _combined_digits(split: _Split) -> Tensor:
    """14 high + low (in [-105, 105]): the exact int8 code of the no-sampling path."""
    return (14 * split.high.to(torch.int16) + split.low).to(torch.int8)


def _inverse_scale(split: _Split) -> Tensor:
    """1 / s per row in float32 (0 for an all-zero row), the row scale of the digit codes."""
    return torch.where(split.scale > 0, _divide(1.0, split.scale), 0.0)


def _inverse_scale64(split: _Split) -> Tensor:
    """1 / s per row in float64 (0 for an all-zero row)."""
    s = split.scale.to(torch.float64)
    return torch.where(s > 0, _divide(1.0, torch.where(s > 0, s, 1.0)), 0.0)


def _stacked_rows(high: Tensor, low: Tensor) -> tuple[Tensor, Tensor]:
    """The 2M digit rows (high rows of tokens 0..M-1, then their low rows) and their float64
    weights (14 for high digits, 1 for low)."""
    m = high.shape[0]
    rows = torch.cat([high, low])
    weight = torch.cat([
        torch.full((m,), _HIGH_DIGIT_WEIGHT, dtype=torch.float64, device=rows.device),
        torch.ones(m, dtype=torch.float64, device=rows.device),
    ])
    return rows, weight


def _row_norms(codes: Tensor) -> Tensor:
    """Euclidean norms of int8 rows: sqrt of the exact integer sum of squares, in float64."""
    return torch.sqrt((codes.to(torch.int64) ** 2).sum(dim=1).to(torch.float64))


# ---- backward: leverage score sampling ----------------------------------------------------------


def _sequential_cumsum(v: Tensor) -> Tensor:
    """Running float64 sums of v added one after the other, as the engine's loops add: CPU cumsum
    keeps one running sum; other devices scan in parallel, which rounds differently."""
    return torch.cumsum(v.cpu(), dim=0).to(v.device)


def _keep_probabilities(weights: Tensor, budget: float) -> Tensor:
    """The engine's sampling_probabilities: p ~ weights, each p <= 1, summing to
    min(budget, number of positive weights), the excess of capped rows re-spread.

    Equal weights: the engine's std::sort orders them arbitrarily, here they keep their index
    order (what libstdc++ does for 2M <= 16, where it sorts by insertion). Their order only
    matters if some of them are capped and others not. In exact arithmetic that cannot happen:
    after j caps, w is capped when c_j w >= 1 with c_j = (budget - j) / rest_j, which is the
    inequality (budget - j + 1) w >= rest_(j-1) for every copy of w. Only rounding in the last
    bits could split equal weights, and then their probabilities are 1 and a few ulps below 1:
    the same rows are drawn, and a kept row's factor weight / (s p) rounds to another float32
    only where it lies within those ulps of a rounding boundary.
    """
    n = weights.shape[0]
    positive_mask = weights > 0
    positive = positive_mask.sum()
    sorted_weights, order = torch.sort(weights, descending=True, stable=True)
    # rest_j: the sum of the positive weights (in index order; zeros add nothing), minus the j
    # largest one after the other.
    total = _sequential_cumsum(weights)[-1:]
    rest = _sequential_cumsum(torch.cat([total, -sorted_weights[:-1]]))
    position = torch.arange(n, dtype=torch.int64, device=weights.device)
    c = (budget - position.to(torch.float64)) / rest
    capping = (position < positive) & (c * sorted_weights >= 1.0)
    capped = torch.cumprod(capping.to(torch.int64), dim=0).sum()
    c_final = c[capped.clamp(max=n - 1)]
    spread = c_final * sorted_weights
    p_sorted = torch.where(position < capped, 1.0, torch.where(spread < 1.0, spread, 1.0))  # std::min(1.0, .)
    p = torch.empty_like(p_sorted).scatter_(0, order, p_sorted)
    return torch.where(positive.to(torch.float64) <= budget, positive_mask.to(torch.float64), p)


def _on_draw_grid(scores: Tensor, p: Tensor) -> Tensor:
    """p moved up onto the draw's grid (multiples of 2^-24), at least one step where the score is
    positive, so that a kept row divided by p is exactly unbiased (the engine's on_draw_grid)."""
    grid = torch.clamp(torch.ceil(p * 16777216.0), min=1.0) / 16777216.0
    return torch.where(scores > 0, grid, 0.0)


def _draw_rows(p: Tensor, seed: int, offset: int) -> Tensor:
    """Indices (ascending) of the rows kept by Bernoulli draws: row i when the top 24 bits of
    word i of the stream (seed, offset), as an integer, fall below p_i 2^24."""
    words = random_words(seed, offset, 0, p.shape[0], p.device)
    return torch.nonzero((words >> 8).to(torch.float64) < p * 16777216.0).squeeze(1)


# ---- backward: the two gradients ----------------------------------------------------------------


def _scaled_columns(g32: Tensor, scale: Tensor) -> Tensor:
    """G with column j multiplied by scale[j] (or by the one scale), in float32."""
    return g32 * (scale[None, :] if scale.shape[0] == g32.shape[1] and scale.shape[0] != 1 else scale)


def _grad_input(g32: Tensor, w_codes: Tensor, w_scale: Tensor, k: int, per_row: bool, sampling: bool, budget: float,
                seed: int) -> Tensor:
    """dX H = G (QW sw): the w scales folded into G's columns, G split per token row (or per
    tensor), the digit rows times the w codes, all rows exactly or the sampled ones rescaled."""
    m = g32.shape[0]
    wq = unpack_int4(w_codes, k)
    one = torch.ones(1, dtype=torch.float32, device=g32.device)
    split = _split_gradient(_scaled_columns(g32, w_scale), per_row, seed, _SPLIT_STREAM)
    if not sampling or not bool((split.scale != 0).any()):
        return gemm_scaled(_combined_digits(split), _inverse_scale(split), wq.T, one)
    rows, weight = _stacked_rows(split.high, split.low)
    inverse = _inverse_scale64(split).repeat(2)
    scores = weight * _row_norms(rows) * inverse
    p = _on_draw_grid(scores, _keep_probabilities(scores, budget * 2.0 * m))
    kept = _draw_rows(p, seed, _GRAD_INPUT_STREAM)
    factor = (weight[kept] / (split.scale.repeat(2)[kept].to(torch.float64) * p[kept])).to(torch.float32)
    partial = gemm_scaled(rows[kept], factor, wq.T, one)
    # The engine adds each kept row into its token's row of zeros, in the order kept: the high
    # row, then the low row. Adding rather than copying matters: 0.0f + -0.0f is 0.0f.
    dxh = torch.zeros(m, k, dtype=torch.float32, device=partial.device)
    is_high = kept < m
    dxh.index_add_(0, kept[is_high], partial[is_high])
    dxh.index_add_(0, kept[~is_high] - m, partial[~is_high])
    return dxh


def _grad_weight(g32: Tensor, x_codes: Tensor, x_scale: Tensor, k: int, per_row: bool, sampling: bool, budget: float,
                 seed: int) -> Tensor:
    """dW H = G^T (QX sx): the x scales folded into G's rows, G^T split per output channel (or
    per tensor), its digits times the x codes; sampled token rows are rescaled and requantized
    to int8 (stochastic, stream offset 3), per channel or per tensor."""
    m, c = g32.shape
    xq = unpack_int4(x_codes, k)
    one = torch.ones(1, dtype=torch.float32, device=g32.device)
    split = _split_gradient(_scaled_columns(g32.T.contiguous(), x_scale), per_row, seed, _SPLIT_T_STREAM)
    if not sampling or not bool((split.scale != 0).any()):
        return gemm_scaled(_combined_digits(split), _inverse_scale(split), xq.T, one)
    # Token rows of the digits: row i of split.high.T is token i's high digits over the channels.
    rows, weight = _stacked_rows(split.high.T, split.low.T)
    scores = (weight * _row_norms(rows)) * _row_norms(xq).repeat(2)
    p = _on_draw_grid(scores, _keep_probabilities(scores, budget * 2.0 * m))
    kept = _draw_rows(p, seed, _GRAD_WEIGHT_STREAM)
    if kept.shape[0] == 0:
        return torch.zeros(c, k, dtype=torch.float32, device=kept.device)
    # R^T [C, kept]: channel j of kept row r is (weight_r / p_r) digit / s_j.
    rescaled = (((weight[kept] / p[kept])[None, :] * rows[kept].T.to(torch.float64))
                * _inverse_scale64(split)[:, None]).to(torch.float32)
    r_codes, r_scale = absmax_codes(rescaled, 8, "stochastic", per_row, seed, _REQUANTIZE_STREAM, "sampled gradient")
    return gemm_scaled(r_codes, r_scale, xq[kept % m].T, one)


def _check_codes(fn: str, name: str, codes: Tensor, scale: Tensor, rows: int, k: int, per_row: bool) -> None:
    """Packed int4 codes [rows, ceil(k / 2)] (contiguous) and their float32 scales ([rows] per
    row, else [1])."""
    if codes.dtype != torch.uint8:
        raise TypeError(f"{fn}: {name}_codes must be torch.uint8, got {codes.dtype}")
    if tuple(codes.shape) != (rows, (k + 1) // 2):
        raise ValueError(f"{fn}: {name}_codes must have shape [{rows}, {(k + 1) // 2}], got {tuple(codes.shape)}")
    if not codes.is_contiguous():
        raise ValueError(f"{fn}: {name}_codes must be contiguous")
    if scale.dtype != torch.float32:
        raise TypeError(f"{fn}: {name}_scale must be torch.float32, got {scale.dtype}")
    expected = (rows,) if per_row else (1,)
    if tuple(scale.shape) != expected:
        raise ValueError(f"{fn}: {name}_scale must have shape {list(expected)}, got {list(scale.shape)}")


def check_backward_args(grad, x_codes, x_scale, w_codes, w_scale, k, block_size, budget, need_grad, per_row) -> None:
    """The backward's argument checks, in the engine's order; the engine kernel runs them too,
    before it allocates outputs of k columns."""
    fn = "hq_linear_backward"
    check_float_matrix(fn, "grad", grad)
    m, c = grad.shape
    _check_block(fn, k, block_size)
    if not 0 < budget <= 1:
        raise ValueError(f"{fn}: the sampling budget must be in (0, 1], got {budget}")
    if need_grad[0]:
        _check_codes(fn, "w", w_codes, w_scale, c, k, per_row)
    if need_grad[1]:
        _check_codes(fn, "x", x_codes, x_scale, m, k, per_row)


@portable_kernel("hq_linear_backward")
def _hq_linear_backward(grad, x_codes, x_scale, w_codes, w_scale, k, block_size, sampling, budget, need_grad, seed,
                        per_row=False):
    fn = "hq_linear_backward"
    check_size(fn, "k", k)
    if len(need_grad) != 2:
        raise ValueError(f"{fn}: need_grad must list [dx, dw], got {need_grad}")
    grad, seed_v = grad.detach(), seed_value(seed)
    check_backward_args(grad, x_codes, x_scale, w_codes, w_scale, k, block_size, budget, need_grad, per_row)
    # Two tensors: a custom op's outputs may not alias each other.
    dx, dw = grad.new_empty((0,), dtype=torch.float32), grad.new_empty((0,), dtype=torch.float32)
    g32 = as_float32(grad)
    if need_grad[0]:
        dxh = _grad_input(g32, w_codes, w_scale.detach(), k, per_row, sampling, budget, seed_v)
        dx = hadamard_float32(dxh, block_size, "gradient")
    if need_grad[1]:
        dwh = _grad_weight(g32, x_codes, x_scale.detach(), k, per_row, sampling, budget, seed_v)
        dw = hadamard_float32(dwh, block_size, "gradient")
    return dx, dw

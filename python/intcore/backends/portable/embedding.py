"""The fixed-point embedding, forward and backward, as the engine computes it
(cpp/src/embedding.cpp).

Forward: one exponent for the whole table (from its absmax, as quantize_fixed_point takes it),
only the gathered rows rounded to nearest. Backward: the output gradient mapped to fixed point
(one exponent), its mantissas summed per id in int64 by index_add_, which is exact and so
independent of the order repeated ids are added in; the padding row stays zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from intcore.backends.portable import portable_kernel
from intcore.backends.portable.common import (
    as_float32,
    check_finite,
    check_float_matrix,
    check_size,
    pow2,
    seed_value,
)
from intcore.backends.portable.quantize import fixed_point_codes


def _check_bits(fn: str, name: str, bits: int) -> None:
    if not 2 <= bits <= 16:
        raise ValueError(f"{fn}: {name} must be in 2..16, got {bits}")


def _check_ids(fn: str, ids: Tensor, vocab: int) -> None:
    """int64, 1-D, every id in [0, vocab); names the first id outside (the engine calls ids
    "input")."""
    if ids.dtype != torch.int64:
        raise TypeError(f"{fn}: input must be {torch.int64}, got {ids.dtype}")
    if ids.dim() != 1:
        raise ValueError(f"{fn}: input must be 1-D, got shape {list(ids.shape)}")
    outside = (ids < 0) | (ids >= vocab)
    if bool(outside.any()):
        position = int(outside.nonzero()[0, 0])
        raise ValueError(
            f"{fn}: input holds {int(ids[position])} at position {position}, outside [0, {vocab})"
        )


def _table_exponent(fn: str, table: Tensor, bits: int) -> Tensor:
    """frexp(max |table|) - (bits - 1), the max taken over the float32 values (rounding to
    float32 is monotone, so it is the float32 of the max); raises on NaN/Inf."""
    if table.numel() == 0:
        absmax = table.new_zeros(1, dtype=torch.float32)
    else:
        absmax = table.abs().amax().to(torch.float32).reshape(1)
    check_finite(fn, "weight", absmax)
    return torch.frexp(absmax).exponent.to(torch.int64) - (bits - 1)


@portable_kernel("fixed_point_embedding")
def _fixed_point_embedding(ids, weight, bits, grad_bits, rounding, padding_idx):
    fn = "fixed_point_embedding"
    check_float_matrix(fn, "weight", weight)
    _check_bits(fn, "bits", bits)
    weight = weight.detach()
    _check_ids(fn, ids, weight.shape[0])
    exponent = _table_exponent(fn, weight, bits)
    qmax = float((1 << (bits - 1)) - 1)
    rows = weight[ids].to(torch.float32).to(torch.float64)
    codes = torch.round(rows * pow2(-exponent)).clamp(-qmax, qmax)
    return (codes * pow2(exponent)).to(torch.float32).to(weight.dtype)


@portable_kernel("fixed_point_embedding_backward")
def _fixed_point_embedding_backward(grad, ids, num_embeddings, grad_bits, rounding, padding_idx, seed):
    fn = "fixed_point_embedding_backward"
    dim = grad.shape[1] if grad.dim() > 1 else 0
    check_size(fn, "num_embeddings", num_embeddings)  # before allocating, as the engine kernel checks it
    sums = torch.zeros((num_embeddings, dim), dtype=torch.int64, device=grad.device)
    seed_v = seed_value(seed)
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"{fn}: rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    check_float_matrix(fn, "grad", grad)
    _check_bits(fn, "grad_bits", grad_bits)
    _check_ids(fn, ids, num_embeddings)
    if grad.shape[0] != ids.shape[0]:
        raise ValueError(f"{fn}: grad must have shape [{ids.shape[0]}, {dim}], got {list(grad.shape)}")
    grad = grad.detach()
    check_finite("quantize_fixed_point", "grad", as_float32(grad))  # names grad as the engine does
    g, exponent = fixed_point_codes(grad, grad_bits, rounding, False, seed_v, 0)
    sums.index_add_(0, ids, g.to(torch.int64))
    if 0 <= padding_idx < num_embeddings:
        sums[padding_idx] = 0
    return (sums.to(torch.float64) * pow2(exponent)).to(torch.float32)

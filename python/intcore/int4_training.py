"""INT4 training (docs/int4-training.md): the Hadamard quantizer forward, bit splitting and
leverage score sampling backward.

``int4_linear(x, w)`` trains with this method ("hq-lss") by default; ``recipe="absmax"`` is
the plain per-row absmax int4 layer. ``intcore.convert(model, "int4-hq")`` converts every
linear layer (except those skipped) to :class:`intcore.nn.Int4Linear` with these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from intcore import _checks, functional

ops = torch.ops.intcore

BLOCK_SEARCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class Int4Config:
    """How an Int4Linear layer computes.

    recipe: "hq-lss" (the method) or "absmax" (per-row absmax int4, round to nearest in the
        forward and stochastic in the backward).
    block_size: Hadamard block along in_features, a power of two (in_features is zero-padded to
        whole blocks), or "auto" to choose per layer on the first training step by the
        error-product search.
    sampling: leverage score sampling in the backward (False keeps every digit row).
    budget: expected fraction of the 2M stacked gradient digit rows kept (0.5: the cost of
        one int4 GEMM).
    scale: "absmax" (absmax scales of x H and w H) or "lsq" (learned step sizes, one per
        operand, initialized to 2 mean|v| / sqrt(7) on the first forward; hq-lss only).
    granularity: "per_row" (one absmax scale per token of x H and per output channel of w H;
        the backward then splits the gradient per token for dX and per output channel for dW)
        or "per_tensor" (one scale per operand, the paper's). None (the default): per row,
        except with LSQ, whose learned steps are per tensor. On MiniLM-L6 / Rotten Tomatoes per-row scales
        took int4-hq from 0.7750 to 0.8375 test accuracy (fp32: 0.8414; docs/int4-training.md).
    """

    recipe: str = "hq-lss"
    block_size: Union[int, str] = 32
    sampling: bool = True
    budget: float = 0.5
    scale: str = "absmax"
    granularity: Optional[str] = None

    def __post_init__(self):
        if self.recipe not in ("hq-lss", "absmax"):
            raise ValueError(f"Int4Config.recipe must be 'hq-lss' or 'absmax', got {self.recipe!r}")
        if self.block_size != "auto" and not _is_power_of_two(self.block_size):
            raise ValueError(f"Int4Config.block_size must be a power of two or 'auto', got {self.block_size!r}")
        _check_budget("Int4Config.budget", self.budget)
        if self.scale not in ("absmax", "lsq"):
            raise ValueError(f"Int4Config.scale must be 'absmax' or 'lsq', got {self.scale!r}")
        if self.scale == "lsq" and self.recipe != "hq-lss":
            raise ValueError("Int4Config.scale='lsq' needs recipe='hq-lss'")
        if self.granularity not in (None, "per_tensor", "per_row"):
            raise ValueError(f"Int4Config.granularity must be 'per_tensor' or 'per_row', got {self.granularity!r}")
        if self.granularity == "per_row" and self.scale == "lsq":
            raise ValueError("Int4Config.granularity='per_row' needs scale='absmax' (learned LSQ steps are per tensor)")
        if self.granularity == "per_tensor" and self.recipe == "absmax":
            raise ValueError("Int4Config.recipe='absmax' has a scale per row; granularity='per_tensor' needs "
                             "recipe='hq-lss'")

    @property
    def per_row(self) -> bool:
        """Whether scales are per row: granularity, or by default per row unless LSQ."""
        return (self.granularity or default_granularity(self.scale)) == "per_row"

    def describe(self) -> str:
        if self.recipe == "absmax":
            return "int4 absmax"
        sampled = f"LSS {self.budget:g}" if self.sampling else "no sampling"
        learned = ", LSQ" if self.scale == "lsq" else ""
        rows = ", per-row scales" if self.per_row else ""
        return f"int4 HQ (block {self.block_size}, {sampled}{learned}{rows})"


def default_granularity(scale: str) -> str:
    """Per-row absmax scales, unless the scales are learned (LSQ steps are per tensor)."""
    return "per_tensor" if scale == "lsq" else "per_row"


def _is_power_of_two(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 32768 and v & (v - 1) == 0


def _check_budget(name: str, budget) -> None:
    """budget must be a real number in (0, 1] (None or a string compared with ints otherwise)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {budget!r}")


@_checks.public("hadamard")
def hadamard(x: Tensor, block_size: int) -> Tensor:
    """Block-diagonal normalized Walsh-Hadamard transform along the last dimension.

    Every run of ``block_size`` (a power of two, 1..32768, dividing the last dimension)
    elements is multiplied by H / sqrt(block_size). The transform is orthonormal and its own
    inverse; its gradient is the transform of the gradient. float32/bfloat16/float16 keep
    their dtype; other float dtypes give float32. Raises ValueError if x holds NaN or Inf.
    """
    _checks.check_float("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dimension, got a 0-dim tensor")
    if not _is_power_of_two(block_size):
        raise ValueError(f"block_size must be a power of two in 1..32768, got {block_size!r}")
    if x.shape[-1] % block_size:
        raise ValueError(f"the last dimension of x ({x.shape[-1]}) must be a multiple of block_size ({block_size})")
    return ops.hadamard(_checks.as_rows(x), block_size).reshape(x.shape)


def _int4_error(v: Tensor, block_size: int, per_row: bool) -> float:
    """||vH - Q(vH)|| for absmax int4 with a scale per row or per tensor (the forward's quantizer)."""
    vh = hadamard(v.detach().float(), block_size)
    if vh.numel() == 0:
        return 0.0
    absmax = vh.abs().amax(dim=1, keepdim=True) if per_row else vh.abs().max()
    scale = torch.where(absmax > 0, absmax / 7, 1.0)
    return float((vh - (vh / scale).round().clamp(-7, 7) * scale).norm())


def _padded_to_blocks(t: Tensor, block_size: int) -> Tensor:
    """t with zero features appended up to a whole number of Hadamard blocks.

    Zero columns of x and w add nothing to x w^T, and since (x H)(w H)^T = x w^T for the padded
    operands too, padding leaves the layer's output unchanged; autograd slices the gradients
    back to the original width. So int4_linear accepts every in_features nn.Linear does.
    """
    pad = (-t.shape[-1]) % block_size
    return torch.nn.functional.pad(t, (0, pad)) if pad else t


@_checks.public("lsq_initial_step")
def lsq_initial_step(v: Tensor, block_size: int) -> Tensor:
    """LSQ's initial step for int4 codes of v H: 2 mean|v H| / sqrt(7), as a float32 [1]."""
    _checks.check_float("v", v)
    if v.numel() == 0:
        raise ValueError(f"v is empty (shape {tuple(v.shape)}): the initial step is a mean over its values")
    if not _is_power_of_two(block_size):
        raise ValueError(f"block_size must be a power of two in 1..32768, got {block_size!r}")
    vh = hadamard(_padded_to_blocks(v.detach().float().reshape(-1, v.shape[-1]), block_size), block_size)
    return (2 * vh.abs().mean() / 7**0.5).reshape(1).clamp(min=1e-12)


@_checks.public("search_block_size")
def search_block_size(x: Tensor, w: Tensor, granularity: str = "per_row") -> int:
    """The block size (1, 2, 4, ... 1024 dividing in_features) with the smallest product of
    the quantization errors of x H and w H, quantized with absmax scales per row (the default)
    or per tensor: the reference's per-layer search. Raises ValueError if x or w holds NaN or
    Inf."""
    if granularity not in ("per_row", "per_tensor"):
        raise ValueError(f"granularity must be 'per_row' or 'per_tensor', got {granularity!r}")
    _checks.check_linear_args(x, w, None)
    for name, t in (("x", x), ("w", w)):
        if t.device.type == "meta":
            raise ValueError(f"{name} is on the meta device: the block size is chosen from its values")
    k = w.shape[1]
    x2 = _checks.as_rows(x.detach())
    best, best_error = 1, float("inf")
    for g in BLOCK_SEARCH:
        if k % g:
            continue
        error = _int4_error(x2, g, granularity == "per_row") * _int4_error(w, g, granularity == "per_row")
        if error < best_error:
            best, best_error = g, error
    return best


@_checks.public("int4_linear")
def int4_linear(
    x: Tensor,
    w: Tensor,
    bias: Optional[Tensor] = None,
    *,
    recipe: str = "hq-lss",
    block_size: int = 32,
    sampling: bool = True,
    budget: float = 0.5,
    x_step: Optional[Tensor] = None,
    w_step: Optional[Tensor] = None,
    granularity: Optional[str] = None,
) -> Tensor:
    """``x @ w.T + bias`` through int4 arithmetic, forward and backward.

    recipe "hq-lss" (default): x and w go through a Hadamard transform of ``block_size``
    along in_features and absmax int4 codes (see ``granularity``); the backward splits the output
    gradient into two int4 digits and samples their rows by leverage score (``sampling``,
    ``budget``), giving unbiased gradients from int4 GEMMs. ``x_step`` / ``w_step`` (float32
    [1] tensors, usually parameters) replace the absmax scales by learned step sizes trained
    with LSQ. ``granularity``: "per_row" (the default with absmax scales) gives every token of
    x H and every output channel of w H its own scale, "per_tensor" one per operand (the paper's;
    the default with learned steps); see :class:`Int4Config`. recipe "absmax": per-row absmax
    int4 codes, no transform, no sampling.
    """
    _check_budget("budget", budget)
    if granularity is None:
        learned = recipe == "hq-lss" and x_step is not None
        granularity = default_granularity("lsq" if learned else "absmax")
    config = Int4Config(recipe, block_size, sampling, budget, granularity=granularity)
    if config.recipe == "absmax":
        return functional._absmax_linear(ops.int4_linear, x, w, bias)
    _checks.check_linear_args(x, w, bias)
    x, w = _padded_to_blocks(x, block_size), _padded_to_blocks(w, block_size)
    if (x_step is None) != (w_step is None):
        raise ValueError("x_step and w_step must both be given (LSQ) or both be None (absmax scales)")
    for name, step in (("x_step", x_step), ("w_step", w_step)):
        if step is not None:
            _checks.check_tensor(name, step)
        if step is not None and (step.shape != (1,) or step.dtype != torch.float32):
            raise ValueError(f"{name} must be a float32 tensor of shape (1,), got {step.dtype} {tuple(step.shape)}")
    if granularity == "per_row" and x_step is not None:
        raise ValueError("x_step and w_step (learned steps) are per tensor: use granularity='per_tensor' with them")
    y = ops.hq_linear(_checks.as_rows(x), w, bias, block_size, bool(sampling), float(budget), x_step,
                      w_step, granularity == "per_row")[0]
    return y.reshape(*x.shape[:-1], w.shape[0])

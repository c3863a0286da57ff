"""Integer fine-tuning in dynamic fixed point (docs/integer-finetuning.md).

Linear, layer-norm and embedding layers whose forward and backward run on integer mantissas
with shared exponents, at a bit-width set per role by a :class:`FixedPointConfig`.
"""

from __future__ import annotations

import math
import operator
import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from intcore import _checks
from intcore._random import draw_seed

ops = torch.ops.intcore

_GRANULARITIES = ("per_tensor", "per_row")
_RSQRT_MODES = ("integer", "float")


@dataclass(frozen=True)
class FixedPointConfig:
    """Bit-widths and rounding of one kind of layer.

    weight_bits, activation_bits, grad_bits: mantissa widths (2..16) of weights, activations
        (layer inputs; for layer norm also xhat, gamma and beta) and gradients.
    rounding: "stochastic" (unbiased; the paper's default) or "nearest", for activations and
        gradients while training. Weights always round to nearest, and so does everything in
        eval mode (``for_inference``): inference is deterministic and draws no random numbers.
    granularity: "per_tensor" (the paper's setting: one exponent per tensor, integer codes
        reused in the backward) or "per_row" (one exponent per row of each GEMM operand).
    rsqrt: layer norm's 1/sqrt(var + eps): "integer" (fixed-point Newton iteration) or
        "float" (one float square root per row).
    """

    weight_bits: int = 16
    activation_bits: int = 16
    grad_bits: int = 16
    rounding: str = "stochastic"
    granularity: str = "per_tensor"
    rsqrt: str = "integer"

    def __post_init__(self):
        for role in ("weight_bits", "activation_bits", "grad_bits"):
            value = getattr(self, role)
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 16:
                raise ValueError(f"FixedPointConfig.{role} must be an int in 2..16, got {value!r}")
        _checks.check_rounding(self.rounding)
        if self.granularity not in _GRANULARITIES:
            raise ValueError(f"FixedPointConfig.granularity must be one of {_GRANULARITIES}, got {self.granularity!r}")
        if self.rsqrt not in _RSQRT_MODES:
            raise ValueError(f"FixedPointConfig.rsqrt must be one of {_RSQRT_MODES}, got {self.rsqrt!r}")

    @classmethod
    def uniform(cls, bits: int, **kwargs) -> "FixedPointConfig":
        return cls(weight_bits=bits, activation_bits=bits, grad_bits=bits, **kwargs)

    def for_inference(self) -> "FixedPointConfig":
        """This config as modules in eval mode use it: nearest rounding, so that the same input
        gives the same output and no random numbers are drawn (see intcore.nn.fixed_point)."""
        return self if self.rounding == "nearest" else dataclasses.replace(self, rounding="nearest")

    def describe(self) -> str:
        bits = {self.weight_bits, self.activation_bits, self.grad_bits}
        width = f"int{bits.pop()}" if len(bits) == 1 else (
            f"w{self.weight_bits}/a{self.activation_bits}/g{self.grad_bits}")
        extras = [] if self.granularity == "per_tensor" else [self.granularity]
        if self.rounding != "stochastic":
            extras.append(self.rounding)
        return f"fixed-point {width}" + (f" ({', '.join(extras)})" if extras else "")


DEFAULT_CONFIG = FixedPointConfig()


def _forward_seed(config: FixedPointConfig) -> Tensor:
    """The seed of a forward's stochastic rounding. With nearest rounding none is drawn, so that
    PyTorch's generator is left as it was (the op reads no random bits then)."""
    return draw_seed() if config.rounding == "stochastic" else torch.zeros((), dtype=torch.int64)


@_checks.public("fixed_point_linear", renames={"w": "weight"})
def fixed_point_linear(
    x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, config: FixedPointConfig = DEFAULT_CONFIG
) -> Tensor:
    """``x @ weight.T + bias`` on fixed-point mantissas, forward and backward.

    Forward: x and weight mapped to fixed point, one exact integer GEMM (8-bit limbs above 8
    bits), exponents and bias applied in float32. Backward: the output gradient mapped to
    ``grad_bits`` (stochastic by default); dx and dweight are integer GEMMs reusing the forward's
    codes; the bias gradient is a float sum. x: [..., in_features], any float dtype.
    """
    _checks.check_linear_args(x, weight, bias, weight_name="weight")
    _checks.check_config("config", config, FixedPointConfig)
    bits = [config.activation_bits, config.weight_bits, config.grad_bits]
    y = ops.fixed_point_linear(
        _checks.as_rows(x), weight, bias, bits, config.rounding, config.granularity == "per_row",
        _forward_seed(config),
    )[0]
    return y.reshape(*x.shape[:-1], weight.shape[0])


@_checks.public("fixed_point_layer_norm")
def fixed_point_layer_norm(
    x: Tensor,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    eps: float = 1e-5,
    config: FixedPointConfig = DEFAULT_CONFIG,
) -> Tensor:
    """Layer norm over the last dimension with integer sums, products and reciprocal square
    root, forward and backward (see cpp/include/intcore/layer_norm.h for the arithmetic)."""
    _checks.check_float("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dimension, got a 0-dim tensor")
    n = x.shape[-1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _checks.check_float(name, t)
            if t.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) (the last dimension of x), got {tuple(t.shape)}")
    if (weight is None) != (bias is None):
        raise ValueError("weight and bias must both be given or both be None")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a float, got {type(eps).__name__}")
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    _checks.check_config("config", config, FixedPointConfig)
    _checks.check_same_device(x=x, weight=weight, bias=bias)
    y = ops.fixed_point_layer_norm(
        _checks.as_rows(x), weight, bias, config.activation_bits, config.grad_bits, float(eps), config.rounding,
        config.rsqrt, config.granularity == "per_row", _forward_seed(config),
    )[0]
    return y.reshape(x.shape)


@_checks.public("fixed_point_rms_norm")
def fixed_point_rms_norm(
    x: Tensor,
    weight: Optional[Tensor] = None,
    eps: float = 1e-6,
    config: FixedPointConfig = DEFAULT_CONFIG,
    weight_offset: float = 0.0,
) -> Tensor:
    """RMSNorm over the last dimension, ``x / sqrt(mean(x^2) + eps) * (weight_offset + weight)``,
    with integer sums, products and reciprocal square root, forward and backward: the layer
    norm's arithmetic with no mean subtracted and no bias (cpp/include/intcore/layer_norm.h).
    ``weight_offset=1`` is Gemma's form (weights stored as the scale minus one)."""
    _checks.check_float("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dimension, got a 0-dim tensor")
    n = x.shape[-1]
    if weight is not None:
        _checks.check_float("weight", weight)
        if weight.shape != (n,):
            raise ValueError(f"weight must have shape ({n},) (the last dimension of x), got {tuple(weight.shape)}")
    for name, value in (("eps", eps), ("weight_offset", weight_offset)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    if not math.isfinite(weight_offset):
        raise ValueError(f"weight_offset must be finite, got {weight_offset}")
    if weight_offset != 0 and weight is None:
        raise ValueError("weight_offset needs a weight")
    _checks.check_config("config", config, FixedPointConfig)
    _checks.check_same_device(x=x, weight=weight)
    # The scale is mapped to fixed point as a whole, so Gemma's 1 + w keeps its small w's steps
    # relative to 1 (and its gradient is the weight's).
    scale = weight if weight is None or weight_offset == 0 else weight + weight_offset
    y = ops.fixed_point_rms_norm(
        _checks.as_rows(x), scale, config.activation_bits, config.grad_bits, float(eps), config.rounding,
        config.rsqrt, config.granularity == "per_row", _forward_seed(config),
    )[0]
    return y.reshape(x.shape)


@_checks.public("fixed_point_embedding", renames={"input": "ids"})
def fixed_point_embedding(
    ids: Tensor, weight: Tensor, padding_idx: Optional[int] = None, config: FixedPointConfig = DEFAULT_CONFIG
) -> Tensor:
    """Rows of ``weight`` (mapped to ``weight_bits``) for integer ``ids`` of any shape.

    The backward maps the output gradient to ``grad_bits`` and scatter-adds it in integers:
    exact and deterministic for repeated ids. Rows at ``padding_idx`` get no gradient;
    ``padding_idx`` must lie in [-num_embeddings, num_embeddings), as for torch's embedding.
    """
    _checks.check_int("ids", ids, (torch.int64, torch.int32))
    _checks.check_float("weight", weight)
    _checks.check_dim("weight", weight, 2)
    _checks.check_config("config", config, FixedPointConfig)
    _checks.check_same_device(ids=ids, weight=weight)
    pad = -1
    if padding_idx is not None:
        if isinstance(padding_idx, bool) or not hasattr(padding_idx, "__index__"):
            raise TypeError(f"padding_idx must be an int or None, got {type(padding_idx).__name__}")
        padding_idx, vocab = operator.index(padding_idx), weight.shape[0]
        if not -vocab <= padding_idx < vocab:
            raise ValueError(f"padding_idx must be within [-{vocab}, {vocab}) (num_embeddings {vocab}), got {padding_idx}")
        pad = padding_idx % vocab
    out = ops.fixed_point_embedding(
        ids.reshape(-1).long(), weight, config.weight_bits, config.grad_bits, config.rounding, pad
    )
    return out.reshape(*ids.shape, weight.shape[1])

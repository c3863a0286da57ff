"""nn.Linear / nn.LayerNorm / nn.Embedding replacements computing in dynamic fixed point.

Each subclasses the module it replaces, so parameter names and state_dicts are unchanged and
``from_*`` constructors share the original parameters (no copy). ``config`` sets the widths.
In eval mode they round to nearest (``FixedPointConfig.for_inference``): the same input gives
the same output, with or without no_grad, and PyTorch's random generator is left alone; in
training mode activations and gradients round as ``config`` says (stochastically by default).
"""

from __future__ import annotations

import torch
from torch import nn

from intcore import fixed_point
from intcore.fixed_point import DEFAULT_CONFIG, FixedPointConfig
from intcore.nn.adopt import adopt


def _adopt(cls, source: nn.Module, config: FixedPointConfig):
    """source as an instance of cls (see intcore.nn.adopt) computing with ``config``."""
    if not isinstance(config, FixedPointConfig):
        raise TypeError(f"config must be a FixedPointConfig, got {type(config).__name__}")
    module = adopt(cls, source)
    module.config = config
    return module


def _config(module: nn.Module) -> FixedPointConfig:
    """The config a forward uses: the module's while training, nearest rounding in eval mode."""
    return module.config if module.training else module.config.for_inference()


class FixedPointLinear(nn.Linear):
    """nn.Linear computed by :func:`intcore.fixed_point.fixed_point_linear`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 config: FixedPointConfig = DEFAULT_CONFIG, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.config = config

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: FixedPointConfig = DEFAULT_CONFIG) -> "FixedPointLinear":
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        return _adopt(cls, linear, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fixed_point.fixed_point_linear(x, self.weight, self.bias, _config(self))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.config.describe()}"


class FixedPointLayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the last dimension computed by :func:`fixed_point_layer_norm`."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 config: FixedPointConfig = DEFAULT_CONFIG, device=None, dtype=None):
        super().__init__(normalized_shape, eps, elementwise_affine, bias, device=device, dtype=dtype)
        _check_last_dim_only(self)
        self.config = config

    @classmethod
    def from_layer_norm(cls, norm: nn.LayerNorm, config: FixedPointConfig = DEFAULT_CONFIG) -> "FixedPointLayerNorm":
        if not isinstance(norm, nn.LayerNorm):
            raise TypeError(f"norm must be an nn.LayerNorm, got {type(norm).__name__}")
        _check_last_dim_only(norm)
        if norm.weight is not None and norm.bias is None:
            raise ValueError("FixedPointLayerNorm needs both weight and bias, or neither (got weight without bias)")
        return _adopt(cls, norm, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fixed_point.fixed_point_layer_norm(x, self.weight, self.bias, self.eps, _config(self))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.config.describe()}"


def _check_last_dim_only(norm: nn.LayerNorm) -> None:
    if len(norm.normalized_shape) != 1:
        raise ValueError(
            f"FixedPointLayerNorm normalizes over the last dimension only; got normalized_shape "
            f"{tuple(norm.normalized_shape)}"
        )


class FixedPointEmbedding(nn.Embedding):
    """nn.Embedding computed by :func:`fixed_point_embedding` (padding_idx supported)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None,
                 config: FixedPointConfig = DEFAULT_CONFIG, device=None, dtype=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx, device=device, dtype=dtype)
        self.config = config

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding,
                       config: FixedPointConfig = DEFAULT_CONFIG) -> "FixedPointEmbedding":
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be an nn.Embedding, got {type(embedding).__name__}")
        unsupported = [name for name, on in (("max_norm", embedding.max_norm is not None),
                                             ("scale_grad_by_freq", embedding.scale_grad_by_freq),
                                             ("sparse", embedding.sparse)) if on]
        if unsupported:
            raise ValueError(f"FixedPointEmbedding does not support {', '.join(unsupported)}")
        return _adopt(cls, embedding, config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return fixed_point.fixed_point_embedding(ids, self.weight, self.padding_idx, _config(self))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.config.describe()}"

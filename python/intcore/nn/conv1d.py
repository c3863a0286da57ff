"""Integer forms of Hugging Face's Conv1D, the linear layer of GPT-2: y = x W + b with the
weight stored transposed, W [in_features, out_features].

Each is the intcore linear module of its recipe whose parameter ``weight`` keeps Conv1D's
layout and name, so a GPT-2 state_dict loads both ways and an optimizer built on the original
parameters keeps training them; the products read ``weight.T``, an [out, in] view, and its
gradient reaches the stored parameter through the view.
"""

from __future__ import annotations

import torch
from torch import nn

from intcore.fixed_point import FixedPointConfig
from intcore.int4_training import Int4Config
from intcore.nn.adopt import adopt
from intcore.nn.fixed_point import FixedPointLinear
from intcore.nn.linear import Int4Linear


class _WeightStoredTransposed:
    """Mixin over an intcore linear module: ``weight`` reads the stored [in, out] parameter as
    the [out, in] matrix the linear computation expects."""

    @property
    def weight(self) -> torch.Tensor:
        # A new view at every access, not the Parameter: torch.nn.utils.parametrize and prune,
        # which replace `weight`, do not apply to these modules.
        stored = self._parameters.get("weight")
        if stored is None:
            raise AttributeError(f"{type(self).__name__} has no weight")
        return stored.T

    @classmethod
    def _adopt(cls, conv: nn.Module):
        weight = getattr(conv, "weight", None)
        if not isinstance(weight, nn.Parameter) or weight.dim() != 2:
            raise TypeError(f"{cls.__name__}.from_conv1d: conv must be a transformers Conv1D, got {type(conv).__name__}")
        # adopt keeps the parameters in _parameters, where they must be: the `weight` property
        # makes register_parameter refuse the name.
        module = adopt(cls, conv)
        module.in_features, module.out_features = weight.shape
        return module


class FixedPointConv1D(_WeightStoredTransposed, FixedPointLinear):
    """A Conv1D computed by :func:`intcore.fixed_point.fixed_point_linear`."""

    @classmethod
    def from_conv1d(cls, conv: nn.Module, config: FixedPointConfig) -> "FixedPointConv1D":
        if not isinstance(config, FixedPointConfig):
            raise TypeError(f"config must be a FixedPointConfig, got {type(config).__name__}")
        module = cls._adopt(conv)
        module.config = config
        return module


class Int4Conv1D(_WeightStoredTransposed, Int4Linear):
    """A Conv1D computed by :func:`intcore.int4_linear` (HQ-LSS by default)."""

    @classmethod
    def from_conv1d(cls, conv: nn.Module, config: Int4Config) -> "Int4Conv1D":
        module = cls._adopt(conv)
        module._configure(config)
        return module

"""Drop-in replacements for nn.Linear whose products run in int8 or int4.

They subclass nn.Linear, so parameters keep their names (``weight``, ``bias``), an nn.Linear's
state_dict loads as is, and the float master weights are what the optimizer updates.
"""

from __future__ import annotations

import torch
from torch import nn

from intcore import functional


class _IntegerLinear(nn.Linear):
    _linear = None  # the functional form, set by subclasses

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return type(self)._linear(x, self.weight, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "_IntegerLinear":
        """A module sharing ``linear``'s parameters (no copy)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module.in_features, module.out_features = linear.in_features, linear.out_features
        module.weight = linear.weight
        module.bias = linear.bias
        return module


class Int8Linear(_IntegerLinear):
    """nn.Linear computed with :func:`intcore.int8_linear` (forward and backward)."""

    _linear = staticmethod(functional.int8_linear)


class Int4Linear(_IntegerLinear):
    """nn.Linear computed with :func:`intcore.int4_linear` (forward and backward)."""

    _linear = staticmethod(functional.int4_linear)

"""Drop-in replacements for nn.Linear whose products run in int8 or int4.

They subclass nn.Linear, so parameters keep their names (``weight``, ``bias``), an nn.Linear's
state_dict loads as is, and the float master weights are what the optimizer updates.
"""

from __future__ import annotations

import torch
from torch import nn

from intcore import functional, int4_training
from intcore.int4_training import Int4Config


def _share_parameters(cls, linear: nn.Linear) -> nn.Linear:
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    module.in_features, module.out_features = linear.in_features, linear.out_features
    module.weight = linear.weight
    module.bias = linear.bias
    return module


class Int8Linear(nn.Linear):
    """nn.Linear computed with :func:`intcore.int8_linear` (forward and backward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.int8_linear(x, self.weight, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        """A module sharing ``linear``'s parameters (no copy)."""
        return _share_parameters(cls, linear)


class Int4Linear(nn.Linear):
    """nn.Linear computed with :func:`intcore.int4_linear`: the HQ-LSS method by default.

    With ``Int4Config(block_size="auto")`` the Hadamard block is chosen on the first forward
    by the error-product search and kept in ``self.chosen_block_size``. With
    ``Int4Config(scale="lsq")`` the module also holds the learned step sizes ``x_step`` and
    ``w_step`` (parameters, initialized on the first forward; an nn.Linear state_dict then
    loads with ``strict=False``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 config: Int4Config = Int4Config(), device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._configure(config)

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: Int4Config = Int4Config()) -> "Int4Linear":
        """A module sharing ``linear``'s parameters (no copy)."""
        module = _share_parameters(cls, linear)
        module._configure(config)
        return module

    def _configure(self, config: Int4Config) -> None:
        if not isinstance(config, Int4Config):
            raise TypeError(f"config must be an Int4Config, got {type(config).__name__}")
        self.config, self.chosen_block_size = config, None
        if config.scale == "lsq":
            # Zero marks "not initialized yet": the first forward sets LSQ's initial steps.
            device = self.weight.device
            self.x_step = nn.Parameter(torch.zeros(1, device=device))
            self.w_step = nn.Parameter(torch.zeros(1, device=device))

    def block_size(self, x: torch.Tensor) -> int:
        if self.config.block_size != "auto":
            return self.config.block_size
        if self.chosen_block_size is None:
            self.chosen_block_size = int4_training.search_block_size(
                x, self.weight, "per_row" if self.config.per_row else "per_tensor")
        return self.chosen_block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.recipe == "absmax":
            return int4_training.int4_linear(x, self.weight, self.bias, recipe="absmax")
        block = self.block_size(x)
        steps = {}
        if c.scale == "lsq":
            if self.x_step.item() == 0:
                if x.numel() == 0:  # nothing to set the steps from yet: an empty product
                    return nn.functional.linear(x, self.weight, self.bias)
                with torch.no_grad():
                    self.x_step.copy_(int4_training.lsq_initial_step(x, block))
                    self.w_step.copy_(int4_training.lsq_initial_step(self.weight, block))
            # The op takes float32 steps; a model cast to another dtype keeps its parameters in
            # that dtype, and the cast passes their gradients back.
            steps = {"x_step": self.x_step.float(), "w_step": self.w_step.float()}
        return int4_training.int4_linear(x, self.weight, self.bias, block_size=block, sampling=c.sampling,
                                         budget=c.budget, granularity="per_row" if c.per_row else "per_tensor",
                                         **steps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.config.describe()}"

"""The bottleneck adapter of parameter-efficient fine-tuning: d -> r -> d with GELU.

No inner residual: the caller adds the adapter's output wherever the method puts it (parallel
to a block, or as a whole coupling function of a reversible layer).
"""

from __future__ import annotations

import torch
from torch import nn


class BottleneckAdapter(nn.Module):
    """up(dropout(gelu(down(x)))).

    Weights start as N(0, init_std^2) and biases as zeros (MEFT's initialisation), so at
    init_std = 0.02 the adapter's output is small next to a hidden state and the pretrained
    model's computation is barely moved at the start of training.
    """

    def __init__(self, features: int, bottleneck: int = 8, dropout: float = 0.0, init_std: float = 0.02,
                 device=None, dtype=None):
        super().__init__()
        if features < 1 or bottleneck < 1:
            raise ValueError(f"BottleneckAdapter: features and bottleneck must be at least 1, "
                             f"got {features}, {bottleneck}")
        self.down = nn.Linear(features, bottleneck, device=device, dtype=dtype)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, features, device=device, dtype=dtype)
        with torch.no_grad():
            for linear in (self.down, self.up):
                linear.weight.normal_(0.0, init_std)
                linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(self.act(self.down(x))))

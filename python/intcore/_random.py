"""Seeds for intcore's counter-based generator (Philox4x32-10), drawn from PyTorch's.

Every op with random rounding or sampling takes a 0-dim int64 ``seed`` tensor. It is drawn
with ``torch.randint`` from PyTorch's default CPU generator whatever device the op runs on:
``torch.manual_seed`` reproduces a run, successive calls differ, ``torch.compile`` traces the
draw as an ordinary random op, and reading the seed never synchronizes with a GPU.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

_SEED_HIGH = 2**62


def draw_seed(device: Union[torch.device, str, None] = None) -> Tensor:
    """A fresh seed; ``device`` is accepted for call sites' symmetry and ignored (CPU always)."""
    return torch.randint(0, _SEED_HIGH, (), dtype=torch.int64)


def seed_tensor(seed: Optional[int], device: Union[torch.device, str, None] = None) -> Tensor:
    """``seed`` as the 0-dim int64 CPU tensor ops take; None draws one from PyTorch's generator."""
    if seed is None:
        return draw_seed()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return torch.tensor(seed, dtype=torch.int64)

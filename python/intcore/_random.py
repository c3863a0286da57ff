"""Seeds for intcore's counter-based generator (Philox4x32-10), drawn from PyTorch's.

Every op with random rounding or sampling takes a 0-dim int64 ``seed`` tensor. Drawing it with
``torch.randint`` consumes PyTorch's default generator for the device, so ``torch.manual_seed``
reproduces a run, successive calls differ, and ``torch.compile`` traces the draw as an ordinary
random op (no host synchronization on accelerators).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

_SEED_HIGH = 2**62


def draw_seed(device: Union[torch.device, str] = "cpu") -> Tensor:
    return torch.randint(0, _SEED_HIGH, (), dtype=torch.int64, device=device)


def seed_tensor(seed: Optional[int], device: Union[torch.device, str] = "cpu") -> Tensor:
    """``seed`` as the 0-dim int64 tensor ops take; None draws one from PyTorch's generator."""
    if seed is None:
        return draw_seed(device)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return torch.tensor(seed, dtype=torch.int64, device=device)

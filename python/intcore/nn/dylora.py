"""A dynamic-rank LoRA layer (DyLoRA): one pair of LoRA factors usable at every rank 1..r_max.

    h = base(x) + (alpha / b) B[:, :b] A[:b] dropout(x),   A: [r_max, in], B: [out, r_max]

The rank b is the layer's ``rank`` in evaluation and ``training_rank`` in training (set per step
by intcore.peft.qdylora for all layers at once). Scaling by alpha / b, not alpha / r_max, keeps
the update's size comparable across ranks, so a truncated model is usable as it is.

Modes:
- ``frozen`` (DyLoRA's default): only row b of A and column b of B learn in a step at rank b;
  the lower ranks take part in the product but are detached, so what rank b - 1 learned stays
  what it was and every prefix of the factors is a model in its own right. Ranks above b are
  not used. (The optimizer may still move detached rows through its momentum and weight decay.)
- ``all``: all of the first b rows and columns learn.
- ``fixed``: plain LoRA at rank r_max (``training_rank`` stays r_max).

The base layer (a float nn.Linear, an NF4Linear or an Int4BaseLinear) is kept as
``base_layer`` so that unloading swaps it back. A is initialised like LoRA's (Kaiming uniform)
and B to zero, so the wrapped layer starts as the base layer.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

MODES = ("frozen", "all", "fixed")


class DyLoraLinear(nn.Module):
    def __init__(self, base_layer: nn.Module, r_max: int, alpha: float, dropout: float = 0.0, mode: str = "frozen",
                 dtype: Optional[torch.dtype] = None):
        super().__init__()
        for name in ("in_features", "out_features"):
            if not isinstance(getattr(base_layer, name, None), int):
                raise TypeError(f"DyLoraLinear: base_layer must be a linear layer with {name}, "
                                f"got {type(base_layer).__name__}")
        if isinstance(r_max, bool) or not isinstance(r_max, int) or r_max < 1:
            raise ValueError(f"DyLoraLinear: r_max must be a positive int, got {r_max!r}")
        if mode not in MODES:
            raise ValueError(f"DyLoraLinear: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r_max, self.alpha, self.mode = r_max, float(alpha), mode
        device = next((t.device for t in base_layer.state_dict().values()), None)
        # The factors take the dtype of the weight they adapt (a quantized base no longer has it:
        # its wrapper passes the original layer's), so the update adds to outputs of that dtype.
        if dtype is None:
            dtype = base_layer.weight.dtype if isinstance(base_layer, nn.Linear) else torch.get_default_dtype()
        self.lora_A = nn.Parameter(torch.empty(r_max, self.in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r_max, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.rank = r_max
        self.training_rank = r_max

    def active_rank(self) -> int:
        return self.training_rank if self.training else self.rank

    def factors(self, b: int) -> tuple[Tensor, Tensor]:
        """(A[:b], B[:, :b]) as the product uses them: in frozen-mode training the first b - 1
        ranks are detached, so only row b of A and column b of B get gradients."""
        a, bm = self.lora_A[:b], self.lora_B[:, :b]
        if self.training and self.mode == "frozen" and b > 1:
            a = torch.cat([a[: b - 1].detach(), a[b - 1 :]])
            bm = torch.cat([bm[:, : b - 1].detach(), bm[:, b - 1 :]], dim=1)
        return a, bm

    def delta_weight(self, b: int) -> Tensor:
        """(alpha / b) B[:, :b] A[:b]: what merging at rank b adds to the base weight."""
        return (self.alpha / b) * (self.lora_B[:, :b] @ self.lora_A[:b]).detach()

    def forward(self, x: Tensor) -> Tensor:
        b = self.active_rank()
        a, bm = self.factors(b)
        update = nn.functional.linear(nn.functional.linear(self.lora_dropout(x), a), bm)
        return self.base_layer(x) + (self.alpha / b) * update

    def extra_repr(self) -> str:
        return f"r_max={self.r_max}, alpha={self.alpha}, mode={self.mode}, rank={self.rank}"

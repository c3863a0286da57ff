"""RMSNorm in dynamic fixed point, and which float RMSNorm modules convert to it.

Llama-family models normalize with RMSNorm, each in its own class: transformers' Llama, Qwen2,
Qwen3, Mistral, ... (``weight * x / rms``) and Gemma's (``(1 + weight) * x / rms``, the weight
stored as the scale minus one), and torch's ``nn.RMSNorm``. :func:`rms_norm_form` reads a module's
epsilon and weight offset, or says it is not an RMSNorm we know; :class:`FixedPointRMSNorm` takes
the module's place, sharing its weight under the same name.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from intcore import fixed_point
from intcore.fixed_point import DEFAULT_CONFIG, FixedPointConfig
from intcore.nn.adopt import adopt

# transformers' RMSNorm classes whose scale is 1 + weight; every other "*RMSNorm" class of
# transformers with a `variance_epsilon` scales by weight (Llama's form).
_GEMMA_FORM = ("GemmaRMSNorm", "Gemma2RMSNorm", "Gemma3RMSNorm")


class RMSNormForm(NamedTuple):
    eps: float
    weight_offset: float


def rms_norm_form(module: nn.Module) -> Optional[RMSNormForm]:
    """The epsilon and weight offset of an RMSNorm module we can convert, else None."""
    if type(module) is nn.RMSNorm:
        if len(module.normalized_shape) != 1:
            return None
        # torch's default eps (None) is the input dtype's machine epsilon; our inputs are float32.
        return RMSNormForm(module.eps if module.eps is not None else torch.finfo(torch.float32).eps, 0.0)
    cls = type(module)
    if not (cls.__module__.startswith("transformers.") and cls.__name__.endswith("RMSNorm")):
        return None
    weight = getattr(module, "weight", None)
    if not isinstance(weight, nn.Parameter) or weight.dim() != 1:
        return None
    if cls.__name__ in _GEMMA_FORM:
        return RMSNormForm(float(module.eps), 1.0)
    if hasattr(module, "variance_epsilon"):
        return RMSNormForm(float(module.variance_epsilon), 0.0)
    return None


class FixedPointRMSNorm(nn.Module):
    """RMSNorm over the last dimension computed by :func:`intcore.fixed_point_rms_norm`:
    ``x / sqrt(mean(x^2) + eps) * (weight_offset + weight)``.

    Build one from a float RMSNorm with :meth:`from_rms_norm` (``intcore.convert`` does), or
    directly. In eval mode it rounds to nearest, as the other fixed-point modules do."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, weight_offset: float = 0.0,
                 config: FixedPointConfig = DEFAULT_CONFIG, device=None, dtype=None):
        super().__init__()
        init = torch.zeros if weight_offset else torch.ones
        self.weight = nn.Parameter(init(hidden_size, device=device, dtype=dtype))
        self.eps, self.weight_offset, self.config = float(eps), float(weight_offset), config

    @classmethod
    def from_rms_norm(cls, norm: nn.Module, config: FixedPointConfig = DEFAULT_CONFIG) -> "FixedPointRMSNorm":
        """norm's place taken by a FixedPointRMSNorm training the same weight (no copy)."""
        form = rms_norm_form(norm)
        if form is None:
            raise TypeError(f"norm must be an RMSNorm intcore knows (torch's nn.RMSNorm over one dimension or a "
                            f"transformers *RMSNorm), got {type(norm).__name__}")
        if not isinstance(config, FixedPointConfig):
            raise TypeError(f"config must be a FixedPointConfig, got {type(config).__name__}")
        module = adopt(cls, norm)
        module.eps, module.weight_offset, module.config = form.eps, form.weight_offset, config
        module.float_type = type(norm).__name__
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        config = self.config if self.training else self.config.for_inference()
        return fixed_point.fixed_point_rms_norm(x, self.weight, self.eps, config, self.weight_offset)

    def extra_repr(self) -> str:
        shape = "no weight" if self.weight is None else f"{tuple(self.weight.shape)}"
        offset = f", scale {self.weight_offset:g} + weight" if self.weight_offset else ""
        return f"{shape}, eps={self.eps}{offset}, {self.config.describe()}"

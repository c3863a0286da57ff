"""Named recipes: which format each kind of layer computes in.

    fp32        nothing converted (the float baseline)
    int16       linear, layer norm and embedding in 16-bit dynamic fixed point (paper)
    int12       the same at 12 bits (paper)
    int10       the same at 10 bits (paper)
    int8        8 bits everywhere, with one exponent per row for linear operands and layer-norm
                inputs (ours: a few rows with huge activations no longer coarsen every other
                row's grid; on MiniLM / Rotten Tomatoes 84.6% vs fp32's 84.1%)
    int8-per-tensor  the paper's int8, one exponent per tensor (75.1% there; the paper
                reports about 3 points below fp32 on GLUE with BERT-base)
    int8-mixed  int8 linear layers (an exponent per row, as int8), 16-bit layer norm / RMSNorm
                and embedding (ours: the GEMMs carry the cost, the normalizations carry the
                sensitivity; LLMs need it: at 8 bits SmolLM2's RMSNorms alone cost 23% perplexity)
    int4-hq     every linear layer in INT4 with the Hadamard quantizer, bit splitting and
                leverage score sampling, with a scale per token and per output channel (ours:
                83.75% vs 77.5% with the paper's per-tensor scales; docs/int4-training.md); layer
                norm and embedding stay float

``intcore.convert(model, "int16")`` applies one; ``get(name)`` returns its :class:`Recipe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from typing import Union

from intcore.fixed_point import FixedPointConfig
from intcore.int4_training import Int4Config


@dataclass(frozen=True)
class Recipe:
    name: str
    linear: Optional[Union[FixedPointConfig, Int4Config]] = None
    layer_norm: Optional[FixedPointConfig] = None
    embedding: Optional[FixedPointConfig] = None

    def describe(self) -> str:
        parts = []
        for role in ("linear", "layer_norm", "embedding"):
            config = getattr(self, role)
            parts.append(f"{role}: {config.describe() if config else 'float'}")
        return f"{self.name} ({'; '.join(parts)})"


def _uniform(name: str, bits: int) -> Recipe:
    config = FixedPointConfig.uniform(bits)
    return Recipe(name, linear=config, layer_norm=config, embedding=config)


RECIPES: dict[str, Recipe] = {
    "fp32": Recipe("fp32"),
    "int16": _uniform("int16", 16),
    "int12": _uniform("int12", 12),
    "int10": _uniform("int10", 10),
    "int8": Recipe(
        "int8",
        linear=FixedPointConfig.uniform(8, granularity="per_row"),
        layer_norm=FixedPointConfig.uniform(8, granularity="per_row"),
        embedding=FixedPointConfig.uniform(8),
    ),
    "int8-per-tensor": _uniform("int8-per-tensor", 8),
    "int8-mixed": Recipe(
        "int8-mixed",
        linear=FixedPointConfig.uniform(8, granularity="per_row"),
        layer_norm=FixedPointConfig.uniform(16),
        embedding=FixedPointConfig.uniform(16),
    ),
    "int4-hq": Recipe("int4-hq", linear=Int4Config()),
}


def names() -> list[str]:
    return list(RECIPES)


def get(recipe, fn: str = "recipes.get") -> Recipe:
    """The Recipe for a name (or a Recipe itself); errors name ``fn``, the function called."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (FixedPointConfig, Int4Config)):
        raise TypeError(f"{fn}: a {type(recipe).__name__} configures one kind of layer; pass a recipe name "
                        f"({', '.join(RECIPES)}) or a Recipe, e.g. Recipe('mine', linear=...)")
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise ValueError(f"{fn}: unknown recipe {recipe!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[recipe]

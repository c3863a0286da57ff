"""Finding a transformer's encoder blocks without knowing its class: the longest nn.ModuleList
whose entries are all of one type and contain linear layers (BERT's encoder.layer, GPT's h,
...)."""

from __future__ import annotations

from torch import nn


def _is_linear(module: nn.Module) -> bool:
    """A linear layer in float, quantization-aware or frozen integer form (all have features)."""
    return isinstance(module, nn.Linear) or (hasattr(module, "in_features") and hasattr(module, "out_features"))


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(name, blocks) of the model's stack of transformer blocks."""
    best = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        if not any(_is_linear(m) for m in module[0].modules()):
            continue
        if best is None or len(module) > len(best[1]):
            best = (name, module)
    if best is None:
        raise ValueError(f"qbert: cannot find the encoder blocks of {type(model).__name__} "
                         f"(no nn.ModuleList of identical blocks with linear layers)")
    return best


def block_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The weight matrices of each block's linear layers (what Q-BERT quantizes and measures),
    by block name "<list name>.<index>"."""
    name, blocks = find_blocks(model)
    return {f"{name}.{i}": [m.weight for m in block.modules() if isinstance(m, nn.Linear)]
            for i, block in enumerate(blocks)}

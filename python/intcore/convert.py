"""Model conversion: swap nn.Linear / nn.LayerNorm / RMSNorm / nn.Embedding (and Hugging Face's
Conv1D, the linear layer of GPT-2) for integer modules in place. RMSNorm is torch's nn.RMSNorm and
transformers' per-model classes (Llama, Qwen, Mistral, Gemma's 1 + weight, ...: nn/rms_norm.py);
it computes in the recipe's layer-norm format.

Converted modules share the original parameters and keep their names, so a state_dict saved
before conversion loads after it and the other way round, and an optimizer built on the
original parameters keeps working.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Iterable, Optional, Union

from torch import nn

from intcore import recipes as _recipes
from intcore.nn.fixed_point import FixedPointEmbedding, FixedPointLayerNorm, FixedPointLinear
from intcore.int4_training import Int4Config
from intcore.nn.conv1d import FixedPointConv1D, Int4Conv1D
from intcore.nn.linear import Int4Linear, Int8Linear
from intcore.nn.rms_norm import FixedPointRMSNorm, rms_norm_form

Skip = Union[None, str, Iterable[str], Callable[[str, nn.Module], bool]]


def _skip_predicate(model: nn.Module, skip: Skip) -> Callable[[str, nn.Module], bool]:
    if skip is None:
        return lambda name, module: False
    if callable(skip):
        return skip
    if not isinstance(skip, Iterable):
        raise TypeError(f"convert: skip must be a module name pattern, a list of them or a callable, got "
                        f"{type(skip).__name__} {skip!r}")
    patterns = [skip] if isinstance(skip, str) else list(skip)
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"convert: skip patterns must be strings, got {type(p).__name__}")

    def matches(name: str, pattern: str) -> bool:
        return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")

    # A pattern that names nothing is a typo that would convert what it meant to keep.
    names = [name for name, _ in model.named_modules() if name]
    for p in patterns:
        if not any(matches(name, p) for name in names):
            examples = ", ".join(name for name, _ in model.named_children())
            raise ValueError(f"convert: skip pattern {p!r} matches no module of the model (its top-level modules: "
                             f"{examples or 'none'})")
    return lambda name, module: any(matches(name, p) for p in patterns)


def _converted_modules() -> tuple:
    """intcore's integer and quantized modules: what a conversion puts in a model."""
    from intcore import qbert  # noqa: F401  (first: group_quantized imports part of it)
    from intcore.nn import group_quantized

    return (FixedPointLinear, FixedPointLayerNorm, FixedPointRMSNorm, FixedPointEmbedding, Int8Linear, Int4Linear,
            group_quantized.GroupQuantizedLinear, group_quantized.IntegerGroupLinear,
            group_quantized.GroupQuantizedEmbedding, group_quantized.IntegerGroupEmbedding)


def _first_converted(model: nn.Module) -> Optional[tuple[str, nn.Module]]:
    converted = _converted_modules()
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, converted)), None)


def _nothing_to_convert(model: nn.Module) -> ValueError:
    """The error of a call that would change nothing in a model converted before: a second
    recipe would otherwise be silently ignored."""
    name, module = _first_converted(model)
    return ValueError(f"convert: nothing to convert: the model is already converted ({name or 'the model'} is a "
                      f"{type(module).__name__}) and has no float module this call converts; convert the float "
                      f"model, using skip= for what a later call converts another way")


def is_transformers_conv1d(module: nn.Module) -> bool:
    """Hugging Face's Conv1D: GPT-2's linear layer, its weight stored [in, out]."""
    return type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers")


def _replacement(module: nn.Module, recipe: "_recipes.Recipe") -> Optional[nn.Module]:
    if is_transformers_conv1d(module) and isinstance(recipe.linear, Int4Config):
        return Int4Conv1D.from_conv1d(module, recipe.linear)
    if is_transformers_conv1d(module) and recipe.linear is not None:
        return FixedPointConv1D.from_conv1d(module, recipe.linear)
    # Exact types only: an already converted module (a subclass) is left alone.
    if type(module) is nn.Linear and isinstance(recipe.linear, Int4Config):
        return Int4Linear.from_linear(module, recipe.linear)
    if type(module) is nn.Linear and recipe.linear is not None:
        return FixedPointLinear.from_linear(module, recipe.linear)
    if type(module) is nn.LayerNorm and recipe.layer_norm is not None:
        return FixedPointLayerNorm.from_layer_norm(module, recipe.layer_norm)
    if recipe.layer_norm is not None and rms_norm_form(module) is not None:
        return FixedPointRMSNorm.from_rms_norm(module, recipe.layer_norm)
    if type(module) is nn.Embedding and recipe.embedding is not None:
        return FixedPointEmbedding.from_embedding(module, recipe.embedding)
    return None


def _qbert(model: nn.Module, config, skip: Skip) -> nn.Module:
    from intcore import qbert

    if skip is not None:
        raise ValueError("convert: a QBertConfig names its float modules itself (QBertConfig.skip); pass skip=None")
    for name, module in model.named_modules():
        if is_transformers_conv1d(module) and not qbert.apply.skipped(name, config):
            raise ValueError(f"convert: {name} is a transformers Conv1D (GPT-2's linear layer), which Q-BERT does "
                             f"not quantize")
    if _first_converted(model) is not None and not any(
            type(m) in (nn.Linear, nn.Embedding) and not qbert.apply.skipped(n, config) for n, m in model.named_modules()):
        raise _nothing_to_convert(model)
    return qbert.quantize_model(model, config)


def _config_transforms() -> dict:
    """Configs that are not recipes, by type: each converts the whole model its own way."""
    from intcore.qbert.config import QBertConfig

    return {QBertConfig: _qbert}


def convert(model: nn.Module, recipe="int16", skip: Skip = None) -> nn.Module:
    """Converts ``model`` in place to ``recipe``: a name from :mod:`intcore.recipes`, a Recipe,
    or a method's config (a :class:`intcore.qbert.QBertConfig`: quantization-aware Q-BERT layers).

    skip: module names to leave in float -- a glob pattern or list of them ("classifier",
    "*.pooler.*"; a pattern also covers the module's children; each must name some module), or a
    callable ``(name, module) -> bool``. Returns the model; a model that is itself a layer
    (an nn.Linear, say) cannot change type in place, so use the returned module.

    Only float modules change: modules converted by an earlier call keep their format, so two
    calls with skip= give a model of two recipes. A call that would change nothing in a model
    converted before is refused (a second recipe is not applied over the first).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert: model must be an nn.Module, got {type(model).__name__}")
    transform = _config_transforms().get(type(recipe))
    if transform is not None:
        return transform(model, recipe, skip)
    recipe = _recipes.get(recipe, "convert")
    should_skip = _skip_predicate(model, skip)
    swaps = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if should_skip(name, child):
                continue
            new = _replacement(child, recipe)
            if new is not None:
                swaps.append((parent, child_name, new))
    # A model that is itself a layer cannot be swapped in place: its converted form is returned.
    root = _replacement(model, recipe)
    if not swaps and root is None and _first_converted(model) is not None:
        raise _nothing_to_convert(model)
    for parent, child_name, new in swaps:
        setattr(parent, child_name, new)
    return root or model


def _format(module: nn.Module) -> Optional[str]:
    if isinstance(module, (FixedPointLinear, FixedPointLayerNorm, FixedPointRMSNorm, FixedPointEmbedding)):
        return module.config.describe()
    if isinstance(module, Int8Linear):
        return "int8 absmax"
    if isinstance(module, Int4Linear):
        return module.config.describe()
    bits = getattr(module, "bits", None)
    if bits is not None and type(module).__module__ == "intcore.nn.group_quantized":
        return f"Q-BERT {bits}-bit" + (" (integer)" if type(module).__name__.startswith("Integer") else " (QAT)")
    if (isinstance(module, (nn.Linear, nn.LayerNorm, nn.Embedding)) or is_transformers_conv1d(module)
            or rms_norm_form(module) is not None):
        dtypes = {p.dtype for p in module.parameters(recurse=False)}
        return "float" + (f" ({', '.join(str(d).replace('torch.', '') for d in dtypes)})" if dtypes else "")
    return None


def summary(model: nn.Module) -> str:
    """A table of the model's linear, normalization and embedding modules and their formats."""
    rows = []
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        fmt = _format(module)
        if fmt is None:
            continue
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append((name or "(model)", type(module).__name__, fmt, params))
        counts[fmt] = counts.get(fmt, 0) + params
    width = max([len(r[0]) for r in rows] + [6])
    type_width = max([len(r[1]) for r in rows] + [4])
    lines = [f"{'module':<{width}}  {'type':<{type_width}}  {'params':>10}  format"]
    lines += [f"{n:<{width}}  {t:<{type_width}}  {p:>10,}  {f}" for n, t, f, p in rows]
    total = sum(counts.values()) or 1
    lines.append("parameters by format: " + ", ".join(f"{f} {c / total:.1%}" for f, c in counts.items()))
    return "\n".join(lines)

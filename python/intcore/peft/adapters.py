"""What every parameter-efficient method shares: adapter parameters are the ones whose name
contains the method's prefix (``adapter_`` for MEFT, ``lora_`` for QDyLoRA), so freezing,
reporting and saving find them without a list to keep in sync.

Adapter files are safetensors holding only the adapter tensors (and any extra trainable
modules named in ``also``, e.g. the classifier), with the method's config as JSON metadata.
They are written atomically and read back before they are renamed into place
(intcore.atomic_files), so a crash never leaves a truncated file under the final name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional, Union

from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from intcore.atomic_files import save_safetensors


def _matches(name: str, prefix: str, also: Iterable[str]) -> bool:
    parts = name.split(".")
    return any(part.startswith(prefix) for part in parts) or any(a in parts for a in also)


def check_module_names(fn: str, model: nn.Module, names: Iterable[str], what: str) -> None:
    """Each of ``names`` (modules trained and saved beside the adapters) must name a module of the
    model: a typo would otherwise leave that module frozen without a word."""
    parts = [n.split(".") for n, _ in model.named_modules()]
    for name in names:
        if not any(name in p for p in parts):
            raise ValueError(f"{fn}: {what} entry {name!r} matches no module of the model")


def mark_only_adapters_trainable(model: nn.Module, prefix: str, also: Iterable[str] = ("classifier",)) -> nn.Module:
    """Sets requires_grad on the adapter parameters (and modules named in ``also``) only."""
    also = tuple(also)
    found = False
    for name, p in model.named_parameters():
        trainable = _matches(name, prefix, also)
        found |= any(part.startswith(prefix) for part in name.split("."))
        p.requires_grad_(trainable)
    if not found:
        raise ValueError(f"mark_only_adapters_trainable: the model has no parameter named with prefix {prefix!r}")
    return model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; parameters shared between modules count once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def print_trainable_parameters(model: nn.Module) -> str:
    trainable, total = trainable_parameters(model)
    line = f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / max(total, 1):.4f}"
    print(line)
    return line


def adapter_state_dict(model: nn.Module, prefix: str, also: Iterable[str] = ("classifier",)) -> dict:
    also = tuple(also)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if _matches(k, prefix, also)}


def save_adapters(model: nn.Module, path: Union[str, Path], prefix: str, config: dict,
                  also: Iterable[str] = ("classifier",)) -> Path:
    """Writes the adapter tensors and ``config`` (JSON metadata) to ``path`` atomically."""
    path = Path(path)
    tensors = adapter_state_dict(model, prefix, also)
    if not tensors:
        raise ValueError(f"save_adapters: the model has no tensor named with prefix {prefix!r}")
    return save_safetensors("save_adapters", path, tensors, {"intcore_config": json.dumps(config), "prefix": prefix})


# The methods' adapter name prefixes, with the function that loads each one's files.
_LOADERS = {"adapter_": "MEFT adapters (load them with load_meft_adapters)",
            "lora_": "QDyLoRA adapters (load them with load_qdylora)"}


def read_adapter_config(path: Union[str, Path], fn: str = "read_adapter_config", prefix: Optional[str] = None) -> dict:
    """The config stored with an adapter file; with ``prefix``, the file must hold that method's
    adapters (an error from ``fn`` says which method's it holds otherwise)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "intcore_config" not in metadata:
        raise ValueError(f"{fn}: {path} is not an intcore adapter file (no intcore_config metadata)")
    if prefix is not None and metadata.get("prefix") != prefix:
        held = _LOADERS.get(metadata.get("prefix"), f"adapters named {metadata.get('prefix')!r}")
        raise ValueError(f"{fn}: {path} holds {held}")
    return json.loads(metadata["intcore_config"])


def load_adapters(model: nn.Module, path: Union[str, Path]) -> nn.Module:
    """Loads adapter tensors saved by save_adapters into a model wrapped the same way; every
    tensor must exist in the model with the same shape."""
    tensors = load_file(str(path))
    own = model.state_dict()
    missing = [k for k in tensors if k not in own]
    if missing:
        raise ValueError(f"load_adapters: {path} holds tensors the model lacks (wrapped differently?): {missing[:3]}")
    for k, v in tensors.items():
        if own[k].shape != v.shape:
            raise ValueError(f"load_adapters: {k} has shape {tuple(v.shape)} in {path}, {tuple(own[k].shape)} in the model")
    model.load_state_dict(tensors, strict=False)
    return model

"""Applying a QBertConfig to a model (quantization-aware training form), freezing it to the
integer form, and measuring its weight bytes."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from intcore.atomic_files import save_safetensors
from intcore.nn.group_quantized import (
    GroupQuantizedEmbedding,
    GroupQuantizedLinear,
    IntegerGroupEmbedding,
    IntegerGroupLinear,
)
from intcore.qbert.blocks import find_blocks
from intcore.qbert.config import QBertConfig


def skipped(name: str, config: QBertConfig) -> bool:
    """Whether module ``name`` stays in float under ``config.skip`` (a pattern covers children)."""
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, p + ".*") for p in config.skip)


def quantize_model(model: nn.Module, config: QBertConfig) -> nn.Module:
    """Swaps, in place, every linear layer for a GroupQuantizedLinear (block bits inside the
    blocks, other_bits elsewhere) and every embedding for a GroupQuantizedEmbedding, except
    modules named in config.skip. Parameters are shared, so a float state_dict still loads."""
    list_name, blocks = find_blocks(model)
    if len(blocks) != len(config.block_bits):
        raise ValueError(f"qbert: the config gives bits for {len(config.block_bits)} blocks but "
                         f"{type(model).__name__} has {len(blocks)} in {list_name}")
    block_of = {}
    for i, block in enumerate(blocks):
        for m in block.modules():
            block_of[id(m)] = i
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if skipped(name, config):
                continue
            if type(child) is nn.Linear:
                bits = config.block_bits[block_of[id(child)]] if id(child) in block_of else config.other_bits
                setattr(parent, child_name, GroupQuantizedLinear.from_linear(child, bits, config.groups, config.percentile))
            elif type(child) is nn.Embedding:
                setattr(parent, child_name, GroupQuantizedEmbedding.from_embedding(child, config.embedding_bits))
    return model


def freeze(model: nn.Module) -> nn.Module:
    """Replaces, in place, every quantization-aware layer by its integer form (codes only)."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, GroupQuantizedLinear):
                setattr(parent, child_name, IntegerGroupLinear.freeze(child))
            elif isinstance(child, GroupQuantizedEmbedding):
                setattr(parent, child_name, IntegerGroupEmbedding.freeze(child))
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights as stored: packed codes with their scales for integer
    layers, the tensors' own sizes for everything else (biases, layer norms, classifier)."""
    total, counted = 0, set()
    for module in model.modules():
        if isinstance(module, (IntegerGroupLinear, IntegerGroupEmbedding)):
            total += module.storage_bytes()
            counted.update(id(t) for t in (module.codes, module.step, module.lo))
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in counted and t.is_floating_point():
            counted.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _check_frozen_with(fn: str, model: nn.Module, config: QBertConfig) -> None:
    """The model is frozen (integer layers only) and holds the bits ``config`` gives each layer,
    so that load_quantized, which rebuilds it from the config, can load its state."""
    list_name, blocks = find_blocks(model)
    if len(blocks) != len(config.block_bits):
        raise ValueError(f"{fn}: the config gives bits for {len(config.block_bits)} blocks but "
                         f"{type(model).__name__} has {len(blocks)} in {list_name}")
    block_of = {id(m): i for i, block in enumerate(blocks) for m in block.modules()}
    integer_layers = 0
    for name, module in model.named_modules():
        if isinstance(module, (GroupQuantizedLinear, GroupQuantizedEmbedding)):
            raise ValueError(f"{fn}: the model is not frozen ({name} is a {type(module).__name__}); call "
                             f"qbert.freeze(model) first")
        if not name or skipped(name, config):
            continue
        if isinstance(module, IntegerGroupLinear):
            expected = config.block_bits[block_of[id(module)]] if id(module) in block_of else config.other_bits
        elif isinstance(module, IntegerGroupEmbedding):
            expected = config.embedding_bits
        elif type(module) in (nn.Linear, nn.Embedding):
            raise ValueError(f"{fn}: {name} is a float {type(module).__name__}, but the config quantizes it")
        else:
            continue
        integer_layers += 1
        if module.bits != expected:
            raise ValueError(f"{fn}: {name} holds {module.bits}-bit codes, but the config gives it {expected} bits")
    if not integer_layers:
        raise ValueError(f"{fn}: the model has no Q-BERT integer layers (convert with the config, then freeze)")


def save_quantized(model: nn.Module, config: QBertConfig, path) -> Path:
    """Writes a frozen model's state (codes, scales, offsets, float weights) and its config to a
    safetensors file, atomically and verified by reading it back. The model must be frozen with
    this config (checked), so that load_quantized can rebuild it."""
    _check_frozen_with("save_quantized", model, config)
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_safetensors("save_quantized", path, tensors, {"qbert_config": config.to_json()})


def load_quantized(model: nn.Module, path) -> tuple[nn.Module, QBertConfig]:
    """Turns a float model of the same architecture into the frozen model saved at `path`."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "qbert_config" not in metadata:
        raise ValueError(f"load_quantized: {path} was not written by save_quantized (no qbert_config)")
    config = QBertConfig(**json.loads(metadata["qbert_config"]))
    freeze(quantize_model(model, config))
    model.load_state_dict(load_file(str(path)))
    return model, config

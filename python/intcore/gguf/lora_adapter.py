"""LoRA and QDyLoRA adapters as GGUF LoRA adapter files, which llama.cpp applies over the
original .gguf (``llama-cli -m model.gguf --lora adapter.gguf``; llama-cpp-python's
``Llama(model_path, lora_path=...)``).

The file (the layout llama.cpp's convert_lora_to_gguf.py writes and src/llama-adapter.cpp reads):
``general.type = "adapter"``, ``general.architecture`` = the base model's, ``adapter.type =
"lora"``, ``adapter.lora.alpha`` (float32); per adapted weight ``blk.N.<name>.weight.lora_a``
[r, in] and ``.lora_b`` [out, r] in float32 (PEFT's orientation, torch shapes). llama.cpp adds
scale * B (A x) with scale = alpha / r, r read from lora_b's shape; a DyLoRA layer at rank b adds
(alpha / b) B[:, :b] A[:b] x, so writing the first b ranks with the same alpha gives llama.cpp
exactly that update. For q and k of llama-style models, whose rows llama.cpp stores permuted
(intcore.gguf.q4_blocks), B's rows are written in llama.cpp's order: B A's rows are W's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from intcore.gguf import q4_blocks


def _heads(model: nn.Module, module: str) -> int:
    config = model.config
    if module.endswith("k_proj"):
        return getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return config.num_attention_heads


def lora_tensors(model: nn.Module, rank: Optional[int], architecture: str) -> dict[str, np.ndarray]:
    """GGUF tensor name -> float32 array of every LoRA layer's first ``rank`` ranks (default: the
    rank each layer evaluates at), in llama.cpp's names and row order."""
    from intcore.nn.dylora import DyLoraLinear

    out = {}
    for name, layer in model.named_modules():
        if not isinstance(layer, DyLoraLinear):
            continue
        target = q4_blocks.tensor_name(name)
        if target is None:
            raise ValueError(f"write_lora_adapter: {name} is not a linear layer of a llama-family decoder block, "
                             f"which a GGUF LoRA adapter can name")
        b = rank or layer.rank
        a = layer.lora_A[:b].detach().float().cpu()
        bm = layer.lora_B[:, :b].detach().float().cpu()
        if architecture in q4_blocks.ROTARY_PERMUTED and name.endswith(("q_proj", "k_proj")):
            stored = torch.empty_like(bm)
            stored[q4_blocks.rotary_rows(bm.shape[0], _heads(model, name))] = bm
            bm = stored
        out[f"{target}.lora_a"] = a.numpy()
        out[f"{target}.lora_b"] = bm.numpy()
    if not out:
        raise ValueError("write_lora_adapter: the model has no LoRA layers")
    return out


def write_lora_adapter(model: nn.Module, path, architecture: str, rank: Optional[int] = None,
                       name: str = "intcore LoRA") -> Path:
    """Writes the model's LoRA/QDyLoRA factors at ``rank`` as a GGUF LoRA adapter for a base
    model of ``architecture`` (the base .gguf's general.architecture)."""
    import gguf

    from intcore.atomic_files import fsync_directory

    layers = [m for m in model.modules() if hasattr(m, "lora_A")]
    alphas = {float(m.alpha) for m in layers}
    if len(alphas) > 1:
        raise ValueError(f"write_lora_adapter: a GGUF adapter holds one alpha; the layers have {sorted(alphas)}")
    tensors = lora_tensors(model, rank, architecture)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_name(name)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alphas.pop())
        for tensor, data in tensors.items():
            writer.add_tensor(tensor, np.ascontiguousarray(data, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        # Read back before it replaces an earlier file: an adapter that does not round-trip is never published.
        _, back = read_lora_adapter(tmp)
        if back.keys() != tensors.keys() or any(not np.array_equal(back[k], tensors[k]) for k in tensors):
            raise OSError(f"write_lora_adapter: {path} did not read back identically")
        os.replace(tmp, path)
        fsync_directory(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_lora_adapter(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata: architecture, type, alpha; tensor name -> float32 array) of a GGUF LoRA adapter."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def value(key):
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    meta = {"architecture": value("general.architecture"), "type": value("general.type"),
            "adapter_type": value("adapter.type"), "alpha": value("adapter.lora.alpha")}
    tensors = {}
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))  # ggml lists the fastest dimension first
        tensors[t.name] = np.asarray(t.data, dtype=np.float32).reshape(shape)
    return meta, tensors

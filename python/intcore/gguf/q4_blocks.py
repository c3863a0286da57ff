"""A GGUF file's own 4-bit blocks (Q4_0, Q4_1), read as they are stored, and the names that tie a
GGUF tensor to its transformers module.

Block layout (llama.cpp's ggml-common.h; 32 weights along a row):

    Q4_1  fp16 d, fp16 m, 16 bytes of codes:  w = d q + m,        q in 0..15
    Q4_0  fp16 d,         16 bytes of codes:  w = d (q - 8)
    byte j of the codes holds weight j in its low nibble and weight j + 16 in its high nibble.

llama.cpp stores the q and k projections of llama-style models with the rows of each head's two
rotary halves interleaved; transformers undoes that when it loads a GGUF file, so the blocks are
read in transformers' row order too (rows are permuted whole: a block never straddles two rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

BLOCK = 32
FORMATS = ("Q4_0", "Q4_1")

# GGUF tensor name (within block N: "blk.N.<name>.weight") -> transformers module (within layer N:
# "model.layers.N.<module>"), for the llama-family architectures transformers reads.
LINEAR_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# Architectures whose q and k rows llama.cpp permutes for its rotary embedding (transformers'
# LlamaTensorProcessor undoes it).
ROTARY_PERMUTED = ("llama", "mistral")


def module_name(tensor: str) -> Optional[str]:
    """The transformers module of a GGUF linear weight ("blk.3.attn_q.weight" ->
    "model.layers.3.self_attn.q_proj"), or None for other tensors."""
    parts = tensor.split(".")
    if len(parts) != 4 or parts[0] != "blk" or parts[3] != "weight" or parts[2] not in LINEAR_NAMES:
        return None
    return f"model.layers.{parts[1]}.{LINEAR_NAMES[parts[2]]}"


def tensor_name(module: str) -> Optional[str]:
    """The GGUF weight of a transformers module (the inverse of module_name), or None."""
    parts = module.split(".")
    if len(parts) < 4 or parts[:2] != ["model", "layers"]:
        return None
    inner = ".".join(parts[3:])
    for gguf_name, hf_name in LINEAR_NAMES.items():
        if inner == hf_name:
            return f"blk.{parts[2]}.{gguf_name}.weight"
    return None


def rotary_rows(rows: int, heads: int) -> torch.Tensor:
    """The row order transformers reads llama.cpp's q or k in: out[i] = the stored row that becomes
    row i (transformers' _reverse_permute_weights applied to row numbers)."""
    half = rows // heads // 2
    return torch.arange(rows).reshape(heads, half, 2).transpose(1, 2).reshape(rows)


@dataclass
class Q4Tensor:
    """One weight [out, in] as stored: codes (uint8 [out, in / 2], the file's nibble order),
    scales d and, for Q4_1, mins m (float16 [out, in / 32])."""
    format: str
    codes: torch.Tensor
    scales: torch.Tensor
    mins: Optional[torch.Tensor]

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape[0], self.codes.shape[1] * 2

    def rows(self, order: torch.Tensor) -> "Q4Tensor":
        return Q4Tensor(self.format, self.codes[order].contiguous(), self.scales[order].contiguous(),
                        None if self.mins is None else self.mins[order].contiguous())


def split_blocks(raw: np.ndarray, fmt: str) -> Q4Tensor:
    """A tensor's raw bytes (uint8 [out, blocks * block bytes]) as a Q4Tensor."""
    if fmt not in FORMATS:
        raise ValueError(f"split_blocks: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    header = 4 if fmt == "Q4_1" else 2
    out = raw.shape[0]
    blocks = raw.reshape(out, -1, header + BLOCK // 2)
    scales = torch.from_numpy(np.ascontiguousarray(blocks[:, :, 0:2]).view(np.float16)[..., 0].copy())
    mins = (torch.from_numpy(np.ascontiguousarray(blocks[:, :, 2:4]).view(np.float16)[..., 0].copy())
            if fmt == "Q4_1" else None)
    codes = torch.from_numpy(np.ascontiguousarray(blocks[:, :, header:]).reshape(out, -1).copy())
    return Q4Tensor(fmt, codes, scales, mins)


def unpack_codes(codes: torch.Tensor) -> torch.Tensor:
    """uint8 [out, in / 2] in the file's nibble order -> codes 0..15 as uint8 [out, in]."""
    out = codes.shape[0]
    blocks = codes.reshape(out, -1, BLOCK // 2)
    return torch.cat([blocks & 0x0F, blocks >> 4], dim=2).reshape(out, -1)


def dequantize(t: Q4Tensor) -> torch.Tensor:
    """The float32 weight [out, in], computed as gguf-py computes it (float32 d * q, then + m;
    Q4_0: d * (q - 8)), so the two agree bit for bit."""
    q = unpack_codes(t.codes).reshape(t.shape[0], -1, BLOCK).float()
    d = t.scales.float()[:, :, None]
    if t.format == "Q4_0":
        w = d * (q - 8)
    else:
        w = (d * q) + t.mins.float()[:, :, None]
    return w.reshape(t.shape)


def read_q4_tensors(path: Path) -> tuple[str, dict[str, Q4Tensor]]:
    """(architecture, transformers module name -> its Q4Tensor in transformers' row order) for
    every Q4_0/Q4_1 linear weight of a GGUF file."""
    from intcore.gguf.header import checked_reader

    info, reader = checked_reader(path)

    def field(key):
        f = reader.fields.get(key)
        return None if f is None else int(f.contents())

    heads, kv_heads = field(f"{info.architecture}.attention.head_count"), field(
        f"{info.architecture}.attention.head_count_kv")
    found = {}
    for tensor in reader.tensors:
        fmt = tensor.tensor_type.name
        module = module_name(tensor.name)
        if fmt not in FORMATS or module is None:
            continue
        q4 = split_blocks(np.asarray(tensor.data), fmt)
        if info.architecture in ROTARY_PERMUTED and module.endswith(("q_proj", "k_proj")):
            n = heads if module.endswith("q_proj") or kv_heads in (None, heads) else kv_heads
            q4 = q4.rows(rotary_rows(q4.shape[0], n))
        found[module] = q4
    return info.architecture, found


def attach_q4_blocks(model: torch.nn.Module, path: Path) -> int:
    """Keeps each Q4_0/Q4_1 weight's blocks beside the nn.Linear that transformers loaded from it
    (``linear.gguf_blocks``), for a 4-bit base that uses them as they are (intcore.nn.GGUFQ4Linear).
    Each layer's float weight must be the blocks' dequantization bit for bit: transformers and
    this reader then agree on the layer, its row order and the format. Returns the count."""
    from intcore.gguf.header import GGUFError

    _, tensors = read_q4_tensors(path)
    modules = dict(model.named_modules())
    for name, q4 in tensors.items():
        linear = modules.get(name)
        if not isinstance(linear, torch.nn.Linear) or tuple(linear.weight.shape) != q4.shape:
            raise GGUFError(f"{path}: its tensor for {name} does not match the loaded model's layer")
        if not torch.equal(dequantize(q4), linear.weight.detach().float().cpu()):
            raise GGUFError(f"{path}: the blocks of {name} do not dequantize to the weight transformers loaded")
        linear.gguf_blocks = q4
    return len(tensors)

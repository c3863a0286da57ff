"""GGUF files as model input: llama.cpp's quantized checkpoints, checked from their header
(header.py) and loaded as plain float32 transformers models with their tokenizers (load.py); their
own Q4_0/Q4_1 blocks (q4_blocks.py) as the frozen base of LoRA adapters, multiplied in integers by
activations in llama.cpp's 8-bit blocks (q8_blocks.py); the adapters go back to llama.cpp as GGUF
LoRA adapters (lora_adapter.py)."""

from intcore.gguf.header import (
    ACCEPTED_TENSOR_TYPES,
    DECODER_ARCHITECTURES,
    GGUFError,
    GGUFInfo,
    describe,
    supported_architectures,
)
from intcore.gguf.load import is_gguf, load_causal_lm
from intcore.gguf.q4_blocks import attach_q4_blocks, read_q4_tensors

__all__ = [
    "ACCEPTED_TENSOR_TYPES",
    "DECODER_ARCHITECTURES",
    "GGUFError",
    "GGUFInfo",
    "attach_q4_blocks",
    "describe",
    "is_gguf",
    "load_causal_lm",
    "read_q4_tensors",
    "supported_architectures",
]

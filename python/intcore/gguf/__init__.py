"""GGUF files as model input: llama.cpp's quantized checkpoints, checked from their header
(header.py) and loaded as plain float32 transformers models with their tokenizers (load.py)."""

from intcore.gguf.header import (
    ACCEPTED_TENSOR_TYPES,
    DECODER_ARCHITECTURES,
    GGUFError,
    GGUFInfo,
    describe,
    supported_architectures,
)
from intcore.gguf.load import is_gguf, load_causal_lm

__all__ = [
    "ACCEPTED_TENSOR_TYPES",
    "DECODER_ARCHITECTURES",
    "GGUFError",
    "GGUFInfo",
    "describe",
    "is_gguf",
    "load_causal_lm",
    "supported_architectures",
]

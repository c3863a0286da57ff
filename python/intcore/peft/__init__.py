"""Parameter-efficient fine-tuning methods, in the style of HF PEFT: one config class and one
wrap function per method (meft.py, qdylora.py), sharing the pieces in adapters.py: adapter
parameters found by their name prefix, freezing everything else, the trainable-parameter report,
and adapter-only checkpoints in safetensors."""

from intcore.peft.adapters import (
    load_adapters,
    mark_only_adapters_trainable,
    print_trainable_parameters,
    save_adapters,
    trainable_parameters,
)

__all__ = [
    "load_adapters",
    "mark_only_adapters_trainable",
    "print_trainable_parameters",
    "save_adapters",
    "trainable_parameters",
]

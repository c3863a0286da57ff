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
from intcore.peft.meft import (
    MeftConfig,
    audit_reconstruction,
    load_meft_adapters,
    save_meft_adapters,
    wrap_meft,
)
from intcore.peft.qdylora import (
    QDyLoraConfig,
    base_storage,
    draw_rank,
    load_qdylora,
    merge_and_unload,
    save_qdylora,
    set_rank,
    wrap_qdylora,
)

__all__ = [
    "MeftConfig",
    "QDyLoraConfig",
    "audit_reconstruction",
    "base_storage",
    "draw_rank",
    "load_adapters",
    "load_meft_adapters",
    "load_qdylora",
    "mark_only_adapters_trainable",
    "merge_and_unload",
    "print_trainable_parameters",
    "save_adapters",
    "save_meft_adapters",
    "save_qdylora",
    "set_rank",
    "trainable_parameters",
    "wrap_meft",
    "wrap_qdylora",
]

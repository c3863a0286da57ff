"""Turning a recipe name into a model and a forward context, the same way in every driver.

    fp32          the model as it is
    bf16          float weights, forward under torch.autocast(bfloat16)
    int16 ... int8-mixed   intcore.convert(model, recipe) (see intcore.recipes)
"""

from __future__ import annotations

import contextlib
import sys

import torch
from torch import nn

import intcore
from intcore import recipes
from intcore.drivers.errors import DriverError

FLOAT_RECIPES = ("fp32", "bf16")


def check_recipes(names: list[str]) -> None:
    known = ["fp32", "bf16"] + [n for n in recipes.names() if n != "fp32"]
    for name in names:
        if name not in known:
            raise DriverError(f"unknown recipe {name!r}; choose from {', '.join(known)}")


def check_linear_layers(model: nn.Module, method: str) -> None:
    """Refuses, for a method that works on nn.Linear layers (QDyLoRA, Q-BERT), a model whose
    linear layers are transformers Conv1D (GPT-2 style)."""
    from intcore.convert import is_transformers_conv1d

    for name, module in model.named_modules():
        if is_transformers_conv1d(module):
            raise DriverError(f"{method} works on nn.Linear layers, and {type(model).__name__} keeps its linear layers "
                              f"as transformers Conv1D ({name}, GPT-2 style); its full fine-tuning recipes run, or "
                              f"use a BERT-style model (BERT, RoBERTa, ELECTRA, MiniLM)")


def apply(model: nn.Module, recipe: str, skip: str) -> nn.Module:
    """The model in ``recipe``'s formats, keeping the head module ``skip`` in float where the
    model has one of that name; a head named otherwise (BART's ``classification_head``, say) is
    converted with the rest, and a note says so."""
    if recipe not in FLOAT_RECIPES:
        has_head = any(name == skip for name, _ in model.named_modules())
        if not has_head:
            print(f"note: {type(model).__name__} has no module named {skip!r}: its classification head runs in "
                  f"{recipe} with the rest", file=sys.stderr)
        intcore.convert(model, recipe, skip=skip if has_head else None)
    return model


def forward_context(recipe: str, device: torch.device):
    if recipe == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

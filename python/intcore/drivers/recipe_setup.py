"""Turning a recipe name into a model and a forward context, the same way in every driver.

    fp32          the model as it is
    bf16          float weights, forward under torch.autocast(bfloat16)
    int16 ... int8-mixed   intcore.convert(model, recipe) (see intcore.recipes)
"""

from __future__ import annotations

import contextlib

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


def apply(model: nn.Module, recipe: str, skip) -> nn.Module:
    if recipe not in FLOAT_RECIPES:
        intcore.convert(model, recipe, skip=skip)
    return model


def forward_context(recipe: str, device: torch.device):
    if recipe == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

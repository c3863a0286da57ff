"""Fine-tuning methods of `intcore finetune --method`: how the loaded float model becomes the
model that trains, and what a method adds to the results.

    full      every weight trains; the recipe converts the model (the default)

Parameter-efficient methods (intcore.peft) add their entries to METHODS below.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from intcore.drivers import recipe_setup
from intcore.drivers.errors import DriverError


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    # (float model, recipe, parsed args) -> the model to train (trainable parameters set)
    prepare: Callable[[nn.Module, str, argparse.Namespace], nn.Module]
    # (trained model, evaluate, args) -> extra results for results.json (e.g. accuracy at every
    # rank); evaluate(model=None) gives the test metrics of the given model (default: the
    # trained one, as it is now)
    extra_results: Optional[Callable[[nn.Module, Callable[[], dict], argparse.Namespace], dict]] = None
    # (results of this method's runs by run name) -> text printed after the summary table
    report: Optional[Callable[[dict], str]] = None


def _full(model: nn.Module, recipe: str, args: argparse.Namespace) -> nn.Module:
    return recipe_setup.apply(model, recipe, skip="classifier")


METHODS: dict[str, Method] = {
    "full": Method("full", "fine-tune every weight (the recipe converts the whole model)", _full),
}

# Options of the methods, added to `intcore finetune`'s parser: (flags, argparse keywords).
ARGUMENTS: list[tuple[tuple[str, ...], dict]] = []


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="full",
                        help="; ".join(f"{m.name}: {m.help}" for m in METHODS.values()) + " (default full)")
    for flags, kwargs in ARGUMENTS:
        parser.add_argument(*flags, **kwargs)


def get(name: str) -> Method:
    if name not in METHODS:
        raise DriverError(f"unknown --method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def run_name(method: str, recipe: str) -> str:
    """The name a run has in results.json, the curves and checkpoints/."""
    return recipe if method == "full" else f"{method}-{recipe}"

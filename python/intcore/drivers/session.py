"""What both drivers do around their training loops: the output directory, the previous
results of a resumed run, and a record of the environment."""

from __future__ import annotations

import torch

import intcore
from intcore.drivers import distributed
from intcore.drivers.outputs import OutputDir


def open_output(path: str, resume: bool, world: distributed.World) -> OutputDir:
    output = OutputDir(path)
    if world.is_main:
        output.prepare(resume)
    distributed.barrier(world)
    return output


def previous_results(output: OutputDir, resume: bool) -> dict:
    """The results.json of the run being resumed (every rank reads it, so that all ranks skip
    the same finished recipes), or an empty record."""
    return output.load_results() if resume else {}


def environment(world: distributed.World, device: torch.device) -> dict:
    return {"device": str(device), "world_size": world.size, "torch": torch.__version__,
            "intcore": intcore.__version__, "threads": torch.get_num_threads()}


def is_complete(results: dict, recipe: str) -> bool:
    return bool(results.get("recipes", {}).get(recipe, {}).get("complete"))

"""What the training commands do around their training loops: the process group, the output
directory, the run's record (previous results of a resumed run, arguments, environment), and
checkpoints."""

from __future__ import annotations

import argparse
import contextlib

import torch

import intcore
from intcore.drivers import checkpoint, distributed, errors, report
from intcore.drivers.outputs import OutputDir
from intcore_cli import reproducible


def open_output(path: str, resume: bool, world: distributed.World) -> OutputDir:
    output = OutputDir(path)
    if world.is_main:
        output.prepare(resume)
    errors.on_interrupt(output.interrupt_message)
    distributed.barrier(world)
    return output


@contextlib.contextmanager
def command_world(args: argparse.Namespace):
    """(world, device) of a command's process (--device; torchrun's group where there is one),
    the group shut down however the command ends."""
    world = distributed.init(args.device)
    try:
        yield world, distributed.device_for(world, args.device)
    finally:
        distributed.shutdown(world)


def start_results(output: OutputDir, args: argparse.Namespace, command: str, world: distributed.World,
                  device: torch.device) -> dict:
    """The run's record: results.json of the run being resumed (every rank reads it, so that all
    ranks skip the same finished recipes) or an empty one, with this command's arguments and
    environment."""
    results = output.load_results() if args.resume else {}
    results.setdefault("command", command)
    results["args"] = {k: v for k, v in vars(args).items() if k != "resume"}
    results["environment"] = environment(world, device)
    return results


def environment(world: distributed.World, device: torch.device) -> dict:
    return {"device": str(device), "world_size": world.size, "torch": torch.__version__,
            "intcore": intcore.__version__, "threads": torch.get_num_threads(),
            "cpu": intcore.cpu_kernels.cpu_model(), "cpu_kernel": intcore._C.cpu_kernel(),
            "reproducible": reproducible.active()}


def is_complete(results: dict, recipe: str) -> bool:
    return bool(results.get("recipes", {}).get(recipe, {}).get("complete"))


def run_recipes(recipes: list[str], results: dict, output: OutputDir, world: distributed.World, train,
                panels: list[tuple[str, str, str]], title: str) -> None:
    """Trains every recipe not already complete (``train(recipe) -> dict``) and rewrites the
    outputs after each one, so an interrupted comparison keeps what finished."""
    results.setdefault("recipes", {})
    for recipe in recipes:
        if is_complete(results, recipe):
            if world.is_main:
                print(f"[{recipe}] already complete in {output.results}; skipping")
            continue
        results["recipes"][recipe] = train(recipe)
        if world.is_main:
            write_outputs(output, results, panels, title)


def write_outputs(output: OutputDir, results: dict, panels: list[tuple[str, str, str]], title: str) -> None:
    output.write_results(results)
    output.write_curves([{"recipe": name, **row} for name, r in results["recipes"].items() for row in r["history"]])
    series = {name: r["history"] for name, r in results["recipes"].items()}
    report.plot_curves(output.plot, series, panels, title)


def print_summary(output: OutputDir, headers: list[str], rows: list[list]) -> None:
    print()
    print(report.table(headers, rows))
    print(f"\nresults: {output.results}\ncurves:  {output.curves}\nplot:    {output.plot}")


def resume(directory, enabled: bool, model, optimizer, scheduler, world: distributed.World, device, label: str,
           total_steps: int) -> tuple[dict | None, int]:
    """The saved driver state and step of the newest checkpoint (restoring model, optimizer,
    scheduler and this rank's RNG), or (None, 0) when not resuming or nothing was saved."""
    # Rank 0 writes the checkpoints, so it alone clears what an interrupted save left behind.
    latest = checkpoint.latest(directory, clean=world.is_main) if enabled else None
    if latest is None:
        return None, 0
    restore = distributed.restore_full_training_state(model, optimizer) if distributed.is_sharded(model) else None
    state, rng = checkpoint.load(latest, distributed.unwrap(model), optimizer, scheduler, restore)
    distributed.restore_rng(world, device, rng)
    step = state.pop("step")
    if world.is_main:
        print(f"[{label}] resuming from {latest} (step {step} of {total_steps})")
    return state, step


def save(directory, step: int, model, optimizer, scheduler, state: dict, world: distributed.World, device,
         keep: int) -> None:
    """A checkpoint with every rank's RNG state, written by rank 0, which keeps the newest
    `keep`; all ranks wait for it."""
    rng = distributed.rng_states(world, device)
    full = distributed.full_training_state(model, optimizer) if distributed.is_sharded(model) else None
    if world.is_main:
        checkpoint.save(directory, step, distributed.unwrap(model), optimizer, scheduler, state, rng, keep=keep,
                        full_state=full)
    distributed.barrier(world)

"""DistributedDataParallel set-up for the drivers under torchrun (gloo on CPU, nccl on GPU).

Without torchrun's environment everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from intcore.drivers.errors import DriverError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init(device: str) -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    world = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        torch.cuda.set_device(world.local_rank)
    return world


def parse_device(name: str) -> torch.device:
    """--device as a torch.device, or a one-line DriverError where this PyTorch cannot use it
    (before any data or model is loaded)."""
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise DriverError(f"--device {name}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        why = ("this PyTorch is a CPU build" if torch.version.cuda is None
               else "PyTorch sees no CUDA device here")
        raise DriverError(f"--device {name}: {why} (torch {torch.__version__}); use --device cpu")
    return device


def device_for(world: World, device: str) -> torch.device:
    parsed = parse_device(device)
    if parsed.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return parsed


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    if not world.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def sum_across(world: World, values: list[float], device: torch.device) -> list[float]:
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def rng_states(world: World, device: torch.device) -> dict:
    """Every rank's PyTorch RNG state (CPU, and the rank's GPU), gathered for a checkpoint."""
    mine = [torch.get_rng_state()]
    if device.type == "cuda":
        mine.append(torch.cuda.get_rng_state(device))
    states = {}
    for kind, state in zip(("cpu", "cuda"), mine):
        if world.distributed:
            gathered = [torch.empty_like(state) for _ in range(world.size)]
            # gloo and nccl gather byte tensors on the device their backend uses
            local = state.to(device) if device.type == "cuda" else state
            gathered = [g.to(local.device) for g in gathered]
            dist.all_gather(gathered, local)
        else:
            gathered = [state]
        for rank, g in enumerate(gathered):
            states[f"rng.{kind}.{rank}"] = g.cpu()
    return states


def restore_rng(world: World, device: torch.device, states: dict) -> None:
    torch.set_rng_state(states[f"rng.cpu.{world.rank}"])
    if device.type == "cuda" and f"rng.cuda.{world.rank}" in states:
        torch.cuda.set_rng_state(states[f"rng.cuda.{world.rank}"], device)

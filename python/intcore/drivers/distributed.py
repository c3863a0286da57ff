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


def wrap(model: torch.nn.Module, world: World, device: torch.device, fsdp: bool = False) -> torch.nn.Module:
    """The model replicated on every rank (DistributedDataParallel) or, with fsdp, sharded with
    FSDP2: each transformer block (a child of the model's ModuleList of layers) is one unit,
    then the model itself; its state is then gathered by full_state_dict."""
    if not world.distributed:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules()):
            if isinstance(module, torch.nn.ModuleList):
                for block in module:
                    fully_shard(block)
        fully_shard(model)
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether wrap sharded the model with FSDP2 (fully_shard makes it an FSDPModule)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def full_state_dict(model: torch.nn.Module, world: World) -> dict | None:
    """The model's whole state as CPU tensors: gathered from every rank under FSDP2 (a
    collective: every rank must call it; rank 0 gets the tensors, the others None), or None where
    each rank already holds it all (model.state_dict() then serves)."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_full_options())
    return state if world.is_main else None


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """A sharded (FSDP2) model's and optimizer's whole state, gathered to rank 0 (a collective:
    every rank calls it), in the layout of an unsharded model's state_dict and optimizer's: the
    optimizer's parameters numbered in their param_groups order, so a checkpoint reads the same
    whichever way it was trained."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model_state = get_model_state_dict(model, options=_full_options())
    named = get_optimizer_state_dict(model, optimizer, options=_full_options())
    if not named:  # ranks other than 0 receive nothing
        return model_state, named
    order = [name for group in named["param_groups"] for name in group["params"]]
    index = {name: i for i, name in enumerate(order)}
    numbered = {"state": {index[name]: slots for name, slots in named["state"].items()},
                "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in named["param_groups"]]}
    return model_state, numbered


def restore_full_training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """restore(model state, optimizer state) for checkpoint.load: the whole states (read by every
    rank) scattered to this rank's shards."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    def restore(model_state: dict, optimizer_state: dict) -> None:
        set_model_state_dict(model, model_state, options=_full_options())
        # The optimizer's parameters by name, in its own order (the numbering of full_training_state).
        name_of = {id(p): n for n, p in model.named_parameters()}
        names = [name_of[id(p)] for g in optimizer.param_groups for p in g["params"]]
        named = {"state": {names[i]: slots for i, slots in optimizer_state["state"].items()},
                 "param_groups": [{**g, "params": [names[i] for i in g["params"]]}
                                  for g in optimizer_state["param_groups"]]}
        set_optimizer_state_dict(model, optimizer, named, options=_full_options())

    return restore


def evaluation_share(items: list, world: World, model: torch.nn.Module) -> tuple[list, bool]:
    """(this rank's share of evaluation items, whether the ranks' sums must be added). Under
    FSDP2 every forward is a collective, so every rank evaluates every item (and the sums are
    already whole); otherwise the ranks split them."""
    if is_sharded(model):
        return items, False
    return items[world.rank::world.size], True


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

"""Checkpoints in safetensors, written atomically and resumable to the same result.

A checkpoint is a directory ``step-<N>/`` holding model.safetensors, optimizer.safetensors
(the optimizer state flattened to tensors, plus every rank's PyTorch RNG states) and state.json
(counters and the training history so far). It is written under a temporary name and
renamed when complete; ``latest`` names the newest complete one. Restoring the RNG states and counters makes a
resumed run take exactly the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from intcore.drivers.errors import DriverError
from intcore.drivers.outputs import write_atomic


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            name = f"state.{index}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save(directory: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         scheduler, state: dict, rng: dict, keep: int = 2) -> Path:
    """Writes checkpoint ``step`` under ``directory`` atomically and keeps the newest ``keep``.

    rng: named RNG state tensors (see distributed.rng_states), stored beside the optimizer's.
    """
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".incomplete-"))
    model_tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(model_tensors, staging / "model.safetensors")
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file({**opt_tensors, **rng}, staging / "optimizer.safetensors")
    meta = {"step": step, "state": state, "optimizer": opt_meta,
            "scheduler": scheduler.state_dict() if scheduler is not None else None}
    (staging / "state.json").write_text(json.dumps(meta))
    final = directory / f"step-{step:08d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    write_atomic(directory / "latest", final.name.encode())
    for old in sorted(p for p in directory.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old)
    return final


def latest(directory: Path) -> Optional[Path]:
    pointer = directory / "latest"
    if not pointer.exists():
        return None
    path = directory / pointer.read_text().strip()
    if not path.is_dir():
        raise DriverError(f"checkpoint {path} named by {pointer} is missing; delete {pointer} to start over")
    return path


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> tuple[dict, dict]:
    """Restores model, optimizer and scheduler; returns the saved driver state (with "step")
    and the RNG state tensors."""
    try:
        meta = json.loads((path / "state.json").read_text())
        model_tensors = load_file(path / "model.safetensors")
        opt_tensors = load_file(path / "optimizer.safetensors")
    except (OSError, json.JSONDecodeError, SafetensorError) as e:
        raise DriverError(f"checkpoint {path} is corrupt or incomplete ({e}); delete it (or the whole "
                          f"checkpoints/ directory) and rerun") from None
    try:
        model.load_state_dict(model_tensors)
        rng = {k: opt_tensors.pop(k) for k in [k for k in opt_tensors if k.startswith("rng.")]}
        optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, meta["optimizer"]))
        if scheduler is not None and meta["scheduler"] is not None:
            scheduler.load_state_dict(meta["scheduler"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise DriverError(f"checkpoint {path} does not match this model or optimizer ({e}); was it written by a "
                          f"run with other arguments?") from None
    return meta["state"] | {"step": meta["step"]}, rng

"""Checkpoints in safetensors, written atomically and resumable to the same result.

A checkpoint is a directory ``step-<N>/`` holding model.safetensors, optimizer.safetensors
(the optimizer state flattened to tensors, plus every rank's PyTorch RNG states), state.json
(counters and the training history so far) and manifest.json (the step and the size and
sha256 of each of those files). It is written under a temporary name, every file flushed to
disk, and renamed when complete; ``latest`` names the newest complete one. Resuming checks the
manifest, so a flipped byte, a truncated or rewritten file or a renamed step is refused with
one line. Restoring the RNG states and counters makes a resumed run take exactly the steps the
uninterrupted run would have taken.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from intcore.drivers.errors import DriverError
from intcore.atomic_files import fsync_directory, staging_dir, write_atomic

MANIFEST = "manifest.json"
_FILES = ("model.safetensors", "optimizer.safetensors", "state.json")
_STEP_DIR = re.compile(r"step-(\d{8,})")
_STAGING_PREFIX = ".incomplete-"
_STATE_KEYS = ("step", "state", "optimizer", "scheduler")


def _flatten_optimizer(state: dict) -> tuple[dict, dict]:
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
         scheduler, state: dict, rng: dict, keep: int = 2, full_state: tuple[dict, dict] | None = None) -> Path:
    """Writes checkpoint ``step`` under ``directory`` atomically and keeps the newest ``keep``.

    rng: named RNG state tensors (see distributed.rng_states), stored beside the optimizer's.
    full_state: (model state dict, optimizer state dict) gathered from every rank where the model
    holds only its shard of them (FSDP2; see distributed.full_training_state).
    What an interrupted save left behind (staging directories, temporary pointer files) is
    removed first.
    """
    clean_leftovers(directory)
    staging = staging_dir(directory, _STAGING_PREFIX)
    model_tensors, seen = {}, set()
    model_state, optimizer_state = full_state or (model.state_dict(), optimizer.state_dict())
    for k, v in model_state.items():
        v = v.detach().cpu().contiguous()
        # Tied weights (an LLM's embedding and output head) are one tensor under two names, which
        # safetensors refuses to store twice: the second name gets a copy (loading fills both).
        if v.untyped_storage().data_ptr() in seen:
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        model_tensors[k] = v
    save_file(model_tensors, staging / "model.safetensors")
    opt_tensors, opt_meta = _flatten_optimizer(optimizer_state)
    save_file({**opt_tensors, **rng}, staging / "optimizer.safetensors")
    meta = {"step": step, "state": state, "optimizer": opt_meta,
            "scheduler": scheduler.state_dict() if scheduler is not None else None}
    (staging / "state.json").write_text(json.dumps(meta))
    # Every file on disk, with its checksum in the manifest (written last), before the rename
    # that publishes the checkpoint.
    files = {name: _sync_and_hash(staging / name) for name in _FILES}
    _write_synced(staging / MANIFEST, json.dumps({"format": 1, "step": step, "files": files}, indent=1).encode())
    fsync_directory(staging)
    final = directory / f"step-{step:08d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    fsync_directory(directory)
    write_atomic(directory / "latest", final.name.encode())
    prune(directory, keep)
    return final


def _sync_and_hash(path: Path) -> dict:
    """Flushes a file just written to disk; returns its size and sha256."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return _hash(path)


def _hash(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def clean_leftovers(directory: Path) -> None:
    """Removes what an interrupted save leaves behind: staging directories and temporary files
    of the ``latest`` pointer. Only the process that writes checkpoints may call this."""
    if not directory.is_dir():
        return
    for leftover in directory.iterdir():
        if leftover.name.startswith(_STAGING_PREFIX) and leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        elif leftover.name.startswith(".latest.") and leftover.name.endswith(".tmp"):
            leftover.unlink(missing_ok=True)


def prune(directory: Path, keep: int) -> None:
    """Deletes all but the newest ``keep`` checkpoints; with keep = 0 the whole directory."""
    if keep == 0:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for old in _step_dirs(directory)[:-keep]:
        shutil.rmtree(old)


def prune_finished(directory: Path, keep: int) -> None:
    """At the end of a run: prune(directory, keep), then the folder that holds every run's
    checkpoint directory (<output>/checkpoints) goes too once no run has any left."""
    prune(directory, keep)
    if directory.parent.is_dir() and not any(directory.parent.iterdir()):
        directory.parent.rmdir()


def _step_dirs(directory: Path) -> list[Path]:
    """The checkpoint directories (step-<N>), oldest first."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if _STEP_DIR.fullmatch(p.name) and p.is_dir()),
                  key=lambda p: int(p.name[5:]))


def latest(directory: Path, clean: bool = False) -> Optional[Path]:
    """The checkpoint to resume from: the one ``latest`` names or, when that pointer is gone
    but checkpoints exist, the newest complete one (with its manifest). None when nothing was
    saved. clean: first remove what an interrupted save left behind (the writing process only)."""
    if clean:
        clean_leftovers(directory)
    pointer = directory / "latest"
    if pointer.is_file():
        try:
            name = pointer.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise DriverError(f"{pointer} cannot be read ({e}); delete it to resume from the newest complete "
                              f"checkpoint") from None
        path = directory / name
        if not _STEP_DIR.fullmatch(name) or not path.is_dir():
            raise DriverError(f"checkpoint {name!r} named by {pointer} is missing; delete {pointer} to resume from "
                              f"the newest complete checkpoint")
        return path
    steps = _step_dirs(directory)
    complete = [p for p in steps if (p / MANIFEST).is_file()]
    if complete:
        return complete[-1]
    if steps:
        raise DriverError(f"{directory} holds no complete checkpoint (no {MANIFEST} in {', '.join(p.name for p in steps)})"
                          f"; delete {directory} to start over")
    return None


def _corrupt(path: Path, what: str) -> DriverError:
    return DriverError(f"checkpoint {path} is corrupt or incomplete ({what}); delete it (or the whole checkpoints/ "
                       f"directory) and rerun")


def verify(path: Path) -> dict:
    """Checks a checkpoint against its manifest (the step of its directory, each file's size and
    sha256); returns the manifest. Raises DriverError with one line on any mismatch."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise _corrupt(path, f"no {MANIFEST}: it is incomplete or was written by an older intcore") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(path, f"{MANIFEST} cannot be read: {e}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    step = manifest.get("step") if isinstance(manifest, dict) else None
    if (not isinstance(files, dict) or not isinstance(step, int) or
            any(not isinstance(files.get(n), dict) for n in _FILES)):
        raise _corrupt(path, f"{MANIFEST} lacks the step or a file's checksum")
    if path.name != f"step-{step:08d}":
        raise _corrupt(path, f"{MANIFEST} is for step {step}, not for {path.name}")
    for name in _FILES:
        expected = files[name]
        try:
            actual = _hash(path / name)
        except OSError as e:
            raise _corrupt(path, f"{name} cannot be read: {e}") from None
        if actual != {"bytes": expected.get("bytes"), "sha256": expected.get("sha256")}:
            raise _corrupt(path, f"{name} does not match its checksum in {MANIFEST}")
    return manifest


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
         restore=None) -> tuple[dict, dict]:
    """Restores model, optimizer and scheduler from a checkpoint that matches its manifest;
    returns the saved driver state (with "step") and the RNG state tensors. restore(model state,
    optimizer state) replaces the modules' own load_state_dict (FSDP2 scatters the whole state
    to its shards; see distributed.restore_full_training_state)."""
    manifest = verify(path)
    try:
        meta = json.loads((path / "state.json").read_text())
        model_tensors = load_file(path / "model.safetensors")
        opt_tensors = load_file(path / "optimizer.safetensors")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as e:
        raise _corrupt(path, str(e)) from None
    missing = [k for k in _STATE_KEYS if k not in meta] if isinstance(meta, dict) else list(_STATE_KEYS)
    if missing:
        raise _corrupt(path, f"state.json lacks {', '.join(missing)}")
    if (meta["step"] != manifest["step"] or not isinstance(meta["state"], dict) or
            not isinstance(meta["optimizer"], dict)):
        raise _corrupt(path, f"state.json does not hold the state of step {manifest['step']}")
    try:
        rng = {k: opt_tensors.pop(k) for k in [k for k in opt_tensors if k.startswith("rng.")]}
        optimizer_state = _unflatten_optimizer(opt_tensors, meta["optimizer"])
        if restore is not None:
            restore(model_tensors, optimizer_state)
        else:
            model.load_state_dict(model_tensors)
            optimizer.load_state_dict(optimizer_state)
        if scheduler is not None and meta["scheduler"] is not None:
            scheduler.load_state_dict(meta["scheduler"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise DriverError(f"checkpoint {path} does not match this model or optimizer ({e}); was it written by a "
                          f"run with other arguments?") from None
    return meta["state"] | {"step": meta["step"]}, rng

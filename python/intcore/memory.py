"""What a training step holds in memory for backward, by kind.

Peak resident memory mixes the model, the allocator's caches and the data; the figure that
methods like MEFT change is what autograd keeps for the backward pass. This module counts it
with torch.autograd.graph.saved_tensors_hooks: every tensor autograd saves is recorded by its
storage, so a tensor saved by several ops (or views of one storage) counts once, at the
storage's full size (the whole storage stays alive), from when it is saved until autograd
lets it go.

Saved tensors sharing storage with a model parameter or buffer count as ``parameters`` (they
cost nothing extra); every other saved tensor is an ``activation`` (including copies an op
derives from a weight, such as the integer codes of a fixed-point linear layer). Two
activation figures: what the forward leaves saved for the backward, and the peak over the
whole step -- higher when the backward saves tensors of its own, as a reversible backward
does while it recomputes a layer. Gradients and the optimizer state after the step are
counted too, deduplicated the same way.

    step = intcore.memory.measure_step(model, lambda: model(**batch).loss, optimizer)
    print(step.describe())
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor, nn

MB = 2**20


def _storage_key(t: Tensor) -> tuple:
    return (t.device.type, t.device.index, t.untyped_storage().data_ptr())


def _counted(t) -> bool:
    return isinstance(t, Tensor) and t.numel() > 0 and t.layout == torch.strided


class _Held:
    """What the pack hook hands autograd: the tensor, and a release of its storage's count
    when autograd drops it."""

    __slots__ = ("tensor", "_release")

    def __init__(self, tensor: Tensor, release: Callable[[], None]):
        self.tensor, self._release = tensor, release

    def __del__(self):
        self._release()


class SavedTensors:
    """Context manager counting the bytes autograd holds for backward, for the tensors saved
    inside it (the block may span a forward and its backward).

    parameters: tensors whose storages count as parameters (a model's parameters and buffers).
    Live counts: ``activation_bytes``, ``parameter_bytes``; ``peak_activation_bytes`` is the
    most activation bytes held at once since entering.
    """

    def __init__(self, parameters: Iterable[Tensor] = ()):
        self._parameter_keys = {_storage_key(p) for p in parameters if _counted(p)}
        self._lock = threading.Lock()  # CUDA backward passes run on autograd's device threads
        self._holders: dict[tuple, list] = {}  # storage key -> [bytes, is parameter, saved count]
        self.activation_bytes = self.parameter_bytes = self.peak_activation_bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda held: held.tensor)

    def _add(self, entry: list, sign: int) -> None:
        if entry[1]:
            self.parameter_bytes += sign * entry[0]
        else:
            self.activation_bytes += sign * entry[0]
            self.peak_activation_bytes = max(self.peak_activation_bytes, self.activation_bytes)

    def _pack(self, t: Tensor) -> _Held:
        if not _counted(t):
            return _Held(t, lambda: None)
        key = _storage_key(t)
        with self._lock:
            entry = self._holders.get(key)
            if entry is None:
                entry = self._holders[key] = [t.untyped_storage().nbytes(), key in self._parameter_keys, 0]
            entry[2] += 1
            if entry[2] == 1:
                self._add(entry, +1)
        return _Held(t, lambda: self._release(key))

    def _release(self, key: tuple) -> None:
        with self._lock:
            entry = self._holders[key]
            entry[2] -= 1
            if entry[2] == 0:
                self._add(entry, -1)
                del self._holders[key]

    def __enter__(self) -> "SavedTensors":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def tensor_bytes(tensors: Iterable) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen: dict[tuple, int] = {}
    for t in tensors:
        if _counted(t):
            seen.setdefault(_storage_key(t), t.untyped_storage().nbytes())
    return sum(seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors in ``optimizer.state`` (Adam's moments, step counters, ...)."""
    return tensor_bytes(v for state in optimizer.state.values() for v in state.values())


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step holds, by kind (see the module docstring)."""

    activations: int  # saved for backward when the forward ends
    peak_activations: int  # the most held at once during the forward and the backward
    parameters: int  # saved tensors that are the model's parameters or buffers
    gradients: int
    optimizer_state: int

    def describe(self) -> str:
        return (f"saved for backward: activations {self.activations / MB:.1f} MB (peak over the step "
                f"{self.peak_activations / MB:.1f} MB), parameters {self.parameters / MB:.1f} MB; gradients "
                f"{self.gradients / MB:.1f} MB; optimizer state {self.optimizer_state / MB:.1f} MB")

    def as_dict(self) -> dict:
        return {"activations": self.activations, "peak_activations": self.peak_activations,
                "parameters": self.parameters, "gradients": self.gradients, "optimizer_state": self.optimizer_state}


def measure_step(model: nn.Module, loss_fn: Callable[[], Tensor],
                 optimizer: Optional[torch.optim.Optimizer] = None) -> StepMemory:
    """Runs one training step -- ``loss_fn()`` (the forward), its backward, ``optimizer.step()``
    -- and returns what it held: the tensors saved for backward (at the end of the forward, and
    at the peak of the forward and backward), the gradients and the optimizer state after the
    step."""
    with SavedTensors(list(model.parameters()) + list(model.buffers())) as saved:
        loss = loss_fn()
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"measure_step: loss_fn must return a one-element tensor, got "
                             f"{type(loss).__name__ if not isinstance(loss, Tensor) else tuple(loss.shape)}")
        activations, parameters = saved.activation_bytes, saved.parameter_bytes
        loss.backward()
    gradients = tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
    if optimizer is not None:
        optimizer.step()
    state = optimizer_state_bytes(optimizer) if optimizer is not None else 0
    return StepMemory(activations, saved.peak_activation_bytes, parameters, gradients, state)

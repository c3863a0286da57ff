"""Which kernel runs an op: native (the C++ engine, registered per device) or portable.

Every op's default kernel is its portable one (the custom op's body), so every device torch
supports can run every op. ``register_native`` registers an engine kernel for a device; it takes
precedence there unless the portable kernels are forced, with ``INTCORE_BACKEND=portable`` in the
environment or ``with intcore.portable_kernels():`` — for debugging, and for checking native
kernels against portable ones on the same device. The choice is read at every call, so it also
applies to backward passes (which may run on autograd's device threads).
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

import torch

from intcore.backends import portable

_BACKENDS = ("native", "portable")
_env_choice = os.environ.get("INTCORE_BACKEND", "native") or "native"
if _env_choice not in _BACKENDS:
    raise ValueError(f"INTCORE_BACKEND must be 'native' or 'portable', got {_env_choice!r}")
_force_portable = _env_choice == "portable"

# device type -> {op name: note}; the note says when a native kernel hands over to the portable one.
_NATIVE: dict[str, dict[str, str]] = {}


def portable_forced() -> bool:
    return _force_portable


@contextlib.contextmanager
def portable_kernels(enabled: bool = True):
    """Runs every intcore op on its portable kernel inside the block (``enabled=False``: native)."""
    global _force_portable
    previous, _force_portable = _force_portable, enabled
    try:
        yield
    finally:
        _force_portable = previous


def register_native(name: str, device: str, kernel: Callable, note: str = "") -> None:
    """Registers kernel as op intcore::<name>'s native kernel on device type `device`."""

    def run(*args):
        return portable.KERNELS[name](*args) if _force_portable else kernel(*args)

    run.__name__ = f"{name}_{device}"
    torch.library.register_kernel(f"intcore::{name}", device)(run)
    _NATIVE.setdefault(device, {})[name] = note


def kernel_table(forced: bool | None = None) -> dict[str, dict[str, str]]:
    """Per device type with native kernels ("cpu", "cuda"), and "other" for the rest, which
    kernel each op runs: "native", "native (<note>)" or "portable". ``forced`` (default: the
    current setting) says whether portable kernels are forced."""
    forced = _force_portable if forced is None else forced
    table = {}
    for device in sorted(_NATIVE) + ["other"]:
        native = _NATIVE.get(device, {})
        table[device] = {
            name: "portable" if forced or name not in native else ("native" + (f" ({native[name]})" if native[name] else ""))
            for name in sorted(portable.KERNELS)
        }
    return table

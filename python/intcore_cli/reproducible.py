"""``--reproducible``: the same command gives the same bits on any x86-64 CPU.

intcore's integer ops already do: every CPU kernel set computes the generic set's bits. A run
also uses PyTorch's float ops (matmul, GELU, softmax, AdamW), whose libraries pick code per
instruction set, and their roundings differ between sets: one matmul + GELU + softmax gave three
different results on one CPU under default settings, with oneDNN and MKL capped at AVX, and with
ATen capped at its portable kernels. These settings pin each library to one code path that
every x86-64 CPU runs, at a speed cost (docs/benchmarks.md):

- ``MKL_CBWR=COMPATIBLE,STRICT``: MKL's conditional numerical reproducibility, SSE2 code paths
  whatever the CPU, and (STRICT) results that do not depend on the number of threads;
- ``ONEDNN_MAX_CPU_ISA=SSE41``: oneDNN's kernels capped at SSE4.1;
- ``ATEN_CPU_CAPABILITY=default``: ATen's vectorized CPU kernels at their baseline build.

They are read when the libraries load, so they must be in the environment before torch is
imported: the ``intcore`` command sets them before it imports a driver; a driver started
another way (``python -m``, ``torchrun``) with --reproducible refuses to run without them and
prints the line to export. The thread count must still match between machines (ATen splits
some reductions by thread).
"""

from __future__ import annotations

import os

FLAG = "--reproducible"
ENVIRONMENT = {
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "ATEN_CPU_CAPABILITY": "default",
}
HELP = ("the same bits on any x86-64 CPU: pins PyTorch's float kernels (MKL, oneDNN, ATen) to one code "
        "path every CPU runs, set before torch loads; slower")


def requested(argv) -> bool:
    """Whether argv asks for it, spelled out or abbreviated as argparse allows (--repro)."""
    return any(len(a) > len("--rep") and FLAG.startswith(a) for a in argv)


def active() -> bool:
    """Whether this process's environment holds the settings (so torch loaded with them)."""
    return all(os.environ.get(k) == v for k, v in ENVIRONMENT.items())


def apply() -> None:
    """Puts the settings in the environment; call before torch is imported."""
    os.environ.update(ENVIRONMENT)


def missing() -> str:
    """Empty where the settings are active; else what to export before starting Python (for a
    driver given --reproducible after torch has loaded, which is too late to set them)."""
    if active():
        return ""
    exports = " ".join(f"{k}={v}" for k, v in ENVIRONMENT.items())
    return (f"{FLAG} must be set before torch loads: run the driver through the `intcore` command, or "
            f"export {exports} first")

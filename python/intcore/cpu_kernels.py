"""The engine's CPU kernel sets: which this CPU runs, which is active, and the CPU's name.

The engine keeps its GEMM micro-kernel and hot loops once per instruction set (generic, avx2,
avx_vnni, avx512_vnni, neon_dot, neon_i8mm) and picks the best the CPU supports when it loads.
``INTCORE_CPU_KERNEL=<name>`` in the environment forces one (to measure the AVX2 kernels on an
AVX-512 machine, say); ``intcore._C.set_cpu_kernel(name)`` switches at run time. Every set gives
the generic set's bits: the tests and ``python -m intcore`` check that under each.
"""

from __future__ import annotations

import os
import platform

from intcore import _C

ENV = "INTCORE_CPU_KERNEL"


def check_forced_kernel() -> None:
    """Raise if INTCORE_CPU_KERNEL names a set that is unknown or that this CPU cannot run (the
    engine then runs its best set, which is not what was asked for)."""
    forced = os.environ.get(ENV)
    if not forced or forced == _C.cpu_kernel():  # unset or empty: the best set
        return
    known = _C.all_cpu_kernels()
    if forced not in known:
        raise ValueError(f"{ENV}={forced!r} names no CPU kernel set; known: {', '.join(known)}")
    raise ValueError(f"{ENV}={forced}: this CPU ({cpu_model()}) cannot run it; it runs "
                     f"{', '.join(_C.supported_cpu_kernels())} (unset {ENV} to use the best, {_C.cpu_kernel()})")


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report() -> list[str]:
    """Lines for ``intcore doctor``: the sets this CPU runs (the active one marked), the sets it
    cannot, and what running only the generic set costs."""
    active, supported = _C.cpu_kernel(), _C.supported_cpu_kernels()
    runs = ", ".join(k + (" (active)" if k == active else "") for k in supported)
    lacks = [k for k in _C.all_cpu_kernels() if k not in supported]
    lines = [f"CPU: {cpu_model()}", f"CPU kernels: {runs}" + (f"; not on this CPU: {', '.join(lacks)}" if lacks else "")]
    if active == "generic":
        why = (f"{ENV}=generic forces it" if os.environ.get(ENV) == "generic"
               else "this CPU has none of AVX2, AVX-VNNI, AVX-512 VNNI, Arm DotProd")
        lines.append(f"  note: only the portable generic kernels run ({why}): integer GEMMs run several times "
                     "slower than torch's float32 matmul, so the integer recipes train slower than fp32 here")
    return lines

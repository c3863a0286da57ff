"""Portable kernels: every intcore op written only with torch tensor operations.

They are each op's default kernel (the body of the custom op in ``intcore._ops``), so they run
on any device torch supports; the engine's native kernels (``backends/cpu.py``,
``backends/cuda.py``) take precedence where they exist. Every portable kernel is bit-exact with
the C++ engine: the same integer codes, the same float bits, the same inputs refused. That is
what lets a CPU-only test suite vouch for what runs on a GPU: the native CUDA kernels are
checked against these, and these are checked against the CPU engine.

Integer arithmetic runs in int64 tensors (wider products in int64 limbs where the engine uses
128 bits), random bits come from Philox4x32-10 in torch integer ops (``philox.py``), int8
products from ``torch._int_mm``, and float epilogues repeat the engine's operations in its order.
"""

from __future__ import annotations

from typing import Callable

KERNELS: dict[str, Callable] = {}


def portable_kernel(name: str):
    """Records fn as the portable kernel of op intcore::<name>. The recorded kernel first
    refuses None where the op's schema says Tensor (the dispatcher lets it through)."""

    def record(fn):
        from intcore._checks import with_tensor_args_checked

        KERNELS[name] = with_tensor_args_checked(name, fn)
        return fn

    return record


from intcore.backends.portable import (  # noqa: E402,F401  (each module records its kernels)
    embedding,
    fixed_point_linear,
    gemm,
    int4_training,
    layer_norm,
    linear,
    quantize,
    rms_norm,
)

"""Kernels of the ops declared in intcore._ops.

portable/   every op in torch tensor code: the default kernel on every device
cpu.py      native kernels on the C++ engine's CPU backend (every op)
cuda.py     native kernels on the engine's CUDA backend (the ops it implements), when built
dispatch.py which of the two runs, and the table of what runs where
"""

from intcore.backends import portable  # noqa: F401
from intcore.backends import cpu, cuda  # noqa: F401  (registers the native kernels)

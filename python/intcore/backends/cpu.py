"""Native CPU kernels: every intcore op runs on the C++ engine's CPU backend."""

from intcore import _ops  # noqa: F401  (defines the schemas these kernels register against)
from intcore.backends.dispatch import register_native
from intcore.backends.engine_kernels import KERNELS

for _name, _fn in KERNELS.items():
    register_native(_name, "cpu", _fn)

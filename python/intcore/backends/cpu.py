"""CPU kernels: every intcore op runs on the C++ engine's CPU backend."""

import torch

from intcore import _ops  # noqa: F401  (defines the schemas these kernels register against)
from intcore.backends.engine_kernels import KERNELS

for _name, _fn in KERNELS.items():
    torch.library.register_kernel(f"intcore::{_name}", "cpu")(_fn)

"""Device kernels for the ops declared in intcore._ops: one module per device."""

from intcore.backends import cpu, cuda  # noqa: F401  (registers the kernels)

"""Turning a float module into its integer subclass in place of a copy."""

from __future__ import annotations

from torch import nn


def adopt(cls, source: nn.Module):
    """An instance of cls carrying source's state (attributes, training flag, hooks, and the same
    parameter, buffer and submodule objects) without re-initializing: the integer module trains
    the original parameters, under their names."""
    module = cls.__new__(cls)
    module.__dict__.update(source.__dict__)
    module.__dict__["_parameters"] = dict(source._parameters)
    module.__dict__["_buffers"] = dict(source._buffers)
    module.__dict__["_modules"] = dict(source._modules)
    return module

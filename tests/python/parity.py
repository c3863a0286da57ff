"""Helpers of the parity tests (engine against portable kernels): seeds and bit comparisons."""

import pytest
import torch

from intcore.backends import engine_kernels, portable

FLOATS = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def seed(v: int) -> torch.Tensor:
    """An op's seed argument."""
    return torch.tensor(v, dtype=torch.int64)


def mismatch(a: torch.Tensor, b: torch.Tensor) -> str:
    """'' when a and b have the same dtype, shape and bits (-0.0 != 0.0; NaNs must match), else
    what differs."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"{a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
    if a.is_floating_point():
        width = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
        a, b = a.contiguous().view(width), b.contiguous().view(width)
    differ = a != b
    if not bool(differ.any()):
        return ""
    first = tuple(int(i) for i in differ.nonzero()[0])
    return f"{int(differ.sum())} elements differ, first at {first}: {a[first]} vs {b[first]}"


def assert_same_bits(a, b):
    """mismatch() is '' for a and b, or for each pair of two sequences of tensors."""
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_bits(x, y)
        return
    problem = mismatch(a, b)
    assert not problem, problem


def assert_refused_alike(name: str, make_args):
    """The portable and engine kernels `name` both refuse make_args() with the same exception
    type (TypeError or ValueError); returns the two exceptions (portable, engine)."""
    errors = []
    for kernels in (portable.KERNELS, engine_kernels.KERNELS):
        with pytest.raises((TypeError, ValueError)) as info:
            kernels[name](*make_args())
        errors.append(info.value)
    assert type(errors[0]) is type(errors[1]), errors
    return errors

"""Bad input raises a clear TypeError/ValueError naming the argument, before any kernel runs."""

import numpy as np
import pytest
import torch

import intcore
from intcore import _C


def raises(exc, match):
    return pytest.raises(exc, match=match)


def test_linear_wrong_dtype():
    with raises(TypeError, "x must be a floating-point tensor, got torch.int64"):
        intcore.int8_linear(torch.ones(2, 3, dtype=torch.long), torch.randn(4, 3))
    with raises(TypeError, "w must be a torch.Tensor, got ndarray"):
        intcore.int8_linear(torch.randn(2, 3), np.ones((4, 3)))


def test_linear_shape_mismatch():
    with raises(ValueError, r"x has 3 features .* but w expects 5"):
        intcore.int8_linear(torch.randn(2, 3), torch.randn(4, 5))
    with raises(ValueError, r"bias must have shape \(4,\)"):
        intcore.int4_linear(torch.randn(2, 3), torch.randn(4, 3), torch.randn(3))
    with raises(ValueError, "w must be 2-D"):
        intcore.int8_linear(torch.randn(2, 3), torch.randn(3))


def test_zero_dim_input():
    with raises(ValueError, "x must have at least 1 dimension"):
        intcore.int8_linear(torch.tensor(1.0), torch.randn(4, 1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_raise(bad):
    x = torch.randn(4, 8)
    x[2, 3] = bad
    w = torch.randn(5, 8)
    with raises(ValueError, "x contains NaN or Inf"):
        intcore.int8_linear(x, w)
    with raises(ValueError, "w contains NaN or Inf"):
        intcore.int4_linear(w[:4], x.new_full((5, 8), bad), block_size=8)
    with raises(ValueError, "x contains NaN or Inf"):
        intcore.quantize_fixed_point(x, 8)


def test_nan_gradient_raises_in_backward():
    x = torch.randn(4, 8, requires_grad=True)
    y = intcore.int8_linear(x, torch.randn(5, 8))
    with raises(ValueError, "grad contains NaN or Inf"):
        y.backward(torch.full_like(y, float("nan")))


def test_devices_must_match():
    with raises(ValueError, "all tensors must be on one device"):
        intcore.int8_linear(torch.randn(2, 3), torch.randn(4, 3, device="meta"))


def test_bad_bits_and_rounding():
    with raises(ValueError, r"bits must be one of \[2, 3"):
        intcore.quantize_fixed_point(torch.randn(3, 3), 17)
    with raises(ValueError, "rounding must be 'nearest' or 'stochastic'"):
        intcore.quantize_fixed_point(torch.randn(3, 3), 8, "up")
    with raises(ValueError, r"seed must be in \[0, 2\*\*63\)"):
        intcore.quantize_fixed_point(torch.randn(3, 3), 8, seed=-1)


def test_int_mm_wrong_dtypes_and_k():
    with raises(TypeError, "b must be torch.int8, got torch.float32"):
        intcore.int8_mm(torch.zeros(2, 3, dtype=torch.int8), torch.zeros(2, 3))
    with raises(ValueError, "same K"):
        intcore.int8_mm(torch.zeros(2, 3, dtype=torch.int8), torch.zeros(2, 4, dtype=torch.int8))
    with raises(ValueError, "needs 3 bytes per row"):
        intcore.int4_mm(torch.zeros(2, 2, dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.uint8), 5)


def test_engine_checks_layout_dtype_and_rank_at_the_binding():
    x = torch.randn(4, 8)
    q = torch.empty(8, 4, dtype=torch.int8)
    scale = torch.empty(4)
    with raises(ValueError, r"q must have shape \[4, 8\], got \[8, 4\]"):
        _C.quantize_absmax(x, q, scale, 8, "nearest")
    with raises(ValueError, "q must be contiguous"):
        _C.quantize_absmax(x, q.T, scale, 8, "nearest")
    with raises(TypeError, "q must be int8, got int32"):
        _C.quantize_absmax(x, torch.empty(4, 8, dtype=torch.int32), scale, 8, "nearest")
    with raises(ValueError, r"x must be 2-D, got shape \[\]"):
        _C.quantize_absmax(torch.tensor(1.0), q, scale, 8, "nearest")
    with raises(TypeError, "x must be an array that supports DLPack"):
        _C.quantize_absmax([1.0], q, scale, 8, "nearest")
    with raises(TypeError, "dtype intcore does not support"):
        _C.quantize_absmax(torch.zeros(4, 8, dtype=torch.bool), q, scale, 8, "nearest")


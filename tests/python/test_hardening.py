"""The defects a fuzz of malformed and edge-case calls found, one test each: crashes and hangs of
intcore._C, overflow in the Hadamard transform, errors that were not TypeError/ValueError or did
not name the function called, and empty reductions. tests/python/test_fuzz.py keeps looking."""

import subprocess
import sys
import textwrap
import time

import pytest
import torch

import intcore
from intcore import _C

ops = torch.ops.intcore
NAN, INF = float("nan"), float("inf")


def run_isolated(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """code in a fresh interpreter: a crash there fails the test instead of killing the run (and
    a hang fails it after `timeout` seconds)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


# ---- intcore._C: outputs checked before anything is written or read ------------------------------


def test_engine_output_with_too_few_rows_is_refused_not_written():
    done = run_isolated("""
        import torch, intcore
        try:
            intcore._C.dequantize_absmax(torch.zeros(4, 8, dtype=torch.int8), torch.ones(1), 8, torch.zeros(0, 8))
        except ValueError as e:
            print(e)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dequantize_absmax: out must have shape [4, 8], got [0, 8]" in done.stdout


def test_engine_checks_the_output_shape_before_reading_2_to_the_40_ids():
    start = time.monotonic()
    done = run_isolated("""
        import torch, intcore
        ids = torch.zeros(1, dtype=torch.long).expand(2**40)
        try:
            intcore._C.fixed_point_embedding_forward(ids, torch.ones(1, 7), 8, torch.zeros(3, 7))
        except ValueError as e:
            print(e)
    """, timeout=60)
    assert "fixed_point_embedding: out must have shape [1099511627776, 7], got [3, 7]" in done.stdout, done.stderr
    assert time.monotonic() - start < 60


def test_engine_outputs_must_not_alias_inputs_or_each_other():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="hadamard: out must not share memory with x"):
        _C.hadamard_transform(x, 8, x)
    high = torch.empty(4, 8, dtype=torch.int8)
    with pytest.raises(ValueError, match="low and high must not share memory"):
        _C.split_gradient(torch.randn(4, 8), 0, high, high, torch.empty(1))
    q = torch.empty(4, 8, dtype=torch.int8)
    with pytest.raises(ValueError, match="must not share memory"):
        _C.quantize_absmax(x, q, q.view(torch.float32)[0, :1], 8, "nearest")


def test_engine_arguments_torch_cannot_export_are_named_type_errors():
    out = torch.empty(4, 8)
    with pytest.raises(TypeError, match="dequantize_absmax: scale cannot be read through DLPack"):
        _C.dequantize_absmax(torch.zeros(4, 8, dtype=torch.int8), torch.ones(1, requires_grad=True), 8, out)
    with pytest.raises(TypeError, match="hadamard_transform: x cannot be read through DLPack"):
        _C.hadamard_transform(torch.randn(4, 8, device="meta"), 8, out)
    with pytest.raises(TypeError, match="hadamard_transform: x must be an array that supports DLPack"):
        _C.hadamard_transform(None, 8, out)
    with pytest.raises(ValueError, match="quantize_absmax: rounding must be"):
        _C.quantize_absmax(torch.randn(4, 8), torch.empty(4, 8, dtype=torch.int8), torch.empty(4), 8, "up")
    # A bit width beyond int reaches the engine's own range check.
    with pytest.raises(ValueError, match="bits must be 8 or 4"):
        _C.dequantize_absmax(torch.zeros(4, 8, dtype=torch.int8), torch.ones(1), 2**40, out)


# ---- the Hadamard transform: large finite inputs -----------------------------------------------


def test_hadamard_of_large_finite_values_is_finite():
    y = intcore.hadamard(torch.full((1, 128), 3e36), 128)
    assert float(y[0, 0]) == pytest.approx(3e36 * 128**0.5, rel=1e-6)  # 3.39e37
    assert bool((y[0, 1:] == 0).all())
    # Ordinary values are transformed exactly as before (the scaled path is not taken).
    x = torch.randn(3, 64)
    with intcore.portable_kernels():
        assert torch.equal(intcore.hadamard(x, 32), y_portable := intcore.hadamard(x, 32))
    assert torch.equal(intcore.hadamard(x, 32), y_portable)


def test_int4_linear_of_large_finite_input_is_finite_forward_and_backward():
    torch.manual_seed(0)
    x = torch.full((2, 128), 3e36)
    w = (torch.randn(4, 128) * 1e-3).requires_grad_()
    y = intcore.int4_linear(x, w, block_size=128, sampling=False)
    assert bool(torch.isfinite(y).all())
    expected = x.double() @ w.detach().double().T
    assert float((y.detach().double() - expected).norm() / expected.norm()) < 0.3
    y.backward(torch.ones_like(y))
    assert bool(torch.isfinite(w.grad).all())
    assert float(w.grad.abs().max()) == pytest.approx(6e36, rel=0.2)


# ---- clean, named errors -----------------------------------------------------------------------


@pytest.mark.parametrize("config", [None, "int8", intcore.Int4Config(), 8])
def test_fixed_point_functions_refuse_other_configs(config):
    x, w = torch.randn(3, 8), torch.randn(4, 8)
    with pytest.raises(TypeError, match="fixed_point_linear: config must be an intcore.FixedPointConfig"):
        intcore.fixed_point_linear(x, w, config=config)
    with pytest.raises(TypeError, match="fixed_point_layer_norm: config must be"):
        intcore.fixed_point_layer_norm(x, config=config)
    with pytest.raises(TypeError, match="fixed_point_embedding: config must be"):
        intcore.fixed_point_embedding(torch.tensor([1]), w, config=config)


@pytest.mark.parametrize("bad", [None, [[1.0] * 8], torch.randn(3, 8).numpy()])
def test_search_block_size_refuses_non_tensors(bad):
    with pytest.raises(TypeError, match="search_block_size: x must be a torch.Tensor"):
        intcore.search_block_size(bad, torch.randn(4, 8))
    with pytest.raises(TypeError, match="search_block_size: w must be a torch.Tensor"):
        intcore.search_block_size(torch.randn(3, 8), bad)


def test_search_block_size_refuses_nan():
    x = torch.randn(4, 64)
    x[1, 5] = NAN
    with pytest.raises(ValueError, match="search_block_size: x contains NaN or Inf"):
        intcore.search_block_size(x, torch.randn(8, 64))
    w = torch.randn(8, 64)
    w[7, 0] = -INF
    with pytest.raises(ValueError, match="search_block_size: w contains NaN or Inf"):
        intcore.search_block_size(torch.randn(4, 64), w)


def test_embedding_padding_idx_is_checked_like_torch():
    weight = torch.randn(5, 3)
    for padding_idx in (-5, 4, -1, 0):
        intcore.fixed_point_embedding(torch.tensor([0, 4]), weight, padding_idx=padding_idx)
    for padding_idx in (5, -6, 99):
        with pytest.raises(ValueError, match=r"fixed_point_embedding: padding_idx must be within \[-5, 5\)"):
            intcore.fixed_point_embedding(torch.tensor([0]), weight, padding_idx=padding_idx)
    # No ids and no rows: what torch gives, or its refusal of the padding index.
    assert intcore.fixed_point_embedding(torch.zeros(0, dtype=torch.long), weight, padding_idx=1).shape == (0, 3)
    with pytest.raises(ValueError, match="padding_idx must be within"):
        intcore.fixed_point_embedding(torch.zeros(0, dtype=torch.long), torch.randn(0, 3), padding_idx=1)


def test_lsq_backward_of_no_rows():
    x = torch.randn(0, 8, requires_grad=True)
    w = torch.randn(4, 8, requires_grad=True)
    steps = torch.ones(1, requires_grad=True), torch.ones(1, requires_grad=True)
    intcore.int4_linear(x, w, block_size=8, x_step=steps[0], w_step=steps[1]).sum().backward()
    assert x.grad.shape == (0, 8) and float(steps[0].grad) == 0.0 and bool(torch.isfinite(steps[1].grad).all())
    with pytest.raises(ValueError, match="lsq_initial_step: v is empty"):
        intcore.int4_training.lsq_initial_step(torch.randn(0, 8), 8)


def test_dequantize_absmax_takes_a_scale_that_requires_grad():
    q, scale = intcore.quantize_absmax(torch.randn(4, 8))
    out = intcore.dequantize_absmax(q, scale.clone().requires_grad_())
    assert torch.equal(out, intcore.dequantize_absmax(q, scale))
    with pytest.raises(ValueError, match=r"dequantize_absmax: cols \(7\) does not match q"):
        intcore.dequantize_absmax(q, scale, 8, 7)


@pytest.mark.parametrize("name,args", [
    ("int8_mm", (None, None)),
    ("hadamard", (None, 8)),
    ("int8_linear", (torch.randn(2, 3), None, None)),
    ("quantize_fixed_point", (torch.randn(2, 3), 8, "nearest", False, None)),
    ("hq_linear", (torch.randn(2, 8), torch.randn(3, 8).to_sparse(), None, 8, True, 0.5, None, None)),
])
def test_raw_ops_refuse_none_and_sparse_tensors_by_name(name, args):
    for forced in (False, True):
        with intcore.portable_kernels(forced):
            with pytest.raises(TypeError, match=rf"^{name}: \w+ must be a (torch.Tensor|dense)"):
                getattr(ops, name)(*args)


def test_errors_name_the_public_function_and_argument():
    x, w = torch.randn(2, 8), torch.randn(3, 8)
    nan = torch.full((2, 8), NAN)
    cases = [
        (lambda: intcore.int8_linear(nan, w), "int8_linear: x contains NaN or Inf"),
        (lambda: intcore.int8_linear(x, nan[:1].expand(3, 8)), "int8_linear: w contains NaN or Inf"),
        (lambda: intcore.int4_linear(x, w, recipe="absmax", bias=torch.full((3,), INF)),
         "int4_linear: bias contains NaN or Inf"),
        (lambda: intcore.fixed_point_linear(x, nan[:1].expand(3, 8)), "fixed_point_linear: weight contains NaN or Inf"),
        (lambda: intcore.fixed_point_linear(x, w, torch.tensor([0.0, NAN, 1.0])), "fixed_point_linear: bias contains"),
        (lambda: intcore.fixed_point_layer_norm(x, torch.ones(8), torch.full((8,), NAN)),
         "fixed_point_layer_norm: bias contains NaN or Inf"),
        (lambda: intcore.hadamard(nan, 8), "hadamard: x contains NaN or Inf"),
        (lambda: intcore.quantize_fixed_point(x.double() * 1e300, 8), "quantize_fixed_point: x holds values beyond"),
        (lambda: intcore.fixed_point_embedding(torch.tensor([0, 9]), w), "fixed_point_embedding: ids holds 9"),
        (lambda: intcore.int4_mm(torch.zeros(2, 0, dtype=torch.uint8), torch.zeros(2, 0, dtype=torch.uint8), -1),
         "int4_mm: k must be >= 0, got -1"),
        (lambda: intcore.int8_linear(x, torch.randn(3, 7)), "int8_linear: x has 8 features"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(message), str(info.value)


def test_backward_errors_name_the_function():
    x = torch.randn(4, 8, requires_grad=True)
    for forward, name in ((lambda: intcore.int8_linear(x, torch.randn(5, 8)), "int8_linear backward"),
                          (lambda: intcore.fixed_point_linear(x, torch.randn(5, 8)), "fixed_point_linear backward"),
                          (lambda: intcore.hadamard(x, 8), "hadamard backward")):
        y = forward()
        with pytest.raises(ValueError, match=f"^{name}: grad contains NaN or Inf"):
            y.backward(torch.full_like(y, NAN))


def test_negative_sizes_say_what_is_wrong():
    a = torch.zeros(2, 0, dtype=torch.uint8)
    for forced in (False, True):
        with intcore.portable_kernels(forced):
            with pytest.raises(ValueError, match="must be >= 0, got -1"):
                ops.int4_mm(a, a, -1)
            with pytest.raises(ValueError, match="cols must be >= 0"):
                ops.dequantize_absmax(torch.zeros(2, 0, dtype=torch.int8), torch.ones(1), 8, -1)
            with pytest.raises(ValueError, match="num_embeddings must be >= 0"):
                ops.fixed_point_embedding_backward(torch.randn(1, 3), torch.zeros(1, dtype=torch.long), -1, 8,
                                                   "nearest", -1, torch.tensor(1))


# ---- empty reductions --------------------------------------------------------------------------


@pytest.mark.parametrize("linear", [
    lambda x, w, b: intcore.int8_linear(x, w, b),
    lambda x, w, b: intcore.int4_linear(x, w, b, block_size=1),
    lambda x, w, b: intcore.int4_linear(x, w, b, recipe="absmax"),
    lambda x, w, b: intcore.fixed_point_linear(x, w, b),
])
def test_linear_layers_with_no_in_features_give_the_bias(linear):
    x, w, b = torch.randn(2, 3, 0, requires_grad=True), torch.randn(5, 0, requires_grad=True), torch.randn(5)
    assert torch.equal(linear(x, w, None), torch.zeros(2, 3, 5))
    y = linear(x, w, b)
    assert torch.equal(y, b.expand(2, 3, 5))
    y.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


def test_other_functions_with_an_empty_last_dimension():
    x = torch.randn(2, 3, 0, requires_grad=True)
    assert intcore.hadamard(x, 1).shape == (2, 3, 0)
    assert intcore.search_block_size(torch.randn(4, 0), torch.randn(3, 0)) == 1
    y = intcore.fixed_point_layer_norm(x, torch.ones(0), torch.zeros(0))
    assert y.shape == torch.nn.functional.layer_norm(x, (0,)).shape
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_engine_arguments_under_a_torch_function_mode_go_through_dlpack():
    # CPU tensors cross into the engine by a fast path that skips Tensor.__dlpack__; while a
    # TorchFunctionMode is active they take __dlpack__ itself, which consults the mode.
    from torch.overrides import TorchFunctionMode

    class Record(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    x = torch.randn(4, 8)
    q, e = torch.empty(4, 8, dtype=torch.int8), torch.empty(4, dtype=torch.int32)
    with Record() as mode:
        _C.quantize_fixed_point(x, q, e, 8, "nearest", 0, 0)
    assert "__dlpack__" in mode.seen
    expected_q, expected_e = torch.empty_like(q), torch.empty_like(e)
    _C.quantize_fixed_point(x, expected_q, expected_e, 8, "nearest", 0, 0)
    assert torch.equal(q, expected_q) and torch.equal(e, expected_e)

"""int8_linear / int4_linear: outputs and gradients against fp64, opcheck, compile, seeds."""

import functools

import pytest
import torch

import intcore
from conftest import snr_db

# Per-row absmax on Gaussian data: int8 noise is about 40 dB below the signal, int4 about 14 dB;
# stochastic rounding of the gradient costs a few dB more. Thresholds keep ~4 dB of margin.
SNR_FLOOR_DB = {
    "int8": {"y": 35.0, "dx": 33.0, "dw": 33.0},
    "int4": {"y": 10.0, "dx": 9.0, "dw": 9.0},
}
LINEAR = {"int8": intcore.int8_linear, "int4": functools.partial(intcore.int4_linear, recipe="absmax")}


def float_reference(x, w, b, g):
    x64, w64, g64 = x.double(), w.double(), g.double()
    y = x64 @ w64.T + (0 if b is None else b.double())
    return y, g64 @ w64, g64.T @ x64, g64.sum(0)


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("shape", [(64, 96, 48), (33, 257, 130), (1, 768, 64)])
def test_output_and_gradients_track_fp64(kind, shape):
    m, k, n = shape
    x = torch.randn(m, k, requires_grad=True)
    w = (torch.randn(n, k) * 0.05).requires_grad_()
    b = torch.randn(n, requires_grad=True)
    g = torch.randn(m, n)
    y = LINEAR[kind](x, w, b)
    y.backward(g)
    y_ref, dx_ref, dw_ref, db_ref = float_reference(x.detach(), w.detach(), b.detach(), g)
    floor = SNR_FLOOR_DB[kind]
    assert snr_db(y.detach(), y_ref) > floor["y"]
    assert snr_db(x.grad, dx_ref) > floor["dx"]
    assert snr_db(w.grad, dw_ref) > floor["dw"]
    torch.testing.assert_close(b.grad, db_ref.float())  # a float32 sum, as in nn.Linear


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_any_float_dtype_in_and_out(dtype):
    x = torch.randn(2, 5, 64, dtype=dtype, requires_grad=True)
    w = torch.randn(32, 64, dtype=dtype, requires_grad=True)
    y = intcore.int8_linear(x, w)
    assert y.dtype == dtype and y.shape == (2, 5, 32)
    y.sum().backward()
    assert x.grad.dtype == dtype and w.grad.dtype == dtype
    y_ref = x.detach().double() @ w.detach().double().T
    assert snr_db(y.detach(), y_ref) > (25 if dtype != torch.float64 else 35)


def test_non_contiguous_inputs_give_the_same_result():
    x = torch.randn(48, 80)
    w = torch.randn(80, 40)  # so that w.T is a non-contiguous [40, 80]
    y1 = intcore.int8_linear(x.T.contiguous().T, w.T)
    y2 = intcore.int8_linear(x, w.T.contiguous())
    assert not w.T.is_contiguous()
    assert torch.equal(y1, y2)


def test_one_dimensional_input_and_empty_batch():
    w = torch.randn(8, 16, requires_grad=True)
    assert intcore.int8_linear(torch.randn(16), w).shape == (8,)
    x = torch.randn(0, 16, requires_grad=True)
    y = intcore.int4_linear(x, w, recipe="absmax")
    assert y.shape == (0, 8)
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w))


@pytest.mark.parametrize("recipe", ["int8", "int4"])
@pytest.mark.parametrize("m,k,n", [(3, 0, 4), (0, 5, 4), (3, 5, 0), (0, 0, 0)])
def test_empty_shapes(recipe, m, k, n):
    # in_features 0: the output is the bias (an empty sum plus bias), every gradient has its shape.
    fn = intcore.int8_linear if recipe == "int8" else (lambda x, w, b: intcore.int4_linear(x, w, b, recipe="absmax"))
    x, w, b = (torch.randn(*s, requires_grad=True) for s in ((m, k), (n, k), (n,)))
    y = fn(x, w, b)
    assert torch.equal(y, b.detach().expand(m, n))
    y.backward(torch.randn(m, n))
    assert torch.equal(x.grad, torch.zeros(m, k)) and torch.equal(w.grad, torch.zeros(n, k))
    assert b.grad.shape == (n,)


def test_manual_seed_reproduces_the_backward_and_steps_differ():
    x = torch.randn(32, 64)
    w = torch.randn(16, 64, requires_grad=True)

    def grad():
        w.grad = None
        intcore.int8_linear(x, w).pow(2).sum().backward()
        return w.grad.clone()

    torch.manual_seed(1)
    g1, g2 = grad(), grad()
    torch.manual_seed(1)
    assert torch.equal(grad(), g1)
    assert not torch.equal(g1, g2)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_opcheck(kind):
    ops = torch.ops.intcore
    x = torch.randn(7, 20, requires_grad=True)
    w = torch.randn(5, 20, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    g = torch.randn(7, 5)
    seed = torch.tensor(11)
    torch.library.opcheck(getattr(ops, f"{kind}_linear"), (x, w, b))
    torch.library.opcheck(getattr(ops, f"{kind}_linear"), (x, w, None))
    torch.library.opcheck(getattr(ops, f"{kind}_linear_grad_input"), (g, w.detach(), seed))
    torch.library.opcheck(getattr(ops, f"{kind}_linear_grad_weight"), (g, x.detach(), seed))


def test_torch_compile_matches_eager():
    import torch._inductor.config as inductor_config

    x = torch.randn(16, 64, requires_grad=True)
    w = torch.randn(32, 64, requires_grad=True)
    b = torch.randn(32, requires_grad=True)

    def step(x, w, b):
        return torch.nn.functional.gelu(intcore.int8_linear(x, w, b)).square().sum()

    def run(fn):
        for t in (x, w, b):
            t.grad = None
        torch.manual_seed(3)
        loss = fn(x, w, b)
        loss.backward()
        return loss.detach(), x.grad.clone(), w.grad.clone()

    eager = run(step)
    # Same random draws as eager (the backward's seed comes from torch.randint).
    with inductor_config.patch(fallback_random=True):
        compiled = run(torch.compile(step, fullgraph=True))
    torch.testing.assert_close(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1])
    torch.testing.assert_close(compiled[2], eager[2])

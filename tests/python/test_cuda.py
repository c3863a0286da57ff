"""The CUDA backend against the CPU engine: bit-identical integer results, matching ops.

Skipped unless intcore's CUDA kernels can run here (a CUDA build of intcore, a CUDA build of
PyTorch and an Ampere-or-newer GPU).
"""

import pytest
import torch

import intcore

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and intcore.cuda_available()),
    reason=f"intcore CUDA kernels unavailable: {intcore.cuda_unavailable_reason() or 'no CUDA in PyTorch'}",
)

SHAPES = [(1, 1, 1), (7, 5, 3), (13, 67, 29), (97, 131, 263), (0, 5, 9), (5, 0, 9), (4, 6, 0), (130, 7, 515),
          (256, 512, 1024), (300, 1000, 4097)]


def both(t):
    return t, t.cuda()


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_int8_mm_bit_identical(m, n, k):
    a, ag = both(torch.randint(-128, 128, (m, k), dtype=torch.int8))
    b, bg = both(torch.randint(-128, 128, (n, k), dtype=torch.int8))
    assert torch.equal(intcore.int8_mm(ag, bg).cpu(), intcore.int8_mm(a, b))


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_int16_and_int4_mm_bit_identical(m, n, k):
    a, ag = both(torch.randint(-(2**15), 2**15, (m, k), dtype=torch.int16))
    b, bg = both(torch.randint(-(2**15), 2**15, (n, k), dtype=torch.int16))
    assert torch.equal(intcore.int16_mm(ag, bg).cpu(), intcore.int16_mm(a, b))
    pa = torch.randint(0, 256, (m, (k + 1) // 2), dtype=torch.uint8)
    pb = torch.randint(0, 256, (n, (k + 1) // 2), dtype=torch.uint8)
    assert torch.equal(intcore.int4_mm(pa.cuda(), pb.cuda(), k).cpu(), intcore.int4_mm(pa, pb, k))


def test_transposed_and_mixed_operands():
    a = torch.randint(-(2**15), 2**15, (300, 77), dtype=torch.int16)
    b = torch.randint(-128, 128, (77, 45), dtype=torch.int8).T
    assert torch.equal(intcore.int16_mm(a.cuda(), b.cuda()).cpu(), intcore.int16_mm(a, b))


def test_int16_mm_across_k_chunks():
    a = torch.full((3, 70000), -(2**15), dtype=torch.int16)
    b = torch.randint(-(2**15), 2**15, (5, 70000), dtype=torch.int16)
    assert torch.equal(intcore.int16_mm(a.cuda(), b.cuda()).cpu(), intcore.int16_mm(a, b))


@pytest.mark.parametrize("bits", [2, 8, 12, 16])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fixed_point_quantizer_bit_identical(bits, rounding, per_row, dtype):
    x = (torch.randn(37, 129) * 3).to(dtype)
    cpu = intcore.quantize_fixed_point(x, bits, rounding, per_row=per_row, seed=11)
    gpu = intcore.quantize_fixed_point(x.cuda(), bits, rounding, per_row=per_row, seed=11)
    assert torch.equal(gpu.mantissa.cpu(), cpu.mantissa) and torch.equal(gpu.exponent.cpu(), cpu.exponent)
    assert torch.equal(intcore.dequantize_fixed_point(*gpu).cpu(), intcore.dequantize_fixed_point(*cpu))


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_absmax_quantizer_bit_identical_with_transposed_input(bits, rounding):
    x = torch.randn(65, 130)
    cpu = intcore.quantize_absmax(x.T, bits, rounding, seed=5)
    gpu = intcore.quantize_absmax(x.cuda().T, bits, rounding, seed=5)
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_linear_forward_and_gradients_match_the_cpu(kind):
    fn = intcore.int8_linear if kind == "int8" else (lambda x, w, b: intcore.int4_linear(x, w, b, recipe="absmax"))
    x = torch.randn(67, 96)
    w = torch.randn(40, 96) * 0.1
    b = torch.randn(40)
    g = torch.randn(67, 40)
    results = []
    for device in ("cpu", "cuda"):
        xs, ws, bs = (t.to(device).requires_grad_() for t in (x, w, b))
        torch.manual_seed(3)
        y = fn(xs, ws, bs)
        y.backward(g.to(device))
        results.append([t.detach().cpu() for t in (y, xs.grad, ws.grad, bs.grad)])
    for cpu, gpu in zip(*results):
        torch.testing.assert_close(gpu, cpu, rtol=0, atol=0)


@pytest.mark.parametrize("bits", [16, 8])
def test_fixed_point_linear_matches_the_cpu(bits):
    config = intcore.FixedPointConfig.uniform(bits)
    x, w, g = torch.randn(33, 64), torch.randn(20, 64), torch.randn(33, 20)
    results = []
    for device in ("cpu", "cuda"):
        xs, ws = x.to(device).requires_grad_(), w.to(device).requires_grad_()
        torch.manual_seed(9)
        y = intcore.fixed_point_linear(xs, ws, None, config)
        y.backward(g.to(device))
        results.append([t.detach().cpu() for t in (y, xs.grad, ws.grad)])
    for cpu, gpu in zip(*results):
        torch.testing.assert_close(gpu, cpu, rtol=0, atol=0)


def test_opcheck_on_cuda():
    a = torch.randint(-128, 128, (9, 32), dtype=torch.int8, device="cuda")
    torch.library.opcheck(torch.ops.intcore.int8_mm, (a, a))
    x = torch.randn(6, 32, device="cuda", requires_grad=True)
    w = torch.randn(5, 32, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.intcore.int8_linear, (x, w, None))
    torch.library.opcheck(torch.ops.intcore.quantize_fixed_point, (x.detach(), 12, "stochastic", True, torch.tensor(1)))


def test_torch_compile_on_cuda():
    x = torch.randn(64, 128, device="cuda", requires_grad=True)
    w = torch.randn(32, 128, device="cuda", requires_grad=True)
    eager = intcore.int8_linear(x, w)
    compiled = torch.compile(intcore.int8_linear, fullgraph=True)(x, w)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


def test_non_finite_input_propagates_as_nan_on_cuda():
    x = torch.randn(4, 8, device="cuda")
    x[1, 2] = float("inf")
    y = intcore.int8_linear(x, torch.randn(3, 8, device="cuda"))
    assert torch.isnan(y[1]).all() and torch.isfinite(y[0]).all()


def test_ops_without_cuda_kernels_say_so():
    with pytest.raises(NotImplementedError, match="no kernel for device cuda"):
        intcore.fixed_point_layer_norm(torch.randn(2, 8, device="cuda"))

"""The CUDA backend against the CPU engine: bit-identical integer results, matching ops.

Skipped where no GPU is meant to be. Where PyTorch sees a GPU, or INTCORE_REQUIRE_CUDA=1 is
set, every test here fails with the reason when intcore's CUDA kernels cannot run (conftest.py,
require_cuda), so a failed build or driver never passes as skips. benchmarks/gpu_check.sh runs
this file on the GPU machine, and the tests marked `sanitize` under compute-sanitizer.

Which kernel configuration a shape reaches (cuda/gemm_heuristics.h, cuda/gemm.cu):
- Hopper, "auto": the sm90 wgmma/TMA kernel, 128 x 128 x 128 tiles in clusters of 1 x 2, a
  persistent grid of one CTA per SM (132 on an H100 SXM): more tiles than SMs runs the
  persistent loop. Used whenever the operands are packed (lda = ldb = K, ldc = N); the K
  chunks of a product with K > 65536 that is not a plain int8 GEMM go to sm80.
- sm80 (Ampere/Ada, or any GPU with the "sm80" setting): the 128 x 256 x 64 tile when M >= 128
  and those tiles fill the SMs at least once, else the 64 x 128 x 64 tile.
"""

import pytest
import torch

import intcore

pytestmark = pytest.mark.usefixtures("require_cuda")

sanitize = pytest.mark.sanitize

SHAPES = [(1, 1, 1), (7, 5, 3), (13, 67, 29), pytest.param(97, 131, 263, marks=sanitize), (0, 5, 9), (5, 0, 9),
          pytest.param(4, 6, 0, marks=sanitize), (130, 7, 515), (256, 512, 1024), (300, 1000, 4097)]

# int8 x int8 -> int32 shapes that reach each GEMM configuration (see the module docstring;
# tile counts for an H100 SXM with 132 SMs, an A100 has 108).
LARGE_SHAPES = [
    (4096, 4096, 4096),  # sm90: 1024 tiles, ~8 per CTA of the persistent loop; sm80: large tile, 512 tiles
    (3000, 5000, 4112),  # ragged M and N; K not a multiple of the 128 (sm90) or 64 (sm80) K tile
    (1024, 1024, 1024),  # sm80: M >= 128 but 32 large tiles < SMs -> small tile; sm90: 64 tiles < SMs
    (1, 4096, 4096),  # a single row (decoding): sm80 small tile, sm90 mostly out-of-bounds rows
    (64, 32768, 128),  # small M, many N tiles: sm90 256 tiles > SMs; sm80 small tile, 256 tiles
    (256, 256, 98304),  # tall K: one GEMM over 768 K steps of 128 (K < 2^17, so no chunks)
    (4096, 4094, 1024),  # N % 4 != 0: packed with N padded to 4096, then the exact epilogue
]


@pytest.fixture(params=["auto", "sm80"])
def gemm_kernel(request):
    """Runs a test with the default GEMM choice and with the sm80 (mma.sync) kernel forced, so
    a Hopper GPU tests the Ampere/Ada path too."""
    intcore._C.set_cuda_gemm_kernel(request.param)
    yield request.param
    intcore._C.set_cuda_gemm_kernel("auto")


def both(t):
    return t, t.cuda()


def int8(*shape):
    return torch.randint(-128, 128, shape, dtype=torch.int8)


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_int8_mm_bit_identical(m, n, k, gemm_kernel):
    a, ag = both(int8(m, k))
    b, bg = both(int8(n, k))
    assert torch.equal(intcore.int8_mm(ag, bg).cpu(), intcore.int8_mm(a, b))


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_int16_and_int4_mm_bit_identical(m, n, k, gemm_kernel):
    a, ag = both(torch.randint(-(2**15), 2**15, (m, k), dtype=torch.int16))
    b, bg = both(torch.randint(-(2**15), 2**15, (n, k), dtype=torch.int16))
    assert torch.equal(intcore.int16_mm(ag, bg).cpu(), intcore.int16_mm(a, b))
    pa = torch.randint(0, 256, (m, (k + 1) // 2), dtype=torch.uint8)
    pb = torch.randint(0, 256, (n, (k + 1) // 2), dtype=torch.uint8)
    assert torch.equal(intcore.int4_mm(pa.cuda(), pb.cuda(), k).cpu(), intcore.int4_mm(pa, pb, k))


@pytest.mark.parametrize("m,n,k", LARGE_SHAPES)
def test_int8_mm_large_shapes_bit_identical(m, n, k, gemm_kernel):
    a, b = int8(m, k), int8(n, k)
    assert torch.equal(intcore.int8_mm(a.cuda(), b.cuda()).cpu(), intcore.int8_mm(a, b))


def test_int16_and_int4_mm_many_tiles_bit_identical(gemm_kernel):
    m, n, k = 2048, 2048, 1040
    a = torch.randint(-(2**15), 2**15, (m, k), dtype=torch.int16)
    b = torch.randint(-(2**15), 2**15, (n, k), dtype=torch.int16)
    assert torch.equal(intcore.int16_mm(a.cuda(), b.cuda()).cpu(), intcore.int16_mm(a, b))
    pa = torch.randint(0, 256, (m, k // 2), dtype=torch.uint8)
    pb = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8)
    assert torch.equal(intcore.int4_mm(pa.cuda(), pb.cuda(), k).cpu(), intcore.int4_mm(pa, pb, k))


@pytest.mark.parametrize("k", [2**17 - 16, 2**17 - 1])
def test_int8_mm_at_the_int32_accumulation_limit(k, gemm_kernel):
    # All -128: every product is 2^14 and the sum 2^14 K, just below 2^31 for K < 2^17. K = 2^17 - 16
    # is one plain GEMM (its int32 accumulator at the limit); 2^17 - 1 is padded and runs in
    # two K chunks of 65536.
    a = torch.full((64, k), -128, dtype=torch.int8)
    b = torch.full((128, k), -128, dtype=torch.int8)
    c = intcore.int8_mm(a.cuda(), b.cuda()).cpu()
    assert torch.equal(c, torch.full((64, 128), 2**14 * k, dtype=torch.int32))
    assert torch.equal(c, intcore.int8_mm(a, b))


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_gemm_into_an_output_not_16_byte_aligned(offset, gemm_kernel):
    # Both tensor-core GEMMs store 16 bytes at a time (and sm90's TMA would hang on a misaligned
    # address): an output starting 4 or 12 bytes into a buffer goes through the accumulator.
    a, b = int8(256, 512), int8(128, 512)
    buffer = torch.zeros(256 * 128 + offset, dtype=torch.int32, device="cuda")
    c = buffer[offset:].view(256, 128)
    intcore._C.gemm_exact(a.cuda(), b.cuda(), c)
    assert torch.equal(c.cpu(), intcore.int8_mm(a, b))


def test_transposed_and_mixed_operands():
    a = torch.randint(-(2**15), 2**15, (300, 77), dtype=torch.int16)
    b = int8(77, 45).T
    assert torch.equal(intcore.int16_mm(a.cuda(), b.cuda()).cpu(), intcore.int16_mm(a, b))


def test_int16_mm_across_k_chunks(gemm_kernel):
    a = torch.full((3, 70000), -(2**15), dtype=torch.int16)
    b = torch.randint(-(2**15), 2**15, (5, 70000), dtype=torch.int16)
    assert torch.equal(intcore.int16_mm(a.cuda(), b.cuda()).cpu(), intcore.int16_mm(a, b))


@pytest.mark.parametrize("bits", [2, 8, 12, 16])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_fixed_point_quantizer_bit_identical(bits, rounding, per_row, dtype):
    x = (torch.randn(37, 129) * 3).to(dtype)
    cpu = intcore.quantize_fixed_point(x, bits, rounding, per_row=per_row, seed=11)
    gpu = intcore.quantize_fixed_point(x.cuda(), bits, rounding, per_row=per_row, seed=11)
    assert torch.equal(gpu.mantissa.cpu(), cpu.mantissa) and torch.equal(gpu.exponent.cpu(), cpu.exponent)
    assert torch.equal(intcore.dequantize_fixed_point(*gpu).cpu(), intcore.dequantize_fixed_point(*cpu))


@pytest.mark.parametrize("layout", ["transposed", "strided"])
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("per_row", [False, True])
def test_fixed_point_quantizer_of_views(layout, bits, per_row):
    base = torch.randn(130, 66) * 3
    view = base.T if layout == "transposed" else base[1::2, ::3]
    cpu = intcore.quantize_fixed_point(view, bits, "stochastic", per_row=per_row, seed=4)
    gpu = intcore.quantize_fixed_point(base.cuda().T if layout == "transposed" else base.cuda()[1::2, ::3], bits,
                                       "stochastic", per_row=per_row, seed=4)
    assert torch.equal(gpu.mantissa.cpu(), cpu.mantissa) and torch.equal(gpu.exponent.cpu(), cpu.exponent)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("per_row", [False, True])
def test_absmax_quantizer_bit_identical_with_transposed_input(bits, rounding, dtype, per_row):
    x = torch.randn(65, 130).to(dtype)
    cpu = intcore.quantize_absmax(x.T, bits, rounding, per_row=per_row, seed=5)
    gpu = intcore.quantize_absmax(x.cuda().T, bits, rounding, per_row=per_row, seed=5)
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])
    assert torch.equal(intcore.dequantize_absmax(*gpu, bits).cpu(), intcore.dequantize_absmax(*cpu, bits))


@sanitize
def test_every_quantizer_once():
    # A short run of each quantizer kernel (the subset compute-sanitizer checks).
    x = (torch.randn(37, 129) * 3).bfloat16()
    for bits in (8, 16):
        cpu = intcore.quantize_fixed_point(x, bits, "stochastic", per_row=bits == 8, seed=2)
        gpu = intcore.quantize_fixed_point(x.cuda(), bits, "stochastic", per_row=bits == 8, seed=2)
        assert torch.equal(gpu.mantissa.cpu(), cpu.mantissa) and torch.equal(gpu.exponent.cpu(), cpu.exponent)
        assert torch.equal(intcore.dequantize_fixed_point(*gpu).cpu(), intcore.dequantize_fixed_point(*cpu))
    for bits in (8, 4):
        cpu = intcore.quantize_absmax(x.T, bits, "stochastic", per_row=bits == 8, seed=3)
        gpu = intcore.quantize_absmax(x.cuda().T, bits, "stochastic", per_row=bits == 8, seed=3)
        assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])
        assert torch.equal(intcore.dequantize_absmax(*gpu, bits).cpu(), intcore.dequantize_absmax(*cpu, bits))


@sanitize
@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
@pytest.mark.parametrize("per_row", [False, True])
def test_quantizers_of_empty_inputs(shape, per_row):
    x = torch.randn(shape)
    for bits in (8, 16):
        cpu = intcore.quantize_fixed_point(x, bits, "stochastic", per_row=per_row, seed=1)
        gpu = intcore.quantize_fixed_point(x.cuda(), bits, "stochastic", per_row=per_row, seed=1)
        assert torch.equal(gpu.mantissa.cpu(), cpu.mantissa) and torch.equal(gpu.exponent.cpu(), cpu.exponent)
    for bits in (8, 4):
        cpu = intcore.quantize_absmax(x, bits, "nearest", per_row=per_row)
        gpu = intcore.quantize_absmax(x.cuda(), bits, "nearest", per_row=per_row)
        assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])


def _linear(kind):
    if kind == "int8":
        return intcore.int8_linear
    return lambda x, w, b: intcore.int4_linear(x, w, b, recipe="absmax")


def _linear_on(device, fn, x, w, b, g, seed=3):
    """y, dx, dw, db of fn on device, on the CPU."""
    xs, ws = x.to(device).requires_grad_(), w.to(device).requires_grad_()
    bs = None if b is None else b.to(device).requires_grad_()
    torch.manual_seed(seed)
    y = fn(xs, ws, bs)
    y.backward(g.to(device))
    return [None if t is None else t.detach().cpu() for t in (y, xs.grad, ws.grad, None if bs is None else bs.grad)]


def assert_linear_matches_the_cpu(fn, x, w, b, g):
    """y, dx and dw come from intcore's kernels: bit for bit. The bias gradient is PyTorch's own
    grad.sum(0), whose summation order differs between CPU and CUDA: close, not equal."""
    cpu = _linear_on("cpu", fn, x, w, b, g)
    gpu = _linear_on("cuda", fn, x, w, b, g)
    for name, c, d in zip(("y", "dx", "dw"), cpu, gpu):
        assert d.dtype == c.dtype and torch.equal(d, c), name
    if b is not None:
        torch.testing.assert_close(gpu[3], cpu[3])


@pytest.mark.parametrize("kind", [pytest.param("int8", marks=sanitize), pytest.param("int4", marks=sanitize)])
def test_linear_forward_and_gradients_match_the_cpu(kind, gemm_kernel):
    x, w, b, g = torch.randn(67, 96), torch.randn(40, 96) * 0.1, torch.randn(40), torch.randn(67, 40)
    assert_linear_matches_the_cpu(_linear(kind), x, w, b, g)


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_linear_with_other_float_dtypes(kind, dtype):
    x, w, b, g = (t.to(dtype) for t in (torch.randn(67, 96), torch.randn(40, 96) * 0.1, torch.randn(40),
                                          torch.randn(67, 40)))
    assert_linear_matches_the_cpu(_linear(kind), x, w, b, g)


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("m,k,n", [
    pytest.param(67, 96, 37, marks=sanitize),  # N % 4 != 0: B padded to 40 rows, GEMM into a padded product
    (67, 50, 38),  # K % 16 != 0 too: both operands packed
    (2048, 1024, 4094),  # many tiles with padded N
])
def test_linear_with_ragged_shapes(kind, m, k, n, gemm_kernel):
    x, w, b, g = torch.randn(m, k), torch.randn(n, k) * 0.1, torch.randn(n), torch.randn(m, n)
    assert_linear_matches_the_cpu(_linear(kind), x, w, b, g)


def test_linear_with_k_beyond_the_int32_limit():
    # in_features >= 2^17: the scaled GEMM runs in K chunks through the int64 accumulator.
    k = 2**17 + 16
    x, w, b, g = torch.randn(8, k), torch.randn(16, k) * 0.01, torch.randn(16), torch.randn(8, 16)
    assert_linear_matches_the_cpu(intcore.int8_linear, x, w, b, g)


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("m,k,n", [pytest.param(3, 0, 4, marks=sanitize), pytest.param(0, 5, 4, marks=sanitize),
                                   (3, 5, 0), (0, 0, 0), (64, 0, 256)])
def test_linear_with_empty_shapes(kind, m, k, n, gemm_kernel):
    # in_features 0 is a GEMM with K = 0: zeros plus bias, written without a GEMM (on Hopper the
    # TMA GEMM would hang). A batch of 0 rows makes the weight gradient's K 0.
    x, w, b, g = torch.randn(m, k), torch.randn(n, k), torch.randn(n), torch.randn(m, n)
    assert_linear_matches_the_cpu(_linear(kind), x, w, b, g)
    y = _linear(kind)(x.cuda(), w.cuda(), b.cuda())
    assert torch.equal(y.cpu(), b.expand(m, n))


FIXED_POINT_CONFIGS = [
    intcore.FixedPointConfig.uniform(16),
    intcore.FixedPointConfig.uniform(8),
    intcore.FixedPointConfig(weight_bits=8, activation_bits=8, grad_bits=16, rounding="nearest"),
    # Per-row exponents: the backward aligns them (portable align_fixed_point) before the GEMMs.
    intcore.FixedPointConfig.uniform(8, granularity="per_row"),
    intcore.FixedPointConfig(weight_bits=16, activation_bits=8, grad_bits=8, granularity="per_row", rounding="nearest"),
]


def assert_fixed_point_linear_matches_the_cpu(config, x, w, b, g, need_grad=(True, True)):
    results = []
    for device in ("cpu", "cuda"):
        xs, ws = x.to(device).requires_grad_(need_grad[0]), w.to(device).requires_grad_(need_grad[1])
        bs = None if b is None else b.to(device)
        torch.manual_seed(9)
        y = intcore.fixed_point_linear(xs, ws, bs, config)
        y.backward(g.to(device))
        results.append([t.detach().cpu() for t in (y, xs.grad, ws.grad) if t is not None])
    assert len(results[0]) == len(results[1]) == 1 + sum(need_grad)
    for cpu, gpu in zip(*results):
        torch.testing.assert_close(gpu, cpu, rtol=0, atol=0)


@pytest.mark.parametrize("config", FIXED_POINT_CONFIGS, ids=lambda c: f"{c.describe()}-{c.granularity}-{c.rounding}")
@pytest.mark.parametrize("bias", [False, True])
def test_fixed_point_linear_matches_the_cpu(config, bias):
    x, w, b, g = torch.randn(33, 64), torch.randn(20, 64), torch.randn(20), torch.randn(33, 20)
    assert_fixed_point_linear_matches_the_cpu(config, x, w, b if bias else None, g)


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("need_grad", [(False, True), (True, False)], ids=["frozen-input", "frozen-weight"])
def test_fixed_point_linear_with_one_gradient(per_row, need_grad):
    # A first layer (no input gradient) quantizes G^T on its own (stream offset 1); a frozen
    # weight needs only the input gradient.
    config = intcore.FixedPointConfig.uniform(8, granularity="per_row" if per_row else "per_tensor")
    x, w, g = torch.randn(17, 48), torch.randn(24, 48), torch.randn(17, 24)
    assert_fixed_point_linear_matches_the_cpu(config, x, w, None, g, need_grad)


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("m,k,n", [(0, 5, 1), (1, 5, 0), (0, 5, 0), (3, 0, 4)])
def test_fixed_point_linear_with_empty_shapes(per_row, m, k, n):
    # Per-row exponent vectors of zero rows go to the portable backward too (they are not one
    # shared exponent).
    config = intcore.FixedPointConfig.uniform(8, granularity="per_row" if per_row else "per_tensor")
    x, w, b, g = torch.randn(m, k), torch.randn(n, k), torch.randn(n), torch.randn(m, n)
    assert_fixed_point_linear_matches_the_cpu(config, x, w, b, g)


@sanitize
def test_kernels_run_on_the_current_stream():
    # Inputs are written on a side stream after a long sleep: a kernel that ran on another stream
    # would read them before they are written (zeros) and give a wrong result.
    a, b = int8(256, 512), int8(384, 512)
    x, w, bias = torch.randn(64, 96), torch.randn(40, 96), torch.randn(40)
    expected_c, expected_y = intcore.int8_mm(a, b), intcore.int8_linear(x, w, bias)
    sources = [t.cuda() for t in (a, b, x, w, bias)]
    targets = [torch.zeros_like(t) for t in sources]
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # about 0.1 s of GPU cycles
        for target, source in zip(targets, sources):
            target.copy_(source)
        c = intcore.int8_mm(targets[0], targets[1])
        y = intcore.int8_linear(*targets[2:])
    side.synchronize()
    assert torch.equal(c.cpu(), expected_c)
    assert torch.equal(y.cpu(), expected_y)


def test_temporaries_pool_keeps_its_memory():
    # cuda/runtime.cu sets the release threshold of the pool cudaMallocAsync uses to UINT64_MAX:
    # the temporaries' memory stays in the pool across synchronizations until released.
    a = torch.randint(-(2**15), 2**15, (512, 1000), dtype=torch.int16)
    expected = intcore.int16_mm(a, a)
    ag = a.cuda()
    for _ in range(2):
        assert torch.equal(intcore.int16_mm(ag, ag).cpu(), expected)
        torch.cuda.synchronize()
    stats = intcore._C.cuda_memory_pool_stats()
    assert stats["release_threshold"] == 2**64 - 1
    assert stats["reserved_bytes"] >= 512 * 512 * 8  # at least the int64 accumulator of the last product
    intcore._C.cuda_release_cached_memory()
    assert intcore._C.cuda_memory_pool_stats()["reserved_bytes"] < stats["reserved_bytes"]
    assert torch.equal(intcore.int16_mm(ag, ag).cpu(), expected)


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
    bias = torch.tensor([0.0, float("nan"), 1.0], device="cuda")
    y = intcore.int8_linear(x.nan_to_num(), torch.randn(3, 8, device="cuda"), bias)
    assert torch.isnan(y[:, 1]).all() and torch.isfinite(y[:, [0, 2]]).all()


def test_nan_marked_codes_stay_nan_on_every_backend():
    # The CUDA quantizer writes exponent -2^31 for a row holding NaN or Inf; the CPU engine and
    # the portable kernels read it as NaN too, and the per-row backward's alignment keeps it.
    x = torch.randn(3, 16, device="cuda")
    x[1, 5] = float("nan")
    codes = intcore.quantize_fixed_point(x, 8, "nearest", per_row=True, seed=0)
    assert codes.exponent[1].item() == -(2**31)
    on_cpu = intcore.dequantize_fixed_point(codes.mantissa.cpu(), codes.exponent.cpu())
    assert torch.isnan(on_cpu[1]).all() and torch.isfinite(on_cpu[[0, 2]]).all()
    config = intcore.FixedPointConfig.uniform(8, granularity="per_row")
    xs = x.clone().requires_grad_()
    w = torch.randn(4, 16, device="cuda", requires_grad=True)
    y = intcore.fixed_point_linear(xs, w, None, config)
    y.backward(torch.ones_like(y))
    assert torch.isnan(w.grad).all()


def test_every_op_on_cuda_gives_the_cpu_engines_bits():
    # The self-check's cases on the GPU: native kernels against portable ones, and every result
    # (native, or portable where CUDA has no kernel: layer norm, embedding, Hadamard, HQ) against
    # the CPU engine's on the same inputs.
    from intcore import self_check

    results = self_check.check_device("cuda")
    bad = [f"{r.op} ({r.label}): {r.status} {r.detail}" for r in results if r.status != "ok"]
    assert results and not bad, "\n".join(bad)

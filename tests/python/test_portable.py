"""Portable kernels against the C++ engine: the same bits for the quantizers, the exact integer
products and the linear layers, over a randomized sweep; the same inputs refused.

(Layer norm and embedding: test_portable_layer_norm.py; INT4 training: test_portable_int4.py.)
"""

from pathlib import Path

import pytest
import torch

from intcore.backends import engine_kernels, portable
from intcore.backends.portable.philox import philox4x32_10, random_words
from parity import FLOATS, assert_refused_alike, assert_same_bits, seed

SHAPES = [(1, 1), (1, 7), (7, 1), (33, 65), (130, 70), (0, 5), (5, 0)]


def both(name, *args):
    return portable.KERNELS[name](*args), engine_kernels.KERNELS[name](*args)


def sample(shape, dtype, outliers=False, transposed=False):
    x = torch.randn(shape[::-1] if transposed else shape, dtype=torch.float64) * 3
    if outliers and x.numel():
        x.view(-1)[:: max(1, x.numel() // 5)] *= 1000
    x = x.to(dtype)
    return x.T if transposed else x


def test_philox_known_answers():
    kat = Path(__file__).parents[1] / "cpp" / "data" / "philox4x32_10_kat.txt"
    for line in kat.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        words = [int(w, 16) for w in line.split()]
        counter = [torch.tensor([w]) for w in words[:4]]
        out = philox4x32_10(*counter, words[4], words[5])
        assert [int(v) for v in out] == words[6:]


def test_random_words_match_engine_stream():
    # The engine's stochastic rounding at 2 bits reveals its words through the codes; simpler:
    # words straddling blocks equal the same words drawn from block 0.
    whole = random_words(5, 3, 0, 64, "cpu")
    for first in (0, 1, 3, 5, 17):
        assert torch.equal(random_words(5, 3, first, 20, "cpu"), whole[first : first + 20])
    high = random_words(2**63 + 11, 2**40 + 1, 2**34, 9, "cpu")
    assert high.min() >= 0 and high.max() < 2**32


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("transposed", [False, True])
def test_quantize_fixed_point(dtype, shape, transposed):
    x = sample(shape, dtype, outliers=True, transposed=transposed)
    for bits in (2, 5, 8, 9, 12, 16):
        for rounding in ("nearest", "stochastic"):
            for per_row in (False, True):
                p, e = both("quantize_fixed_point", x, bits, rounding, per_row, seed(bits * 7 + 1))
                assert_same_bits(p, e)
                assert_same_bits(*both("dequantize_fixed_point", *p))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES + [(3, 8), (2, 9)])
@pytest.mark.parametrize("transposed", [False, True])
def test_quantize_absmax(dtype, shape, transposed):
    x = sample(shape, dtype, outliers=True, transposed=transposed)
    for bits in (8, 4):
        for rounding in ("nearest", "stochastic"):
            for per_row in (False, True):
                p, e = both("quantize_absmax", x, bits, rounding, per_row, seed(99))
                assert_same_bits(p, e)
                assert_same_bits(*both("dequantize_absmax", *p, bits, shape[1]))


def test_quantizers_zero_rows_and_tiny_values():
    x = torch.zeros(4, 9)
    x[1, 3] = 1e-40  # subnormal
    x[2] = 3e38
    for bits in (4, 8):
        assert_same_bits(*both("quantize_absmax", x, bits, "stochastic", True, seed(1)))
    for bits in (2, 16):
        assert_same_bits(*both("quantize_fixed_point", x, bits, "stochastic", True, seed(1)))


# Exponents across int32: subnormal and zero steps below 2^-1022, inf above 2^1023, rows far
# apart (their difference overflows int32), and INT32_MIN, the CUDA quantizer's NaN marker.
EXTREME_EXPONENTS = [-(2**31), -(2**31) + 1, -2000, -1075, -1074, -1060, -1023, -1022, 0, 1023, 1024, 2**31 - 1]


@pytest.mark.parametrize("e", EXTREME_EXPONENTS)
def test_extreme_exponents(e):
    m8 = torch.tensor([[3, -5, 0], [1, 2, -128]], dtype=torch.int8)
    m16 = torch.tensor([[3, -5, 0], [1, 2, -(2**15)]], dtype=torch.int16)
    for per_tensor in (torch.tensor([e], dtype=torch.int32), torch.tensor([e, 4], dtype=torch.int32)):
        for mantissa in (m8, m16):
            result = both("dequantize_fixed_point", mantissa, per_tensor)
            assert_same_bits(*result)
            if e == -(2**31):
                assert torch.isnan(result[1][0]).all()
    # Per-row exponents are aligned onto one before the backward's GEMMs.
    exponent = torch.tensor([e, 4], dtype=torch.int32)
    grad = torch.randn(2, 3)
    for need_grad in ([True, True], [False, True]):
        args = (grad, m8[:, :2], exponent, m8.T.contiguous(), torch.tensor([-3], dtype=torch.int32))
        result = both("fixed_point_linear_backward", *args, 8, "nearest", True, need_grad, seed(1))
        assert_same_bits(*result)
        if e == -(2**31):
            assert torch.isnan(result[1][1]).all()  # the NaN row is in every sum over tokens


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 5, 3), (33, 17, 65), (0, 4, 3), (4, 0, 3), (4, 3, 0), (65, 130, 257)])
def test_exact_products(m, n, k):
    a8, b8 = torch.randint(-128, 128, (m, k), dtype=torch.int8), torch.randint(-128, 128, (n, k), dtype=torch.int8)
    assert_same_bits(*both("int8_mm", a8, b8))
    assert_same_bits(*both("int8_mm", a8, b8[:, :k]))
    a16 = torch.randint(-(2**15), 2**15, (m, k), dtype=torch.int16)
    b16 = torch.randint(-(2**15), 2**15, (n, k), dtype=torch.int16)
    assert_same_bits(*both("int16_mm", a16, b16))
    assert_same_bits(*both("int16_mm", a16, b8))
    assert_same_bits(*both("int16_mm", a8, b16))
    assert_same_bits(*both("int16_mm", a16.T.contiguous().T, b16))
    pa = torch.randint(0, 256, (m, (k + 1) // 2), dtype=torch.uint8)
    pb = torch.randint(0, 256, (n, (k + 1) // 2), dtype=torch.uint8)
    assert_same_bits(*both("int4_mm", pa, pb, k))
    exact = a16.long() @ b16.long().T
    assert torch.equal(portable.KERNELS["int16_mm"](a16, b16), exact)


def test_extreme_int16_products():
    a = torch.full((3, 3000), -(2**15), dtype=torch.int16)
    assert_same_bits(*both("int16_mm", a, a))
    a8 = torch.full((2, 2**17 - 1), -128, dtype=torch.int8)
    assert_same_bits(*both("int8_mm", a8, a8))


@pytest.mark.parametrize("name", ["int8_linear", "int4_linear"])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (9, 5, 7), (40, 33, 70), (0, 3, 4), (3, 4, 0)])
def test_absmax_linear(name, dtype, m, n, k):
    x, w = sample((m, k), dtype, outliers=True), sample((n, k), dtype)
    bias = torch.randn(n, dtype=dtype)
    grad = sample((m, n), dtype)
    assert_same_bits(*both(name, x, w, bias))
    assert_same_bits(*both(name, x, w, None))
    for s in (0, 12345, 2**62 + 7):
        assert_same_bits(*both(f"{name}_grad_input", grad, w, seed(s)))
        assert_same_bits(*both(f"{name}_grad_weight", grad, x, seed(s)))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (9, 5, 7), (40, 33, 70), (0, 3, 4), (3, 4, 0)])
def test_fixed_point_linear(dtype, m, n, k):
    x, w = sample((m, k), dtype, outliers=True), sample((n, k), dtype)
    bias, grad = torch.randn(n, dtype=dtype), sample((m, n), dtype)
    for bits in ([16, 16, 16], [8, 8, 8], [12, 9, 10], [8, 16, 4]):
        for rounding in ("nearest", "stochastic"):
            for per_row in (False, True):
                args = (bits, rounding, per_row, seed(sum(bits)))
                p, e = both("fixed_point_linear", x, w, bias, *args)
                assert_same_bits(p, e)
                for need in ([True, True], [True, False], [False, True]):
                    backward = (grad, *e[1:], bits[2], rounding, per_row, need, seed(3))
                    assert_same_bits(*both("fixed_point_linear_backward", *backward))


BAD_CALLS = [
    ("quantize_fixed_point", lambda: (torch.tensor([[1.0, float("nan")]]), 8, "nearest", False, seed(0))),
    ("quantize_fixed_point", lambda: (torch.tensor([[1.0, float("inf")]], dtype=torch.float64), 8, "nearest", True, seed(0))),
    ("quantize_fixed_point", lambda: (torch.tensor([[1e300]], dtype=torch.float64), 8, "nearest", True, seed(0))),
    ("quantize_fixed_point", lambda: (torch.ones(2, 2), 1, "nearest", False, seed(0))),
    ("quantize_fixed_point", lambda: (torch.ones(2, 2), 17, "nearest", False, seed(0))),
    ("quantize_fixed_point", lambda: (torch.ones(2, 2, dtype=torch.int32), 8, "nearest", False, seed(0))),
    ("quantize_absmax", lambda: (torch.tensor([[float("nan")]]), 8, "nearest", False, seed(0))),
    ("quantize_absmax", lambda: (torch.ones(2, 2), 6, "nearest", False, seed(0))),
    ("quantize_absmax", lambda: (torch.ones(2), 8, "nearest", False, seed(0))),
    ("dequantize_absmax", lambda: (torch.zeros(4, 8, dtype=torch.int8), torch.ones(1), 8, 7)),
    ("int8_mm", lambda: (torch.zeros(2, 3, dtype=torch.int8), torch.zeros(2, 4, dtype=torch.int8))),
    ("int8_mm", lambda: (torch.zeros(2, 3, dtype=torch.int16), torch.zeros(2, 3, dtype=torch.int8))),
    ("int8_mm", lambda: (torch.zeros(1, 2**17, dtype=torch.int8), torch.zeros(1, 2**17, dtype=torch.int8))),
    ("int4_mm", lambda: (torch.zeros(2, 3, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.uint8), 8)),
    ("int8_linear", lambda: (torch.ones(2, 3), torch.ones(4, 5), None)),
    ("int8_linear", lambda: (torch.tensor([[float("inf")]]), torch.ones(1, 1), None)),
    ("int8_linear_grad_input", lambda: (torch.ones(2, 3), torch.ones(4, 5), seed(0))),
    ("int4_linear_grad_weight", lambda: (torch.ones(2, 3), torch.ones(4, 5), seed(0))),
]


@pytest.mark.parametrize("name,make_args", BAD_CALLS)
def test_same_inputs_refused(name, make_args):
    assert_refused_alike(name, make_args)


@pytest.mark.parametrize("m,n,k", [(3, 4, 1), (1, 4, 5), (4, 1, 5), (1, 1, 1)])
def test_products_with_size_one_dimensions_in_any_layout(m, n, k):
    # torch._int_mm on the CPU misreads [1, n] operands with strides (1, 1); transposed views
    # of [n, 1] matrices produce exactly those.
    a8 = torch.randint(-128, 128, (k, m), dtype=torch.int8).T
    b8 = torch.randint(-128, 128, (k, n), dtype=torch.int8).T
    assert_same_bits(*both("int8_mm", a8, b8))
    assert torch.equal(portable.KERNELS["int8_mm"](a8, b8).long(), a8.long() @ b8.long().T)

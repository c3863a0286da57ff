"""Quantizers: the spec's exponent rule, round trips, unbiased stochastic rounding, seeds."""

import math

import pytest
import torch

import intcore


def expected_exponent(x: torch.Tensor, bits: int) -> int:
    """docs/integer-finetuning.md: LSB exponent = e_max - (bits - 1), |x| < 2**e_max (frexp)."""
    return math.frexp(float(x.abs().max()))[1] - (bits - 1)


@pytest.mark.parametrize("bits", [2, 4, 8, 10, 12, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_fixed_point_nearest_matches_the_spec(bits, dtype):
    x = (torch.randn(9, 70) * 3).to(dtype)
    fp = intcore.quantize_fixed_point(x, bits, "nearest")
    e = expected_exponent(x.float(), bits)
    assert fp.exponent.shape == () and int(fp.exponent) == e
    assert fp.mantissa.dtype == (torch.int8 if bits <= 8 else torch.int16)
    qmax = 2 ** (bits - 1) - 1
    expected = torch.round(x.double() * 2.0**-e).clamp(-qmax, qmax)
    assert torch.equal(fp.mantissa.double(), expected)
    back = intcore.dequantize_fixed_point(*fp)
    assert torch.equal(back.double(), expected * 2.0**e)


def test_fixed_point_per_row_exponents_and_shapes():
    x = torch.randn(2, 3, 40) * torch.tensor([1e-3, 1.0, 1e3]).view(1, 3, 1)
    fp = intcore.quantize_fixed_point(x, 12, "nearest", per_row=True)
    assert fp.mantissa.shape == x.shape and fp.exponent.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert int(fp.exponent[i, j]) == expected_exponent(x[i, j], 12)
    rel = (intcore.dequantize_fixed_point(*fp) - x).abs() / x.abs().amax(-1, keepdim=True)
    assert rel.max() <= 2.0**-11


def test_fixed_point_stochastic_is_unbiased():
    x = torch.full((1, 4000), 0.3) * 2.0**-7
    x[0, 0] = 1.0  # sets the exponent: step 2**-6, so the others sit at 0.15 of a step
    fp = intcore.quantize_fixed_point(x, 8, "stochastic")
    values = fp.mantissa[0, 1:].double()
    mean, n = values.mean().item(), values.numel()
    sigma = math.sqrt(0.15 * 0.85 / n)
    assert abs(mean - 0.15) < 5 * sigma


def test_seeds_reproduce_and_differ():
    x = torch.randn(30, 50)
    a = intcore.quantize_fixed_point(x, 8, seed=1).mantissa
    b = intcore.quantize_fixed_point(x, 8, seed=1).mantissa
    c = intcore.quantize_fixed_point(x, 8, seed=2).mantissa
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    d = intcore.quantize_fixed_point(x, 8).mantissa
    e = intcore.quantize_fixed_point(x, 8).mantissa
    torch.manual_seed(5)
    assert torch.equal(intcore.quantize_fixed_point(x, 8).mantissa, d)
    assert not torch.equal(d, e)


@pytest.mark.parametrize("bits", [8, 4])
def test_absmax_round_trip(bits):
    x = torch.randn(17, 33)
    q, scale = intcore.quantize_absmax(x, bits)
    assert scale.shape == (17,)
    torch.testing.assert_close(scale, x.abs().amax(1) / (127 if bits == 8 else 7))
    back = intcore.dequantize_absmax(q, scale, bits, cols=33)
    assert ((back - x).abs() <= scale[:, None] * 0.5 * (1 + 1e-6)).all()


def test_absmax_int4_packs_low_nibble_first():
    x = torch.tensor([[7.0, -7.0, 1.0]])
    q, scale = intcore.quantize_absmax(x, 4)
    assert q.shape == (1, 2) and q.dtype == torch.uint8
    assert q[0, 0] == (7 | (0x9 << 4)) and q[0, 1] == 1


@pytest.mark.parametrize(
    "op,args",
    [
        (torch.ops.intcore.quantize_fixed_point, (torch.randn(6, 9), 12, "stochastic", True, torch.tensor(3))),
        (torch.ops.intcore.quantize_fixed_point, (torch.randn(6, 9), 6, "nearest", False, torch.tensor(3))),
        (torch.ops.intcore.dequantize_fixed_point, (torch.randint(-99, 99, (4, 5), dtype=torch.int16),
                                                    torch.tensor([-3], dtype=torch.int32))),
        (torch.ops.intcore.quantize_absmax, (torch.randn(6, 9), 4, "stochastic", True, torch.tensor(3))),
        (torch.ops.intcore.dequantize_absmax, (torch.randint(-99, 99, (4, 5), dtype=torch.int8),
                                               torch.rand(4), 8, 5)),
    ],
)
def test_opcheck(op, args):
    torch.library.opcheck(op, args)

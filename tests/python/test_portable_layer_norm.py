"""Portable layer norm and embedding against the C++ engine: the same bits for every output over
a randomized sweep (and at the edges of the integer bounds), the same inputs refused.

Also the int64-limb arithmetic the portable layer norm uses for the engine's __int128, against
Python integers.
"""

import random

import pytest
import torch

from intcore.backends import engine_kernels, portable
from intcore.backends.portable import wide_int
from parity import FLOATS, assert_refused_alike, mismatch, seed


def run_both(name: str, *args):
    """Both kernels' outputs; when the engine refuses the call, the portable must refuse it the
    same way (exception type and message), and None is returned."""
    try:
        expected = engine_kernels.KERNELS[name](*args)
    except (TypeError, ValueError) as refusal:
        with pytest.raises(type(refusal)) as info:
            portable.KERNELS[name](*args)
        assert str(info.value) == str(refusal)
        return None
    got = portable.KERNELS[name](*args)
    pairs = [(got, expected)] if isinstance(expected, torch.Tensor) else list(zip(got, expected))
    assert isinstance(expected, torch.Tensor) or len(got) == len(expected)
    for i, (g, e) in enumerate(pairs):
        assert not mismatch(g, e), f"{name} output {i}: {mismatch(g, e)}"
    return expected


# ---- int64 limbs against Python integers ----------------------------------------------------


def engine_shift_round(v: int, shift: int, rounding: str, word: int) -> int:
    """cpp/src/layer_norm.cpp's shift_round on unbounded integers (its uint128 wraps included)."""
    if shift <= 0:
        return v << -shift
    shift = min(shift, 120)
    floor_v = v >> shift
    rest = v - (floor_v << shift)
    if rounding == "nearest":
        half = 1 << (shift - 1)
        up = rest > half or (rest == half and floor_v & 1)
    else:
        up = ((word >> 8) << shift) % 2**128 < (rest << 24) % 2**128
    return floor_v + int(up)


def wide_values(w: wide_int.Wide) -> list:
    return [(hi << 62) + lo for hi, lo in zip(w.hi.tolist(), w.lo.tolist())]


def as_wide(values: list) -> wide_int.Wide:
    return wide_int.Wide(torch.tensor([v >> 62 for v in values]), torch.tensor([v & ((1 << 62) - 1) for v in values]))


def test_wide_int_matches_python_integers():
    rng = random.Random(5)
    bound = lambda: rng.choice([-1, 1]) * rng.randrange(1 << rng.randrange(1, 62))  # noqa: E731
    a = [bound() for _ in range(4000)] + [(1 << 62) - 1, -((1 << 62) - 1), 0]
    b = [bound() for _ in range(4000)] + [-((1 << 62) - 1), -((1 << 62) - 1), -5]
    products = [x * y for x, y in zip(a, b)]
    wide = wide_int.multiply(torch.tensor(a), torch.tensor(b))
    assert wide_values(wide) == products

    t = [rng.randrange(126) for _ in products]
    floors = wide_int.floor_shift(wide, torch.tensor(t)).tolist()
    assert all(f == p >> s for f, p, s in zip(floors, products, t) if -(2**63) <= p >> s < 2**63)
    assert wide_int.low_bits_nonzero(wide, torch.tensor(t)).tolist() == [p % (1 << s) != 0 for p, s in zip(products, t)]
    assert wide_int.bit_length(torch.tensor([abs(x) for x in a])).tolist() == [abs(x).bit_length() for x in a]
    magnitudes = wide_int.multiply(torch.tensor([abs(x) for x in a]), torch.tensor([abs(y) for y in b]))
    assert wide_int.wide_bit_length(magnitudes).tolist() == [abs(p).bit_length() for p in products]

    doubles = torch.tensor([0.0, 1.0, 1e30, 2.0**99 + 2.0**47, 12345678.0, 2.0**62, 2.0**62 - 512], dtype=torch.float64)
    assert wide_values(wide_int.from_integral_double(doubles)) == [int(d) for d in doubles.tolist()]

    # Shifts over the whole range the engine clamps to, and exact halves at their own shifts
    # (the nearest rule's ties); shifts may come as int32 tensors (exponent arithmetic).
    pairs = [(p, rng.randrange(-20, 130)) for p in products]
    pairs += [(((p >> s) << s) + (1 << (s - 1)), s) for p, s in zip(products, t) if 0 < s < 70]
    values, shifts = [v for v, _ in pairs], [s for _, s in pairs]
    words = [rng.randrange(1 << 32) for _ in values]
    for rounding in ("nearest", "stochastic"):
        for shift_dtype in (torch.int64, torch.int32):
            shift = torch.tensor(shifts, dtype=shift_dtype)
            got = wide_int.shift_round(as_wide(values), shift, rounding, torch.tensor(words))
            for g, v, s, w in zip(got.tolist(), values, shifts, words):
                want = engine_shift_round(v, s, rounding, w)
                if -(2**62) <= want < 2**62 and (rounding == "nearest" or s <= 104):
                    assert g == want, (v, s, rounding, w, shift_dtype)


# ---- layer norm -------------------------------------------------------------------------------

LN_SHAPES = [(1, 7), (3, 1), (5, 33), (0, 9), (257, 24), (16, 96), (2, 129), (1, 1)]


def ln_input(rng: random.Random, shape, dtype, kind: str) -> torch.Tensor:
    rows, n = shape
    x = torch.randn(rows, n, dtype=torch.float64) * 3
    if kind == "outliers" and x.numel():
        x.view(-1)[rng.randrange(x.numel())] *= 1e4
        x.view(-1)[:: max(1, x.numel() // 3)] *= 300
    elif kind == "constant rows":
        x[::2] = rng.choice([0.0, 1.5, -1e3])
    elif kind == "row scales":  # rows from 1e-7 to 1e5: per-row exponents and large xhat shifts
        x *= torch.logspace(-7, 5, rows, dtype=torch.float64)[:, None] if rows else 1
    elif kind == "tiny":
        x *= 1e-9
    elif kind == "levels":  # few distinct values: many exact ties when rounding
        x = torch.round(x) * 0.25
    return x.to(dtype)


def check_layer_norm(x, weight, bias, bits, eps, rounding, rsqrt, per_row, s, grad_bits, grad_rounding, grad):
    forward = run_both("fixed_point_layer_norm", x, weight, bias, bits, grad_bits, eps, rounding, rsqrt, per_row, seed(s))
    if forward is None:
        return
    for has_affine in (weight is not None or bias is not None, False, True):
        run_both("fixed_point_layer_norm_backward", grad, *forward[1:], has_affine, grad_bits, grad_rounding, seed(s ^ 1))


@pytest.mark.parametrize("dtype", FLOATS)
def test_layer_norm_sweep(dtype):
    rng = random.Random(str(dtype))
    kinds = ["normal", "outliers", "constant rows", "row scales", "tiny", "levels"]
    for case in range(100):
        shape = rng.choice(LN_SHAPES)
        x = ln_input(rng, shape, dtype, rng.choice(kinds))
        n = shape[1]
        weight = (torch.randn(n) * 0.5 + 1).to(dtype) if rng.random() < 0.7 else None
        bias = (torch.randn(n) * 0.1).to(dtype) if rng.random() < 0.7 else None
        grad = torch.randn(shape, dtype=torch.float64) * 10 ** rng.uniform(-6, 3)
        if rng.random() < 0.3 and grad.numel():  # few distinct values: ties in the correction term
            grad = torch.round(grad / grad.abs().max().clamp(min=1e-30) * 4)
        grad = grad.to(rng.choice(FLOATS))
        check_layer_norm(
            x, weight, bias,
            bits=rng.randrange(2, 17),
            eps=rng.choice([0.0, 1e-5, 1e-5, 0.5, 1e4]),
            rounding=rng.choice(["nearest", "stochastic"]),
            rsqrt=rng.choice(["integer", "float"]),
            per_row=rng.random() < 0.5,
            s=rng.choice([0, case, 2**63 - 1, -1]),
            grad_bits=rng.randrange(2, 17),
            grad_rounding=rng.choice(["nearest", "stochastic"]),
            grad=grad,
        )


def check_rms_norm(x, weight, bits, eps, rounding, rsqrt, per_row, s, grad_bits, grad_rounding, grad):
    forward = run_both("fixed_point_rms_norm", x, weight, bits, grad_bits, eps, rounding, rsqrt, per_row, seed(s))
    if forward is None:
        return
    for has_weight in (weight is not None, False, True):
        run_both("fixed_point_rms_norm_backward", grad, *forward[1:], has_weight, grad_bits, grad_rounding, seed(s ^ 1))


@pytest.mark.parametrize("dtype", FLOATS)
def test_rms_norm_sweep(dtype):
    rng = random.Random("rms" + str(dtype))
    kinds = ["normal", "outliers", "constant rows", "row scales", "tiny", "levels"]
    for case in range(60):
        shape = rng.choice(LN_SHAPES)
        x = ln_input(rng, shape, dtype, rng.choice(kinds))
        weight = (torch.randn(shape[1]) * 0.5 + 1).to(dtype) if rng.random() < 0.7 else None
        grad = torch.randn(shape, dtype=torch.float64) * 10 ** rng.uniform(-6, 3)
        check_rms_norm(
            x, weight, rng.randrange(2, 17), rng.choice([0.0, 1e-6, 1e-5, 0.5, 1e4]),
            rng.choice(["nearest", "stochastic"]), rng.choice(["integer", "float"]), rng.random() < 0.5,
            rng.choice([0, case, 2**63 - 1, -1]), rng.randrange(2, 17), rng.choice(["nearest", "stochastic"]),
            grad.to(rng.choice(FLOATS)),
        )


def test_rms_norm_edges():
    # Zero rows (D = eps, or 0 with eps = 0), one-signed rows (N q at its bound: no mean taken
    # off), the widest rows with extreme mantissas, and an eps too large for the range.
    n = 16
    for x in (torch.zeros(3, n), torch.full((3, n), -2.5), torch.randn(3, n) * 1e-12, torch.randn(3, n) * 1e37):
        for eps in (0.0, 1e-6, 1.0):
            for bits in (2, 16):
                for per_row in (False, True):
                    check_rms_norm(x, torch.randn(n), bits, eps, "stochastic", "integer", per_row, 5, 16, "nearest",
                                   torch.randn(3, n))
    wide = torch.full((2, 65536), 3.0)
    wide[1, ::2] = -3.0
    check_rms_norm(wide, None, 16, 0.0, "stochastic", "integer", False, 1, 16, "stochastic", torch.randn(2, 65536) * 1e3)


def test_rms_norm_is_the_layer_norm_of_a_zero_mean_row():
    # Rows whose codes sum to zero: the layer norm subtracts nothing, so the two agree bit for bit,
    # and so do their backwards when the gradient's row sums (times gamma) are zero too.
    x = torch.randn(6, 32)
    x = torch.cat([x, -x], 1)
    w = torch.randn(64)
    ln = engine_kernels.KERNELS["fixed_point_layer_norm"](x, w, None, 12, 12, 1e-6, "nearest", "integer", True, seed(1))
    rms = engine_kernels.KERNELS["fixed_point_rms_norm"](x, w, 12, 12, 1e-6, "nearest", "integer", True, seed(1))
    for a, b in zip(ln, rms):
        assert not mismatch(a, b)


def test_layer_norm_edges():
    n = 16
    grad = torch.randn(4, n)
    w, b = torch.randn(n), torch.randn(n)
    cases = [
        torch.zeros(4, n),  # every row constant: D = eps only, or 0 (xhat 0) with eps = 0
        torch.full((4, n), -2.5),
        torch.randn(4, n) * 1e-9,  # eps = 1 in input steps ~ 2^94: D near the 2^101 bound
        torch.randn(4, n) * 1e-12,  # eps too large for the input's range: refused
        torch.randn(4, n) * 1e-38,  # subnormal floats
        torch.randn(4, n) * 1e37,
        torch.tensor([[1e-30] * n, [3e30] * (n - 1) + [-3e30], [0.0] * n, [1.0] + [0.0] * (n - 1)]),
    ]
    for x in cases:
        for eps in (0.0, 1e-5, 1.0):
            for bits in (2, 3, 16):
                for rounding, rsqrt in (("nearest", "integer"), ("stochastic", "float"), ("stochastic", "integer")):
                    for per_row in (False, True):
                        check_layer_norm(x, w, b, bits, eps, rounding, rsqrt, per_row, 9, 16, "nearest", grad)
    # Per-row exponents, eps = 1 making the tiny row's D ~ 2^94: that row's xhat is rounded
    # (stochastically too) by shifts above 62 bits.
    mixed = torch.stack([torch.randn(n) * 3, torch.randn(n) * 1e-9])
    for rounding in ("nearest", "stochastic"):
        check_layer_norm(mixed, None, None, 16, 1.0, rounding, "integer", True, 2, 16, rounding, torch.randn(2, n))
    # A gradient aligned with xhat: xhat_q sum(G xhat_q) passes 2^62 (both limbs carry bits).
    aligned = torch.randn(4, 256)
    check_layer_norm(aligned, torch.ones(256), None, 16, 1e-5, "nearest", "float", False, 3, 16, "nearest", aligned * 7)
    # The widest rows accepted, with extreme (+-max) mantissas: S1^2 and N S2 near 2^62.
    wide = torch.ones(2, 65536)
    wide[0, ::2] = -1.0
    wide[1, 0] = -1.0
    grad = torch.randn(2, 65536) * 1e3
    check_layer_norm(wide, None, None, 16, 0.0, "stochastic", "integer", False, 1, 16, "stochastic", grad)


def test_layer_norm_of_no_features_is_empty_like_torch():
    # torch.nn.functional.layer_norm of [rows, 0] gives [rows, 0] (and empty gradients).
    for rows in (0, 3):
        x = torch.randn(rows, 0)
        for affine in (False, True):
            w, b = (torch.ones(0), torch.zeros(0)) if affine else (None, None)
            check_layer_norm(x, w, b, 8, 1e-5, "stochastic", "integer", True, 4, 8, "stochastic", torch.randn(rows, 0))
            y = engine_kernels.KERNELS["fixed_point_layer_norm"](*layer_norm_args(x=x, weight=w, bias=b))[0]
            assert y.shape == (rows, 0)


def test_layer_norm_saved_tensors_of_both_forwards_are_equal():
    x = torch.randn(12, 40) * 5
    args = (x, torch.randn(40), torch.randn(40), 8, 8, 1e-5, "stochastic", "integer", True, seed(3))
    got = portable.KERNELS["fixed_point_layer_norm"](*args)
    grad = torch.randn(12, 40)
    backward = (grad, *got[1:], True, 8, "stochastic", seed(4))
    for g, e in zip(portable.KERNELS["fixed_point_layer_norm_backward"](*backward),
                    engine_kernels.KERNELS["fixed_point_layer_norm_backward"](*backward)):
        assert not mismatch(g, e)


# ---- embedding --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_embedding_sweep(dtype):
    rng = random.Random(str(dtype) + "embedding")
    for case in range(12):
        vocab, dim = rng.choice([(1, 1), (37, 24), (300, 7), (5, 0), (9, 3)])
        weight = (torch.randn(vocab, dim, dtype=torch.float64) * 10 ** rng.uniform(-5, 3)).to(dtype)
        if rng.random() < 0.3:
            weight = weight.T.contiguous().T  # column-major table
        ids = torch.randint(0, vocab, (rng.choice([0, 1, 40, 500]),))
        ids[: ids.numel() // 2] = ids[0] if ids.numel() else 0  # repeated ids
        padding_idx = rng.choice([-1, 0, vocab - 1, vocab + 3, int(ids[0]) if ids.numel() else 0])
        bits = rng.randrange(2, 17)
        grad = (torch.randn(ids.numel(), dim, dtype=torch.float64) * 10 ** rng.uniform(-4, 4)).to(rng.choice(FLOATS))
        for rounding in ("nearest", "stochastic"):
            run_both("fixed_point_embedding", ids, weight, bits, 8, rounding, padding_idx)
            run_both("fixed_point_embedding_backward", grad, ids, vocab, bits, rounding, padding_idx, seed(case))


def test_embedding_backward_sums_repeated_ids_exactly():
    ids = torch.tensor([3, 3, 3, 0, 3])
    grad = torch.randn(5, 6)
    dweight = run_both("fixed_point_embedding_backward", grad, ids, 4, 16, "nearest", 0, seed(0))
    assert torch.equal(dweight[0], torch.zeros(6)) and torch.equal(dweight[1], torch.zeros(6))
    assert float((dweight[3] - grad[[0, 1, 2, 4]].sum(0)).abs().max()) < 1e-3


# ---- the same inputs refused ------------------------------------------------------------------


def layer_norm_args(x=None, weight=None, bias=None, bits=8, eps=1e-5, rounding="nearest", rsqrt="integer", s=None):
    x = torch.randn(3, 5) if x is None else x
    return (x, weight, bias, bits, 8, eps, rounding, rsqrt, False, seed(0) if s is None else s)


def saved(rows=3, n=5, **replace):
    """Saved tensors of a layer norm forward, some replaced, then the backward's arguments."""
    parts = dict(
        grad=torch.randn(rows, n),
        xhat=torch.zeros(rows, n, dtype=torch.int16),
        xhat_exponent=torch.zeros(1, dtype=torch.int32),
        x_exponent=torch.zeros(1, dtype=torch.int32),
        rstd_mantissa=torch.zeros(rows, dtype=torch.int64),
        rstd_exponent=torch.zeros(rows, dtype=torch.int32),
        gamma_mantissa=torch.zeros(n, dtype=torch.int16),
        gamma_exponent=torch.zeros(1, dtype=torch.int32),
        has_affine=True,
        grad_bits=8,
        rounding="stochastic",
        seed=seed(0),
    )
    parts.update(replace)
    return tuple(parts.values())


NAN = float("nan")
REFUSED = [
    ("fixed_point_layer_norm", lambda: layer_norm_args(x=torch.randn(5))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(x=torch.ones(3, 5, dtype=torch.int32))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(x=torch.randn(1, 65537))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(bits=1)),
    ("fixed_point_layer_norm", lambda: layer_norm_args(bits=17)),
    ("fixed_point_layer_norm", lambda: layer_norm_args(eps=-1.0)),
    ("fixed_point_layer_norm", lambda: layer_norm_args(eps=NAN)),
    ("fixed_point_layer_norm", lambda: layer_norm_args(eps=float("inf"))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(eps=1.0, x=torch.randn(3, 5) * 1e-20)),
    ("fixed_point_layer_norm", lambda: layer_norm_args(rounding="up")),
    ("fixed_point_layer_norm", lambda: layer_norm_args(rsqrt="newton")),
    ("fixed_point_layer_norm", lambda: layer_norm_args(s=torch.tensor(1, dtype=torch.int32))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(weight=torch.ones(4))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(weight=torch.ones(5, dtype=torch.int64))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(bias=torch.ones(1, 5))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(x=torch.tensor([[1.0, NAN]]))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(x=torch.tensor([[1e300, 1.0]], dtype=torch.float64))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(weight=torch.tensor([1.0, 2.0, float("inf"), 0.0, 0.0]))),
    ("fixed_point_layer_norm", lambda: layer_norm_args(bias=torch.tensor([1.0, 2.0, NAN, 0.0, 0.0]))),
    ("fixed_point_layer_norm_backward", lambda: saved(grad=torch.ones(3, 5, dtype=torch.int64))),
    ("fixed_point_layer_norm_backward", lambda: saved(grad=torch.ones(3, 4))),
    ("fixed_point_layer_norm_backward", lambda: saved(grad=torch.tensor([[NAN] * 5] * 3))),
    ("fixed_point_layer_norm_backward", lambda: saved(grad_bits=1)),
    ("fixed_point_layer_norm_backward", lambda: saved(rounding="down")),
    ("fixed_point_layer_norm_backward", lambda: saved(xhat=torch.zeros(3, 5, dtype=torch.int8))),
    ("fixed_point_layer_norm_backward", lambda: saved(xhat=torch.zeros(5, 3, dtype=torch.int16).T)),
    ("fixed_point_layer_norm_backward", lambda: saved(xhat_exponent=torch.zeros(2, dtype=torch.int32))),
    # Outside what the backward's 128-bit correction can shift (the forward writes -15..9).
    ("fixed_point_layer_norm_backward", lambda: saved(xhat_exponent=torch.tensor([26], dtype=torch.int32))),
    ("fixed_point_layer_norm_backward", lambda: saved(xhat_exponent=torch.tensor([-63], dtype=torch.int32))),
    ("fixed_point_layer_norm_backward", lambda: saved(xhat_exponent=torch.tensor([-(2**31)], dtype=torch.int32))),
    ("fixed_point_layer_norm_backward", lambda: saved(x_exponent=torch.zeros(2, dtype=torch.int32))),
    ("fixed_point_layer_norm_backward", lambda: saved(x_exponent=torch.zeros(1, dtype=torch.int64))),
    ("fixed_point_layer_norm_backward", lambda: saved(rstd_mantissa=torch.zeros(3, dtype=torch.int32))),
    ("fixed_point_layer_norm_backward", lambda: saved(rstd_exponent=torch.zeros(4, dtype=torch.int32))),
    ("fixed_point_layer_norm_backward", lambda: saved(gamma_mantissa=torch.zeros(4, dtype=torch.int16))),
    ("fixed_point_layer_norm_backward", lambda: saved(gamma_exponent=torch.zeros(1, dtype=torch.int16))),
    ("fixed_point_layer_norm_backward", lambda: saved(seed=seed(0).float())),
    ("fixed_point_layer_norm_backward", lambda: saved(rows=1, n=65537)),
    ("fixed_point_layer_norm_backward", lambda: saved(rstd_mantissa=torch.zeros(6, dtype=torch.int64)[::2])),
    ("fixed_point_layer_norm_backward", lambda: saved(gamma_mantissa=torch.zeros(10, dtype=torch.int16)[::2])),
    ("fixed_point_embedding", lambda: (torch.tensor([0, 4]), torch.randn(4, 3), 8, 8, "nearest", -1)),
    ("fixed_point_embedding", lambda: (torch.tensor([0, -1]), torch.randn(4, 3), 8, 8, "nearest", -1)),
    ("fixed_point_embedding", lambda: (torch.tensor([0, 1], dtype=torch.int32), torch.randn(4, 3), 8, 8, "nearest", -1)),
    ("fixed_point_embedding", lambda: (torch.tensor([[0, 1]]), torch.randn(4, 3), 8, 8, "nearest", -1)),
    ("fixed_point_embedding", lambda: (torch.tensor([0]), torch.ones(4, 3, dtype=torch.int64), 8, 8, "nearest", -1)),
    ("fixed_point_embedding", lambda: (torch.tensor([0]), torch.randn(12), 8, 8, "nearest", -1)),
    ("fixed_point_embedding", lambda: (torch.tensor([0]), torch.randn(4, 3), 17, 8, "nearest", -1)),
    ("fixed_point_embedding", lambda: (torch.tensor([0]), torch.tensor([[1.0], [NAN]]), 8, 8, "nearest", -1)),
    ("fixed_point_embedding_backward", lambda: (torch.randn(2, 3), torch.tensor([0, 9]), 4, 8, "nearest", -1, seed(0))),
    ("fixed_point_embedding_backward", lambda: (torch.randn(3, 3), torch.tensor([0, 1]), 4, 8, "nearest", -1, seed(0))),
    ("fixed_point_embedding_backward", lambda: (torch.randn(2, 3), torch.tensor([0, 1]), 4, 1, "nearest", -1, seed(0))),
    ("fixed_point_embedding_backward", lambda: (torch.randn(2, 3), torch.tensor([0, 1]), 4, 8, "sometimes", -1, seed(0))),
    ("fixed_point_embedding_backward", lambda: (torch.randn(6), torch.tensor([0, 1]), 4, 8, "nearest", -1, seed(0))),
    ("fixed_point_embedding_backward", lambda: (torch.tensor([[NAN], [1.0]]), torch.tensor([0, 1]), 4, 8, "nearest", -1, seed(0))),
]


@pytest.mark.parametrize("name,make_args", REFUSED)
def test_same_inputs_refused(name, make_args):
    errors = assert_refused_alike(name, make_args)
    data_dependent = ("NaN", "outside", "eps is too large", "xhat_exponent must be in")
    if any(text in str(errors[1]) for text in data_dependent):
        assert str(errors[0]) == str(errors[1])  # data-dependent: the same function and argument named


@pytest.mark.parametrize("e_xhat", [-62, -20, 9, 25])
def test_backward_at_the_edges_of_the_xhat_exponent_range(e_xhat):
    # Odd xhat * sum(G xhat) products make the correction's rounding matter at every shift.
    xhat = torch.tensor([[1, 3, -5, 7, 1]] * 3, dtype=torch.int16)
    args = saved(xhat=xhat, xhat_exponent=torch.tensor([e_xhat], dtype=torch.int32),
                 rstd_mantissa=torch.full((3,), 1 << 30, dtype=torch.int64), gamma_mantissa=torch.ones(5, dtype=torch.int16))
    assert run_both("fixed_point_layer_norm_backward", *args) is not None  # computed, and the same bits

"""Portable INT4 training kernels (hadamard, hq_linear, hq_linear_backward) against the C++
engine: the same bits for every output over a randomized sweep, the same inputs refused.

Also the backward's pieces on their own: the bit split against the engine's split_gradient, and
the sampling probabilities against a line-by-line Python port of the engine's loop.
"""

import math
import random

import pytest
import torch

from intcore import _C
from intcore.backends import engine_kernels, portable
from intcore.backends.portable import int4_training
from parity import FLOATS, assert_refused_alike, mismatch, seed


def assert_same(name: str, *args):
    """Runs both kernels and compares every output; returns the engine's outputs."""
    mine, engine = portable.KERNELS[name](*args), engine_kernels.KERNELS[name](*args)
    if isinstance(engine, torch.Tensor):
        mine, engine = (mine,), (engine,)
    assert len(mine) == len(engine)
    for i, (a, b) in enumerate(zip(mine, engine)):
        problem = mismatch(a, b)
        assert not problem, f"{name} output {i}: {problem}"
    return engine


def sample(shape, dtype, outliers=False, transposed=False, generator=None):
    x = torch.randn(shape[::-1] if transposed else shape, dtype=torch.float64, generator=generator) * 3
    if outliers and x.numel():
        x.view(-1)[:: max(1, x.numel() // 5)] *= 1000
    x = x.to(dtype)
    return x.T if transposed else x


# ---- hadamard -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("block", [1, 2, 8, 64, 256])
def test_hadamard(dtype, block):
    for rows, blocks, transposed in [(1, 1, False), (7, 3, False), (0, 2, False), (5, 2, True)]:
        x = sample((rows, block * blocks), dtype, outliers=True, transposed=transposed)
        assert_same("hadamard", x, block)


def test_hadamard_conversion_edges_and_non_finite_values():
    # float16 outputs that overflow to Inf or land on subnormals; every finite float16 and
    # bfloat16 value paired with a shuffled one (block 2: (a +- b) / sqrt 2 rounded back).
    edges = torch.tensor([[65504.0, 65504.0], [65504.0, -65504.0], [6e-8, 6e-8], [1e-7, 3e-8], [46340.0, 46341.0]])
    assert_same("hadamard", edges.to(torch.float16), 2)
    for dtype in (torch.float16, torch.bfloat16):
        every = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
        every = every[torch.isfinite(every)]
        assert_same("hadamard", torch.stack([every, every[torch.randperm(every.numel())]], dim=1), 2)
    # NaN and Inf are refused by both kernels, like every other op's inputs.
    for dtype in FLOATS:
        for bad in (float("nan"), -float("inf")):
            x = torch.randn(4, 16).to(dtype)
            x[2, 5] = bad
            for kernels in (portable.KERNELS, engine_kernels.KERNELS):
                with pytest.raises(ValueError, match="hadamard: x contains NaN or Inf"):
                    kernels["hadamard"](x, 8)


@pytest.mark.parametrize("dtype", FLOATS)
def test_hadamard_of_large_finite_values_is_finite_and_bit_identical(dtype):
    # A block's sums can overflow float32 before 1/sqrt(block) scales them back: such blocks are
    # computed scaled down by a power of two, identically in both kernels, and their results
    # are finite wherever the true result fits.
    top = 3.3e38 if dtype in (torch.float32, torch.float64) else float(torch.finfo(dtype).max)
    for block in (1, 2, 8, 128, 1024):
        x = torch.randn(3, 2 * block, dtype=torch.float64) * top / 100
        x[0, :block] = top / 100  # one block of equal values: its result is top / 100 * sqrt(block)
        x[1, block // 2] = top
        x[2] = torch.randn(2 * block)  # an ordinary row
        y = assert_same("hadamard", x.to(dtype), block)[0].double()
        if dtype in (torch.float32, torch.float64):
            assert bool(torch.isfinite(y[1:]).all()), block
            expected = float(x.to(dtype)[0, 0]) * math.sqrt(block)
            if expected < 3.4e38:
                assert float(y[0, 0]) == pytest.approx(expected, rel=1e-6), block


# ---- hq_linear ----------------------------------------------------------------------------------


def forward_configs(count: int, rng: random.Random):
    """(m, c, k, block) with M = 1, odd and empty, K = one block or several (K = 1 too)."""
    configs = [(1, 1, 1, 1), (9, 2, 1, 1), (0, 4, 32, 16), (5, 3, 64, 64), (33, 7, 96, 32), (1, 9, 256, 256)]
    while len(configs) < count:
        block = 2 ** rng.randint(0, 8)
        configs.append((rng.choice([0, 1, 3, 17, 40]), rng.choice([1, 5, 16]), block * rng.randint(1, 3), block))
    return configs


def test_hq_linear_forward_sweep():
    rng = random.Random(1)
    gen = torch.Generator().manual_seed(1)
    for i, (m, c, k, block) in enumerate(forward_configs(40, rng)):
        dtype = FLOATS[i % 4]
        x = sample((m, k), dtype, outliers=i % 3 == 0, transposed=i % 5 == 1, generator=gen)
        w = sample((c, k), dtype, transposed=i % 7 == 2, generator=gen) * 0.1
        bias = None if i % 2 else sample((c,), FLOATS[(i // 2) % 4], generator=gen)
        steps = [None, None]
        if i % 4 == 3:  # learned step sizes, including a zero step (all codes zero)
            steps = [torch.tensor([rng.choice([0.0, 0.05, 0.7])]), torch.tensor([rng.choice([0.01, 3.0])])]
        assert_same("hq_linear", x, w, bias, block, i % 2 == 0, 0.5, *steps)
        if steps[0] is None:  # per-row scales (absmax only)
            y, xc, xs, wc, ws = assert_same("hq_linear", x, w, bias, block, i % 2 == 0, 0.5, None, None, True)
            assert xs.shape == (m,) and ws.shape == (c,)


# ---- hq_linear_backward ------------------------------------------------------------------------


def gradients(m: int, c: int, gen: torch.Generator):
    """With a few large rows (their high digit rows get capped keep probabilities) or huge ones
    (the other high digits vanish), plain, all zero, transposed, in each float dtype."""
    plain = torch.randn(m, c, generator=gen)
    for factor in (20, 300):
        spiky = plain.clone()
        spiky[::7] *= factor
        yield spiky
    yield plain.to(torch.bfloat16)
    yield torch.zeros(m, c, dtype=torch.float16)
    yield (torch.randn(c, m, generator=gen, dtype=torch.float64) * 1e-3).T


NEEDS = ([True, True], [True, False], [False, True], [False, False])


def test_hq_linear_backward_sweep():
    rng = random.Random(2)
    gen = torch.Generator().manual_seed(2)
    calls = 0
    for i, (m, c, k, block) in enumerate(forward_configs(14, rng)):
        x = sample((m, k), torch.float32, outliers=True, generator=gen)
        w = sample((c, k), torch.float32, generator=gen)
        per_row = i % 3 == 1
        steps = (torch.tensor([0.3]), torch.tensor([0.02])) if i % 3 == 2 else (None, None)
        _, *codes = engine_kernels.KERNELS["hq_linear"](x, w, None, block, True, 0.5, *steps, per_row)
        for j, grad in enumerate(gradients(m, c, gen)):
            for sampling in (True, False):
                for budget in ((0.1, 0.5, 1.0) if sampling else (0.5,)):
                    need = NEEDS[(i + j + calls) % 4]
                    for s in (0, 2**63 - 1 if j % 2 else 12345):
                        args = (grad, *codes, k, block, sampling, budget, need, seed(s), per_row)
                        assert_same("hq_linear_backward", *args)
                        calls += 1
    assert calls > 300


def test_hq_linear_backward_sampling_is_exercised():
    """The sweep's large-row gradients reach the capping branch, sampling changes the result and
    different seeds draw different rows: the comparisons above are not of constants."""
    gen = torch.Generator().manual_seed(3)
    m, c, k, block = 40, 16, 64, 32
    x, w = torch.randn(m, k, generator=gen), torch.randn(c, k, generator=gen)
    grad = torch.randn(m, c, generator=gen)
    grad[::7] *= 20
    split = int4_training._split_gradient(grad, False, 5, 0)
    rows, weight = int4_training._stacked_rows(split.high, split.low)
    p = int4_training._keep_probabilities(weight * int4_training._row_norms(rows), 0.5 * 2.0 * m)
    assert bool((p == 1).any()) and bool(((p > 0) & (p < 1)).any())
    for per_row in (False, True):
        _, *codes = engine_kernels.KERNELS["hq_linear"](x, w, None, block, True, 0.5, None, None, per_row)
        outputs = [
            assert_same("hq_linear_backward", grad, *codes, k, block, sampling, 0.5, [True, True], seed(s), per_row)
            for sampling, s in ((True, 1), (True, 2), (False, 1))
        ]
        for a, b in ((outputs[0], outputs[1]), (outputs[0], outputs[2])):
            assert not torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


def test_edge_shapes_and_signed_zero_steps():
    """K = 0, C = 0, M = C = 0; and a -0.0 step (accepted, like 0): all-zero codes with a
    negative-zero scale, whose sign shows in the products unless a path writes plain zeros, as
    the engine's does when sampling keeps no row."""
    for m, c, k, block in ((3, 4, 0, 4), (3, 0, 8, 4), (0, 0, 8, 8), (2, 3, 0, 1), (6, 5, 16, 8)):
        x, w = torch.randn(m, k), torch.randn(c, k)
        for bias, steps in ((None, (None, None)), (torch.randn(c), (torch.tensor([-0.0]), torch.tensor([-0.0])))):
            _, *codes = assert_same("hq_linear", x, w, bias, block, True, 0.5, *steps)
            for sampling in (True, False):
                for need in NEEDS:
                    assert_same("hq_linear_backward", torch.randn(m, c), *codes, k, block, sampling, 0.5, need, seed(3))


def test_split_matches_engine_split_gradient():
    gen = torch.Generator().manual_seed(4)
    # An absmax that 127 * (absmax / 127) in float32 does not give back: s comes from the latter.
    uneven = torch.randn(9, 13, generator=gen) * 0.5
    uneven[4, 5] = -7.969764709472656
    assert float(torch.tensor(7.969764709472656) / 127 * 127) != 7.969764709472656
    for m, c in ((1, 1), (9, 13), (64, 40), (0, 3)):
        grads = [torch.randn(m, c, generator=gen) * 1e4, torch.randn(c, m, generator=gen).to(torch.bfloat16).T]
        for grad in grads + ([uneven] if (m, c) == (9, 13) else []):
            for per_row in (False, True):
                high, low = torch.empty(m, c, dtype=torch.int8), torch.empty(m, c, dtype=torch.int8)
                scale = torch.empty(m if per_row else 1)
                _C.split_gradient(grad, 99, high, low, scale)
                split = int4_training._split_gradient(grad.float(), per_row, 99, 0)
                # The portable split keeps s per row (the tensor's repeated when split per tensor).
                for mine, engine in zip(split, (high, low, scale.expand(m))):
                    assert not mismatch(mine, engine)
                if per_row and m > 1:
                    assert len(set(scale.tolist())) > 1  # rows got their own s


def engine_probabilities(weights: list, budget: float) -> list:
    """cpp/src/int4_training.cpp's sampling_probabilities in Python (stable order for ties)."""
    n = len(weights)
    order = sorted(range(n), key=lambda i: -weights[i])
    positive, rest = 0, 0.0
    for w in weights:
        if w > 0:
            positive += 1
            rest += w
    if positive == 0:
        return [0.0] * n
    if budget >= positive:
        return [1.0 if w > 0 else 0.0 for w in weights]
    capped, c = 0, budget / rest
    while capped < positive and c * weights[order[capped]] >= 1.0:
        rest -= weights[order[capped]]
        capped += 1
        c = (budget - capped) / rest
    p = [0.0] * n
    for i in range(capped):
        p[order[i]] = 1.0
    for i in range(capped, n):
        p[order[i]] = min(1.0, c * weights[order[i]])
    return p


def test_keep_probabilities_match_the_engine_loop():
    rng = random.Random(5)
    for trial in range(300):
        n = rng.choice([1, 2, 5, 16, 17, 100])
        kind = trial % 4
        if kind == 0:  # integer-valued norms: ties everywhere, exact arithmetic
            weights = [float(rng.randint(0, 4)) for _ in range(n)]
        elif kind == 1:  # the backward's norms: 14 sqrt(a) and sqrt(b), many of them tied
            weights = [14.0 * math.sqrt(rng.randint(0, 3)) for _ in range(n // 2)]
            weights += [math.sqrt(rng.randint(0, 9)) for _ in range(n - n // 2)]
        elif kind == 2:  # a few huge weights among small ones
            weights = [rng.random() * (1e6 if rng.random() < 0.1 else 1.0) for _ in range(n)]
        else:
            weights = [rng.expovariate(1.0) if rng.random() < 0.8 else 0.0 for _ in range(n)]
        budget = rng.choice([0.1, 0.5, 1.0]) * n
        mine = int4_training._keep_probabilities(torch.tensor(weights, dtype=torch.float64), budget)
        expected = torch.tensor(engine_probabilities(weights, budget), dtype=torch.float64)
        assert not mismatch(mine, expected), (weights, budget)


# ---- the same inputs refused --------------------------------------------------------------------


def _codes(m=4, c=3, k=8, block=4):
    x, w = torch.randn(m, k), torch.randn(c, k)
    return engine_kernels.KERNELS["hq_linear"](x, w, None, block, True, 0.5, None, None)[1:]


def _codes_changed(change, m=4, c=3, k=8):
    """The forward's packed codes changed by change(codes); their scales as they are."""
    return [change(t) if t.dtype == torch.uint8 else t for t in _codes(m, c, k)]


def _scales_changed(change):
    return [t if t.dtype == torch.uint8 else change(t) for t in _codes()]


def _backward(grad=None, codes=None, k=8, block=4, budget=0.5, need=(True, True), s=None):
    grad = torch.randn(4, 3) if grad is None else grad
    return (grad, *(codes or _codes()), k, block, True, budget, list(need), seed(1) if s is None else s)


def _forward(x=None, w=None, bias=None, block=4, x_step=None, w_step=None):
    x = torch.randn(4, 8) if x is None else x
    w = torch.randn(3, 8) if w is None else w
    return (x, w, bias, block, True, 0.5, x_step, w_step)


NAN = float("nan")
BAD_CALLS = [
    ("hadamard", lambda: (torch.randn(2, 48), 32)),
    ("hadamard", lambda: (torch.randn(2, 48), 3)),
    ("hadamard", lambda: (torch.randn(2, 48), 0)),
    ("hadamard", lambda: (torch.randn(2, 65536), 65536)),
    ("hadamard", lambda: (torch.ones(2, 8, dtype=torch.int32), 4)),
    ("hadamard", lambda: (torch.randn(8), 4)),
    ("hadamard", lambda: (torch.tensor([[1.0, NAN]]), 2)),
    ("hadamard", lambda: (torch.tensor([[1e300, 1.0]], dtype=torch.float64), 2)),  # Inf once read as float32
    ("hq_linear", lambda: _forward(block=16)),
    ("hq_linear", lambda: _forward(block=3)),
    ("hq_linear", lambda: _forward(w=torch.randn(3, 16))),
    ("hq_linear", lambda: _forward(x=torch.ones(4, 8, dtype=torch.int64))),
    ("hq_linear", lambda: _forward(w=torch.randn(8))),
    ("hq_linear", lambda: _forward(x=torch.tensor([[1.0] * 7 + [NAN]] * 4))),
    ("hq_linear", lambda: _forward(w=torch.tensor([[1.0] * 7 + [float("inf")]] * 3))),
    ("hq_linear", lambda: _forward(x=torch.full((4, 8), 3e38), block=8)),  # overflows in the transform
    ("hq_linear", lambda: _forward(bias=torch.ones(4))),
    ("hq_linear", lambda: _forward(bias=torch.ones(3, dtype=torch.int32))),
    ("hq_linear", lambda: _forward(x_step=torch.tensor([0.1], dtype=torch.float64))),
    ("hq_linear", lambda: _forward(w_step=torch.tensor(0.1))),
    ("hq_linear", lambda: _forward(x_step=torch.tensor([-0.1]))),
    ("hq_linear", lambda: _forward(w_step=torch.tensor([NAN]))),
    ("hq_linear", lambda: _forward(x=torch.tensor([[NAN] * 8] * 4), x_step=torch.tensor([1.0], dtype=torch.float64))),
    ("hq_linear_backward", lambda: _backward(block=16)),
    ("hq_linear_backward", lambda: _backward(k=6, block=4)),
    ("hq_linear_backward", lambda: _backward(budget=0.0)),
    ("hq_linear_backward", lambda: _backward(budget=1.5)),
    ("hq_linear_backward", lambda: _backward(budget=NAN)),
    ("hq_linear_backward", lambda: _backward(grad=torch.tensor([[1.0, NAN, 0.0]] * 4))),
    ("hq_linear_backward", lambda: _backward(grad=torch.tensor([[1.0, float("-inf"), 0.0]] * 4), need=(False, True))),
    ("hq_linear_backward", lambda: _backward(grad=torch.ones(4, 3, dtype=torch.int32))),
    ("hq_linear_backward", lambda: _backward(grad=torch.ones(12))),
    ("hq_linear_backward", lambda: _backward(grad=torch.randn(5, 3))),  # x_codes are for 4 tokens
    ("hq_linear_backward", lambda: _backward(grad=torch.randn(4, 2), need=(True, False))),  # w_codes: 3 rows
    ("hq_linear_backward", lambda: _backward(codes=_codes_changed(lambda t: t.to(torch.int8)))),
    ("hq_linear_backward", lambda: _backward(codes=_codes_changed(lambda t: t[:, :-1]))),
    ("hq_linear_backward", lambda: _backward(codes=_scales_changed(lambda t: t.double()))),
    ("hq_linear_backward", lambda: _backward(codes=_scales_changed(lambda t: t.expand(2).clone()))),
    (  # column-major codes
        "hq_linear_backward",
        lambda: _backward(codes=_codes_changed(lambda t: t.T.contiguous().T, 4, 4, 16), k=16, grad=torch.randn(4, 4)),
    ),
    ("hq_linear_backward", lambda: _backward(s=torch.tensor(1, dtype=torch.int32))),
]


@pytest.mark.parametrize("name,make_args", BAD_CALLS)
def test_same_inputs_refused(name, make_args):
    assert_refused_alike(name, make_args)


def test_bad_gradient_unread_when_no_gradient_is_needed():
    args = _backward(grad=torch.tensor([[NAN] * 3] * 4), need=(False, False))
    assert_same("hq_linear_backward", *args)


def test_rows_of_extreme_magnitude_split_and_sample_alike():
    """Per-row scales make single tokens matter: a row of max |G| below 2.9e-37 (whose s would be
    inf) and rows 40 orders of magnitude apart (keep probabilities below the draw's 2^-24 step, or
    cancelled to zero by the water-filling sums) give finite, equal results on both backends, and
    every positive score keeps a positive probability on the draw's grid."""
    gen = torch.Generator().manual_seed(7)
    m, c, k, block = 12, 6, 16, 8
    x, w = torch.randn(m, k, generator=gen), torch.randn(c, k, generator=gen)
    grad = torch.randn(m, c, generator=gen)
    grad[2] *= 1e-38
    grad[5] *= 1e30
    grad[7] *= 1e-30
    for per_row in (True, False):
        _, *codes = engine_kernels.KERNELS["hq_linear"](x, w, None, block, True, 0.5, None, None, per_row)
        for s in range(4):
            dx, dw = assert_same("hq_linear_backward", grad, *codes, k, block, True, 0.5, [True, True], seed(s),
                                 per_row)
            assert bool(torch.isfinite(dx).all()) and bool(torch.isfinite(dw).all())
    scores = torch.tensor([1e20, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    p = int4_training._on_draw_grid(scores, int4_training._keep_probabilities(scores, 2.0))
    assert bool((p[:4] > 0).all()) and p[4] == 0
    assert bool((torch.ceil(p * 2**24) == p * 2**24).all())  # on the grid: kept with probability exactly p

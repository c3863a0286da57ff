"""Reversible two-stream layers, and a backward pass that rebuilds their inputs instead of
keeping them (the RevNet coupling, as MEFT uses it).

A reversible layer maps two streams (x1, x2) to

    y1 = lam * x1 + F(x2)
    y2 = beta * x2 + G(y1)

and hands (y2, y1) to the next layer when it swaps, (y1, y2) otherwise. Whatever F and G are,
the inputs follow from the outputs:

    x2 = (y2 - G(y1)) / beta
    x1 = (y1 - F(x2)) / lam

so the backward of a stack of such layers needs only the stack's output: walking down, it
recomputes G and F with the random bits of the forward (dropout masks, intcore's rounding
seeds), rebuilds the layer's input, and backpropagates through the recomputed F and G, one
layer at a time. Gradients: dy1' = dy1 + (dG/dy1)^T dy2, dx2 = beta dy2 + (dF/dx2)^T dy1',
dx1 = lam dy1'.

Float streams rebuild their inputs only approximately: dividing by lam multiplies the rounding
error of y1 - F(x2) by 1/lam, layer after layer. Fixed-point streams rebuild them exactly. A
stream is then an int64 mantissa m with a static exponent e (value m * 2^e). With
lam = 2^-k, lam * x1 is the same mantissa with exponent e - k, and F's output is rounded to
nearest on that grid, so

    m(y1) = m(x1) + round(F(x2) * 2^(k - e))     and back     m(x1) = m(y1) - round(F(x2) * 2^(k - e))

are integer additions, exact both ways at any depth, provided F is recomputed bit for bit
(same input bits, same random bits). A fixed grid could not do this: rounding lam * x1 onto
it merges 2^k mantissas into one and loses the information the inverse needs. The price of
exactness is a grid k bits finer after every scaling, which limits the depth an int64 holds
(see ``fixed_point_bits``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

_ERRORS = ("max_abs_error", "max_rel_error", "rms_rel_error")
# int64 mantissas of fixed-point streams stay below 2^62 in magnitude, so that a sum of two
# never overflows.
_MANTISSA_LIMIT = 2.0**62


@dataclass(frozen=True)
class Coupling:
    """One reversible layer: y1 = lam * x1 + f(x2, *context); y2 = beta * x2 + g(y1, *context).

    swap: hand (y2, y1) to the next layer instead of (y1, y2).
    params: the trainable tensors f and g use; the reversible backward returns their gradients.
    """

    f: Callable[..., Tensor]
    g: Callable[..., Tensor]
    lam: float
    beta: float
    swap: bool
    params: tuple[Tensor, ...] = ()

    def __post_init__(self):
        for name in ("lam", "beta"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"Coupling.{name} must be a positive finite number, got {value!r}")


def power_of_two_exponent(value: float, name: str) -> int:
    """k with value == 2^k; a ValueError naming ``name`` otherwise."""
    mantissa, exponent = math.frexp(value)
    if mantissa != 0.5:
        raise ValueError(f"{name} must be a power of two for fixed-point streams (e.g. 0.125, 0.0625, 1), "
                         f"got {value!r}")
    return exponent - 1


def fixed_point_bits(num_layers: int, lam: float, beta: float, swap: bool, frac_bits: int) -> int:
    """Fractional bits of the finest stream grid after ``num_layers`` identical couplings whose
    streams enter with ``frac_bits`` fractional bits."""
    k1, k2 = -power_of_two_exponent(lam, "lam"), -power_of_two_exponent(beta, "beta")
    bits = [frac_bits, frac_bits]
    for _ in range(num_layers):
        bits = [bits[0] + k1, bits[1] + k2]
        if swap:
            bits.reverse()
    return max(bits)


# ---- stream arithmetic -----------------------------------------------------------------------

class _FloatStreams:
    """Streams as float tensors: exact forward, approximate rebuild."""

    exact = False

    def enter(self, x: Tensor) -> Tensor:
        return x

    def value(self, s: Tensor) -> Tensor:
        return s

    def scale_add(self, s: Tensor, scale: float, delta: Tensor, what: str) -> Tensor:
        return delta + s if scale == 1 else delta + scale * s

    def unscale_sub(self, y: Tensor, scale: float, delta: Tensor, what: str) -> Tensor:
        return y - delta if scale == 1 else (y - delta) / scale

    def pack(self, s: Tensor) -> tuple[Tensor, int]:
        return s, 0

    def unpack(self, tensor: Tensor, exponent: int) -> Tensor:
        return tensor

    def difference(self, rebuilt: Tensor, original: Tensor) -> dict:
        return _difference(rebuilt.double(), original.double(), exact=torch.equal(rebuilt, original))


@dataclass(frozen=True)
class FixedStream:
    """A fixed-point stream: value = mantissa * 2^exponent, int64 mantissas, a static exponent."""

    mantissa: Tensor
    exponent: int


def _to_grid(x: Tensor, exponent: int, what: str) -> Tensor:
    """int64 mantissas of x on the grid 2^exponent, rounded to nearest (ties to even). The
    scaling by a power of two is exact in float64, so the result depends on x's bits alone."""
    scaled = x.detach().double() * 2.0**-exponent
    largest = scaled.abs().max().item() if scaled.numel() else 0.0
    if not largest < _MANTISSA_LIMIT:
        raise ValueError(f"reversible coupling: {what} ({largest * 2.0**exponent:.3g} at most) does not fit an int64 "
                         f"mantissa on the grid 2^{exponent}; use fewer fractional bits or fewer reversible layers")
    return torch.round(scaled).to(torch.int64)


class _FixedStreams:
    """Streams as int64 mantissas: every rebuild is exact."""

    exact = True

    def __init__(self, frac_bits: int, dtype: torch.dtype):
        self.frac_bits, self.dtype = frac_bits, dtype

    def enter(self, x: Tensor) -> FixedStream:
        return FixedStream(_to_grid(x, -self.frac_bits, "the input"), -self.frac_bits)

    def value(self, s: FixedStream) -> Tensor:
        # float64 first: the int64 -> float conversion then the power-of-two scaling are each
        # deterministic, so a rebuilt stream gives F and G the same input bits as the forward.
        return (s.mantissa.double() * 2.0**s.exponent).to(self.dtype)

    def scale_add(self, s: FixedStream, scale: float, delta: Tensor, what: str) -> FixedStream:
        exponent = s.exponent + power_of_two_exponent(scale, "the coupling scale")
        return FixedStream(s.mantissa + _to_grid(delta, exponent, what), exponent)

    def unscale_sub(self, y: FixedStream, scale: float, delta: Tensor, what: str) -> FixedStream:
        exponent = y.exponent - power_of_two_exponent(scale, "the coupling scale")
        return FixedStream(y.mantissa - _to_grid(delta, y.exponent, what), exponent)

    def pack(self, s: FixedStream) -> tuple[Tensor, int]:
        return s.mantissa, s.exponent

    def unpack(self, tensor: Tensor, exponent: int) -> FixedStream:
        return FixedStream(tensor, exponent)

    def difference(self, rebuilt: FixedStream, original: FixedStream) -> dict:
        exact = rebuilt.exponent == original.exponent and torch.equal(rebuilt.mantissa, original.mantissa)
        return _difference(rebuilt.mantissa.double() * 2.0**rebuilt.exponent,
                           original.mantissa.double() * 2.0**original.exponent, exact)


def _difference(rebuilt: Tensor, original: Tensor, exact: bool) -> dict:
    error = rebuilt - original
    largest, norm = original.abs().max().item(), original.norm().item()
    return {"max_abs_error": error.abs().max().item(),
            "max_rel_error": error.abs().max().item() / largest if largest else error.abs().max().item(),
            "rms_rel_error": error.norm().item() / norm if norm else error.norm().item(),
            "exact": exact}


def _streams(fixed_point: Optional[int], dtype: torch.dtype):
    if fixed_point is None:
        return _FloatStreams()
    if isinstance(fixed_point, bool) or not isinstance(fixed_point, int) or not 0 <= fixed_point <= 60:
        raise ValueError(f"fixed_point must be None or the fractional bits 0..60 of the stream grid, "
                         f"got {fixed_point!r}")
    return _FixedStreams(fixed_point, dtype)


# ---- random state and autocast replay --------------------------------------------------------

class _RandomState:
    """The generator states a recomputation must replay: PyTorch's CPU generator (dropout on
    CPU tensors, and every intcore rounding seed, which is drawn on the CPU whatever the
    device) and, for CUDA tensors, the generator of their device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def tensors(self) -> list[Tensor]:
        return [self.cpu] + ([self.cuda] if self.cuda is not None else [])

    @classmethod
    def from_tensors(cls, device: torch.device, tensors: Sequence[Tensor]) -> "_RandomState":
        state = cls.__new__(cls)
        state.device, state.cpu = device, tensors[0]
        state.cuda = tensors[1] if device.type == "cuda" else None
        return state

    def _set(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)

    @contextlib.contextmanager
    def replay(self):
        """Runs the block with the generators as they were when this state was taken, then puts
        back the states they had before the block (so that what the backward draws afterwards,
        e.g. gradient rounding seeds, continues the outer sequence)."""
        outer = _RandomState(self.device)
        self._set()
        try:
            yield
        finally:
            outer._set()


# ---- one layer forward and rebuilt ------------------------------------------------------------

def _forward_layer(c: Coupling, s1, s2, streams, context, device, index: int, record: bool):
    rng_f = _RandomState(device) if record else None
    y1 = streams.scale_add(s1, c.lam, c.f(streams.value(s2), *context), f"F's output in layer {index}")
    rng_g = _RandomState(device) if record else None
    y2 = streams.scale_add(s2, c.beta, c.g(streams.value(y1), *context), f"G's output in layer {index}")
    return ((y2, y1) if c.swap else (y1, y2)), (rng_f, rng_g)


def _grad(output: Tensor, inputs: Sequence[Tensor], grad: Tensor) -> list[Optional[Tensor]]:
    if not output.requires_grad:  # a function that ignores its input and has no parameters (e.g. zero)
        return [None] * len(inputs)
    return list(torch.autograd.grad(output, inputs, grad.to(output.dtype), allow_unused=True))


def _rebuild_layer(c: Coupling, outputs, streams, context, rngs, index: int, grads=None):
    """The layer's inputs (x1, x2) from its outputs, recomputing G then F with the forward's
    random bits. With ``grads`` (the outputs' gradients), also backpropagates through the
    recomputed F and G: returns (x1, x2), (dx1, dx2), [gradient of each of c.params]."""
    y_a, y_b = outputs
    y1, y2 = (y_b, y_a) if c.swap else (y_a, y_b)
    rng_f, rng_g = rngs
    if grads is not None:
        d_a, d_b = grads
        dy1, dy2 = (d_b, d_a) if c.swap else (d_a, d_b)
    with torch.set_grad_enabled(grads is not None):
        v1 = streams.value(y1).detach().requires_grad_(grads is not None)
        with rng_g.replay():
            g = c.g(v1, *context)
        if grads is not None:
            dv1, *dg = _grad(g, (v1, *c.params), dy2)
            dy1 = dy1 if dv1 is None else dy1 + dv1
    x2 = streams.unscale_sub(y2, c.beta, g.detach(), f"G's output in layer {index}")
    with torch.set_grad_enabled(grads is not None):
        v2 = streams.value(x2).detach().requires_grad_(grads is not None)
        with rng_f.replay():
            f = c.f(v2, *context)
        if grads is not None:
            dv2, *df = _grad(f, (v2, *c.params), dy1)
    x1 = streams.unscale_sub(y1, c.lam, f.detach(), f"F's output in layer {index}")
    if grads is None:
        return (x1, x2), None, None
    dx2 = dy2 * c.beta if dv2 is None else dy2 * c.beta + dv2
    param_grads = [a if b is None else b if a is None else a + b for a, b in zip(dg, df)]
    return (x1, x2), (dy1 * c.lam, dx2), param_grads


# ---- the memory-saving autograd function -----------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    couplings: tuple[Coupling, ...]
    streams: object
    n_context: int
    params: tuple[Tensor, ...]


class _ReversibleStack(torch.autograd.Function):
    """Forward without keeping activations; backward rebuilds them layer by layer. Saved for
    backward: the two output streams, the context tensors and the generator states."""

    @staticmethod
    def forward(ctx, plan: _Plan, x1: Tensor, x2: Tensor, *tensors: Tensor):
        context = tensors[:plan.n_context]
        device = x1.device
        streams = plan.streams
        s1, s2 = streams.enter(x1), streams.enter(x2)
        states = []
        with torch.no_grad():
            for i, c in enumerate(plan.couplings):
                (s1, s2), rngs = _forward_layer(c, s1, s2, streams, context, device, i, record=True)
                states.append(rngs)
        (t1, e1), (t2, e2) = streams.pack(s1), streams.pack(s2)
        ctx.plan, ctx.exponents, ctx.device = plan, (e1, e2), device
        ctx.rng_sizes = [(len(f.tensors()), len(g.tensors())) for f, g in states]
        ctx.autocast = (torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
        rng_tensors = [t for f, g in states for t in f.tensors() + g.tensors()]
        ctx.save_for_backward(t1, t2, *context, *rng_tensors)
        return streams.value(s1), streams.value(s2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d1: Tensor, d2: Tensor):
        plan, streams = ctx.plan, ctx.plan.streams
        saved = ctx.saved_tensors
        t1, t2 = saved[:2]
        context = saved[2:2 + plan.n_context]
        rng_tensors = list(saved[2 + plan.n_context:])
        states = []
        for nf, ng in ctx.rng_sizes:
            f_state = _RandomState.from_tensors(ctx.device, rng_tensors[:nf])
            g_state = _RandomState.from_tensors(ctx.device, rng_tensors[nf:nf + ng])
            rng_tensors = rng_tensors[nf + ng:]
            states.append((f_state, g_state))
        outputs = (streams.unpack(t1, ctx.exponents[0]), streams.unpack(t2, ctx.exponents[1]))
        grads = (d1, d2)
        position = {id(p): i for i, p in enumerate(plan.params)}
        param_grads: list[Optional[Tensor]] = [None] * len(plan.params)
        enabled, dtype = ctx.autocast
        with torch.autocast(ctx.device.type, dtype=dtype, enabled=enabled):
            for i in reversed(range(len(plan.couplings))):
                c = plan.couplings[i]
                outputs, grads, layer_grads = _rebuild_layer(c, outputs, streams, context, states[i], i, grads)
                for p, g in zip(c.params, layer_grads):
                    if g is not None:
                        j = position[id(p)]
                        param_grads[j] = g if param_grads[j] is None else param_grads[j] + g
        return (None, grads[0], grads[1], *([None] * plan.n_context), *param_grads)


def _unique(params: Sequence[Tensor]) -> tuple[Tensor, ...]:
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return tuple(out)


def reversible_stack(couplings: Sequence[Coupling], x1: Tensor, x2: Tensor, context: Sequence[Optional[Tensor]] = (),
                     fixed_point: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """Runs ``couplings`` bottom to top on the streams (x1, x2) and returns the top streams.

    When gradients are needed, the backward rebuilds each layer's input instead of keeping it
    (memory: the two output streams, whatever the depth). context: tensors passed to every f
    and g after their input (e.g. the attention mask). fixed_point: None for float streams, or
    the fractional bits of the grid the streams enter on (exactly reversible; every lam and
    beta a power of two). The streams come back as float tensors of x1's dtype.
    """
    couplings = tuple(couplings)
    if not couplings:
        raise ValueError("reversible_stack: couplings is empty")
    streams = _streams(fixed_point, x1.dtype)
    params = _unique([p for c in couplings for p in c.params])
    context = tuple(context)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x1, x2, *params))
    if needs_grad:
        plan = _Plan(couplings, streams, len(context), params)
        return _ReversibleStack.apply(plan, x1, x2, *context, *params)
    s1, s2 = streams.enter(x1), streams.enter(x2)
    for i, c in enumerate(couplings):
        (s1, s2), _ = _forward_layer(c, s1, s2, streams, context, x1.device, i, record=False)
    return streams.value(s1), streams.value(s2)


def coupled_stack(couplings: Sequence[Coupling], x1: Tensor, x2: Tensor,
                  context: Sequence[Optional[Tensor]] = ()) -> tuple[Tensor, Tensor]:
    """The same layers in float streams with ordinary autograd (every activation kept)."""
    streams = _FloatStreams()
    for i, c in enumerate(couplings):
        (x1, x2), _ = _forward_layer(c, x1, x2, streams, tuple(context), x1.device, i, record=False)
    return x1, x2


@torch.no_grad()
def reconstruction_errors(couplings: Sequence[Coupling], x1: Tensor, x2: Tensor,
                          context: Sequence[Optional[Tensor]] = (), fixed_point: Optional[int] = None) -> list[dict]:
    """How well the backward's rebuild recovers each layer's input.

    Runs the forward keeping every layer's input, then rebuilds them from the top output the
    way the backward does (same code, same random-bit replay) and compares. One dict per
    layer, bottom first, the worse of the two streams: max_abs_error, max_rel_error (relative
    to the input's largest |value|), rms_rel_error (||rebuilt - x|| / ||x||), and exact (every
    bit recovered)."""
    couplings, context = tuple(couplings), tuple(context)
    streams = _streams(fixed_point, x1.dtype)
    s = (streams.enter(x1), streams.enter(x2))
    inputs, states = [], []
    for i, c in enumerate(couplings):
        inputs.append(s)
        s, rngs = _forward_layer(c, s[0], s[1], streams, context, x1.device, i, record=True)
        states.append(rngs)
    errors = [None] * len(couplings)
    for i in reversed(range(len(couplings))):
        s, _, _ = _rebuild_layer(couplings[i], s, streams, context, states[i], i)
        pair = [streams.difference(rebuilt, original) for rebuilt, original in zip(s, inputs[i])]
        errors[i] = {"layer": i, **{k: max(p[k] for p in pair) for k in _ERRORS},
                     "exact": all(p["exact"] for p in pair)}
    return errors

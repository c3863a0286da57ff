"""Curvature of a loss with respect to groups of parameters: Hessian-vector products, the top
eigenvalue by power iteration, and Hutchinson's trace estimate. Model-agnostic: any nn.Module,
any loss, any named groups of parameters (an encoder block, a layer, one weight).

Vectors are lists of tensors shaped like a group's parameters. For one batch the gradient is
computed once with ``create_graph=True`` and every Hessian-vector product of every group
reuses that graph: H v = d(g . v)/dw. Hessian-vector products need double backward, so run
them on the float model (intcore's integer ops define no second derivative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

Vector = list[Tensor]


def _dot(a: Vector, b: Vector) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _normalized(v: Vector) -> Vector:
    norm = torch.sqrt(_dot(v, v))
    return [x / (norm + 1e-30) for x in v]


class BatchCurvature:
    """The gradient graph of one batch's loss, for Hessian-vector products of any parameters.

    loss_fn() computes the loss of the batch (the model in the state the curvature is wanted
    for, usually eval mode so dropout does not change H between products).
    """

    def __init__(self, loss_fn: Callable[[], Tensor], params: Sequence[nn.Parameter]):
        self.params = list(params)
        # Fused attention kernels (flash, memory-efficient) have no double backward; the math
        # kernel computes the same attention with ordinary differentiable ops.
        with sdpa_kernel([SDPBackend.MATH]):
            loss = loss_fn()
        if loss.dim() != 0:
            raise ValueError(f"BatchCurvature: loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        self.grads = torch.autograd.grad(loss, self.params, create_graph=True)

    def hvp(self, indices: Sequence[int], v: Vector) -> Vector:
        """H v restricted to the parameters self.params[i] for i in indices (the diagonal block)."""
        grads = [self.grads[i] for i in indices]
        params = [self.params[i] for i in indices]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        return [h.detach() for h in hv]


@dataclass(frozen=True)
class Eigenvalue:
    value: float
    iterations: int
    converged: bool


def top_eigenvalue(hvp: Callable[[Vector], Vector], like: Vector, *, tol: float = 1e-3, max_iter: int = 100,
                   generator: torch.Generator | None = None) -> Eigenvalue:
    """Largest-magnitude eigenvalue of a symmetric operator by power iteration.

    Stops when the Rayleigh quotient changes by less than ``tol`` relative to its magnitude.
    ``like`` gives the shapes, dtypes and devices of the vectors.
    """
    if not tol > 0:
        raise ValueError(f"top_eigenvalue: tol must be positive, got {tol}")
    if max_iter < 1:
        raise ValueError(f"top_eigenvalue: max_iter must be at least 1, got {max_iter}")
    v = _normalized([torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device) for t in like])
    value = None
    for iteration in range(1, max_iter + 1):
        hv = hvp(v)
        new = float(_dot(v, hv))
        v = _normalized(hv)
        if value is not None and abs(new - value) <= tol * (abs(value) + 1e-12):
            return Eigenvalue(new, iteration, True)
        value = new
    return Eigenvalue(value, max_iter, False)


def hutchinson_trace(hvp: Callable[[Vector], Vector], like: Vector, *, samples: int = 50,
                     generator: torch.Generator | None = None) -> float:
    """tr(H) estimated as the mean of z^T H z over Rademacher vectors z (unbiased)."""
    if samples < 1:
        raise ValueError(f"hutchinson_trace: samples must be at least 1, got {samples}")
    total = 0.0
    for _ in range(samples):
        z = [(torch.randint(0, 2, t.shape, generator=generator) * 2 - 1).to(t.dtype).to(t.device) for t in like]
        total += float(_dot(z, hvp(z)))
    return total / samples


@dataclass(frozen=True)
class Sensitivity:
    """Top Hessian eigenvalues of one parameter group over several batches, and
    Omega = |mean| + std (Q-BERT's sensitivity)."""

    eigenvalues: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.eigenvalues) / len(self.eigenvalues)

    @property
    def std(self) -> float:
        n = len(self.eigenvalues)
        return math.sqrt(sum((e - self.mean) ** 2 for e in self.eigenvalues) / n) if n > 1 else 0.0

    @property
    def omega(self) -> float:
        return abs(self.mean) + self.std


def group_sensitivities(groups: dict[str, Sequence[nn.Parameter]], batch_losses: Iterable[Callable[[], Tensor]], *,
                        tol: float = 1e-3, max_iter: int = 100, seed: int = 0,
                        progress: Callable[[str], None] | None = None) -> dict[str, Sensitivity]:
    """The top eigenvalue of each group's diagonal Hessian block on each batch.

    groups: name -> parameters (disjoint). batch_losses: one loss function per batch; each
    batch's gradient graph is built once and shared by every group.
    """
    if not groups:
        raise ValueError("group_sensitivities: no parameter groups given")
    params, index = [], {}
    for name, group in groups.items():
        group = list(group)
        if not group:
            raise ValueError(f"group_sensitivities: group {name!r} has no parameters")
        index[name] = list(range(len(params), len(params) + len(group)))
        params += group
    generator = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {name: [] for name in groups}
    for b, loss_fn in enumerate(batch_losses):
        curvature = BatchCurvature(loss_fn, params)
        for name, indices in index.items():
            like = [params[i] for i in indices]
            eig = top_eigenvalue(lambda v, ix=indices, c=curvature: c.hvp(ix, v), like, tol=tol, max_iter=max_iter,
                                 generator=generator)
            values[name].append(eig.value)
            if progress:
                progress(f"batch {b + 1}: {name} lambda_max {eig.value:.4g} ({eig.iterations} iterations)")
        del curvature
    if not all(values.values()):
        raise ValueError("group_sensitivities: batch_losses gave no batches")
    return {name: Sensitivity(tuple(v)) for name, v in values.items()}

"""intcore.hessian against Hessians known in closed form and computed explicitly."""

import pytest
import torch
from torch import nn

from intcore import hessian


def _quadratic(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.linspace(-1.0, 5.0, n, dtype=torch.float64)
    a = q @ torch.diag(eig) @ q.T
    w = nn.Parameter(torch.randn(n, dtype=torch.float64, generator=g))
    return a, w, eig


def test_quadratic_top_eigenvalue_and_trace_exact():
    a, w, eig = _quadratic()
    curvature = hessian.BatchCurvature(lambda: 0.5 * w @ a @ w, [w])
    hvp = lambda v: curvature.hvp([0], v)  # noqa: E731
    top = hessian.top_eigenvalue(hvp, [w], tol=1e-10, max_iter=2000, generator=torch.Generator().manual_seed(1))
    assert top.converged
    assert top.value == pytest.approx(5.0, rel=1e-6)
    trace = hessian.hutchinson_trace(hvp, [w], samples=4000, generator=torch.Generator().manual_seed(2))
    # Rademacher estimator variance: 2 * sum_{i != j} a_ij^2.
    std = (2 * (a.pow(2).sum() - a.diag().pow(2).sum()) / 4000).sqrt().item()
    assert abs(trace - eig.sum().item()) < 5 * std


def test_block_eigenvalues_match_explicit_hessian_of_a_tiny_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,))

    def loss_fn():
        return nn.functional.cross_entropy(model(x), y)

    groups = {"first": list(model[0].parameters()), "second": list(model[2].parameters())}
    result = hessian.group_sensitivities(groups, [loss_fn], tol=1e-10, max_iter=3000, seed=3)
    for name, params in groups.items():
        shapes = [p.shape for p in params]
        sizes = [p.numel() for p in params]
        flat0 = torch.cat([p.detach().reshape(-1) for p in params])

        names = [n for n, p in model.named_parameters() if any(p is q for q in params)]

        def f(flat):  # the loss as a function of the group's parameters only
            replaced = {n: t.reshape(s) for n, t, s in zip(names, torch.split(flat, sizes), shapes)}
            return nn.functional.cross_entropy(torch.func.functional_call(model, replaced, (x,)), y)

        h = torch.autograd.functional.hessian(f, flat0)
        eig = torch.linalg.eigvalsh(h)
        expected = eig[eig.abs().argmax()].item()
        assert result[name].eigenvalues[0] == pytest.approx(expected, rel=1e-5)


def test_sensitivity_omega_is_abs_mean_plus_std():
    s = hessian.Sensitivity((1.0, 3.0))
    assert s.mean == 2.0 and s.std == 1.0 and s.omega == 3.0
    assert hessian.Sensitivity((-2.0,)).omega == 2.0


def test_bad_arguments():
    a, w, _ = _quadratic()
    with pytest.raises(ValueError, match="tol"):
        hessian.top_eigenvalue(lambda v: v, [w], tol=0)
    with pytest.raises(ValueError, match="no parameter groups"):
        hessian.group_sensitivities({}, [])
    with pytest.raises(ValueError, match="scalar"):
        hessian.BatchCurvature(lambda: w * 2, [w])

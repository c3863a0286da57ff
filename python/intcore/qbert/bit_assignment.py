"""Choosing bits per block under a budget, from each block's Hessian sensitivity.

A block quantized to b bits perturbs its weights by E_i(b) = ||W_i - Q_b(W_i)||^2 (measured
with the real group-wise quantizer). To second order the loss grows by at most
lambda_max / 2 * E_i(b), so we minimise sum_i Omega_i E_i(b_i) — more sensitive blocks get the
bits, as in Q-BERT — subject to a budget on sum_i cost_i(b_i): the parameter-weighted average
bits (the paper's measure) or the blocks' stored bytes. The minimum is found exactly by a
dynamic program over the reachable costs (a knapsack; no ILP solver needed).

The paper's ablations: ``uniform`` bits everywhere, and ``reversed``, which gives the most
sensitive block the bits the Hessian assignment gave the least sensitive one (same size).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from intcore.qbert.quantizer import check_bits, quantize_groups


def quantization_error(weights: Sequence[Tensor], bits: int, groups: int, percentile=None) -> float:
    """sum over the matrices of ||W - Q_bits(W)||^2."""
    total = 0.0
    for w in weights:
        q = quantize_groups(w.detach(), bits, groups, percentile).dequantize()
        total += float((w.detach().float() - q).double().pow(2).sum())
    return total


def assign_bits(omegas: Sequence[float], errors: Sequence[dict[int, float]], costs: Sequence[dict[int, int]],
                budget: int) -> tuple[int, ...]:
    """Bits per block minimising sum omega_i * errors[i][b] with sum costs[i][b] <= budget.

    errors[i] and costs[i] map each allowed bit width to block i's error and integer cost.
    Raises ValueError when even the cheapest assignment exceeds the budget.
    """
    if not (len(omegas) == len(errors) == len(costs)) or not omegas:
        raise ValueError("assign_bits: omegas, errors and costs must describe the same non-empty list of blocks")
    cheapest = sum(min(c.values()) for c in costs)
    if cheapest > budget:
        raise ValueError(f"assign_bits: the budget ({budget}) is below the smallest configuration ({cheapest})")
    # states: total cost -> (objective, bits so far); keep the best objective per cost.
    states: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for omega, error, cost in zip(omegas, errors, costs):
        nxt: dict[int, tuple[float, tuple[int, ...]]] = {}
        for spent, (objective, bits) in states.items():
            for b in sorted(error):
                c = spent + cost[b]
                if c > budget:
                    continue
                candidate = (objective + abs(omega) * error[b], bits + (b,))
                if c not in nxt or candidate < nxt[c]:
                    nxt[c] = candidate
        # A state that costs more and is no better than a cheaper one can never win: prune it.
        pruned, best = {}, float("inf")
        for c in sorted(nxt):
            if nxt[c][0] < best:
                pruned[c], best = nxt[c], nxt[c][0]
        states = pruned
    return min(states.values())[1]


def reversed_assignment(bits: Sequence[int], omegas: Sequence[float]) -> tuple[int, ...]:
    """The same multiset of bits with the sensitivity order reversed."""
    order = sorted(range(len(omegas)), key=lambda i: omegas[i])
    by_sensitivity = [bits[i] for i in order]  # least sensitive first
    out = [0] * len(bits)
    for k, i in enumerate(order):
        out[i] = by_sensitivity[len(order) - 1 - k]
    return tuple(out)


def average_bits_budget(sizes: Sequence[int], allowed: Sequence[int], average: float) -> tuple[list[dict[int, int]], int]:
    """Costs (params x bits) and budget for a parameter-weighted average of `average` bits."""
    for b in allowed:
        check_bits("allowed bits", b)
    costs = [{b: n * b for b in allowed} for n in sizes]
    return costs, int(average * sum(sizes) + 1e-9)


def validate_allowed(bits: Sequence[int]) -> tuple[int, ...]:
    allowed = tuple(sorted(set(bits)))
    if not allowed:
        raise ValueError("qbert: give at least one bit width")
    for b in allowed:
        check_bits("qbert", b)
    return allowed


__all__ = ["assign_bits", "average_bits_budget", "quantization_error", "reversed_assignment", "validate_allowed"]

"""The parts of one dynamic fixed-point linear layer on the CPU engine, next to torch's fp32
GEMMs and `torch._int_mm` on the same shapes: quantizing the activations, weights and output
gradient (nearest and stochastic rounding), aligning per-row exponents, and the three GEMMs.

    python benchmarks/linear_parts.py [--tokens 2048] [--in-features 384] [--out-features 1536]
                                      [--bits 8] [--threads 1]

Milliseconds of process CPU time (``time.thread_time``, fastest of 5), one thread by default so
the figures hold on a shared machine.
"""

from __future__ import annotations

import argparse
import time


def cpu_ms(fn, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--in-features", type=int, default=384)
    parser.add_argument("--out-features", type=int, default=1536)
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from intcore import _C
    from intcore.backends import engine_kernels as engine

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    m, k, n, bits = args.tokens, args.in_features, args.out_features, args.bits
    x, w, g = torch.randn(m, k), torch.randn(n, k) * 0.05, torch.randn(m, n) * 1e-3
    seed = torch.tensor(1)
    print(f"x [{m}, {k}], w [{n}, {k}], grad [{m}, {n}], {bits}-bit mantissas, {args.threads} thread(s)")
    for per_row in (True, False):
        qx, ex = engine._fixed_point_codes(x, bits, "stochastic", per_row, 1, 0)
        qw, ew = engine._fixed_point_codes(w, bits, "nearest", per_row, 0, 0)
        qg, eg = engine._fixed_point_codes(g, bits, "stochastic", per_row, 1, 0)
        qgt, egt = engine._fixed_point_codes(g.T, bits, "stochastic", per_row, 1, 1)
        qw1, ew1 = engine._shared_exponent(qw, ew)
        qx1, ex1 = engine._shared_exponent(qx, ex)
        dx, dw, y = torch.empty(m, k), torch.empty(n, k), torch.empty(m, n)
        parts = {
            "quantize x (stochastic)": lambda: engine._fixed_point_codes(x, bits, "stochastic", per_row, 1, 0),
            "quantize w (nearest)": lambda: engine._fixed_point_codes(w, bits, "nearest", per_row, 0, 0),
            "quantize grad (stochastic)": lambda: engine._fixed_point_codes(g, bits, "stochastic", per_row, 1, 0),
            "quantize grad^T (stochastic)": lambda: engine._fixed_point_codes(g.T, bits, "stochastic", per_row, 1, 1),
            "align w, x to one exponent": lambda: (engine._shared_exponent(qw, ew), engine._shared_exponent(qx, ex)),
            "GEMM y = x w^T": lambda: _C.gemm_scaled(qx, ex, qw, ew, None, y),
            "GEMM dx = grad w": lambda: _C.gemm_scaled(qg, eg, qw1.T, ew1, None, dx),
            "GEMM dw = grad^T x": lambda: _C.gemm_scaled(qgt, egt, qx1.T, ex1, None, dw),
            "whole forward": lambda: engine._fixed_point_linear(x, w, None, [bits] * 3, "stochastic", per_row, seed),
            "whole backward": lambda: engine._fixed_point_linear_backward(
                g, qx, ex, qw, ew, bits, "stochastic", per_row, [True, True], seed),
        }
        if bits <= 8:
            parts["torch._int_mm, dx's shape"] = lambda: torch._int_mm(qg, qw1)
        parts["fp32 forward x w^T"] = lambda: x @ w.T
        parts["fp32 backward (2 GEMMs)"] = lambda: (g @ w, g.T @ x)
        print(f"\n{'per-row exponents' if per_row else 'one exponent per tensor'}")
        for name, fn in parts.items():
            print(f"  {name:<32}{cpu_ms(fn):8.2f} ms")


if __name__ == "__main__":
    main()

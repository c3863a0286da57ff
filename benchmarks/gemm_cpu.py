"""CPU GEMM throughput: intcore's exact int8 GEMM next to PyTorch on the same shapes, one run.

    python benchmarks/gemm_cpu.py [--tokens 2048] [--repeats 7] [--threads N]

Columns: intcore.int8_mm (int8 x int8 -> int32, C = A B^T), torch.matmul in float32 and
bfloat16, torch._int_mm (oneDNN int8), and int8_linear (quantize x and w + GEMM + scales),
all in tera-operations per second (2 M N K per product), the median of --repeats runs in which
the five take turns. The last columns are int8_mm / fp32 and int8_mm / torch._int_mm. With
--threads 1 the timer is the process's CPU time (``time.thread_time``), which holds on a
machine shared with other jobs; otherwise wall time.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import intcore


CLOCK = time.perf_counter


def seconds(fns: dict, repeats: int) -> dict:
    """Median time of each function, the functions taking turns in every repeat: a drift of the
    machine's speed (shared or throttled CPUs) then moves every column alike, not one."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = CLOCK()
            fn()
            times[name].append(CLOCK() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def shapes(tokens: int):
    yield "bert-base qkv/out", tokens, 768, 768
    yield "bert-base ffn up", tokens, 3072, 768
    yield "bert-base ffn down", tokens, 768, 3072
    yield "bert-large qkv/out", tokens, 1024, 1024
    yield "bert-large ffn up", tokens, 4096, 1024
    yield "bert-large ffn down", tokens, 1024, 4096
    yield "square 2048", 2048, 2048, 2048
    yield "square 4096", 4096, 4096, 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048, help="M of the BERT shapes (batch x sequence)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, help="threads for torch and intcore (default: torch's)")
    args = parser.parse_args()
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
        if args.threads == 1:
            CLOCK = time.thread_time

    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, intcore kernel {intcore._C.cpu_kernel()}, "
          f"{'CPU' if CLOCK is time.thread_time else 'wall'} time")
    header = f"{'shape':<22}{'M':>6}{'N':>6}{'K':>6} | {'int8_mm':>8}{'fp32':>8}{'bf16':>8}{'_int_mm':>8}{'i8_lin':>8} | {'vs fp32':>7}{'vs _int_mm':>11}"
    print(header + "\n" + "-" * len(header))
    for name, m, n, k in shapes(args.tokens):
        a8 = torch.randint(-127, 128, (m, k), dtype=torch.int8)
        b8 = torch.randint(-127, 128, (n, k), dtype=torch.int8)
        b8_kn = b8.T.contiguous()
        x, w = torch.randn(m, k), torch.randn(n, k)
        xb, wb = x.bfloat16(), w.bfloat16()
        ops = 2 * m * n * k
        fns = {
            "int8_mm": lambda: intcore.int8_mm(a8, b8),
            "fp32": lambda: x @ w.T,
            "bf16": lambda: xb @ wb.T,
            "_int_mm": lambda: torch._int_mm(a8, b8_kn),
            "i8_lin": lambda: intcore.int8_linear(x, w),
        }
        tops = {name: ops / t for name, t in seconds(fns, args.repeats).items()}
        cells = "".join(f"{v / 1e12:8.3f}" for v in tops.values())
        print(f"{name:<22}{m:>6}{n:>6}{k:>6} | {cells} | {tops['int8_mm'] / tops['fp32']:6.2f}x"
              f"{tops['int8_mm'] / tops['_int_mm']:10.2f}x")


if __name__ == "__main__":
    main()

"""INT4 training's linear layer: forward+backward of int4_linear (HQ-LSS), int8_linear and
nn.Linear in bf16 on the reference's shapes, with real (dense, random) gradients, in one run;
the Hadamard transform's cost shown separately; and the Hadamard kernel's bandwidth next to a
plain copy of the same tensor.

    python benchmarks/int4_linear.py [--device cpu|cuda] [--scale 0.25] [--repeats 5]

Shapes (tokens, in_features, out_features) run from (4608, 5120, 6144) to
(15360, 8704, 10752) as in the reference; --scale shrinks every dimension (the CPU default is
0.125, so a run takes minutes on two cores).
"""

from __future__ import annotations

import argparse
import time

import torch

import intcore

REFERENCE_SHAPES = [(4608, 5120, 6144), (6144, 6144, 7680), (9216, 7168, 8704), (15360, 8704, 10752)]


def seconds(fn, repeats: int, device: str) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, help="multiply every dimension (default 1 on GPU, 0.125 on CPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block-size", type=int, default=32)
    args = parser.parse_args()
    scale = args.scale or (1.0 if args.device == "cuda" else 0.125)
    device = args.device
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}, torch {torch.__version__}; shapes scaled by {scale:g}; times in ms (forward + backward)")
    header = f"{'M':>6}{'K':>6}{'N':>6} | {'int4 hq-lss':>12}{'of it H':>9}{'int8':>9}{'bf16 Linear':>12} | {'bf16/int4':>9}"
    print(header + "\n" + "-" * len(header))
    for m, k, n in REFERENCE_SHAPES:
        m, k, n = (max(64, int(v * scale) // 64 * 64) for v in (m, k, n))
        x = torch.randn(m, k, device=device, requires_grad=True)
        w = (torch.randn(n, k, device=device) * k**-0.5).requires_grad_()
        g = torch.randn(m, n, device=device)
        xb, wb, gb = (t.detach().bfloat16().requires_grad_(t.requires_grad) for t in (x, w, g))
        t4 = seconds(lambda: intcore.int4_linear(x, w, block_size=args.block_size).backward(g), args.repeats, device)
        # The Hadamard work of one step: x and w forward, dx and dw back.
        th = seconds(lambda: [intcore.hadamard(t, args.block_size) for t in (x, w, x, w)], args.repeats, device)
        t8 = seconds(lambda: intcore.int8_linear(x, w).backward(g), args.repeats, device)
        tb = seconds(lambda: torch.nn.functional.linear(xb, wb).backward(gb), args.repeats, device)
        print(f"{m:>6}{k:>6}{n:>6} | {t4 * 1e3:12.1f}{th * 1e3:9.1f}{t8 * 1e3:9.1f}{tb * 1e3:12.1f} | {tb / t4:8.2f}x")

    print("\nHadamard transform bandwidth (read + write) vs a plain copy of the same tensor")
    x = torch.randn(int(16384 * scale), 8192, device=device)
    bytes_moved = 2 * x.numel() * x.element_size()
    for block in (32, 256, 4096):
        t = seconds(lambda: intcore.hadamard(x, block), args.repeats, device)
        print(f"  block {block:>5}: {bytes_moved / t / 1e9:8.1f} GB/s")
    t = seconds(lambda: x.clone(), args.repeats, device)
    print(f"  copy       : {bytes_moved / t / 1e9:8.1f} GB/s")


if __name__ == "__main__":
    main()

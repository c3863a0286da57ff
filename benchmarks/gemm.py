"""GPU GEMM throughput: intcore's int8 and int4 GEMMs next to torch bf16 matmul and
torch._int_mm on the same shapes, in one run; then int8_linear forward+backward against
nn.Linear in bf16.

    python benchmarks/gemm.py [--repeats 20] [--cuda-gemm auto|sm80]

TOPS = 2 M N K / time (CUDA events, median of the repeats after a warm-up). int4 operands are
packed (two per byte) and, on Hopper, widened to int8 for the tensor cores. --cuda-gemm sm80
runs the Ampere/Ada (mma.sync) GEMM on Hopper too, instead of the wgmma/TMA one.

Every figure is checked: a random 64 x 64 block of each intcore result (int8, int4, and the
int8_linear forward) must equal the CPU engine's result for the same rows and columns, bit for
bit; the "check" column says so, and the script exits with status 1 if any block differs.
"""

from __future__ import annotations

import argparse

import torch

import intcore


def cuda_seconds(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def sample_matches(result, a, b, reference, size: int = 64) -> bool:
    """Whether a random size x size block of result = f(a, b) (rows of a, rows of b) equals
    reference(the same rows of a, of b) computed by the CPU engine."""
    generator = torch.Generator().manual_seed(result.shape[0] * 31 + result.shape[1])
    rows = torch.randperm(result.shape[0], generator=generator)[:size]
    cols = torch.randperm(result.shape[1], generator=generator)[:size]
    expected = reference(a.detach()[rows.to(a.device)].cpu(), b.detach()[cols.to(b.device)].cpu(), cols)
    return torch.equal(result.detach()[rows.to(result.device)][:, cols.to(result.device)].cpu(), expected)


def shapes():
    for tokens in (4096, 16384):
        yield f"bert-base qkv {tokens}", tokens, 768, 768
        yield f"bert-base ffn up {tokens}", tokens, 3072, 768
        yield f"bert-base ffn down {tokens}", tokens, 768, 3072
        yield f"bert-large ffn up {tokens}", tokens, 4096, 1024
        yield f"bert-large ffn down {tokens}", tokens, 1024, 4096
    yield "gpt 4096x4096", 4096, 4096, 4096
    yield "gpt 4096x16384", 4096, 16384, 4096
    yield "gpt 16384x4096", 4096, 4096, 16384
    yield "square 8192", 8192, 8192, 8192


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cuda-gemm", choices=["auto", "sm80"], default="auto",
                        help="intcore's int8 tensor-core GEMM: auto (wgmma/TMA on Hopper) or sm80 (mma.sync)")
    args = parser.parse_args()
    if not (torch.cuda.is_available() and intcore.cuda_available()):
        raise SystemExit(f"needs a GPU and intcore's CUDA kernels: {intcore.cuda_unavailable_reason()}")
    intcore._C.set_cuda_gemm_kernel(args.cuda_gemm)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"intcore GEMM {args.cuda_gemm}")
    header = (f"{'shape':<26}{'M':>6}{'N':>6}{'K':>6} | {'int8':>7}{'int4':>7}{'bf16':>7}{'_int_mm':>8} | "
              f"{'int8/bf16':>9}{'int8/_int_mm':>13} | check")
    print(header + "\n" + "-" * len(header))
    failed = []
    for name, m, n, k in shapes():
        a8 = torch.randint(-127, 128, (m, k), dtype=torch.int8, device="cuda")
        b8 = torch.randint(-127, 128, (n, k), dtype=torch.int8, device="cuda")
        a4 = torch.randint(0, 256, (m, k // 2), dtype=torch.uint8, device="cuda")
        b4 = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, device="cuda")
        x, w = torch.randn(m, k, device="cuda", dtype=torch.bfloat16), torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        b8_kn = b8.T.contiguous()
        ops = 2 * m * n * k
        t = {
            "int8": cuda_seconds(lambda: intcore.int8_mm(a8, b8), args.repeats),
            "int4": cuda_seconds(lambda: intcore.int4_mm(a4, b4, k), args.repeats),
            "bf16": cuda_seconds(lambda: x @ w.T, args.repeats),
            "_int_mm": cuda_seconds(lambda: torch._int_mm(a8, b8_kn), args.repeats),
        }
        tops = {key: ops / v / 1e12 for key, v in t.items()}
        checks = {
            "int8": sample_matches(intcore.int8_mm(a8, b8), a8, b8, lambda a, b, _: intcore.int8_mm(a, b)),
            "int4": sample_matches(intcore.int4_mm(a4, b4, k), a4, b4, lambda a, b, _: intcore.int4_mm(a, b, k)),
        }
        failed += [f"{kind} {name}" for kind, ok in checks.items() if not ok]
        check = "ok" if all(checks.values()) else "DIFFERS: " + ", ".join(kind for kind, ok in checks.items() if not ok)
        print(f"{name:<26}{m:>6}{n:>6}{k:>6} | {tops['int8']:7.0f}{tops['int4']:7.0f}{tops['bf16']:7.0f}"
              f"{tops['_int_mm']:8.0f} | {tops['int8'] / tops['bf16']:8.2f}x{tops['int8'] / tops['_int_mm']:12.2f}x"
              f" | {check}")
        del a8, b8, a4, b4, x, w, b8_kn

    print("\nint8_linear forward+backward vs nn.Linear (bf16), 16384 tokens, 4096 -> 4096")
    x = torch.randn(16384, 4096, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    linear = torch.nn.Linear(4096, 4096, device="cuda", dtype=torch.bfloat16)
    g = torch.randn(16384, 4096, device="cuda", dtype=torch.bfloat16)
    t_int8 = cuda_seconds(lambda: intcore.int8_linear(x, linear.weight, linear.bias).backward(g), args.repeats)
    t_bf16 = cuda_seconds(lambda: linear(x).backward(g), args.repeats)
    forward_ok = sample_matches(
        intcore.int8_linear(x, linear.weight, linear.bias), x, linear.weight,
        lambda xs, ws, cols: intcore.int8_linear(xs, ws, linear.bias.detach()[cols.to(x.device)].cpu()))
    if not forward_ok:
        failed.append("int8_linear forward")
    print(f"int8_linear {t_int8 * 1e3:.2f} ms, nn.Linear bf16 {t_bf16 * 1e3:.2f} ms: {t_bf16 / t_int8:.2f}x; "
          f"forward check {'ok' if forward_ok else 'DIFFERS'}")
    if failed:
        raise SystemExit(f"intcore's GPU results differ from the CPU engine's: {', '.join(failed)}")


if __name__ == "__main__":
    main()

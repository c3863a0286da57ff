"""``python -m intcore`` / ``intcore doctor``: what this installation is and whether it computes
right on every device it can see.

Prints versions, how the engine was built (CPU micro-kernels, CUDA architectures, CUTLASS),
whether intcore's CUDA kernels can run (and why not), which ops run native and which portable
per device, then the self-check: every native kernel against its portable kernel on small
random inputs (``intcore.self_check``). Exits 1 on any mismatch or error: the first thing to run
on a new machine, and the first thing a GPU session runs.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections import Counter
from typing import Optional, Sequence

import torch

import intcore
from intcore import _C, cpu_kernels, self_check
from intcore.backends import dispatch


def _devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return devices


def _report_environment() -> None:
    info = _C.build_info()
    print(f"intcore {intcore.__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.machine()}")
    print(f"build: {info['compiler']}")
    if _C.built_with_cuda:
        print(f"       CUDA backend for architectures {info['cuda_architectures']}, CUTLASS {info['cutlass']}")
    else:
        print("       no CUDA backend in this build")
    if torch.cuda.is_available():
        names = ", ".join(
            f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())
        )
        print(f"CUDA: torch {torch.version.cuda} sees {names}")
    else:
        print(f"CUDA: torch sees no GPU (torch built with CUDA {torch.version.cuda})" if torch.version.cuda
              else "CUDA: this torch is a CPU build")
    if intcore.cuda_available():
        print("intcore CUDA kernels: available")
    else:
        print(f"intcore CUDA kernels: unavailable ({intcore.cuda_unavailable_reason()})")
    for line in cpu_kernels.report():
        print(line)
    if dispatch.portable_forced():
        print("INTCORE_BACKEND=portable: every op runs its portable kernel")
    for device, ops in dispatch.kernel_table(forced=False).items():
        if device == "other":
            continue
        counts = Counter("portable" if how == "portable" else "native" for how in ops.values())
        portable_ops = sorted(op for op, how in ops.items() if how == "portable")
        notes = sorted(f"{op}: {how}" for op, how in ops.items() if how.startswith("native ("))
        line = f"kernels on {device}: {counts['native']} native, {counts['portable']} portable"
        print(line + (f" ({', '.join(portable_ops)})" if portable_ops else ""))
        for note in notes:
            print(f"  {note}")
    print("kernels on other devices: portable")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="intcore doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true", help="print every case, with tracebacks of errors")
    args = parser.parse_args(argv)
    _report_environment()
    print("\nself-check: native kernels against portable kernels, and other devices against the CPU engine "
          "(same bits required)")
    bad = 0
    # The CPU once per GEMM micro-kernel this CPU supports (they must agree bit for bit too).
    targets = [("cpu", k) for k in _C.supported_cpu_kernels()] + [(d, None) for d in _devices() if d != "cpu"]
    active = _C.cpu_kernel()
    for device, cpu_kernel in targets:
        label = f"{device} ({cpu_kernel})" if cpu_kernel else device
        if cpu_kernel:
            _C.set_cpu_kernel(cpu_kernel)
        try:
            results = self_check.check_device(device)
        finally:
            _C.set_cpu_kernel(active)
        counts = Counter(r.status for r in results)
        for r in results:
            if r.status in ("MISMATCH", "ERROR") or args.verbose:
                print(f"  {label:<18} {r.op:<32} {r.label:<34} {r.status}")
                if r.detail:
                    print("    " + (r.detail if args.verbose else r.detail.splitlines()[0]))
        bad += counts["MISMATCH"] + counts["ERROR"]
        print(f"  {label}: {counts['ok']} ok, {counts['MISMATCH']} mismatched, {counts['ERROR']} errors, "
              f"{counts['portable']} portable-only cases")
    print("\nevery kernel agrees bit for bit" if bad == 0 else f"\nFAILED: {bad} cases")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

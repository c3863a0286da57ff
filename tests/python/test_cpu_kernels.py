"""The CPU kernel sets: INTCORE_CPU_KERNEL forces one or fails at import with the reason, the
doctor lists them, and each gives the generic set's bits (the `cpu_kernel` fixture runs the
exactness sweeps of test_int_mm.py and others under every set this CPU supports)."""

import os
import subprocess
import sys

import pytest
import torch

import intcore
from intcore import _C, cpu_kernels


def _import_with(kernel: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, INTCORE_CPU_KERNEL=kernel)
    return subprocess.run([sys.executable, "-c", "import intcore; print(intcore._C.cpu_kernel())"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kernel", _C.supported_cpu_kernels())
def test_forced_kernel_is_the_active_one(kernel):
    done = _import_with(kernel)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == kernel


def test_empty_forced_kernel_means_the_best():
    env = {k: v for k, v in os.environ.items() if k != "INTCORE_CPU_KERNEL"}
    best = subprocess.run([sys.executable, "-c", "import intcore; print(intcore._C.cpu_kernel())"], env=env,
                          capture_output=True, text=True, timeout=120)
    done = _import_with("")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == best.stdout.strip() != ""


def test_forced_kernel_the_cpu_lacks_fails_at_import():
    lacking = [k for k in _C.all_cpu_kernels() if k not in _C.supported_cpu_kernels()]
    assert lacking, "every machine lacks either the x86 or the Arm sets"
    done = _import_with(lacking[0])
    assert done.returncode != 0
    assert f"INTCORE_CPU_KERNEL={lacking[0]}: this CPU" in done.stderr and "cannot run it" in done.stderr


def test_unknown_forced_kernel_fails_at_import_naming_the_known_ones():
    done = _import_with("avx3")
    assert done.returncode != 0
    assert "INTCORE_CPU_KERNEL='avx3' names no CPU kernel set; known: generic, avx2" in done.stderr


def test_set_cpu_kernel_refuses_unknown_and_unsupported_names():
    with pytest.raises(ValueError, match="set_cpu_kernel: unknown CPU kernel 'avx3'"):
        _C.set_cpu_kernel("avx3")
    for kernel in set(_C.all_cpu_kernels()) - set(_C.supported_cpu_kernels()):
        with pytest.raises(ValueError, match=f"does not support the {kernel} kernel"):
            _C.set_cpu_kernel(kernel)


def test_doctor_report_lists_sets_and_warns_under_generic():
    previous = _C.cpu_kernel()
    try:
        _C.set_cpu_kernel("generic")
        lines = cpu_kernels.report()
        assert any("generic (active)" in line for line in lines)
        assert any("integer recipes train slower than fp32" in line for line in lines)
        for kernel in _C.supported_cpu_kernels():
            if kernel != "generic":
                _C.set_cpu_kernel(kernel)
                assert not any("note:" in line for line in cpu_kernels.report())
    finally:
        _C.set_cpu_kernel(previous)


def test_int8_linear_forward_and_backward_identical_under_every_set(cpu_kernel):
    # The whole op (quantizers, Philox, packing, GEMM, epilogue) on shapes with partial tiles,
    # compared with the generic set's result in the same process.
    torch.manual_seed(0)
    x = torch.randn(37, 300, requires_grad=True)
    w = torch.randn(70, 300, requires_grad=True)

    def run():
        torch.manual_seed(1)
        y = intcore.int8_linear(x, w)
        gx, gw = torch.autograd.grad(y.square().sum(), (x, w))
        return y.detach(), gx, gw

    got = run()
    active = _C.cpu_kernel()
    _C.set_cpu_kernel("generic")
    try:
        want = run()
    finally:
        _C.set_cpu_kernel(active)
    for g, w_ in zip(got, want):
        assert torch.equal(g, w_)

import glob
import os

import pytest
import torch

import intcore


def snr_db(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Signal-to-noise ratio of approx against the exact (fp64) value, in dB."""
    exact = exact.double()
    noise = (approx.double() - exact).pow(2).sum()
    return float(10 * torch.log10(exact.pow(2).sum() / noise))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(params=intcore._C.supported_cpu_kernels())
def cpu_kernel(request):
    """Runs a test once per CPU GEMM kernel this machine supports."""
    previous = intcore._C.cpu_kernel()
    intcore._C.set_cpu_kernel(request.param)
    yield request.param
    intcore._C.set_cpu_kernel(previous)


# The GPU tests. Where no GPU is meant to be they skip; where one is (PyTorch sees a GPU, or
# INTCORE_REQUIRE_CUDA=1 says so) a missing intcore CUDA backend is an error in every GPU test,
# with the reason, so that a failed build or driver on a GPU machine never passes as skips.

def no_gpu() -> bool:
    """Whether this machine has no NVIDIA GPU: PyTorch sees no CUDA device and Linux has no
    NVIDIA device node (a CPU build of PyTorch sees no device even beside a GPU)."""
    return not torch.cuda.is_available() and not glob.glob("/dev/nvidia[0-9]*")


def cuda_unavailable_reason() -> str:
    """Why the GPU tests cannot run here ("" when they can)."""
    if no_gpu():
        return "no GPU (PyTorch sees no CUDA device and there is no /dev/nvidia*)"
    reasons = []
    if not torch.cuda.is_available():
        reasons.append(f"PyTorch sees no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    if not intcore.cuda_available():
        reasons.append(f"intcore's CUDA backend is unavailable: {intcore.cuda_unavailable_reason()}")
    return "; ".join(reasons)


def cuda_required() -> str:
    """Why the GPU tests must run here ("" when they may skip)."""
    if os.environ.get("INTCORE_REQUIRE_CUDA", "") not in ("", "0"):
        return "INTCORE_REQUIRE_CUDA is set"
    if torch.cuda.is_available():
        return f"PyTorch sees {torch.cuda.get_device_name()}"
    return ""


def pytest_configure(config):
    config.addinivalue_line("markers", "sanitize: a short GPU test that benchmarks/gpu_check.sh runs under compute-sanitizer")


def pytest_report_header(config):
    unavailable, required = cuda_unavailable_reason(), cuda_required()
    state = f"unavailable ({unavailable})" if unavailable else "available"
    return f"intcore CUDA: {state}; GPU tests {'required: ' + required if required else 'may skip'}"


@pytest.fixture
def require_cuda():
    """Skips the test without a GPU, or fails it with the reason where a GPU is required."""
    unavailable = cuda_unavailable_reason()
    if not unavailable:
        return
    required = cuda_required()
    if required:
        pytest.fail(f"GPU tests are required here ({required}) but cannot run: {unavailable}", pytrace=False)
    pytest.skip(unavailable if no_gpu() else f"intcore CUDA kernels unavailable: {unavailable}")

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

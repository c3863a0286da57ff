"""Exact integer GEMMs: bit equality with an int64 reference, every CPU kernel."""

import numpy as np
import pytest
import torch

import intcore

SHAPES = [(1, 1, 1), (7, 5, 1), (13, 67, 29), (97, 131, 263), (0, 5, 9), (5, 0, 9), (4, 6, 0), (130, 7, 515)]


def reference(a, b):
    return a.long() @ b.long().T


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_int8_mm_exact(cpu_kernel, m, n, k):
    a = torch.randint(-128, 128, (m, k), dtype=torch.int8)
    b = torch.randint(-128, 128, (n, k), dtype=torch.int8)
    c = intcore.int8_mm(a, b)
    assert c.dtype == torch.int32
    assert torch.equal(c.long(), reference(a, b))


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_int4_mm_exact(cpu_kernel, m, n, k):
    a = torch.randint(-8, 8, (m, k), dtype=torch.int8)
    b = torch.randint(-8, 8, (n, k), dtype=torch.int8)
    c = intcore.int4_mm(_pack(a), _pack(b), k)
    assert torch.equal(c.long(), reference(a, b))


def _pack(v):
    packed = torch.empty((v.shape[0], (v.shape[1] + 1) // 2), dtype=torch.uint8)
    intcore._C.pack_int4(v, packed)
    return packed


def test_int16_mm_exact_at_full_range_k4096(cpu_kernel):
    a = torch.randint(-(2**15), 2**15, (21, 4096), dtype=torch.int16)
    b = torch.randint(-(2**15), 2**15, (67, 4096), dtype=torch.int16)
    a[0, :] = -(2**15)
    b[0, :] = -(2**15)
    c = intcore.int16_mm(a, b)
    assert c.dtype == torch.int64
    assert torch.equal(c, reference(a, b))
    assert c[0, 0] == 2**30 * 4096


def test_int16_by_int8_and_transposed_operands():
    a = torch.randint(-(2**15), 2**15, (40, 33), dtype=torch.int16)
    b = torch.randint(-128, 128, (33, 25), dtype=torch.int8).T  # a non-contiguous view
    assert torch.equal(intcore.int16_mm(a, b), reference(a, b))


def test_numpy_arrays_cross_through_dlpack():
    a = np.random.randint(-128, 128, (9, 17)).astype(np.int8)
    b = np.random.randint(-128, 128, (11, 17)).astype(np.int8)
    c = np.zeros((9, 11), np.int32)
    intcore._C.gemm_exact(a, b, c)
    assert (c == a.astype(np.int64) @ b.T.astype(np.int64)).all()


def test_kernels_agree_bit_for_bit():
    a = torch.randint(-128, 128, (61, 300), dtype=torch.int8)
    b = torch.randint(-128, 128, (77, 300), dtype=torch.int8)
    results = []
    previous = intcore._C.cpu_kernel()
    for kernel in intcore._C.supported_cpu_kernels():
        intcore._C.set_cpu_kernel(kernel)
        results.append(intcore.int8_mm(a, b))
    intcore._C.set_cpu_kernel(previous)
    assert all(torch.equal(r, results[0]) for r in results)


@pytest.mark.parametrize(
    "op,args",
    [
        (torch.ops.intcore.int8_mm, lambda: (torch.randint(-128, 128, (5, 7), dtype=torch.int8),) * 2),
        (torch.ops.intcore.int16_mm, lambda: (torch.randint(-999, 999, (5, 7), dtype=torch.int16),) * 2),
        (torch.ops.intcore.int4_mm, lambda: (torch.randint(0, 255, (5, 4), dtype=torch.uint8),) * 2 + (7,)),
    ],
)
def test_opcheck(op, args):
    torch.library.opcheck(op, args())

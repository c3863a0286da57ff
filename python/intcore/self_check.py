"""Native kernels against portable ones on one device: every op with a native kernel there runs
on small random inputs both ways and must give the same bits. On a device other than the CPU,
every case's result there (native where the device has a kernel, portable elsewhere) must also
equal the CPU engine's result on the same inputs.

This is what proves the kernels on a device no CI machine has (a GPU): the portable kernels are
tested bit for bit against the CPU engine in the test suite, but torch's own operations on
another device (divisions, reductions, conversions) are only proven there by this comparison.
``python -m intcore`` runs it on every available device.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from intcore.backends import dispatch

ops = torch.ops.intcore


def same_bits(a, b) -> bool:
    """Equal structure, dtypes, shapes and bit patterns (floats compared as integers)."""
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b))
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        width = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
        a, b = a.contiguous().view(width), b.contiguous().view(width)
    return torch.equal(a.cpu(), b.cpu())


@dataclass
class Case:
    op: str
    label: str
    args: tuple

    def run(self):
        return getattr(ops, self.op)(*self.args)


def _seed(v: int) -> Tensor:
    return torch.tensor(v, dtype=torch.int64)


def cases(device: str) -> list[Case]:
    """Small inputs for every op on `device` (forward outputs feed the backward ops)."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape, dtype=torch.float32):
        return (torch.randn(*shape, generator=g) * 2).to(dtype).to(device)

    def randint(low, high, *shape, dtype):
        return torch.randint(low, high, shape, generator=g, dtype=dtype).to(device)

    x, w, b = randn(37, 96), randn(24, 96), randn(24)
    grad = randn(37, 24)
    x_bf16 = randn(37, 96, dtype=torch.bfloat16)
    a8, b8 = randint(-128, 128, 33, 70, dtype=torch.int8), randint(-128, 128, 19, 70, dtype=torch.int8)
    a16, b16 = randint(-(2**15), 2**15, 33, 70, dtype=torch.int16), randint(-(2**15), 2**15, 19, 70, dtype=torch.int16)
    pa, pb = randint(0, 256, 33, 35, dtype=torch.uint8), randint(0, 256, 19, 35, dtype=torch.uint8)
    ids = randint(0, 50, 40, dtype=torch.int64)
    table, ln_weight, ln_bias = randn(50, 96), randn(96), randn(96)
    fp_codes = ops.quantize_fixed_point(x, 12, "stochastic", True, _seed(1))
    abs_codes = ops.quantize_absmax(x, 4, "nearest", True, _seed(1))
    out = [
        Case("quantize_fixed_point", "16 bits, stochastic, per tensor",
             (x, 16, "stochastic", False, _seed(1))),
        Case("quantize_fixed_point", "8 bits, stochastic, per row, bf16",
             (x_bf16, 8, "stochastic", True, _seed(2))),
        Case("dequantize_fixed_point", "12 bits per row", tuple(fp_codes)),
        Case("quantize_absmax", "int8 stochastic per row", (x, 8, "stochastic", True, _seed(3))),
        Case("quantize_absmax", "int4 nearest per tensor", (x.T, 4, "nearest", False, _seed(3))),
        Case("dequantize_absmax", "int4 per row", (*abs_codes, 4, 96)),
        Case("int8_mm", "33x19x70", (a8, b8)),
        Case("int4_mm", "33x19x70", (pa, pb, 70)),
        Case("int16_mm", "int16 x int8", (a16, b8)),
        Case("int16_mm", "int16 x int16", (a16, b16)),
        Case("fixed_point_linear", "16 bits per row", (x, w, b, [16, 16, 16], "stochastic", True, _seed(4))),
        Case("fixed_point_linear", "8 bits per tensor", (x, w, None, [8, 8, 8], "stochastic", False, _seed(4))),
    ]
    for per_row in (False, True):
        saved = ops.fixed_point_linear(x, w, b, [12, 12, 12], "stochastic", per_row, _seed(5))[1:]
        label = "per row" if per_row else "per tensor"
        out.append(Case("fixed_point_linear_backward", label,
                        (grad, *saved, 12, "stochastic", per_row, [True, True], _seed(6))))
    for name in ("int8_linear", "int4_linear"):
        out += [
            Case(name, "forward with bias", (x, w, b)),
            Case(f"{name}_grad_input", "stochastic", (grad, w, _seed(7))),
            Case(f"{name}_grad_weight", "stochastic", (grad, x, _seed(7))),
        ]
    ln_grad, emb_grad = randn(37, 96), randn(40, 96)
    ln = ops.fixed_point_layer_norm(x, ln_weight, ln_bias, 16, 16, 1e-5, "stochastic", "integer", True, _seed(8))
    rms = ops.fixed_point_rms_norm(x, ln_weight, 16, 16, 1e-6, "stochastic", "integer", True, _seed(12))
    out += [
        Case("fixed_point_layer_norm", "16 bits, affine, per row",
             (x, ln_weight, ln_bias, 16, 16, 1e-5, "stochastic", "integer", True, _seed(8))),
        Case("fixed_point_layer_norm", "8 bits, no affine, float rsqrt",
             (x, None, None, 8, 8, 1e-5, "nearest", "float", False, _seed(8))),
        Case("fixed_point_layer_norm_backward", "16 bits",
             (ln_grad, *ln[1:], True, 16, "stochastic", _seed(9))),
        Case("fixed_point_rms_norm", "16 bits, weight, per row",
             (x, ln_weight, 16, 16, 1e-6, "stochastic", "integer", True, _seed(12))),
        Case("fixed_point_rms_norm", "8 bits, no weight, float rsqrt",
             (x, None, 8, 8, 1e-6, "nearest", "float", False, _seed(12))),
        Case("fixed_point_rms_norm_backward", "16 bits",
             (ln_grad, *rms[1:], True, 16, "stochastic", _seed(13))),
        Case("fixed_point_embedding", "16 bits", (ids, table, 16, 16, "stochastic", -1)),
        Case("fixed_point_embedding_backward", "repeated ids, padding 3",
             (emb_grad, ids, 50, 16, "stochastic", 3, _seed(10))),
        Case("hadamard", "block 32", (x, 32)),
    ]
    for per_row in (False, True):
        scales = "per row" if per_row else "per tensor"
        hq = ops.hq_linear(x, w, b, 32, True, 0.5, None, None, per_row)
        out += [
            Case("hq_linear", f"block 32, {scales}", (x, w, b, 32, True, 0.5, None, None, per_row)),
            Case("hq_linear_backward", f"sampling 0.5, {scales}",
                 (grad, *hq[1:], 96, 32, True, 0.5, [True, True], _seed(11), per_row)),
            Case("hq_linear_backward", f"no sampling, {scales}",
                 (grad, *hq[1:], 96, 32, False, 0.5, [True, True], _seed(11), per_row)),
        ]
    return out


@dataclass
class Result:
    device: str
    op: str
    label: str
    # "ok", "MISMATCH", "ERROR", or "portable" (no native kernel to compare, and on the CPU
    # nothing else to compare with)
    status: str
    detail: str = ""


def check_device(device: str, against_cpu: Optional[bool] = None) -> list[Result]:
    """Runs every case on `device` natively and portably (a case of an op without a native kernel
    there runs portably only); with `against_cpu` (the default off the CPU) each result is also
    compared with the CPU engine's on the same inputs."""
    device_type = torch.device(device).type
    if against_cpu is None:
        against_cpu = device_type != "cpu"
    native_ops = {op for op, how in dispatch.kernel_table(forced=False).get(device_type, {}).items() if how != "portable"}
    results = []
    try:
        with dispatch.portable_kernels():
            case_list = cases(device)
        cpu_list = cases("cpu") if against_cpu else None
    except Exception as error:  # noqa: BLE001 - reported, and the run fails
        return [Result(device, "(inputs)", "", "ERROR", f"{type(error).__name__}: {error}")]
    for i, case in enumerate(case_list):
        try:
            with dispatch.portable_kernels():
                portable = case.run()
            status, detail = "portable", ""
            if case.op in native_ops:
                with dispatch.portable_kernels(False):
                    native = case.run()
                status = "ok" if same_bits(native, portable) else "MISMATCH"
                detail = "" if status == "ok" else "native != portable"
            if cpu_list is not None and status != "MISMATCH":
                with dispatch.portable_kernels(False):
                    on_cpu = cpu_list[i].run()
                status = "ok" if same_bits(portable, on_cpu) else "MISMATCH"
                detail = "" if status == "ok" else f"{device} != the CPU engine"
            results.append(Result(device, case.op, case.label, status, detail))
        except Exception as error:  # noqa: BLE001 - reported, and the run fails
            detail = f"{type(error).__name__}: {error}".splitlines()[0]
            results.append(Result(device, case.op, case.label, "ERROR", detail + "\n" + traceback.format_exc(limit=3)))
    return results

"""Schemas and fake (meta) implementations of every intcore op, in one place.

Each op is a ``torch.library.custom_op`` in the ``intcore`` namespace. Its body is the op's
portable kernel (``intcore/backends/portable/``: torch tensor code, bit-exact with the engine),
which torch runs on every device without a kernel of its own; native kernels over the C++
engine are registered per device in ``intcore/backends/cpu.py`` and ``cuda.py`` and take
precedence (``intcore/backends/dispatch.py``). Autograd formulas live in ``intcore/_autograd.py``. Fake
implementations give shapes and dtypes without data, so ``torch.compile`` traces the ops without
graph breaks.

Conventions: 2-D operands, ``a @ b.T`` layout for products (``y = x @ w.T`` as in nn.Linear),
random bits from a ``seed`` tensor (int64, 0-dim) that the public functions draw from PyTorch's
generator, so ``torch.manual_seed`` reproduces a run.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def _portable_kernel(op: str):
    """The portable kernel of op (imported on first call: the kernels import nothing of this module)."""
    from intcore.backends.portable import KERNELS

    return KERNELS[op]


def _fake(op):
    """Registers fn as op's fake (meta) implementation, refusing None where the schema says
    Tensor as the kernels do (the dispatcher lets it through), and a tensor of too few
    dimensions for the shapes fn reads with a ValueError naming the op."""

    def register(fn):
        from intcore._checks import with_tensor_args_checked

        checked = with_tensor_args_checked(op._name, fn)

        def fake(*args, **kwargs):
            try:
                return checked(*args, **kwargs)
            except IndexError as e:
                raise ValueError(f"{op._name}: a tensor argument has too few dimensions ({e})") from None

        op.register_fake(fake)
        return fn

    return register


def _count(op: str, name: str, value: int) -> int:
    """A size argument of a fake: refused when negative, as the kernels refuse it."""
    if value < 0:
        raise ValueError(f"{op}: {name} must be >= 0, got {value}")
    return value


def _exponent_shape(x: Tensor, per_row: bool) -> tuple:
    return (x.shape[0],) if per_row else (1,)


# ---- quantizers ----------------------------------------------------------------------------


@torch.library.custom_op("intcore::quantize_fixed_point", mutates_args=())
def quantize_fixed_point(x: Tensor, bits: int, rounding: str, per_row: bool, seed: Tensor) -> tuple[Tensor, Tensor]:
    return _portable_kernel("quantize_fixed_point")(x, bits, rounding, per_row, seed)


@_fake(quantize_fixed_point)
def _(x, bits, rounding, per_row, seed):
    dtype = torch.int8 if bits <= 8 else torch.int16
    return x.new_empty(x.shape, dtype=dtype), x.new_empty(_exponent_shape(x, per_row), dtype=torch.int32)


@torch.library.custom_op("intcore::dequantize_fixed_point", mutates_args=())
def dequantize_fixed_point(mantissa: Tensor, exponent: Tensor) -> Tensor:
    return _portable_kernel("dequantize_fixed_point")(mantissa, exponent)


@_fake(dequantize_fixed_point)
def _(mantissa, exponent):
    return mantissa.new_empty(mantissa.shape, dtype=torch.float32)


@torch.library.custom_op("intcore::quantize_absmax", mutates_args=())
def quantize_absmax(x: Tensor, bits: int, rounding: str, per_row: bool, seed: Tensor) -> tuple[Tensor, Tensor]:
    return _portable_kernel("quantize_absmax")(x, bits, rounding, per_row, seed)


@_fake(quantize_absmax)
def _(x, bits, rounding, per_row, seed):
    if bits == 8:
        q = x.new_empty(x.shape, dtype=torch.int8)
    else:
        q = x.new_empty((x.shape[0], (x.shape[1] + 1) // 2), dtype=torch.uint8)
    return q, x.new_empty(_exponent_shape(x, per_row), dtype=torch.float32)


@torch.library.custom_op("intcore::dequantize_absmax", mutates_args=())
def dequantize_absmax(q: Tensor, scale: Tensor, bits: int, cols: int) -> Tensor:
    return _portable_kernel("dequantize_absmax")(q, scale, bits, cols)


@_fake(dequantize_absmax)
def _(q, scale, bits, cols):
    return q.new_empty((q.shape[0], _count("dequantize_absmax", "cols", cols)), dtype=torch.float32)


# ---- exact integer products ----------------------------------------------------------------


@torch.library.custom_op("intcore::int8_mm", mutates_args=())
def int8_mm(a: Tensor, b: Tensor) -> Tensor:
    return _portable_kernel("int8_mm")(a, b)


@_fake(int8_mm)
def _(a, b):
    return a.new_empty((a.shape[0], b.shape[0]), dtype=torch.int32)


@torch.library.custom_op("intcore::int4_mm", mutates_args=())
def int4_mm(a: Tensor, b: Tensor, k: int) -> Tensor:
    return _portable_kernel("int4_mm")(a, b, k)


@_fake(int4_mm)
def _(a, b, k):
    return a.new_empty((a.shape[0], b.shape[0]), dtype=torch.int32)


@torch.library.custom_op("intcore::int16_mm", mutates_args=())
def int16_mm(a: Tensor, b: Tensor) -> Tensor:
    return _portable_kernel("int16_mm")(a, b)


@_fake(int16_mm)
def _(a, b):
    return a.new_empty((a.shape[0], b.shape[0]), dtype=torch.int64)


# ---- linear layers on absmax-scaled integers (int8, int4) ----------------------------------


def _define_absmax_linear(name: str):
    """Defines intcore::<name>, <name>_grad_input and <name>_grad_weight."""

    @torch.library.custom_op(f"intcore::{name}", mutates_args=())
    def forward(x: Tensor, w: Tensor, bias: Optional[Tensor]) -> Tensor:
        return _portable_kernel(name)(x, w, bias)

    @_fake(forward)
    def _(x, w, bias):
        return x.new_empty((x.shape[0], w.shape[0]))

    @torch.library.custom_op(f"intcore::{name}_grad_input", mutates_args=())
    def grad_input(grad: Tensor, w: Tensor, seed: Tensor) -> Tensor:
        return _portable_kernel(f"{name}_grad_input")(grad, w, seed)

    @_fake(grad_input)
    def _(grad, w, seed):
        return grad.new_empty((grad.shape[0], w.shape[1]))

    @torch.library.custom_op(f"intcore::{name}_grad_weight", mutates_args=())
    def grad_weight(grad: Tensor, x: Tensor, seed: Tensor) -> Tensor:
        return _portable_kernel(f"{name}_grad_weight")(grad, x, seed)

    @_fake(grad_weight)
    def _(grad, x, seed):
        return grad.new_empty((grad.shape[1], x.shape[1]))

    return forward, grad_input, grad_weight


int8_linear, int8_linear_grad_input, int8_linear_grad_weight = _define_absmax_linear("int8_linear")
int4_linear, int4_linear_grad_input, int4_linear_grad_weight = _define_absmax_linear("int4_linear")


# ---- dynamic fixed point: linear, layer norm, embedding -------------------------------------
# bits lists are [activation, weight, grad] for the linear layer. The forward ops also return
# the integer codes the backward reuses (docs/integer-finetuning.md, "Linear layer").


@torch.library.custom_op("intcore::fixed_point_linear", mutates_args=())
def fixed_point_linear(
    x: Tensor, w: Tensor, bias: Optional[Tensor], bits: list[int], rounding: str, per_row: bool, seed: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _portable_kernel("fixed_point_linear")(x, w, bias, bits, rounding, per_row, seed)


def _mantissa_dtype(bits: int) -> torch.dtype:
    return torch.int8 if bits <= 8 else torch.int16


@_fake(fixed_point_linear)
def _(x, w, bias, bits, rounding, per_row, seed):
    return (
        x.new_empty((x.shape[0], w.shape[0])),
        x.new_empty(x.shape, dtype=_mantissa_dtype(bits[0])),
        x.new_empty(_exponent_shape(x, per_row), dtype=torch.int32),
        w.new_empty(w.shape, dtype=_mantissa_dtype(bits[1])),
        w.new_empty(_exponent_shape(w, per_row), dtype=torch.int32),
    )


@torch.library.custom_op("intcore::fixed_point_linear_backward", mutates_args=())
def fixed_point_linear_backward(
    grad: Tensor,
    x_mantissa: Tensor,
    x_exponent: Tensor,
    w_mantissa: Tensor,
    w_exponent: Tensor,
    grad_bits: int,
    rounding: str,
    per_row: bool,
    need_grad: list[bool],
    seed: Tensor,
) -> tuple[Tensor, Tensor]:
    return _portable_kernel("fixed_point_linear_backward")(
        grad, x_mantissa, x_exponent, w_mantissa, w_exponent, grad_bits, rounding, per_row, need_grad, seed
    )


@_fake(fixed_point_linear_backward)
def _(grad, x_mantissa, x_exponent, w_mantissa, w_exponent, grad_bits, rounding, per_row, need_grad, seed):
    m, k, n = x_mantissa.shape[0], x_mantissa.shape[1], w_mantissa.shape[0]
    dx = grad.new_empty((m, k) if need_grad[0] else (0,), dtype=torch.float32)
    dw = grad.new_empty((n, k) if need_grad[1] else (0,), dtype=torch.float32)
    return dx, dw


@torch.library.custom_op("intcore::fixed_point_layer_norm", mutates_args=())
def fixed_point_layer_norm(
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    bits: int,
    grad_bits: int,
    eps: float,
    rounding: str,
    rsqrt: str,
    per_row: bool,
    seed: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _portable_kernel("fixed_point_layer_norm")(
        x, weight, bias, bits, grad_bits, eps, rounding, rsqrt, per_row, seed
    )


def _layer_norm_outputs(x: Tensor, per_row: bool):
    rows, n = x.shape
    one = lambda: x.new_empty((1,), dtype=torch.int32)  # noqa: E731
    return (
        x.new_empty((rows, n)),  # y
        x.new_empty((rows, n), dtype=torch.int16),  # xhat mantissas
        one(),  # xhat exponent
        x.new_empty((rows,) if per_row and rows > 1 else (1,), dtype=torch.int32),  # x exponent(s)
        x.new_empty((rows,), dtype=torch.int64),  # rstd mantissas
        x.new_empty((rows,), dtype=torch.int32),  # rstd exponents
        x.new_empty((n,), dtype=torch.int16),  # gamma mantissas
        one(),  # gamma exponent
    )


@_fake(fixed_point_layer_norm)
def _(x, weight, bias, bits, grad_bits, eps, rounding, rsqrt, per_row, seed):
    return _layer_norm_outputs(x, per_row)


@torch.library.custom_op("intcore::fixed_point_layer_norm_backward", mutates_args=())
def fixed_point_layer_norm_backward(
    grad: Tensor,
    xhat: Tensor,
    xhat_exponent: Tensor,
    x_exponent: Tensor,
    rstd_mantissa: Tensor,
    rstd_exponent: Tensor,
    gamma_mantissa: Tensor,
    gamma_exponent: Tensor,
    has_affine: bool,
    grad_bits: int,
    rounding: str,
    seed: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    return _portable_kernel("fixed_point_layer_norm_backward")(
        grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa, gamma_exponent,
        has_affine, grad_bits, rounding, seed
    )


@_fake(fixed_point_layer_norm_backward)
def _(grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa, gamma_exponent,
      has_affine, grad_bits, rounding, seed):
    n = xhat.shape[1]
    affine_shape = (n,) if has_affine else (0,)
    return (
        grad.new_empty(xhat.shape, dtype=torch.float32),
        grad.new_empty(affine_shape, dtype=torch.float32),
        grad.new_empty(affine_shape, dtype=torch.float32),
    )


@torch.library.custom_op("intcore::fixed_point_rms_norm", mutates_args=())
def fixed_point_rms_norm(
    x: Tensor,
    weight: Optional[Tensor],
    bits: int,
    grad_bits: int,
    eps: float,
    rounding: str,
    rsqrt: str,
    per_row: bool,
    seed: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The layer norm's outputs (y and what the backward needs), for an RMSNorm: no mean, no bias."""
    return _portable_kernel("fixed_point_rms_norm")(x, weight, bits, grad_bits, eps, rounding, rsqrt, per_row, seed)


@_fake(fixed_point_rms_norm)
def _(x, weight, bits, grad_bits, eps, rounding, rsqrt, per_row, seed):
    return _layer_norm_outputs(x, per_row)


@torch.library.custom_op("intcore::fixed_point_rms_norm_backward", mutates_args=())
def fixed_point_rms_norm_backward(
    grad: Tensor,
    xhat: Tensor,
    xhat_exponent: Tensor,
    x_exponent: Tensor,
    rstd_mantissa: Tensor,
    rstd_exponent: Tensor,
    gamma_mantissa: Tensor,
    gamma_exponent: Tensor,
    has_weight: bool,
    grad_bits: int,
    rounding: str,
    seed: Tensor,
) -> tuple[Tensor, Tensor]:
    return _portable_kernel("fixed_point_rms_norm_backward")(
        grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa, gamma_exponent,
        has_weight, grad_bits, rounding, seed
    )


@_fake(fixed_point_rms_norm_backward)
def _(grad, xhat, xhat_exponent, x_exponent, rstd_mantissa, rstd_exponent, gamma_mantissa, gamma_exponent,
      has_weight, grad_bits, rounding, seed):
    return (grad.new_empty(xhat.shape, dtype=torch.float32),
            grad.new_empty((xhat.shape[1],) if has_weight else (0,), dtype=torch.float32))


@torch.library.custom_op("intcore::fixed_point_embedding", mutates_args=())
def fixed_point_embedding(
    ids: Tensor, weight: Tensor, bits: int, grad_bits: int, rounding: str, padding_idx: int
) -> Tensor:
    return _portable_kernel("fixed_point_embedding")(ids, weight, bits, grad_bits, rounding, padding_idx)


@_fake(fixed_point_embedding)
def _(ids, weight, bits, grad_bits, rounding, padding_idx):
    return weight.new_empty((ids.shape[0], weight.shape[1]))


@torch.library.custom_op("intcore::fixed_point_embedding_backward", mutates_args=())
def fixed_point_embedding_backward(
    grad: Tensor, ids: Tensor, num_embeddings: int, grad_bits: int, rounding: str, padding_idx: int, seed: Tensor
) -> Tensor:
    return _portable_kernel("fixed_point_embedding_backward")(
        grad, ids, num_embeddings, grad_bits, rounding, padding_idx, seed
    )


@_fake(fixed_point_embedding_backward)
def _(grad, ids, num_embeddings, grad_bits, rounding, padding_idx, seed):
    return grad.new_empty((_count("fixed_point_embedding_backward", "num_embeddings", num_embeddings), grad.shape[1]),
                          dtype=torch.float32)


# ---- INT4 training: Hadamard transform and the HQ-LSS linear layer --------------------------


@torch.library.custom_op("intcore::hadamard", mutates_args=())
def hadamard(x: Tensor, block_size: int) -> Tensor:
    return _portable_kernel("hadamard")(x, block_size)


@_fake(hadamard)
def _(x, block_size):
    return torch.empty_like(x, dtype=x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.float32)


@torch.library.custom_op("intcore::hq_linear", mutates_args=())
def hq_linear(
    x: Tensor,
    w: Tensor,
    bias: Optional[Tensor],
    block_size: int,
    sampling: bool,
    budget: float,
    x_step: Optional[Tensor],
    w_step: Optional[Tensor],
    per_row: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    # sampling and budget configure the backward (they reach it through the autograd context);
    # x_step / w_step are learned (LSQ) step sizes, or None for absmax scales; per_row gives
    # every row of x H and of w H its own absmax scale.
    return _portable_kernel("hq_linear")(x, w, bias, block_size, sampling, budget, x_step, w_step, per_row)


@_fake(hq_linear)
def _(x, w, bias, block_size, sampling, budget, x_step, w_step, per_row=False):
    k = x.shape[1]
    return (
        x.new_empty((x.shape[0], w.shape[0])),
        x.new_empty((x.shape[0], (k + 1) // 2), dtype=torch.uint8),
        x.new_empty((x.shape[0] if per_row else 1,), dtype=torch.float32),
        w.new_empty((w.shape[0], (k + 1) // 2), dtype=torch.uint8),
        w.new_empty((w.shape[0] if per_row else 1,), dtype=torch.float32),
    )


@torch.library.custom_op("intcore::hq_linear_backward", mutates_args=())
def hq_linear_backward(
    grad: Tensor,
    x_codes: Tensor,
    x_scale: Tensor,
    w_codes: Tensor,
    w_scale: Tensor,
    k: int,
    block_size: int,
    sampling: bool,
    budget: float,
    need_grad: list[bool],
    seed: Tensor,
    per_row: bool = False,
) -> tuple[Tensor, Tensor]:
    return _portable_kernel("hq_linear_backward")(
        grad, x_codes, x_scale, w_codes, w_scale, k, block_size, sampling, budget, need_grad, seed, per_row
    )


@_fake(hq_linear_backward)
def _(grad, x_codes, x_scale, w_codes, w_scale, k, block_size, sampling, budget, need_grad, seed, per_row=False):
    _count("hq_linear_backward", "k", k)
    dx = grad.new_empty((grad.shape[0], k) if need_grad[0] else (0,), dtype=torch.float32)
    dw = grad.new_empty((grad.shape[1], k) if need_grad[1] else (0,), dtype=torch.float32)
    return dx, dw

"""The integer base of QDyLoRA: a frozen linear layer stored as int4 codes with per-group
scales, whose products run on intcore's exact int8 GEMM in both directions.

Format. Weight w[n, k] of output row n, in group g (64 consecutive inputs by default):

    w[n, k] ~ q[n, k] * m[n, g] * u[n]

- q: int4 code in [-7, 7], packed two a byte (intcore's order: low nibble = even column, the
  layout intcore.int4_mm takes);
- m: the group's integer multiplier in 1..18 (uint8), m = ceil(18 * absmax(group) / absmax(row));
- u: the row's float32 unit, absmax(row) / 126.

The group step m * u is the smallest multiple of the row's unit whose 7-fold covers the group's
absmax: each group keeps its own absmax scale, rounded up by less than one part in 18 * absmax
(group) / absmax(row) (under 6% coarser for groups with absmax near the row's, more for groups
of much smaller weights).

Why integer multipliers and not a float scale per group: with float group scales every group
is a separate GEMM whose int32 result is scaled and summed in float, K / 64 passes over the
[tokens, out_features] output; on a 2-core CPU that measured 1.1-1.9x slower than the fp32
GEMM it replaces (MiniLM shapes, 2048 tokens). With integer multipliers the effective weight
q * m (|q m| <= 7 * 18 = 126) is an int8 matrix, so a product is ONE exact int8 GEMM and one
float epilogue, like intcore's int8 layers:

    forward   y = s_x[i] u[n] (x_q @ (q m)^T)[i, n] + b,   x_q: rows of x, int8 absmax (nearest)
    backward  dx = dy @ W = (dy u) @ (q m):  the rows of dy * u quantized to int8 with
              stochastic rounding (unbiased, as intcore's int8 layers treat output gradients),
              times the same int8 matrix: one more exact int8 GEMM.

The accumulators are exact int32 (|x_q| <= 127, |q m| <= 126: exact for up to 134,000 inputs).
The base is frozen: no weight gradient. The bias (float32) is frozen too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from intcore import _checks, functional
from intcore.backends.portable.quantize import pack_int4, unpack_int4

GROUP_SIZE = 64
MULTIPLIER_MAX = 18  # 7 * 18 = 126 <= 127: q * m stays an int8
CODE_MAX = 7


def quantize_int4_groups(w: Tensor, group_size: int = GROUP_SIZE) -> tuple[Tensor, Tensor, Tensor]:
    """(codes int8 [out, in] in [-7, 7], multipliers uint8 [out, groups] in 1..18, unit float32
    [out]) of a 2-D float weight, groups of ``group_size`` along in_features (the last group may
    be shorter). Codes round to nearest, ties to even. A zero row gets unit 0 and codes 0."""
    _checks.check_float("w", w)
    _checks.check_dim("w", w, 2)
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"quantize_int4_groups: group_size must be a positive int, got {group_size!r}")
    if not torch.isfinite(w).all():
        raise ValueError("quantize_int4_groups: w holds NaN or Inf")
    out_features, in_features = w.shape
    w = w.detach().float()
    groups = -(-in_features // group_size)
    padded = nn.functional.pad(w, (0, groups * group_size - in_features)).reshape(out_features, groups, group_size)
    group_absmax = padded.abs().amax(dim=2)
    row_absmax = group_absmax.amax(dim=1)
    safe_row = torch.where(row_absmax > 0, row_absmax, 1.0)
    multiplier = torch.ceil(MULTIPLIER_MAX * group_absmax / safe_row[:, None]).clamp(1, MULTIPLIER_MAX)
    unit = row_absmax / (CODE_MAX * MULTIPLIER_MAX)
    step = multiplier * torch.where(unit > 0, unit, 1.0)[:, None]
    codes = torch.round(padded / step[:, :, None]).clamp(-CODE_MAX, CODE_MAX)
    codes = codes.reshape(out_features, -1)[:, :in_features].to(torch.int8)
    return codes, multiplier.to(torch.uint8), unit


class _IntegerLinear(torch.autograd.Function):
    """Forward and input gradient of an Int4BaseLinear, each one exact int8 GEMM."""

    @staticmethod
    def forward(ctx, x: Tensor, module: "Int4BaseLinear") -> Tensor:
        ctx.module, ctx.x_dtype = module, x.dtype
        rows = _checks.as_rows(x).float()
        acc, x_scale = module.integer_product(rows)
        y = acc.float().mul_(x_scale[:, None]).mul_(module.row_unit)
        if module.bias is not None:
            y.add_(module.bias)
        return y.reshape(*x.shape[:-1], module.out_features).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        module = ctx.module
        g = _checks.as_rows(grad).float() * module.row_unit
        g_codes, g_scale = functional.quantize_absmax(g, 8, "stochastic", per_row=True)
        dx = functional.int8_mm(g_codes, module.int8_weight().t().contiguous()).float().mul_(g_scale[:, None])
        return dx.reshape(*grad.shape[:-1], module.in_features).to(ctx.x_dtype), None


class Int4BaseLinear(nn.Module):
    """A frozen linear layer holding int4 codes with per-group integer multipliers and a unit per
    row (see the module docstring); products on intcore.int8_mm with int8 activations.

    State: buffers ``weight_codes`` (packed int4), ``group_multipliers`` (uint8), ``row_unit``
    (float32) and a frozen ``bias``: the layer round-trips through state_dict and safetensors;
    ``Int4BaseLinear(in_features, out_features, bias, group_size)`` makes an empty one to load into.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = GROUP_SIZE,
                 device=None):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = -(-in_features // group_size)
        self.register_buffer("weight_codes", torch.zeros(out_features, -(-in_features // 2), dtype=torch.uint8,
                                                         device=device))
        self.register_buffer("group_multipliers", torch.ones(out_features, groups, dtype=torch.uint8, device=device))
        self.register_buffer("row_unit", torch.zeros(out_features, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = GROUP_SIZE) -> "Int4BaseLinear":
        """The int4 form of ``linear``'s weight (and a frozen copy of its bias)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"Int4BaseLinear.from_linear: linear must be an nn.Linear, got {type(linear).__name__}")
        codes, multipliers, unit = quantize_int4_groups(linear.weight, group_size)
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size,
                     device=linear.weight.device)
        module.weight_codes.copy_(pack_int4(codes))
        module.group_multipliers.copy_(multipliers)
        module.row_unit.copy_(unit)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach().float())
        return module

    def codes(self) -> Tensor:
        """The int4 codes as int8 [out_features, in_features]."""
        return unpack_int4(self.weight_codes, self.in_features)

    def int8_weight(self) -> Tensor:
        """q * m as int8 [out_features, in_features]: the matrix both GEMMs multiply by."""
        m = self.group_multipliers.to(torch.int8).repeat_interleave(self.group_size, dim=1)[:, : self.in_features]
        return self.codes() * m

    def dequantize(self) -> Tensor:
        """The float32 weight q * m * u [out_features, in_features]."""
        return self.int8_weight().float() * self.row_unit[:, None]

    def integer_product(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(x_q @ (q m)^T as exact int32 [rows, out_features], the float32 scale of each row of
        x_q) for float rows [rows, in_features]."""
        x_codes, x_scale = functional.quantize_absmax(rows, 8, "nearest", per_row=True)
        return functional.int8_mm(x_codes, self.int8_weight()), x_scale

    def storage_bytes(self) -> int:
        """Bytes of the quantized weight: packed codes, group multipliers, row units (no bias)."""
        return sum(b.numel() * b.element_size() for b in (self.weight_codes, self.group_multipliers, self.row_unit))

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_float("x", x)
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Int4BaseLinear: x must have {self.in_features} features (last dimension), "
                             f"got shape {tuple(x.shape)}")
        return _IntegerLinear.apply(x, self)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"int4 groups of {self.group_size}")

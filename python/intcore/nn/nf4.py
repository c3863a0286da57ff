"""NF4: QLoRA's 4-bit NormalFloat weights with double quantization, in bitsandbytes' layout.

A weight is flattened (row-major) and cut into blocks of 64. Each block keeps its absmax; each
weight becomes the index of the nearest of 16 NormalFloat values (quantiles of a normal
distribution scaled to [-1, 1], with an exact zero) to the weight scaled by the block's
reciprocal absmax. Two codes share a byte, the even-indexed weight in the high nibble
(bitsandbytes' order; the rest of intcore packs int4 the other way round).

Double quantization stores the absmaxes themselves in 8 bits: their mean is subtracted, and
the centred values are quantized blockwise (blocks of 256) to bitsandbytes' signed dynamic
8-bit map, keeping one float32 absmax per 256 blocks and the mean. At 64 weights per block this
costs 8 / 64 + 32 / (64 * 256) bits per weight instead of 32 / 64.

Both quantizers round the same way: x * (1 / absmax) in float32, compared with the float32
midpoints of neighbouring code values; a value on a midpoint takes the lower index. That is
bitsandbytes' rule (its reference PyTorch kernels; its CUDA kernels compare with the same
midpoints, though an exact tie in the 8-bit search may go up), so codes and dequantized weights
are bit-identical to ``quantize_4bit(w, blocksize=64, compress_statistics=True,
quant_type="nf4")`` and ``dequantize_4bit`` (tests/python/test_nf4.py, where bitsandbytes is
installed). bitsandbytes 0.50's native CPU kernel for the 8-bit step instead rounds through a
65,536-entry lookup table, which moves about 0.2% of the absmax codes of a BERT by one step; the
4-bit codes agree with every kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from intcore import _checks

# The 16 NormalFloat values, index 0..15 (QLoRA; as bitsandbytes stores them).
NF4_VALUES = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], dtype=torch.float32)

# Decision thresholds: the float32 midpoint of each pair of neighbouring values.
NF4_BOUNDS = (NF4_VALUES[:-1] + NF4_VALUES[1:]) / 2

BLOCK_SIZE = 64
ABSMAX_BLOCK_SIZE = 256


def dynamic_map() -> Tensor:
    """bitsandbytes' signed dynamic 8-bit map: 256 sorted float32 values in [-1, 1].

    The map is a decimal floating-point format: for each exponent e = -6 .. 0 it holds 2^(e+6)
    fractions spaced evenly in [0.1, 1] (the midpoints of the 2^(e+6) equal intervals that
    float32 torch.linspace(0.1, 1, 2^(e+6) + 1) cuts), times 10^e, with both signs; plus 0 and
    1. That is 2 * (1 + 2 + ... + 64) + 2 = 256 values; the smallest magnitude is
    0.55e-6, the largest below 1 is 0.99296875. The values are computed in float32 exactly as
    the definition's torch operations compute them, so the map is bit-identical.
    """
    values = [torch.tensor([0.0, 1.0])]
    for e in range(-6, 1):
        edges = torch.linspace(0.1, 1, 2 ** (e + 6) + 1, dtype=torch.float32)
        magnitudes = 10.0 ** e * ((edges[:-1] + edges[1:]) / 2.0)
        values += [magnitudes, -magnitudes]
    return torch.sort(torch.cat(values)).values


def _blocks(flat: Tensor, block_size: int) -> Tensor:
    """flat as [blocks, block_size], the last block padded with zeros (they never set an absmax)."""
    pad = -flat.numel() % block_size
    return nn.functional.pad(flat, (0, pad)).reshape(-1, block_size)


def _nearest_codes(flat: Tensor, bounds: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """Blockwise absmax codes of a flat float32 tensor: the index of the nearest of the sorted
    values whose float32 midpoints are ``bounds``, after multiplying by the block's reciprocal
    absmax (bitsandbytes rounds this way: x * (1 / absmax), not x / absmax; a value on a midpoint
    takes the lower index). The clamp keeps an all-zero block's reciprocal finite."""
    blocks = _blocks(flat, block_size)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38))[:, None]).reshape(-1)[: flat.numel()]
    return torch.searchsorted(bounds, scaled), absmax


def _check_weight(fn: str, name: str, w: Tensor) -> None:
    _checks.check_float(name, w)
    if not torch.isfinite(w).all():
        raise ValueError(f"{fn}: {name} holds NaN or Inf")


def quantize_nf4(w: Tensor, block_size: int = BLOCK_SIZE) -> tuple[Tensor, Tensor]:
    """NF4 codes of w (any shape, flattened row-major) and the float32 absmax of each block.

    Returns (packed uint8 [ceil(numel / 2)], absmax float32 [ceil(numel / block_size)]); the
    high nibble of byte i holds weight 2i. An all-zero block has absmax 0 and codes 7 (zero).
    """
    _check_weight("quantize_nf4", "w", w)
    if block_size < 2 or block_size % 2:
        raise ValueError(f"quantize_nf4: block_size must be an even number >= 2, got {block_size}")
    codes, absmax = _nearest_codes(w.detach().reshape(-1).float(), NF4_BOUNDS.to(w.device), block_size)
    return pack_nibbles(codes.to(torch.uint8)), absmax


def dequantize_nf4(packed: Tensor, absmax: Tensor, numel: int, block_size: int = BLOCK_SIZE) -> Tensor:
    """The float32 weights [numel] of NF4 codes and block absmaxes (value * absmax, in float32)."""
    _checks.check_int("packed", packed, (torch.uint8,))
    _checks.check_float("absmax", absmax)
    if packed.numel() * 2 < numel or absmax.numel() * block_size < numel:
        raise ValueError(f"dequantize_nf4: {packed.numel()} bytes and {absmax.numel()} absmaxes cannot hold "
                         f"{numel} weights in blocks of {block_size}")
    values = NF4_VALUES.to(packed.device)[unpack_nibbles(packed, numel).long()]
    return (_blocks(values, block_size) * absmax[:, None].float()).reshape(-1)[:numel]


def pack_nibbles(codes: Tensor) -> Tensor:
    """4-bit codes (uint8 [n], values 0..15) two a byte, the first of each pair in the high nibble."""
    codes = nn.functional.pad(codes, (0, codes.numel() % 2))
    return (codes[0::2] << 4) | codes[1::2]


def unpack_nibbles(packed: Tensor, numel: int) -> Tensor:
    """The inverse of pack_nibbles: uint8 [numel]."""
    return torch.stack((packed >> 4, packed & 0xF), dim=1).reshape(-1)[:numel]


def quantize_blockwise_8bit(x: Tensor, block_size: int = ABSMAX_BLOCK_SIZE) -> tuple[Tensor, Tensor]:
    """Blockwise 8-bit codes of a 1-D float tensor on the dynamic map: (uint8 [n], absmax [blocks]).

    Each value, times the reciprocal of its block's absmax, takes the index of the nearest map
    value: the float32 midpoints of neighbouring values decide, a value on a midpoint takes the
    lower index (the NF4 rule, on 256 values). A block of zeros has absmax 0 and codes of zero.
    """
    _checks.check_float("x", x)
    _checks.check_dim("x", x, 1)
    code = dynamic_map().to(x.device)
    codes, absmax = _nearest_codes(x.float(), (code[:-1] + code[1:]) / 2, block_size)
    return codes.to(torch.uint8), absmax


def dequantize_blockwise_8bit(codes: Tensor, absmax: Tensor, block_size: int = ABSMAX_BLOCK_SIZE) -> Tensor:
    """map[codes] * absmax of their block, float32 [n]."""
    values = dynamic_map().to(codes.device)[codes.long()]
    return (_blocks(values, block_size) * absmax[:, None]).reshape(-1)[: codes.numel()]


def double_quantize(absmax: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(8-bit codes, their float32 absmax per 256, the float32 mean) of the block absmaxes."""
    offset = absmax.mean()
    codes, scale = quantize_blockwise_8bit(absmax - offset)
    return codes, scale, offset.reshape(1)


def double_dequantize(codes: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
    return dequantize_blockwise_8bit(codes, scale) + offset


class _DequantizedLinear(torch.autograd.Function):
    """x @ W.T + bias with W rebuilt from its codes in the forward and again in the backward, so
    no float copy of a frozen weight outlives the product that needs it. Gradient for x only."""

    @staticmethod
    def forward(ctx, x: Tensor, module: "NF4Linear") -> Tensor:
        ctx.module = module
        w = module.dequantize().to(x.dtype)
        bias = None if module.bias is None else module.bias.to(x.dtype)
        return nn.functional.linear(x, w, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad @ ctx.module.dequantize().to(grad.dtype), None


class NF4Linear(nn.Module):
    """A frozen linear layer whose weight is NF4 with double quantization; the product runs in
    the input's dtype on the weight dequantized on the fly.

    The state is four buffers (``weight_codes``: packed codes; ``absmax_codes``: 8-bit block
    absmaxes; ``absmax_scale``: their float32 absmax per 256 blocks; ``absmax_offset``: their
    mean) and a frozen ``bias``, so the layer round-trips through state_dict and safetensors;
    ``NF4Linear(in_features, out_features, bias)`` makes an empty one to load into.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        n = in_features * out_features
        blocks = -(-n // BLOCK_SIZE)
        self.register_buffer("weight_codes", torch.zeros(-(-n // 2), dtype=torch.uint8, device=device))
        self.register_buffer("absmax_codes", torch.zeros(blocks, dtype=torch.uint8, device=device))
        self.register_buffer("absmax_scale", torch.zeros(-(-blocks // ABSMAX_BLOCK_SIZE), device=device))
        self.register_buffer("absmax_offset", torch.zeros(1, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "NF4Linear":
        """The NF4 form of ``linear``'s weight (and a frozen copy of its bias)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"NF4Linear.from_linear: linear must be an nn.Linear, got {type(linear).__name__}")
        _check_weight("NF4Linear.from_linear", "linear.weight", linear.weight)
        w = linear.weight.detach()
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, device=w.device)
        packed, absmax = quantize_nf4(w)
        codes, scale, offset = double_quantize(absmax)
        for name, value in (("weight_codes", packed), ("absmax_codes", codes), ("absmax_scale", scale),
                            ("absmax_offset", offset)):
            getattr(module, name).copy_(value)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach().float())
        return module

    def absmax(self) -> Tensor:
        return double_dequantize(self.absmax_codes, self.absmax_scale, self.absmax_offset)

    def dequantize(self) -> Tensor:
        """The float32 weight [out_features, in_features]."""
        n = self.in_features * self.out_features
        return dequantize_nf4(self.weight_codes, self.absmax(), n).reshape(self.out_features, self.in_features)

    def storage_bytes(self) -> int:
        """Bytes of the quantized weight: codes, absmax codes, their scales and mean (no bias)."""
        return sum(b.numel() * b.element_size() for b in (self.weight_codes, self.absmax_codes,
                                                          self.absmax_scale, self.absmax_offset))

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_float("x", x)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"NF4Linear: x has {x.shape[-1]} features (last dimension), the layer expects "
                             f"{self.in_features}")
        return _DequantizedLinear.apply(x, self)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, nf4"


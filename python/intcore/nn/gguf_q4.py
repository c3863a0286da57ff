"""A frozen linear layer holding a GGUF file's own Q4_0 / Q4_1 blocks: the base that LoRA and
QDyLoRA adapters train against when the model came from llama.cpp, so the adapters learn exactly
the weights llama.cpp serves (no second 4-bit grid; see intcore.gguf.q4_blocks for the format).

Products, by ``integer``:
- float (fp32 and bf16 recipes): y = x W^T + b with W dequantized from the blocks as gguf-py
  dequantizes them (bit for bit).
- integer (--base gguf-int): the form of ggml's reference dot products (vec_dot_q4_1_q8_1 and its
  Q4_0 twin; llama.cpp's logits differ from ours as much as from float ones: docs/llm.md). x is
  taken in llama.cpp's 8-bit activation blocks (intcore.gguf.q8_blocks: 32 values, fp16 scale e,
  Q4_1 also the block sum s = e sum x_q); with P_g = sum over block g of x_q q (Q4_0: q - 8),
      y = sum_g (d_g e_g) P_g + m_g s_g   (Q4_0: no m).
  One float64 GEMM computes it: every term (e x_q)(d q) is exact in float64 (7 + 4 bits of codes,
  11 + 11 of fp16 significands), and their float64 sum is off by at most about K 2^-53 of the
  terms' summed magnitudes, far below the single rounding of y to float32 unless the terms cancel
  almost exactly. So the result is the integer form's, without the cost of scaling every
  block's product apart (a [blocks, rows, out] tensor: 20x slower).
  The input gradient uses the dequantized weight in float (the base is frozen: no weight
  gradient), as QLoRA's backward does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from intcore import _checks
from intcore.gguf import q4_blocks
from intcore.gguf.q4_blocks import BLOCK, Q4Tensor
from intcore.gguf.q8_blocks import quantize_q8_blocks


class _BlockProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, module: "GGUFQ4Linear") -> Tensor:
        ctx.module, ctx.x_dtype = module, x.dtype
        y = module.block_product(_checks.as_rows(x).float())
        if module.bias is not None:
            y = y + module.bias
        return y.reshape(*x.shape[:-1], module.out_features).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        dx = _checks.as_rows(grad).float() @ ctx.module.dequantize()
        return dx.reshape(*grad.shape[:-1], ctx.module.in_features).to(ctx.x_dtype), None


class GGUFQ4Linear(nn.Module):
    """A frozen Q4_0/Q4_1 linear layer. State: buffers ``codes`` (uint8, the file's nibble order),
    ``scales`` and, for Q4_1, ``mins`` (float16, one per 32 weights), and a frozen ``bias``;
    ``integer`` picks the products (see the module docstring)."""

    def __init__(self, blocks: Q4Tensor, bias: Tensor | None = None, integer: bool = False):
        super().__init__()
        out_features, in_features = blocks.shape
        if in_features % BLOCK:
            raise ValueError(f"GGUFQ4Linear: in_features must be a multiple of {BLOCK}, got {in_features}")
        self.format, self.in_features, self.out_features, self.integer = blocks.format, in_features, out_features, integer
        self.register_buffer("codes", blocks.codes)
        self.register_buffer("scales", blocks.scales)
        self.register_buffer("mins", blocks.mins)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, integer: bool = False) -> "GGUFQ4Linear":
        """The base for a linear layer loaded from a GGUF file, whose blocks intcore.gguf.attach_q4_blocks
        kept beside it (``linear.gguf_blocks``)."""
        blocks = getattr(linear, "gguf_blocks", None)
        if blocks is None:
            raise ValueError("GGUFQ4Linear.from_linear: the layer holds no GGUF Q4_0/Q4_1 blocks (load the model "
                             "from a GGUF file whose linear weights are Q4_0 or Q4_1)")
        return cls(blocks, linear.bias, integer)

    def blocks(self) -> Q4Tensor:
        return Q4Tensor(self.format, self.codes, self.scales, self.mins)

    def dequantize(self) -> Tensor:
        """The float32 weight [out_features, in_features], bit for bit gguf-py's."""
        return q4_blocks.dequantize(self.blocks())

    def block_product(self, rows: Tensor) -> Tensor:
        """y (no bias) for float rows [M, in_features]: 8-bit activation blocks times the 4-bit
        blocks, every term exact in float64 (the module docstring)."""
        x = quantize_q8_blocks(rows)
        x_scaled = (x.codes.double() * x.scales.double()[..., None]).reshape(rows.shape[0], self.in_features)  # e x_q
        q = q4_blocks.unpack_codes(self.codes).double().reshape(self.out_features, -1, BLOCK)
        if self.format == "Q4_0":
            q = q - 8
        w_scaled = (q * self.scales.double()[..., None]).reshape(self.out_features, -1)          # d q
        y = x_scaled @ w_scaled.t()
        if self.mins is not None:
            y = y + x.sums.double() @ self.mins.double().t()                                      # sum_g m_g s_g
        return y.float()

    def storage_bytes(self) -> int:
        """Bytes as the GGUF file stores the weight: codes, scales and mins."""
        return sum(b.numel() * b.element_size() for b in (self.codes, self.scales, self.mins) if b is not None)

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_float("x", x)
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"GGUFQ4Linear: x must have {self.in_features} features (last dimension), "
                             f"got shape {tuple(x.shape)}")
        if self.integer:
            return _BlockProduct.apply(x, self)
        return nn.functional.linear(x, self.dequantize().to(x.dtype), None if self.bias is None else
                                    self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"{self.format} blocks, {'integer' if self.integer else 'float'} products")

"""Q-BERT's quantized layers: group-wise low-bit weights, 8-bit activations.

Two forms of each layer:
- ``GroupQuantizedLinear`` / ``GroupQuantizedEmbedding`` train (quantization-aware): they keep
  the float master weights and compute with their fake-quantized values, the gradient passed
  straight through;
- ``IntegerGroupLinear`` / ``IntegerGroupEmbedding`` serve: they hold only the packed codes and
  per-group step and offset (``freeze``), and the linear layer's product runs on the engine's
  exact int8 GEMM.

Activations: per-token (per-row) symmetric int8, x ~ s_x q_x (round to nearest). Weights:
w_jk ~ lo_g + d_g c_jk with codes c in [0, 2^k - 1] (see intcore.qbert.quantizer). With the
codes shifted to signed c' = c - 2^(k-1) (they then fit int8), the product is

    y_ij = s_i (d_j A_ij + (2^(k-1) d_j + lo_j) R_i) + b_j,   A = q_x c'^T (exact int32),
                                                              R_i = sum_k q_x,ik

so the zero-point correction comes from the activation row sums and the scales are applied
in the float epilogue. The fake-quantized float layer computes the same value up to float
rounding.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from intcore import functional
from intcore.qbert import quantizer


def _quantize_activations(x2d: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row symmetric int8 codes and scales of a 2-D float tensor."""
    return functional.quantize_absmax(x2d.detach().float(), 8, "nearest", per_row=True)


def fake_quantize_activations(x: Tensor) -> Tensor:
    """x with every row (last dimension) replaced by its int8 dequantized value; identity gradient."""
    rows = x.reshape(-1, x.shape[-1])
    q, scale = _quantize_activations(rows)
    dequantized = (q.float() * scale[:, None]).reshape(x.shape).to(x.dtype)
    return x + (dequantized - x).detach()


class GroupQuantizedLinear(nn.Linear):
    """nn.Linear trained with fake-quantized weights (``bits``, ``groups`` groups of output rows)
    and 8-bit activations. Shares the original module's parameters (``from_linear``)."""

    bits: int
    groups: int
    percentile: Optional[float]

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, groups: int,
                    percentile: Optional[float] = None) -> "GroupQuantizedLinear":
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"GroupQuantizedLinear.from_linear: linear must be an nn.Linear, got {type(linear).__name__}")
        quantizer.check_bits("GroupQuantizedLinear", bits)
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module.in_features, module.out_features = linear.in_features, linear.out_features
        module.weight, module.bias = linear.weight, linear.bias
        module.bits, module.groups, module.percentile = bits, groups, percentile
        return module

    def forward(self, x: Tensor) -> Tensor:
        w = quantizer.fake_quantize(self.weight, self.bits, self.groups, self.percentile)
        return nn.functional.linear(fake_quantize_activations(x), w, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.bits}, groups={self.groups}"


class _Float32Scales(nn.Module):
    """Frozen integer modules whose per-group ``step`` and ``lo`` stay float32 when the model is
    cast (``.half()``, ``.to(torch.bfloat16)``): rounding them would change every dequantized
    value. The cast's dtype becomes the module's ``output_dtype`` instead, carried by an empty
    buffer that every cast converts (and that no state_dict holds)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("_output_dtype", torch.empty(0), persistent=False)

    @property
    def output_dtype(self) -> torch.dtype:
        probe = self._buffers.get("_output_dtype")  # absent in modules pickled before it existed
        return torch.float32 if probe is None else probe.dtype

    def _apply(self, fn, recurse=True):
        scales = {name: self._buffers[name] for name in ("step", "lo")}
        super()._apply(fn, recurse)
        for name, before in scales.items():
            after = self._buffers[name]
            if after.dtype != before.dtype:  # a cast: the float32 values, on the new device
                self._buffers[name] = before.to(after.device)
        return self


class IntegerGroupLinear(_Float32Scales):
    """The frozen, integer form of a GroupQuantizedLinear (inference): packed codes, per-group
    float32 step and offset, float bias; the product on intcore.int8_mm."""

    def __init__(self, in_features: int, out_features: int, bits: int, group_rows: int, bias: bool = True):
        super().__init__()
        quantizer.check_bits("IntegerGroupLinear", bits)
        self.in_features, self.out_features, self.bits, self.group_rows = in_features, out_features, bits, group_rows
        groups = -(-out_features // group_rows)
        packed = quantizer.pack_codes(torch.zeros(out_features, in_features, dtype=torch.uint8), bits)
        self.register_buffer("codes", packed)
        self.register_buffer("step", torch.ones(groups))
        self.register_buffer("lo", torch.zeros(groups))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    def freeze(cls, module: GroupQuantizedLinear) -> "IntegerGroupLinear":
        codes = quantizer.quantize_groups(module.weight, module.bits, module.groups, module.percentile)
        out = cls(module.in_features, module.out_features, module.bits, codes.group_rows, module.bias is not None)
        out.codes.copy_(quantizer.pack_codes(codes.codes, module.bits))
        out.step.copy_(codes.step)
        out.lo.copy_(codes.lo)
        if module.bias is not None:
            out.bias.data.copy_(module.bias.detach().float())
        return out.to(module.weight.device, module.weight.dtype)

    def group_codes(self) -> quantizer.GroupCodes:
        codes = quantizer.unpack_codes(self.codes, self.bits, self.in_features)
        return quantizer.GroupCodes(codes, self.step, self.lo, self.bits, self.group_rows)

    def storage_bytes(self) -> int:
        return self.codes.numel() + 4 * (self.step.numel() + self.lo.numel())

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"IntegerGroupLinear: x has {x.shape[-1]} features (last dimension), the layer "
                             f"expects {self.in_features}")
        rows = x.reshape(-1, self.in_features)
        qx, sx = _quantize_activations(rows)
        g = self.group_codes()
        shift = 1 << (self.bits - 1)
        signed = (g.codes.to(torch.int16) - shift).to(torch.int8)
        acc = functional.int8_mm(qx, signed).double()
        row_sums = qx.to(torch.int64).sum(dim=1).double()
        d, lo = g.row_step().double(), g.row_lo().double()
        y = sx.double()[:, None] * (acc * d[None, :] + row_sums[:, None] * (shift * d + lo)[None, :])
        if self.bias is not None:
            y = y + self.bias.double()
        return y.to(x.dtype if x.is_floating_point() else torch.float32).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, group_rows={self.group_rows}"


class GroupQuantizedEmbedding(nn.Embedding):
    """nn.Embedding trained with a fake-quantized table (one group per row)."""

    bits: int

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, bits: int) -> "GroupQuantizedEmbedding":
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"GroupQuantizedEmbedding.from_embedding: embedding must be an nn.Embedding, "
                            f"got {type(embedding).__name__}")
        quantizer.check_bits("GroupQuantizedEmbedding", bits)
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        for name in ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
                     "scale_grad_by_freq", "sparse"):
            setattr(module, name, getattr(embedding, name))
        module.weight = embedding.weight
        module.bits = bits
        return module

    def forward(self, ids: Tensor) -> Tensor:
        # Each row is its own group, so quantizing only the rows looked up gives the same values
        # and, through the index, the same straight-through gradient as quantizing the whole
        # table: a batch touches a few thousand of BERT's 30522 rows.
        used, position = torch.unique(ids, return_inverse=True)
        rows = quantizer.fake_quantize(self.weight[used], self.bits, used.numel())
        out = nn.functional.embedding(position, rows)
        if self.padding_idx is not None:  # nn.Embedding gives its padding row no gradient
            padding_idx = self.padding_idx % self.num_embeddings
            out = torch.where((ids == padding_idx).unsqueeze(-1), out.detach(), out)
        return out


class IntegerGroupEmbedding(_Float32Scales):
    """The frozen form of a GroupQuantizedEmbedding: packed codes and a step and offset per row."""

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int, padding_idx: Optional[int] = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.bits, self.padding_idx = num_embeddings, embedding_dim, bits, padding_idx
        self.register_buffer("codes", quantizer.pack_codes(torch.zeros(num_embeddings, embedding_dim, dtype=torch.uint8), bits))
        self.register_buffer("step", torch.ones(num_embeddings))
        self.register_buffer("lo", torch.zeros(num_embeddings))

    @classmethod
    def freeze(cls, module: GroupQuantizedEmbedding) -> "IntegerGroupEmbedding":
        codes = quantizer.quantize_groups(module.weight, module.bits, module.num_embeddings)
        out = cls(module.num_embeddings, module.embedding_dim, module.bits, module.padding_idx)
        out.codes.copy_(quantizer.pack_codes(codes.codes, module.bits))
        out.step.copy_(codes.step)
        out.lo.copy_(codes.lo)
        return out.to(module.weight.device, module.weight.dtype)

    def storage_bytes(self) -> int:
        return self.codes.numel() + 4 * (self.step.numel() + self.lo.numel())

    def forward(self, ids: Tensor) -> Tensor:
        codes = quantizer.unpack_codes(self.codes[ids.reshape(-1)], self.bits, self.embedding_dim).float()
        rows = self.lo[ids.reshape(-1), None] + self.step[ids.reshape(-1), None] * codes
        return rows.reshape(*ids.shape, self.embedding_dim).to(self.output_dtype)

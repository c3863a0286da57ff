"""nn modules: integer replacements for nn.Linear / nn.LayerNorm / RMSNorm / nn.Embedding and Hugging Face's
Conv1D (float master weights, integer arithmetic), and the pieces parameter-efficient methods build from: the
bottleneck adapter and reversible couplings (intcore.nn.reversible), the frozen 4-bit bases
(NF4Linear, Int4BaseLinear) and the dynamic-rank LoRA layer (DyLoraLinear)."""

from intcore.nn.adapter import BottleneckAdapter
from intcore.nn.conv1d import FixedPointConv1D, Int4Conv1D
from intcore.nn.dylora import DyLoraLinear
from intcore.nn.fixed_point import FixedPointEmbedding, FixedPointLayerNorm, FixedPointLinear
from intcore.nn.int4_base import Int4BaseLinear
from intcore.nn.linear import Int4Linear, Int8Linear
from intcore.nn.nf4 import NF4Linear
from intcore.nn.rms_norm import FixedPointRMSNorm

__all__ = ["BottleneckAdapter", "DyLoraLinear", "FixedPointConv1D", "FixedPointEmbedding", "FixedPointLayerNorm",
           "FixedPointLinear", "FixedPointRMSNorm", "Int4BaseLinear", "Int4Conv1D", "Int4Linear", "Int8Linear", "NF4Linear"]

"""nn modules that run their arithmetic in integers and hold float master weights."""

from intcore.nn.fixed_point import FixedPointEmbedding, FixedPointLayerNorm, FixedPointLinear
from intcore.nn.linear import Int4Linear, Int8Linear

__all__ = ["FixedPointEmbedding", "FixedPointLayerNorm", "FixedPointLinear", "Int4Linear", "Int8Linear"]

"""nn modules that run their arithmetic in integers and hold float master weights."""

from intcore.nn.linear import Int4Linear, Int8Linear

__all__ = ["Int8Linear", "Int4Linear"]

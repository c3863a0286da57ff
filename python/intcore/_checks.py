"""Argument checks of the public functions: clear TypeError/ValueError naming the argument,
raised before any kernel runs."""

from __future__ import annotations

from typing import Optional

from torch import Tensor


def check_tensor(name: str, t) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def check_float(name: str, t) -> None:
    check_tensor(name, t)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")


def check_int(name: str, t, dtypes: tuple) -> None:
    check_tensor(name, t)
    if t.dtype not in dtypes:
        allowed = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{name} must be {allowed}, got {t.dtype}")


def check_dim(name: str, t: Tensor, ndim: int) -> None:
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")


def check_same_device(**tensors: Optional[Tensor]) -> None:
    present = {n: t for n, t in tensors.items() if t is not None}
    devices = {t.device for t in present.values()}
    if len(devices) > 1:
        listing = ", ".join(f"{n} on {t.device}" for n, t in present.items())
        raise ValueError(f"all tensors must be on one device, got {listing}")


def check_bits(bits, allowed: range | tuple) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in allowed:
        raise ValueError(f"bits must be one of {list(allowed)}, got {bits!r}")


def check_rounding(rounding) -> None:
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")


def as_rows(x: Tensor) -> Tensor:
    """x as a 2-D [rows, last dim] tensor (a view where possible); a 0-dim x is one row of one.

    The row count is spelled out: reshape(-1, 0) is ambiguous, and a last dimension of 0 (a
    linear layer with in_features 0) must still give [rows, 0]."""
    return x.reshape(1, 1) if x.dim() == 0 else x.reshape(x.shape[:-1].numel(), x.shape[-1])




def check_linear_args(x, weight, bias, weight_name: str = "w") -> None:
    """The arguments of a linear layer y = x @ weight.T + bias, x being [..., in_features]."""
    check_float("x", x)
    check_float(weight_name, weight)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dimension (features last), got a 0-dim tensor")
    check_dim(weight_name, weight, 2)
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x has {x.shape[-1]} features (last dimension) but {weight_name} expects {weight.shape[1]}: "
            f"x is {tuple(x.shape)}, {weight_name} is {tuple(weight.shape)} (out_features, in_features)"
        )
    if bias is not None:
        check_float("bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    check_same_device(x=x, **{weight_name: weight}, bias=bias)

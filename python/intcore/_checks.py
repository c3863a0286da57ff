"""Argument checks of the public functions: clear TypeError/ValueError naming the argument,
raised before any kernel runs, and ``@public(fn)``, which makes every TypeError/ValueError a
public function raises (its own checks', or a kernel's) name that function."""

from __future__ import annotations

import functools
import inspect
import operator
import re
from typing import Callable, Optional

import torch
from torch import Tensor


def check_tensor(name: str, t) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")


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


def check_count(name: str, value) -> int:
    """A size argument: an integer >= 0 (a Python or NumPy int, not a bool), returned as int."""
    try:
        count = operator.index(value)
    except TypeError:
        count = None
    if isinstance(value, bool) or count is None:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if count < 0:
        raise ValueError(f"{name} must be >= 0, got {count}")
    return count


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


def check_config(name: str, config, cls: type) -> None:
    """config must be an instance of cls (a FixedPointConfig, say): not None, a recipe's name or
    another kind of config."""
    if not isinstance(config, cls):
        hint = (f"; for a recipe's config use intcore.recipes.get({config!r}).linear" if isinstance(config, str)
                else "")
        raise TypeError(f"{name} must be an intcore.{cls.__name__}, got {type(config).__name__}{hint}")


# ---- raw op arguments (torch.ops.intcore.*) ---------------------------------------------------


@functools.lru_cache(maxsize=None)
def _required_tensor_args(op: str) -> tuple:
    """(position, name) of every argument of op intcore::<op> whose schema type is Tensor."""
    schema = getattr(torch.ops.intcore, op).default._schema
    return tuple((i, a.name) for i, a in enumerate(schema.arguments) if str(a.type) == "Tensor")


def check_tensor_args(op: str, args: tuple, kwargs: dict) -> None:
    """Raises TypeError naming the argument when a raw call (torch.ops.intcore.<op>) passes
    None (or anything but a tensor) where the schema says Tensor: the dispatcher lets None
    through to the kernels. Tensors must be dense, and a seed a one-element int64 tensor."""
    for position, name in _required_tensor_args(op):
        value = args[position] if position < len(args) else kwargs.get(name)
        if not isinstance(value, Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")
        if value.layout != torch.strided:
            raise TypeError(f"{op}: {name} must be a dense (strided) tensor, got layout {value.layout}")
        if name == "seed" and (value.dtype != torch.int64 or value.numel() != 1):
            raise TypeError(f"{op}: seed must be a one-element int64 tensor, got {value.dtype} of shape "
                            f"{tuple(value.shape)}")
    for value in list(args) + list(kwargs.values()):  # optional tensors
        if isinstance(value, Tensor) and value.layout != torch.strided:
            raise TypeError(f"{op}: tensors must be dense (strided), got layout {value.layout}")


def with_tensor_args_checked(op: str, kernel: Callable) -> Callable:
    """kernel, refusing non-tensors where op's schema wants tensors (check_tensor_args)."""

    @functools.wraps(kernel)
    def run(*args, **kwargs):
        check_tensor_args(op, args, kwargs)
        return kernel(*args, **kwargs)

    return run



# ---- errors named after the public function --------------------------------------------------

# Kernels prefix their messages with the op or engine function that raised ("quantize_absmax: x
# contains NaN or Inf"); the public function the user called is what the message must name.
_FUNCTION_PREFIX = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*(?: backward)?: )+")
_NON_FINITE = "contains NaN or Inf"
_FLOAT32_MAX = torch.finfo(torch.float32).max


def _non_finite(t) -> Optional[str]:
    """Why tensor t cannot be read by the kernels (which read floats as float32), or None."""
    if not isinstance(t, Tensor) or not t.is_floating_point() or t.numel() == 0 or t.device.type == "meta":
        return None
    t = t.detach()
    if not bool(torch.isfinite(t).all()):
        return "contains NaN or Inf"
    if t.dtype == torch.float64 and bool((t.abs() > _FLOAT32_MAX).any()):
        return f"holds values beyond float32's range (|v| > {_FLOAT32_MAX:.4g}), which become Inf when read"
    return None


def public_error(fn: str, error: Exception, tensors: dict, renames: Optional[dict] = None) -> Exception:
    """error (a TypeError or ValueError raised inside public function fn) as fn's own error:
    "fn: <message>", the message naming fn's arguments. A kernel's "contains NaN or Inf" names
    whichever of fn's `tensors` (public name -> value) holds them, found here, on the error path
    only; `renames` maps the argument names kernels use to fn's ("input" -> "ids")."""
    message = _FUNCTION_PREFIX.sub("", str(error), count=1)
    if _NON_FINITE in message:
        for name, t in tensors.items():
            reason = _non_finite(t)
            if reason is not None:
                message = f"{name} {reason}"
                break
        else:
            message = f"a result overflowed float32 although every input is finite ({message})"
    elif renames:
        first, _, rest = message.partition(" ")
        if first in renames:
            message = f"{renames[first]} {rest}"
    return (TypeError if isinstance(error, TypeError) else ValueError)(f"{fn}: {message}")


def public(fn: str, renames: Optional[dict] = None) -> Callable:
    """Decorates public function `fn`: every TypeError/ValueError raised while it runs, by its
    checks or by a kernel, is re-raised as public_error(fn, ...), so that the message names the
    function the user called and its argument. Costs nothing unless an error is raised."""

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def call(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except (TypeError, ValueError) as e:
                try:
                    bound = signature.bind(*args, **kwargs).arguments
                except TypeError:
                    bound = {}
                tensors = {k: v for k, v in bound.items() if isinstance(v, Tensor)}
                raise public_error(fn, e, tensors, renames) from None

        return call

    return decorate


class errors_named:
    """``with errors_named(fn, grad=grad):`` the block's TypeError/ValueError as fn's (see
    public_error): for code that is not a public function's body, such as a backward pass."""

    def __init__(self, fn: str, renames: Optional[dict] = None, **tensors):
        self.fn, self.renames, self.tensors = fn, renames, tensors

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, (TypeError, ValueError)):
            raise public_error(self.fn, error, self.tensors, self.renames) from None
        return False

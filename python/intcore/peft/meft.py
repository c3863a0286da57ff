"""MEFT: memory-efficient fine-tuning by making a pretrained encoder reversible (Liao, Tan and
Monz, NeurIPS 2023), for Hugging Face BERT-style encoders (``model.<base>.encoder.layer``).

Every encoder layer becomes a reversible coupling of two streams (intcore.nn.reversible):
y1 = lam x1 + F(x2), y2 = beta x2 + G(y1). The embedding output enters both streams; the
encoder's output is the stream that carries the last pretrained layer's output (or, as in the
paper, the mean of the two). Three ways to split a pretrained layer into F and G:

    meft1   F = the layer with a parallel adapter, G = an adapter; lam 0.1, beta 1, swapped
    meft2   F = an adapter, G = the layer with a parallel adapter; lam 1, beta 0.1, swapped
    meft3   F = the attention block, G = the feed-forward block, each with a parallel adapter;
            lam = beta = 0.1, not swapped
    adapter the plain model with the parallel feed-forward adapters, no coupling (the
            parameter-efficient baseline MEFT is compared with)

The lam/beta pairs keep each stream close to a pretrained hidden state at the start (a small
scale on the stream the layer overwrites, 1 on the one it carries), so the pretrained
computation is approximately preserved; see docs/meft.md for how far.

Only the adapters (parameters named ``adapter_*``) and the classification head train. The lowest
``rev_layers`` layers run through the reversible backward (their activations are rebuilt,
not kept); the layers above keep theirs. With ``integer=True`` the reversible streams are
int64 fixed point and lam, beta powers of two, so the rebuild is exact at any depth, and any
intcore recipe can run the frozen backbone (its ops replay their rounding seeds).

    cfg = intcore.peft.MeftConfig(variant="meft1")
    model = intcore.peft.wrap_meft(model, cfg)
    intcore.peft.print_trainable_parameters(model)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from intcore.nn.adapter import BottleneckAdapter
from intcore.nn.reversible import Coupling, coupled_stack, fixed_point_bits, power_of_two_exponent, \
    reconstruction_errors, reversible_stack
from intcore.peft import adapters

PREFIX = "adapter_"
# Fixed-point stream mantissas keep 11 bits for the integer part (hidden values below 2048 in
# magnitude) below the 2^62 bound the stream arithmetic enforces.
_MAX_FRACTION_BITS = 50


@dataclass(frozen=True)
class _Variant:
    f: str
    g: str
    lam: float
    beta: float
    swap: bool
    integer_lam: float
    integer_beta: float
    adapters: tuple[str, ...]
    last_stream: int  # the stream holding the last pretrained layer's output (readout "last")
    summary: str


_VARIANTS = {
    "meft1": _Variant("layer", "adapter", 0.1, 1.0, True, 0.125, 1.0, ("adapter_ffn", "adapter_rev"), 1,
                      "F = layer with a parallel adapter, G = adapter"),
    "meft2": _Variant("adapter", "layer", 1.0, 0.1, True, 1.0, 0.125, ("adapter_ffn", "adapter_rev"), 0,
                      "F = adapter, G = layer with a parallel adapter"),
    "meft3": _Variant("attention", "feed_forward", 0.1, 0.1, False, 0.125, 0.125, ("adapter_attn", "adapter_ffn"), 1,
                      "F = attention block, G = feed-forward block, each with a parallel adapter"),
    "adapter": _Variant("", "", 1.0, 1.0, False, 1.0, 1.0, ("adapter_ffn",), 0,
                        "parallel feed-forward adapters, no coupling"),
}
READOUTS = ("mean", "last")


@dataclass(frozen=True)
class MeftConfig:
    variant: str = field(default="meft1", metadata={"help": "meft1, meft2, meft3 or adapter (no coupling)"})
    lam: Optional[float] = field(default=None, metadata={
        "help": "scale of x1 in y1 = lam x1 + F(x2); default per variant: 0.1, 1, 0.1 (paper), or the powers of "
                "two 1/8, 1, 1/8 with integer streams"})
    beta: Optional[float] = field(default=None, metadata={
        "help": "scale of x2 in y2 = beta x2 + G(y1); default per variant: 1, 0.1, 0.1 (paper), or 1, 1/8, 1/8 "
                "with integer streams"})
    rev_layers: Optional[int] = field(default=None, metadata={
        "help": "how many of the lowest layers run the reversible backward (None: all; 0: the coupled "
                "architecture with ordinary backprop)"})
    bottleneck: int = field(default=8, metadata={"help": "adapter width: d -> bottleneck -> d"})
    init_std: float = field(default=0.02, metadata={"help": "std of the adapters' normal weight init (biases 0)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout inside the adapters"})
    integer: bool = field(default=False, metadata={
        "help": "reversible streams as int64 fixed point: the backward rebuilds them bit for bit; lam and beta "
                "must be powers of two"})
    frac_bits: int = field(default=20, metadata={
        "help": "integer streams: fractional bits of the grid the embedding output enters on (each scaling by "
                "2^-k adds k)"})
    readout: str = field(default="last", metadata={
        "help": "encoder output: last, the stream holding the last pretrained layer's output (closer to the "
                "pretrained output at the start), or mean, the mean of the two streams (paper)"})
    train: tuple[str, ...] = field(default=("classifier", "pooler"), metadata={
        "help": "names of modules that train besides the adapters (the classification head: BERT's pooler "
                "and classifier)"})

    def __post_init__(self):
        if self.variant not in _VARIANTS:
            raise ValueError(f"MeftConfig.variant must be one of {', '.join(_VARIANTS)}, got {self.variant!r}")
        spec = _VARIANTS[self.variant]
        defaults = (spec.integer_lam, spec.integer_beta) if self.integer else (spec.lam, spec.beta)
        for name, default in zip(("lam", "beta"), defaults):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"MeftConfig.{name} must be a positive finite number, got {value!r}")
            elif self.integer:
                power_of_two_exponent(value, f"MeftConfig.{name} (integer streams)")
        if self.variant == "adapter" and (self.integer or self.rev_layers):
            raise ValueError("MeftConfig: variant 'adapter' has no coupling; integer and rev_layers do not apply")
        if self.rev_layers is not None and (isinstance(self.rev_layers, bool) or not isinstance(self.rev_layers, int)
                                            or self.rev_layers < 0):
            raise ValueError(f"MeftConfig.rev_layers must be None or an int >= 0, got {self.rev_layers!r}")
        if isinstance(self.bottleneck, bool) or not isinstance(self.bottleneck, int) or self.bottleneck < 1:
            raise ValueError(f"MeftConfig.bottleneck must be an int >= 1, got {self.bottleneck!r}")
        for name in ("init_std", "dropout"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), (int, float)):
                raise TypeError(f"MeftConfig.{name} must be a number, got {getattr(self, name)!r}")
        if not (math.isfinite(self.init_std) and self.init_std >= 0):
            raise ValueError(f"MeftConfig.init_std must be a finite number >= 0, got {self.init_std!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"MeftConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, int) \
                or not 0 <= self.frac_bits <= _MAX_FRACTION_BITS:
            raise ValueError(f"MeftConfig.frac_bits must be an int in 0..{_MAX_FRACTION_BITS}, got {self.frac_bits!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"MeftConfig.readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        train = (self.train,) if isinstance(self.train, str) else tuple(self.train)
        if not all(isinstance(t, str) for t in train):
            raise ValueError(f"MeftConfig.train must be module names (strings), got {self.train!r}")
        object.__setattr__(self, "train", train)

    def describe(self) -> str:
        spec = _VARIANTS[self.variant]
        if self.variant == "adapter":
            return f"adapter ({spec.summary}; bottleneck {self.bottleneck})"
        layers = "all layers" if self.rev_layers is None else f"lowest {self.rev_layers} layers"
        streams = f"int64 fixed-point streams from 2^-{self.frac_bits}" if self.integer else "float streams"
        return (f"{self.variant} ({spec.summary}; lambda {self.lam:g}, beta {self.beta:g}"
                f"{', swapped' if spec.swap else ''}; {layers} reversible; {streams}; readout {self.readout}; "
                f"bottleneck {self.bottleneck})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "MeftConfig":
        return cls(**values)


# ---- the blocks of a BERT-style layer ----------------------------------------------------------

def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def _attention(layer: nn.Module, x: torch.Tensor, mask, adapter: Optional[nn.Module] = None) -> torch.Tensor:
    """The attention block, LN(x + attention(x)), with ``adapter(x)`` added before the norm."""
    if adapter is None:
        return _first(layer.attention(x, mask))
    out = layer.attention.output
    context = _first(layer.attention.self(x, attention_mask=mask))
    return out.LayerNorm(out.dropout(out.dense(context)) + adapter(x) + x)


def _feed_forward(layer: nn.Module, a: torch.Tensor, adapter: Optional[nn.Module] = None) -> torch.Tensor:
    """The feed-forward block, LN(a + W2 act(W1 a)), with ``adapter(a)`` added before the norm."""
    out = layer.output
    h = out.dropout(out.dense(layer.intermediate(a)))
    if adapter is not None:
        h = h + adapter(a)
    return out.LayerNorm(h + a)


def _whole_layer(layer: nn.Module, x: torch.Tensor, mask) -> torch.Tensor:
    return _feed_forward(layer, _attention(layer, x, mask), layer.adapter_ffn)


def _functions(variant: str, layer: nn.Module):
    """(F, G) of one layer, each called as fn(x, mask)."""
    if variant == "meft1":
        # The top layer has no G when the readout ignores the stream G writes (see wrap_meft).
        g = (lambda y, mask: layer.adapter_rev(y)) if hasattr(layer, "adapter_rev") else (
            lambda y, mask: torch.zeros_like(y))
        return (lambda x, mask: _whole_layer(layer, x, mask)), g
    if variant == "meft2":
        return (lambda x, mask: layer.adapter_rev(x)), (lambda y, mask: _whole_layer(layer, y, mask))
    return ((lambda x, mask: _attention(layer, x, mask, layer.adapter_attn)),
            (lambda y, mask: _feed_forward(layer, y, layer.adapter_ffn)))


# ---- the encoder ------------------------------------------------------------------------------

class MeftEncoder(nn.Module):
    """Replaces a BERT-style encoder; keeps its ``layer`` list (parameter names unchanged)."""

    def __init__(self, layer: nn.ModuleList, config: MeftConfig):
        super().__init__()
        self.layer = layer
        self.meft_config = config
        self._audit: Optional[ReconstructionAudit] = None

    def _couplings(self, layers) -> list[Coupling]:
        cfg = self.meft_config
        spec = _VARIANTS[cfg.variant]
        couplings = []
        for layer in layers:
            f, g = _functions(cfg.variant, layer)
            params = tuple(p for p in layer.parameters() if p.requires_grad)
            couplings.append(Coupling(f, g, cfg.lam, cfg.beta, spec.swap, params))
        return couplings

    def forward(self, hidden_states: torch.Tensor, attention_mask=None, encoder_hidden_states=None, **kwargs):
        from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

        if encoder_hidden_states is not None:
            raise ValueError("MeftEncoder: cross-attention (encoder_hidden_states) is not supported")
        # The reversible stack keeps no per-layer activations (that is its point), so it has none
        # to return: refused rather than answered with an empty tuple.
        for name in ("output_hidden_states", "output_attentions"):
            if kwargs.get(name):
                raise ValueError(f"MeftEncoder: {name}=True is not supported (the reversible layers keep no "
                                 f"per-layer outputs)")
        cfg = self.meft_config
        if cfg.variant == "adapter":
            out = hidden_states
            for layer in self.layer:
                out = _whole_layer(layer, out, attention_mask)
        else:
            n_rev = len(self.layer) if cfg.rev_layers is None else cfg.rev_layers
            fixed_point = cfg.frac_bits if cfg.integer else None
            x1 = x2 = hidden_states
            if n_rev:
                bottom = self._couplings(self.layer[:n_rev])
                if self._audit is not None:
                    self._audit.add(reconstruction_errors(bottom, x1, x2, (attention_mask,), fixed_point))
                x1, x2 = reversible_stack(bottom, x1, x2, (attention_mask,), fixed_point)
            if n_rev < len(self.layer):
                x1, x2 = coupled_stack(self._couplings(self.layer[n_rev:]), x1, x2, (attention_mask,))
            out = (x1 + x2) / 2 if cfg.readout == "mean" else (x1, x2)[_VARIANTS[cfg.variant].last_stream]
        if kwargs.get("return_dict") is False:
            return (out,)
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=out)


class ReconstructionAudit:
    """Per-layer worst reconstruction error of the reversible layers over the batches seen."""

    def __init__(self):
        self.layers: list[dict] = []
        self.batches = 0

    def add(self, errors: list[dict]) -> None:
        self.batches += 1
        if not self.layers:
            self.layers = [dict(e) for e in errors]
            return
        for worst, e in zip(self.layers, errors):
            for key in ("max_abs_error", "max_rel_error", "rms_rel_error"):
                worst[key] = max(worst[key], e[key])
            worst["exact"] = worst["exact"] and e["exact"]


@contextlib.contextmanager
def audit_reconstruction(model: nn.Module):
    """Inside the block, every forward of the wrapped ``model`` also rebuilds its reversible
    layers' inputs from their output the way the backward does, and records the error:

        with audit_reconstruction(model) as audit:
            model(**batch)
        audit.layers   # per layer, bottom first: worst max_abs_error, max_rel_error, rms_rel_error, exact
    """
    encoder = meft_encoder(model)
    audit = ReconstructionAudit()
    encoder._audit = audit
    try:
        yield audit
    finally:
        encoder._audit = None


# ---- wrapping ---------------------------------------------------------------------------------

_LAYER_PARTS = ("attention", "intermediate", "output")
_BLOCK_PARTS = ("dense", "dropout", "LayerNorm")


def _find_encoder(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(the module holding ``encoder``, the encoder) of a BERT-style model."""
    found = []
    for _, module in model.named_modules():
        encoder = getattr(module, "encoder", None)
        layers = getattr(encoder, "layer", None)
        if isinstance(encoder, nn.Module) and isinstance(layers, nn.ModuleList) and len(layers) and all(
                all(isinstance(getattr(layer, part, None), nn.Module) for part in _LAYER_PARTS) for layer in layers):
            found.append((module, encoder))
    if len(found) != 1:
        raise ValueError(f"wrap_meft: cannot find the encoder layers of {type(model).__name__} (expected "
                         f"model.<base>.encoder.layer: a list of layers with attention, intermediate and output)")
    return found[0]


def _check_layer(model: nn.Module, layer: nn.Module, index: int, variant: str) -> None:
    required = [f"output.{p}" for p in _BLOCK_PARTS]
    if variant == "meft3":
        required += ["attention.self"] + [f"attention.output.{p}" for p in _BLOCK_PARTS]
    for path in required:
        module = layer
        for part in path.split("."):
            module = getattr(module, part, None)
        if not isinstance(module, nn.Module):
            raise ValueError(f"wrap_meft: layer {index} of {type(model).__name__} has no {path} module "
                             f"(MEFT needs BERT-style blocks: {', '.join(required)})")


def meft_encoder(model: nn.Module) -> MeftEncoder:
    """The MeftEncoder of a model wrapped by wrap_meft."""
    for module in model.modules():
        if isinstance(module, MeftEncoder):
            return module
    raise ValueError(f"{type(model).__name__} is not wrapped by wrap_meft")


def wrap_meft(model: nn.Module, config: Optional[MeftConfig] = None) -> nn.Module:
    """Turns a pretrained BERT-style model into its MEFT form, in place: adapters added to every
    encoder layer, the encoder replaced by a MeftEncoder over the same layers, and only the
    adapters and ``config.train`` modules left trainable. Returns the model."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"wrap_meft: model must be an nn.Module, got {type(model).__name__}")
    config = MeftConfig() if config is None else config
    if not isinstance(config, MeftConfig):
        raise TypeError(f"wrap_meft: config must be a MeftConfig, got {type(config).__name__}")
    # Names the user gave must each name a module (a typo would freeze the head without a word);
    # the default takes whichever of BERT's head modules the model has.
    if config.train != MeftConfig.__dataclass_fields__["train"].default:
        adapters.check_module_names("wrap_meft", model, config.train, "train")
    if any(isinstance(m, MeftEncoder) for m in model.modules()):
        raise ValueError(f"wrap_meft: {type(model).__name__} is already wrapped")
    holder, encoder = _find_encoder(model)
    layers = encoder.layer
    if config.rev_layers is not None and config.rev_layers > len(layers):
        raise ValueError(f"wrap_meft: rev_layers {config.rev_layers} exceeds the {len(layers)} layers of "
                         f"{type(model).__name__}")
    spec = _VARIANTS[config.variant]
    if config.integer:
        n_rev = len(layers) if config.rev_layers is None else config.rev_layers
        bits = fixed_point_bits(n_rev, config.lam, config.beta, spec.swap, config.frac_bits)
        if bits > _MAX_FRACTION_BITS:
            raise ValueError(f"wrap_meft: {n_rev} reversible {config.variant} layers refine the fixed-point grid to "
                             f"2^-{bits}, finer than int64 mantissas hold (2^-{_MAX_FRACTION_BITS}); lower "
                             f"MeftConfig.frac_bits ({config.frac_bits}) or rev_layers")
    for i, layer in enumerate(layers):
        _check_layer(model, layer, i, config.variant)
        dense = layer.output.dense
        hidden, weight = dense.out_features, dense.weight
        for name in spec.adapters:
            if name == "adapter_rev" and config.variant == "meft1" and config.readout == "last" \
                    and i == len(layers) - 1:
                continue  # its output would only reach the stream the readout drops: it could never learn
            layer.add_module(name, BottleneckAdapter(hidden, config.bottleneck, config.dropout, config.init_std,
                                                     device=weight.device, dtype=weight.dtype))
    holder.encoder = MeftEncoder(layers, config)
    adapters.mark_only_adapters_trainable(model, PREFIX, also=config.train)
    return model


def save_meft_adapters(model: nn.Module, path: Union[str, Path]) -> Path:
    """Writes the adapters and trained modules of a wrapped model, with its MeftConfig."""
    config = meft_encoder(model).meft_config
    return adapters.save_adapters(model, path, PREFIX, config.to_dict(), also=config.train)


def load_meft_adapters(model: nn.Module, path: Union[str, Path]) -> nn.Module:
    """Wraps the pretrained ``model`` with the config stored in ``path`` and loads the adapters."""
    config = MeftConfig.from_dict(adapters.read_adapter_config(path, "load_meft_adapters", PREFIX))
    return adapters.load_adapters(wrap_meft(model, config), path)

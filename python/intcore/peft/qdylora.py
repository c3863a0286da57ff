"""QDyLoRA: dynamic-rank LoRA on a frozen 4-bit base (Rajabzadeh et al., EMNLP 2024 Industry;
DyLoRA, Valipour et al., EACL 2023; QLoRA, Dettmers et al., NeurIPS 2023).

    cfg = QDyLoraConfig(r_max=8, alpha=16, target_modules=("query", "value"), base="nf4")
    model = wrap_qdylora(model, cfg)     # every nn.Linear but the head becomes a frozen 4-bit base;
                                         # the targets get DyLoRA factors; only lora_* and the head train
    ... train ...                        # each step draws one rank b in 1..r_max for all layers
    set_rank(model, 3)                   # evaluate at rank 3, no retraining
    save_qdylora(model, "adapters.safetensors")   # all ranks in one file
    plain = merge_and_unload(model, rank=3)       # float nn.Linear layers: base + (alpha/3) B[:, :3] A[:3]

Rank draws: training forward t (counted in the ``qdylora_step`` buffer, so checkpoints resume
the sequence) uses rank b = draw_rank(seed, t // accumulation_steps, r_max), a function of the
seed and the optimizer step only: micro-steps of one accumulated step, and every DDP rank, draw
the same b without talking to each other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from intcore.backends.portable.philox import random_words
from intcore.convert import is_transformers_conv1d
from intcore.nn.conv1d import FixedPointConv1D, Int4Conv1D
from intcore.nn.dylora import MODES, DyLoraLinear
from intcore.nn.gguf_q4 import GGUFQ4Linear
from intcore.nn.int4_base import Int4BaseLinear
from intcore.nn.nf4 import NF4Linear
from intcore.peft import adapters

PREFIX = "lora_"
BASES = ("nf4", "int4", "gguf", "gguf-int", "fp32")
# Every linear layer of a Llama-family decoder block (Llama, Qwen, Mistral, Gemma, SmolLM).
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Every linear layer of a BERT block: "output.dense" matches the attention output projection
# (attention.output.dense) and the feed-forward output (output.dense).
BERT_LINEARS = ("query", "key", "value", "output.dense", "intermediate.dense")
_STEP_BUFFER = "qdylora_step"
_QUANTIZED = (NF4Linear, Int4BaseLinear, GGUFQ4Linear)


@dataclass(frozen=True)
class QDyLoraConfig:
    r_max: int = field(default=8, metadata={"help": "largest rank; a training step uses a rank drawn from 1..r_max"})
    alpha: float = field(default=16.0, metadata={"help": "the update at rank b is (alpha / b) B[:, :b] A[:b]"})
    target_modules: tuple = field(default=BERT_LINEARS, metadata={
        "help": "linear layers that get LoRA factors: module names or their dotted endings"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch's input"})
    base: str = field(default="nf4", metadata={
        "help": "frozen base weights: nf4 (QLoRA NF4, double quantization), int4 (int4 codes, integer GEMMs), "
                "gguf (the GGUF file's own Q4_0/Q4_1 blocks, float products), gguf-int (the same blocks, "
                "8-bit activation blocks and exact per-block integer products), fp32 (unquantized)"})
    mode: str = field(default="frozen", metadata={
        "help": "frozen: only rank b learns in a step at rank b (DyLoRA); all: ranks 1..b learn; "
                "fixed: plain LoRA at rank r_max"})
    group_size: int = field(default=64, metadata={"help": "weights per scale along in_features of the int4 base"})
    seed: int = field(default=0, metadata={"help": "seed of the per-step rank draws"})
    accumulation_steps: int = field(default=1, metadata={
        "help": "training forwards per optimizer step (gradient accumulation); they share one rank"})
    modules_to_save: tuple = field(default=("classifier",), metadata={
        "help": "modules that stay float and train in full (the new task head)"})
    skip_modules: tuple = field(default=(), metadata={
        "help": "linear layers left as they are, float and frozen (a causal LM's output head, tied to its "
                "embedding)"})

    def __post_init__(self):
        for name in ("target_modules", "modules_to_save", "skip_modules"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"QDyLoraConfig: {name} must be a tuple of module names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for name in ("modules_to_save", "skip_modules"):
            dotted = [m for m in getattr(self, name) if "." in m]
            if dotted:
                raise ValueError(f"QDyLoraConfig: {name} names single modules (e.g. 'classifier'), got {dotted}")
        if not self.target_modules:
            raise ValueError("QDyLoraConfig: target_modules is empty; name at least one linear layer")
        for name in ("r_max", "group_size", "accumulation_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"QDyLoraConfig: {name} must be a positive int, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise ValueError(f"QDyLoraConfig: seed must be an int in [0, 2**64), got {self.seed!r}")
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or not 0 < self.alpha < math.inf:
            raise ValueError(f"QDyLoraConfig: alpha must be a positive finite number, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"QDyLoraConfig: dropout must be in [0, 1), got {self.dropout!r}")
        if self.base not in BASES:
            raise ValueError(f"QDyLoraConfig: base must be one of {', '.join(BASES)}, got {self.base!r}")
        if self.mode not in MODES:
            raise ValueError(f"QDyLoraConfig: mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def describe(self) -> str:
        ranks = f"LoRA rank {self.r_max}" if self.mode == "fixed" else f"DyLoRA ranks 1..{self.r_max} ({self.mode})"
        return (f"{ranks}, alpha {self.alpha:g}, dropout {self.dropout:g} on {', '.join(self.target_modules)}; "
                f"{self.base} base" + (f" (groups of {self.group_size})" if self.base == "int4" else ""))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "QDyLoraConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"QDyLoraConfig.from_dict: unknown fields {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def draw_rank(seed: int, step: int, r_max: int) -> int:
    """The rank of optimizer step ``step``: uniform on 1..r_max, from word 0 of intcore's Philox
    stream (seed, step). The same on every process; independent of anything drawn before."""
    word = int(random_words(seed, step, 0, 1, "cpu")[0])
    return 1 + (word * r_max >> 32)


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or name.endswith("." + pattern)


def _base_layer(linear: nn.Linear, config: QDyLoraConfig) -> nn.Module:
    if config.base == "nf4":
        return NF4Linear.from_linear(linear)
    if config.base == "int4":
        return Int4BaseLinear.from_linear(linear, config.group_size)
    if config.base in ("gguf", "gguf-int"):
        return GGUFQ4Linear.from_linear(linear, integer=config.base == "gguf-int")
    return linear


def _dylora_layers(model: nn.Module) -> list[DyLoraLinear]:
    return [m for m in model.modules() if isinstance(m, DyLoraLinear)]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _draw_training_rank(model: nn.Module, args) -> None:
    """Forward pre-hook of a wrapped model: in training, the rank of this step for every layer."""
    if not model.training:
        return
    config: QDyLoraConfig = model.qdylora_config
    step = getattr(model, _STEP_BUFFER)
    b = config.r_max if config.mode == "fixed" else draw_rank(config.seed, int(step) // config.accumulation_steps,
                                                             config.r_max)
    for layer in _dylora_layers(model):
        layer.training_rank = b
    step += 1


def wrap_qdylora(model: nn.Module, config: QDyLoraConfig) -> nn.Module:
    """Turns ``model`` (in place) into a QDyLoRA model and returns it.

    Every nn.Linear outside ``config.modules_to_save`` becomes a frozen base in ``config.base``
    format; those named by ``config.target_modules`` are wrapped in DyLoraLinear. Everything but
    the LoRA factors and ``modules_to_save`` is frozen.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"wrap_qdylora: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, QDyLoraConfig):
        raise TypeError(f"wrap_qdylora: config must be a QDyLoraConfig, got {type(config).__name__}")
    if hasattr(model, "qdylora_config"):
        raise ValueError("wrap_qdylora: the model is wrapped already")
    adapters.check_module_names("wrap_qdylora", model, config.modules_to_save, "modules_to_save")
    adapters.check_module_names("wrap_qdylora", model, config.skip_modules, "skip_modules")
    for name, module in model.named_modules():
        if is_transformers_conv1d(module) or isinstance(module, (FixedPointConv1D, Int4Conv1D)):
            raise ValueError(f"wrap_qdylora: {name} is a transformers Conv1D (GPT-2's linear layer, weight stored "
                             f"[in, out]), which QDyLoRA does not adapt")
    # A module to save covers its children, as the adapter files' name matching does.
    kept = config.modules_to_save + config.skip_modules
    linears = [(n, m) for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and not any(s in n.split(".") for s in kept)]
    if config.base in ("gguf", "gguf-int"):
        missing = [n for n, m in linears if getattr(m, "gguf_blocks", None) is None]
        if missing:
            raise ValueError(f"wrap_qdylora: base {config.base} uses a GGUF file's Q4_0/Q4_1 blocks, and "
                             f"{missing[0]} has none ({len(missing)} such layers): load the model from a GGUF file "
                             f"whose linear weights are Q4_0 or Q4_1, or choose base nf4 or int4")
    for pattern in config.target_modules:
        if not any(_matches(n, pattern) for n, _ in linears):
            examples = ", ".join(sorted({n.rpartition(".")[2] for n, _ in linears})[:6])
            raise ValueError(f"wrap_qdylora: target module {pattern!r} matches no nn.Linear of the model "
                             f"(its linear layers end with: {examples})")
    for name, linear in linears:
        base = _base_layer(linear, config)
        if any(_matches(name, p) for p in config.target_modules):
            base = DyLoraLinear(base, config.r_max, config.alpha, config.dropout, config.mode, dtype=linear.weight.dtype)
        _set_module(model, name, base)
    model.qdylora_config = config
    model.register_buffer(_STEP_BUFFER, torch.zeros((), dtype=torch.int64))
    model.qdylora_hook = model.register_forward_pre_hook(_draw_training_rank)
    adapters.mark_only_adapters_trainable(model, PREFIX, also=config.modules_to_save)
    return model


def _config_of(fn: str, model: nn.Module) -> QDyLoraConfig:
    config = getattr(model, "qdylora_config", None)
    if config is None:
        raise ValueError(f"{fn}: the model is not a QDyLoRA model (wrap it with wrap_qdylora first)")
    return config


def _check_rank(fn: str, rank, config: QDyLoraConfig) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= config.r_max:
        raise ValueError(f"{fn}: rank must be an int in 1..{config.r_max} (r_max), got {rank!r}")
    return rank


def set_rank(model: nn.Module, rank: int) -> nn.Module:
    """Makes every QDyLoRA layer evaluate at ``rank`` (1..r_max); training keeps drawing ranks."""
    config = _config_of("set_rank", model)
    _check_rank("set_rank", rank, config)
    for layer in _dylora_layers(model):
        layer.rank = rank
    return model


def merge_and_unload(model: nn.Module, rank: Optional[int] = None) -> nn.Module:
    """Replaces every QDyLoRA layer by a float nn.Linear holding base + (alpha / b) B[:, :b] A[:b]
    (b = ``rank``, default the rank set by set_rank) and every 4-bit base by its dequantized
    nn.Linear, in the dtype of the LoRA factors (the adapted layer's) and frozen like the rest of
    the base; removes the rank draws. Returns the plain model (in place)."""
    config = _config_of("merge_and_unload", model)
    if rank is not None:
        _check_rank("merge_and_unload", rank, config)
    wrapped = {id(layer.base_layer) for layer in _dylora_layers(model)}
    for name, module in list(model.named_modules()):
        if isinstance(module, DyLoraLinear):
            delta = module.delta_weight(rank or module.rank)
            weight = _float_weight(module.base_layer).to(delta.dtype) + delta
            _set_module(model, name, _plain_linear(module.base_layer, weight))
        elif isinstance(module, _QUANTIZED) and id(module) not in wrapped:
            _set_module(model, name, _plain_linear(module, module.dequantize().to(_model_dtype(model))))
    model.qdylora_hook.remove()
    del model.qdylora_hook, model.qdylora_config
    delattr(model, _STEP_BUFFER)
    return model


def _float_weight(base: nn.Module) -> torch.Tensor:
    return base.dequantize() if isinstance(base, _QUANTIZED) else base.weight.detach().float()


def _model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's float parameters (its embeddings' and layer norms'), for layers
    that no longer hold one of their own."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())


def _plain_linear(base: nn.Module, weight: torch.Tensor) -> nn.Linear:
    """An nn.Linear holding weight (in its dtype) and base's bias, frozen like the base it replaces."""
    linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, device=weight.device,
                       dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if base.bias is not None:
            linear.bias.copy_(base.bias)
    linear.requires_grad_(False)
    return linear


def base_storage(model: nn.Module) -> dict:
    """Bytes of the frozen base weights as stored (codes and scales; 4 per weight when
    unquantized) next to the fp32 weights they replace: every linear layer outside
    modules_to_save."""
    config = _config_of("base_storage", model)
    stored = fp32 = 0
    for name, module in model.named_modules():
        if any(saved in name.split(".") for saved in config.modules_to_save + config.skip_modules):
            continue
        if isinstance(module, _QUANTIZED):
            stored += module.storage_bytes()
        elif isinstance(module, nn.Linear):
            stored += 4 * module.weight.numel()
        else:
            continue
        fp32 += 4 * module.in_features * module.out_features
    return {"bytes": stored, "fp32_bytes": fp32, "ratio": stored / fp32}


def save_qdylora(model: nn.Module, path: Union[str, Path]) -> Path:
    """Writes the LoRA factors (all ranks) and the ``modules_to_save`` weights to a safetensors
    file with the config as metadata."""
    config = _config_of("save_qdylora", model)
    return adapters.save_adapters(model, path, PREFIX, config.to_dict(), also=config.modules_to_save)


def load_qdylora(model: nn.Module, path: Union[str, Path]) -> nn.Module:
    """Loads a file written by save_qdylora. A float model is wrapped first with the file's config
    (its base is quantized the same way again); a wrapped model must have been wrapped alike."""
    config = QDyLoraConfig.from_dict(adapters.read_adapter_config(path, "load_qdylora", PREFIX))
    if not hasattr(model, "qdylora_config"):
        wrap_qdylora(model, config)
    elif model.qdylora_config != config:
        raise ValueError(f"load_qdylora: {path} was saved with {config.describe()}, the model is "
                         f"{model.qdylora_config.describe()}")
    return adapters.load_adapters(model, path)

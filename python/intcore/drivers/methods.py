"""Fine-tuning methods of `intcore finetune --method`: how the loaded float model becomes the
model that trains, and what a method adds to the results.

    full      every weight trains; the recipe converts the model (the default)
    adapter   parallel bottleneck adapters and the head (pooler, classifier) train (intcore.peft.meft)
    meft1/2/3 MEFT: the encoder made reversible, adapters and the head train; float streams
              with fp32, exactly reversible int64 fixed-point streams with every other recipe
    qdylora   dynamic-rank LoRA (ranks 1..--rank-max from one run) on a frozen 4-bit base (--base)
    lora      LoRA at one --rank on the same base (intcore.peft.qdylora; drivers/lora_method.py)

Parameter-efficient methods (intcore.peft) add their entries to METHODS below.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from intcore.drivers import lora_method, recipe_setup
from intcore.drivers.errors import DriverError


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    # (float model, recipe, parsed args) -> the model to train (trainable parameters set)
    prepare: Callable[[nn.Module, str, argparse.Namespace], nn.Module]
    # (trained model, evaluate, args) -> extra results for results.json (e.g. accuracy at every
    # rank); evaluate(model=None) gives the test metrics of the given model (default: the
    # trained one, as it is now)
    extra_results: Optional[Callable[[nn.Module, Callable[[], dict], argparse.Namespace], dict]] = None
    # (results of this method's runs by run name) -> text printed after the summary table
    report: Optional[Callable[[dict], str]] = None


def _full(model: nn.Module, recipe: str, args: argparse.Namespace) -> nn.Module:
    return recipe_setup.apply(model, recipe, skip="classifier")


def _meft(variant: str) -> Callable[[nn.Module, str, argparse.Namespace], nn.Module]:
    def prepare(model: nn.Module, recipe: str, args: argparse.Namespace) -> nn.Module:
        from intcore.peft import meft

        coupled = variant != "adapter"
        try:
            # Integer and bf16 backbones need exact streams: the float rebuild would feed F and G
            # inputs a rounding step away from the forward's, and their quantizers amplify that.
            config = meft.MeftConfig(variant=variant, rev_layers=args.rev_layers if coupled else None,
                                     integer=coupled and recipe != "fp32")
            model = meft.wrap_meft(model, config)
        except ValueError as e:
            raise DriverError(str(e)) from None
        return recipe_setup.apply(model, recipe, skip="classifier")

    return prepare


def _meft_results(model: nn.Module, evaluate: Callable[[], dict], args: argparse.Namespace) -> dict:
    from intcore.peft import adapters, meft

    with meft.audit_reconstruction(model) as audit:
        evaluate()  # the test set once more, rebuilding the reversible layers' inputs as the backward does
    trainable, total = adapters.trainable_parameters(model)
    return {"meft": {"config": meft.meft_encoder(model).meft_config.describe(), "trainable_parameters": trainable,
                     "total_parameters": total, "reconstruction": audit.layers}}


def _meft_report(results: dict) -> str:
    lines = []
    for run, r in results.items():
        m = r.get("meft")
        if m is None:
            continue
        line = f"{run}: {m['trainable_parameters']:,} of {m['total_parameters']:,} parameters train"
        layers = m["reconstruction"]
        if layers and all(layer["exact"] for layer in layers):
            line += f"; every input of the {len(layers)} reversible layers rebuilt bit for bit on the test set"
        elif layers:
            line += ("; rebuild error per reversible layer on the test set, bottom first, worst batch "
                     "(||rebuilt - x|| / ||x||, in brackets max |rebuilt - x| / max |x|): "
                     + " ".join(f"{layer['rms_rel_error']:.1e} ({layer['max_rel_error']:.1e})" for layer in layers))
        lines.append(line)
    return "\n".join(lines)


METHODS: dict[str, Method] = {
    "full": Method("full", "fine-tune every weight (the recipe converts the whole model)", _full),
    "adapter": Method("adapter", "parallel bottleneck adapters (d -> 8 -> d) and the head (pooler, classifier) train",
                      _meft("adapter"), _meft_results, _meft_report),
    "meft1": Method("meft1", "MEFT, reversible layers: F = layer + adapter, G = adapter", _meft("meft1"),
                    _meft_results, _meft_report),
    "meft2": Method("meft2", "MEFT, reversible layers: F = adapter, G = layer + adapter", _meft("meft2"),
                    _meft_results, _meft_report),
    "meft3": Method("meft3", "MEFT, reversible layers: F = attention + adapter, G = feed-forward + adapter",
                    _meft("meft3"), _meft_results, _meft_report),
    "qdylora": Method("qdylora", "dynamic-rank LoRA on a frozen 4-bit base: one run, a model at every rank "
                      "1..--rank-max", lora_method.prepare("qdylora"), lora_method.rank_results, lora_method.report_runs),
    "lora": Method("lora", "LoRA at one --rank on a frozen 4-bit base (--base)", lora_method.prepare("lora"),
                   lora_method.lora_results, lora_method.report_runs),
}

# Options of the methods, added to `intcore finetune`'s parser: (flags, argparse keywords).
ARGUMENTS: list[tuple[tuple[str, ...], dict]] = [
    (("--rev-layers",), {"type": int, "metavar": "N",
                         "help": "meft1/2/3: the lowest N encoder layers run the reversible backward (default "
                                 "all; 0: the coupled layers with ordinary backprop)"}),
    *lora_method.ARGUMENTS,
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="full",
                        help="; ".join(f"{m.name}: {m.help}" for m in METHODS.values()) + " (default full)")
    for flags, kwargs in ARGUMENTS:
        parser.add_argument(*flags, **kwargs)


def get(name: str) -> Method:
    if name not in METHODS:
        raise DriverError(f"unknown --method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def run_name(args: argparse.Namespace, recipe: str) -> str:
    """The name a run has in results.json, the curves and checkpoints/: the recipe, after the
    method where it is not full fine-tuning (qdylora-all in QDyLoRA's --rank-mode all)."""
    if args.method == "full":
        return recipe
    method = "qdylora-all" if args.method == "qdylora" and args.rank_mode == "all" else args.method
    return f"{method}-{recipe}"

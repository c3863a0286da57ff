"""`intcore finetune --method qdylora` and `--method lora`: LoRA factors on a frozen 4-bit base
(intcore.peft.qdylora), registered in drivers/methods.py.

    qdylora   DyLoRA ranks 1..--rank-max from one run; after training the test set is scored at
              every rank, the table printed, the curve drawn (<output>/<run>-ranks.png)
    lora      plain LoRA at --rank on the same base: the fixed-rank comparison

Every nn.Linear but the classifier becomes the --base format (nf4, int4 or fp32); the recipe
converts what the base does not replace (embeddings and layer norms, frozen), as it converts the
whole model in full fine-tuning. The adapters (all ranks and the classifier, in one safetensors
file) go to <output>/adapters/<run>.safetensors.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch.distributed as dist
from torch import nn

from intcore.drivers import recipe_setup, report
from intcore.drivers.errors import DriverError
from intcore.peft import qdylora

ARGUMENTS: list[tuple[tuple[str, ...], dict]] = [
    (("--rank-max",), {"type": int, "default": 8, "metavar": "R",
                       "help": "qdylora: the largest rank; one run gives a model at every rank 1..R (default 8)"}),
    (("--rank-mode",), {"choices": ("frozen", "all"), "default": "frozen",
                        "help": "qdylora: which ranks learn in a step at rank b: frozen, only rank b (DyLoRA's "
                                "default), or all, ranks 1..b (runs named qdylora-all-<recipe>; default frozen)"}),
    (("--rank",), {"type": int, "default": 8, "help": "lora: the LoRA rank (default 8)"}),
    (("--base",), {"choices": qdylora.BASES, "default": "nf4",
                   "help": "qdylora/lora: the frozen base weights: nf4 (QLoRA's NF4, double quantization), "
                           "int4 (int4 codes, products on integer GEMMs), fp32 (default nf4)"}),
    (("--lora-alpha",), {"type": float, "default": 16.0,
                         "help": "qdylora/lora: the update at rank b is (alpha / b) B A (default 16)"}),
    (("--target-modules",), {"default": ",".join(qdylora.BERT_LINEARS),
                             "help": "qdylora/lora: comma-separated linear layers that get LoRA factors, by name "
                                     "or dotted ending (default every linear layer of a BERT block: "
                                     f"{','.join(qdylora.BERT_LINEARS)})"}),
]


def _run_name(args: argparse.Namespace, recipe: str) -> str:
    from intcore.drivers import methods  # here: methods.py imports this module

    return methods.run_name(args, recipe)


def prepare(method: str) -> Callable[[nn.Module, str, argparse.Namespace], nn.Module]:
    """The prepare step of --method qdylora or lora."""

    def prepare_model(model: nn.Module, recipe: str, args: argparse.Namespace) -> nn.Module:
        mode = "fixed" if method == "lora" else args.rank_mode
        flag, rank = ("--rank", args.rank) if method == "lora" else ("--rank-max", args.rank_max)
        if rank < 1:
            raise DriverError(f"{flag} must be at least 1, got {rank}")
        if not args.lora_alpha > 0:
            raise DriverError(f"--lora-alpha must be positive, got {args.lora_alpha}")
        targets = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
        if not targets:
            raise DriverError("--target-modules is empty; name at least one linear layer (e.g. query,value)")
        recipe_setup.check_linear_layers(model, "QDyLoRA")
        try:
            config = qdylora.QDyLoraConfig(r_max=rank, alpha=args.lora_alpha, target_modules=targets,
                                           base=args.base, mode=mode, seed=args.seed)
            qdylora.wrap_qdylora(model, config)
        except ValueError as e:
            raise DriverError(str(e)) from None
        # extra_results names its files after the run; runs of several recipes come one at a time.
        args.lora_run = _run_name(args, recipe)
        return recipe_setup.apply(model, recipe, skip="classifier")

    return prepare_model


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _common_results(model: nn.Module, args: argparse.Namespace) -> dict:
    config = model.qdylora_config
    adapters = Path(args.output) / "adapters" / f"{args.lora_run}.safetensors"
    if _is_main():
        qdylora.save_qdylora(model, adapters)
    return {"config": config.to_dict(), "description": config.describe(), "base_storage": qdylora.base_storage(model),
            "adapters": str(adapters)}


def rank_results(model: nn.Module, evaluate: Callable[..., dict], args: argparse.Namespace) -> dict:
    """--method qdylora: test accuracy, F1 and loss at every rank 1..r_max, and the plot."""
    config = model.qdylora_config
    ranks = []
    for b in range(1, config.r_max + 1):
        qdylora.set_rank(model, b)
        m = evaluate()
        ranks.append({"rank": b, "test_accuracy": m["accuracy"], "test_f1": m["f1"], "test_loss": m["loss"]})
    qdylora.set_rank(model, config.r_max)
    plot = Path(args.output) / f"{args.lora_run}-ranks.png"
    if _is_main():
        report.plot_curves(plot, {args.lora_run: ranks}, [("rank", "test_accuracy", "test accuracy"),
                                                          ("rank", "test_f1", "test F1")],
                           f"{args.lora_run} ({config.base} base): one training run evaluated at every rank")
    return {"qdylora": {**_common_results(model, args), "ranks": ranks, "plot": str(plot)}}


def lora_results(model: nn.Module, evaluate: Callable[..., dict], args: argparse.Namespace) -> dict:
    return {"lora": _common_results(model, args)}


def _storage_line(storage: dict, base: str) -> str:
    mb = 1e6
    return (f"base weights: {storage['bytes'] / mb:.2f} MB as {base} ({'codes and scales' if base != 'fp32' else 'float'}) "
            f"= {storage['ratio']:.3f}x their {storage['fp32_bytes'] / mb:.2f} MB in fp32")


def report_runs(results: dict) -> str:
    """The rank table of each qdylora run (or the base line of each lora run)."""
    blocks = []
    for run, r in results.items():
        info = r.get("qdylora") or r.get("lora")
        if info is None:
            continue
        lines = [f"{run}: {info['description']}"]
        if "ranks" in info:
            rows = [[row["rank"], row["test_accuracy"], row["test_f1"]] for row in info["ranks"]]
            lines.append(report.table(["rank", "test acc", "F1"], rows))
            best = max(info["ranks"], key=lambda row: row["test_accuracy"])
            lines.append(f"best rank {best['rank']}: test accuracy {best['test_accuracy']:.4f}; plot {info['plot']}")
        lines.append(_storage_line(info["base_storage"], info["config"]["base"]))
        lines.append(f"adapters: {info['adapters']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

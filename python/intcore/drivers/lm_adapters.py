"""`intcore finetune-lm --method lora|qdylora`: LoRA factors on a frozen 4-bit base of a causal LM
(intcore.peft.qdylora), and what a run gives back.

    qdylora   DyLoRA ranks 1..--rank-max from one run; after training the held-out set is scored
              at every rank (loss, perplexity; sentiment: accuracy), the table printed and the
              curve drawn (<output>/<run>-ranks.png)
    lora      plain LoRA at --rank on the same base: the fixed-rank comparison

--base gguf (the default for a .gguf model whose linear weights are Q4_0/Q4_1) keeps the file's own
blocks as the base, with float products; gguf-int the same blocks with activations in llama.cpp's
8-bit blocks and exact per-block integer products; nf4 and int4 re-quantize the float weights. The
output head (tied to the embedding) stays float and frozen; the recipe converts the embedding and
the norms, frozen too. A run writes its adapters (every rank) to
<output>/adapters/<run>.safetensors, the merged float model at its best rank to models/<run>/, and,
for a GGUF model, the adapter at that rank as a GGUF LoRA file for llama.cpp:
<output>/adapters/<run>-rank<b>.gguf.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn

from intcore.drivers import distributed, methods, recipe_setup, report
from intcore.drivers.errors import DriverError
from intcore.peft import qdylora

METHODS = ("full", "lora", "qdylora")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=METHODS, default="full",
                   help="full: every weight trains in the recipe; lora: LoRA at --rank on a frozen 4-bit --base; "
                        "qdylora: dynamic-rank LoRA, a model at every rank 1..--rank-max from one run")
    p.add_argument("--rank-max", type=int, default=8, help="qdylora: the largest rank")
    p.add_argument("--rank-mode", choices=("frozen", "all"), default=None,
                   help="qdylora: which ranks learn in a step drawn at rank b: frozen, only rank b (the paper's "
                        "default), or all, ranks 1..b (every step trains the low ranks; run named qdylora-all-...; "
                        "the mode that met the accuracy targets in docs/llm.md and docs/qdylora.md)")
    p.add_argument("--rank", type=int, default=8, help="lora: the LoRA rank")
    p.add_argument("--base", choices=qdylora.BASES,
                   help="lora/qdylora: the frozen base: gguf (the file's own Q4_0/Q4_1 blocks; the default for such "
                        "a .gguf model), gguf-int (the same blocks, integer products), nf4 (the default otherwise), "
                        "int4, fp32")
    p.add_argument("--lora-alpha", type=float, default=16.0, help="lora/qdylora: the update at rank b is (alpha / b) B A")
    p.add_argument("--target-modules", default=",".join(qdylora.LLAMA_LINEARS),
                   help="lora/qdylora: comma-separated linear layers that get LoRA factors")


def check_arguments(args: argparse.Namespace) -> None:
    if args.rank_mode is not None and args.method != "qdylora":
        raise DriverError(f"--rank-mode applies to --method qdylora, not {args.method}")
    if args.method == "full":
        return
    rank, flag = (args.rank, "--rank") if args.method == "lora" else (args.rank_max, "--rank-max")
    if rank < 1:
        raise DriverError(f"{flag} must be at least 1, got {rank}")
    if not args.lora_alpha > 0:
        raise DriverError(f"--lora-alpha must be positive, got {args.lora_alpha}")
    if not [t for t in args.target_modules.split(",") if t.strip()]:
        raise DriverError("--target-modules is empty; name at least one linear layer (e.g. q_proj,v_proj)")
    if args.fsdp:
        raise DriverError("--fsdp shards full fine-tuning; LoRA trains a few factors over a frozen base, which "
                          "DistributedDataParallel replicates cheaply (leave --fsdp out)")


def rank_mode(args: argparse.Namespace) -> str:
    """The QDyLoraConfig mode of the run: fixed for lora, --rank-mode (default frozen) for qdylora."""
    return "fixed" if args.method == "lora" else args.rank_mode or "frozen"


def run_name(args: argparse.Namespace, recipe: str) -> str:
    """As intcore finetune names its runs (drivers/methods.py), with the base before the recipe."""
    return methods.run_name(args, recipe if args.method == "full" else f"{args.base}-{recipe}")


def prepare(model: nn.Module, recipe: str, args: argparse.Namespace, head: str) -> nn.Module:
    """The float model wrapped with LoRA factors on the frozen --base, the rest in the recipe."""
    targets = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
    try:
        config = qdylora.QDyLoraConfig(
            r_max=args.rank if args.method == "lora" else args.rank_max, alpha=args.lora_alpha,
            target_modules=targets, base=args.base, mode=rank_mode(args),
            seed=args.seed, modules_to_save=(), skip_modules=(head,), dropout=0.05)
        qdylora.wrap_qdylora(model, config)
    except ValueError as e:
        raise DriverError(str(e)) from None
    return recipe_setup.apply(model, recipe, skip=head)


def trainable_summary(model: nn.Module) -> dict:
    from intcore.peft import adapters

    trainable, total = adapters.trainable_parameters(distributed.unwrap(model))
    storage = qdylora.base_storage(distributed.unwrap(model))
    return {"trainable_parameters": trainable, "total_parameters": total, "base_storage": storage}


def storage_line(run: str, summary: dict, base: str) -> str:
    s = summary["base_storage"]
    return (f"{run}: {summary['trainable_parameters']:,} of {summary['total_parameters']:,} parameters train; base "
            f"weights {s['bytes'] / 1e6:.2f} MB as stored ({base}: codes, scales{', mins' if base.startswith('gguf') else ''}) "
            f"= {s['ratio']:.3f}x their {s['fp32_bytes'] / 1e6:.2f} MB in fp32")


def print_runs(runs: dict, sentiment: bool) -> None:
    """What each LoRA/QDyLoRA run of a finished command gave: its rank table, base and files."""
    for name, r in runs.items():
        if "adapters" not in r:
            continue
        a = r["adapters"]
        if len(a["ranks"]) > 1:
            print("\n" + rank_table(name, a["ranks"], sentiment))
            print(f"best rank by validation loss: {a['best_rank']}; plot {a['plot']}")
        print(storage_line(name, a, a["config"]["base"]))
        print(f"adapters: {a['file']}" + (f"; for llama.cpp: {a['gguf']}" if "gguf" in a else ""))


def rank_table(run: str, ranks: list[dict], sentiment: bool) -> str:
    headers = ["rank", "val loss", "val ppl"] + (["test acc"] if sentiment else [])
    rows = [[r["rank"], r["val_loss"], r["val_perplexity"]] + ([r["test_accuracy"]] if sentiment else []) for r in ranks]
    return f"{run}: every rank of one run\n" + report.table(headers, rows)


def plot_ranks(path: Path, run: str, ranks: list[dict], sentiment: bool, base: str) -> None:
    panels = [("rank", "val_perplexity", "validation perplexity")]
    if sentiment:
        panels.append(("rank", "test_accuracy", "test accuracy"))
    report.plot_curves(path, {run: ranks}, panels, f"{run} ({base} base): one training run evaluated at every rank")

"""`intcore train-lm`: train a GPT-style language model from scratch with integer recipes.

    intcore train-lm                                  # Shakespeare, characters, int16
    intcore train-lm --recipes fp32,int16,int8
    torchrun --nproc_per_node=2 -m intcore.train_lm

Reports train/validation loss (nats per token), perplexity and tokens per second, against
the unigram baseline; writes results.json, curves.csv, curves.png and checkpoints/ (resumable
with --resume) to --output. The output head stays float; every other linear, layer norm and
embedding follows the recipe.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Optional, Sequence

import torch

import intcore
from intcore.drivers import distributed, help_text, lm_data, memory, outputs, recipe_setup, run_arguments, session
from intcore.drivers.checkpoint_triggers import CheckpointTriggers
from intcore.drivers.errors import DriverError, run_cli
from intcore.drivers.gpt import GPT, GPTConfig
from intcore.drivers.outputs import OutputDir
from intcore.drivers.progress import Progress

DEFAULT_RECIPE = "int16"
PLOT_PANELS = [("step", "train_loss", "train loss (nats/token)"), ("step", "val_loss", "validation loss (nats/token)")]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="intcore train-lm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="shakespeare", help="shakespeare (default), a .txt file or a directory of them")
    p.add_argument("--tokens", choices=["char", "byte"], default="char")
    run_arguments.add_recipes(p, DEFAULT_RECIPE)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=100, help="steps between validation passes")
    p.add_argument("--eval-batches", type=int, default=20, help="batches per validation pass")
    run_arguments.add_session(p, "train-lm", 1, "newest checkpoints kept per recipe (model and AdamW state: 12 bytes "
                                                "per parameter); the newest is what --resume and using the trained "
                                                "model need")
    help_text.show_defaults(p)
    args = p.parse_args(argv)
    run_arguments.check(args, ("layers", "width", "heads", "context", "steps", "batch_size", "eval_every",
                               "eval_batches", "keep_checkpoints"))
    if args.width % args.heads:
        raise DriverError(f"--width ({args.width}) must be a multiple of --heads ({args.heads})")
    outputs.resolve_resume(args, "train-lm")
    return args


@torch.no_grad()
def evaluate(model, corpus, args, recipe: str, device, world) -> float:
    model.eval()
    total = 0.0
    for b in range(world.rank, args.eval_batches, world.size):
        x, y = lm_data.windows(corpus.validation, args.batch_size, args.context, seed=10**9 + b)
        with recipe_setup.forward_context(recipe, device):
            _, loss = distributed.unwrap(model)(x.to(device), y.to(device))
        total += loss.item()
    model.train()
    return distributed.sum_across(world, [total], device)[0] / args.eval_batches


def train_recipe(args, recipe: str, corpus, world, device, output: OutputDir) -> dict:
    torch.manual_seed(args.seed)  # the same initial weights on every rank and for every recipe
    config = GPTConfig(corpus.vocab_size, args.context, args.layers, args.width, args.heads, args.dropout)
    model = recipe_setup.apply(GPT(config).to(device), recipe, skip="head")
    torch.manual_seed(args.seed + 1 + world.rank)
    model = distributed.wrap(model, world, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, args.steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
        (s + 1) / warmup, 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))))
    ckpt_dir = output.checkpoints(recipe)
    state, step = session.resume(ckpt_dir, args.resume, model, optimizer, scheduler, world, device, recipe,
                                 args.steps)
    state = state or {"history": [], "train_seconds": 0.0, "tokens": 0}
    memory.reset_peak(device)
    progress = Progress(world, not args.no_progress, args.steps, step, recipe)
    model.train()
    with CheckpointTriggers(world, device, args.checkpoint_every, args.checkpoint_minutes, recipe) as triggers:
        while step < args.steps:
            # Windows depend only on (seed, rank, step), so a resumed run sees the same data.
            x, y = lm_data.windows(corpus.train, args.batch_size, args.context,
                                   seed=(args.seed * 1_000_003 + world.rank) * 10_000_019 + step)
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with recipe_setup.forward_context(recipe, device):
                _, loss = model(x.to(device), y.to(device))
            loss.backward()
            optimizer.step()
            scheduler.step()
            state["train_seconds"] += time.perf_counter() - start
            state["tokens"] += x.numel() * world.size
            step += 1
            row = {"step": step, "train_loss": loss.item()}
            progress.step(loss=f"{row['train_loss']:.3f}")
            with progress.paused():
                if step % args.eval_every == 0 or step == args.steps:
                    row["val_loss"] = evaluate(model, corpus, args, recipe, device, world)
                    row["val_perplexity"] = math.exp(row["val_loss"])
                    progress.show(val=f"{row['val_loss']:.3f}")
                state["history"].append(row)
                save, stop = triggers.after_step(step, step == args.steps)
                if save:
                    session.save(ckpt_dir, step, model, optimizer, scheduler, state, world, device,
                                 keep=args.keep_checkpoints)
                    triggers.saved()
            if stop:
                raise KeyboardInterrupt  # saved above; run_cli says how to continue
    progress.close()
    final_val = next(r["val_loss"] for r in reversed(state["history"]) if "val_loss" in r)
    train_tail = [r["train_loss"] for r in state["history"][-max(1, args.eval_every // 2):]]
    return {
        "recipe": recipe,
        "description": recipe if recipe in recipe_setup.FLOAT_RECIPES else intcore.recipes.get(recipe).describe(),
        "val_loss": final_val,
        "val_perplexity": math.exp(final_val),
        "train_loss": sum(train_tail) / len(train_tail),
        "tokens_per_second": state["tokens"] / max(state["train_seconds"], 1e-9),
        "train_seconds": state["train_seconds"],
        "peak_memory_mb": memory.peak_mb(device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": state["history"],
        "complete": True,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    with session.command_world(args) as (world, device):
        output = session.open_output(args.output, args.resume, world)
        if world.is_main and args.corpus == "shakespeare":
            lm_data.load(args.corpus, args.tokens)  # download once, before the other ranks look
        distributed.barrier(world)
        corpus = lm_data.load(args.corpus, args.tokens)
        results = session.start_results(output, args, "train-lm", world, device)
        results["corpus"] = {"source": args.corpus, "tokens": args.tokens, "vocab_size": corpus.vocab_size,
                             "train_tokens": len(corpus.train), "validation_tokens": len(corpus.validation),
                             "unigram_val_loss": corpus.unigram_loss()}
        if world.is_main:
            print(f"intcore train-lm: {args.corpus} ({len(corpus.train):,} train / {len(corpus.validation):,} "
                  f"validation {args.tokens} tokens, vocabulary {corpus.vocab_size}); unigram baseline "
                  f"{corpus.unigram_loss():.3f} nats; recipes {', '.join(args.recipes)}; output {output.path}")
        session.run_recipes(args.recipes, results, output, world,
                            lambda recipe: train_recipe(args, recipe, corpus, world, device, output),
                            PLOT_PANELS, "intcore train-lm")
        if world.is_main:
            rows = [[name, r["val_loss"], r["val_perplexity"], r["train_loss"], r["tokens_per_second"],
                     r["peak_memory_mb"]] for name, r in results["recipes"].items() if name in args.recipes]
            rows.append(["unigram", corpus.unigram_loss(), math.exp(corpus.unigram_loss()), "", "", ""])
            session.print_summary(output, ["recipe", "val loss", "val ppl", "train loss", "tokens/s", "peak MB"], rows)
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli("train-lm", main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())

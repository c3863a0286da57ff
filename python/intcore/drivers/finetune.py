"""`intcore finetune`: fine-tune a sequence classifier (BERT, RoBERTa, ELECTRA, DistilBERT, GPT-2)
with integer recipes and compare them.

    intcore finetune                                  # MiniLM-L6 on Rotten Tomatoes, int8
    intcore finetune --recipes fp32,int16,int8        # several recipes, one table
    intcore finetune --method <name>                  # a parameter-efficient method (see --help)
    intcore finetune --method meft1 --memory-report   # what one training step holds; no training
    torchrun --nproc_per_node=2 -m intcore.finetune   # DistributedDataParallel

Writes to --output: results.json, curves.csv, curves.png, models/<run>/ (the fine-tuned model as a
Hugging Face directory, for `intcore evaluate` and `intcore predict`) and, while a run trains,
checkpoints/<run>/ (resumable with --resume; --keep-checkpoints keeps them after), and prints
run, test accuracy, F1, step time and peak memory at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

import intcore
from intcore import assets
from intcore.drivers import (checkpoint, classification_data, distributed, export, help_text, memory, methods,
                             outputs, recipe_setup, report, run_arguments, session)
from intcore.drivers.checkpoint_triggers import CheckpointTriggers
from intcore.drivers.errors import DriverError, run_cli
from intcore.drivers.outputs import OutputDir
from intcore.drivers.progress import Progress

# int8 (an exponent per row): fp32's accuracy, and the fastest integer recipe on every CPU kernel
# set (1.30x fp32's training time under AVX2, about fp32's under AVX-512; int16 1.84x and 1.2-1.3x).
DEFAULT_RECIPE = "int8"
PLOT_PANELS = [("epoch", "train_loss", "train loss"), ("epoch", "val_accuracy", "validation accuracy")]


def add_training_arguments(p: argparse.ArgumentParser, command: str) -> None:
    """The model, data and schedule options of the classifier fine-tuning commands (finetune,
    qbert), and the options of every training command."""
    p.add_argument("--model", help="a local Hugging Face model directory (default: the pinned all-MiniLM-L6-v2)")
    p.add_argument("--data", default="rotten_tomatoes",
                   help="rotten_tomatoes (default), a CSV/TSV/JSONL/JSON file, or glue/<task>")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-length", type=int, default=64, help="tokens per example (longer ones are truncated)")
    p.add_argument("--max-examples", type=int, help="use only this many examples (before splitting)")
    p.add_argument("--evals-per-epoch", type=int, default=4, help="validation passes per epoch")
    run_arguments.add_session(
        p, command, 0, "checkpoints (model and AdamW state, 12 bytes per parameter: 260 MiB for MiniLM-L6) kept per "
                       "run once it completes: the newest N; with 0 a run keeps only its exported model "
                       "(models/<run>/), or its newest checkpoint where it exports none; while a run trains, its "
                       "newest checkpoint is kept for --resume")


def check_training_args(args: argparse.Namespace, command: str) -> None:
    run_arguments.check(args, ("epochs", "batch_size", "max_length", "evals_per_epoch"))
    outputs.resolve_resume(args, command)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="intcore finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(p, "finetune")
    run_arguments.add_recipes(p, DEFAULT_RECIPE)
    p.add_argument("--memory-report", action="store_true",
                   help="instead of training, measure one training step per recipe on a batch padded to "
                        "--max-length: bytes saved for backward (activations, parameters), gradients, optimizer state")
    methods.add_arguments(p)
    help_text.show_defaults(p)
    args = p.parse_args(argv)
    methods.get(args.method)
    check_training_args(args, "finetune")
    return args


@contextlib.contextmanager
def model_directory_errors(path: Path):
    """Hugging Face's errors on reading a model directory, as one line naming --model."""
    try:
        yield
    except (OSError, ValueError) as e:
        raise DriverError(f"--model {path} is not a Hugging Face model directory ({str(e).splitlines()[0]})") from None


def _load_model(path: Path, num_labels: int, device: torch.device):
    import transformers

    transformers.logging.set_verbosity_error()  # the classifier head is new by design
    transformers.utils.logging.disable_progress_bar()
    with model_directory_errors(path):
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    return model.to(device)


@torch.no_grad()
def evaluate(model, batches, recipe: str, device: torch.device, world, num_labels: int) -> dict:
    """Loss, accuracy and F1 on batches, in eval mode: a function of the model and the batches
    (every recipe rounds to nearest there and draws no random numbers, so training takes the
    same steps however often it is validated, and `intcore evaluate` reproduces the figures)."""
    model.eval()
    loss_sum, counts = 0.0, torch.zeros(num_labels, num_labels, dtype=torch.float64)  # [true, predicted]
    for batch in batches[world.rank::world.size]:
        batch = batch.to(device)
        with recipe_setup.forward_context(recipe, device):
            logits = distributed.unwrap(model)(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        loss_sum += torch.nn.functional.cross_entropy(logits.float(), batch.labels, reduction="sum").item()
        pred = logits.argmax(-1).cpu()
        counts.index_put_((batch.labels.cpu(), pred), torch.ones(len(pred), dtype=torch.float64), accumulate=True)
    totals = distributed.sum_across(world, [loss_sum] + counts.flatten().tolist(), device)
    loss_sum, counts = totals[0], torch.tensor(totals[1:]).view(num_labels, num_labels)
    n = counts.sum().item()
    model.train()
    return {"loss": loss_sum / n, "accuracy": counts.diag().sum().item() / n, "f1": _f1(counts)}


def _f1(counts: torch.Tensor) -> float:
    """Binary F1 of class 1 for two classes, macro F1 otherwise."""
    tp = counts.diag()
    precision = tp / counts.sum(0).clamp(min=1)
    recall = tp / counts.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return f1[1].item() if len(f1) == 2 else f1.mean().item()


def evaluation_due(step: int, per_epoch: int, evals_per_epoch: int) -> bool:
    """Whether validation runs after `step`: evals_per_epoch times per epoch, evenly spaced,
    the last at the epoch's end (each pass lands where step * evals / per_epoch crosses an
    integer, so a ragged epoch never validates twice in a row at its end)."""
    position = (step - 1) % per_epoch + 1
    return position * evals_per_epoch // per_epoch != (position - 1) * evals_per_epoch // per_epoch


def train_recipe(args, recipe: str, model_path: Path, data, world, device, output: OutputDir, run: str,
                 method: Optional[methods.Method] = None) -> dict:
    """Trains one run named `run`: the model at model_path prepared by `method` (default:
    --method) and the recipe, with the schedule of args; returns its results."""
    torch.manual_seed(args.seed + world.rank)
    num_labels = len(data.label_names)
    method = method or methods.get(args.method)
    model = method.prepare(_load_model(model_path, num_labels, device), recipe, args)
    model = distributed.wrap(model, world, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * classification_data.steps_per_epoch(len(data.train_ids), args.batch_size, world.size)
    warmup = max(1, int(0.06 * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    pad_id = data.pad_id
    val_batches = classification_data.evaluation_batches(data.validation_ids, args.batch_size * 2, pad_id)
    ckpt_dir = output.checkpoints(run)
    state, step = session.resume(ckpt_dir, args.resume, model, optimizer, scheduler, world, device, run, steps)
    state = state or {"history": [], "train_seconds": 0.0, "step_seconds": []}
    memory.reset_peak(device)
    per_epoch = max(1, steps // args.epochs)
    progress = Progress(world, not args.no_progress, steps, step, run)
    model.train()
    with CheckpointTriggers(world, device, args.checkpoint_every, args.checkpoint_minutes, run) as triggers:
        while step < steps:
            epoch, offset = divmod(step, per_epoch)
            batches = classification_data.training_batches(data.train_ids, args.batch_size, args.seed + epoch, pad_id)
            usable = len(batches) - len(batches) % world.size
            mine = batches[world.rank:usable:world.size][:per_epoch]
            for batch in mine[offset:]:
                start = time.perf_counter()
                batch = batch.to(device)
                optimizer.zero_grad(set_to_none=True)
                with recipe_setup.forward_context(recipe, device):
                    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels)
                out.loss.backward()
                optimizer.step()
                scheduler.step()
                elapsed = time.perf_counter() - start
                state["train_seconds"] += elapsed
                state["step_seconds"].append(elapsed)
                step += 1
                row = {"step": step, "epoch": step / per_epoch, "train_loss": out.loss.item()}
                progress.step(loss=f"{row['train_loss']:.3f}")
                with progress.paused():
                    if evaluation_due(step, per_epoch, args.evals_per_epoch):
                        val = evaluate(model, val_batches, recipe, device, world, num_labels)
                        row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                        progress.show(val_acc=f"{val['accuracy']:.3f}")
                    state["history"].append(row)
                    save, stop = triggers.after_step(step, step % per_epoch == 0 or step == steps)
                    if save:
                        session.save(ckpt_dir, step, model, optimizer, scheduler, state, world, device,
                                     keep=max(1, args.keep_checkpoints))
                        triggers.saved()
                if stop:
                    raise KeyboardInterrupt  # saved above; run_cli says how to continue
                if step >= steps:
                    break
    progress.close()
    test_batches = classification_data.evaluation_batches(data.test_ids, args.batch_size * 2, pad_id)
    test = evaluate(model, test_batches, recipe, device, world, num_labels)
    exported = _keep_model(args, run, recipe, method, model, model_path, data, world, output)
    seconds = sorted(state["step_seconds"])
    extra = {}
    if method.extra_results:
        extra = method.extra_results(
            distributed.unwrap(model),
            lambda other=None: evaluate(model if other is None else other, test_batches, recipe, device, world, num_labels), args)
    return {
        "recipe": recipe,
        "method": method.name,
        "description": recipe if recipe in recipe_setup.FLOAT_RECIPES else intcore.recipes.get(recipe).describe(),
        "test_accuracy": test["accuracy"],
        "test_f1": test["f1"],
        "test_loss": test["loss"],
        "final_val_accuracy": next((r["val_accuracy"] for r in reversed(state["history"]) if "val_accuracy" in r), None),
        "median_step_seconds": seconds[len(seconds) // 2] if seconds else None,
        "train_seconds": state["train_seconds"],
        "peak_memory_mb": memory.peak_mb(device),
        "steps": steps,
        "model": exported,
        "history": state["history"],
        **extra,
        "complete": True,
    }


def _print_kept(output: OutputDir, runs: list[str]) -> None:
    """Where the trained models are, and what the checkpoints left behind weigh."""
    if any(output.model(run).is_dir() for run in runs):
        print(f"models:  {output.path / 'models'} (Hugging Face directories; intcore evaluate / intcore predict "
              f"run them in their recipes' arithmetic)")
    kept = [f for run in runs for f in output.checkpoints(run).rglob("*") if f.is_file()]
    if kept:
        mb = sum(f.stat().st_size for f in kept) / 2**20
        print(f"checkpoints: {output.path / 'checkpoints'} ({mb:.0f} MB; --keep-checkpoints sets how many stay)")


def _keep_model(args, run: str, recipe: str, method: methods.Method, model, model_path: Path, data, world,
                output: OutputDir) -> Optional[str]:
    """Exports the trained model (--method full; drivers/export.py) and prunes the run's
    checkpoints to --keep-checkpoints. A run that exports nothing keeps at least its newest
    checkpoint: it is the only copy of the trained model. Returns the export's path."""
    exported = None
    if world.is_main:
        if method.name == "full":
            record = export.Record(run=run, recipe=recipe, skip="classifier", labels=list(data.label_names),
                                   max_length=args.max_length, batch_size=args.batch_size * 2)
            exported = str(export.save(distributed.unwrap(model), model_path, output.model(run), record))
        checkpoint.prune_finished(output.checkpoints(run),
                                  args.keep_checkpoints if exported else max(1, args.keep_checkpoints))
    distributed.barrier(world)
    return exported


def _padded(batch: classification_data.Batch, length: int, pad_id: int) -> classification_data.Batch:
    extra = length - batch.input_ids.shape[1]
    return classification_data.Batch(torch.nn.functional.pad(batch.input_ids, (0, extra), value=pad_id),
                                      torch.nn.functional.pad(batch.attention_mask, (0, extra)), batch.labels)


def measure_memory(args, recipe: str, model_path: Path, data, device) -> dict:
    """One training step (forward, backward, AdamW) of --method on the first training batch,
    padded to --max-length so that every method and recipe sees the same shape."""
    torch.manual_seed(args.seed)
    model = methods.get(args.method).prepare(_load_model(model_path, len(data.label_names), device), recipe, args)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    batch = classification_data.training_batches(data.train_ids, args.batch_size, args.seed, data.pad_id)[0]
    batch = _padded(batch, args.max_length, data.pad_id).to(device)

    def loss():
        with recipe_setup.forward_context(recipe, device):
            return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss

    step = intcore.memory.measure_step(model, loss, optimizer)
    return {"recipe": recipe, "method": args.method, "batch": list(batch.input_ids.shape), **step.as_dict()}


def report_memory(args, model_path: Path, data, device, world, output: OutputDir, results: dict) -> None:
    results["memory"] = {methods.run_name(args, recipe): measure_memory(args, recipe, model_path, data, device)
                         for recipe in args.recipes}
    if not world.is_main:
        return
    output.write_results(results)
    kinds = ("activations", "peak_activations", "parameters", "gradients", "optimizer_state")
    rows = [[name, "x".join(map(str, m["batch"]))] + [m[k] / intcore.memory.MB for k in kinds]
            for name, m in results["memory"].items()]
    print("\none training step, MB: saved for backward (activations when the forward ends, their peak over "
          "forward and backward, parameters), then gradients and optimizer state")
    print(report.table(["run", "batch", "activations", "peak act.", "parameters", "gradients", "optimizer"], rows))
    print(f"\nresults: {output.results}")


def prepare(args, world, device, command: str):
    """The output directory, model directory, tokenized data and previous results of a run."""
    output = session.open_output(args.output, args.resume, world)
    if args.model:
        model_path = Path(args.model)
        if not model_path.is_dir():
            raise DriverError(f"--model {args.model}: no such directory; give a local Hugging Face model "
                              f"directory or leave --model out for the default")
    else:
        if world.is_main:
            assets.model_dir()  # download once, before the other ranks look
        distributed.barrier(world)
        model_path = assets.model_dir()
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_path)
    data = classification_data.load(args.data, args.seed, args.text_column, args.label_column, args.max_examples)
    for split in ("train", "validation", "test"):
        setattr(data, f"{split}_ids", classification_data.tokenize(tokenizer, getattr(data, split), args.max_length))
    data.pad_id = tokenizer.pad_token_id or 0
    results = session.start_results(output, args, command, world, device)
    results["data"] = {"source": args.data, "labels": data.label_names,
                       "train": len(data.train), "validation": len(data.validation), "test": len(data.test)}
    return output, model_path, data, results


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    with session.command_world(args) as (world, device):
        output, model_path, data, results = prepare(args, world, device, "finetune")
        if args.memory_report:
            report_memory(args, model_path, data, device, world, output, results)
            return 0
        if world.is_main:
            print(f"intcore finetune: {model_path.name} on {args.data} ({len(data.train)} train, "
                  f"{len(data.validation)} validation, {len(data.test)} test); recipes {', '.join(args.recipes)}; "
                  f"output {output.path}")
        runs = {methods.run_name(args, recipe): recipe for recipe in args.recipes}
        session.run_recipes(list(runs), results, output, world,
                            lambda run: train_recipe(args, runs[run], model_path, data, world, device, output, run),
                            PLOT_PANELS, "intcore finetune")
        if world.is_main:
            rows = [[name, r["test_accuracy"], r["test_f1"], r["median_step_seconds"], r["peak_memory_mb"]]
                    for name, r in results["recipes"].items() if name in runs]
            session.print_summary(output, ["run", "test acc", "F1", "step s", "peak MB"], rows)
            _print_kept(output, list(runs))
            method = methods.get(args.method)
            if method.report:
                print(method.report({name: results["recipes"][name] for name in runs}))
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli("finetune", main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())

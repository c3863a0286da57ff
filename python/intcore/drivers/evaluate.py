"""`intcore evaluate`: accuracy and F1 of a fine-tuned run's models on a labelled file (or, for a
causal LM, its perplexity on a text file).

    intcore evaluate runs/compare --data reviews.csv              # every run of the output directory
    intcore evaluate runs/compare/models/int8 --data reviews.jsonl --text-column review
    intcore evaluate runs/lm-sentiment --data reviews.csv         # finetune-lm --data rotten_tomatoes runs
    intcore evaluate runs/lm --data play.txt                      # finetune-lm text runs: perplexity

A causal LM fine-tuned on the sentiment task answers each text's sentiment prompt; its accuracy
counts the answers of higher likelihood (labels "negative"/"positive", or 0/1).

Each model runs in its recipe's arithmetic (models/<run>/intcore.json), as in the run's own
evaluation. Labels in the file are the run's label names (as `intcore finetune` read them) or
their indices. Evaluation is seeded: with the default batch size, the test split of a
single-process run gives that run's test figures exactly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from intcore.drivers import classification_data, distributed, export, finetune, help_text, lm_evaluation, report
from intcore.drivers.errors import DriverError, run_cli
from intcore.atomic_files import write_atomic


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The options `intcore evaluate` and `intcore predict` share."""
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="an `intcore finetune` output directory (its models/ are used), or one models/<run>/ directory")
    p.add_argument("--runs", help="comma-separated runs to use (default: every exported run)")
    p.add_argument("--text-column", default="text", help="--data's column of texts")
    p.add_argument("--device", default="cpu")


def runs_of(args: argparse.Namespace) -> Optional[list[str]]:
    return [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="intcore evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--data", required=True, help="a labelled CSV/TSV/JSONL/JSON file (a .txt file for a causal LM's "
                                                 "perplexity)")
    p.add_argument("--label-column", default="label", help="--data's column of labels")
    p.add_argument("--batch-size", type=int,
                   help="examples per batch (default: the run's own evaluation batch size, which reproduces its "
                        "test figures)")
    p.add_argument("--output", help="also write the figures to this JSON file")
    help_text.show_defaults(p)
    args = p.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        raise DriverError("--batch-size must be at least 1")
    return args


def label_indices(rows: list[dict], args: argparse.Namespace, labels: list[str], run: str) -> list[tuple[str, int]]:
    """(text, class index) per row: a label is one of the run's label names, or an index."""
    examples = []
    for row in rows:
        missing = [c for c in (args.text_column, args.label_column) if c not in row]
        if missing:
            raise DriverError(f"--data {args.data} has columns {list(row)} but needs {missing}; pass "
                              f"--text-column/--label-column")
        value = str(row[args.label_column])
        if value in labels:
            index = labels.index(value)
        elif value.isdigit() and int(value) < len(labels):
            index = int(value)
        else:
            raise DriverError(f"--data {args.data}: label {value!r} is neither a label of run {run} ({', '.join(labels)}) "
                              f"nor an index below {len(labels)}")
        examples.append((str(row[args.text_column]), index))
    return examples


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    device = distributed.parse_device(args.device)
    models = export.find(args.run_dir, runs_of(args), "evaluate")
    if not Path(args.data).is_file():
        raise DriverError(f"--data {args.data}: no such file")
    text = Path(args.data).suffix.lower() == ".txt"
    rows = [] if text else classification_data.read_rows(Path(args.data))
    if not text and not rows:
        raise DriverError(f"--data {args.data} holds no rows")
    results = {}
    for run, directory in models.items():
        model, tokenizer, record = export.load(directory, device, "evaluate")
        if record.task == "causal-lm" or text:
            if not (record.task == "causal-lm" and text):
                raise DriverError(f"--data {args.data}: run {run} ({record.task}) is evaluated on "
                                  f"{'a .txt file' if record.task == 'causal-lm' else 'a labelled file'}")
            results[run] = {"recipe": record.recipe, **lm_evaluation.perplexity(model, tokenizer, record, args.data,
                                                                                args.batch_size, device)}
            continue
        examples = label_indices(rows, args, record.labels, run)
        if record.task == "sentiment-lm":
            figures = lm_evaluation.sentiment(model, tokenizer, record, examples, args.batch_size, device)
        else:
            ids = classification_data.tokenize(tokenizer, examples, record.max_length)
            batches = classification_data.evaluation_batches(ids, args.batch_size or record.batch_size,
                                                             tokenizer.pad_token_id or 0)
            figures = finetune.evaluate(model, batches, record.recipe, device, distributed.World(), len(record.labels))
        results[run] = {"recipe": record.recipe, "examples": len(examples), **figures}
    if any("perplexity" in r for r in results.values()):
        print(report.table(["run", "recipe", "tokens", "loss", "perplexity"],
                           [[run, r["recipe"], r["tokens"], r["loss"], r["perplexity"]] for run, r in results.items()]))
    else:
        print(report.table(["run", "recipe", "examples", "accuracy", "F1", "loss"],
                           [[run, r["recipe"], r["examples"], r["accuracy"], r.get("f1", ""), r["loss"]]
                            for run, r in results.items()]))
    if args.output:
        write_atomic(Path(args.output), (json.dumps({"data": args.data, "runs": results}, indent=2) + "\n").encode())
        print(f"\nresults: {args.output}")
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli("evaluate", main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())

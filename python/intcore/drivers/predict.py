"""`intcore predict`: labels and class probabilities from a fine-tuned run's models.

    intcore predict runs/compare --text "a moving, funny film" --text "two hours I will not get back"
    intcore predict runs/compare/models/int8 --data reviews.csv --jsonl > predictions.jsonl

Each model runs in its recipe's arithmetic (models/<run>/intcore.json). Prints one row per run
and text: the predicted label and the probability of every label; --jsonl prints one JSON object
per row instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

import torch

from intcore.drivers import classification_data, distributed, evaluate, export, help_text, recipe_setup, report
from intcore.drivers.errors import DriverError, run_cli

SHOWN_CHARACTERS = 60  # of each text in the table


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="intcore predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_model_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to classify (repeat for more)")
    source.add_argument("--data", help="a CSV/TSV/JSONL/JSON file whose --text-column holds the texts")
    p.add_argument("--batch-size", type=int, default=64, help="texts per batch")
    p.add_argument("--jsonl", action="store_true", help="print JSON lines instead of a table")
    help_text.show_defaults(p)
    args = p.parse_args(argv)
    if args.batch_size < 1:
        raise DriverError("--batch-size must be at least 1")
    return args


def texts_of(args: argparse.Namespace) -> list[str]:
    if args.text:
        return args.text
    if not Path(args.data).is_file():
        raise DriverError(f"--data {args.data}: no such file")
    rows = classification_data.read_rows(Path(args.data))
    if not rows:
        raise DriverError(f"--data {args.data} holds no rows")
    if args.text_column not in rows[0]:
        raise DriverError(f"--data {args.data} has columns {list(rows[0])} but no {args.text_column!r}; pass "
                          f"--text-column")
    return [str(row[args.text_column]) for row in rows]


@torch.no_grad()
def probabilities(model, tokenizer, record: export.Record, texts: list[str], batch_size: int,
                  device: torch.device) -> torch.Tensor:
    """[len(texts), labels] class probabilities, in the order of texts."""
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=record.max_length,
                          padding=True, return_tensors="pt").to(device)
        with recipe_setup.forward_context(record.recipe, device):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out.append(logits.float().softmax(-1).cpu())
    return torch.cat(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    device = distributed.parse_device(args.device)
    models = export.find(args.run_dir, evaluate.runs_of(args), "predict")
    texts = texts_of(args)
    rows = []
    for run, directory in models.items():
        model, tokenizer, record = export.load(directory, device, "predict")
        probs = probabilities(model, tokenizer, record, texts, args.batch_size, device)
        for text, p, best in zip(texts, probs.tolist(), probs.argmax(-1).tolist()):
            rows.append({"text": text, "run": run, "recipe": record.recipe, "label": record.labels[best],
                         "probabilities": dict(zip(record.labels, p))})
    if args.jsonl:
        for row in rows:
            print(json.dumps(row))
        return 0
    # The runs of one output directory share their labels (they trained on the same --data).
    labels = list(rows[0]["probabilities"])
    print(report.table(["text", "run", "label"] + [f"p({name})" for name in labels],
                       [[_shortened(r["text"]), r["run"], r["label"]] + list(r["probabilities"].values()) for r in rows]))
    return 0


def _shortened(text: str) -> str:
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS - 3] + "..."


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli("predict", main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())

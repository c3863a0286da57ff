"""Text classification data for `intcore finetune`: loading, a seeded split, batching.

--data accepts:
    rotten_tomatoes     the pinned default (12,808 snippets, fresh/rotten; intcore.assets)
    FILE.csv / .tsv / .jsonl / .json   rows with a text and a label column
    glue/<task>         a GLUE task through the `datasets` package and its local cache
A single file or the default is split 80/10/10 into train/validation/test with --seed.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from intcore import assets
from intcore.drivers.errors import DriverError


@dataclass
class Splits:
    train: list[tuple[str, int]]
    validation: list[tuple[str, int]]
    test: list[tuple[str, int]]
    label_names: list[str]


def read_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            with open(path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        if suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise DriverError(f"--data {path}: a .json file must hold a list of objects")
            return rows
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as e:
        raise DriverError(f"--data {path} cannot be parsed as {suffix[1:].upper()} ({e})") from None
    raise DriverError(f"--data {path}: unsupported file type {suffix!r}; use .csv, .tsv, .jsonl or .json")


def _labelled(rows: list[dict], source: str, text_column: str, label_column: str) -> tuple[list, list[str]]:
    if not rows:
        raise DriverError(f"--data {source} holds no rows")
    columns = list(rows[0].keys())
    missing = [c for c in (text_column, label_column) if c not in columns]
    if missing:
        raise DriverError(
            f"--data {source} has columns {columns} but needs {missing}; rename them or pass "
            f"--text-column/--label-column"
        )
    raw = [(str(r[text_column]), r[label_column]) for r in rows]
    values = sorted({str(label) for _, label in raw})
    if all(v.lstrip("-").isdigit() for v in values):
        names = [str(i) for i in range(max(int(v) for v in values) + 1)]
        data = [(text, int(label)) for text, label in raw]
        if min(label for _, label in data) < 0:
            raise DriverError(f"--data {source}: integer labels must be >= 0")
    else:
        names = values
        index = {name: i for i, name in enumerate(names)}
        data = [(text, index[str(label)]) for text, label in raw]
    if len(names) < 2:
        raise DriverError(f"--data {source}: column {label_column!r} holds a single label; need at least two")
    return data, names


def _split(data: list, seed: int) -> tuple[list, list, list]:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [data[i] for i in order]
    n_val = max(1, len(data) // 10)
    return shuffled[2 * n_val:], shuffled[:n_val], shuffled[n_val:2 * n_val]


def _glue(task: str, seed: int) -> Splits:
    try:
        import datasets
    except ImportError:
        raise DriverError(f"--data glue/{task} needs the `datasets` package (pip install datasets)") from None
    try:
        ds = datasets.load_dataset("glue", task)
    except Exception as e:
        raise DriverError(f"--data glue/{task}: cannot load it from the datasets cache ({e})") from None
    columns = [c for c in ds["train"].column_names if c not in ("label", "idx")]
    def rows(split):
        return [(" [SEP] ".join(str(r[c]) for c in columns), int(r["label"])) for r in ds[split]]
    train, held = rows("train"), rows("validation")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, len(train) // 10)
    names = ds["train"].features["label"].names
    return Splits([train[i] for i in order[n_val:]], [train[i] for i in order[:n_val]], held, names)


def load(data: str, seed: int, text_column: str = "text", label_column: str = "label",
         max_examples: Optional[int] = None) -> Splits:
    if data == "rotten_tomatoes":
        examples, names = assets.rotten_tomatoes(), ["rotten", "fresh"]
    elif data.startswith("glue/"):
        splits = _glue(data[len("glue/"):], seed)
        if max_examples:
            splits.train = splits.train[:max_examples]
        return splits
    else:
        path = Path(data)
        if not path.is_file():
            raise DriverError(f"--data {data}: no such file; give a CSV/TSV/JSONL/JSON file, 'rotten_tomatoes', "
                              f"or glue/<task>")
        examples, names = _labelled(read_rows(path), data, text_column, label_column)
    if max_examples:
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed + 1)).tolist()
        examples = [examples[i] for i in order[:max_examples]]
    if len(examples) < 10:
        raise DriverError(f"--data {data}: {len(examples)} examples are too few to split (need 10 or more)")
    train, validation, test = _split(examples, seed)
    return Splits(train, validation, test, names)


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def tokenize(tokenizer, examples: list[tuple[str, int]], max_length: int) -> list[tuple[list[int], int]]:
    encoded = tokenizer([text for text, _ in examples], truncation=True, max_length=max_length)["input_ids"]
    return list(zip(encoded, [label for _, label in examples]))


def _collate(items: list[tuple[list[int], int]], pad_id: int) -> Batch:
    width = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (ids, _) in enumerate(items):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    return Batch(input_ids, mask, torch.tensor([label for _, label in items]))


def training_batches(data: list, batch_size: int, seed: int, pad_id: int) -> list[Batch]:
    """A seeded shuffle, then length-sorted within windows of 50 batches, so that batches pad
    little while their order stays random."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: len(data[i][0]))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffle = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed + 7)).tolist()
    return [_collate([data[i] for i in batches[b]], pad_id) for b in shuffle]


def evaluation_batches(data: list, batch_size: int, pad_id: int) -> list[Batch]:
    order = sorted(range(len(data)), key=lambda i: len(data[i][0]))
    return [_collate([data[i] for i in order[s:s + batch_size]], pad_id) for s in range(0, len(order), batch_size)]


def steps_per_epoch(n_examples: int, batch_size: int, world_size: int) -> int:
    """Steps each rank takes per epoch: the batches split evenly, the remainder dropped so that
    every rank takes the same number of steps (DDP needs it)."""
    return max(1, math.ceil(n_examples / batch_size) // world_size)

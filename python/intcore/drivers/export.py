"""A fine-tuned run's model as a Hugging Face model directory, and loading it back.

`intcore finetune` and `intcore finetune-lm` write each completed run (with --method full) to
<output>/models/<run>/:

    config.json, model.safetensors   the float32 master weights under the original parameter
                                     names: transformers.AutoModelForSequenceClassification
                                     (AutoModelForCausalLM for a causal LM) loads the directory
                                     as it is
    tokenizer files                  the tokenizer the run used
    intcore.json                     the recipe that runs the model in intcore's arithmetic, the
                                     label names, and the evaluation settings of the run

`load` rebuilds the model in its recipe's arithmetic, which is what `intcore evaluate` and
`intcore predict` run.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from intcore.drivers import recipe_setup
from intcore.drivers.errors import DriverError
from intcore.atomic_files import FILE_MODE, staging_dir, write_atomic

RECORD = "intcore.json"
FORMAT = 1


@dataclass(frozen=True)
class Record:
    """What intcore.json holds."""
    run: str
    recipe: str
    skip: str            # modules the recipe leaves in float (intcore.convert's skip)
    labels: list[str]    # label names by class index
    max_length: int      # tokens per example the run was trained and evaluated with
    batch_size: int      # the run's evaluation batch size (its test figures are reproduced with it)
    format: int = FORMAT
    # "classification" (a sequence classifier), "causal-lm" (a language model) or "sentiment-lm" (a
    # language model answering the sentiment prompt of drivers/causal_lm_data.py; labels by answer)
    task: str = "classification"

    @property
    def causal(self) -> bool:
        return self.task != "classification"


def save(model: torch.nn.Module, tokenizer, directory: Path, record: Record, state_dict: dict | None = None) -> Path:
    """Writes the model, its tokenizer (a tokenizer, or the directory to read it from) and its
    record to `directory`, atomically (a staging directory renamed into place), replacing an
    earlier export of the same run. state_dict: the model's whole state where the model holds
    only a shard of it (FSDP2)."""
    import transformers

    if not record.causal:
        model.config.id2label = dict(enumerate(record.labels))
        model.config.label2id = {name: i for i, name in enumerate(record.labels)}
    if isinstance(tokenizer, (str, Path)):
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer)
    staging = staging_dir(directory.parent, f".{directory.name}.incomplete-")
    try:
        # The recipe's modules keep nn.Linear's parameter names, so the state dict is a float model's.
        model.save_pretrained(staging, state_dict=state_dict)
        tokenizer.save_pretrained(staging)
        write_atomic(staging / RECORD, (json.dumps(asdict(record), indent=2) + "\n").encode())
        for path in staging.iterdir():
            if path.is_file():  # transformers writes model.safetensors through a private temporary file
                path.chmod(FILE_MODE)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def read_record(directory: Path, command: str) -> Record:
    path = directory / RECORD
    try:
        raw = json.loads(path.read_text())
        record = Record(**raw)
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise DriverError(f"{path} is not an intcore model record ({e})") from None
    if record.format != FORMAT:
        raise DriverError(f"{path} has format {record.format}; this intcore ({command}) reads format {FORMAT}")
    return record


def find(run_dir: str, runs: list[str] | None, command: str) -> dict[str, Path]:
    """The exported model directories in run_dir (an output directory or one model directory),
    by run name, limited to `runs` when given."""
    root = Path(run_dir)
    if (root / RECORD).is_file():
        found = {read_record(root, command).run: root}
    else:
        found = {p.parent.name: p.parent for p in sorted((root / "models").glob(f"*/{RECORD}"))}
    if not found:
        if not root.is_dir():
            raise DriverError(f"RUN_DIR {run_dir}: no such directory")
        raise DriverError(f"RUN_DIR {run_dir} holds no exported model (models/<run>/{RECORD}); intcore finetune "
                          f"exports each run when it completes")
    if runs:
        missing = [r for r in runs if r not in found]
        if missing:
            raise DriverError(f"--runs: {', '.join(missing)} not in {run_dir}; it holds {', '.join(found)}")
        found = {r: found[r] for r in runs}
    return found


def load(directory: Path, device: torch.device, command: str):
    """(model in its recipe's arithmetic, in eval mode; tokenizer; record) of an exported run."""
    import transformers

    record = read_record(directory, command)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    auto = transformers.AutoModelForCausalLM if record.causal else transformers.AutoModelForSequenceClassification
    try:
        model = auto.from_pretrained(directory)
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as e:
        raise DriverError(f"{directory} is not a complete model directory ({str(e).splitlines()[0]})") from None
    recipe_setup.check_recipes([record.recipe])
    model = recipe_setup.apply(model, record.recipe, skip=record.skip).to(device).eval()
    return model, tokenizer, record

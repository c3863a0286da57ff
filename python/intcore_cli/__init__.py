"""The `intcore` command: `intcore <command> [options]`.

It lives outside the intcore package on purpose: importing anything under intcore runs
intcore/__init__.py, which loads torch and the engine (seconds), and `intcore --help` or
`intcore --version` should answer at once. A command's own module is imported only when that
command runs.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata
from typing import Optional, Sequence

from intcore_cli import reproducible

# name -> ("module:function" that runs it with the remaining arguments, one-line summary)
COMMANDS = {
    "finetune": ("intcore.drivers.finetune:cli",
                 "fine-tune a classifier (BERT, RoBERTa, ELECTRA, DistilBERT, GPT-2) with integer recipes"),
    "evaluate": ("intcore.drivers.evaluate:cli", "accuracy and F1 of a fine-tuned run's models on a labelled file"),
    "predict": ("intcore.drivers.predict:cli", "labels and probabilities from a fine-tuned run's models"),
    "finetune-lm": ("intcore.drivers.finetune_lm:cli",
                    "fine-tune a causal LM (Llama, Qwen, Mistral, Gemma; .gguf or Hugging Face) with integer recipes"),
    "generate": ("intcore.drivers.generate:cli", "text from a fine-tuned causal LM, a .gguf file or a base model"),
    "train-lm": ("intcore.drivers.train_lm:cli", "train a GPT-style language model from scratch"),
    "qbert": ("intcore.drivers.qbert:cli", "Q-BERT: Hessian-guided mixed-precision quantization, integer evaluation"),
    "doctor": ("intcore.doctor:main", "report the installation and check native kernels against portable ones"),
}


def usage() -> str:
    lines = ["usage: intcore [--version] <command> [options]", "", "commands:"]
    lines += [f"  {name:<11} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`intcore <command> --help` lists a command's options and their defaults."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"intcore {metadata.version('intcore')}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"intcore: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if reproducible.requested(rest):
        reproducible.apply()  # before the driver's import loads torch
    module, function = COMMANDS[command][0].split(":")
    return getattr(importlib.import_module(module), function)(rest)

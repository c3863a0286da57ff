"""The `intcore` command: `intcore finetune ...`, `intcore train-lm ...`, `intcore qbert ...` and `intcore doctor`."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

COMMANDS = {
    "finetune": "fine-tune a BERT classifier with integer recipes (intcore finetune --help)",
    "train-lm": "train a GPT-style language model from scratch (intcore train-lm --help)",
    "qbert": "Q-BERT: Hessian-guided mixed-precision quantization, integer evaluation (intcore qbert --help)",
    "doctor": "report the installation and check native kernels against portable ones",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: intcore <command> [options]\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<10} {text}")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "finetune":
        from intcore.drivers.finetune import cli
    elif command == "train-lm":
        from intcore.drivers.train_lm import cli
    elif command == "qbert":
        from intcore.drivers.qbert import cli
    elif command == "doctor":
        from intcore.doctor import main as cli
    else:
        print(f"intcore: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return cli(rest)


if __name__ == "__main__":
    raise SystemExit(main())

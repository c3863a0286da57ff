"""The options every training command shares (finetune, qbert, train-lm, finetune-lm) and their
checks: which recipes run, checkpoints, seed, device, output directory, --resume, progress bars
and --reproducible. Each command adds its own model, data and schedule options around them."""

from __future__ import annotations

import argparse

from intcore.drivers import recipe_setup
from intcore.drivers.errors import DriverError
from intcore_cli import reproducible


def add_recipes(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--recipe", default=default, help=f"one recipe (default {default})")
    p.add_argument("--recipes", help="comma-separated recipes to run one after another and compare")


def add_session(p: argparse.ArgumentParser, command: str, keep_default: int, keep_help: str) -> None:
    """Checkpoints (--keep-checkpoints: keep_default, keep_help), seed, device, output, resume,
    progress and reproducibility."""
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0,
                   help="minutes of wall time between checkpoints, whatever the steps (Ctrl-C also saves one)")
    p.add_argument("--keep-checkpoints", type=int, default=keep_default, metavar="N", help=keep_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", help=f"output directory (default: runs/{command}-<date>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(reproducible.FLAG, action="store_true", help=reproducible.HELP)


def check(args: argparse.Namespace, positive: tuple[str, ...]) -> None:
    """The shared options' checks, with ``positive`` (argument names) required to be at least 1;
    --recipe/--recipes become the list args.recipes where the command has them. The command's own
    checks follow, then outputs.resolve_resume."""
    if hasattr(args, "recipe"):
        args.recipes = [r.strip() for r in (args.recipes or args.recipe).split(",") if r.strip()]
        recipe_setup.check_recipes(args.recipes)
    for name in positive + ("checkpoint_every",):
        if getattr(args, name) < 1:
            raise DriverError(f"--{name.replace('_', '-')} must be at least 1")
    if getattr(args, "max_examples", None) is not None and args.max_examples < 1:
        raise DriverError("--max-examples must be at least 1")
    if not args.lr > 0:
        raise DriverError("--lr must be positive")
    if not args.checkpoint_minutes > 0:
        raise DriverError("--checkpoint-minutes must be positive")
    if args.keep_checkpoints < 0:
        raise DriverError("--keep-checkpoints must be 0 or more")
    if args.reproducible and reproducible.missing():
        raise DriverError(reproducible.missing())

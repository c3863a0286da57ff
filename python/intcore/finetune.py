"""`python -m intcore.finetune`: the same as `intcore finetune` (see intcore.drivers.finetune)."""

from intcore.drivers.finetune import cli

if __name__ == "__main__":
    raise SystemExit(cli())

"""`python -m intcore.finetune_lm`: the same as `intcore finetune-lm` (see intcore.drivers.finetune_lm)."""

from intcore.drivers.finetune_lm import cli

if __name__ == "__main__":
    raise SystemExit(cli())

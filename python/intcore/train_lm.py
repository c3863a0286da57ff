"""`python -m intcore.train_lm`: the same as `intcore train-lm` (see intcore.drivers.train_lm)."""

from intcore.drivers.train_lm import cli

if __name__ == "__main__":
    raise SystemExit(cli())

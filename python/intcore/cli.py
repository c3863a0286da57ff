"""The console script of installs made before the `intcore` command moved to intcore_cli (which
answers --help and --version without importing torch); reinstalling points it there."""

from intcore_cli import main  # noqa: F401

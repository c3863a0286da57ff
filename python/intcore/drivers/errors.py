"""One-line errors for the command-line drivers.

A DriverError says what is wrong and what to do; ``run_cli`` prints it as
``intcore <command>: error: <message>`` and exits with status 2, without a traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence


class DriverError(Exception):
    pass


def run_cli(command: str, main: Callable[[Optional[Sequence[str]]], int],
            argv: Optional[Sequence[str]] = None) -> int:
    try:
        return main(argv)
    except DriverError as e:
        print(f"intcore {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"intcore {command}: interrupted; rerun with --resume to continue from the last checkpoint",
              file=sys.stderr)
        return 130

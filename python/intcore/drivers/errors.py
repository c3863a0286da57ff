"""One-line errors for the command-line drivers.

A DriverError says what is wrong and what to do; ``run_cli`` prints it as
``intcore <command>: error: <message>`` and exits with status 2, without a traceback. A run
that fails or is interrupted first undoes what ``on_failure`` registered (the output directory a
failed start created), and an interrupted one says whether --resume has anything to continue.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence


class DriverError(Exception):
    pass


_on_failure: list[Callable[[], None]] = []
_interrupt_message: list[Callable[[], str]] = []


def on_failure(undo: Callable[[], None]) -> None:
    """undo() runs if the current command fails or is interrupted."""
    _on_failure.append(undo)


def on_interrupt(message: Callable[[], str]) -> None:
    """What an interrupted command prints (the output directory knows whether it can resume)."""
    _interrupt_message[:] = [message]


def _undo() -> None:
    for undo in reversed(_on_failure):
        try:
            undo()
        except Exception:  # noqa: BLE001 (best effort: the command's own error is what matters)
            pass


def run_cli(command: str, main: Callable[[Optional[Sequence[str]]], int],
            argv: Optional[Sequence[str]] = None) -> int:
    _on_failure.clear()
    _interrupt_message.clear()
    try:
        return main(argv)
    except DriverError as e:
        _undo()
        print(f"intcore {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        message = _interrupt_message[0]() if _interrupt_message else "interrupted before the run started; nothing was saved"
        _undo()
        print(f"intcore {command}: {message}", file=sys.stderr)
        return 130
    except BaseException:
        _undo()
        raise
    finally:
        _on_failure.clear()
        _interrupt_message.clear()

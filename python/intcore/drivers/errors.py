"""One-line errors for the command-line drivers.

A DriverError says what is wrong and what to do; ``run_cli`` prints it as
``intcore <command>: error: <message>`` and exits with status 2, without a traceback. A run
that fails or is interrupted first undoes what ``on_failure`` registered (the output directory a
failed start created), and an interrupted one says whether --resume has anything to continue.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence


class DriverError(Exception):
    pass


_on_failure: list[Callable[[], None]] = []
_interrupt_message: list[Callable[[], str]] = []
_command_line: list = []  # [command, argv] of the command run_cli is running


def on_failure(undo: Callable[[], None]) -> None:
    """undo() runs if the current command fails or is interrupted."""
    _on_failure.append(undo)


def on_interrupt(message: Callable[[], str]) -> None:
    """What an interrupted command prints (the output directory knows whether it can resume)."""
    _interrupt_message[:] = [message]


def resume_command(output: Path) -> str:
    """The command that continues the running command's run in `output`: its own arguments,
    with --output set to that directory and --resume added."""
    if not _command_line:
        return f"--resume --output {shlex.quote(str(output))}"
    command, argv = _command_line
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--output":
            skip = True
        elif not (a == "--resume" or a.startswith("--output=")):
            args.append(a)
    return shlex.join(["intcore", command, *args, "--output", str(output), "--resume"])


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
    _command_line[:] = [command, list(sys.argv[1:] if argv is None else argv)]
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
        _command_line.clear()

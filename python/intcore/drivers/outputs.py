"""A driver's output directory: results.json, curves.csv, the plot, checkpoints/, models/.

Files are written atomically (a temporary file in the same directory, then os.replace), so a
crash never leaves a half-written result, and an existing run is never overwritten: without
--resume, a directory that already holds results or checkpoints is refused.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Optional

from intcore.atomic_files import write_atomic
from intcore.drivers import errors
from intcore.drivers.errors import DriverError


# Where a run goes without --output: runs/<command>-<date>-<time>, relative to the working directory.
DEFAULT_PARENT = Path("runs")


def default_output(command: str) -> str:
    return str(DEFAULT_PARENT / f"{command}-{datetime.now():%Y%m%d-%H%M%S}")


def newest_run(command: str) -> Optional[Path]:
    """The newest directory under DEFAULT_PARENT that `command` made (by its timestamped name)
    and that --resume can continue, or None."""
    if not DEFAULT_PARENT.is_dir():
        return None
    made = sorted((p for p in DEFAULT_PARENT.glob(f"{command}-*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    return next((p for p in made if OutputDir(p).resumable()), None)


def resolve_resume(args, command: str) -> None:
    """--output for the run: a plain --resume continues the newest run under runs/ (saying
    which), a new run gets a timestamped directory there."""
    if args.output is not None:
        return
    if not args.resume:
        args.output = default_output(command)
        return
    newest = newest_run(command)
    if newest is None:
        raise DriverError(f"--resume: no run of `intcore {command}` under {DEFAULT_PARENT}/ to continue; pass "
                          f"--output DIR, the directory of the run")
    args.output = str(newest)
    print(f"intcore {command}: --resume continues the newest run, {newest}", flush=True)


def _remove_if_empty(directories: list) -> None:
    """Removes the directories a failed start created (innermost first) while they are empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


class OutputDir:
    def __init__(self, path):
        self.path = Path(path)

    def prepare(self, resume: bool) -> None:
        """Refuses to overwrite a run (or to resume none), then creates the directory; if the
        run then fails before writing anything, the directories it created are removed."""
        if self.path.exists() and not self.path.is_dir():
            raise DriverError(f"--output {self.path} is an existing file, not a directory; choose another --output")
        held = [p for p in ("results.json", "curves.csv", "checkpoints") if (self.path / p).exists()]
        if held and not resume:
            raise DriverError(
                f"{self.path} already holds a run ({', '.join(held)}); pass --resume to continue it or choose "
                f"another --output"
            )
        if resume and not held:
            raise DriverError(f"--resume: {self.path} holds no run to resume (no checkpoints/ or results)")
        created = [p for p in [self.path, *self.path.parents] if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DriverError(f"--output {self.path} cannot be created ({e.strerror or e})") from None
        errors.on_failure(lambda: _remove_if_empty(created))

    def resumable(self) -> bool:
        """Whether --resume has something to continue: results or a checkpoint."""
        checkpoints = self.path / "checkpoints"
        return self.results.exists() or (checkpoints.is_dir() and any(
            p.name == "latest" or p.name.startswith("step-") for d in checkpoints.iterdir() if d.is_dir()
            for p in d.iterdir()))

    def interrupt_message(self) -> str:
        if self.resumable():
            return (f"interrupted; the run in {self.path} is saved. Continue it from its last checkpoint with:\n"
                    f"  {errors.resume_command(self.path)}")
        return ("interrupted before training started, so there is nothing to resume; rerun the command "
                "(without --resume) to start again")

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def curves(self) -> Path:
        return self.path / "curves.csv"

    @property
    def plot(self) -> Path:
        return self.path / "curves.png"

    def checkpoints(self, name: str) -> Path:
        return self.path / "checkpoints" / name

    def model(self, name: str) -> Path:
        """Where run `name`'s exported model goes (drivers/export.py)."""
        return self.path / "models" / name

    def load_results(self) -> dict:
        if not self.results.exists():
            return {}
        try:
            return json.loads(self.results.read_text())
        except json.JSONDecodeError as e:
            raise DriverError(f"{self.results} is not valid JSON ({e}); move it away or choose another --output")

    def write_results(self, results: dict) -> None:
        write_atomic(self.results, (json.dumps(results, indent=2) + "\n").encode())

    def write_curves(self, rows: list[dict]) -> None:
        if not rows:
            return
        fields = list(dict.fromkeys(k for row in rows for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.curves, buf.getvalue().encode())

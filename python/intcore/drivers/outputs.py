"""A driver's output directory: results.json, curves.csv, the plot, checkpoints/.

Files are written atomically (a temporary file in the same directory, then os.replace), so a
crash never leaves a half-written result, and an existing run is never overwritten: without
--resume, a directory that already holds results or checkpoints is refused.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from intcore.drivers.errors import DriverError


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class OutputDir:
    def __init__(self, path):
        self.path = Path(path)

    def prepare(self, resume: bool) -> None:
        """Refuses to overwrite a run (or to resume none), then creates the directory."""
        held = [p for p in ("results.json", "curves.csv", "checkpoints") if (self.path / p).exists()]
        if held and not resume:
            raise DriverError(
                f"{self.path} already holds a run ({', '.join(held)}); pass --resume to continue it or choose "
                f"another --output"
            )
        if resume and not held:
            raise DriverError(f"--resume: {self.path} holds no run to resume (no checkpoints/ or results)")
        self.path.mkdir(parents=True, exist_ok=True)

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

"""Files written so that a crash never leaves a half-written one under its final name.

A file goes to a temporary name in its directory, is flushed to disk (and, for safetensors,
read back and compared), then renamed into place, and the directory entry is flushed too.
Temporary files and directories are created private (0600, 0700); what they become gets the
modes an ordinary open() or mkdir() would give (0644 and 0755 under the usual umask).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


def staging_dir(parent: Path, prefix: str) -> Path:
    """A new temporary directory in parent, to be renamed into place when complete."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    path.chmod(DIR_MODE)
    return path


def fsync_directory(path: Path) -> None:
    """Flushes a directory's entries (a rename into it, a new file) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, verify: Optional[Callable[[Path], None]] = None) -> None:
    """Writes path through a temporary file that is flushed to disk before it is renamed;
    verify(temporary path), when given, runs before the rename and raises to keep the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_safetensors(fn: str, path: Path, tensors: dict, metadata: dict) -> Path:
    """Writes tensors (CPU, contiguous) and string metadata to a safetensors file atomically,
    reading it back before the rename; an OSError naming fn if it does not read back the same."""

    def same_tensors(tmp: Path) -> None:
        back = load_file(tmp)
        if back.keys() != tensors.keys() or any(not torch.equal(back[k], tensors[k]) for k in tensors):
            raise OSError(f"{fn}: {path} did not read back identically")

    write_atomic(path, safetensors_bytes(tensors, metadata=metadata), verify=same_tensors)
    return path

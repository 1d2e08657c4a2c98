"""Durable file-system steps shared by every module that writes outside the log: fsync a path,
create folders durably, and replace a file atomically (temp file, fsync, rename, fsync dir)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes its new entries durable)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(d: Path) -> None:
    """mkdir -p, fsyncing the parent of every folder created so the entry itself is durable."""
    if d.is_dir():
        return
    ensure_dir(d.parent)
    try:
        d.mkdir()
    except FileExistsError:
        return
    fsync_path(d.parent)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data`: a temp file in the same folder, fsync, rename, fsync dir.
    A crash leaves the old file or the new one, never a mix."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)

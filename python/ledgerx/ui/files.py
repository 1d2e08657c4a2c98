"""Artifact files for the dashboard: downloads only of regular files under the root's
`artifacts/`, and the `equity_curve` table as chart data.

A requested path is checked component by component, then opened one component at a time with
`openat(..., O_NOFOLLOW)` starting from the `artifacts/` folder: `..`, `.`, empty or absolute
parts, NUL bytes and backslashes are refused before any file is touched, and a symlink anywhere
on the way (a file or a folder) fails to open instead of leading out of the root. The file must
be a regular file with exactly one hard link (the artifact writer creates each file by renaming
a fresh temporary file; a second link may be a name of a file outside the ledger). It is served
from the descriptor that was checked, so it cannot be swapped between check and read.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from datetime import date, datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from ledgerx.errors import LedgerError

ARTIFACTS = "artifacts"
MAX_CHART_POINTS = 4000


class ForbiddenPath(LedgerError):
    """A download path outside the root's artifacts/ (or through a symlink)."""


def split_artifact_path(path: str) -> list[str]:
    """The components of `path` (relative to the root) below `artifacts/`; ForbiddenPath for
    anything that could leave it."""
    if not path or "\x00" in path or "\\" in path or path.startswith("/"):
        raise ForbiddenPath("only relative paths under artifacts/ can be downloaded")
    parts = path.split("/")
    if parts[0] != ARTIFACTS or len(parts) < 2:
        raise ForbiddenPath("only files under artifacts/ can be downloaded")
    rest = parts[1:]
    if any(p in ("", ".", "..") for p in rest):
        raise ForbiddenPath("'..', '.' and empty path components are refused")
    return rest


def open_artifact(root: Path, path: str) -> int:
    """A read-only descriptor of the regular file `root/path` (under artifacts/, no symlink on
    the way). FileNotFoundError when absent; ForbiddenPath when not allowed."""
    parts = split_artifact_path(path)
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root / ARTIFACTS, flags_dir)
    try:
        for name in parts[:-1]:
            nxt = _openat(fd, name, flags_dir)
            os.close(fd)
            fd = nxt
        out = _openat(fd, parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    finally:
        os.close(fd)
    st = os.fstat(out)
    if not stat.S_ISREG(st.st_mode):
        os.close(out)
        raise ForbiddenPath("not a regular file")
    if st.st_nlink != 1:
        # A hard link is the same file under a second name, possibly outside the ledger (a
        # symlink check cannot see it). The artifact writer only ever creates a file by rename
        # of a fresh temporary file: one link. So a second link means the file was not made
        # that way (or was hard-linked since, e.g. `cp -al`): refused.
        os.close(out)
        raise ForbiddenPath("a file with more than one hard link is refused")
    os.set_blocking(out, True)
    return out


def _openat(dirfd: int, name: str, flags: int) -> int:
    try:
        return os.open(name, flags, dir_fd=dirfd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink (O_NOFOLLOW) or a file as folder
            raise ForbiddenPath("symlinks are not followed") from None
        raise


def iter_fd(fd: int, chunk: int = 1 << 16) -> Any:
    """The file's bytes, then the descriptor is closed."""
    with os.fdopen(fd, "rb") as f:
        while data := f.read(chunk):
            yield data


def equity_curve(root: Path, path: str) -> dict[str, Any] | None:
    """x and the numeric y columns of a parquet equity curve, at most MAX_CHART_POINTS rows
    (evenly spaced, the last one kept). None when the file is missing or unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        fd = open_artifact(root, path)
    except (OSError, ForbiddenPath):
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            table = pq.read_table(f)
    except (OSError, pa.ArrowException):
        return None
    n = table.num_rows
    if n == 0:
        return None
    cols = table.schema
    x_name = next(
        (f.name for f in cols if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)),
        None,
    ) or next((f.name for f in cols if f.name.lower() in ("step", "i", "index", "t")), None)
    ys = [
        f.name
        for f in cols
        if f.name != x_name and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    ][:4]
    if not ys:
        return None
    idx = list(range(0, n, max(1, -(-n // MAX_CHART_POINTS))))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    sub = table.take(pa.array(idx))
    x = [chart_value(v) for v in sub.column(x_name).to_pylist()] if x_name else idx
    return {
        "x_name": x_name or "row",
        "x": x,
        "y": {name: [_finite(v) for v in sub.column(name).to_pylist()] for name in ys},
        "rows": n,
        "sampled": len(idx) < n,
    }


def _finite(v: Any) -> Any:
    """NaN and infinities as None (a gap in the line): JSON has no spelling for them."""
    return v if v is None or math.isfinite(v) else None


def chart_value(v: Any) -> Any:
    """A value as Plotly reads it: datetimes as UTC 'YYYY-MM-DD HH:MM:SS.ffffff' strings."""
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            v = v.astimezone(timezone.utc).replace(tzinfo=None)
        return v.isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    return v


def plotly_js() -> Path:
    """plotly.min.js as shipped inside the plotly package (no CDN)."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))

"""Where the index files live, the one-indexer lock, and publishing by atomic rename.

Readers open the published file read-only. The indexer never writes that file: it builds the next
version under a temporary name (a fresh file, or a kernel-side copy of the published one) and
renames it over the published name once it is complete, checkpointed and fsynced, then fsyncs
the directory. A reader therefore sees either the old file or the new one, never a half-built
one, and never meets the indexer's write lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ledgerx.config import index_dir
from ledgerx.errors import IndexBusyError, LedgerIOError
from ledgerx.fsutil import fsync_path, open_lock_file

TMP_MARK = ".building-"


@dataclass(frozen=True)
class IndexPaths:
    """The three published files and the lock, for a root or a `--db PATH`."""

    runs: Path
    alerts: Path
    catalog: Path
    lock: Path

    @classmethod
    def for_root(cls, root: Path, db: str | os.PathLike[str] | None = None) -> IndexPaths:
        if db is None:
            d = index_dir(root)
            runs = d / "runs.duckdb"
        else:
            runs = Path(db).expanduser().absolute()
            d = runs.parent
        if runs.name == "runs.duckdb":
            alerts, catalog = d / "alerts.duckdb", d / "catalog.duckdb"
        else:  # --db elsewhere: siblings named after it, so two indexes can share a folder
            alerts = d / f"{runs.stem}.alerts.duckdb"
            catalog = d / f"{runs.stem}.catalog.duckdb"
        lock = d / (".lock" if runs.name == "runs.duckdb" else f".{runs.name}.lock")
        return cls(runs=runs, alerts=alerts, catalog=catalog, lock=lock)

    def tmp_for(self, target: Path) -> Path:
        return target.with_name(f"{TMP_MARK}{os.getpid()}-{target.name}")


@contextlib.contextmanager
def index_lock(paths: IndexPaths) -> Iterator[None]:
    """One indexer per index: a non-blocking flock on the lock file, released on exit or death."""
    paths.lock.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock_file(paths.lock)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _read_holder(fd)
                raise IndexBusyError(
                    f"another indexer is running on {paths.runs.parent}"
                    f"{f' (pid {holder})' if holder else ''}; "
                    "wait for it to finish (or stop the daemon) and retry"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""


def lock_is_free(paths: IndexPaths) -> bool:
    """True when no indexer holds the lock right now (a hint: it may be taken a moment later)."""
    if not paths.lock.exists():
        return True
    try:  # never through a link, never blocking on a FIFO; index_lock reports either
        fd = os.open(paths.lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_stale_tmp(paths: IndexPaths) -> None:
    """Drop work files left by a killed indexer (only called while holding the lock)."""
    d = paths.runs.parent
    if not d.is_dir():
        return
    for p in d.iterdir():
        if p.name.startswith(TMP_MARK):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def copy_file(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` inside the kernel (copy_file_range; reflink where the fs has it)."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        n = os.fstat(fi.fileno()).st_size
        off = 0
        try:
            while off < n:
                k = os.copy_file_range(fi.fileno(), fo.fileno(), n - off, off, off)
                if k == 0:
                    break
                off += k
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            fi.seek(off)
            fo.seek(off)
            while chunk := fi.read(1 << 24):
                fo.write(chunk)
            off = n
        if off != n:
            raise LedgerIOError(errno.EIO, f"short copy of {src}: {off} of {n} bytes")


def publish(tmp: Path, target: Path, durable: bool = True) -> None:
    """Atomically replace `target` with the complete file `tmp`."""
    wal = tmp.with_name(tmp.name + ".wal")
    if wal.exists():  # a WAL next to the work file means it was not checkpointed: never publish
        raise LedgerIOError(errno.EIO, f"refusing to publish {tmp}: un-checkpointed WAL {wal}")
    if durable:
        fsync_path(tmp)
    # A WAL beside the published name belongs to the old file (someone opened it read-write);
    # left there, DuckDB would try to replay it against the new one.
    with contextlib.suppress(FileNotFoundError):
        target.with_name(target.name + ".wal").unlink()
    os.rename(tmp, target)
    if durable:
        fsync_path(target.parent)

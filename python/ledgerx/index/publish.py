"""Where the index files live, the one-indexer lock, and publishing by atomic rename.

Readers open the published file read-only. The indexer never writes that file while it is
published: it builds the next version under another name and swaps it in once it is complete,
checkpointed and fsynced, then fsyncs the directory. A reader therefore sees either the old file
or the new one, never a half-built one, and never meets the indexer's write lock.

Two files take turns (docs/index.md, "Publishing"): `runs.duckdb` and the previously published
version under the hidden name `.runs.duckdb.alt`. An incremental round brings the alternate up to
date in place when nobody has it open (DuckDB's own write lock on it, taken by the indexer's
read-write connection, fails when any other process holds it; this process's descriptors are
checked too) and swaps the two names in one `renameat2(RENAME_EXCHANGE)`; otherwise it works on a
kernel-side copy of the published file, as a full rebuild works on a fresh file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ledgerx._record import recordclass
from ledgerx.config import index_dir
from ledgerx.errors import IndexBusyError, LedgerIOError
from ledgerx.fsutil import fsync_path, open_lock_file

TMP_MARK = ".building-"


@recordclass(frozen=True)
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
        return tmp_for(target)

    @property
    def alt(self) -> Path:
        """The previously published runs index, which the next round may update in place."""
        return alt_for(self.runs)


def tmp_for(target: Path) -> Path:
    """This process's work name for `target`, beside it: nothing reads it, and
    `remove_stale_tmp` deletes what a dead process left."""
    return target.with_name(f"{TMP_MARK}{os.getpid()}-{target.name}")


def alt_for(target: Path) -> Path:
    return target.with_name(f".{target.name}.alt")


def file_ident(path: Path) -> str:
    """inode:size:mtime of `path` ("" when missing): a file we published and nobody wrote since
    keeps it through renames."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def open_in_this_process(path: Path) -> bool:
    """True when a descriptor of this process refers to `path`'s inode. DuckDB's fcntl locks
    belong to the process, so a connection of our own (a Reader of the same program) would not
    stop our write lock: look for it here."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fd_dir = "/proc/self/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return True  # cannot tell: assume it is open
    for fd in fds:
        try:
            o = os.stat(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if o.st_ino == st.st_ino and o.st_dev == st.st_dev:
            return True
    return False


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> None:
    """Swap the names `a` and `b` atomically (Linux renameat2 RENAME_EXCHANGE); LedgerIOError
    with ENOSYS/EINVAL/ENOTSUP where the kernel or file system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        raise LedgerIOError(errno.ENOSYS, "renameat2 is not available") from None
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        e = ctypes.get_errno()
        raise LedgerIOError(e, os.strerror(e), str(a), None, str(b))


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
    import shutil

    d = paths.runs.parent
    if not d.is_dir():
        return
    for p in d.iterdir():
        if p.name.startswith(TMP_MARK):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                p.unlink()
    shutil.rmtree(str(paths.alt) + ".spill", ignore_errors=True)


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


def _ready(tmp: Path, target: Path, durable: bool) -> None:
    wal = tmp.with_name(tmp.name + ".wal")
    if wal.exists():  # a WAL next to the work file means it was not checkpointed: never publish
        raise LedgerIOError(errno.EIO, f"refusing to publish {tmp}: un-checkpointed WAL {wal}")
    if durable:
        fsync_path(tmp)
    # A WAL beside the published name belongs to the old file (someone opened it read-write);
    # left there, DuckDB would try to replay it against the new one.
    with contextlib.suppress(FileNotFoundError):
        target.with_name(target.name + ".wal").unlink()


def publish(tmp: Path, target: Path, durable: bool = True) -> None:
    """Atomically replace `target` with the complete file `tmp`."""
    _ready(tmp, target, durable)
    os.rename(tmp, target)
    if durable:
        fsync_path(target.parent)


def publish_keeping_alt(work: Path, target: Path, durable: bool = True) -> bool:
    """Atomically make the complete file `work` the published `target` and keep the file it
    replaces as the alternate (`alt_for(target)`) for the next round. `work` is either the
    alternate itself (updated in place) or a work file, which then ends up as nothing: the old
    published file moves to the alternate name, over whatever was there (a process holding that
    file open keeps its inode). Returns False when the names could not be exchanged (no
    renameat2 here): then `work` replaced `target` by plain rename and no alternate is kept."""
    alt = alt_for(target)
    _ready(work, target, durable)
    try:
        exchange(work, target)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.ENOENT):
            raise
        os.rename(work, target)
        with contextlib.suppress(FileNotFoundError):
            alt.unlink()
        if durable:
            fsync_path(target.parent)
        return False
    if work != alt:  # the old published file is at `work` now: it becomes the alternate
        with contextlib.suppress(FileNotFoundError):
            alt.with_name(alt.name + ".wal").unlink()
        os.rename(work, alt)
    if durable:
        fsync_path(target.parent)
    return True

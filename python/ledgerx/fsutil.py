"""Durable file-system steps shared by every module that writes outside the log: fsync a path,
create folders durably, replace a file atomically (temp file, fsync, rename, fsync dir), and
open lock files without following links. Files created here get `0666 & ~umask`, so a
shared-group setup (umask 002) works (docs/security.md)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path

from ledgerx.errors import LedgerError

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else by the
    set-and-restore dance under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        old = os.umask(0o022)
        os.umask(old)
        return old


def open_lock_file(path: Path) -> int:
    """Open (creating it `0666 & ~umask`) a lock file for flock, never through a symlink
    (O_NOFOLLOW) and never a file with other names (a hard link to a file elsewhere would be
    truncated by the daemon's pid write). Returns the fd; LedgerError when refused."""
    try:
        fd = os.open(
            path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666
        )
    except OSError as e:
        if e.errno == 40:  # ELOOP: the last component is a symlink
            raise LedgerError(f"{path}: lock file is a symlink; refusing to follow it") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        why = "not a regular file" if not stat.S_ISREG(st.st_mode) else "has other hard links"
        raise LedgerError(f"{path}: lock file {why}; refusing to use it")
    os.set_blocking(fd, True)
    return fd


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
    import tempfile  # here: with shutil and the compression modules, ~3 ms of an indexing process

    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600 whatever the umask
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


def _hole(fd: int, start: int, end: int) -> bool:
    """Whether [start, end) of the file is a hole (no data extent: reads as zeros)."""
    try:
        return os.lseek(fd, start, os.SEEK_DATA) >= end
    except OSError as e:
        return e.errno == errno.ENXIO  # no data at all after start; else unsupported: read it


def data_end(path: Path | str, size: int) -> int:
    """Where the data of a part file of `size` bytes ends: after its last non-NUL byte. A
    trailing run of NUL bytes is space a writer preallocated (zeros written ahead so fdatasync
    commits no metadata), not yet written; NUL never appears in a valid line (docs/format.md).
    Unreadable: `size`, and the scanner reports the file."""
    if size <= 0:
        return max(size, 0)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return size
    try:
        if os.pread(fd, 1, size - 1) != b"\0":
            return size
        end = size
        while end > 0:
            start = max(0, end - (1 << 20))
            if _hole(fd, start, end):
                end = start  # a sparse stretch reads as zeros: nothing to read
                continue
            buf = os.pread(fd, end - start, start)
            if len(buf) != end - start:
                return size
            stripped = len(buf.rstrip(b"\0"))
            if stripped:
                return start + stripped
            end = start
        return 0
    except OSError:
        return size
    finally:
        os.close(fd)


class ForkSafeLock:
    """A `threading.Lock` for `with`, made anew in a forked child: a fork while another thread
    held it must not leave the child deadlocked (the per-process DuckDB pools use it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> ForkSafeLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

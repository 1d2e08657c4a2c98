"""Opening published index files: read-only connections that never see a stale cached instance,
the checkpoints and meta of a published file, and a clear error when a foreign process holds
one read-write."""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ledgerx.errors import IndexLockedError
from ledgerx.index.publish import copy_file, file_ident
from ledgerx.index.safesql import forbid_external_access

Checkpoints = dict[str, tuple[int, int, int]]


def read_state(path: Path) -> tuple[Checkpoints, dict[str, str]]:
    """Checkpoints {file: (offset, events, bad_lines)} and meta of a published index file."""
    con = open_readonly(path, external_access=False)
    try:
        return state_of(con)
    finally:
        con.close()


def state_of(con: duckdb.DuckDBPyConnection) -> tuple[Checkpoints, dict[str, str]]:
    """Checkpoints and meta of the index that `con` uses."""
    files = {
        f: (o, e, b)
        for f, o, e, b in con.execute(
            'SELECT file, "offset", events, bad_lines FROM _ledger_files'
        ).fetchall()
    }
    meta = dict(con.execute("SELECT key, value FROM _index_meta").fetchall())
    return files, meta


_OPEN_RETRIES = 20


def open_readonly(path: Path, external_access: bool = True) -> duckdb.DuckDBPyConnection:
    """A fresh read-only connection to an index file. ATTACH into a private in-memory database
    rather than `connect(path)`: DuckDB caches instances by path, and a cached instance would
    keep serving the file that a publish has since replaced.

    The name must point at the same file before and after the ATTACH: a publish that swapped
    the names meanwhile may have handed us the alternate, which the next round updates in place
    (it then holds DuckDB's write lock on it, or finds our read lock and leaves it alone), so the
    open is retried on the new file, and a lock error met in that race never surfaces."""
    for attempt in range(_OPEN_RETRIES):
        before = file_ident(path)
        try:
            con = _attach_readonly(path)
        except duckdb.Error as e:
            if attempt + 1 < _OPEN_RETRIES and file_ident(path) != before:
                time.sleep(0.001 * attempt)
                continue
            if isinstance(e, duckdb.IOException):
                raise_if_foreign_lock(path, e)
            raise
        if file_ident(path) == before or attempt + 1 == _OPEN_RETRIES:
            break
        con.close()
    try:
        con.execute("SET enable_progress_bar = false")  # it would print on stdout
        if not external_access:
            forbid_external_access(con)
    except BaseException:
        con.close()
        raise
    return con


def _attach_readonly(path: Path) -> duckdb.DuckDBPyConnection:
    con = _memory_db()
    try:
        con.execute(f"ATTACH {sql_str(str(path))} AS ledger (READ_ONLY)")
        con.execute("USE ledger")
    except BaseException:
        con.close()
        raise
    return con


def raise_if_foreign_lock(path: Path, e: BaseException) -> None:
    """DuckDB's "Could not set lock" on a published file means some other process opened it
    read-write (ledgerx itself never does): say who, and how to open it instead."""
    msg = str(e)
    if "Could not set lock" not in msg:
        return
    m = re.search(r"PID (\d+)", msg)
    who = f"process {m.group(1)}" if m else "another process"
    raise IndexLockedError(
        f"{path} is held open read-write by {who}; open it with "
        "duckdb.connect(path, read_only=True) (or ledgerx.Reader) instead, or close that "
        "connection; `ledgerx rebuild` publishes a fresh copy that it does not lock"
    ) from None


@dataclass
class PublishedState:
    """What a round needs from the published runs index: its checkpoints and meta, the
    `_index_runs` row of the round that made it, and whether `work` already holds a copy."""

    ckpt: Checkpoints
    meta: dict[str, str]
    last_runs: list[tuple[Any, ...]]
    copied: bool


def read_state_any(path: Path, work: Path) -> PublishedState:
    """read_state of the published file; when a foreign read-write connection locks it, copy
    it at the file level (no DuckDB lock needed) and read the copy: `copied` then means `work`
    already holds the copy and the round must republish."""
    try:
        con = open_readonly(path, external_access=False)
        copied = False
    except IndexLockedError:
        copy_file(path, work)
        con, copied = open_readonly(work, external_access=False), True
    try:
        ckpt, meta = state_of(con)
        rows = con.execute(
            "SELECT * FROM _index_runs WHERE gen = ?", [int(meta.get("gen", "0"))]
        ).fetchall()
        return PublishedState(ckpt, meta, rows, copied)
    finally:
        con.close()


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# A fresh in-memory DuckDB made ahead of need (a new instance costs tens of ms): the daemon makes
# one while it waits, and its next round's `open_readonly` takes it instead of making one then.
_SPARE: dict[int, duckdb.DuckDBPyConnection] = {}  # by pid: never one from before a fork
_SPARE_LOCK = threading.Lock()


def _reset_spare_lock() -> None:  # a fork while another thread held it must not deadlock
    global _SPARE_LOCK
    _SPARE_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_spare_lock)


def prepare_spare() -> None:
    """Make the in-memory DuckDB that this process's next `open_readonly` will use, unless
    one is ready. It is a new, never used instance, as `open_readonly` would make."""
    pid = os.getpid()
    with _SPARE_LOCK:
        if pid in _SPARE:
            return
    con = duckdb.connect(":memory:")
    with _SPARE_LOCK:
        if pid not in _SPARE:
            _SPARE[pid] = con
            return
    con.close()


def _memory_db() -> duckdb.DuckDBPyConnection:
    with _SPARE_LOCK:
        con = _SPARE.pop(os.getpid(), None)
    return con if con is not None else duckdb.connect(":memory:")

"""Opening published index files: read-only connections that never see a stale cached instance,
the checkpoints and meta of a published file, and a clear error when a foreign process holds
one read-write."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from ledgerx.errors import IndexLockedError
from ledgerx.index.publish import copy_file
from ledgerx.index.safesql import forbid_external_access


def read_state(path: Path) -> tuple[dict[str, tuple[int, int, int]], dict[str, str]]:
    """Checkpoints {file: (offset, events, bad_lines)} and meta of a published index file."""
    con = open_readonly(path, external_access=False)
    try:
        files = {
            f: (o, e, b)
            for f, o, e, b in con.execute(
                'SELECT file, "offset", events, bad_lines FROM _ledger_files'
            ).fetchall()
        }
        meta = dict(con.execute("SELECT key, value FROM _index_meta").fetchall())
        return files, meta
    finally:
        con.close()


def open_readonly(path: Path, external_access: bool = True) -> duckdb.DuckDBPyConnection:
    """A fresh read-only connection to an index file. ATTACH into a private in-memory database
    rather than `connect(path)`: DuckDB caches instances by path, and a cached instance would
    keep serving the file that a publish has since replaced."""
    con = duckdb.connect(":memory:")
    try:
        try:
            con.execute(f"ATTACH {sql_str(str(path))} AS ledger (READ_ONLY)")
        except duckdb.IOException as e:
            raise_if_foreign_lock(path, e)
            raise
        con.execute("USE ledger")
        con.execute("SET enable_progress_bar = false")  # it would print on stdout
        if not external_access:
            forbid_external_access(con)
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


def read_state_any(
    path: Path, work: Path
) -> tuple[dict[str, tuple[int, int, int]], dict[str, str], bool]:
    """read_state of the published file; when a foreign read-write connection locks it, copy
    it at the file level (no DuckDB lock needed) and read the copy. Returns (checkpoints, meta,
    copied): `copied` means `work` already holds the copy and the round must republish."""
    try:
        return (*read_state(path), False)
    except IndexLockedError:
        copy_file(path, work)
        return (*read_state(work), True)


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"

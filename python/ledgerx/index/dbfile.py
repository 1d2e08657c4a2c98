"""Opening published index files: read-only connections that never see a stale cached instance,
the checkpoints and meta of a published file, and a clear error when a foreign process holds
one read-write."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledgerx._record import recordclass
from ledgerx.errors import ConfigError, IndexLockedError
from ledgerx.fsutil import ForkSafeLock
from ledgerx.index.engine import duckdb, take_prestarted
from ledgerx.index.publish import copy_file, file_ident, tmp_for
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


@recordclass
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
        con, alias = attach_published(path)
        copied = False
    except IndexLockedError:
        copy_file(path, work)
        con, alias = attach_published(work)
        copied = True
    try:
        ckpt, meta = state_of(con)
        return PublishedState(ckpt, meta, last_runs(con, meta), copied)
    finally:
        release(con, alias)


def last_runs(con: duckdb.DuckDBPyConnection, meta: dict[str, str]) -> list[tuple[Any, ...]]:
    """The `_index_runs` row of the round that made the index `con` uses, `started_at` in epoch
    microseconds (a TIMESTAMPTZ fetched into Python would import zoneinfo: ~10 ms of a fresh
    process)."""
    q = """SELECT gen, mode, epoch_us(started_at), seconds, events, bad_lines, bytes, files
           FROM _index_runs WHERE gen = ?"""
    return con.execute(q, [int(meta.get("gen", "0"))]).fetchall()


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def json_list(xs: list[Any]) -> str:
    """A list as one JSON text parameter, read in SQL as `?::JSON::VARCHAR[]` (or BIGINT[], …).
    A list (or datetime, bytes) parameter makes DuckDB's Python layer import decimal, uuid and
    platform to test its items' types: ~15 M instructions of a one-event `ledgerx rebuild`
    process, whose parameters are therefore only str, int, float, bool and None."""
    return json.dumps(xs, ensure_ascii=False)


# The indexer's in-memory DuckDB, one per process and kept for its life: a round attaches the
# files it reads or updates in place into it (an ATTACH costs a few ms; a new DuckDB instance tens
# of ms, twice per round before) and detaches them before it publishes. By pid: a forked child
# never touches its parent's instance (DuckDB's threads do not survive a fork).
_WORK_DB: dict[int, duckdb.DuckDBPyConnection] = {}
_WORK_LOCK = ForkSafeLock()
_ALIASES = itertools.count()


def prepare_work_db() -> None:
    """Make this process's indexer DuckDB now (the daemon does it while it waits) rather than
    in the next round."""
    work_cursor().close()


def work_cursor() -> duckdb.DuckDBPyConnection:
    """A new cursor (its own transaction, temp tables and `USE`) on this process's indexer
    DuckDB."""
    pid = os.getpid()
    with _WORK_LOCK:
        db = _WORK_DB.get(pid)
        if db is None:  # the one `ledgerx rebuild` started early, or a new one
            db = _WORK_DB[pid] = take_prestarted() or duckdb.connect(":memory:")
        return db.cursor()


def new_alias(prefix: str = "ledgerx") -> str:
    """A database name no other ATTACH in this process uses: names are the DuckDB instance's,
    and rounds of several roots may share this process's instance from several threads."""
    return f"{prefix}_{next(_ALIASES)}"


def attach(cur: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> str:
    """ATTACH `path` under a new alias and make it the cursor's default database; the alias.
    Read-write, DuckDB takes its exclusive lock on the file, as `connect` would, and the file
    counts as written through the instance until `release` (see `fsync_off`)."""
    alias = new_alias()
    if not read_only:
        _enter_writer(alias)
    try:
        cur.execute(f"ATTACH {sql_str(str(path))} AS {alias}{' (READ_ONLY)' if read_only else ''}")
    except BaseException:
        _leave_writer(alias)
        raise
    try:
        cur.execute(f"USE {alias}")
    except BaseException:
        release(cur, alias)
        raise
    return alias


def release(cur: duckdb.DuckDBPyConnection, alias: str | None) -> None:
    """Close the cursor (what it left uncommitted is rolled back) and detach `alias`: the file
    is closed and DuckDB's lock on it released. Without an alias: just close `cur`."""
    try:
        cur.close()
    finally:
        if alias is not None:
            c = work_cursor()
            try:
                c.execute(f"DETACH DATABASE IF EXISTS {alias}")
            finally:
                c.close()
                _leave_writer(alias)


# DuckDB's `fsync_mode` is its instance's setting. The files written through this process's
# instance (by pid: the aliases attached read-write, not yet released) and whether a round has
# turned its fsyncs off: then no other file may be attached read-write until it is back on.
_WRITERS: dict[int, set[str]] = {}
_FSYNC_OFF: set[int] = set()
_GATE_POLL_S = 0.001


def _enter_writer(alias: str) -> None:
    pid = os.getpid()
    while True:
        with _WORK_LOCK:
            if pid not in _FSYNC_OFF:
                _WRITERS.setdefault(pid, set()).add(alias)
                return
        time.sleep(_GATE_POLL_S)  # another round's side files: a few ms


def _leave_writer(alias: str) -> None:
    with _WORK_LOCK:
        _WRITERS.get(os.getpid(), set()).discard(alias)


@contextlib.contextmanager
def fsync_off(con: duckdb.DuckDBPyConnection, alias: str | None) -> Iterator[None]:
    """DuckDB's fsyncs off while the block runs, for files that stay private until `publish`
    fsyncs them. `alias`: the round's file when `con` is this process's shared instance (else
    `con` is the round's own instance): the fsyncs go off only while no other file is written
    through it, and another round's read-write attach waits until they are back on; when
    another is being written, they stay on (its commits must be durable)."""
    pid = os.getpid()
    with _WORK_LOCK:
        alone = alias is None or (_WRITERS.get(pid, set()) == {alias} and pid not in _FSYNC_OFF)
        if alone and alias is not None:
            _FSYNC_OFF.add(pid)
    if not alone:
        yield
        return
    try:
        con.execute("SET fsync_mode = 'NONE'")
        try:
            yield
        finally:
            con.execute("RESET fsync_mode")
    finally:
        if alias is not None:
            with _WORK_LOCK:
                _FSYNC_OFF.discard(pid)


def attach_published(path: Path) -> tuple[duckdb.DuckDBPyConnection, str]:
    """A work cursor with the published file `path` attached read-only, as `open_readonly`
    opens it: the name must point at the same file before and after the ATTACH."""
    attempt = 0
    while True:
        attempt += 1
        before = file_ident(path)
        cur = work_cursor()
        try:
            alias = attach(cur, path, read_only=True)
        except duckdb.Error as e:
            cur.close()
            if attempt < _OPEN_RETRIES and file_ident(path) != before:
                time.sleep(0.001 * attempt)
                continue
            if isinstance(e, duckdb.IOException):
                raise_if_foreign_lock(path, e)
            raise
        if file_ident(path) == before or attempt >= _OPEN_RETRIES:
            return cur, alias
        release(cur, alias)


# What this process last published, per runs file: (its identity, its state). A later round
# takes the state from here instead of opening the file while the file is provably the one it
# published (same inode, size and mtime; a WAL a foreign writer left beside it is never part of
# the index) and no other process holds it read-write: the daemon's rounds, and
# `wait_indexed`'s in a loop, skip the read.
_PUBLISHED: dict[tuple[int, str], tuple[str, PublishedState]] = {}
# The same for the file it published before that one: the alternate, once replaced.
_REPLACED: dict[tuple[int, str], tuple[str, PublishedState]] = {}


def remember_published(path: Path, ident: str, state: PublishedState) -> None:
    """After publishing over `path` the file whose identity is `ident` (its state file is
    written before the publish: `save_state_ahead`)."""
    key = (os.getpid(), str(path))
    with _WORK_LOCK:
        if (prev := _PUBLISHED.get(key)) is not None:
            _REPLACED[key] = prev
        _PUBLISHED[key] = (ident, state)


def replaced_state(path: Path, ident: str) -> PublishedState | None:
    """The state this process published in the file whose identity is `ident` before it
    published another over `path` (the alternate, when it is still that very file: same inode,
    size and mtime); None when it does not know: the round reads the file."""
    with _WORK_LOCK:
        hit = _REPLACED.get((os.getpid(), str(path)))
    return hit[1] if hit is not None and hit[0] == ident else None


def state_file(path: Path) -> Path:
    """Beside a published runs file: its state as the round that published it wrote it."""
    return path.with_name(f".{path.name}.state.json")


def save_state_ahead(path: Path, ident: str, state: PublishedState) -> None:
    """Before publishing over `path` the file whose identity is `ident`: its `state`, for the
    next process's round, which reads this instead of the file (an ATTACH, three queries and a
    DETACH, ~8 ms of a one-event `ledgerx rebuild`) while the file keeps that identity
    (`published_state`), and for `wait_indexed`. The state of the file published now stays
    beside it (`previous`), so that whichever file the name points at while the publish
    renames, its state is there: a waiter woken by the rename reads it instead of the file.
    A cache, written by rename and never fsynced: a missing, unreadable or older one sends the
    reader to the file."""
    doc: dict[str, Any] = {
        "ident": ident,
        "ckpt": state.ckpt,
        "meta": state.meta,
        "last_runs": state.last_runs,
    }
    now = file_ident(path)
    prev = next((e for e in _state_entries(path) if now and e.get("ident") == now), None)
    if prev is not None:
        doc["previous"] = {k: v for k, v in prev.items() if k != "previous"}
    tmp = tmp_for(state_file(path))
    try:
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, state_file(path))
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _state_entries(path: Path) -> list[dict[str, Any]]:
    """The entries of the state file beside `path` (the newest, then the one before)."""
    try:
        doc = json.loads(state_file(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(doc, dict):
        return []
    return [e for e in (doc, doc.get("previous")) if isinstance(e, dict)]


def _load_state(path: Path, ident: str) -> PublishedState | None:
    """The state `save_state_ahead` wrote for the file `path` with identity `ident`; else None."""
    for entry in _state_entries(path):
        try:
            if entry["ident"] != ident:
                continue
            ckpt = {str(f): (int(o), int(e), int(b)) for f, (o, e, b) in entry["ckpt"].items()}
            meta = {str(k): str(v) for k, v in entry["meta"].items()}
            return PublishedState(ckpt, meta, [tuple(r) for r in entry["last_runs"]], False)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
    return None


def remembered_offsets(path: Path, ident: str) -> dict[str, int] | None:
    """{part: indexed offset} of the published file `path` whose identity is `ident`, when this
    process published that very file or its publisher's state file describes it (None
    otherwise): `wait_indexed`'s look after a publish, without opening the file."""
    with _WORK_LOCK:
        hit = _PUBLISHED.get((os.getpid(), str(path)))
    st = hit[1] if hit is not None and hit[0] == ident else _load_state(path, ident)
    if st is None:
        return None
    return {rel: off for rel, (off, _, _) in st.ckpt.items()}


def forget_published(path: Path) -> None:
    with _WORK_LOCK:
        _PUBLISHED.pop((os.getpid(), str(path)), None)
        _REPLACED.pop((os.getpid(), str(path)), None)


def published_state(path: Path, work: Path) -> PublishedState:
    """`read_state_any(path, work)`, answered from memory when this process published `path`,
    or from its state file (`save_state_ahead`) when another did, and nothing can have changed it
    since (the same inode, size and mtime)."""
    with _WORK_LOCK:
        hit = _PUBLISHED.get((os.getpid(), str(path)))
    ident = file_ident(path)
    st = hit[1] if hit is not None and hit[0] == ident else _load_state(path, ident)
    # A foreign read-write connection on the file (DuckDB's write lock) sends the round to
    # `read_state_any`, which copies the file and publishes the copy even with no new bytes.
    if st is not None and write_locked(path) is False:
        return PublishedState(dict(st.ckpt), dict(st.meta), list(st.last_runs), False)
    forget_published(path)
    return read_state_any(path, work)


_FLOCK = "hhqqi"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (+ padding)


def write_locked(path: Path) -> bool | None:
    """Whether another process holds a POSIX write lock on `path` (DuckDB's read-write open
    takes one); None when that cannot be told here (not Linux, or the query failed)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        req = struct.pack(_FLOCK, fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0)
        req += b"\0" * (32 - len(req))
        res = fcntl.fcntl(fd, fcntl.F_GETLK, req)
        return bool(struct.unpack_from(_FLOCK, res)[0] != fcntl.F_UNLCK)
    except OSError:
        return None
    finally:
        os.close(fd)


def configure_shared(
    con: duckdb.DuckDBPyConnection, work: Path, memory_limit: str | None, threads: int
) -> None:
    """A round's DuckDB settings on this process's work DuckDB, which keeps settings between
    rounds: what this round leaves unset is reset, and what the last round set is not set
    again (a SET costs up to a millisecond)."""
    con.execute("SET enable_progress_bar = false")  # per connection; DuckDB's bar goes to stdout
    want = (memory_limit, threads, str(work))
    with _WORK_LOCK:
        if _APPLIED.get(os.getpid()) == want:
            return
        _APPLIED.pop(os.getpid(), None)  # until all of them are set again
    con.execute("SET preserve_insertion_order = false")
    if memory_limit:
        try:
            con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
        except duckdb.Error as e:
            raise ConfigError(f"memory_limit {memory_limit!r}: {e}") from None
    else:
        con.execute("RESET memory_limit")
    con.execute(f"SET threads = {int(threads)}" if threads else "RESET threads")
    try:
        con.execute(f"SET temp_directory = {sql_str(str(work) + '.spill')}")
    except duckdb.Error:  # it spilled into the folder set before: DuckDB keeps that one
        pass
    with _WORK_LOCK:
        _APPLIED[os.getpid()] = want


# The settings the last round applied to this process's work DuckDB (memory limit, threads,
# work file): the same again are not re-applied.
_APPLIED: dict[int, tuple[str | None, int, str]] = {}


def _memory_db() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def state_after(
    con: duckdb.DuckDBPyConnection,
    start: Checkpoints,
    states: list[Any],
    meta: dict[str, Any],
    row: list[Any],
    has_dups: bool,
) -> PublishedState:
    """What a round's committed work file holds, for the next round of this process: the
    checkpoints the round started from (`start`) moved by its scanned `states` as `record` wrote
    them, the `meta` and `_index_runs` `row` it wrote (as `last_runs` reads it). Read from the
    file instead when duplicates made `record` recount files in SQL."""
    if has_dups:
        ckpt, meta = state_of(con)
        return PublishedState(ckpt, meta, last_runs(con, meta), False)
    ckpt = dict(start)
    ckpt.update((s.rel, s.checkpoint()) for s in states if s.moved)
    return PublishedState(ckpt, dict(meta), [tuple(row)], False)

"""The indexer: part files → `index/runs.duckdb` (+ alerts.duckdb, catalog.duckdb), exactly once.

One round:
  1. take `index/.lock` (a second indexer gets IndexBusyError);
  2. read the per-file checkpoints of the published index and stat the part files; nothing new
     → return without touching any file;
  3. make the work file: a fresh one (full rebuild) or a kernel copy of the published one;
  4. in ONE DuckDB transaction: stream the Rust scanner's Arrow batches into `events`, drop
     duplicate event ids, derive the other tables from the new rows, record the new checkpoints;
  5. checkpoint, fsync, and publish alerts/catalog, then runs.duckdb, by atomic rename.

A crash before the final rename leaves the published index as it was (the work file is deleted
by the next round); a crash after it leaves the new one. Either way the checkpoints and the rows
moved together, so the next round neither skips nor repeats a byte.
"""

from __future__ import annotations

import math
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ledgerx import _core
from ledgerx.config import events_dir, resolve_root
from ledgerx.errors import ConfigError, IndexLockedError
from ledgerx.index import schema as S
from ledgerx.index.hooks import PublishRound, run_publish_hooks
from ledgerx.index.publish import (
    IndexPaths,
    copy_file,
    index_lock,
    publish,
    remove_stale_tmp,
)
from ledgerx.index.safesql import forbid_external_access
from ledgerx.index.upcast import Upcaster, add_upcast_columns, default_upcaster
from ledgerx.retention import load_archived, pending_archived

DEFAULT_STALE_AFTER_S = 3600.0
DEFAULT_CHUNK_BYTES = 32 << 20
MAX_REPORTED_BAD = 1000

Progress = Callable[[int, int], None]
"""progress(done_bytes, total_bytes), called from the indexing thread."""

_DEFAULT = object()
_TRACE = bool(os.environ.get("LEDGERX_INDEX_TRACE"))
_T0 = [0.0]


def _trace(what: str) -> None:
    """LEDGERX_INDEX_TRACE=1: time of each step on stderr (for benchmarks)."""
    if _TRACE:
        now = time.monotonic()
        import resource
        import sys

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"[index] {what}: {now - _T0[0]:.3f}s (peak rss {rss} MiB)", file=sys.stderr)
        _T0[0] = now


@dataclass
class IndexReport:
    """What one indexing round did."""

    mode: str  # "full", "incremental" or "noop"
    events: int = 0
    bad_lines: int = 0
    duplicates: int = 0
    bytes: int = 0
    files: int = 0
    seconds: float = 0.0
    gen: int = 0
    published: bool = False
    db: str = ""
    bad: list[tuple[str, int, int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"indexed {self.events} events ({self.bytes / 1e6:.1f} MB from {self.files} files), "
            f"{self.bad_lines} bad lines, {self.duplicates} duplicates skipped, "
            f"{self.seconds:.2f} s [{self.mode}]"
        )


@dataclass
class _FileState:
    rel: str
    day: str
    start: int  # checkpoint at the start of the round
    size: int
    end: int = 0
    events: int = 0
    bad: int = 0
    old_events: int = 0
    old_bad: int = 0


def list_part_files(ev: Path, since_date: str | None = None) -> list[tuple[str, str, int]]:
    """(path relative to events/, day, size) of every regular part file, sorted."""
    out: list[tuple[str, str, int]] = []
    if not ev.is_dir():
        return out
    for d in sorted(os.scandir(ev), key=lambda e: e.name):
        if not d.name.startswith("day=") or not d.is_dir(follow_symlinks=False):
            continue
        day = d.name[4:]
        if since_date is not None and day < since_date:
            continue
        for f in sorted(os.scandir(d.path), key=lambda e: e.name):
            if f.name.endswith(".jsonl") and f.is_file(follow_symlinks=False):
                out.append((f"{d.name}/{f.name}", day, f.stat(follow_symlinks=False).st_size))
    return out


def irregular_entries(ev: Path) -> list[str]:
    """Day directories and part files that are not what they claim (a symlink, a FIFO, a
    file in place of a directory): never read, always reported."""
    out: list[str] = []
    if not ev.is_dir():
        return out
    for d in sorted(os.scandir(ev), key=lambda e: e.name):
        if not d.name.startswith("day="):
            continue
        if not d.is_dir(follow_symlinks=False):
            kind = "symlink" if d.is_symlink() else "not a directory"
            out.append(f"{d.name}: skipped ({kind})")
            continue
        for f in sorted(os.scandir(d.path), key=lambda e: e.name):
            if f.name.endswith(".jsonl") and not f.is_file(follow_symlinks=False):
                kind = "symlink" if f.is_symlink() else "not a regular file"
                out.append(f"{d.name}/{f.name}: skipped ({kind})")
    return out


def check_since_date(since_date: str | None) -> str | None:
    if since_date is None:
        return None
    try:
        return date.fromisoformat(since_date).isoformat()
    except ValueError:
        raise ConfigError(f"--since-date must be YYYY-MM-DD, got {since_date!r}") from None


def check_stale_after(stale_after: float | None) -> None:
    if stale_after is None:
        return
    ok = isinstance(stale_after, (int, float)) and not isinstance(stale_after, bool)
    if not ok or not math.isfinite(stale_after) or stale_after < 0:
        raise ConfigError(f"stale_after must be a number of seconds >= 0, not {stale_after!r}")


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
            con.execute(f"ATTACH {_sql_str(str(path))} AS ledger (READ_ONLY)")
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


def _read_state_any(
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


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _has_newline(path: Path, start: int, size: int) -> bool:
    """Whether [start, size) holds a complete line: a round that cannot advance any checkpoint
    (only an unterminated tail is new) must not rewrite the index."""
    if size - start > (1 << 20):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return b"\n" in f.read(size - start)
    except OSError:
        return True  # let the scanner report it


class _Scanner:
    """Runs the Rust scanner in a producer thread (it releases the GIL), so the next chunk is
    read and parsed while DuckDB stores the previous one. Memory stays bounded: at most
    `depth` chunks of about `chunk` bytes of log wait in the queue."""

    def __init__(
        self,
        ev: Path,
        states: list[_FileState],
        *,
        strict: bool,
        chunk: int,
        threads: int,
        upcaster: Upcaster | None,
        progress: Progress | None,
        depth: int = 1,
    ) -> None:
        self.ev, self.states, self.strict, self.chunk = ev, states, strict, chunk
        self.threads, self.upcaster, self.progress = threads, upcaster, progress
        self.newest = upcaster.newest_versions() if upcaster is not None else {}
        self.bad: list[tuple[str, int, int, str]] = []
        self.upcast_errors: list[str] = []
        self.file_errors: list[str] = []
        self.total = sum(s.size - s.start for s in states)
        self.done = 0
        self.rows = 0
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="ledgerx-scan", daemon=True)

    def start(self) -> None:
        self._t.start()

    def close(self) -> None:
        self._stop.set()
        while self._t.is_alive():
            try:
                self._q.get_nowait()
            except queue.Empty:
                self._t.join(0.05)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            todo = list(self.states)
            for s in todo:
                s.end = s.start
            # Each call scans up to `width` files in parallel, `chunk` bytes of each at most.
            width = self.threads or os.cpu_count() or 1
            while todo and not self._stop.is_set():
                group, todo = todo[:width], todo[width:]
                batches = _core.scan_files(
                    str(self.ev),
                    [(s.rel, s.end) for s in group],
                    strict=self.strict,
                    max_bytes=self.chunk,
                    threads=self.threads,
                )
                out: list[pa.RecordBatch] = []
                for s, b in zip(group, batches, strict=True):
                    if b.error is not None:
                        # Unreadable (e.g. replaced by a FIFO): report it, index the rest.
                        self.file_errors.append(b.error)
                        continue
                    advanced = b.end_offset - s.end
                    s.end = b.end_offset
                    s.events += b.num_rows
                    s.bad += len(b.bad_lines)
                    for off, ln, reason in b.bad_lines:
                        self.bad.append((s.rel, off, ln, reason))
                    self.done += advanced
                    if b.num_rows:
                        out.append(self._to_arrow(b, s.rel))
                    # More complete lines may follow (chunked read); an unterminated tail or a
                    # file that grew since it was listed waits for the next round.
                    if advanced > 0 and s.end < s.size and b.pending_bytes > 0:
                        todo.append(s)
                if out and not self._put(out):
                    return
                if self.progress is not None:
                    self.progress(self.done, self.total)
            self._put(None)
        except BaseException as e:  # handed to the consumer, raised in the indexing thread
            self._put(e)

    def _to_arrow(self, b: Any, rel: str) -> pa.RecordBatch:
        rb = pa.record_batch(b)
        n = rb.num_rows
        self.rows += n
        rb = add_upcast_columns(rb, self.upcaster, self.newest, self.upcast_errors)
        cols = list(rb.columns)
        # `data` was checked by the scanner: typed as JSON (a zero-copy wrap), DuckDB stores
        # it without parsing it again as it would a VARCHAR cast to JSON.
        i = rb.schema.get_field_index("data")
        cols[i] = pa.ExtensionArray.from_storage(_JSON, cols[i])
        file_col = pa.repeat(pa.scalar(rel, pa.string()), n)
        return pa.RecordBatch.from_arrays([*cols, file_col], schema=SCAN_SCHEMA)

    def reader(self, failed: list[BaseException]) -> pa.RecordBatchReader:
        """The scanned batches as one Arrow stream, in scan order. An error of the scan ends
        the stream and is appended to `failed` (for the caller to raise once DuckDB is done:
        raised inside the stream, DuckDB would replace it with its own exception)."""

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                while True:
                    item = self._q.get()
                    if item is None:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield from item
            except BaseException as e:
                failed.append(e)

        return pa.RecordBatchReader.from_batches(SCAN_SCHEMA, batches())


_JSON = pa.json_(pa.string())

SCAN_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("schema_version", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("run_id", pa.string()),
        ("writer", pa.string()),
        ("seq", pa.int64()),
        ("data", _JSON),
        ("offset", pa.int64()),
        ("line_bytes", pa.int64()),
        ("data_upcast", pa.string()),
        ("upcast_version", pa.int32()),
        ("file", pa.string()),
    ]
)


def build_index(
    root: str | os.PathLike[str] | None = None,
    *,
    db: str | os.PathLike[str] | None = None,
    since_date: str | None = None,
    full_rebuild: bool = False,
    strict: bool = False,
    stale_after: float | None = None,
    progress: Progress | None = None,
    upcaster: Any = _DEFAULT,
    threads: int = 0,
    memory_limit: str | None = "384MB",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    durable: bool = True,
    hook_options: Mapping[str, Any] | None = None,
) -> IndexReport:
    """Index the new bytes of every part file (or everything, with `full_rebuild`) and publish.

    `since_date` (YYYY-MM-DD) limits the days scanned; `stale_after` (seconds) sets when a
    running run with no new event counts as abandoned; `upcaster` defaults to the root's schema
    registry (None disables upcasting). Raises IndexBusyError when another indexer holds the
    lock. Returns an IndexReport; `mode == "noop"` means no file was touched.
    After each round the registered publish hooks run (`ledgerx.index.hooks`), given
    `hook_options`; e.g. `{"legacy_projection": True}` for the legacy projection, which
    `ledgerx.legacy` registers.
    """
    t0 = time.monotonic()
    started_at = datetime.now(timezone.utc)
    since = check_since_date(since_date)
    check_stale_after(stale_after)
    rootp = resolve_root(root)
    ev = events_dir(rootp)
    paths = IndexPaths.for_root(rootp, db)
    rep = IndexReport(mode="noop", db=str(paths.runs))
    with index_lock(paths):
        remove_stale_tmp(paths)
        _T0[0] = t0
        incremental = paths.runs.exists() and not full_rebuild
        ckpt: dict[str, tuple[int, int, int]] = {}
        meta: dict[str, str] = {}
        work = paths.tmp_for(paths.runs)
        copied = False
        if incremental:
            ckpt, meta, copied = _read_state_any(paths.runs, work)
        states: list[_FileState] = []
        parts = list_part_files(ev, since)
        rep.warnings.extend(irregular_entries(ev))
        for rel, day, size in parts:
            off, n_ev, n_bad = ckpt.get(rel, (0, 0, 0))
            if size < off:
                rep.warnings.append(f"{rel}: file is {size} bytes, below its indexed offset {off}")
            elif size > off and _has_newline(ev / rel, off, size):
                states.append(_FileState(rel, day, off, size, old_events=n_ev, old_bad=n_bad))
        want_stale = str(float(stale_after)) if stale_after is not None else None
        meta_change = want_stale is not None and meta.get("stale_after_s") != want_stale
        sides_missing = not (paths.alerts.exists() and paths.catalog.exists())
        # Days moved to archive/ by retention: their Parquet stands in for the JSONL.
        arch = pending_archived(rootp, ckpt, since, {rel for rel, _, _ in parts})
        # An index of an older format is upgraded (its views replaced) even with no new bytes.
        old_format = incremental and meta.get("format") != S.INDEX_FORMAT
        quiet = not (states or arch or meta_change or sides_missing or copied or old_format)
        if incremental and quiet:
            run_publish_hooks(PublishRound(paths, False, durable, hook_options or {}))
            rep.seconds = time.monotonic() - t0
            return rep

        _trace("plan")
        rep.mode = "incremental" if incremental else "full"
        gen = int(meta.get("gen", "0")) + 1 if incremental else 1
        rep.gen = gen
        up = default_upcaster(ev) if upcaster is _DEFAULT else upcaster
        if incremental and not copied:
            copy_file(paths.runs, work)
            _trace("copy")
        con = duckdb.connect(str(work))
        scanner: _Scanner | None = None
        try:
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET enable_progress_bar = false")  # DuckDB's own bar goes to stdout
            if memory_limit:
                con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            con.execute(f"SET temp_directory = {_sql_str(str(work) + '.spill')}")
            scanner = _Scanner(
                ev,
                states,
                strict=strict,
                chunk=chunk_bytes,
                threads=threads,
                upcaster=up,
                progress=progress,
            )
            scanner.start()
            # The work file is private until the rename publishes it, so a crash mid-build only
            # loses the work file: the events INSERT commits on its own (DuckDB writes its full
            # row groups to the file as they fill, so memory stays bounded), and the rest of the
            # round is one transaction.
            if not incremental:
                for ddl in S.TABLES_DDL:
                    con.execute(ddl)
            if not incremental or meta.get("format") != S.INDEX_FORMAT:
                if incremental:
                    _upgrade_format(con)
                for ddl in S.VIEWS_DDL:
                    con.execute(ddl)
            # One INSERT over a stream of the scanner's batches: DuckDB's threads pull batches
            # as the scanner produces them and write whole row groups, where an INSERT per chunk
            # (each its own commit) left a partial row group to be rewritten at every commit.
            failed: list[BaseException] = []
            con.register("_scan", scanner.reader(failed))
            con.execute(
                """INSERT INTO events
                   SELECT event_id, event_type, schema_version, ts, run_id, writer, seq, data,
                          file, "offset", line_bytes, ?, data_upcast, upcast_version
                   FROM _scan""",
                [gen],
            )
            con.unregister("_scan")
            if failed:  # the scan failed: the stream ended early, the work file is dropped
                raise failed[0]
            _trace("insert events")
            con.begin()
            arch_done, arch_bad, arch_rows, arch_bytes = load_archived(
                con, arch, gen, up, scanner.upcast_errors, strict=strict
            )
            for pa_, n_ev, n_bad in arch_done:
                ap = pa_.part
                st = _FileState(ap.rel, ap.day, pa_.start, ap.size, end=ap.offset, events=n_ev)
                st.bad, st.old_events, st.old_bad = n_bad, pa_.old_events, pa_.old_bad
                states.append(st)
            rep.bytes = scanner.done + arch_bytes
            rep.events = scanner.rows + arch_rows
            rep.warnings.extend(scanner.upcast_errors[:MAX_REPORTED_BAD])
            rep.warnings.extend(scanner.file_errors)
            bad = list(scanner.bad) + arch_bad
            rep.duplicates = _drop_duplicates(con, gen, incremental, bad)
            _trace("dedupe")
            rep.events -= rep.duplicates
            rep.bad_lines = len(bad)
            rep.bad = bad[:MAX_REPORTED_BAD]
            _derive(con, gen, incremental, has_dups=rep.duplicates > 0)
            _trace("derive")
            _record(con, gen, states, bad, rep.duplicates > 0)
            stale = want_stale or meta.get("stale_after_s") or str(DEFAULT_STALE_AFTER_S)
            new_meta = {
                "format": S.INDEX_FORMAT,
                "gen": str(gen),
                "lineage": meta.get("lineage") if incremental else uuid.uuid4().hex,
                "stale_after_s": stale,
                "strict": str(bool(strict)).lower(),
                "since_date": (meta.get("since_date") if incremental else since) or "",
                "last_rebuild_at": started_at.isoformat(),
            }
            con.execute("DELETE FROM _index_meta")
            con.executemany("INSERT INTO _index_meta VALUES (?, ?)", list(new_meta.items()))
            rep.files = sum(1 for s in states if s.end > s.start)
            con.execute(
                "INSERT INTO _index_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    gen,
                    rep.mode,
                    started_at,
                    time.monotonic() - t0,
                    rep.events,
                    rep.bad_lines,
                    rep.bytes,
                    rep.files,
                ],
            )
            con.commit()
            _trace("commit")
            # count(*) always returns one row: fetchone() is never None here and below.
            new_alerts = con.execute(
                "SELECT count(*) FROM events WHERE gen = ? AND event_type = 'alert.ingested'",
                [gen],
            ).fetchone()[0]  # type: ignore[index]
            touched = con.execute("SELECT count(*) FROM _touched").fetchone()[0]  # type: ignore[index]
            # Side files first: if we die between the renames, runs.duckdb still points at the
            # old checkpoints, so the next round redoes these bytes and rewrites both.
            if not incremental or new_alerts or rep.duplicates or not paths.alerts.exists():
                _write_side(con, paths.alerts, "alerts", S.ALERTS_SELECT, [], durable)
            if not incremental or touched or not paths.catalog.exists():
                rel_index = _rel_to_root(paths.runs, rootp)
                _write_side(con, paths.catalog, "runs", S.CATALOG_SELECT, [rel_index], durable)
            con.execute("CHECKPOINT")
            _trace("side files + checkpoint")
        except BaseException:
            if scanner is not None:
                scanner.close()
            con.close()
            _unlink_work(work)
            raise
        con.close()
        _unlink_spill(work)
        publish(work, paths.runs, durable=durable)
        _trace("close + publish")
        rep.published = True
        run_publish_hooks(PublishRound(paths, True, durable, hook_options or {}))
        rep.seconds = time.monotonic() - t0
        return rep


def _rel_to_root(p: Path, root: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _unlink_spill(work: Path) -> None:
    import shutil

    shutil.rmtree(str(work) + ".spill", ignore_errors=True)


def _unlink_work(work: Path) -> None:
    for p in (work, work.with_name(work.name + ".wal")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    _unlink_spill(work)


def _upgrade_format(con: duckdb.DuckDBPyConnection) -> None:
    """An index of an older format, updated in place: drop what became a view."""
    old = con.execute(
        """SELECT count(*) FROM duckdb_tables()
           WHERE database_name = current_database() AND schema_name = 'main'
             AND table_name = 'trial_results'"""
    ).fetchone()[0]  # type: ignore[index]  # count(*): one row
    if old:
        con.execute("DROP TABLE trial_results")


def _drop_duplicates(
    con: duckdb.DuckDBPyConnection, gen: int, incremental: bool, bad: list[Any]
) -> int:
    """`event_id` is unique in the index: of several lines with one id, the first in
    (file, offset) order stays, the others are reported as bad lines. Returns rows dropped."""
    if incremental:
        # No duplicate iff every id of this round occurs once in the whole table: as many rows
        # carry the round's ids as the round has distinct ids (two new lines with one id, or a
        # new line repeating an old id, both make `n` larger).
        n = con.execute(
            """SELECT count(*) FROM events
               WHERE event_id IN (SELECT event_id FROM events WHERE gen = ?)""",
            [gen],
        ).fetchone()[0]  # type: ignore[index]  # count(*): one row
        new = con.execute(
            "SELECT count(DISTINCT event_id) FROM events WHERE gen = ?", [gen]
        ).fetchone()[0]  # type: ignore[index]
        if n == new:
            con.execute("CREATE OR REPLACE TEMP TABLE _dups (event_id VARCHAR)")
            return 0
        scope = "WHERE event_id IN (SELECT event_id FROM events WHERE gen = ?)"
        args: list[Any] = [gen]
    else:
        # Distinct 64-bit hashes are cheaper to count than distinct strings, and as many
        # distinct hashes as rows proves the ids distinct; a collision falls to the exact path.
        n, d = con.execute("SELECT count(*), count(DISTINCT hash(event_id)) FROM events").fetchone()  # type: ignore[misc]
        if n == d:
            con.execute("CREATE OR REPLACE TEMP TABLE _dups (event_id VARCHAR)")
            return 0
        scope, args = "", []
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dup_rows AS
            SELECT rowid AS rid, event_id, file, "offset", line_bytes, run_id,
                   row_number() OVER (PARTITION BY event_id ORDER BY file, "offset") AS rn,
                   first_value(file || ':' || "offset") OVER
                       (PARTITION BY event_id ORDER BY file, "offset") AS first_at
            FROM events {scope}
            QUALIFY count(*) OVER (PARTITION BY event_id) > 1""",
        args,
    )
    con.execute("CREATE OR REPLACE TEMP TABLE _dups AS SELECT DISTINCT event_id FROM _dup_rows")
    rows = con.execute(
        """SELECT file, "offset", line_bytes, event_id, first_at FROM _dup_rows WHERE rn > 1
           ORDER BY file, "offset" """
    ).fetchall()
    con.execute("DELETE FROM events WHERE rowid IN (SELECT rid FROM _dup_rows WHERE rn > 1)")
    for f, off, ln, eid, first in rows:
        bad.append((f, off, ln, f"duplicate event_id {eid} (kept the line at {first})"))
    return len(rows)


def _derive(con: duckdb.DuckDBPyConnection, gen: int, incremental: bool, has_dups: bool) -> None:
    """Derived tables from the rows of round `gen` (plus re-derived duplicates)."""
    sel = f"gen = {int(gen)}"
    if has_dups:
        sel += " OR event_id IN (SELECT event_id FROM _dups)"
        for t in S.APPEND_TABLES:
            con.execute(f"DELETE FROM {t} WHERE event_id IN (SELECT event_id FROM _dups)")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _touched AS
            SELECT DISTINCT run_id FROM events WHERE ({sel}) AND run_id IS NOT NULL"""
    )
    if has_dups:  # a dropped duplicate may have been the only row of its run
        con.execute(
            """INSERT INTO _touched SELECT DISTINCT run_id FROM _dup_rows
               WHERE run_id IS NOT NULL AND run_id NOT IN (SELECT run_id FROM _touched)"""
        )
    if incremental:
        con.execute("DELETE FROM runs_d WHERE run_id IN (SELECT run_id FROM _touched)")
        con.execute("DELETE FROM phase_timings WHERE run_id IN (SELECT run_id FROM _touched)")
    # A full rebuild touches every run: no semi-join against _touched.
    runs = S.TOUCHED_RUNS if incremental else S.ALL_RUNS
    con.execute(S.DERIVE_RUNS.replace("{runs}", runs))
    con.execute(S.DERIVE_PHASES.replace("{runs}", runs))
    for q in S.DERIVE_APPEND:
        con.execute(q.replace("{sel}", sel))


def _record(
    con: duckdb.DuckDBPyConnection,
    gen: int,
    states: list[_FileState],
    bad: list[tuple[str, int, int, str]],
    has_dups: bool,
) -> None:
    """Checkpoints and bad lines, in the transaction that added the rows."""
    now = datetime.now(timezone.utc)
    moved = [s for s in states if s.end > s.start]
    if moved:
        tbl = pa.table(
            {
                "file": [s.rel for s in moved],
                "day": [s.day for s in moved],
                "offset": [s.end for s in moved],
                "size_seen": [max(s.size, s.end) for s in moved],
                "events": [s.old_events + s.events for s in moved],
                "bad_lines": [s.old_bad + s.bad for s in moved],
            }
        )
        con.register("_ckpt", tbl)
        con.execute("DELETE FROM _ledger_files WHERE file IN (SELECT file FROM _ckpt)")
        con.execute(
            """INSERT INTO _ledger_files
               SELECT file, day, "offset", size_seen, events, bad_lines, ?, ? FROM _ckpt""",
            [gen, now],
        )
        con.unregister("_ckpt")
    if bad:
        bt = pa.table(
            {
                "file": [b[0] for b in bad],
                "offset": [b[1] for b in bad],
                "len": [b[2] for b in bad],
                "reason": [b[3] for b in bad],
            }
        )
        con.register("_bad", bt)
        con.execute(
            """INSERT INTO _bad_lines SELECT file, "offset", len, reason, ? FROM _bad
               ORDER BY file, "offset" """,
            [gen],
        )
        con.unregister("_bad")
    if has_dups:  # per-file counts of the files whose duplicates were dropped
        con.execute(
            """UPDATE _ledger_files SET events = c.n,
                   bad_lines = (SELECT count(*) FROM _bad_lines b WHERE b.file = _ledger_files.file)
               FROM (SELECT file, count(*) AS n FROM events
                     WHERE file IN (SELECT DISTINCT file FROM _dup_rows) GROUP BY file) c
               WHERE _ledger_files.file = c.file"""
        )


def _write_side(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    table: str,
    select: str,
    params: list[Any],
    durable: bool,
) -> None:
    """Write a small side file (alerts, catalog) from the work index, and publish it."""
    tmp = target.with_name(f".building-{os.getpid()}-{target.name}")
    _unlink_work(tmp)
    con.execute(f"ATTACH {_sql_str(str(tmp))} AS side")
    try:
        con.execute(f"CREATE TABLE side.{table} AS {select}", params)
        con.execute(
            "CREATE TABLE side._index_meta AS SELECT * FROM _index_meta",
        )
    finally:
        con.execute("DETACH side")
    publish(tmp, target, durable=durable)

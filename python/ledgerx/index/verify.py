"""`ledgerx verify` and `ledgerx status`: the log checked on its own, and the index against it.

Log checks: every line's crc and envelope (the scanner), `data` against the schema of its type
and version (the registry in events/_schema.json, built-in types when the file is absent), torn
tails, and `seq` gaps or repeats per writer. Index checks, for the bytes the index says it has
indexed: per day, the number of events and an order-independent hash of what each event
contributes to the index (`CONTENT_HASH`: id, type, version, time, run, writer, seq, data and
position), computed from the log by the scanner and from the index's `events` table, so a row
changed in the index (an UPDATE) is caught, not only a missing or extra one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ledgerx import _core
from ledgerx.config import events_dir, resolve_root
from ledgerx.errors import SchemaError
from ledgerx.index.indexer import list_part_files, open_readonly, read_state
from ledgerx.index.publish import IndexPaths

MAX_PROBLEMS = 200
MAX_ROWS_NAMED = 10

# One expression, evaluated on both sides over the same column names and types: the log's
# scanned (or archived) rows and the index's `events` rows.
CONTENT_HASH = """hash(event_id::VARCHAR, event_type::VARCHAR, schema_version::BIGINT,
    epoch_us(ts)::BIGINT, run_id::VARCHAR, writer::VARCHAR, seq::BIGINT, data::VARCHAR,
    file::VARCHAR, "offset"::BIGINT)"""


@dataclass
class VerifyReport:
    files: int = 0
    events: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    index_checked: bool = False
    unindexed_events: int = 0
    days: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, msg: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(msg)


def _iter_file(ev: Path, rel: str, size: int, strict: bool, chunk: int) -> Any:
    """Yield the scanner's batches of one file from offset 0 to its last complete line."""
    for (b,) in _core.Scanner(str(ev), [(rel, 0)], strict=strict, max_bytes=chunk):
        yield b


class _Schemas:
    """Compiled validators per (type, version), from the root's registry."""

    def __init__(self, ev: Path) -> None:
        from ledgerx.schema import SchemaRegistry

        self.reg = SchemaRegistry(ev)
        self.cache: dict[tuple[str, int], Any] = {}

    def check(self, event_type: str, version: int, data: bytes) -> str | None:
        key = (event_type, version)
        v = self.cache.get(key)
        if v is None:
            try:
                v = self.reg.validator(event_type, version)
            except (SchemaError, KeyError, ValueError) as e:
                v = str(e) or f"unknown event type {event_type} v{version}"
            self.cache[key] = v
        if isinstance(v, str):
            return v
        if v.is_valid_json(data):
            return None
        try:
            import json

            v.validate(json.loads(data), "data")
        except SchemaError as e:
            return str(e)
        return "data does not match its schema"


def verify(
    root: str | os.PathLike[str] | None = None,
    *,
    db: str | os.PathLike[str] | None = None,
    strict: bool = False,
    schemas: bool = True,
    chunk_bytes: int = 64 << 20,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    rootp = resolve_root(root)
    ev = events_dir(rootp)
    paths = IndexPaths.for_root(rootp, db)
    rep = VerifyReport()
    files = list_part_files(ev)
    rep.files = len(files)
    total = sum(s for _, _, s in files)
    done = 0
    sch = _Schemas(ev) if schemas else None
    con = duckdb.connect(":memory:")
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        """CREATE TABLE logv (event_id VARCHAR, day VARCHAR, file VARCHAR, "offset" BIGINT,
                              writer VARCHAR, seq BIGINT, h UBIGINT)"""
    )
    for rel, day, size in files:
        last = None
        for b in _iter_file(ev, rel, size, strict, chunk_bytes):
            if b.error is not None:  # e.g. a part with other hard links: never read as log
                rep.add(f"{rel}: not read: {b.error}")
                break
            last = b
            for off, ln, reason in b.bad_lines:
                rep.add(f"{rel}:{off}: bad line ({ln} bytes): {reason}")
            if b.num_rows:
                rb = pa.record_batch(b)
                rep.events += rb.num_rows
                if sch is not None:
                    cols = zip(
                        rb.column("event_type").to_pylist(),
                        rb.column("schema_version").to_pylist(),
                        rb.column("data").cast(pa.binary()).to_pylist(),
                        rb.column("offset").to_pylist(),
                        strict=True,
                    )
                    for et, ver, data, off in cols:
                        err = sch.check(et, ver, data)
                        if err is not None:
                            rep.add(f"{rel}:{off}: schema: {et} v{ver}: {err}")
                rb = rb.append_column("day", pa.repeat(pa.scalar(day), rb.num_rows))
                rb = rb.append_column("file", pa.repeat(pa.scalar(rel), rb.num_rows))
                _insert_log_rows(con, rb)
            done += b.end_offset - b.start_offset
            if progress is not None:
                progress(done, total)
        if last is not None and last.pending_bytes > 0:
            rep.add(
                f"{rel}:{last.end_offset}: torn tail: {last.pending_bytes} bytes after the last "
                "complete line"
            )
    # seq: per writer 1, 2, 3, ... with neither holes nor repeats (third-party lines have none)
    gaps = con.execute(
        """SELECT writer, prev, seq FROM (
               SELECT writer, seq, lag(seq, 1, 0) OVER (PARTITION BY writer ORDER BY seq) AS prev
               FROM logv WHERE writer <> '' AND seq > 0)
           WHERE seq <> prev + 1 ORDER BY writer, seq"""
    ).fetchall()
    for writer, prev, seq in gaps:
        if seq == prev:
            rep.add(f"writer {writer}: seq {seq} appears more than once")
        else:
            rep.add(f"writer {writer}: seq gap: {prev + 1}..{seq - 1} missing")
    _add_archived(rootp, {rel for rel, _, _ in files}, con, rep)
    if paths.runs.exists():
        _check_index(con, paths, rep)
    con.close()
    return rep


def _insert_log_rows(con: duckdb.DuckDBPyConnection, rows: Any) -> None:
    """Keep what verify needs of log rows: position, writer/seq, and the content hash (the
    data itself is not kept, so memory stays small)."""
    con.register("_rows", rows)
    con.execute(
        f"""INSERT INTO logv SELECT event_id, day, file, "offset", writer, seq, {CONTENT_HASH}
            FROM _rows"""
    )
    con.unregister("_rows")


def _add_archived(
    root: Path, present: set[str], con: duckdb.DuckDBPyConnection, rep: VerifyReport
) -> None:
    """Days moved to archive/ by retention count as log too (their Parquet is verified
    against its recorded count and event id hash)."""
    from ledgerx.errors import LedgerError
    from ledgerx.retention import archived_log_rows

    try:
        for t in archived_log_rows(root, present):
            rep.events += t.num_rows
            _insert_log_rows(con, t)
    except LedgerError as e:
        rep.add(f"archive: {e}")


def _check_index(con: duckdb.DuckDBPyConnection, paths: IndexPaths, rep: VerifyReport) -> None:
    rep.index_checked = True
    ckpt, _meta = read_state(paths.runs)
    con.execute('CREATE TABLE ck (file VARCHAR, "offset" BIGINT)')
    if ckpt:
        con.executemany("INSERT INTO ck VALUES (?, ?)", [(f, o) for f, (o, _, _) in ckpt.items()])
    # The log side: lines below each file's checkpoint, one per event id (the first in
    # (file, offset) order, as the indexer keeps).
    con.execute(
        """CREATE TEMP TABLE logi AS
           SELECT l.* FROM logv l JOIN ck USING (file) WHERE l."offset" < ck."offset"
           QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY file, l."offset") = 1"""
    )
    log_days = {
        d: (n, h)
        for d, n, h in con.execute(
            """SELECT day, count(*), bit_xor(h) FROM logi GROUP BY day"""
        ).fetchall()
    }
    rep.unindexed_events = con.execute(
        """SELECT count(*) FROM logv l LEFT JOIN ck USING (file)
           WHERE ck."offset" IS NULL OR l."offset" >= ck."offset" """
    ).fetchall()[0][0]
    idx = open_readonly(paths.runs, external_access=False)
    try:
        idx_days = {
            d: (n, h)
            for d, n, h in idx.execute(
                f"""SELECT substr(file, 5, 10), count(*), bit_xor({CONTENT_HASH})
                   FROM events GROUP BY 1"""
            ).fetchall()
        }
        changed_days = [d for d in set(log_days) & set(idx_days) if log_days[d] != idx_days[d]]
        changed = _changed_rows(con, idx, changed_days) if changed_days else []
        dup = idx.execute("SELECT count(*) - count(DISTINCT event_id) FROM events").fetchone()[0]  # type: ignore[index]
    finally:
        idx.close()
    if dup:
        rep.add(f"index: {dup} duplicate event ids in events")
    for day in sorted(set(log_days) | set(idx_days)):
        ln, lh = log_days.get(day, (0, 0))
        iN, ih = idx_days.get(day, (0, 0))
        rep.days[day] = {"log_events": ln, "index_events": iN, "match": ln == iN and lh == ih}
        if ln != iN:
            rep.add(f"day {day}: log has {ln} indexed events, index has {iN}")
        elif lh != ih:
            rep.add(f"day {day}: index content differs from the log (same count {ln})")
    for eid, where in changed:
        rep.add(f"index: event {eid} differs from its log line{where}")


def _changed_rows(
    con: duckdb.DuckDBPyConnection, idx: duckdb.DuckDBPyConnection, days: list[str]
) -> list[tuple[str, str]]:
    """Up to MAX_ROWS_NAMED events of `days` whose index row is missing, extra or changed."""
    rows = idx.sql(
        f"""SELECT event_id, {CONTENT_HASH} AS h FROM events
            WHERE substr(file, 5, 10) IN (SELECT unnest(?::VARCHAR[]))""",
        params=[days],
    ).to_arrow_table()
    con.register("_idx", rows)
    try:
        out = con.execute(
            f"""SELECT coalesce(l.event_id, i.event_id),
                       CASE WHEN l.event_id IS NULL THEN ' (not in the log)'
                            WHEN i.event_id IS NULL THEN ' (missing from the index)'
                            ELSE ' (' || l.file || ':' || l."offset" || ')' END
                FROM (SELECT * FROM logi WHERE day IN (SELECT unnest(?::VARCHAR[]))) l
                FULL JOIN _idx i ON l.event_id = i.event_id
                WHERE l.h IS DISTINCT FROM i.h
                ORDER BY 1 LIMIT {MAX_ROWS_NAMED}""",
            [days],
        ).fetchall()
    finally:
        con.unregister("_idx")
    return [(e, w) for e, w in out]


def index_status(
    root: str | os.PathLike[str] | None = None, *, db: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Lag of the index behind the log (events, bytes, age of the oldest unindexed event) and
    the last rebuild."""
    rootp = resolve_root(root)
    ev = events_dir(rootp)
    paths = IndexPaths.for_root(rootp, db)
    out: dict[str, Any] = {"root": str(rootp), "index": str(paths.runs)}
    ckpt: dict[str, tuple[int, int, int]] = {}
    if paths.runs.exists():
        ckpt, meta = read_state(paths.runs)
        con = open_readonly(paths.runs, external_access=False)
        try:
            row = con.execute(
                """SELECT gen, mode, started_at, seconds, events, bad_lines FROM _index_runs
                   ORDER BY gen DESC LIMIT 1"""
            ).fetchone()
            totals = con.execute(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM runs_d), "
                "(SELECT count(*) FROM _bad_lines)"
            ).fetchone()
        finally:
            con.close()
        out["indexed_events"], out["runs"], out["bad_lines"] = totals  # type: ignore[misc]
        out["index_bytes"] = paths.runs.stat().st_size
        out["stale_after_s"] = float(meta.get("stale_after_s", "0") or 0)
        if row:
            out["last_rebuild"] = {
                "gen": row[0],
                "mode": row[1],
                "at": row[2].isoformat(),
                "seconds": round(row[3], 3),
                "events": row[4],
                "bad_lines": row[5],
            }
    else:
        out["indexed_events"] = 0
        out["last_rebuild"] = None
    lag_bytes = 0
    todo: list[tuple[str, int]] = []
    files = list_part_files(ev)
    for rel, _day, size in files:
        off = ckpt.get(rel, (0, 0, 0))[0]
        if size > off:
            lag_bytes += size - off
            todo.append((rel, off))
    lag_events, oldest = 0, None
    for batches in _core.Scanner(str(ev), todo, max_bytes=64 << 20):
        for b in batches:
            if b.num_rows:
                lag_events += b.num_rows
                m = pc.min(pa.record_batch(b).column("ts")).as_py()
                oldest = m if oldest is None or m < oldest else oldest
    now = datetime.now(timezone.utc)
    out["files"] = len(files)
    out["lag_events"] = lag_events
    out["lag_bytes"] = lag_bytes
    out["oldest_unindexed_age_s"] = (
        round((now - oldest).total_seconds(), 3) if oldest is not None else None
    )
    out["checked_at"] = now.isoformat()
    out["registry_error"] = _registry_error(ev)
    out["schema_invalid"] = _schema_invalid(ev)
    return out


def _registry_error(ev: Path) -> str | None:
    """Why events/_schema.json cannot be read, or None: running writers then keep validating
    with the last registry they read, and `status` says so."""
    from ledgerx.errors import LedgerError
    from ledgerx.schema import SchemaRegistry

    try:
        SchemaRegistry(ev).list()
    except (LedgerError, OSError, ValueError) as e:
        return str(e)
    return None


def _schema_invalid(ev: Path) -> dict[str, str]:
    """Types whose entry in `_schema.json` is invalid (they fail closed); {} when none or when
    the file itself cannot be read (that is an error of its own, reported by the writer)."""
    from ledgerx.schema import SchemaRegistry

    try:
        return SchemaRegistry(ev).broken()
    except (SchemaError, OSError):
        return {}

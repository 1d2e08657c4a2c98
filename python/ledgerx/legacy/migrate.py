"""`ledgerx legacy migrate`: legacy rows → events, through the normal Rust writer.

Every event gets the deterministic UUIDv7 of its legacy row (source.py/schema.py) and the time
of that row, and is written by a writer whose id begins with `legacy-`. Re-running adds nothing:
an event id already in the log is skipped before writing (the index would drop it anyway, but
the log itself must not grow). Ids are looked up only in the day folders the candidates fall in,
which is exact because an event's day is the UTC date of its (deterministic) time.

Events are validated against the built-in v1 schemas before the first byte is written, so a
legacy row the log cannot hold stops the migration with a list of the offending rows instead of
leaving half a run behind.

Streamed, so memory does not grow with the legacy file (1M legacy rows stay under 500 MB of
RSS; `benches/bench_migrate.py`): DuckDB copies the normalized rows once into a work file in a
temporary folder (its memory capped by `_MEMORY_LIMIT`, spilling beyond), and two passes read
them back one sorted time window at a time: the first validates and counts (nothing written if
a row is bad), the second writes. Existing ids are read one day at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from ledgerx import _core
from ledgerx.config import events_dir, resolve_root
from ledgerx.errors import LedgerError
from ledgerx.fsutil import open_lock_file
from ledgerx.legacy.source import (
    attach_legacy,
    create_legacy_views,
    remove_snapshot,
    sql_str,
)

# Order of events that share a timestamp: the order the old code did things in.
_RANK = {
    "run.created": 0,
    "run.started": 1,
    "run.heartbeat": 2,
    "phase.started": 3,
    "trial.recorded": 4,
    "phase.completed": 5,
    "baseline.completed": 6,
    "run.completed": 7,
    "run.failed": 7,
    "alert.ingested": 8,
}


@dataclass(order=True)
class LegacyEvent:
    ts_us: int
    rank: int
    event_id: str
    event_type: str = field(compare=False)
    run_id: str | None = field(compare=False)
    data: dict[str, Any] = field(compare=False)
    origin: str = field(compare=False)  # the legacy row, for error messages


@dataclass
class MigrateReport:
    legacy: str
    candidates: int = 0
    written: int = 0
    skipped_existing: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    writer_id: str = ""
    snapshot: bool = False
    dry_run: bool = False

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(self.by_type.items()))
        verb = "would write" if self.dry_run else "wrote"
        return (
            f"{verb} {self.written} events ({kinds or 'none'}), "
            f"{self.skipped_existing} of {self.candidates} already in the log"
            + (f", writer {self.writer_id}" if self.written and not self.dry_run else "")
            + (" [from a snapshot: the legacy file is open for writing]" if self.snapshot else "")
        )


class MigrationError(LedgerError):
    """Legacy rows that cannot become valid events; nothing was written."""


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# Every event the legacy views stand for (see source.py for the normalization), one row each in
# one layout: a/b/c/d text, x a double, i an integer, k the row's rank among equal legacy rows.
_EVENTS_SQL = """
SELECT epoch_us(created_at) AS ts_us, 0 AS rank, created_event_id AS event_id,
       'run.created' AS event_type, run_id, run_kind AS a, CAST(config AS VARCHAR) AS b,
       data_fingerprint AS c, NULL::VARCHAR AS d, NULL::DOUBLE AS x, NULL::BIGINT AS i,
       NULL::BIGINT AS k
FROM legacy_runs_n
UNION ALL
SELECT epoch_us(started_at), 1, started_event_id, 'run.started', run_id,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM legacy_runs_n WHERE started_at IS NOT NULL
UNION ALL  -- without it the index would call a run with no other event `created`
SELECT epoch_us(created_at), 2, heartbeat_event_id, 'run.heartbeat', run_id,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM legacy_runs_n WHERE started_at IS NULL AND status = 'running'
UNION ALL
SELECT epoch_us(completed_at), 7, terminal_event_id, 'run.completed', run_id,
       NULL, CAST(summary AS VARCHAR), NULL, NULL, NULL, NULL, NULL
FROM legacy_runs_n WHERE status = 'completed'
UNION ALL  -- summary_raw is kept in the log, though the index shows none
SELECT epoch_us(completed_at), 7, terminal_event_id, 'run.failed', run_id,
       error, CAST(summary_raw AS VARCHAR), NULL, NULL, NULL, NULL, NULL
FROM legacy_runs_n WHERE status = 'failed'
UNION ALL
SELECT epoch_us(started_at), 3, started_event_id, 'phase.started', run_id,
       phase, NULL, NULL, NULL, NULL, phase_index, k
FROM legacy_phases_n WHERE started_at IS NOT NULL
UNION ALL
SELECT epoch_us(completed_at), 5, completed_event_id, 'phase.completed', run_id,
       phase, CAST(output_summary AS VARCHAR), NULL, NULL, duration_ms, NULL, k
FROM legacy_phases_n WHERE completed_at IS NOT NULL
UNION ALL
SELECT epoch_us(recorded_at), 4, event_id, 'trial.recorded', run_id,
       CAST(trial_id AS VARCHAR), CAST(params AS VARCHAR), CAST(metrics AS VARCHAR),
       NULL, NULL, NULL, k
FROM legacy_trials_n
UNION ALL
SELECT epoch_us(completed_at), 6, event_id, 'baseline.completed', run_id,
       baseline, CAST(metrics AS VARCHAR), NULL, NULL, NULL, NULL, k
FROM legacy_baselines_n
UNION ALL
SELECT epoch_us(ts), 8, event_id, 'alert.ingested', NULL,
       alert_id, CAST(payload AS VARCHAR), source, severity, NULL, NULL, k
FROM legacy_alerts_n
"""

# Rows that cannot be placed in the log, checked before anything else (first one reported).
_UNPLACEABLE = [
    ("SELECT run_id FROM legacy_runs_n WHERE created_at IS NULL ORDER BY run_id LIMIT 1",
     "legacy run {0} has no created_at: cannot place it in the log"),
    ("""SELECT trial_id, k, run_id FROM legacy_trials_n WHERE recorded_at IS NULL
        ORDER BY run_id, trial_id, k LIMIT 1""",
     "legacy trial {0} #{1} of run {2} has no time (nor has its run)"),
    ("""SELECT baseline, k, run_id FROM legacy_baselines_n WHERE completed_at IS NULL
        ORDER BY run_id, baseline, k LIMIT 1""",
     "legacy baseline {0!r} #{1} of run {2} has no time (nor has its run)"),
    ("SELECT alert_id, k FROM legacy_alerts_n WHERE ts IS NULL ORDER BY alert_id, k LIMIT 1",
     "legacy alert {0} #{1} has no ts: cannot place it in the log"),
]  # fmt: skip

# Rows fetched from DuckDB at a time, and the most rows or bytes of text in a time window
# sorted at once.
_FETCH_ROWS = 500
_WINDOW_ROWS = 5000
_WINDOW_BYTES = 4 << 20


def _row_event(row: tuple[Any, ...], trial_id_is_int: bool) -> LegacyEvent:
    """The event of one row of `_EVENTS_SQL`."""
    us, rank, eid, etype, rid, a, b, c, d, x, i, k = row
    data: dict[str, Any]
    origin = f"run {rid}"
    if etype == "run.created":
        data = {"run_kind": a, "config": _loads(b), "data_fingerprint": c}
    elif etype == "run.completed":
        data = {"summary": _loads(b), "artifact_paths": []}
    elif etype == "run.failed":
        data = {"error": a}
        if b is not None:
            data["summary"] = _loads(b)
    elif etype == "phase.started":
        data, origin = {"phase": a, "phase_index": i}, f"phase {a!r} #{k} of run {rid}"
    elif etype == "phase.completed":
        data, origin = {"phase": a, "duration_ms": x}, f"phase {a!r} #{k} of run {rid}"
        if b is not None:
            data["output_summary"] = _loads(b)
    elif etype == "trial.recorded":
        tid: Any = int(a) if trial_id_is_int and a is not None else a
        data = {"trial_id": tid, "params": _loads(b), "metrics": _loads(c)}
        origin = f"trial {a} #{k} of run {rid}"
    elif etype == "baseline.completed":
        data, origin = {"baseline": a, "metrics": _loads(b)}, f"baseline {a!r} #{k} of run {rid}"
    elif etype == "alert.ingested":
        data = {"alert_id": a, "source": c, "severity": d, "payload": _loads(b)}
        origin = f"alert {a} #{k}"
    else:  # run.started, run.heartbeat
        data = {}
    return LegacyEvent(us, rank, eid, etype, rid, data, origin)


class LegacyEvents:
    """Every event of a legacy file, in log order (time, then the old code's order of steps,
    then id), streamed: the rows are copied once into a DuckDB work file on disk, then read
    back one time window (`_WINDOW_ROWS` rows or `_WINDOW_BYTES` of text at most) at a time,
    each window sorted by DuckDB and fetched `_FETCH_ROWS` rows at a time. Iterate as often as
    needed."""

    def __init__(self, con: duckdb.DuckDBPyConnection, trial_id_is_int: bool, work: Path) -> None:
        for q, msg in _UNPLACEABLE:
            row = con.execute(q).fetchone()
            if row is not None:
                raise MigrationError(msg.format(*row))
        self._con = con
        self._int = trial_id_is_int
        con.execute(f"ATTACH {sql_str(str(work))} AS lx_work")
        con.execute(f"CREATE TABLE lx_work.ev AS {_EVENTS_SQL}")
        n = con.execute("SELECT count(*) FROM lx_work.ev").fetchone()
        self.count = int(n[0]) if n else 0
        # Upper time bounds of windows of about `_WINDOW_BYTES` of text or `_WINDOW_ROWS` rows;
        # rows with one time always fall in the same window, so window after window is the
        # global order.
        self._bounds = [
            r[0]
            for r in con.execute(
                f"""SELECT max(ts_us) FROM (
                        SELECT ts_us, greatest(
                            sum(coalesce(len(a), 0) + coalesce(len(b), 0) + coalesce(len(c), 0)
                                + 100) OVER w // {_WINDOW_BYTES},
                            count(*) OVER w // {_WINDOW_ROWS}) AS win
                        FROM lx_work.ev
                        WINDOW w AS (ORDER BY ts_us RANGE UNBOUNDED PRECEDING))
                    GROUP BY win ORDER BY 1"""
            ).fetchall()
        ]

    def __iter__(self) -> Iterator[LegacyEvent]:
        low: int | None = None
        for high in self._bounds:
            cond = "ts_us <= ?" if low is None else "ts_us > ? AND ts_us <= ?"
            cur = self._con.execute(
                f"SELECT * FROM lx_work.ev WHERE {cond} ORDER BY ts_us, rank, event_id",
                [high] if low is None else [low, high],
            )
            while rows := cur.fetchmany(_FETCH_ROWS):
                for row in rows:
                    yield _row_event(row, self._int)
            low = high


def _validators() -> dict[str, Any]:
    reg = json.loads(_core.BUILTIN_REGISTRY)["types"]
    return {t: _core.SchemaValidator(json.dumps(v["1"])) for t, v in reg.items()}


def validate_all(events: Iterable[LegacyEvent], limit: int = 10) -> None:
    """Raise MigrationError naming the first `limit` rows the built-in schemas reject."""
    check = _Validator(limit)
    for e in events:
        check(e)
    check.raise_if_bad()


class _Validator:
    """Validates events one at a time against the built-in v1 schemas, keeping the first
    `limit` rejections for the error message."""

    def __init__(self, limit: int = 10) -> None:
        self.vals = _validators()
        self.limit = limit
        self.bad: list[str] = []
        self.n = 0

    def __call__(self, e: LegacyEvent) -> None:
        try:
            self.vals[e.event_type].validate(e.data, "data")
        except ValueError as err:
            self.n += 1
            if len(self.bad) < self.limit:
                self.bad.append(f"{e.origin} ({e.event_type}): {err}")

    def raise_if_bad(self) -> None:
        if self.n:
            more = f"; and {self.n - len(self.bad)} more" if self.n > len(self.bad) else ""
            raise MigrationError(
                f"{self.n} legacy row(s) cannot become valid events, nothing written: "
                + "; ".join(self.bad)
                + more
            )


def existing_event_ids(ev: Path, days: set[str]) -> set[str]:
    """Event ids already in the part files of `days` (every line the scanner accepts)."""
    files: list[tuple[str, int]] = []
    for day in sorted(days):
        d = ev / f"day={day}"
        if d.is_dir():
            files += [
                (f"day={day}/{f.name}", 0)
                for f in sorted(d.iterdir(), key=lambda p: p.name)
                if f.name.endswith(".jsonl") and f.is_file()
            ]
    import pyarrow as pa  # here: importing ledgerx.legacy (the rebuild's hook) stays light

    ids: set[str] = set()
    for batches in _core.Scanner(str(ev), files, max_bytes=32 << 20):
        for b in batches:
            if b.num_rows:
                ids.update(pa.record_batch(b).column("event_id").to_pylist())
    return ids


@contextlib.contextmanager
def _migrate_lock(root: Path) -> Iterator[None]:
    """One migration per root at a time: two would both write what neither has seen yet."""
    ev = events_dir(root)
    ev.mkdir(parents=True, exist_ok=True)
    fd = open_lock_file(ev / ".legacy-migrate.lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LedgerError(f"another `ledgerx legacy migrate` is running on {root}") from None
        yield
    finally:
        os.close(fd)


# DuckDB's share of memory while migrating (it spills to the work folder beyond that).
_MEMORY_LIMIT = "256MB"


class _DayIds:
    """`in`: is an event id already in the log? Ids are read one day at a time (the events come
    in time order, so days only move forward) and only the current day's are kept."""

    def __init__(self, ev: Path) -> None:
        self.ev = ev
        self.day: str | None = None
        self.ids: set[str] = set()

    def has(self, e: LegacyEvent) -> bool:
        day = _core.day_of(e.ts_us)
        if day != self.day:
            self.day, self.ids = day, existing_event_ids(self.ev, {day})
        return e.event_id in self.ids


def migrate(
    root: str | os.PathLike[str] | None,
    legacy: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MigrateReport:
    """Write every legacy row not yet in the log as an event. Returns a MigrateReport.

    Streams: the events are read twice from a DuckDB work file (see LegacyEvents), once to
    validate and count them, once to write them; memory does not grow with the legacy file."""
    rootp = resolve_root(root)
    lpath = Path(legacy).expanduser().absolute()
    ev = events_dir(rootp)
    con = duckdb.connect(":memory:")
    att = None
    with tempfile.TemporaryDirectory(prefix="ledgerx-migrate-") as work:
        try:
            con.execute(f"SET temp_directory = {sql_str(work)}")
            con.execute(f"SET memory_limit = '{_MEMORY_LIMIT}'")
            att = attach_legacy(con, lpath)
            shape = create_legacy_views(con)
            events = LegacyEvents(con, shape.trial_id_is_int, Path(work) / "events.duckdb")
            rep = MigrateReport(str(lpath), candidates=events.count,
                                snapshot=att.snapshot is not None, dry_run=dry_run)  # fmt: skip
            with _migrate_lock(rootp):
                _plan(events, ev, rep)
                if not dry_run and rep.written:
                    _write(events, rootp, ev, rep, progress)
        finally:
            con.close()
            remove_snapshot(att)
    return rep


def _plan(events: LegacyEvents, ev: Path, rep: MigrateReport) -> None:
    """First pass: validate every event (raise before writing anything), count what to write."""
    check = _Validator()
    have = _DayIds(ev)
    for e in events:
        check(e)
        if have.has(e):
            rep.skipped_existing += 1
        else:
            rep.by_type[e.event_type] = rep.by_type.get(e.event_type, 0) + 1
    check.raise_if_bad()
    rep.written = rep.candidates - rep.skipped_existing


def _write(
    events: LegacyEvents,
    rootp: Path,
    ev: Path,
    rep: MigrateReport,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Second pass: write the events not in the log, through one group-mode writer."""
    _seed_registry(ev)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    w = _core.Writer(str(rootp), durability="group",
                     writer_id=f"legacy-migrate-{stamp}-{secrets.token_hex(3)}")  # fmt: skip
    rep.writer_id = w.writer_id
    have = _DayIds(ev)
    i = 0
    try:
        for e in events:
            if have.has(e):
                continue
            w.emit(e.event_type, e.data, e.run_id, 1, event_id=e.event_id, ts_us=e.ts_us)
            i += 1
            if progress is not None and i % 1000 == 0:
                progress(i, rep.written)
        w.flush()
    finally:
        w.close()
    if progress is not None:
        progress(i, rep.written)


def _seed_registry(ev: Path) -> None:
    """Make sure `_schema.json` exists, as `ledgerx.open` does."""
    from ledgerx.schema import ensure_registry

    ensure_registry(ev)

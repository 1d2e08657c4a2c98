"""`ledgerx legacy migrate`: legacy rows → events, through the normal Rust writer.

Every event gets the deterministic UUIDv7 of its legacy row (source.py/schema.py) and the time
of that row, and is written by a writer whose id begins with `legacy-`. Re-running adds nothing:
an event id already in the log is skipped before writing (the index would drop it anyway, but
the log itself must not grow). Ids are looked up only in the day folders the candidates fall in,
which is exact because an event's day is the UTC date of its (deterministic) time.

Events are validated against the built-in v1 schemas before the first byte is written, so a
legacy row the log cannot hold stops the migration with a list of the offending rows instead of
leaving half a run behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ledgerx import _core
from ledgerx.config import events_dir, resolve_root
from ledgerx.errors import LedgerError
from ledgerx.fsutil import open_lock_file
from ledgerx.legacy.source import attach_legacy, create_legacy_views, remove_snapshot

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


def legacy_events(con: duckdb.DuckDBPyConnection, trial_id_is_int: bool) -> Iterator[LegacyEvent]:
    """Every event the legacy views stand for (see source.py for the normalization)."""
    runs = con.execute(
        """SELECT run_id, run_kind, CAST(config AS VARCHAR), data_fingerprint, status,
                  epoch_us(created_at), epoch_us(started_at), epoch_us(completed_at),
                  CAST(summary AS VARCHAR), CAST(summary_raw AS VARCHAR), error,
                  created_event_id, started_event_id, heartbeat_event_id, terminal_event_id
           FROM legacy_runs_n ORDER BY run_id"""
    ).fetchall()
    for (rid, kind, config, fp, status, c_us, s_us, e_us, summary, summary_raw, error,
         c_id, s_id, h_id, t_id) in runs:  # fmt: skip
        origin = f"run {rid}"
        if c_us is None:
            raise MigrationError(f"legacy run {rid} has no created_at: cannot place it in the log")
        yield LegacyEvent(
            c_us,
            _RANK["run.created"],
            c_id,
            "run.created",
            rid,
            {"run_kind": kind, "config": _loads(config), "data_fingerprint": fp},
            origin,
        )
        if s_us is not None:
            yield LegacyEvent(s_us, _RANK["run.started"], s_id, "run.started", rid, {}, origin)
        elif status == "running":
            # Without it the index would call a run with no other event `created`.
            yield LegacyEvent(c_us, _RANK["run.heartbeat"], h_id, "run.heartbeat", rid, {}, origin)
        if status == "completed":
            data = {"summary": _loads(summary), "artifact_paths": []}
            yield LegacyEvent(
                e_us, _RANK["run.completed"], t_id, "run.completed", rid, data, origin
            )
        elif status == "failed":
            data = {"error": error}
            if summary_raw is not None:  # kept in the log, though the index shows none
                data["summary"] = _loads(summary_raw)
            yield LegacyEvent(e_us, _RANK["run.failed"], t_id, "run.failed", rid, data, origin)

    phases = con.execute(
        """SELECT run_id, phase, phase_index, epoch_us(started_at), epoch_us(completed_at),
                  duration_ms, CAST(output_summary AS VARCHAR), started_event_id,
                  completed_event_id, k
           FROM legacy_phases_n ORDER BY run_id, phase, k"""
    ).fetchall()
    for rid, phase, idx, s_us, e_us, dur, out, s_id, e_id, k in phases:
        origin = f"phase {phase!r} #{k} of run {rid}"
        if s_us is not None:
            data = {"phase": phase, "phase_index": idx}
            yield LegacyEvent(
                s_us, _RANK["phase.started"], s_id, "phase.started", rid, data, origin
            )
        if e_us is not None:
            data = {"phase": phase, "duration_ms": dur}
            if out is not None:
                data["output_summary"] = _loads(out)
            yield LegacyEvent(
                e_us, _RANK["phase.completed"], e_id, "phase.completed", rid, data, origin
            )

    trials = con.execute(
        """SELECT run_id, trial_id, CAST(params AS VARCHAR), CAST(metrics AS VARCHAR),
                  epoch_us(recorded_at), event_id, k
           FROM legacy_trials_n ORDER BY run_id, trial_id, k"""
    ).fetchall()
    for rid, tid, params, metrics, us, eid, k in trials:
        origin = f"trial {tid} #{k} of run {rid}"
        if us is None:
            raise MigrationError(f"legacy {origin} has no time (nor has its run)")
        trial_id: Any = int(tid) if trial_id_is_int and tid is not None else tid
        data = {"trial_id": trial_id, "params": _loads(params), "metrics": _loads(metrics)}
        yield LegacyEvent(us, _RANK["trial.recorded"], eid, "trial.recorded", rid, data, origin)

    bases = con.execute(
        """SELECT run_id, baseline, CAST(metrics AS VARCHAR), epoch_us(completed_at), event_id, k
           FROM legacy_baselines_n ORDER BY run_id, baseline, k"""
    ).fetchall()
    for rid, base, metrics, us, eid, k in bases:
        origin = f"baseline {base!r} #{k} of run {rid}"
        if us is None:
            raise MigrationError(f"legacy {origin} has no time (nor has its run)")
        data = {"baseline": base, "metrics": _loads(metrics)}
        yield LegacyEvent(us, _RANK["baseline.completed"], eid, "baseline.completed", rid, data,
                          origin)  # fmt: skip

    alerts = con.execute(
        """SELECT alert_id, source, severity, CAST(payload AS VARCHAR), epoch_us(ts), event_id, k
           FROM legacy_alerts_n ORDER BY alert_id, k"""
    ).fetchall()
    for aid, source, severity, payload, us, eid, k in alerts:
        origin = f"alert {aid} #{k}"
        if us is None:
            raise MigrationError(f"legacy {origin} has no ts: cannot place it in the log")
        data = {"alert_id": aid, "source": source, "severity": severity,
                "payload": _loads(payload)}  # fmt: skip
        yield LegacyEvent(us, _RANK["alert.ingested"], eid, "alert.ingested", None, data, origin)


def _validators() -> dict[str, Any]:
    reg = json.loads(_core.BUILTIN_REGISTRY)["types"]
    return {t: _core.SchemaValidator(json.dumps(v["1"])) for t, v in reg.items()}


def validate_all(events: list[LegacyEvent], limit: int = 10) -> None:
    """Raise MigrationError naming the first `limit` rows the built-in schemas reject."""
    vals = _validators()
    bad: list[str] = []
    n = 0
    for e in events:
        try:
            vals[e.event_type].validate(e.data, "data")
        except ValueError as err:
            n += 1
            if len(bad) < limit:
                bad.append(f"{e.origin} ({e.event_type}): {err}")
    if n:
        more = f"; and {n - len(bad)} more" if n > len(bad) else ""
        raise MigrationError(
            f"{n} legacy row(s) cannot become valid events, nothing written: "
            + "; ".join(bad)
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


def migrate(
    root: str | os.PathLike[str] | None,
    legacy: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MigrateReport:
    """Write every legacy row not yet in the log as an event. Returns a MigrateReport."""
    rootp = resolve_root(root)
    lpath = Path(legacy).expanduser().absolute()
    con = duckdb.connect(":memory:")
    att = None
    try:
        att = attach_legacy(con, lpath)
        shape = create_legacy_views(con)
        events = sorted(legacy_events(con, shape.trial_id_is_int))
    finally:
        con.close()
        remove_snapshot(att)
    rep = MigrateReport(str(lpath), candidates=len(events), snapshot=att.snapshot is not None,
                        dry_run=dry_run)  # fmt: skip
    validate_all(events)
    ev = events_dir(rootp)
    with _migrate_lock(rootp):
        days = {_core.day_of(e.ts_us) for e in events}
        have = existing_event_ids(ev, days)
        todo = [e for e in events if e.event_id not in have]
        rep.skipped_existing = len(events) - len(todo)
        for e in todo:
            rep.by_type[e.event_type] = rep.by_type.get(e.event_type, 0) + 1
        rep.written = len(todo)
        if dry_run or not todo:
            return rep
        _seed_registry(ev)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        w = _core.Writer(str(rootp), durability="group",
                         writer_id=f"legacy-migrate-{stamp}-{secrets.token_hex(3)}")  # fmt: skip
        rep.writer_id = w.writer_id
        try:
            for i, e in enumerate(todo):
                w.emit(e.event_type, e.data, e.run_id, 1, event_id=e.event_id, ts_us=e.ts_us)
                if progress is not None and i % 1000 == 0:
                    progress(i, len(todo))
            w.flush()
        finally:
            w.close()
        if progress is not None:
            progress(len(todo), len(todo))
    return rep


def _seed_registry(ev: Path) -> None:
    """Make sure `_schema.json` exists, as `ledgerx.open` does."""
    from ledgerx.schema import ensure_registry

    ensure_registry(ev)

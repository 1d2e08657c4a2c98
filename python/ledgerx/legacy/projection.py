"""The legacy-shaped projection: `index/legacy.duckdb`, in the legacy layout, filled from events.

Old readers keep their SQL (`optimizer.runs_d`, `optimizer.phases_d`, `optimizer.trials_f`,
`baseline.results`, `canon.alerts_raw`) while nothing writes DuckDB but the indexer. The file is
derived from the just-published index (itself derived from the log), built under a temporary name
and published by atomic rename like the index files, so a reader opening it READ_ONLY never sees
a half-written one. `ledgerx.legacy` registers `on_publish` as an index publish hook
(`ledgerx.index.hooks`): the indexer calls it after each round while it still holds the index
lock, without importing legacy. Once the file exists, every later round with the hook keeps it
current (the CLI and the daemon load it); a round without it (a bare `build_index` or
`wait_indexed` in a process that never imported `ledgerx.legacy`) leaves the projection older
than the index, and the next round with the hook catches up.

Incremental: the projection remembers (in the comment of `optimizer.runs_d`, so the legacy
layout keeps exactly its tables and columns) the index lineage, the last indexing round (`gen`)
it holds and how many index events that round had. A later round copies the published
projection (kernel-side) and changes only what the rounds since then touched: the append-only
facts (trials, baselines, alerts) of the new rounds are inserted, the per-run rows (runs_d,
phases_d) of the runs those rounds touched are replaced. It writes the whole file again only
when the index was rebuilt (new lineage) or lost rows it held (duplicates dropped in favour of
an earlier line), which the event count of the old rounds shows.

Mapping: `status` is the log status (created/running/completed/failed: legacy has no
`abandoned`); `completed_at` is the completion or failure time; times are naive UTC TIMESTAMPs
as the old code wrote them (alerts keep TIMESTAMPTZ); a string trial id that is not an integer
has no BIGINT form and becomes NULL.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ledgerx.index.hooks import PublishRound
from ledgerx.index.publish import IndexPaths, copy_file, publish
from ledgerx.legacy.paths import projection_path
from ledgerx.legacy.schema import LEGACY_DDL
from ledgerx.legacy.source import sql_str


@dataclass
class ProjectionReport:
    """What one projection round did: `mode` full/incremental; rows deleted and inserted per
    legacy table; `runs` the runs whose per-run rows were replaced (incremental)."""

    path: Path
    mode: str
    gen: int = 0
    runs: int = 0
    inserted: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)


# Per-run state: `{runs}` selects the runs (every run, or those touched since the last round).
_RUNS = """INSERT INTO out.optimizer.runs_d
    SELECT run_id, run_kind, config, data_fingerprint, log_status,
           timezone('UTC', created_at), timezone('UTC', started_at),
           timezone('UTC', coalesce(completed_at, failed_at)), summary
    FROM ix.main.runs_d WHERE {runs} ORDER BY created_at, run_id"""
_PHASES = """INSERT INTO out.optimizer.phases_d
    SELECT run_id, phase, CAST(phase_index AS INTEGER), timezone('UTC', started_at),
           timezone('UTC', completed_at), duration_ms, output_summary
    FROM ix.main.phase_timings WHERE {runs} ORDER BY run_id, started_at, phase, attempt"""
# Append-only facts: `{new}` selects the index events to add (all, or those of the new rounds).
_TRIALS = """INSERT INTO out.optimizer.trials_f
    SELECT run_id, TRY_CAST(s.trial_id AS BIGINT), s.params, s.metrics, timezone('UTC', ts)
    FROM (SELECT run_id, ts, event_id,
                 json_transform(coalesce(data_upcast, data),
                                '{{"trial_id":"VARCHAR","params":"JSON","metrics":"JSON"}}') s
          FROM ix.main.events WHERE event_type = 'trial.recorded' AND {new})
    ORDER BY ts, event_id"""  # every record, as the old code wrote them (not only the latest)
_BASELINES = """INSERT INTO out.baseline.results
    SELECT run_id, baseline, metrics, timezone('UTC', completed_at)
    FROM ix.main.baseline_results
    WHERE event_id IN (SELECT event_id FROM ix.main.events
                       WHERE event_type = 'baseline.completed' AND {new})
    ORDER BY completed_at, event_id"""
_ALERTS = """INSERT INTO out.canon.alerts_raw
    SELECT alert_id, source, severity, payload, ts FROM al.main.alerts
    WHERE event_id IN (SELECT event_id FROM ix.main.events
                       WHERE event_type = 'alert.ingested' AND {new})
    ORDER BY ts, event_id"""

_TABLES = {
    "runs_d": ("optimizer.runs_d", _RUNS),
    "phases_d": ("optimizer.phases_d", _PHASES),
    "trials_f": ("optimizer.trials_f", _TRIALS),
    "results": ("baseline.results", _BASELINES),
    "alerts_raw": ("canon.alerts_raw", _ALERTS),
}
_STATE_TABLE = "out.optimizer.runs_d"  # its COMMENT holds the projection's state


def _index_state(con: duckdb.DuckDBPyConnection) -> tuple[str, int, int]:
    """(lineage, gen, number of events) of the attached index."""
    meta = dict(con.execute("SELECT key, value FROM ix.main._index_meta").fetchall())
    n = con.execute("SELECT count(*) FROM ix.main.events").fetchone()[0]  # type: ignore[index]
    return meta.get("lineage") or "", int(meta.get("gen") or 0), int(n)


def _read_state(path: Path) -> dict[str, object] | None:
    """The state a published projection recorded, or None (none, or one from before)."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        rows = con.execute(
            "SELECT comment FROM duckdb_tables() WHERE schema_name = 'optimizer' "
            "AND table_name = 'runs_d'"
        ).fetchall()
    finally:
        con.close()
    try:
        state = json.loads(rows[0][0]) if rows and rows[0][0] else None
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM out.{table}").fetchone()[0])  # type: ignore[index]


def _fill(con: duckdb.DuckDBPyConnection, rep: ProjectionReport, runs: str, new: str,
          alerts: bool) -> None:  # fmt: skip
    for key, (table, q) in _TABLES.items():
        if key == "alerts_raw" and not alerts:
            continue
        before = _count(con, table)
        con.execute(q.format(runs=runs, new=new))
        rep.inserted[key] = _count(con, table) - before


def _incremental(con: duckdb.DuckDBPyConnection, rep: ProjectionReport, since: int,
                 alerts: bool) -> None:  # fmt: skip
    """Replace the per-run rows of the runs touched by rounds > `since`; add their facts."""
    con.execute(
        f"""CREATE TEMP TABLE _touched AS SELECT DISTINCT run_id FROM ix.main.events
            WHERE gen > {int(since)} AND run_id IS NOT NULL"""
    )
    rep.runs = int(con.execute("SELECT count(*) FROM _touched").fetchone()[0])  # type: ignore[index]
    touched = "run_id IN (SELECT run_id FROM _touched)"
    for key in ("runs_d", "phases_d"):
        table = _TABLES[key][0]
        before = _count(con, table)
        con.execute(f"DELETE FROM out.{table} WHERE {touched}")
        rep.deleted[key] = before - _count(con, table)
    _fill(con, rep, touched, f"gen > {int(since)}", alerts)


def write_projection(
    paths: IndexPaths, *, durable: bool = True, full: bool = False
) -> ProjectionReport:
    """Bring the projection up to the published index and publish it: incrementally when the
    published projection holds an earlier round of the same index, else (or with `full`) from
    scratch. Returns what was done."""
    target = projection_path(paths)
    tmp = paths.tmp_for(target)
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        p.unlink(missing_ok=True)
    old = None if full or not target.exists() else _read_state(target)
    rep = ProjectionReport(target, "full")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH {sql_str(str(paths.runs))} AS ix (READ_ONLY)")
        alerts = paths.alerts.exists()
        if alerts:
            con.execute(f"ATTACH {sql_str(str(paths.alerts))} AS al (READ_ONLY)")
        lineage, gen, n_events = _index_state(con)
        rep.gen = gen
        since = _incremental_since(con, old, lineage, gen)
        if since is not None:
            copy_file(target, tmp)
            rep.mode = "incremental"
        con.execute(f"ATTACH {sql_str(str(tmp))} AS out")
        con.begin()
        if since is None:
            con.execute(LEGACY_DDL.format(db="out"))
            _fill(con, rep, "run_id IS NOT NULL", "true", alerts)
        elif since < gen:
            _incremental(con, rep, since, alerts)
        state = json.dumps({"lineage": lineage, "gen": gen, "events": n_events})
        con.execute(f"COMMENT ON TABLE {_STATE_TABLE} IS {sql_str(state)}")
        con.commit()
        con.execute("CHECKPOINT out")
        con.execute("DETACH out")
    except BaseException:
        con.close()
        for p in (tmp, tmp.with_name(tmp.name + ".wal")):
            p.unlink(missing_ok=True)
        raise
    con.close()
    publish(tmp, target, durable=durable)
    return rep


def _incremental_since(
    con: duckdb.DuckDBPyConnection, old: dict[str, object] | None, lineage: str, gen: int
) -> int | None:
    """The round the published projection holds, when it can be brought forward in place: same
    index lineage, not ahead of the index, and every event it was made from still indexed (a
    round that drops a duplicate in favour of an earlier line removes an old row)."""
    if old is None or old.get("lineage") != lineage or not lineage:
        return None
    since, had = old.get("gen"), old.get("events")
    if not isinstance(since, int) or not isinstance(had, int) or since > gen:
        return None
    kept = con.execute(f"SELECT count(*) FROM ix.main.events WHERE gen <= {since}").fetchone()
    return since if kept is not None and kept[0] == had else None


def projection_hook(
    paths: IndexPaths, enabled: bool | None, *, changed: bool, durable: bool = True
) -> Path | None:
    """The indexer's hook, called after each round (`changed`: whether it published).

    `enabled`: True keeps the projection (writes it when missing or stale), False never touches
    it, None (the default) keeps an existing one current, so a daemon started without the
    option still refreshes a projection that `ledgerx rebuild --legacy-projection` created."""
    proj = projection_path(paths)
    exists = proj.exists()
    if enabled is False or (enabled is None and not exists) or not paths.runs.exists():
        return None
    # Older than the index: a round without this hook published since it was written.
    stale = exists and proj.stat().st_mtime_ns < paths.runs.stat().st_mtime_ns
    if exists and not changed and not stale:
        return None
    return write_projection(paths, durable=durable).path


def on_publish(rnd: PublishRound) -> Path | None:
    """The publish hook (`ledgerx.index.hooks`): option `legacy_projection` is `enabled`."""
    enabled = rnd.options.get("legacy_projection")
    return projection_hook(rnd.paths, enabled, changed=rnd.changed, durable=rnd.durable)


def remove_projection(paths: IndexPaths) -> bool:
    """Stop keeping the projection: delete it (the next rounds then skip it)."""
    p = projection_path(paths)
    try:
        os.unlink(p)
        return True
    except FileNotFoundError:
        return False

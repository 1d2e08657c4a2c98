"""The legacy-shaped projection: `index/legacy.duckdb`, in the legacy layout, filled from events.

Old readers keep their SQL (`optimizer.runs_d`, `optimizer.phases_d`, `optimizer.trials_f`,
`baseline.results`, `canon.alerts_raw`) while nothing writes DuckDB but the indexer. The file is
derived from the just-published index (itself derived from the log), built under a temporary name
and published by atomic rename like the index files, so a reader opening it READ_ONLY never sees
a half-written one. The indexer calls `projection_hook` after publishing while it still
holds the index lock; once the file exists, every later round keeps it current (the daemon too).

Mapping: `status` is the log status (created/running/completed/failed: legacy has no
`abandoned`); `completed_at` is the completion or failure time; times are naive UTC TIMESTAMPs
as the old code wrote them (alerts keep TIMESTAMPTZ); a string trial id that is not an integer
has no BIGINT form and becomes NULL.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from ledgerx.index.publish import IndexPaths, publish
from ledgerx.legacy.schema import LEGACY_DDL
from ledgerx.legacy.source import sql_str


def projection_path(paths: IndexPaths) -> Path:
    """`index/legacy.duckdb`, or `<stem>.legacy.duckdb` beside an index given by `--db`."""
    if paths.runs.name == "runs.duckdb":
        return paths.runs.parent / "legacy.duckdb"
    return paths.runs.parent / f"{paths.runs.stem}.legacy.duckdb"


_FILL = [
    """INSERT INTO out.optimizer.runs_d
       SELECT run_id, run_kind, config, data_fingerprint, log_status,
              timezone('UTC', created_at), timezone('UTC', started_at),
              timezone('UTC', coalesce(completed_at, failed_at)), summary
       FROM ix.main.runs_d ORDER BY created_at, run_id""",
    """INSERT INTO out.optimizer.phases_d
       SELECT run_id, phase, CAST(phase_index AS INTEGER), timezone('UTC', started_at),
              timezone('UTC', completed_at), duration_ms, output_summary
       FROM ix.main.phase_timings ORDER BY run_id, started_at, phase, attempt""",
    """INSERT INTO out.optimizer.trials_f
       SELECT run_id, TRY_CAST(s.trial_id AS BIGINT), s.params, s.metrics, timezone('UTC', ts)
       FROM (SELECT run_id, ts, event_id,
                    json_transform(coalesce(data_upcast, data),
                                   '{"trial_id":"VARCHAR","params":"JSON","metrics":"JSON"}') s
             FROM ix.main.events WHERE event_type = 'trial.recorded')
       ORDER BY ts, event_id""",  # every record, as the old code wrote them (not only the latest)
    """INSERT INTO out.baseline.results
       SELECT run_id, baseline, metrics, timezone('UTC', completed_at)
       FROM ix.main.baseline_results ORDER BY completed_at, event_id""",
]

_FILL_ALERTS = """INSERT INTO out.canon.alerts_raw
    SELECT alert_id, source, severity, payload, ts FROM al.main.alerts ORDER BY ts, event_id"""


def write_projection(paths: IndexPaths, *, durable: bool = True) -> Path:
    """Build the projection from the published index files and publish it. Returns its path."""
    target = projection_path(paths)
    tmp = paths.tmp_for(target)
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        p.unlink(missing_ok=True)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH {sql_str(str(paths.runs))} AS ix (READ_ONLY)")
        if paths.alerts.exists():
            con.execute(f"ATTACH {sql_str(str(paths.alerts))} AS al (READ_ONLY)")
        con.execute(f"ATTACH {sql_str(str(tmp))} AS out")
        con.begin()
        con.execute(LEGACY_DDL.format(db="out"))
        for q in _FILL:
            con.execute(q)
        if paths.alerts.exists():
            con.execute(_FILL_ALERTS)
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
    return target


def projection_hook(
    paths: IndexPaths, enabled: bool | None, *, changed: bool, durable: bool = True
) -> Path | None:
    """The indexer's hook, called after each round (`changed`: whether it published).

    `enabled`: True keeps the projection (writes it when missing or stale), False never touches
    it, None (the default) keeps an existing one current, so a daemon started without the
    option still refreshes a projection that `ledgerx rebuild --legacy-projection` created."""
    exists = projection_path(paths).exists()
    if enabled is False or (enabled is None and not exists) or (exists and not changed):
        return None
    if not paths.runs.exists():
        return None
    return write_projection(paths, durable=durable)


def remove_projection(paths: IndexPaths) -> bool:
    """Stop keeping the projection: delete it (the next rounds then skip it)."""
    p = projection_path(paths)
    try:
        os.unlink(p)
        return True
    except FileNotFoundError:
        return False

"""DDL of the index files (docs/index.md) and the SQL that derives tables from `events`.

Everything derived is computed by DuckDB from the `events` table, in the same transaction as the
rows and the per-file checkpoints, so one commit moves the whole index from one consistent state
to the next. Append-only facts (trials, baselines, artifacts, alerts) are derived only from the
rows of the current generation (`gen`); per-run state (runs_d, phase_timings) is recomputed for
the runs touched by that generation.
"""

from __future__ import annotations

import json
from typing import Any

# 2: trial_results is a view over events (format 1 stored it as a table).
# 3: trial_results shows the latest record of a trial (run_id, trial_id) once.
# 4: trial_results.trial_id keeps its JSON type: TRIAL_ID_TYPE instead of VARCHAR.
# 5: events.shape: the keys and kinds of a trial's params and metrics (Reader.trials_table).
# 6: events.tint, events.tnum: a trial's numbers and booleans in its shape's order, typed.
# 7: catalog.duckdb holds what points at a run (kind, creation, days, index, artifact folder),
#    so a round of a run's trials leaves it as it is; status and counts are in runs.duckdb.
INDEX_FORMAT = "7"

# A trial id is a JSON integer or string (the trial.recorded schema); the views keep which one it
# was, so `ORDER BY trial_id` sorts integers as integers (2 before 10), all integers before all
# strings, and `WHERE trial_id = 7` / `= 'a'` pick the member of that type. docs/index.md.
TRIAL_ID_TYPE = "UNION(int BIGINT, str VARCHAR)"


def trial_id_sql(j: str) -> str:
    """SQL for the TRIAL_ID_TYPE value of `j`, a JSON expression: an integral number in the
    BIGINT range is `int` (1.0 included: JSON Schema calls it an integer); a string is `str`; any
    other value (out of range, not integral, not a scalar) is `str` holding its JSON text; a
    missing id or JSON null is NULL."""
    j = f"({j})"  # `->` binds looser than IS NULL
    text = f"CAST({j} AS VARCHAR)"
    x = f"TRY_CAST({text} AS DOUBLE)"
    num = (
        f"CASE json_type({j}) WHEN 'BIGINT' THEN TRY_CAST({text} AS BIGINT)"
        f" WHEN 'UBIGINT' THEN TRY_CAST({text} AS BIGINT)"
        f" WHEN 'DOUBLE' THEN CASE WHEN {x} = trunc({x}) AND {x} >= -9223372036854775808.0"
        f" AND {x} < 9223372036854775808.0 THEN CAST({x} AS BIGINT) END END"
    )
    return (
        f"CASE WHEN ({num}) IS NOT NULL THEN CAST(union_value(int := {num}) AS {TRIAL_ID_TYPE})"
        f" WHEN json_type({j}) = 'VARCHAR'"
        f" THEN CAST(union_value(str := {j}->>'$') AS {TRIAL_ID_TYPE})"
        f" WHEN {j} IS NULL OR json_type({j}) = 'NULL' THEN NULL"
        f" ELSE CAST(union_value(str := {text}) AS {TRIAL_ID_TYPE}) END"
    )


def trial_id_value(v: Any) -> int | str | None:
    """trial_id_sql's rule on a parsed JSON value, for code that reads the raw id (the UI): an
    integral number in the BIGINT range is an int, a string stays a string, anything else is
    its JSON text."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if (isinstance(v, int) or v.is_integer()) and -(2**63) <= v < 2**63:
            return int(v)
    return json.dumps(v, separators=(",", ":"))


def trial_id_from_column(col: str, is_int: bool) -> str:
    """SQL for the TRIAL_ID_TYPE value of a typed column (the legacy layout's trial_id): an
    integer column's values are `int` (one beyond BIGINT becomes `str`), any other column's `str`;
    NULL stays NULL."""
    as_str = f"CAST(union_value(str := CAST({col} AS VARCHAR)) AS {TRIAL_ID_TYPE})"
    if not is_int:
        return f"CASE WHEN {col} IS NOT NULL THEN {as_str} END"
    n = f"TRY_CAST({col} AS BIGINT)"
    return (
        f"CASE WHEN {n} IS NOT NULL THEN CAST(union_value(int := {n}) AS {TRIAL_ID_TYPE})"
        f" WHEN {col} IS NOT NULL THEN {as_str} END"
    )


# `gen` is the indexing round that added a row: new rows of a round are `WHERE gen = ?`, which
# DuckDB prunes with zone maps since a round appends at the end of the table.
# Compression is chosen per column where DuckDB's own choice costs the full rebuild most:
# `data` (mostly unique JSON) with zstd; `event_id` (unique UUID text, which DuckDB would FSST-
# compress) uncompressed: 0.26 CPU-s less per million events at insert, point lookups faster,
# for 23 MB more per million events (docs/index.md, "Performance").
EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR NOT NULL USING COMPRESSION uncompressed,
    event_type VARCHAR NOT NULL,
    schema_version INTEGER NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    run_id VARCHAR,
    writer VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    data JSON NOT NULL USING COMPRESSION zstd,
    file VARCHAR NOT NULL,
    "offset" BIGINT NOT NULL,
    line_bytes INTEGER NOT NULL,
    gen BIGINT NOT NULL,
    data_upcast JSON,
    upcast_version INTEGER,
    shape VARCHAR,
    tint BIGINT[],
    tnum DOUBLE[]
)
"""

TABLES_DDL = [
    EVENTS_DDL,
    """
    CREATE TABLE IF NOT EXISTS runs_d (
        run_id VARCHAR NOT NULL,
        run_kind VARCHAR,
        config JSON,
        data_fingerprint VARCHAR,
        tags JSON,
        log_status VARCHAR NOT NULL,
        created_at TIMESTAMPTZ,
        started_at TIMESTAMPTZ,
        completed_at TIMESTAMPTZ,
        failed_at TIMESTAMPTZ,
        summary JSON,
        artifact_paths JSON,
        error VARCHAR,
        traceback VARCHAR,
        host VARCHAR,
        pid BIGINT,
        first_event_at TIMESTAMPTZ NOT NULL,
        last_event_at TIMESTAMPTZ NOT NULL,
        n_events BIGINT NOT NULL,
        n_trials BIGINT NOT NULL,
        days VARCHAR[] NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS phase_timings (
        run_id VARCHAR NOT NULL,
        phase VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        phase_index BIGINT,
        started_at TIMESTAMPTZ,
        completed_at TIMESTAMPTZ,
        duration_ms DOUBLE,
        output_summary JSON
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS baseline_results (
        event_id VARCHAR NOT NULL,
        run_id VARCHAR,
        baseline VARCHAR,
        metrics JSON,
        completed_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS artifacts_catalog (
        event_id VARCHAR NOT NULL,
        run_id VARCHAR,
        name VARCHAR,
        path VARCHAR,
        format VARCHAR,
        bytes BIGINT,
        sha256 VARCHAR,
        "rows" BIGINT,
        created_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS _ledger_files (
        file VARCHAR NOT NULL,
        day VARCHAR NOT NULL,
        "offset" BIGINT NOT NULL,
        size_seen BIGINT NOT NULL,
        events BIGINT NOT NULL,
        bad_lines BIGINT NOT NULL,
        gen BIGINT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS _bad_lines (
        file VARCHAR NOT NULL,
        "offset" BIGINT NOT NULL,
        len BIGINT NOT NULL,
        reason VARCHAR NOT NULL,
        gen BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS _index_meta (
        key VARCHAR PRIMARY KEY,
        value VARCHAR
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS _index_runs (
        gen BIGINT NOT NULL,
        mode VARCHAR NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        seconds DOUBLE NOT NULL,
        events BIGINT NOT NULL,
        bad_lines BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        files BIGINT NOT NULL
    )
    """,
]

# Views are computed at query time: `abandoned` depends on the clock, not only on the log.
VIEWS_DDL = [
    """
    CREATE OR REPLACE VIEW runs_status AS
    SELECT
        run_id,
        CASE WHEN log_status = 'running'
              AND last_event_at < now() - to_seconds(
                  (SELECT CAST(value AS DOUBLE) FROM _index_meta WHERE key = 'stale_after_s'))
             THEN 'abandoned' ELSE log_status END AS status,
        log_status,
        created_at,
        started_at,
        completed_at,
        failed_at,
        last_event_at
    FROM runs_d
    """,
    """
    CREATE OR REPLACE VIEW latest_runs AS
    SELECT
        d.run_id,
        d.run_kind,
        s.status,
        d.created_at,
        d.started_at,
        coalesce(d.completed_at, d.failed_at) AS completed_at,
        (epoch_us(coalesce(d.completed_at, d.failed_at))
            - epoch_us(coalesce(d.started_at, d.created_at))) / 1000.0 AS duration_ms,
        d.summary,
        d.n_trials AS trials
    FROM runs_d d JOIN runs_status s USING (run_id)
    ORDER BY coalesce(d.created_at, d.first_event_at) DESC, d.run_id DESC
    """,
    """
    CREATE OR REPLACE VIEW run_phase_summary AS
    SELECT
        run_id,
        phase,
        min(phase_index) AS phase_index,
        min(started_at) AS started_at,
        max(completed_at) AS completed_at,
        sum(duration_ms) AS duration_ms
    FROM phase_timings
    GROUP BY run_id, phase
    ORDER BY run_id, min(phase_index) NULLS LAST, min(started_at), phase
    """,
    # Trial identity is (run_id, trial_id): a task retried after its worker died may record a
    # trial twice; `events` keeps both, the view shows the latest (ts, file, offset) once.
    # Trials are read from `events` when queried: materializing them cost more than half of a
    # full rebuild (storing and compressing a second copy of every trial's params and metrics,
    # ≈ 1.2 CPU-s per million trials), while a per-run query only parses that run's rows
    # (see docs/index.md for the measurements).
    f"""
    CREATE OR REPLACE VIEW trial_results AS
    SELECT event_id, run_id, trial_id, params, metrics, recorded_at
    FROM (SELECT event_id, run_id, {trial_id_sql("s.trial_id")} AS trial_id, s.params, s.metrics,
                 ts AS recorded_at, file, "offset"
          FROM (SELECT event_id, run_id, ts, file, "offset",
                       json_transform(coalesce(data_upcast, data),
                                      '{{"trial_id":"JSON","params":"JSON","metrics":"JSON"}}') s
                FROM events WHERE event_type = 'trial.recorded'))
    QUALIFY row_number() OVER (PARTITION BY run_id, trial_id
                               ORDER BY recorded_at DESC, file DESC, "offset" DESC) = 1
    """,
    # The long table of numeric metrics is a view over trial_results: it costs nothing to index,
    # and a per-run query only unnests that run's rows (see docs/index.md for the measurement).
    """
    CREATE OR REPLACE VIEW trial_metrics AS
    SELECT event_id, run_id, trial_id, m.key AS metric, m.value AS value, recorded_at
    FROM (SELECT event_id, run_id, trial_id, recorded_at,
                 unnest(map_entries(json_transform(metrics, '"MAP(VARCHAR, DOUBLE)"'))) AS m
          FROM trial_results)
    """,
]

# Effective data: the upcast version when the event was below its type's newest version.
D = "coalesce(data_upcast, data)"

# Rows of the current round (or the duplicates re-derived with it): `{sel}` is a predicate.
DERIVE_APPEND = [
    f"""
    INSERT INTO baseline_results
    SELECT event_id, run_id, s.baseline, s.metrics, ts
    FROM (SELECT event_id, run_id, ts,
                 json_transform({D}, '{{"baseline":"VARCHAR","metrics":"JSON"}}') s
          FROM events WHERE event_type = 'baseline.completed' AND ({{sel}}))
    """,
    f"""
    INSERT INTO artifacts_catalog
    SELECT event_id, run_id, s.name, s.path, s.format, s.bytes, s.sha256, s.rows, ts
    FROM (SELECT event_id, run_id, ts,
                 json_transform({D}, '{{"name":"VARCHAR","path":"VARCHAR","format":"VARCHAR",
                     "bytes":"BIGINT","sha256":"VARCHAR","rows":"BIGINT"}}') s
          FROM events WHERE event_type = 'artifact.created' AND ({{sel}}))
    """,
]

APPEND_TABLES = ["baseline_results", "artifacts_catalog"]
APPEND_TYPES = ["baseline.completed", "artifact.created"]  # the source type of each, in order

# Per-run state for the runs that `{runs}` selects: `run_id IN (SELECT run_id FROM _touched)` in
# an incremental round, every run (`run_id IS NOT NULL`) in a full rebuild.
TOUCHED_RUNS = "run_id IN (SELECT run_id FROM _touched)"
ALL_RUNS = "run_id IS NOT NULL"
DERIVE_RUNS = f"""
INSERT INTO runs_d
WITH agg AS (
    SELECT run_id, min(ts) AS first_event_at, max(ts) AS last_event_at, count(*) AS n_events,
           count(*) FILTER (WHERE event_type = 'trial.recorded') AS n_trials,
           count(*) FILTER (WHERE event_type = 'run.created') AS n_created
    FROM events WHERE {{runs}}
    GROUP BY run_id
),
days AS (
    SELECT run_id, list(day ORDER BY day) AS days
    FROM (SELECT DISTINCT run_id, substr(file, 5, 10) AS day
          FROM events WHERE {{runs}})
    GROUP BY run_id
),
life AS (
    SELECT run_id,
        arg_min({D}, (ts, file, "offset")) FILTER (WHERE event_type = 'run.created') AS created,
        min(ts) FILTER (WHERE event_type = 'run.created') AS created_at,
        arg_min({D}, (ts, file, "offset")) FILTER (WHERE event_type = 'run.started') AS started,
        min(ts) FILTER (WHERE event_type = 'run.started') AS started_at,
        arg_max({D}, (ts, file, "offset")) FILTER (WHERE event_type = 'run.completed')
            AS completed,
        max(ts) FILTER (WHERE event_type = 'run.completed') AS completed_at,
        arg_max({D}, (ts, file, "offset")) FILTER (WHERE event_type = 'run.failed') AS failed,
        max(ts) FILTER (WHERE event_type = 'run.failed') AS failed_at,
        arg_max(event_type, (ts, file, "offset"))
            FILTER (WHERE event_type IN ('run.completed', 'run.failed')) AS terminal
    FROM events
    WHERE event_type IN ('run.created', 'run.started', 'run.completed', 'run.failed')
      AND {{runs}}
    GROUP BY run_id
)
SELECT
    agg.run_id,
    created->>'run_kind',
    created->'config',
    created->>'data_fingerprint',
    created->'tags',
    CASE WHEN terminal = 'run.completed' THEN 'completed'
         WHEN terminal = 'run.failed' THEN 'failed'
         WHEN agg.n_events > agg.n_created THEN 'running'
         ELSE 'created' END,
    created_at, started_at, completed_at, failed_at,
    completed->'summary',
    completed->'artifact_paths',
    failed->>'error',
    failed->>'traceback',
    started->>'host',
    TRY_CAST(started->>'pid' AS BIGINT),
    agg.first_event_at, agg.last_event_at, agg.n_events, agg.n_trials,
    days.days
FROM agg JOIN days USING (run_id) LEFT JOIN life USING (run_id)
"""

# A round without lifecycle events (run.created/started/completed/failed) changes an indexed
# run's row only by its new rows: counts, first and last event times, days, and 'created' (only
# run.created events so far) becomes 'running'; the rest comes from lifecycle events. Returns
# the runs it updated and their days (a run with no row yet is derived by DERIVE_RUNS). The
# days, a list (DuckDB rewrites a row whose list changes: ~3 ms more), get UPDATE_RUN_DAYS only
# when a run may lack one of the round's days.
UPDATE_RUNS = """
UPDATE runs_d SET
    first_event_at = least(runs_d.first_event_at, n.first_at),
    last_event_at = greatest(runs_d.last_event_at, n.last_at),
    n_events = runs_d.n_events + n.k,
    n_trials = runs_d.n_trials + n.t,
    log_status = CASE WHEN runs_d.log_status = 'created' THEN 'running' ELSE runs_d.log_status END
FROM (SELECT run_id, min(ts) AS first_at, max(ts) AS last_at, count(*) AS k,
             count(*) FILTER (WHERE event_type = 'trial.recorded') AS t
      FROM events WHERE gen = ? AND run_id IS NOT NULL
      GROUP BY run_id) n
WHERE runs_d.run_id = n.run_id
RETURNING runs_d.run_id, runs_d.days
"""
UPDATE_RUN_DAYS = """
UPDATE runs_d SET days = list_sort(list_distinct(list_concat(runs_d.days, n.days)))
FROM (SELECT run_id, list(DISTINCT substr(file, 5, 10)) AS days
      FROM events WHERE gen = ? AND run_id IS NOT NULL
      GROUP BY run_id) n
WHERE runs_d.run_id = n.run_id AND NOT list_has_all(runs_d.days, n.days)
"""

# Phases pair the k-th `phase.started` with the k-th `phase.completed` of the same run and name.
DERIVE_PHASES = f"""
INSERT INTO phase_timings
WITH p AS (
    SELECT run_id, event_type, ts, {D}->>'phase' AS phase,
           TRY_CAST({D}->>'phase_index' AS BIGINT) AS phase_index,
           TRY_CAST({D}->>'duration_ms' AS DOUBLE) AS duration_ms,
           {D}->'output_summary' AS output_summary,
           row_number() OVER (PARTITION BY run_id, event_type, {D}->>'phase'
                              ORDER BY ts, file, "offset") AS attempt
    FROM events
    WHERE event_type IN ('phase.started', 'phase.completed')
      AND {{runs}}
),
s AS (SELECT * FROM p WHERE event_type = 'phase.started'),
c AS (SELECT * FROM p WHERE event_type = 'phase.completed')
SELECT coalesce(s.run_id, c.run_id), coalesce(s.phase, c.phase), coalesce(s.attempt, c.attempt),
       s.phase_index, s.ts, c.ts, c.duration_ms, c.output_summary
FROM s FULL OUTER JOIN c
  ON s.run_id = c.run_id AND s.phase = c.phase AND s.attempt = c.attempt
WHERE coalesce(s.phase, c.phase) IS NOT NULL
"""

ALERTS_SELECT = f"""
SELECT event_id, s.alert_id, s.source, s.severity, s.payload, ts, run_id
FROM (SELECT event_id, ts, run_id,
             json_transform({D}, '{{"alert_id":"VARCHAR","source":"VARCHAR","severity":"VARCHAR",
                 "payload":"JSON"}}') s
      FROM events WHERE event_type = 'alert.ingested')
ORDER BY ts, event_id
"""

# What points at each run, and nothing a run's ordinary events change (`derive` says when a
# round may have changed it: a new run, a lifecycle event, a new day).
CATALOG_SELECT = """
SELECT run_id, run_kind, created_at, days, ? AS index_path,
       'artifacts/runs/' || run_id AS artifact_dir
FROM runs_d
ORDER BY run_id
"""

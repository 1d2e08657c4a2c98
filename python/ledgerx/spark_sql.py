"""The index's derived tables (ledgerx.index.schema) in Spark SQL, for ledgerx.spark.

Each query reads the temp views made before it (`ledgerx_<name>`), starting from
`ledgerx_raw_events`. Keep them in step with ledgerx/index/schema.py: tests/test_scale_spark.py
compares every table with DuckDB's, row for row.
"""

from __future__ import annotations

CACHED = {"events", "runs_d", "phase_timings"}  # read again by the views after them

# struct(ts, file, offset): the (ts, file, "offset") tie-break order of the index's arg_min/max.
_ORDER = "struct(ts, file, `offset`)"


def _life(fn: str, types: str) -> str:
    return f"{fn}(data, {_ORDER}) FILTER (WHERE event_type IN ({types}))"


def queries(stale_after_s: float) -> list[tuple[str, str]]:
    stale_us = int(stale_after_s * 1_000_000)
    return [
        (
            "events",
            """
            SELECT event_id, event_type, schema_version, ts, run_id, writer, seq, data, file,
                   `offset`, line_bytes
            FROM (SELECT *, row_number() OVER (PARTITION BY event_id
                                               ORDER BY file, `offset`) AS _rn
                  FROM ledgerx_raw_events)
            WHERE _rn = 1
            """,
        ),
        ("runs_d", RUNS_D),
        (
            "runs_status",
            f"""
            SELECT run_id,
                   CASE WHEN log_status = 'running'
                         AND unix_micros(last_event_at)
                             < unix_micros(current_timestamp()) - {stale_us}
                        THEN 'abandoned' ELSE log_status END AS status,
                   log_status, created_at, started_at, completed_at, failed_at, last_event_at
            FROM ledgerx_runs_d
            """,
        ),
        (
            "latest_runs",
            """
            SELECT d.run_id, d.run_kind, s.status, d.created_at, d.started_at,
                   coalesce(d.completed_at, d.failed_at) AS completed_at,
                   CAST(unix_micros(coalesce(d.completed_at, d.failed_at))
                        - unix_micros(coalesce(d.started_at, d.created_at)) AS DOUBLE) / 1000.0D
                       AS duration_ms,
                   d.summary, d.n_trials AS trials
            FROM ledgerx_runs_d d JOIN ledgerx_runs_status s USING (run_id)
            ORDER BY coalesce(d.created_at, d.first_event_at) DESC NULLS LAST,
                     d.run_id DESC NULLS LAST
            """,
        ),
        ("phase_timings", PHASES),
        (
            "run_phase_summary",
            """
            SELECT * FROM (
                SELECT run_id, phase, min(phase_index) AS phase_index,
                       min(started_at) AS started_at, max(completed_at) AS completed_at,
                       sum(duration_ms) AS duration_ms
                FROM ledgerx_phase_timings
                GROUP BY run_id, phase)
            ORDER BY run_id NULLS LAST, phase_index NULLS LAST, started_at NULLS LAST,
                     phase NULLS LAST
            """,
        ),
        (
            "trial_results",
            """
            SELECT event_id, run_id, trial_id, params, metrics, recorded_at
            FROM (SELECT event_id, run_id, get_json_object(data, '$.trial_id') AS trial_id,
                         get_json_object(data, '$.params') AS params,
                         get_json_object(data, '$.metrics') AS metrics, ts AS recorded_at,
                         row_number() OVER (
                             PARTITION BY run_id, get_json_object(data, '$.trial_id')
                             ORDER BY ts DESC, file DESC, `offset` DESC) AS _rn
                  FROM ledgerx_events WHERE event_type = 'trial.recorded')
            WHERE _rn = 1
            """,
        ),
        (
            "trial_metrics",
            """
            SELECT event_id, run_id, trial_id, m.key AS metric, m.value AS value, recorded_at
            FROM ledgerx_trial_results
            LATERAL VIEW explode(from_json(metrics, 'map<string,double>')) m AS key, value
            """,
        ),
        (
            "baseline_results",
            """
            SELECT event_id, run_id, get_json_object(data, '$.baseline') AS baseline,
                   get_json_object(data, '$.metrics') AS metrics, ts AS completed_at
            FROM ledgerx_events WHERE event_type = 'baseline.completed'
            """,
        ),
        (
            "artifacts_catalog",
            """
            SELECT event_id, run_id, get_json_object(data, '$.name') AS name,
                   get_json_object(data, '$.path') AS path,
                   get_json_object(data, '$.format') AS format,
                   try_cast(get_json_object(data, '$.bytes') AS BIGINT) AS bytes,
                   get_json_object(data, '$.sha256') AS sha256,
                   try_cast(get_json_object(data, '$.rows') AS BIGINT) AS `rows`,
                   ts AS created_at
            FROM ledgerx_events WHERE event_type = 'artifact.created'
            """,
        ),
        (
            "alerts",
            """
            SELECT event_id, get_json_object(data, '$.alert_id') AS alert_id,
                   get_json_object(data, '$.source') AS source,
                   get_json_object(data, '$.severity') AS severity,
                   get_json_object(data, '$.payload') AS payload, ts, run_id
            FROM ledgerx_events WHERE event_type = 'alert.ingested'
            ORDER BY ts, event_id
            """,
        ),
    ]


RUNS_D = f"""
WITH agg AS (
    SELECT run_id, min(ts) AS first_event_at, max(ts) AS last_event_at, count(*) AS n_events,
           count_if(event_type = 'trial.recorded') AS n_trials,
           count_if(event_type = 'run.created') AS n_created
    FROM ledgerx_events WHERE run_id IS NOT NULL
    GROUP BY run_id
),
days AS (
    SELECT run_id, array_sort(collect_set(substring(file, 5, 10))) AS days
    FROM ledgerx_events WHERE run_id IS NOT NULL
    GROUP BY run_id
),
life AS (
    SELECT run_id,
        {_life("min_by", "'run.created'")} AS created,
        min(ts) FILTER (WHERE event_type = 'run.created') AS created_at,
        {_life("min_by", "'run.started'")} AS started,
        min(ts) FILTER (WHERE event_type = 'run.started') AS started_at,
        {_life("max_by", "'run.completed'")} AS completed,
        max(ts) FILTER (WHERE event_type = 'run.completed') AS completed_at,
        {_life("max_by", "'run.failed'")} AS failed,
        max(ts) FILTER (WHERE event_type = 'run.failed') AS failed_at,
        max_by(event_type, {_ORDER})
            FILTER (WHERE event_type IN ('run.completed', 'run.failed')) AS terminal
    FROM ledgerx_events
    WHERE event_type IN ('run.created', 'run.started', 'run.completed', 'run.failed')
      AND run_id IS NOT NULL
    GROUP BY run_id
)
SELECT
    agg.run_id,
    get_json_object(created, '$.run_kind') AS run_kind,
    get_json_object(created, '$.config') AS config,
    get_json_object(created, '$.data_fingerprint') AS data_fingerprint,
    get_json_object(created, '$.tags') AS tags,
    CASE WHEN terminal = 'run.completed' THEN 'completed'
         WHEN terminal = 'run.failed' THEN 'failed'
         WHEN agg.n_events > agg.n_created THEN 'running'
         ELSE 'created' END AS log_status,
    created_at, started_at, completed_at, failed_at,
    get_json_object(completed, '$.summary') AS summary,
    get_json_object(completed, '$.artifact_paths') AS artifact_paths,
    get_json_object(failed, '$.error') AS error,
    get_json_object(failed, '$.traceback') AS traceback,
    get_json_object(started, '$.host') AS host,
    try_cast(get_json_object(started, '$.pid') AS BIGINT) AS pid,
    agg.first_event_at, agg.last_event_at, agg.n_events, agg.n_trials,
    days.days
FROM agg JOIN days USING (run_id) LEFT JOIN life USING (run_id)
"""

PHASES = """
WITH p AS (
    SELECT run_id, event_type, ts, get_json_object(data, '$.phase') AS phase,
           try_cast(get_json_object(data, '$.phase_index') AS BIGINT) AS phase_index,
           try_cast(get_json_object(data, '$.duration_ms') AS DOUBLE) AS duration_ms,
           get_json_object(data, '$.output_summary') AS output_summary,
           row_number() OVER (PARTITION BY run_id, event_type, get_json_object(data, '$.phase')
                              ORDER BY ts, file, `offset`) AS attempt
    FROM ledgerx_events
    WHERE event_type IN ('phase.started', 'phase.completed') AND run_id IS NOT NULL
),
s AS (SELECT * FROM p WHERE event_type = 'phase.started'),
c AS (SELECT * FROM p WHERE event_type = 'phase.completed')
SELECT coalesce(s.run_id, c.run_id) AS run_id, coalesce(s.phase, c.phase) AS phase,
       CAST(coalesce(s.attempt, c.attempt) AS INT) AS attempt, s.phase_index,
       s.ts AS started_at, c.ts AS completed_at, c.duration_ms, c.output_summary
FROM s FULL OUTER JOIN c
  ON s.run_id = c.run_id AND s.phase = c.phase AND s.attempt = c.attempt
WHERE coalesce(s.phase, c.phase) IS NOT NULL
"""

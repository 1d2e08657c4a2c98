"""Opening a legacy DuckDB file read-only and viewing it in the index's shape.

`attach_legacy` attaches the file READ_ONLY; when the old code still holds it open for writing
(DuckDB's lock error), it copies the file and its WAL to a temporary folder and attaches that
snapshot instead (DuckDB replays the copied WAL in memory), or raises `LegacyLockedError`.

`create_legacy_views` defines, as temp views, the legacy store seen through the ledger's model:

    legacy_runs_n, legacy_phases_n, legacy_trials_n, legacy_baselines_n, legacy_alerts_n
        one row per legacy row, normalized, with the deterministic event ids migration uses;
    legacy_latest_runs, legacy_run_phase_summary, legacy_trial_results,
    legacy_baseline_results, legacy_alerts
        the standard queries, with the index's column names and types (docs/index.md).

Normalization is defined once, here; migration reads these views, so what the index shows after
a migration is by construction what these views show. The rules (also in docs/legacy.md):
- naive TIMESTAMP columns are UTC; every time becomes TIMESTAMPTZ (microseconds);
- JSON is minified by DuckDB (`json()`), as the index stores it;
- a status other than created/running/completed/failed is `failed` (error "legacy status: X");
- `completed_at` is kept for completed/failed runs only (missing: started_at, else created_at);
- `summary` belongs to completed runs (NULL becomes `{}`, the neutral object migration writes);
  a failed run's summary is carried in its `run.failed` event but not shown, as in the index;
- a phase's `phase_index` exists only when it started, its duration and output only when it
  completed (a missing duration is completed_at - started_at); a row with neither time is dropped;
- null metric values are dropped (the log only holds numbers); a NULL params/metrics/payload
  is `{}`, a NULL source/severity is "", a NULL trial/baseline time is its run's start/creation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ledgerx.errors import LedgerError
from ledgerx.index.schema import trial_id_from_column
from ledgerx.legacy.schema import LEGACY_TABLES, UUID7_MACROS


class LegacyError(LedgerError):
    """The legacy file is missing, unreadable or not in the legacy layout."""


class LegacyLockedError(LegacyError):
    """Another process holds the legacy file open for writing and no snapshot could be used."""


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _is_lock_error(e: BaseException) -> bool:
    return "lock" in str(e).lower()


@dataclass
class Attached:
    """Where the legacy data comes from: the file itself, or a snapshot copy of it."""

    alias: str
    path: Path
    snapshot: Path | None = None  # the copy attached, when the file was locked
    snapshot_dir: Path | None = None
    lock_message: str = ""


def attach_legacy(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    alias: str = "legacy_db",
    *,
    snapshot: bool = True,
) -> Attached:
    """ATTACH `path` READ_ONLY as `alias`; on a writer's lock, attach a snapshot copy instead."""
    if not path.is_file():
        raise LegacyError(f"legacy file not found: {path}")
    try:
        con.execute(f"ATTACH {sql_str(str(path))} AS {alias} (READ_ONLY)")
        return Attached(alias, path)
    except duckdb.Error as e:
        if not _is_lock_error(e):
            raise LegacyError(f"cannot open legacy file {path}: {_one_line(e)}") from None
        lock_msg = _one_line(e)
    if not snapshot:
        raise LegacyLockedError(
            f"legacy file {path} is open for writing by another process ({lock_msg})"
        )
    d = Path(tempfile.mkdtemp(prefix="ledgerx-legacy-"))
    copy = d / path.name
    try:
        shutil.copyfile(path, copy)
        wal = path.with_name(path.name + ".wal")
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        con.execute(f"ATTACH {sql_str(str(copy))} AS {alias} (READ_ONLY)")
    except (duckdb.Error, OSError) as e:
        shutil.rmtree(d, ignore_errors=True)
        raise LegacyLockedError(
            f"legacy file {path} is open for writing by another process ({lock_msg}), "
            f"and a snapshot copy of it could not be opened either: {_one_line(e)}"
        ) from None
    return Attached(alias, path, snapshot=copy, snapshot_dir=d, lock_message=lock_msg)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


# -- the normalized views --------------------------------------------------------------------


def _column_types(
    con: duckdb.DuckDBPyConnection, alias: str
) -> dict[tuple[str, str], dict[str, str]]:
    rows = con.execute(
        """SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns()
           WHERE database_name = ?""",
        [alias],
    ).fetchall()
    out: dict[tuple[str, str], dict[str, str]] = {}
    for s, t, c, ty in rows:
        out.setdefault((s, t), {})[c] = ty.upper()
    return out


class _Cols:
    """SQL expressions converting one legacy table's columns to the index's types."""

    def __init__(self, table: str, types: dict[str, str]) -> None:
        self.table, self.types = table, types

    def _type(self, c: str) -> str:
        return self.types[c.rsplit(".", 1)[-1]]

    def ts(self, c: str) -> str:
        ty = self._type(c)
        if ty in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
            return c
        if ty.startswith("TIMESTAMP") or ty == "DATE":  # naive: the old code wrote UTC
            return f"timezone('UTC', CAST({c} AS TIMESTAMP))"
        if ty == '"NULL"':
            return "CAST(NULL AS TIMESTAMPTZ)"
        raise LegacyError(
            f"{self.table}.{c}: unsupported type {ty} for a time (want TIMESTAMP[TZ])"
        )

    def js(self, c: str) -> str:
        ty = self._type(c)
        if ty == '"NULL"':
            return "CAST(NULL AS JSON)"
        return f"json(CAST({c} AS JSON))"

    def s(self, c: str) -> str:
        return f"CAST({c} AS VARCHAR)"

    def is_int(self, c: str) -> bool:
        return self._type(c) in (
            "TINYINT",
            "SMALLINT",
            "INTEGER",
            "BIGINT",
            "HUGEINT",
            "UTINYINT",
            "USMALLINT",
            "UINTEGER",
            "UBIGINT",
        )


@dataclass
class LegacyShape:
    """What `create_legacy_views` found: the types of the legacy columns (for migration)."""

    trial_id_is_int: bool


def create_legacy_views(con: duckdb.DuckDBPyConnection, alias: str = "legacy_db") -> LegacyShape:
    """Create the legacy_* temp views (see the module docstring) over the attached file."""
    found = _column_types(con, alias)
    cols: dict[str, _Cols] = {}
    src: dict[str, str] = {}
    for key, (schema, table, names) in LEGACY_TABLES.items():
        types = found.get((schema, table))
        fq = f"{schema}.{table}"
        if types is None:
            if key == "runs":
                raise LegacyError(f"not a legacy file: no table {fq} in {alias}")
            # An absent optional table reads as empty.
            types = {n: '"NULL"' for n in names}
            src[key] = f"(SELECT {', '.join(f'NULL AS {n}' for n in names)} WHERE false)"
        else:
            missing = [n for n in names if n not in types]
            if missing:
                raise LegacyError(f"legacy table {fq} lacks column(s) {', '.join(missing)}")
            src[key] = f"{alias}.{schema}.{table}"
        cols[key] = _Cols(fq, types)

    con.execute(UUID7_MACROS)
    r, p, t, b, a = (cols[k] for k in ("runs", "phases", "trials", "baselines", "alerts"))
    sep = "chr(31)"

    con.execute(f"""
    CREATE OR REPLACE TEMP VIEW legacy_runs_n AS
    WITH raw AS (
        SELECT {r.s("run_id")} AS run_id,
               {r.s("run_kind")} AS run_kind_raw,
               {r.js("config")} AS config_raw,
               {r.s("data_fingerprint")} AS fp_raw,
               lower(trim({r.s("status")})) AS status_raw,
               {r.ts("created_at")} AS created_at,
               {r.ts("started_at")} AS started_at,
               {r.ts("completed_at")} AS completed_raw,
               {r.js("summary")} AS summary_raw
        FROM {src["runs"]} WHERE run_id IS NOT NULL
    ), s AS (
        SELECT *, CASE WHEN status_raw IN ('created', 'running', 'completed', 'failed')
                       THEN status_raw ELSE 'failed' END AS status
        FROM raw
    )
    SELECT run_id,
           coalesce(nullif(run_kind_raw, ''), 'unknown') AS run_kind,
           CAST(coalesce(config_raw, '{{}}') AS JSON) AS config,
           coalesce(fp_raw, '') AS data_fingerprint,
           status,
           status_raw,
           created_at,
           started_at,
           CASE WHEN status IN ('completed', 'failed')
                THEN coalesce(completed_raw, started_at, created_at) END AS completed_at,
           CASE WHEN status = 'completed'
                THEN CAST(coalesce(summary_raw, '{{}}') AS JSON) END AS summary,
           summary_raw,
           CASE WHEN status = 'failed' THEN
                CASE WHEN status_raw = 'failed' THEN ''
                     ELSE 'legacy status: ' || coalesce(status_raw, 'NULL') END END AS error,
           lx_uuid7(created_at, 'run.created' || {sep} || run_id) AS created_event_id,
           lx_uuid7(started_at, 'run.started' || {sep} || run_id) AS started_event_id,
           lx_uuid7(created_at, 'run.heartbeat' || {sep} || run_id) AS heartbeat_event_id,
           lx_uuid7(coalesce(completed_raw, started_at, created_at),
                    'run.' || status || {sep} || run_id) AS terminal_event_id
    FROM s
    """)

    con.execute(f"""
    CREATE OR REPLACE TEMP VIEW legacy_phases_n AS
    WITH raw AS (
        SELECT {p.s("run_id")} AS run_id, {p.s("phase")} AS phase,
               {p.ts("started_at")} AS started_at, {p.ts("completed_at")} AS completed_at,
               phase_index AS phase_index_raw, CAST(duration_ms AS DOUBLE) AS duration_raw,
               {p.js("output_summary")} AS output_raw
        FROM {src["phases"]}
        WHERE run_id IS NOT NULL AND phase IS NOT NULL AND {p.s("phase")} <> ''
    ), x AS (
        SELECT run_id, phase, started_at, completed_at,
               CASE WHEN started_at IS NOT NULL
                    THEN CAST(coalesce(phase_index_raw, 0) AS BIGINT) END AS phase_index,
               CASE WHEN completed_at IS NOT NULL
                    THEN CAST(greatest(coalesce(duration_raw,
                         (epoch_us(completed_at) - epoch_us(started_at)) / 1000.0, 0), 0)
                         AS DOUBLE) END AS duration_ms,
               CASE WHEN completed_at IS NOT NULL THEN CAST(output_raw AS JSON) END
                   AS output_summary
        FROM raw WHERE started_at IS NOT NULL OR completed_at IS NOT NULL
    ), k AS (
        SELECT *, row_number() OVER (
            PARTITION BY run_id, phase
            ORDER BY started_at NULLS LAST, completed_at NULLS LAST, phase_index, duration_ms,
                     CAST(output_summary AS VARCHAR)) AS k
        FROM x
    )
    SELECT *,
           lx_uuid7(started_at, 'phase.started' || {sep} || run_id || {sep} || phase || {sep}
                    || CAST(k AS VARCHAR)) AS started_event_id,
           lx_uuid7(completed_at, 'phase.completed' || {sep} || run_id || {sep} || phase
                    || {sep} || CAST(k AS VARCHAR)) AS completed_event_id
    FROM k
    """)

    con.execute(f"""
    CREATE OR REPLACE TEMP VIEW legacy_trials_n AS
    WITH x AS (
        SELECT {t.s("t.run_id")} AS run_id, {t.s("t.trial_id")} AS trial_id,
               t.trial_id AS trial_id_raw,
               CAST(coalesce({t.js("t.params")}, '{{}}') AS JSON) AS params,
               CAST(coalesce(json_merge_patch('{{}}', {t.js("t.metrics")}), '{{}}') AS JSON)
                   AS metrics,
               coalesce({t.ts("t.recorded_at")}, r.started_at, r.created_at) AS recorded_at
        FROM {src["trials"]} t LEFT JOIN legacy_runs_n r ON r.run_id = {t.s("t.run_id")}
        WHERE t.run_id IS NOT NULL
    ), k AS (
        SELECT *, row_number() OVER (
            PARTITION BY run_id, trial_id
            ORDER BY recorded_at, CAST(params AS VARCHAR), CAST(metrics AS VARCHAR)) AS k
        FROM x
    )
    SELECT *,
           lx_uuid7(recorded_at, 'trial.recorded' || {sep} || run_id || {sep}
                    || coalesce(trial_id, '') || {sep} || CAST(k AS VARCHAR)) AS event_id
    FROM k
    """)

    con.execute(f"""
    CREATE OR REPLACE TEMP VIEW legacy_baselines_n AS
    WITH x AS (
        SELECT {b.s("b.run_id")} AS run_id, {b.s("b.baseline")} AS baseline,
               CAST(coalesce(json_merge_patch('{{}}', {b.js("b.metrics")}), '{{}}') AS JSON)
                   AS metrics,
               coalesce({b.ts("b.completed_at")}, r.completed_at, r.started_at, r.created_at)
                   AS completed_at
        FROM {src["baselines"]} b LEFT JOIN legacy_runs_n r ON r.run_id = {b.s("b.run_id")}
    ), k AS (
        SELECT *, row_number() OVER (
            PARTITION BY run_id, baseline
            ORDER BY completed_at, CAST(metrics AS VARCHAR)) AS k
        FROM x
    )
    SELECT *,
           lx_uuid7(completed_at, 'baseline.completed' || {sep} || coalesce(run_id, '') || {sep}
                    || coalesce(baseline, '') || {sep} || CAST(k AS VARCHAR)) AS event_id
    FROM k
    """)

    con.execute(f"""
    CREATE OR REPLACE TEMP VIEW legacy_alerts_n AS
    WITH x AS (
        SELECT {a.s("alert_id")} AS alert_id,
               coalesce({a.s("source")}, '') AS source,
               coalesce({a.s("severity")}, '') AS severity,
               CAST(coalesce({a.js("payload")}, '{{}}') AS JSON) AS payload,
               {a.ts("ts")} AS ts
        FROM {src["alerts"]}
    ), k AS (
        SELECT *, row_number() OVER (
            PARTITION BY alert_id ORDER BY ts, CAST(payload AS VARCHAR)) AS k
        FROM x
    )
    SELECT *,
           lx_uuid7(ts, 'alert.ingested' || {sep} || coalesce(alert_id, '') || {sep}
                    || CAST(k AS VARCHAR)) AS event_id
    FROM k
    """)

    # The standard queries, with the index's columns and types (schema.py VIEWS_DDL/ALERTS_SELECT).
    con.execute("""
    CREATE OR REPLACE TEMP VIEW legacy_latest_runs AS
    SELECT r.run_id, r.run_kind, r.status, r.created_at, r.started_at, r.completed_at,
           CAST((epoch_us(r.completed_at) - epoch_us(coalesce(r.started_at, r.created_at)))
                / 1000.0 AS DOUBLE) AS duration_ms,
           r.summary,
           CAST(coalesce(t.n, 0) AS BIGINT) AS trials
    FROM legacy_runs_n r
    LEFT JOIN (SELECT run_id, count(*) AS n FROM legacy_trials_n GROUP BY run_id) t USING (run_id)
    ORDER BY r.created_at DESC, r.run_id DESC
    """)
    con.execute("""
    CREATE OR REPLACE TEMP VIEW legacy_run_phase_summary AS
    SELECT run_id, phase, min(phase_index) AS phase_index, min(started_at) AS started_at,
           max(completed_at) AS completed_at, sum(duration_ms) AS duration_ms
    FROM legacy_phases_n
    GROUP BY run_id, phase
    ORDER BY run_id, min(phase_index) NULLS LAST, min(started_at), phase
    """)
    # trial_id typed as the index types it: an integer column's ids are `int`, others `str`,
    # as migration writes them (JSON numbers, JSON strings).
    tid = trial_id_from_column("trial_id_raw", t.is_int("trial_id"))
    con.execute(f"""
    CREATE OR REPLACE TEMP VIEW legacy_trial_results AS
    SELECT event_id, run_id, {tid} AS trial_id, params, metrics, recorded_at
    FROM legacy_trials_n
    QUALIFY row_number() OVER (PARTITION BY run_id, trial_id
                               ORDER BY recorded_at DESC, k DESC) = 1  -- as the index: latest once
    """)
    con.execute("""
    CREATE OR REPLACE TEMP VIEW legacy_baseline_results AS
    SELECT event_id, run_id, baseline, metrics, completed_at FROM legacy_baselines_n
    """)
    con.execute("""
    CREATE OR REPLACE TEMP VIEW legacy_alerts AS
    SELECT event_id, alert_id, source, severity, payload, ts, CAST(NULL AS VARCHAR) AS run_id
    FROM legacy_alerts_n ORDER BY ts, event_id
    """)
    # runs_d + status, shaped like the index's `run` query (Reader.run).
    con.execute("""
    CREATE OR REPLACE TEMP VIEW legacy_run_rows AS
    SELECT r.run_id, r.run_kind, r.config, r.data_fingerprint, CAST(NULL AS JSON) AS tags,
           r.status AS log_status, r.created_at, r.started_at,
           CASE WHEN r.status = 'completed' THEN r.completed_at END AS completed_at,
           CASE WHEN r.status = 'failed' THEN r.completed_at END AS failed_at,
           r.summary,
           CASE WHEN r.status = 'completed' THEN CAST('[]' AS JSON) END AS artifact_paths,
           r.error, CAST(NULL AS VARCHAR) AS traceback, CAST(NULL AS VARCHAR) AS host,
           CAST(NULL AS BIGINT) AS pid,
           r.created_at AS first_event_at,
           greatest(r.created_at, r.started_at, r.completed_at) AS last_event_at,
           CAST(NULL AS BIGINT) AS n_events,
           CAST(coalesce(t.n, 0) AS BIGINT) AS n_trials,
           CAST(NULL AS VARCHAR[]) AS days,
           r.status
    FROM legacy_runs_n r
    LEFT JOIN (SELECT run_id, count(*) AS n FROM legacy_trials_n GROUP BY run_id) t USING (run_id)
    """)
    return LegacyShape(trial_id_is_int=t.is_int("trial_id"))


def remove_snapshot(att: Attached | None) -> None:
    if att is not None and att.snapshot_dir is not None:
        shutil.rmtree(att.snapshot_dir, ignore_errors=True)


def legacy_files(path: Path) -> list[Path]:
    """The legacy file and its WAL when there is one."""
    wal = path.with_name(path.name + ".wal")
    return [path, wal] if os.path.exists(wal) else [path]

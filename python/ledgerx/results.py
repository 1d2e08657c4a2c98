"""Results the way people read them: one row per trial or per run, with `params.<k>`,
`metrics.<k>`, `config.<k>`, `summary.<k>` and `tags.<k>` as typed columns (the shape of Optuna's
`trials_dataframe()` and MLflow's `search_runs()`). Used through `ledgerx.Reader`.

Column types: a key whose values are all booleans is `bool`, all integers `int64`, all numbers
`float64`, all strings `string`; nested values (objects, arrays) and keys whose values mix types
are JSON text. A key missing from a row is null there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from ledgerx.errors import ConfigError, LedgerError
from ledgerx.flatten import flatten_trials
from ledgerx.typed_trials import typed_trials

_TS = pa.timestamp("us", tz="UTC")

# One row per trial from the trial_results view (its one definition: the latest record of a
# trial recorded twice; 1 and "1" are two trials; legacy runs included in dual mode), in
# (run_id, trial_id) order, integers sorting as integers. `rn` is the row's place in the result,
# `tid` the typed id as JSON text (3.0 is 3) and `d` a JSON object text of the trial's params
# and metrics as the view holds them. `ledgerx.flatten` types and spreads it.
TRIALS_SQL = """
SELECT row_number() OVER (ORDER BY run_id, trial_id, recorded_at, event_id) AS rn, run_id,
       CASE union_tag(trial_id) WHEN 'int' THEN CAST(union_extract(trial_id, 'int') AS VARCHAR)
            WHEN 'str' THEN CAST(to_json(union_extract(trial_id, 'str')) AS VARCHAR) END AS tid,
       recorded_at AS ts,
       '{{"params":' || coalesce(CAST(params AS VARCHAR), 'null')
           || ',"metrics":' || coalesce(CAST(metrics AS VARCHAR), 'null') || '}}' AS d
FROM trial_results WHERE true {where}
ORDER BY rn
"""

RUNS_SQL = """
SELECT r.run_id, r.run_kind, s.status, CAST(r.tags AS VARCHAR), r.created_at, r.started_at,
       coalesce(r.completed_at, r.failed_at) AS ended_at,
       (epoch_us(coalesce(r.completed_at, r.failed_at))
            - epoch_us(coalesce(r.started_at, r.created_at))) / 1000.0 AS duration_ms,
       r.n_trials, CAST(r.config AS VARCHAR), CAST(r.summary AS VARCHAR), r.error
FROM runs_d r JOIN runs_status s USING (run_id) {where}
ORDER BY coalesce(r.created_at, r.first_event_at) DESC, r.run_id DESC
"""


class MissingDependencyError(LedgerError, ImportError):
    """An optional package (pandas) is needed for this call."""


def _where(column: str, run_ids: str | Sequence[str] | None) -> tuple[str, list[Any]]:
    if run_ids is None:
        return "", []
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    return f"AND {column} IN (SELECT unnest(?::VARCHAR[]))", [ids]


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int" if -(2**63) <= v < 2**63 else "json"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return "json"


def _column(values: list[Any]) -> pa.Array:
    """Typed by the rules in the module docstring; None stays null."""
    kinds = {_kind(v) for v in values if v is not None}
    if kinds == {"int", "float"}:
        kinds = {"float"}
    kind = kinds.pop() if len(kinds) == 1 else ("json" if kinds else "str")
    if kind == "json":
        text = [None if v is None else json.dumps(v, separators=(",", ":")) for v in values]
        return pa.array(text, pa.string())
    typ = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    if kind == "float":
        values = [None if v is None else float(v) for v in values]
    return pa.array(values, typ[kind])


def _expand(prefix: str, objs: list[dict[str, Any] | None]) -> dict[str, pa.Array]:
    """`prefix.<key>` columns from a list of JSON objects (keys in first-seen order)."""
    keys: dict[str, None] = {}
    for o in objs:
        if isinstance(o, dict):
            keys.update(dict.fromkeys(o))
    return {
        f"{prefix}.{k}": _column([o.get(k) if isinstance(o, dict) else None for o in objs])
        for k in keys
    }


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def trials_table(reader: Any, run_ids: str | Sequence[str] | None = None) -> pa.Table:
    """One row per trial: run_id, trial_id (int64 when every id is an integer, else string),
    ts, params.<k>..., metrics.<k>..."""
    where, params = _where("run_id", run_ids)
    typed = typed_trials(reader, where, params)
    if typed is not None:
        return typed
    base = reader.sql(TRIALS_SQL.format(where=where), params).to_arrow_table()
    return flatten_trials(base)


def best_trials(trials: pa.Table, metric: str, mode: str = "max") -> dict[str, tuple[Any, float]]:
    """{run_id: (trial_id, value)} of the best trial on `metrics.<metric>` per run."""
    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be 'max' or 'min', not {mode!r}")
    col = f"metrics.{metric}"
    if col not in trials.column_names:
        return {}
    best: dict[str, tuple[Any, float]] = {}
    for rid, tid, v in zip(
        trials["run_id"].to_pylist(),
        trials["trial_id"].to_pylist(),
        trials[col].to_pylist(),
        strict=True,
    ):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        cur = best.get(rid)
        if cur is None or (v > cur[1] if mode == "max" else v < cur[1]):
            best[rid] = (tid, float(v))
    return best


def runs_table(
    reader: Any,
    run_ids: str | Sequence[str] | None = None,
    *,
    best_metric: str | None = None,
    mode: str = "max",
) -> pa.Table:
    """One row per run, newest first: run_id, run_kind, status, created_at, started_at,
    ended_at, duration_ms, trials, error, tags.<k>, config.<k>, summary.<k>; with
    `best_metric`, also best_trial_id and best.<metric> (the trial that maximizes it, or
    minimizes with mode="min")."""
    where, params = _where("run_id", run_ids)
    rows = reader.sql(RUNS_SQL.format(where=where.replace("AND", "WHERE", 1)), params).fetchall()
    cols: dict[str, pa.Array] = {
        "run_id": pa.array([r[0] for r in rows], pa.string()),
        "run_kind": pa.array([r[1] for r in rows], pa.string()),
        "status": pa.array([r[2] for r in rows], pa.string()),
        "created_at": pa.array([r[4] for r in rows], _TS),
        "started_at": pa.array([r[5] for r in rows], _TS),
        "ended_at": pa.array([r[6] for r in rows], _TS),
        "duration_ms": pa.array([r[7] for r in rows], pa.float64()),
        "trials": pa.array([r[8] for r in rows], pa.int64()),
        "error": pa.array([r[11] for r in rows], pa.string()),
    }
    cols.update(_expand("tags", [_loads(r[3]) for r in rows]))
    cols.update(_expand("config", [_loads(r[9]) for r in rows]))
    cols.update(_expand("summary", [_loads(r[10]) for r in rows]))
    if best_metric is not None:
        best = best_trials(trials_table(reader, [r[0] for r in rows]), best_metric, mode)
        got = [best.get(r[0]) for r in rows]
        cols["best_trial_id"] = _column([b[0] if b else None for b in got])
        cols[f"best.{best_metric}"] = pa.array([b[1] if b else None for b in got], pa.float64())
    return pa.table(cols)


def to_pandas(table: pa.Table, what: str) -> Any:
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"{what} needs pandas (pip install pandas); the same data as a pyarrow.Table: "
            f"{what.replace('_frame', '_table')}"
        ) from None
    return table.to_pandas()


def json_rows(rel: Any, json_columns: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows of a relation as dicts, with JSON columns parsed (so `--json` never nests JSON
    text inside JSON)."""
    jc = set(json_columns)
    cols = list(rel.columns)
    out = []
    for row in rel.fetchall():
        out.append(
            {
                c: (_loads(v) if c in jc and isinstance(v, str) else v)
                for c, v in zip(cols, row, strict=True)
            }
        )
    return out

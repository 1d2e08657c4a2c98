"""Trials of one run for the charts and the table: names of params and metrics, the best trial,
a downsampled series (at most `MAX_POINTS` rows: past that, for each bucket of consecutive
trials, the ones with the lowest and the highest value of the chosen metric, so the chart keeps
its envelope), and a sorted page for the table."""

from __future__ import annotations

from typing import Any

from ledgerx.ui.queries import MAX_POINTS, TRIALS_TABLE_ROWS, Index, json_path, loads

# The trials of one run in recording order, with `i` their position and `m` the chosen metric.
_NUMBERED = """
WITH t AS (
    SELECT trial_id, params, metrics, recorded_at,
           row_number() OVER (ORDER BY recorded_at, event_id) - 1 AS i,
           TRY_CAST(json_extract_string(metrics, ?) AS DOUBLE) AS m
    FROM trial_results WHERE run_id = ?
)
"""


def names(index: Index, run_id: str) -> tuple[list[str], list[str]]:
    """(param names, metric names) in first-seen order, from the first trials."""
    rows = index.rows(
        "SELECT json_keys(params) AS p, json_keys(metrics) AS m FROM trial_results"
        " WHERE run_id = ? AND json_type(params) = 'OBJECT' AND json_type(metrics) = 'OBJECT'"
        " ORDER BY recorded_at, event_id LIMIT 200",
        [run_id],
    )
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for r in rows:
        params.update(dict.fromkeys(r["p"] or []))
        metrics.update(dict.fromkeys(r["m"] or []))
    return list(params), list(metrics)


def _decode(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        r["params"] = loads(r["params"]) or {}
        r["metrics"] = loads(r["metrics"]) or {}
        r.pop("m", None)
    return rows


def best(index: Index, run_id: str, metric: str, goal: str = "max") -> dict[str, Any] | None:
    order = "DESC" if goal == "max" else "ASC"
    rows = index.rows(
        _NUMBERED + f"SELECT i, trial_id, params, metrics, m FROM t WHERE m IS NOT NULL"
        f" ORDER BY m {order}, i LIMIT 1",
        [json_path(metric), run_id],
    )
    return _decode(rows)[0] if rows else None


def series(index: Index, run_id: str, metric: str, n_trials: int) -> dict[str, Any]:
    """Trials for the charts: all of them up to MAX_POINTS, else a min/max-per-bucket sample
    along `metric` (first and last trial kept)."""
    args: list[Any] = [json_path(metric), run_id]
    if n_trials <= MAX_POINTS:
        sql = _NUMBERED + "SELECT i, trial_id, params, metrics FROM t ORDER BY i"
    else:
        bucket = max(1, -(-2 * n_trials // MAX_POINTS))  # two rows per bucket
        sql = (
            _NUMBERED
            + f"""SELECT i, trial_id, params, metrics FROM t
            QUALIFY row_number() OVER (PARTITION BY i // {bucket} ORDER BY m DESC NULLS LAST, i) = 1
                 OR row_number() OVER (PARTITION BY i // {bucket} ORDER BY m ASC NULLS LAST, i) = 1
                 OR i = 0 OR i = {int(n_trials) - 1}
            ORDER BY i"""
        )
    rows = _decode(index.rows(sql, args))
    return {"rows": rows, "total": n_trials, "sampled": len(rows) < n_trials}


def table(
    index: Index,
    run_id: str,
    sort: str,
    desc: bool = True,
    limit: int = TRIALS_TABLE_ROWS,
) -> list[dict[str, Any]]:
    """A page of trials sorted by `trial_id`, `metric:NAME` or `param:NAME` (numbers as
    numbers, other values as text)."""
    kind, _, name = sort.partition(":")
    if kind == "metric" and name:
        key, args = "json_extract_string(metrics, ?)", [json_path(name)]
    elif kind == "param" and name:
        key, args = "json_extract_string(params, ?)", [json_path(name)]
    else:
        key, args = "trial_id", []
    d = "DESC" if desc else "ASC"
    rows = index.rows(
        f"""SELECT trial_id, params, metrics, recorded_at,
                   row_number() OVER (ORDER BY recorded_at, event_id) - 1 AS i,
                   {key} AS k
            FROM trial_results WHERE run_id = ?
            ORDER BY TRY_CAST(k AS DOUBLE) {d} NULLS LAST, k {d} NULLS LAST, i
            LIMIT {int(limit)}""",
        args + [run_id],
    )
    for r in rows:
        r.pop("k", None)
    return _decode(rows)

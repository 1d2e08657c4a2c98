"""Trials of one run for the charts and the table: names of params and metrics, the best trial,
a downsampled series (at most `MAX_POINTS` rows: past that, for each bucket of consecutive
trials, the ones with the lowest and the highest value of the chosen metric, so the chart keeps
its envelope), and a sorted page for the table.

Everything here reads the index's `trial_results` view, the one definition of what a trial is:
a trial recorded twice (a retried task) is shown once, its latest record, exactly as
`Reader.trials()` and `Reader.trials_table()` show it. Trials are numbered `i` in the Reader's
order (recorded_at, then event_id). Counts are of trials, not of records (`runs_d.n_trials`
counts records).
"""

from __future__ import annotations

from typing import Any

from ledgerx.ui.queries import MAX_POINTS, TRIALS_TABLE_ROWS, Index, json_path, loads

# The run's trials (one row per trial), numbered in the Reader's order.
_TRIALS = """
WITH e AS MATERIALIZED (
    SELECT trial_id, params, metrics, recorded_at,
           row_number() OVER (ORDER BY recorded_at, event_id) - 1 AS i
    FROM trial_results WHERE run_id = ?
)
"""
_FIELDS = "i, trial_id, params, metrics"


def names(index: Index, run_id: str) -> tuple[list[str], list[str]]:
    """(param names, metric names) in first-seen order, from the first 200 trials."""
    rows = index.rows(
        "SELECT json_keys(params) AS p, json_keys(metrics) AS m FROM ("
        "  SELECT params, metrics FROM trial_results WHERE run_id = ?"
        "  ORDER BY recorded_at, event_id LIMIT 200)"
        " WHERE json_type(params) = 'OBJECT' AND json_type(metrics) = 'OBJECT'",
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
    return rows


def best(rows: list[dict[str, Any]], metric: str, goal: str = "max") -> dict[str, Any] | None:
    """The trial with the highest (goal 'max') or lowest value of `metric`, the first in the
    Reader's order among equals, from `series` rows: every trial, or a sample that keeps each
    bucket's first highest and first lowest value, so the answer is exact either way."""
    scored = [(v, r["i"], r) for r in rows if (v := _number(r["metrics"].get(metric))) is not None]
    if not scored:
        return None
    if goal == "max":
        return max(scored, key=lambda x: (x[0], -x[1]))[2]
    return min(scored, key=lambda x: (x[0], x[1]))[2]


def _number(v: Any) -> float | None:
    """A metric value as SQL's TRY_CAST(... AS DOUBLE) reads it."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def series(index: Index, run_id: str, metric: str) -> dict[str, Any]:
    """Trials for the charts, with their position `i`: all of them up to MAX_POINTS, else a
    min/max-per-bucket sample along `metric` (first and last trial kept); `total` is the number
    of trials (one per trial id)."""
    # Per bucket the positions of the first highest and first lowest value (an aggregate, not a
    # window sort: cheaper), or the bucket's first trial when it has no value; every trial when
    # there are at most MAX_POINTS.
    sql = (
        _TRIALS
        + f""", n AS (
            SELECT count(*) AS n, greatest(1, (2 * count(*) + {MAX_POINTS} - 1) // {MAX_POINTS})
                   AS bucket FROM e
        ), t AS (
            SELECT i, TRY_CAST(json_extract_string(metrics, ?) AS DOUBLE) AS m FROM e
            WHERE (SELECT n FROM n) > {MAX_POINTS}
        ), g AS (
            SELECT min(i) AS first,
                   arg_max(i, (m, -i)) FILTER (WHERE m IS NOT NULL) AS hi,
                   arg_min(i, (m, i)) FILTER (WHERE m IS NOT NULL) AS lo
            FROM t GROUP BY i // (SELECT bucket FROM n)
        ), keep AS (
            SELECT DISTINCT unnest([coalesce(hi, first), coalesce(lo, first)]) AS i FROM g
            UNION SELECT 0 UNION SELECT max(i) FROM t
        )
        SELECT {_FIELDS}, (SELECT n FROM n) AS total FROM e
        WHERE (SELECT n FROM n) <= {MAX_POINTS} OR i IN (SELECT i FROM keep)
        ORDER BY i"""
    )
    rows = _decode(index.rows(sql, [run_id, json_path(metric)]))
    total = rows[0].pop("total") if rows else 0
    for r in rows[1:]:
        del r["total"]
    return {"rows": rows, "total": total, "sampled": len(rows) < total}


def table(
    index: Index,
    run_id: str,
    sort: str,
    desc: bool = True,
    limit: int = TRIALS_TABLE_ROWS,
) -> list[dict[str, Any]]:
    """A page of trials sorted by `trial_id`, `metric:NAME` or `param:NAME` (numbers as
    numbers, other values as text; ties in the Reader's order)."""
    kind, _, name = sort.partition(":")
    if kind in ("metric", "param") and name:
        field = "metrics" if kind == "metric" else "params"
        key, args = f"json_extract_string({field}, ?)", [json_path(name)]
    else:
        key, args = "trial_id", []
    o = "DESC" if desc else "ASC"
    rows = index.rows(
        _TRIALS
        + f"""SELECT {_FIELDS}, recorded_at FROM (SELECT *, {key} AS k FROM e)
            ORDER BY TRY_CAST(k AS DOUBLE) {o} NULLS LAST, k {o} NULLS LAST, i
            LIMIT {int(limit)}""",
        [run_id, *args],
    )
    return _decode(rows)

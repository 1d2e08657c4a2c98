"""Trials of one run for the charts and the table: names of params and metrics, the best trial,
a downsampled series (at most `MAX_POINTS` rows: past that, for each bucket of consecutive
trials, the ones with the lowest and the highest value of the chosen metric, so the chart keeps
its envelope), and a sorted page for the table.

What a trial is comes from the index's `trial_results` view, its one definition: a trial
recorded twice (a retried task) is shown once, its latest record, exactly as `Reader.trials()`
and `Reader.trials_table()` show it, and trials are numbered `i` in recording order
(recorded_at, then event_id: the x axis of the metric-by-trial chart). Counts are of trials,
not of records (`runs_d.n_trials` counts records). The queries read the run's `trial.recorded`
rows of `events` directly and parse only
the fields they need, and the full params/metrics of the rows they return; a run whose records
are not one per trial id keeps only the records the view keeps (`event_id IN (SELECT event_id
FROM trial_results ...)`). A run of 100k trials stays well under a second (benches/bench_ui.py).
"""

from __future__ import annotations

from typing import Any

from ledgerx.index.schema import trial_id_sql, trial_id_value
from ledgerx.ui.queries import MAX_POINTS, TRIALS_TABLE_ROWS, Index, json_path, loads

# Log order: a writer's events share a timestamp when emitted within the same microsecond, and
# their event ids are random beyond the millisecond, so ties are broken by place in the log.
_ORDER = 'ts, file, "offset"'
# trial_id parsed in _decode as the index types it (schema.trial_id_value): integers stay numbers.
_FIELDS = "d->'trial_id' AS trial_id, d->'params' AS params, d->'metrics' AS metrics"
# The id as trial_results types it, so 1 and "1" are two trials and 3.0 is the trial 3.
_TYPED_ID = trial_id_sql("coalesce(data_upcast, data)->'trial_id'")


def count(index: Index, run_id: str) -> dict[str, Any]:
    """{"trials", "records", "retried"}: trials (one per trial id, as trial_results counts them)
    and trial.recorded records of the run. Cached per published index."""

    def compute() -> dict[str, Any]:
        r = index.rows(
            "SELECT count(*) AS records,"
            f" count(DISTINCT {_TYPED_ID}) AS ids"
            " FROM events WHERE run_id = ? AND event_type = 'trial.recorded'",
            [run_id],
        )[0]
        # Every record a distinct, non-null id: the view keeps them all (no window to compute).
        if r["records"] == r["ids"]:
            return {"trials": r["ids"], "records": r["records"], "retried": False}
        n = index.rows("SELECT count(*) AS n FROM trial_results WHERE run_id = ?", [run_id])
        return {"trials": n[0]["n"], "records": r["records"], "retried": True}

    return index.cached(("count", run_id), compute)  # type: ignore[no-any-return]


def _trials(index: Index, run_id: str) -> tuple[str, list[Any]]:
    """A CTE `e` of the run's trials (ts, event_id, file, offset, d: the effective data, JSON
    text parsed only where used), and its parameters."""
    keep, args = "", [run_id]
    if count(index, run_id)["retried"]:
        keep = "AND event_id IN (SELECT event_id FROM trial_results WHERE run_id = ?)"
        args.append(run_id)
    sql = f"""
        WITH e AS (
            SELECT ts, event_id, file, "offset", coalesce(data_upcast, data) AS d
            FROM events WHERE run_id = ? AND event_type = 'trial.recorded' {keep}
        )
        """
    return sql, args


def _metric(name: str) -> tuple[str, list[Any]]:
    """SQL for a metric's value as a double, and its parameter."""
    return "TRY_CAST(json_extract_string(d, ?) AS DOUBLE)", ["$.metrics." + json_path(name)[2:]]


def names(index: Index, run_id: str) -> tuple[list[str], list[str]]:
    """(param names, metric names) in first-seen order, from the first 200 trials."""
    cte, args = _trials(index, run_id)
    rows = index.rows(
        cte + "SELECT json_keys(d->'params') AS p, json_keys(d->'metrics') AS m"
        f" FROM (SELECT d FROM e ORDER BY {_ORDER} LIMIT 200)"
        " WHERE json_type(d->'params') = 'OBJECT' AND json_type(d->'metrics') = 'OBJECT'",
        args,
    )
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for r in rows:
        params.update(dict.fromkeys(r["p"] or []))
        metrics.update(dict.fromkeys(r["m"] or []))
    return list(params), list(metrics)


def _decode(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        r["trial_id"] = trial_id_value(loads(r["trial_id"]))
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
    min/max-per-bucket sample along `metric` (first and last trial kept)."""
    n_trials = count(index, run_id)["trials"]
    cte, args = _trials(index, run_id)
    if n_trials <= MAX_POINTS:
        sql = cte + f"SELECT row_number() OVER (ORDER BY {_ORDER}) - 1 AS i, {_FIELDS} FROM e"
        sql += " ORDER BY i"
    else:
        m, margs = _metric(metric)
        args += margs
        bucket = max(1, -(-2 * n_trials // MAX_POINTS))  # two rows per bucket
        # Per bucket the positions of the first highest and first lowest value (an aggregate,
        # not a window sort: cheaper), or the bucket's first trial when it has no value.
        sql = (
            cte
            + f""", t AS (
                SELECT d, {m} AS m, row_number() OVER (ORDER BY {_ORDER}) - 1 AS i FROM e
            ), g AS (
                SELECT min(i) AS first,
                       arg_max(i, (m, -i)) FILTER (WHERE m IS NOT NULL) AS hi,
                       arg_min(i, (m, i)) FILTER (WHERE m IS NOT NULL) AS lo
                FROM t GROUP BY i // {bucket}
            ), keep AS (
                SELECT DISTINCT unnest([coalesce(hi, first), coalesce(lo, first)]) AS i FROM g
                UNION SELECT 0 UNION SELECT max(i) FROM t
            )
            SELECT i, {_FIELDS} FROM t SEMI JOIN keep USING (i) ORDER BY i"""
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
    numbers, other values as text; ties in the Reader's order)."""
    kind, _, name = sort.partition(":")
    if kind in ("metric", "param") and name:
        field = "metrics" if kind == "metric" else "params"
        key, kargs = "json_extract_string(d, ?)", [f"$.{field}." + json_path(name)[2:]]
    else:
        key, kargs = "d->>'trial_id'", []
    o = "DESC" if desc else "ASC"
    cte, args = _trials(index, run_id)
    rows = index.rows(
        cte
        + f"""SELECT {_FIELDS}, ts AS recorded_at FROM (
                SELECT d, k, {_ORDER} FROM (SELECT d, {key} AS k, {_ORDER} FROM e)
                ORDER BY TRY_CAST(k AS DOUBLE) {o} NULLS LAST, k {o} NULLS LAST, {_ORDER}
                LIMIT {int(limit)})
            ORDER BY TRY_CAST(k AS DOUBLE) {o} NULLS LAST, k {o} NULLS LAST, {_ORDER}""",
        [*args, *kargs],
    )
    return _decode(rows)

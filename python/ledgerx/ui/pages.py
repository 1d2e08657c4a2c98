"""What each page shows, as plain data: the HTML templates and the `/api/` JSON endpoints are two
views of the same dictionaries."""

from __future__ import annotations

from typing import Any

from ledgerx.ui import trials
from ledgerx.ui.files import equity_curve
from ledgerx.ui.queries import STATUSES, Index

MAX_COMPARE = 12


def runs_args(qp: Any) -> dict[str, Any]:
    """The runs list's filters from a query string (unknown values fall back to defaults)."""
    status = qp.get("status") or None
    sort = qp.get("sort") or "created"
    try:
        limit = int(qp.get("limit") or 500)
    except ValueError:
        limit = 500
    return {
        "status": status if status in STATUSES else None,
        "kind": qp.get("kind") or None,
        "tag": qp.get("tag") or None,
        "q": (qp.get("q") or "").strip() or None,
        "sort": sort,
        "desc": qp.get("dir", "desc") != "asc",
        "limit": limit,
    }


def run_detail(
    index: Index,
    run_id: str,
    *,
    metric: str | None = None,
    goal: str = "max",
    tsort: str | None = None,
    tdesc: bool = True,
) -> dict[str, Any] | None:
    """Everything the run page shows; None for an unknown run."""
    run = index.run(run_id)
    if run is None:
        return None
    params, metrics = index.cached(("names", run_id), lambda: trials.names(index, run_id))
    goal = "min" if goal == "min" else "max"
    metric = metric if metric in metrics else (metrics[0] if metrics else None)
    # runs_d.n_trials counts records (a retried trial twice); the charts, the table and the
    # count shown are of trials, one per trial id (series["total"]).
    series = None
    counts = trials.count(index, run_id) if run["n_trials"] else None
    if counts and counts["trials"]:
        series = index.cached(
            ("series", run_id, metric), lambda: trials.series(index, run_id, metric or "")
        )
    best = trials.best(series["rows"], metric, goal) if series and metric else None
    tsort = tsort or (f"metric:{metric}" if metric else "trial_id")
    table = (
        index.cached(
            ("table", run_id, tsort, tdesc), lambda: trials.table(index, run_id, tsort, tdesc)
        )
        if series
        else []
    )
    artifacts = index.artifacts(run_id)
    curves = []
    for a in artifacts:
        if a["name"] == "equity_curve" and a["format"] == "parquet" and a["path"]:
            c = equity_curve(index.root, a["path"])
            if c is not None:
                curves.append({"name": a["name"], "path": a["path"], **c})
    phases = index.phases(run_id)
    baselines = index.baselines(run_id)
    bkeys: dict[str, None] = {}
    for m in [b["metrics"] for b in baselines] + [best["metrics"] if best else {}]:
        bkeys.update(dict.fromkeys(m))
    end_ms = run["last_event_ms"]
    return {
        "run": run,
        "phases": phases,
        "gantt": [
            {
                "phase": p["phase"] + (f" #{p['attempt']}" if p["attempt"] > 1 else ""),
                "start_ms": p["start_ms"],
                "end_ms": p["end_ms"] if p["end_ms"] is not None else end_ms,
                "done": p["end_ms"] is not None,
            }
            for p in phases
            if p["start_ms"] is not None
        ],
        "params": params,
        "metrics": metrics,
        "metric": metric,
        "goal": goal,
        "best": best,
        "n_trials": counts["trials"] if counts else 0,
        "n_records": int(run["n_trials"] or 0),
        "series": series,
        "table": table,
        "tsort": tsort,
        "tdesc": tdesc,
        "table_cols": [("trial_id", "trial")]
        + [(f"param:{p}", p) for p in params]
        + [(f"metric:{m}", m) for m in metrics],
        "baselines": baselines,
        "baseline_keys": list(bkeys),
        "artifacts": artifacts,
        "curves": curves,
        "alerts": index.alerts(limit=50, run_id=run_id),
    }


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (lists and scalars are leaves)."""
    if not isinstance(obj, dict):
        return {prefix or "value": obj} if obj is not None else {}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def compare(index: Index, run_ids: list[str]) -> dict[str, Any]:
    """Runs side by side: their header fields, config and summary as dotted keys, and which
    rows differ."""
    runs, missing = [], []
    for rid in run_ids[:MAX_COMPARE]:
        r = index.run(rid)
        if r is None:
            missing.append(rid)
        else:
            runs.append(r)
    sections: list[dict[str, Any]] = []
    for title, get in (
        ("run", lambda r: {
            "status": r["status"], "kind": r["run_kind"], "trial records": r["n_trials"],
            "duration_ms": r["duration_ms"], "data_fingerprint": r["data_fingerprint"],
        }),
        ("summary", lambda r: flatten(r["summary"])),
        ("config", lambda r: flatten(r["config"])),
    ):  # fmt: skip
        per_run = [get(r) for r in runs]
        keys: dict[str, None] = {}
        for d in per_run:
            keys.update(dict.fromkeys(d))
        rows = [
            {
                "key": k,
                "values": [d.get(k) for d in per_run],
                "differs": len({repr(d.get(k)) for d in per_run}) > 1,
            }
            for k in keys
        ]
        sections.append({"title": title, "rows": rows})
    numeric = [
        row
        for row in sections[1]["rows"]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row["values"])
    ]
    chart = {
        "runs": [r["run_id"] for r in runs],
        "keys": [row["key"] for row in numeric],
        "values": [row["values"] for row in numeric],
    }
    return {"runs": runs, "missing": missing, "sections": sections, "chart": chart}


def status(index: Index) -> dict[str, Any]:
    from ledgerx.index.verify import index_status

    st = index_status(index.root, db=index.reader.paths.runs)
    published = index.version() is not None
    return {
        "status": st,
        "bad_lines": index.bad_lines() if published else [],
        "rebuilds": index.rebuilds() if published else [],
    }

"""Independent oracles for the legacy tools: what `legacy migrate` must write and what the
projection must hold, computed in plain Python from the legacy file read with plain SQL (the raw
tables, no `ledgerx.legacy` view) and from the log read by the independent reader
(tests/logcheck.py). `compare()` shares the normalization of the code it checks, so these tests
do not use it; the mapping below is written from docs/legacy.md ("Migration", "Normalization")."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ledgerx.index import build_index
from ledgerx.legacy import migrate

from legacy_fixture import build
from logcheck import check_log

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _us(v: datetime | None) -> int | None:
    """A legacy time in µs since the epoch: naive TIMESTAMPs are UTC."""
    if v is None:
        return None
    if v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    d = v - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _ts(us: int) -> str:
    s, f = divmod(us, 1_000_000)
    return datetime.fromtimestamp(s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{f:06d}Z"


def _j(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


def _numbers_only(metrics: dict[str, Any]) -> dict[str, Any]:
    # NaN was stored as null by the old code: such metric values are dropped.
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}


def _raw(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The five legacy tables as stored, JSON columns as text."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"ATTACH '{path}' AS lg (READ_ONLY)")
    q = {
        "runs": "SELECT run_id, run_kind, CAST(config AS VARCHAR), data_fingerprint, status, "
        "created_at, started_at, completed_at, CAST(summary AS VARCHAR) FROM lg.optimizer.runs_d",
        "phases": "SELECT run_id, phase, phase_index, started_at, completed_at, duration_ms, "
        "CAST(output_summary AS VARCHAR) FROM lg.optimizer.phases_d",
        "trials": "SELECT run_id, trial_id, CAST(params AS VARCHAR), CAST(metrics AS VARCHAR), "
        "recorded_at FROM lg.optimizer.trials_f",
        "baselines": "SELECT run_id, baseline, CAST(metrics AS VARCHAR), completed_at "
        "FROM lg.baseline.results",
        "alerts": "SELECT alert_id, source, severity, CAST(payload AS VARCHAR), ts "
        "FROM lg.canon.alerts_raw",
    }
    try:
        return {k: con.execute(v).fetchall() for k, v in q.items()}
    finally:
        con.close()


def expected_migration(path: Path) -> list[tuple[str, str | None, int, str]]:
    """(event_type, run_id, ts_us, data as canonical JSON) of every event migrate must write."""
    raw = _raw(path)
    out: list[tuple[str, str | None, int, dict[str, Any]]] = []
    run_time: dict[str, tuple[int | None, int | None, int]] = {}
    for rid, kind, cfg, fp, status, created, started, completed, summary in raw["runs"]:
        c, s, e = _us(created), _us(started), _us(completed)
        assert c is not None
        run_time[rid] = (e, s, c)
        created = {
            "run_kind": kind or "unknown",
            "config": _j(cfg, {}),
            "data_fingerprint": fp or "",
        }
        out.append(("run.created", rid, c, created))
        if s is not None:
            out.append(("run.started", rid, s, {}))
        elif status == "running":
            out.append(("run.heartbeat", rid, c, {}))
        end = e if e is not None else (s if s is not None else c)
        if status == "completed":
            out.append(
                ("run.completed", rid, end, {"summary": _j(summary, {}), "artifact_paths": []})
            )
        elif status == "failed":
            data: dict[str, Any] = {"error": ""}
            if summary is not None:
                data["summary"] = json.loads(summary)
            out.append(("run.failed", rid, end, data))
    for rid, phase, idx, started, completed, dur, summary in raw["phases"]:
        s, e = _us(started), _us(completed)
        if s is not None:
            out.append(("phase.started", rid, s, {"phase": phase, "phase_index": idx or 0}))
        if e is not None:
            if dur is None:
                dur = max((e - (s if s is not None else e)) / 1000.0, 0.0)
            data = {"phase": phase, "duration_ms": dur}
            if summary is not None:
                data["output_summary"] = json.loads(summary)
            out.append(("phase.completed", rid, e, data))
    for rid, tid, params, metrics, recorded in raw["trials"]:
        _, s, c = run_time[rid]
        us = _us(recorded)
        data = {
            "trial_id": tid,
            "params": _j(params, {}),
            "metrics": _numbers_only(_j(metrics, {})),
        }
        out.append(("trial.recorded", rid, us if us is not None else (s or c), data))
    for rid, base, metrics, completed in raw["baselines"]:
        e, s, c = run_time[rid]
        us = _us(completed)
        t = us if us is not None else (e or s or c)
        data = {"baseline": base, "metrics": _numbers_only(_j(metrics, {}))}
        out.append(("baseline.completed", rid, t, data))
    for aid, source, severity, payload, ts in raw["alerts"]:
        data = {
            "alert_id": aid,
            "source": source or "",
            "severity": severity or "",
            "payload": _j(payload, {}),
        }
        us = _us(ts)
        assert us is not None
        out.append(("alert.ingested", None, us, data))
    return sorted((t, r, us, json.dumps(d, sort_keys=True)) for t, r, us, d in out)


def _log_events(root: Path) -> list[dict[str, Any]]:
    return check_log(root).events  # the independent reader: format, crc, seq, day folder


def test_migrate_writes_exactly_the_events_the_legacy_rows_stand_for(tmp_path: Path) -> None:
    fx = build(tmp_path / "legacy.duckdb", runs=24)
    root = tmp_path / "ledger"
    rep = migrate(root, fx.path)
    want = expected_migration(fx.path)
    events = _log_events(root)
    got = sorted(
        (
            e["event_type"],
            e["run_id"],
            _us(datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")),
            json.dumps(e["data"], sort_keys=True),
        )
        for e in events
    )
    assert rep.written == len(want) == len(events)
    missing = [w for w in want if w not in got]
    extra = [g for g in got if g not in want]
    assert not missing and not extra, (missing[:3], extra[:3])
    assert got == want  # as multisets: the duplicate trial 3 of run 4 appears twice
    # Every migrated event: marked, schema v1, a unique UUIDv7 whose time is the event's ms.
    assert all(e["writer"].startswith("legacy-migrate-") for e in events)
    assert all(e["schema_version"] == 1 for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    for e in events:
        ms = int(e["event_id"].replace("-", "")[:12], 16)
        us = _us(datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ"))
        assert us is not None and ms == us // 1000, e
    # A second run writes nothing.
    assert migrate(root, fx.path).written == 0
    assert len(_log_events(root)) == len(events)


# -- the projection: a round trip back to the legacy file -----------------------------------------


def _norm(v: Any) -> Any:
    if isinstance(v, datetime):
        return _us(v)
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return v


def _table(path: Path, sql: str, json_cols: tuple[int, ...]) -> list[tuple[Any, ...]]:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"ATTACH '{path}' AS lg (READ_ONLY)")
    try:
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    out = []
    for r in rows:
        vals = [
            json.dumps(json.loads(v), sort_keys=True) if i in json_cols and v is not None else v
            for i, v in enumerate(r)
        ]
        out.append(tuple(_norm(v) for v in vals))
    return sorted(out, key=repr)


TABLES = {
    "runs_d": (
        "SELECT run_id, run_kind, CAST(config AS VARCHAR), data_fingerprint, status, created_at, "
        "started_at, completed_at, CAST(summary AS VARCHAR) FROM lg.optimizer.runs_d",
        (2, 8),
    ),
    "phases_d": (
        "SELECT run_id, phase, phase_index, started_at, completed_at, duration_ms, "
        "CAST(output_summary AS VARCHAR) FROM lg.optimizer.phases_d",
        (6,),
    ),
    "trials_f": (
        "SELECT run_id, trial_id, CAST(params AS VARCHAR), CAST(metrics AS VARCHAR), recorded_at "
        "FROM lg.optimizer.trials_f",
        (2, 3),
    ),
    "results": (
        "SELECT run_id, baseline, CAST(metrics AS VARCHAR), completed_at FROM lg.baseline.results",
        (2,),
    ),
    "alerts_raw": (
        "SELECT alert_id, source, severity, CAST(payload AS VARCHAR), ts FROM lg.canon.alerts_raw",
        (3,),
    ),
}


def _expected_projection(legacy: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The legacy file itself, with the documented normalizations applied by hand: a completed
    run's NULL summary is `{}`, NULL data_fingerprint `""`, an unfinished phase has no
    duration, NULL metric values are dropped, a trial without a time takes its run's start (or
    creation) time, a NULL alert source is `""` and a NULL payload `{}`."""
    exp = {t: _table(legacy, sql, js) for t, (sql, js) in TABLES.items()}
    runs = {r[0]: r for r in exp["runs_d"]}

    def fix_run(r: tuple[Any, ...]) -> tuple[Any, ...]:
        rid, kind, cfg, fp, status, c, s, e, summ = r
        if status == "completed" and summ is None:
            summ = "{}"
        return (rid, kind, cfg, fp or "", status, c, s, e, summ)

    def fix_trial(r: tuple[Any, ...]) -> tuple[Any, ...]:
        rid, tid, params, metrics, rec = r
        m = json.dumps(_numbers_only(json.loads(metrics)), sort_keys=True)
        if rec is None:
            rec = runs[rid][6] if runs[rid][6] is not None else runs[rid][5]
        return (rid, tid, params, m, rec)

    def fix_alert(r: tuple[Any, ...]) -> tuple[Any, ...]:
        aid, src, sev, payload, ts = r
        return (aid, src or "", sev, payload if payload is not None else "{}", ts)

    exp["runs_d"] = sorted(map(fix_run, exp["runs_d"]), key=repr)
    exp["trials_f"] = sorted(map(fix_trial, exp["trials_f"]), key=repr)
    exp["alerts_raw"] = sorted(map(fix_alert, exp["alerts_raw"]), key=repr)
    return exp


@pytest.fixture(scope="module")
def projected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("proj")
    fx = build(tmp / "legacy.duckdb", runs=24)
    root = tmp / "ledger"
    migrate(root, fx.path)
    build_index(root, durable=False, hook_options={"legacy_projection": True})
    return fx.path, root / "index" / "legacy.duckdb"


@pytest.mark.parametrize("table", list(TABLES))
def test_projection_of_a_migrated_file_gives_back_the_legacy_rows(
    projected: tuple[Path, Path], table: str
) -> None:
    legacy, proj = projected
    sql, js = TABLES[table]
    got = _table(proj, sql, js)
    want = _expected_projection(legacy)[table]
    missing = [w for w in want if w not in got]
    extra = [g for g in got if g not in want]
    assert not missing and not extra, (missing[:3], extra[:3])
    assert got == want

"""Helpers for the index tests: ledgers written by the real writer, and a reference index
computed in plain Python from the same files."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ledgerx import _core

from logcheck import expected_index

DAY_US = 86_400 * 1_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def write_sweep(
    root: Path,
    *,
    runs: int = 3,
    trials: int = 20,
    day_us: int = T0,
    seed: int = 0,
    writer_id: str | None = None,
    fail_last: bool = False,
    leave_running: bool = False,
    alerts: int = 1,
    max_part_bytes: int = 100_000_000,
) -> list[str]:
    """Runs with every built-in event type; returns their run ids."""
    rng = random.Random(seed)
    w = _core.Writer(str(root), durability="os", max_part_bytes=max_part_bytes, writer_id=writer_id)
    now = day_us + rng.randrange(0, 3_600_000_000)
    ids = []

    def emit(t: str, data: dict[str, Any], run_id: str | None) -> None:
        nonlocal now
        now += rng.randrange(1, 2000)
        w._set_fake_now(now)
        w.emit(t, data, run_id=run_id)

    for r in range(runs):
        rid = f"run-{seed}-{day_us // DAY_US}-{r}"
        ids.append(rid)
        emit(
            "run.created",
            {"run_kind": "sweep", "config": {"r": r}, "data_fingerprint": f"fp{r}", "tags": {}},
            rid,
        )
        emit("run.started", {"host": "h", "pid": 42}, rid)
        for pi, ph in enumerate(["plan", "simulate"]):
            emit("phase.started", {"phase": ph, "phase_index": pi}, rid)
            emit(
                "phase.completed",
                {"phase": ph, "duration_ms": 1.5 + pi, "output_summary": {"n": pi}},
                rid,
            )
        for t in range(trials):
            emit(
                "trial.recorded",
                {
                    "trial_id": t,
                    "params": {"fast": t % 7, "slow": t % 11},
                    "metrics": {"sharpe": round(rng.random(), 4), "dd": -round(rng.random(), 3)},
                },
                rid,
            )
        emit("baseline.completed", {"baseline": "buy_hold", "metrics": {"sharpe": 0.5}}, rid)
        emit(
            "artifact.created",
            {
                "name": "trades",
                "path": f"artifacts/runs/{rid}/trades.parquet",
                "format": "parquet",
                "bytes": 100 + r,
                "sha256": "0" * 64,
                "rows": 7,
            },
            rid,
        )
        last = r == runs - 1
        if last and leave_running:
            emit("run.heartbeat", {}, rid)
        elif last and fail_last:
            emit("run.failed", {"error": "boom", "traceback": None}, rid)
        else:
            emit("run.completed", {"summary": {"best": r}, "artifact_paths": []}, rid)
    for a in range(alerts):
        emit(
            "alert.ingested",
            {"alert_id": f"a{seed}-{a}", "source": "s", "severity": "warn", "payload": {"k": a}},
            None,
        )
    w.close()
    return ids


def part_files(root: Path) -> list[Path]:
    return sorted((root / "events").glob("day=*/part-*.jsonl"))


def reference_events(root: Path, strict: bool = False) -> list[dict[str, Any]]:
    """What `events` must hold, from the independent reader (tests/logcheck.py): every accepted
    line of every part file in (file, offset) order, first occurrence of each event id only."""
    keys = ["event_id", "event_type", "schema_version", "ts", "run_id", "writer", "seq", "data"]
    return [
        {
            **{k: e[k] for k in keys},
            "ts": _ts_text(e["ts_us"]),
            "file": e["file"],
            "offset": e["offset"],
        }
        for e in expected_index(root, strict)
    ]


def _ts_text(us: int) -> str:
    return ts_str(datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us))


def ts_str(v: datetime) -> str:
    return v.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def index_events(db: Path) -> list[dict[str, Any]]:
    from ledgerx.index.indexer import open_readonly

    con = open_readonly(db)
    try:
        rows = con.execute(
            """SELECT event_id, event_type, schema_version, ts, run_id, writer, seq, data, file,
                      "offset" FROM events ORDER BY file, "offset" """
        ).fetchall()
    finally:
        con.close()
    keys = ["event_id", "event_type", "schema_version", "ts", "run_id", "writer", "seq", "data"]
    return [
        {
            **dict(zip(keys, r[:8], strict=True)),
            "ts": ts_str(r[3]),
            "data": json.loads(r[7]),
            "file": r[8],
            "offset": r[9],
        }
        for r in rows
    ]


def reference_runs(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-run state computed the obvious way."""
    runs: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: (e["ts"], e["file"], e["offset"])):
        rid = e["run_id"]
        if rid is None:
            continue
        r = runs.setdefault(
            rid, {"n_events": 0, "n_trials": 0, "status": None, "run_kind": None, "n_created": 0}
        )
        r["n_events"] += 1
        t, d = e["event_type"], e["data"]
        if t == "trial.recorded":
            r["n_trials"] += 1
        elif t == "run.created":
            r["n_created"] += 1
            if r["run_kind"] is None:
                r["run_kind"] = d["run_kind"]
        elif t == "run.completed":
            r["status"] = "completed"
        elif t == "run.failed":
            r["status"] = "failed"
    for r in runs.values():
        if r["status"] is None:
            r["status"] = "running" if r["n_events"] > r["n_created"] else "created"
        del r["n_created"]
    return runs


def index_runs(db: Path) -> dict[str, dict[str, Any]]:
    from ledgerx.index.indexer import open_readonly

    con = open_readonly(db)
    try:
        rows = con.execute(
            "SELECT run_id, n_events, n_trials, log_status, run_kind FROM runs_d"
        ).fetchall()
    finally:
        con.close()
    return {
        r[0]: {"n_events": r[1], "n_trials": r[2], "status": r[3], "run_kind": r[4]} for r in rows
    }


def file_id(p: Path) -> tuple[int, int, int, int]:
    st = os.stat(p)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _order(e: dict[str, Any]) -> tuple[str, str, int]:
    return (e["ts"], e["file"], e["offset"])


def _typed_tid(v: Any) -> Any:
    """docs/index.md "Trial ids", written out here: an integral JSON number in the BIGINT range
    is an int (3.0 is 3), a string stays a string, any other value is its compact JSON text."""
    if isinstance(v, str) or v is None:
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer():
        if -(2**63) <= int(v) < 2**63:
            return int(v)
    return json.dumps(v, separators=(",", ":"))


def reference_derived(events: list[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    """The derived tables of docs/index.md computed the obvious way from `reference_events`
    (JSON values as Python objects, times as `ts` text, rows sorted by repr)."""
    ev = sorted(events, key=_order)
    out: dict[str, list[tuple[Any, ...]]] = {k: [] for k in DERIVED}
    latest: dict[tuple[str, Any], dict[str, Any]] = {}
    starts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    ends: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in ev:
        t, d, rid = e["event_type"], e["data"], e["run_id"]
        if t == "trial.recorded":
            latest[(rid, _typed_tid(d["trial_id"]))] = e  # the latest (ts, file, offset) wins
        elif t == "baseline.completed":
            row = (e["event_id"], rid, d["baseline"], d["metrics"], e["ts"])
            out["baseline_results"].append(row)
        elif t == "artifact.created":
            keys = ("name", "path", "format", "bytes", "sha256", "rows")
            out["artifacts_catalog"].append((e["event_id"], rid, *(d[k] for k in keys), e["ts"]))
        elif t == "alert.ingested":
            keys = ("alert_id", "source", "severity", "payload")
            out["alerts"].append((e["event_id"], *(d[k] for k in keys), e["ts"], rid))
        elif t == "phase.started":
            starts.setdefault((rid, d["phase"]), []).append(e)
        elif t == "phase.completed":
            ends.setdefault((rid, d["phase"]), []).append(e)
    for (rid, tid), e in latest.items():
        d = e["data"]
        out["trial_results"].append((e["event_id"], rid, tid, d["params"], d["metrics"], e["ts"]))
    for rid, ph in sorted(set(starts) | set(ends)):
        s, c = starts.get((rid, ph), []), ends.get((rid, ph), [])
        for k in range(max(len(s), len(c))):  # the k-th start with the k-th completion
            a = s[k] if k < len(s) else None
            b = c[k] if k < len(c) else None
            out["phase_timings"].append(
                (
                    rid,
                    ph,
                    k + 1,
                    a["data"]["phase_index"] if a else None,
                    a["ts"] if a else None,
                    b["ts"] if b else None,
                    b["data"]["duration_ms"] if b else None,
                    b["data"].get("output_summary") if b else None,
                )
            )
    return {k: sorted(v, key=repr) for k, v in out.items()}


# table → (SQL over the index file, which columns hold JSON text, which hold times)
DERIVED: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "trial_results": (
        "SELECT event_id, run_id, trial_id, params, metrics, recorded_at FROM trial_results",
        (3, 4),
        (5,),
    ),
    "baseline_results": (
        "SELECT event_id, run_id, baseline, metrics, completed_at FROM baseline_results",
        (3,),
        (4,),
    ),
    "artifacts_catalog": (
        "SELECT event_id, run_id, name, path, format, bytes, sha256, rows, created_at "
        "FROM artifacts_catalog",
        (),
        (8,),
    ),
    "phase_timings": (
        "SELECT run_id, phase, attempt, phase_index, started_at, completed_at, duration_ms, "
        "output_summary FROM phase_timings",
        (7,),
        (4, 5),
    ),
    "alerts": (
        "SELECT event_id, alert_id, source, severity, payload, ts, run_id FROM alerts",
        (4,),
        (5,),
    ),
}


def index_derived(runs_db: Path, alerts_db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The derived tables as the index holds them, in `reference_derived`'s shape."""
    from ledgerx.index.indexer import open_readonly

    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, (sql, js, times) in DERIVED.items():
        con = open_readonly(alerts_db if table == "alerts" else runs_db)
        try:
            rows = con.execute(sql).fetchall()
        finally:
            con.close()
        out[table] = sorted(
            (
                tuple(
                    (json.loads(v) if i in js else ts_str(v) if i in times else v)
                    if v is not None
                    else None
                    for i, v in enumerate(r)
                )
                for r in rows
            ),
            key=repr,
        )
    return out


def rebuild_in_fresh_process(
    root: Path, args: list[str], packages: tuple[str, ...]
) -> tuple[list[str], dict[str, Any]]:
    """`ledgerx rebuild --root ROOT *args` through `ledgerx.cli.main` in a fresh interpreter:
    (its output lines, {"rc": exit code, "heavy": the listed top-level packages it imported})."""
    code = (
        "import json, sys\n"
        "from ledgerx.cli import main\n"
        f"rc = main(['rebuild', '--root', sys.argv[1], *{args!r}])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{packages!r})\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip().splitlines()
    return out, json.loads(out[-1])


class WithoutAttribute:
    """`obj` as an object without attribute `name` has it: a DuckDB without one of the engine's
    private calls, for the tests of the fallbacks."""

    def __init__(self, obj: Any, name: str) -> None:
        self._obj, self._name = obj, name

    def __getattr__(self, name: str) -> Any:
        if name == self._name:
            raise AttributeError(name)
        return getattr(self._obj, name)

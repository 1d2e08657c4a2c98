"""Build a legacy DuckDB file in the documented legacy schema (docs/legacy.md), with realistic data.

    python tests/legacy_fixture.py OUT.duckdb [--runs N] [--seed S]

Column types (the old optimizer's; see docs/legacy.md):

    optimizer.runs_d    run_id VARCHAR PK, run_kind VARCHAR, config JSON, data_fingerprint VARCHAR,
                        status VARCHAR ('created'|'running'|'completed'|'failed'),
                        created_at/started_at/completed_at TIMESTAMP (naive, UTC), summary JSON
    optimizer.phases_d  run_id, phase VARCHAR, phase_index INTEGER, started_at/completed_at
                        TIMESTAMP, duration_ms DOUBLE, output_summary JSON
    optimizer.trials_f  run_id, trial_id BIGINT, params JSON, metrics JSON, recorded_at TIMESTAMP
    baseline.results    run_id, baseline VARCHAR, metrics JSON, completed_at TIMESTAMP
    canon.alerts_raw    alert_id VARCHAR, source VARCHAR, severity VARCHAR, payload JSON,
                        ts TIMESTAMPTZ

The data is deterministic for a seed and covers what real files hold: NULLs (summary, started_at,
completed_at, data_fingerprint, recorded_at, source, payload, metric values), unicode everywhere,
a large nested config, failed runs, never-completed (`running`) runs with unfinished phases, a
`created`-only run, a retried phase, trial ids repeated across runs and once within a run,
microsecond timestamps on both sides of CUTOVER (one a microsecond before it, one exactly on it).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

CUTOVER = "2026-01-23"
CUTOVER_DT = datetime(2026, 1, 23)

LEGACY_DDL = """
CREATE SCHEMA IF NOT EXISTS optimizer;
CREATE SCHEMA IF NOT EXISTS baseline;
CREATE SCHEMA IF NOT EXISTS canon;
CREATE TABLE optimizer.runs_d (
    run_id VARCHAR PRIMARY KEY,
    run_kind VARCHAR,
    config JSON,
    data_fingerprint VARCHAR,
    status VARCHAR,
    created_at TIMESTAMP,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    summary JSON
);
CREATE TABLE optimizer.phases_d (
    run_id VARCHAR,
    phase VARCHAR,
    phase_index INTEGER,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    duration_ms DOUBLE,
    output_summary JSON
);
CREATE TABLE optimizer.trials_f (
    run_id VARCHAR,
    trial_id BIGINT,
    params JSON,
    metrics JSON,
    recorded_at TIMESTAMP
);
CREATE TABLE baseline.results (
    run_id VARCHAR,
    baseline VARCHAR,
    metrics JSON,
    completed_at TIMESTAMP
);
CREATE TABLE canon.alerts_raw (
    alert_id VARCHAR,
    source VARCHAR,
    severity VARCHAR,
    payload JSON,
    ts TIMESTAMPTZ
);
"""

PHASES = ["plan", "load-data", "backtest", "évaluation"]
KINDS = ["path-only", "walk-forward ☃", "grid-sweep", "bayes/optuna"]
BASELINES = ["buy_and_hold", "equal_weight"]


@dataclass
class Fixture:
    """What was written, for tests to assert on."""

    path: Path
    runs: dict[str, str] = field(default_factory=dict)  # run_id -> status
    before_cutover: list[str] = field(default_factory=list)
    after_cutover: list[str] = field(default_factory=list)
    n_phases: int = 0
    n_trials: int = 0
    n_baselines: int = 0
    n_alerts: int = 0


def _j(v: Any) -> str | None:
    # Legacy code wrote JSON with Python's default separators: spaces, escaped non-ASCII.
    return None if v is None else json.dumps(v)


def big_config(rng: random.Random) -> dict[str, Any]:
    """A large nested config (about 60 KB) like the sweep configs legacy stored whole."""
    return {
        "universe": [f"TICK{i:04d}" for i in range(400)],
        "grid": {
            f"param_{k}": {
                "values": [round(rng.uniform(-5, 5), 6) for _ in range(30)],
                "scale": rng.choice(["log", "linear"]),
                "nested": {"deep": {"deeper": [{"i": i, "ok": i % 2 == 0} for i in range(5)]}},
            }
            for k in range(40)
        },
        "notes": "réglages — 設定 — настройки 🚀",
        "none": None,
        "flags": [True, False, None],
        "big_int": 9007199254740993,
        "tiny": 1e-12,
    }


def build(path: str | Path, *, runs: int = 24, seed: int = 7) -> Fixture:
    """Write a fresh legacy file at `path` (replaced if present)."""
    rng = random.Random(seed)
    p = Path(path)
    for q in (p, p.with_name(p.name + ".wal")):
        q.unlink(missing_ok=True)
    fx = Fixture(path=p)
    run_rows: list[tuple[Any, ...]] = []
    phase_rows: list[tuple[Any, ...]] = []
    trial_rows: list[tuple[Any, ...]] = []
    base_rows: list[tuple[Any, ...]] = []
    alert_rows: list[tuple[Any, ...]] = []

    start = CUTOVER_DT - timedelta(days=70)
    for i in range(runs):
        run_id = f"run-legacy-{i:03d}"
        created = start + timedelta(
            days=i * 4, seconds=rng.randint(0, 86399), microseconds=rng.randint(0, 999_999)
        )
        if i == runs - 3:  # one microsecond before the cutover: still legacy's
            created = CUTOVER_DT - timedelta(microseconds=1)
        if i == runs - 2:  # exactly on the cutover: the index's
            created = CUTOVER_DT
        # status mix: mostly completed; some failed, running (never completed), created-only
        status = "completed"
        if i % 7 == 3:
            status = "failed"
        elif i % 9 == 5:
            status = "running"
        elif i == 11:
            status = "created"
        config: dict[str, Any] = {
            "lr": round(rng.uniform(1e-4, 1e-1), 6),
            "window": rng.randint(5, 250),
            "name": f"config n°{i} ✓",
            "tags": ["α", "β"],
            "opt": None,
        }
        if i == 2:
            config = big_config(rng)
        fp = None if i % 5 == 4 else f"sha256:{rng.getrandbits(128):032x}"
        started = (
            None
            if status == "created" or i == 14
            else created
            + timedelta(milliseconds=rng.randint(1, 5000), microseconds=rng.randint(0, 999))
        )
        cursor = started or created
        summary: dict[str, Any] | None = None
        completed = None

        # phases: plan, load-data, backtest (retried once in run 1), évaluation
        n_ph = 0 if status == "created" else rng.randint(2, 4)
        if i == 1:
            n_ph = 4  # so that the retried `backtest` exists
        for k in range(n_ph):
            attempts = 2 if (i == 1 and PHASES[k] == "backtest") else 1
            for _a in range(attempts):
                ps = cursor + timedelta(milliseconds=rng.randint(1, 50))
                unfinished = status in ("running", "failed") and k == n_ph - 1
                dur = round(rng.uniform(10, 90_000), 3)
                pc = None if unfinished else ps + timedelta(milliseconds=dur)
                out = (
                    None
                    if unfinished or k == 0
                    else {"rows": rng.randint(0, 10**6), "ok": True, "msg": "fin ✔"}
                )
                phase_rows.append(
                    (run_id, PHASES[k], k, ps, pc, None if unfinished else dur, _j(out))
                )
                cursor = pc or ps
        fx.n_phases += sum(1 for r in phase_rows if r[0] == run_id)

        # trials: ids 0..n-1 (the same ids recur in every run); run 4 records trial 3 twice
        n_tr = 0 if status == "created" else rng.randint(0, 12)
        if i in (4, 6, 8):
            n_tr = max(n_tr, 5)  # the special trials below must exist
        for t in range(n_tr):
            cursor += timedelta(milliseconds=rng.randint(1, 2000), microseconds=rng.randint(0, 999))
            metrics: dict[str, Any] = {
                "sharpe": round(rng.gauss(0.5, 1), 6),
                "max_dd": -round(rng.random(), 6),
                "trades": rng.randint(0, 500),
            }
            if i == 6 and t == 1:
                metrics["sortino"] = None  # legacy stored NaN as null
            params = {
                "fast": rng.randint(2, 50),
                "slow": rng.randint(50, 200),
                "label": f"essai {t} ✓",
                "grid": {"a": [1, 2.5, None]},
            }
            rec: datetime | None = cursor
            if i == 8 and t == 0:
                rec = None  # recorded_at never filled in
            trial_rows.append((run_id, t, _j(params), _j(metrics), rec))
            if i == 4 and t == 3:  # re-recorded trial id within a run
                trial_rows.append(
                    (
                        run_id,
                        t,
                        _j(params),
                        _j({**metrics, "sharpe": 0.125}),
                        cursor + timedelta(seconds=1),
                    )
                )
        fx.n_trials += sum(1 for r in trial_rows if r[0] == run_id)

        if status == "completed":
            completed = cursor + timedelta(
                milliseconds=rng.randint(1, 9000), microseconds=rng.randint(1, 999)
            )
            summary = {
                "sharpe": round(rng.gauss(1, 0.3), 6),
                "pnl": round(rng.uniform(-1e6, 1e6), 2),
                "currency": "€",
                "notes": None,
                "by_year": {"2024": 0.1, "2025": -0.05},
            }
            if i == 9:
                summary = None  # completed, but the old code never wrote a summary
            for b in BASELINES[: 1 + i % 2]:
                base_rows.append(
                    (
                        run_id,
                        b,
                        _j({"sharpe": round(rng.gauss(0.3, 0.2), 6), "cagr": 0.07}),
                        completed - timedelta(microseconds=7),
                    )
                )
                fx.n_baselines += 1
        elif status == "failed":
            completed = cursor + timedelta(milliseconds=rng.randint(1, 999))

        run_rows.append(
            (
                run_id,
                KINDS[i % len(KINDS)],
                _j(config),
                fp,
                status,
                created,
                started,
                completed,
                _j(summary),
            )
        )
        fx.runs[run_id] = status
        (fx.before_cutover if created < CUTOVER_DT else fx.after_cutover).append(run_id)

    # alerts: both sides of the cutover; one with NULL source, one with NULL payload
    for a in range(20):
        ts = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(
            days=a * 2, hours=a, microseconds=a * 1111
        )
        if a == 11:
            ts = datetime(2026, 1, 23, tzinfo=timezone.utc)  # exactly at the cutover
        payload: dict[str, Any] | None = {
            "symbol": f"TICK{a:04d}",
            "move_pct": round(rng.uniform(-9, 9), 3),
            "text": "⚠ écart de prix 🚨",
            "ctx": {"levels": [1, 2, 3]},
        }
        if a == 5:
            payload = None
        alert_rows.append(
            (
                f"alert-{a:04d}",
                None if a == 7 else rng.choice(["canon", "risk-engine"]),
                ["info", "warning", "critical"][a % 3],
                _j(payload),
                ts,
            )
        )
    fx.n_alerts = len(alert_rows)

    # ATTACH under a fixed alias: connect(path) would name the catalog after the file, and a file
    # called optimizer.duckdb would clash with its own `optimizer` schema.
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH '{str(p).replace(chr(39), chr(39) * 2)}' AS legacy_fixture")
        con.execute("USE legacy_fixture")
        con.execute(LEGACY_DDL)
        con.executemany("INSERT INTO optimizer.runs_d VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", run_rows)
        con.executemany("INSERT INTO optimizer.phases_d VALUES (?, ?, ?, ?, ?, ?, ?)", phase_rows)
        con.executemany("INSERT INTO optimizer.trials_f VALUES (?, ?, ?, ?, ?)", trial_rows)
        con.executemany("INSERT INTO baseline.results VALUES (?, ?, ?, ?)", base_rows)
        con.executemany("INSERT INTO canon.alerts_raw VALUES (?, ?, ?, ?, ?)", alert_rows)
        con.execute("CHECKPOINT")
        con.execute("USE memory")
        con.execute("DETACH legacy_fixture")
    finally:
        con.close()
    return fx


def build_bulk(
    path: str | Path, *, runs: int, trials_per_run: int, floats: int = 5, empties: int = 0
) -> int:
    """A large legacy file for memory and speed checks, generated by DuckDB (seconds for
    millions of rows): `runs` completed runs of `trials_per_run` trials each, every trial's
    params holding `floats` distinct floats and `empties` empty objects (2 bytes of JSON each,
    about 70 bytes once parsed into Python). Returns the number of legacy rows."""
    p = Path(path)
    for q in (p, p.with_name(p.name + ".wal")):
        q.unlink(missing_ok=True)
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH '{str(p).replace(chr(39), chr(39) * 2)}' AS legacy_fixture")
        con.execute("USE legacy_fixture")
        con.execute(LEGACY_DDL)
        con.execute(
            f"""INSERT INTO optimizer.runs_d
                SELECT printf('bulk-%07d', r), 'grid-sweep', '{{"r": ' || r || '}}', NULL,
                       'completed', TIMESTAMP '2025-11-01' + INTERVAL (r * 60) SECOND,
                       TIMESTAMP '2025-11-01' + INTERVAL (r * 60 + 1) SECOND,
                       TIMESTAMP '2025-11-01' + INTERVAL (r * 60 + 59) SECOND,
                       '{{"best": ' || r || '}}'
                FROM range({runs}) t(r)"""
        )
        con.execute(
            f"""INSERT INTO optimizer.trials_f
                SELECT printf('bulk-%07d', r), t,
                       '{{"grid": [' || (SELECT string_agg(CAST(r * 1e6 + t * 1e3 + f + 0.5
                                                               AS VARCHAR), ', ')
                                          FROM range({floats}) g(f))
                       || '], "e": [' || repeat('{{}}, ', {empties}) || '{{}}]}}',
                       '{{"sharpe": ' || (t * 0.001) || ', "trades": ' || t || '}}',
                       TIMESTAMP '2025-11-01' + INTERVAL (r * 60 + 2) SECOND
                           + INTERVAL (t) MICROSECOND
                FROM range({runs}) a(r), range({trials_per_run}) b(t)"""
        )
        con.execute("CHECKPOINT")
        con.execute("USE memory")
        con.execute("DETACH legacy_fixture")
    finally:
        con.close()
    return runs * (1 + trials_per_run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--runs", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    fx = build(a.out, runs=a.runs, seed=a.seed)
    print(
        f"{fx.path}: {len(fx.runs)} runs ({len(fx.before_cutover)} before {CUTOVER}), "
        f"{fx.n_phases} phases, {fx.n_trials} trials, {fx.n_baselines} baselines, "
        f"{fx.n_alerts} alerts"
    )


def migrated_ledger(tmp: Path, **build_kw: Any) -> tuple[Path, Fixture]:
    """A ledger root under `tmp` holding the fixture migrated and indexed. Returns (root, fx)."""
    from ledgerx.index import build_index
    from ledgerx.legacy import migrate

    fx = build(tmp / "legacy.duckdb", **build_kw)
    root = tmp / "ledger"
    migrate(root, fx.path)
    build_index(root, durable=False)
    return root, fx


if __name__ == "__main__":
    main()


LEGACY_TABLES = ["optimizer.runs_d", "optimizer.phases_d", "optimizer.trials_f",
                 "baseline.results", "canon.alerts_raw"]  # fmt: skip


def legacy_rows(path: Path) -> dict[str, list[str]]:
    """Every row of the legacy-shaped tables of a DuckDB file, as sorted reprs per table."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            t: sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall()))
            for t in LEGACY_TABLES
        }
    finally:
        con.close()

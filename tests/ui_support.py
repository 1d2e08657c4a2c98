"""Ledgers for the dashboard tests, written by the real writer and indexed by `ledgerx rebuild`,
with the values the pages must show computed here, independently of the dashboard."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

import ledgerx

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Expected:
    """What the tests check the pages against (computed from what was written)."""

    runs: dict[str, str] = field(default_factory=dict)  # run_id -> status
    kinds: dict[str, str] = field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the trials each run shows, one per trial id, in recording order of their latest record
    trials: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)  # trial.recorded events per run
    equity_rows: int = 0


def metrics_for(seed: int, t: int) -> dict[str, float]:
    pnl = round(((seed * 37 + t * 11) % 23) / 10 - 1.0, 4)
    return {"pnl": pnl, "sharpe": round(pnl * 1.5, 4), "trades": float(t % 5)}


def write_ledger(root: Path, *, n_trials: int = 30) -> Expected:
    """Five runs: three completed sweeps (one with an equity curve), one failed backtest, one
    left running; an alert."""
    exp = Expected()
    led = ledgerx.open(root)
    try:
        for i in range(3):
            rid = f"sweep-{i}"
            tags = {"team": "alpha" if i < 2 else "beta", "idx": i}
            with led.run(run_id=rid, run_kind="sweep", config={"grid": i, "seed": i},
                         data_fingerprint=f"fp-{i}", tags=tags) as run:  # fmt: skip
                with run.phase("load") as ph:
                    ph.output_summary = {"bars": 100}
                rows = []
                with run.phase("search"):
                    for t in range(n_trials):
                        params = {"fast": 2 + t % 9, "slow": 30 + t % 13}
                        m = metrics_for(i, t)
                        run.trial(trial_id=t, params=params, metrics=m)
                        rows.append({"trial_id": t, "params": params, "metrics": m})
                    if i == 2:  # a retried task records trial 5 again: its latest record counts
                        m = {"pnl": 9.5, "sharpe": 14.25, "trades": 0.0}
                        again = {"trial_id": 5, "params": {"fast": 7, "slow": 35}, "metrics": m}
                        run.trial(**again)
                        rows = [r for r in rows if r["trial_id"] != 5] + [again]
                run.baseline("buy_and_hold", {"pnl": 0.05, "sharpe": 0.3})
                if i == 0:
                    n = 250
                    eq = [1.0 + k / 1000 for k in range(n)]
                    curve = pa.table({"step": list(range(n)), "equity": eq})
                    run.artifacts.write_equity_curve(curve)
                    run.artifacts.write_json("notes", {"hello": "world"})
                    exp.equity_rows = n
                best = max(rows, key=lambda r: r["metrics"]["pnl"])
                run.summary.update({"best_pnl": best["metrics"]["pnl"]})
            exp.runs[rid], exp.kinds[rid], exp.tags[rid], exp.trials[rid] = (
                "completed", "sweep", tags, rows)  # fmt: skip
            exp.records[rid] = n_trials + (i == 2)
        try:
            with led.run(run_id="bt-failed", run_kind="backtest", config={"x": 1},
                         data_fingerprint="fp-x", tags={"team": "beta"}) as run:  # fmt: skip
                with run.phase("simulate"):
                    raise RuntimeError("simulated data vendor outage")
        except RuntimeError:
            pass
        exp.runs["bt-failed"], exp.kinds["bt-failed"], exp.tags["bt-failed"] = (
            "failed", "backtest", {"team": "beta"})  # fmt: skip
        exp.trials["bt-failed"], exp.records["bt-failed"] = [], 0
        led.emit_run_created("bt-running", "backtest", {"x": 2}, "fp-y", {"team": "gamma"})
        led.emit_run_started("bt-running")
        led.emit_phase_started("bt-running", "simulate", 0)
        exp.runs["bt-running"], exp.kinds["bt-running"], exp.tags["bt-running"] = (
            "running", "backtest", {"team": "gamma"})  # fmt: skip
        exp.trials["bt-running"], exp.records["bt-running"] = [], 0
        alert = {"alert_id": "a-1", "source": "risk", "severity": "warn",
                 "payload": {"msg": "drawdown over limit"}}  # fmt: skip
        led.emit("alert.ingested", alert, run_id="sweep-1")
    finally:
        led.close()
    return exp


def add_run(root: Path, run_id: str) -> None:
    """One more completed run (a 'late' run for the live-refresh test)."""
    led = ledgerx.open(root)
    try:
        with led.run(run_id=run_id, run_kind="late", config={}, data_fingerprint="fp-late") as run:
            run.trial(trial_id=0, params={"fast": 3}, metrics={"pnl": 0.5})
    finally:
        led.close()


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerx", *args], capture_output=True, text=True, timeout=timeout
    )


def rebuild(root: Path) -> None:
    r = cli("rebuild", "--root", str(root))
    assert r.returncode == 0, r.stderr


class UiServer:
    """`ledgerx ui --port 0` in a real child process; `base` is its URL."""

    def __init__(self, root: Path, *extra: str, poll_ms: int = 300) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ledgerx", "ui", "--root", str(root), "--port", "0",
             "--poll-ms", str(poll_ms), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"on (http://\S+/) ", line)
        if not m:
            self.stop()
            raise AssertionError(f"ledgerx ui did not start: {line!r} {self.stderr()}")
        self.base = m.group(1).rstrip("/")

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(pred: Any, timeout: float = 10.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


def env_without_ui() -> dict[str, str]:
    """An environment where importing starlette fails (the `ui` extra 'not installed')."""
    return {**os.environ, "PYTHONPATH": str(REPO / "tests" / "no_ui_extra")}

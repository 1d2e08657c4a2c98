"""Helpers for the ops tests (artifacts, daemon, retention): index snapshots, a free port,
HTTP polling and daemon subprocesses that are always reaped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ledgerx.index.indexer import open_readonly

# Columns that depend on when/how often the indexer ran, not on the log.
VOLATILE = {"gen", "updated_at", "indexed_at"}
TABLES = [
    "events",
    "runs_d",
    "phase_timings",
    "trial_results",
    "baseline_results",
    "artifacts_catalog",
    "_ledger_files",
    "_bad_lines",
]


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of a runs index, rows sorted, without the run-bookkeeping columns."""
    con = open_readonly(db)
    try:
        out = {}
        for t in TABLES:
            cols = [
                c
                for (c,) in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                    "ORDER BY ordinal_position",
                    [t],
                ).fetchall()
                if c not in VOLATILE
            ]
            sel = ", ".join(f'"{c}"' for c in cols)
            out[t] = con.execute(f"SELECT {sel} FROM {t} ORDER BY ALL").fetchall()
        return out
    finally:
        con.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    code, body = get(f"http://127.0.0.1:{port}/healthz")
    return code, json.loads(body)


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except (OSError, ValueError) as e:  # server not up yet, file not there yet
            last = e
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@contextlib.contextmanager
def daemon(
    root: Path, *args: str, env: dict[str, str] | None = None, stall: float | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`ledgerx daemon` as a real subprocess; killed and reaped whatever the test does. With
    `stall`, through the test-only entry point `daemon_stalled.py`: every indexing round
    stalls that many seconds mid-scan."""
    entry = ["-m", "ledgerx"]
    if stall is not None:
        entry = [str(Path(__file__).with_name("daemon_stalled.py")), str(stall)]
    p = subprocess.Popen(
        [sys.executable, *entry, "daemon", "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        yield p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)

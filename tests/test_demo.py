"""`make demo` runs `python -m ledgerx.demo`: run it on a fresh root and check what it says and
what it wrote, against the independent reader (tests/logcheck.py) and hand-computed counts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from logcheck import check_log

# 4 workers x 3 runs; per run: created, started, 2 phases x 2, 40 trials, baseline, the equity
# curve's artifact.created, terminal; then one alert.
RUNS, PER_RUN = 12, 49


def test_make_demo_writes_indexes_and_lists_its_runs(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    r = subprocess.run(
        [sys.executable, "-m", "ledgerx.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LEDGERX_ROOT": str(root)},
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert f"demo: 4 workers wrote {RUNS * PER_RUN} events and 1 alert to {root} in " in r.stdout
    assert re.search(r"demo: done in \d+\.\d\ds", r.stdout)
    # it ends with the command that opens the dashboard on this ledger
    assert r.stdout.splitlines()[-1] == (
        f"demo: browse it in the dashboard: {sys.executable} -m ledgerx ui --root {root}"
        "  (then open http://127.0.0.1:8765/)"
    )
    assert "Traceback" not in r.stderr
    report = check_log(root)  # every line valid v1, seq contiguous per writer
    alerts = [e for e in report.events if e["event_type"] == "alert.ingested"]
    assert len(alerts) == 1 and alerts[0]["data"]["source"] == "data-vendor"
    py = [
        e
        for e in report.events
        if not e["run_id"].endswith("-node") and e["event_type"] != "alert.ingested"
    ]
    node = [e for e in report.events if e["run_id"].endswith("-node")]
    assert len(py) == RUNS * PER_RUN
    per_run = Counter(e["run_id"] for e in py)
    assert len(per_run) == RUNS and set(per_run.values()) == {PER_RUN}
    types = Counter(e["event_type"] for e in py)
    assert types["trial.recorded"] == RUNS * 40 and types["artifact.created"] == RUNS
    assert (types["run.completed"], types["run.failed"]) == (RUNS - 1, 1)
    (failed,) = [e for e in py if e["event_type"] == "run.failed"]
    assert failed["run_id"].endswith("-w3-r2")
    assert "simulated data vendor outage" in failed["data"]["error"]
    # The Node worker runs when `make node` built the addon: one run of 45 events (40 trials).
    if node:
        assert len(node) == 45 and len({e["run_id"] for e in node}) == 1
        assert f"demo: node worker wrote 45 events (run {node[0]['run_id']})" in r.stdout
    else:
        assert "node worker" not in r.stdout
    # The index was rebuilt and `runs` listed every run.
    assert (root / "index" / "runs.duckdb").is_file()
    for run_id in {e["run_id"] for e in report.events}:
        assert run_id in r.stdout
    assert not (tmp_path / "data").exists(), "LEDGERX_ROOT was honoured"

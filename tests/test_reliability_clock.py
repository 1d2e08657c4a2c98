"""The clock stepping back across midnight under libfaketime (issue 5): nothing is lost, each
event lands in the day of its own ts, and seq keeps increasing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import find_lib
from logcheck import check_log

CHILD = """
import sys, time, ledgerx
led = ledgerx.open(sys.argv[1], durability="group")
stamp = sys.argv[2]
for step in ("2026-03-02 00:00:01", "2026-03-01 23:59:58", "2026-03-02 00:00:03"):
    open(stamp, "w").write("@" + step + "\\n")  # FAKETIME_NO_CACHE: read at every clock call
    for i in range(100):
        led.emit("run.heartbeat", {"step": step, "i": i}, run_id="clock")
led.close()
"""


def test_clock_stepping_back_across_midnight(root: Path, tmp_path: Path) -> None:
    stamp = tmp_path / "faketime"
    stamp.write_text("@2026-03-02 00:00:01\n")
    env = {
        **os.environ,
        "LD_PRELOAD": find_lib("libfaketime.so.1"),
        "FAKETIME_TIMESTAMP_FILE": str(stamp),
        "FAKETIME_NO_CACHE": "1",
        "TZ": "UTC",
    }
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(stamp)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    report = check_log(root)  # also: every event is in the day dir of its ts
    evs = report.events
    assert len(evs) == 300
    assert [e["seq"] for e in sorted(evs, key=lambda e: e["seq"])] == list(range(1, 301))
    days: dict[str, set[str]] = {}
    for e in evs:
        days.setdefault(e["data"]["step"], set()).add(e["_file"].split("/")[0])
    assert days["2026-03-01 23:59:58"] == {"day=2026-03-01"}
    assert days["2026-03-02 00:00:01"] == {"day=2026-03-02"}
    assert days["2026-03-02 00:00:03"] == {"day=2026-03-02"}
    # seq follows emit order even though ts went backwards.
    by_seq = sorted(evs, key=lambda e: e["seq"])
    assert [e["data"]["step"] for e in by_seq][99:102] == [
        "2026-03-02 00:00:01",
        "2026-03-01 23:59:58",
        "2026-03-01 23:59:58",
    ]

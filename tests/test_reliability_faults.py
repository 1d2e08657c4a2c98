"""Syscall faults injected with strace (issue 5): ENOSPC and short writes on write(), EIO on
fdatasync(). The writer must raise a typed error, never leave a partial line that reads as
valid, abandon the part, and go on in a new part once the fault is gone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ledgerx

from logcheck import check_log

# The child counts its own write()/fdatasync() calls: emit i makes write #i+1 (fsync mode:
# one write and one fdatasync per event), so `when=` picks which emits fail.
CHILD = """
import json, sys, ledgerx
led = ledgerx.open(sys.argv[1], durability="fsync")
ok, failed = [], []
for i in range(40):
    try:
        led.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {"x": 1.0}}, run_id="f")
        ok.append(i)
    except ledgerx.LedgerIOError as e:
        failed.append([i, e.errno, str(e)])
led.close()
json.dump({"ok": ok, "failed": failed}, open(sys.argv[2], "w"))
"""


def _run(root: Path, tmp: Path, inject: str) -> dict:
    ledgerx.open(root).close()  # registry and dirs exist: the child's writes are its events
    out = tmp / "result.json"
    r = subprocess.run(
        [
            "strace",
            "-qq",
            "-f",
            "-o",
            "/dev/null",
            "-e",
            "trace=write,fdatasync",
            "-e",
            f"inject={inject}",
            sys.executable,
            "-c",
            CHILD,
            str(root),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.exists(), r.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("fault", ["ENOSPC", "EIO"])
def test_write_error_abandons_part_and_recovers(root: Path, tmp_path: Path, fault: str) -> None:
    res = _run(root, tmp_path, f"write:error={fault}:when=10..12")
    failed = [f[0] for f in res["failed"]]
    assert failed, "the fault was not injected"
    errno_name = {"ENOSPC": 28, "EIO": 5}[fault]
    assert all(f[1] == errno_name and "/events/day=" in f[2] for f in res["failed"])
    # Also proves no partial line remains, and a failed write used up no seq.
    report = check_log(root)
    on_disk = [e["data"]["trial_id"] for e in report.events]
    assert sorted(on_disk) == res["ok"], "acknowledged events present, failed ones absent"
    assert len(report.files) >= 2, "the writer moved on to a new part"
    assert list((root / "events").glob("day=*/*.abandoned"))


def test_short_write_is_an_error_and_leaves_no_partial_line(root: Path, tmp_path: Path) -> None:
    # retval=7: the kernel "wrote" 7 bytes of the line — a short write.
    res = _run(root, tmp_path, "write:retval=7:when=5")
    assert [f[0] for f in res["failed"]] == [4]
    assert "short write" in res["failed"][0][2]
    report = check_log(root)
    assert sorted(e["data"]["trial_id"] for e in report.events) == res["ok"]


def test_fdatasync_eio_reaches_the_caller_and_abandons_the_part(root: Path, tmp_path: Path) -> None:
    res = _run(root, tmp_path, "fdatasync:error=EIO:when=6")
    assert len(res["failed"]) == 1 and res["failed"][0][1] == 5
    bad = res["failed"][0][0]
    report = check_log(root, contiguous_seq=False)
    by_file: dict[str, list[int]] = {}
    for e in report.events:
        by_file.setdefault(e["_file"], []).append(e["data"]["trial_id"])
    # The failed event's part got no later acknowledgment: every event after it is elsewhere.
    part_of_bad = [f for f, ids in by_file.items() if bad in ids]
    for f in part_of_bad:
        assert max(by_file[f]) == bad, "no event acknowledged in a part after its failed fsync"
    acked_after = [i for i in res["ok"] if i > bad]
    assert acked_after and all(
        any(i in ids for f, ids in by_file.items() if f not in part_of_bad) for i in acked_after
    )
    abandoned = list((root / "events").glob("day=*/*.abandoned"))
    assert len(abandoned) == 1 and "fdatasync" in abandoned[0].read_text()

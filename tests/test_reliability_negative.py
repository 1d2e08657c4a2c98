"""Negative control (issue 5): the fsync audit that backs the durability tests must notice when
fsync is a no-op. Under strace, every acknowledged fsync-mode emit must be preceded by an
fdatasync of its part; under eatmydata (fsync turned into a no-op) the audit must fail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import ledgerx

from conftest import find_lib

CHILD = """
import os, sys, ledgerx
led = ledgerx.open(sys.argv[1], durability="fsync")
for i in range(20):
    led.emit("run.heartbeat", {"i": i}, run_id="audit")
    os.write(1, b"ACK\\n")
led.close()
"""

SYSCALL = re.compile(r"^\d+\s+(write|fdatasync|fsync)\((\d+)")


def unsynced_acks(root: Path, tmp: Path, preload: str | None = None) -> tuple[int, int]:
    """Run a fsync-mode writer under strace; count acks with no fdatasync of the part since
    the event's write. Returns (acks, unsynced)."""
    ledgerx.open(root).close()
    log = tmp / "strace.log"
    env = dict(os.environ)
    if preload:
        env["LD_PRELOAD"] = preload
    r = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-o",
            str(log),
            "-e",
            "trace=write,fdatasync,fsync",
            sys.executable,
            "-c",
            CHILD,
            str(root),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    acks = unsynced = 0
    dirty: set[str] = set()
    for line in log.read_text().splitlines():
        m = SYSCALL.match(line)
        if not m:
            continue
        call, fd = m.groups()
        if call == "write" and fd == "1" and '"ACK\\n"' in line:
            acks += 1
            unsynced += bool(dirty)
            dirty.clear()
        elif call == "write" and '{\\"event_id\\"' in line:
            dirty.add(fd)
        elif call in ("fdatasync", "fsync"):
            dirty.discard(fd)
    return acks, unsynced


def test_fsync_audit_passes_on_real_fsync(root: Path, tmp_path: Path) -> None:
    acks, unsynced = unsynced_acks(root, tmp_path)
    assert acks == 20 and unsynced == 0


def test_fsync_audit_catches_a_noop_fsync(root: Path, tmp_path: Path) -> None:
    acks, unsynced = unsynced_acks(root, tmp_path, preload=find_lib("libeatmydata.so"))
    assert acks == 20
    assert unsynced == 20, "with fsync a no-op the audit must flag every acknowledgment"

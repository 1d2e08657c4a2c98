"""Durable (fsync mode) emit, two builds of ledgerx side by side, with SQLite WAL
`synchronous=FULL` in the same run: made for a loaded machine.

    .venv/bin/python benches/ab_durable.py --baseline OTHER/.venv/bin/python [--procs 4]

Each build (and SQLite) runs `--procs` writer processes, started once and warmed up (20 events
each). Rounds take turns between the three, in alternating order: in a round each of that
tool's processes writes `--block` records at once, timing each call. Load from elsewhere then
falls on all three alike, so the ratios hold where the absolute figures do not. Rate of a round
= records of the round / the slowest process's time in its calls (as `run_peers.py` four)."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LEDGERX = r"""
import json, sys, time, ledgerx
led = ledgerx.open(sys.argv[1], durability="fsync")
P, M = {"fast": 10, "slow": 50, "stop": 0.02}, {"sharpe": 1.2345, "pnl": 0.0567, "max_dd": 0.1234}
def op(i):
    led.emit("trial.recorded", {"trial_id": i, "params": P, "metrics": M}, run_id="r")
"""
SQLITE = r"""
import json, sys, time, sqlite3
con = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
con.execute("pragma journal_mode=wal")
con.execute("pragma synchronous=FULL")
P = json.dumps({"fast": 10, "slow": 50, "stop": 0.02})
M = json.dumps({"sharpe": 1.2345, "pnl": 0.0567, "max_dd": 0.1234})
def op(i):
    con.execute("insert into t values (?, ?, ?)", (i, P, M))
"""
LOOP = r"""
for i in range(20):
    op(-1 - i)
print("ready", flush=True)
n = 0
for line in sys.stdin:
    lat = []
    for _ in range(int(line)):
        t = time.perf_counter_ns()
        op(n)
        lat.append((time.perf_counter_ns() - t) / 1000)
        n += 1
    print(json.dumps(lat), flush=True)
"""


def pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(len(s) * q / 100))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", required=True, help="the python of the other build's venv")
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block", type=int, default=40)
    ap.add_argument("--workdir", default=None, help="on the disk to measure")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ledgerx-ab-", dir=a.workdir))
    c = sqlite3.connect(work / "s.db")
    c.execute("pragma journal_mode=wal")
    c.execute("create table t (trial_id int, params text, metrics text)")
    c.close()
    tools = {
        "this": (sys.executable, LEDGERX + LOOP, work / "this"),
        "baseline": (a.baseline, LEDGERX + LOOP, work / "baseline"),
        "sqlite": (sys.executable, SQLITE + LOOP, work / "s.db"),
    }
    ps = {
        k: [
            subprocess.Popen(
                [py, "-c", code, str(arg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            for _ in range(a.procs)
        ]
        for k, (py, code, arg) in tools.items()
    }
    for p in (p for v in ps.values() for p in v):
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    lat: dict[str, list[float]] = {k: [] for k in ps}
    rate: dict[str, list[float]] = {k: [] for k in ps}
    order = list(ps)
    for r in range(a.rounds):
        for k in order if r % 2 == 0 else order[::-1]:
            for p in ps[k]:
                assert p.stdin is not None
                p.stdin.write(f"{a.block}\n")
                p.stdin.flush()
            outs = [json.loads(p.stdout.readline()) for p in ps[k] if p.stdout is not None]
            lat[k] += [x for o in outs for x in o]
            rate[k].append(a.procs * a.block / max(sum(o) / 1e6 for o in outs))
    for p in (p for v in ps.values() for p in v):
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
    med = {k: statistics.median(v) for k, v in rate.items()}
    p50 = {k: pct(v, 50) for k, v in lat.items()}
    print(f"procs {a.procs}, rounds {a.rounds} x {a.block}, load {os.getloadavg()[0]:.1f}")
    for k in ps:
        print(f"  {k:8s} p50 {p50[k]:8.1f} us  p99 {pct(lat[k], 99):8.1f} us  rate {med[k]:8.0f}/s")
    for k, ref in (("this", "sqlite"), ("baseline", "sqlite"), ("this", "baseline")):
        print(f"  {k} / {ref}: p50 {p50[k] / p50[ref]:.2f}, rate {med[k] / med[ref]:.2f}x")


if __name__ == "__main__":
    main()

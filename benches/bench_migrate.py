"""`ledgerx legacy migrate` at scale: peak RSS and time for N legacy rows (`make soak-migrate`).

    python benches/bench_migrate.py [--rows 1000000] [--max-rss-mb 500] [--keep DIR]

Builds a legacy file of N rows (runs of 999 trials, `tests/legacy_fixture.py::build_bulk`),
runs `ledgerx legacy migrate` in a child process, reads the child's peak RSS from wait4(2), and
checks that the log holds one line per legacy event. Exits 1 when the RSS is over the bound."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from legacy_fixture import build_bulk  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--max-rss-mb", type=int, default=500)
    ap.add_argument("--keep", default=None, help="work in DIR and keep it")
    a = ap.parse_args()
    work = Path(a.keep or tempfile.mkdtemp(prefix="ledgerx-bench-migrate-"))
    work.mkdir(parents=True, exist_ok=True)
    legacy = work / "legacy.duckdb"
    runs = max(1, a.rows // 1000)
    t = time.monotonic()
    n = build_bulk(legacy, runs=runs, trials_per_run=999)
    print(f"legacy file: {n} rows ({runs} runs x 999 trials) in {time.monotonic() - t:.1f} s")
    root = work / "ledger"
    t = time.monotonic()
    p = subprocess.Popen(
        [sys.executable, "-m", "ledgerx", "legacy", "migrate", "--root", str(root),
         "--legacy", str(legacy)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    _, status, ru = os.wait4(p.pid, 0)
    secs = time.monotonic() - t
    out, err = p.stdout.read(), p.stderr.read()  # type: ignore[union-attr]
    if status != 0:
        print(f"migrate failed ({status}): {err.strip()[-500:]}")
        return 1
    rss_mb = ru.ru_maxrss / 1024
    lines = sum(f.read_bytes().count(b"\n") for f in (root / "events").glob("day=*/*.jsonl"))
    want = runs * (3 + 999)  # created, started, completed + trials
    print(out.strip().splitlines()[0])
    print(
        f"migrate: {n} legacy rows -> {lines} events in {secs:.1f} s "
        f"({lines / secs:,.0f} events/s), peak RSS {rss_mb:.0f} MB (bound {a.max_rss_mb} MB)"
    )
    if lines != want:
        print(f"expected {want} events in the log, found {lines}")
        return 1
    return 0 if rss_mb <= a.max_rss_mb else 1


if __name__ == "__main__":
    sys.exit(main())

"""Index benchmarks (README "Benchmarks"), ratios measured in the same run.

    .venv/bin/python benches/bench_rebuild.py --events 1000000            # rebuild + incremental
    .venv/bin/python benches/bench_rebuild.py --rss-events 10000000        # peak RSS of a rebuild
    .venv/bin/pytest benches/bench_rebuild.py -s                           # same, 1M / 1M

1. full rebuild of N events written by the real writer, as a user runs it (a fresh
   `ledgerx rebuild --full-rebuild` process), vs a fresh process loading the same files with
   DuckDB `read_json` and typed columns (`data` as a STRUCT) into one table; best and median of
   `--repeat` runs each, interleaved; the weaker `data: 'JSON'` load is reported beside it;
2. incremental index of 1k new events on that index, publish included (in-process, median);
3. one new event on that index, indexed by a fresh `ledgerx rebuild` process (process start
   included; the first round after a full rebuild works on a copy, the next ones update the
   alternate in place: median of those, and its ratio to the full rebuild's median), and
   `wait_indexed` of one event while `ledgerx daemon` runs on the root (median, ms);
4. peak RSS of a full rebuild in a fresh process (`--rss-events`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ledgerx import _core
from ledgerx.index import build_index

# Typed columns: `data` as a STRUCT of every field the bench log's events carry (a field an
# event lacks is null), so DuckDB parses and stores typed values, as the index does.
DATA_STRUCT = (
    "STRUCT(trial_id BIGINT, params STRUCT(fast BIGINT, slow BIGINT, stop DOUBLE), "
    "metrics STRUCT(sharpe DOUBLE, ret DOUBLE, dd DOUBLE), run_kind VARCHAR, config JSON, "
    "data_fingerprint VARCHAR, host VARCHAR, pid BIGINT, phase VARCHAR, phase_index BIGINT, "
    "duration_ms DOUBLE, summary JSON, artifact_paths JSON)"
)


def read_json_columns(data_type: str) -> str:
    return (
        "{event_id: 'VARCHAR', event_type: 'VARCHAR', schema_version: 'INTEGER', "
        "ts: 'TIMESTAMPTZ', run_id: 'VARCHAR', writer: 'VARCHAR', seq: 'BIGINT', "
        f"data: '{data_type}', crc: 'VARCHAR'}}"
    )


READ_JSON_CODE = """
import sys, duckdb
root, out, cols = sys.argv[1:4]
con = duckdb.connect(out)
con.execute(f\"\"\"CREATE TABLE events AS SELECT * FROM read_json(
    '{root}/events/day=*/*.jsonl', format = 'newline_delimited', columns = {cols})\"\"\")
print(con.execute("SELECT count(*) FROM events").fetchone()[0])
con.close()
"""


def write_events(root: Path, n: int, per_run: int = 10_000, seed: int = 0) -> None:
    """~300-byte trial events in runs of `per_run`, through the real writer."""
    rng = random.Random(seed)
    w = _core.Writer(str(root), durability="os")
    runs = max(1, n // per_run)
    left = n
    for r in range(runs):
        rid = f"run-{seed}-{r:06d}"
        k = left if r == runs - 1 else per_run
        w.emit(
            "run.created",
            {"run_kind": "sweep", "config": {"r": r}, "data_fingerprint": "fp"},
            run_id=rid,
        )
        w.emit("run.started", {"host": "bench", "pid": 1}, run_id=rid)
        w.emit("phase.started", {"phase": "sweep", "phase_index": 0}, run_id=rid)
        for i in range(k - 5):
            w.emit(
                "trial.recorded",
                {
                    "trial_id": i,
                    "params": {"fast": i % 50, "slow": i % 200, "stop": 0.02},
                    "metrics": {
                        "sharpe": round(rng.random(), 4),
                        "ret": round(rng.random(), 4),
                        "dd": -round(rng.random(), 4),
                    },
                },
                run_id=rid,
            )
        w.emit("phase.completed", {"phase": "sweep", "duration_ms": 12.5}, run_id=rid)
        w.emit("run.completed", {"summary": {"best": 1.0}, "artifact_paths": []}, run_id=rid)
        left -= k
    w.close()


def read_json_load(root: Path, out: Path, data_type: str = DATA_STRUCT) -> float:
    """Seconds of a fresh Python process loading the log with DuckDB `read_json`."""
    for p in (out, out.with_name(out.name + ".wal")):
        p.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", READ_JSON_CODE, str(root), str(out), read_json_columns(data_type)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def full_rebuild(root: Path) -> float:
    """Seconds of a fresh `ledgerx rebuild --full-rebuild` process, as a user runs it."""
    cli = Path(sys.executable).with_name("ledgerx")
    cmd = [str(cli), "rebuild", "--root", str(root), "--full-rebuild"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def incremental(root: Path, rounds: int) -> list[float]:
    out = []
    w = _core.Writer(str(root), durability="os")
    for r in range(rounds):
        for i in range(1000):
            w.emit(
                "trial.recorded",
                {"trial_id": i, "params": {"a": i}, "metrics": {"m": 0.5}},
                run_id=f"run-inc-{r}",
            )
        w.flush()
        t = time.perf_counter()
        rep = build_index(root)
        out.append(time.perf_counter() - t)
        assert rep.events == 1000, rep
    w.close()
    return out


def one_event(root: Path, i: int) -> None:
    w = _core.Writer(str(root), durability="os")
    w.emit("trial.recorded", {"trial_id": i, "params": {"a": i}, "metrics": {"m": 0.5}},
           run_id="run-one")  # fmt: skip
    w.close()


def incremental_one_cli(root: Path, rounds: int) -> tuple[float, list[float]]:
    """Seconds of a fresh `ledgerx rebuild` process indexing one new event: the first round
    after a full rebuild (a copy of the index), then `rounds` more (the alternate in place)."""
    cli = Path(sys.executable).with_name("ledgerx")
    out = []
    for r in range(rounds + 1):
        one_event(root, r)
        t = time.perf_counter()
        res = subprocess.run(
            [str(cli), "rebuild", "--root", str(root)], check=True, capture_output=True, text=True
        )
        out.append(time.perf_counter() - t)
        assert "indexed 1 events" in res.stderr + res.stdout, res.stderr
    return out[0], out[1:]


def wait_indexed_with_daemon(root: Path, rounds: int) -> list[float]:
    """Seconds from emit() of one event to wait_indexed() returning, `ledgerx daemon` running."""
    import ledgerx

    cli = Path(sys.executable).with_name("ledgerx")
    d = subprocess.Popen(
        [str(cli), "daemon", "--root", str(root), "--interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = []
    try:
        with ledgerx.open(root, durability="os") as led:
            for i in range(rounds):
                t = time.perf_counter()
                pos = led.emit(
                    "trial.recorded",
                    {"trial_id": i, "params": {"a": i}, "metrics": {"m": 0.5}},
                    run_id="run-wait",
                )
                led.wait_indexed(pos)
                out.append(time.perf_counter() - t)
    finally:
        d.terminate()
        d.wait(60)
    return out


def rss_of_rebuild(n: int, workdir: Path) -> dict[str, float]:
    root = workdir / f"rss-{n}"
    if not (root / "events").exists():
        write_events(root, n)
    code = (
        "import resource, sys, time\n"
        "from ledgerx.index import build_index\n"
        "t = time.perf_counter()\n"
        "rep = build_index(sys.argv[1], full_rebuild=True)\n"
        "print(rep.events, time.perf_counter() - t,"
        " resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True
    )
    events, secs, rss_kb = res.stdout.split()[-3:]
    return {"events": int(events), "seconds": float(secs), "peak_rss_mib": int(rss_kb) / 1024}


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def run(events: int, repeat: int, inc_rounds: int, rss_events: int, workdir: Path) -> dict:
    out: dict = {"events": events, "cpus": os.cpu_count()}
    if events:
        root = workdir / f"ledger-{events}"
        if not (root / "events").exists():
            t = time.perf_counter()
            write_events(root, events)
            out["write_seconds"] = round(time.perf_counter() - t, 2)
        out["log_mb"] = round(
            sum(p.stat().st_size for p in (root / "events").rglob("*.jsonl")) / 1e6, 1
        )
        rj, rb, rjj = [], [], []
        for _ in range(repeat):  # interleaved, so all see the same machine load
            rj.append(read_json_load(root, workdir / "read_json.duckdb"))
            rb.append(full_rebuild(root))
            rjj.append(read_json_load(root, workdir / "read_json.duckdb", "JSON"))
        out["read_json_typed_s"] = {"min": round(min(rj), 3), "median": round(med(rj), 3)}
        out["full_rebuild_cli_s"] = {"min": round(min(rb), 3), "median": round(med(rb), 3)}
        out["read_json_data_json_s"] = {"min": round(min(rjj), 3), "median": round(med(rjj), 3)}
        out["rebuild_vs_read_json_typed"] = {
            "min": round(min(rb) / min(rj), 2),
            "median": round(med(rb) / med(rj), 2),
        }
        out["index_mb"] = round((root / "index" / "runs.duckdb").stat().st_size / 1e6, 1)
        inc = incremental(root, inc_rounds)
        out["incremental_1k_median_ms"] = round(statistics.median(inc) * 1000, 1)
        out["incremental_1k_max_ms"] = round(max(inc) * 1000, 1)
        first, one = incremental_one_cli(root, inc_rounds)
        out["incremental_1_cli_first_s"] = round(first, 3)
        out["incremental_1_cli_median_s"] = round(med(one), 3)
        out["incremental_1_cli_vs_full_rebuild"] = round(med(one) / med(rb), 3)
        waits = wait_indexed_with_daemon(root, 2 * inc_rounds)
        out["wait_indexed_1_daemon_median_ms"] = round(med(waits) * 1000, 1)
        out["wait_indexed_1_daemon_max_ms"] = round(max(waits) * 1000, 1)
    if rss_events:
        out["rss"] = rss_of_rebuild(rss_events, workdir)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--incremental-rounds", type=int, default=5)
    ap.add_argument("--rss-events", type=int, default=0, help="e.g. 10000000")
    ap.add_argument("--workdir", default=None, help="keep generated ledgers here (reused)")
    a = ap.parse_args(argv)
    tmp = None
    if a.workdir is None:
        tmp = tempfile.mkdtemp(prefix="ledgerx-bench-")
    workdir = Path(a.workdir or tmp)  # type: ignore[arg-type]
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(json.dumps(run(a.events, a.repeat, a.incremental_rounds, a.rss_events, workdir)))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def test_bench_rebuild(tmp_path: Path) -> None:
    """`pytest benches/bench_rebuild.py -s`: sizes from LEDGERX_BENCH_EVENTS /
    LEDGERX_BENCH_RSS_EVENTS (default 1M each)."""
    n = int(os.environ.get("LEDGERX_BENCH_EVENTS", "1000000"))
    rss_n = int(os.environ.get("LEDGERX_BENCH_RSS_EVENTS", "1000000"))
    res = run(n, 2, 5, rss_n, tmp_path)
    print(json.dumps(res))
    assert res["rss"]["peak_rss_mib"] < 1024


if __name__ == "__main__":
    main()

"""ledgerx against its peers, side by side in one run (README "Benchmarks", issue 15).

    make bench-peers                 # quick sizes (a few minutes); PEERS_MODE=full for the full run
    .venv/bin/python benches/peers/run_peers.py --mode quick --reps 3 [--json out.json]

Every measurement runs each tool in a fresh process (`workers.py`, in the tool's own venv:
`.venv-peers` for Optuna and eventsourcing, `.venv-mlflow` for MLflow, made by the Makefile
from the pinned requirements files), interleaved tool after tool, `--reps` times; the table
shows the median over repetitions of each run's p50 and p99 and the ratio ledgerx / peer
(below 1: ledgerx takes less time). What each tool syncs is counted with
`strace -f -c -e trace=fsync,fdatasync` on a short run of each durable writer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PY = {
    "main": Path(sys.executable),
    "peers": REPO / ".venv-peers" / "bin" / "python",
    "mlflow": REPO / ".venv-mlflow" / "bin" / "python",
}
VENV = {"optuna": "peers", "eventsourcing": "peers", "mlflow": "peers"}

# (suite, tool, n quick, n full). Durable: every write synced before it returns.
DURABLE = [
    ("ledgerx_fsync", 300, 2000),
    ("sqlite_full", 300, 2000),
    ("raw_fsync", 300, 2000),
    ("duckdb_insert", 100, 500),
    ("optuna_journal_op", 200, 1000),
    ("optuna_journal_add_trial", 100, 500),
    ("optuna_journal_ask_tell", 40, 200),
    ("eventsourcing_sqlite", 100, 500),
    ("mlflow_file", 50, 300),
    ("mlflow_sqlite", 30, 200),
]
FAST = [
    ("ledgerx_group", 20000, 200000),
    ("ledgerx_os", 20000, 100000),
    ("sqlite_normal", 5000, 50000),
    ("duckdb_batch", 20000, 200000),
    ("optuna_memory_ask_tell", 300, 2000),
]
FOUR = [
    ("ledgerx_fsync", 200, 1000),
    ("sqlite_full", 200, 1000),
    ("raw_fsync", 200, 1000),
    ("optuna_journal_op", 100, 500),
]
READBACK = {"quick": 20000, "full": 100000}
OPTUNA_READBACK = {"quick": 2000, "full": 10000}


def python_for(tool: str) -> Path:
    prefix = tool.split("_")[0]
    venv = "mlflow" if prefix == "mlflow" else VENV.get(prefix, "main")
    return PY[venv]


def worker(tool: str, n: int, d: Path, barrier: Path | None = None) -> list[str]:
    cmd = [str(python_for(tool)), str(HERE / "workers.py"), tool, str(n), str(d)]
    return cmd + ([str(barrier)] if barrier else [])


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def run_worker(tool: str, n: int, d: Path) -> dict[str, Any]:
    p = subprocess.run(worker(tool, n, d), capture_output=True, text=True, timeout=1200)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def latency_suite(name: str, tools: list[tuple[str, int, int]], a: Any, work: Path) -> list[dict]:
    """Each tool in turn, a.reps times (interleaved); median of per-run p50/p99."""
    runs: dict[str, list[dict]] = {t: [] for t, _, _ in tools}
    for rep in range(a.reps):
        for tool, nq, nf in tools:
            d = work / f"{name}-{tool}-{rep}"
            res = run_worker(tool, nq if a.mode == "quick" else nf, d)
            shutil.rmtree(d, ignore_errors=True)
            runs[tool].append(res)
    return [summarize(name, tool, rs) for tool, rs in runs.items()]


def summarize(suite: str, tool: str, rs: list[dict]) -> dict[str, Any]:
    ok = [r for r in rs if "lat_us" in r]
    if not ok:
        return {"suite": suite, "tool": tool, "error": rs[0].get("error", "?")}
    return {
        "suite": suite,
        "tool": tool,
        "p50_us": statistics.median(pct(r["lat_us"], 50) for r in ok),
        "p99_us": statistics.median(pct(r["lat_us"], 99) for r in ok),
        "p50_runs": [round(pct(r["lat_us"], 50), 2) for r in ok],
        "n": len(ok[0]["lat_us"]),
    }


def loaded_group(a: Any, work: Path) -> list[dict]:
    """ledgerx group mode while another process spins on the second core."""
    out = []
    n = 20000 if a.mode == "quick" else 200000
    for rep in range(a.reps):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            out.append(run_worker("ledgerx_group", n, work / f"loaded-{rep}"))
        finally:
            hog.kill()
            hog.wait()
    return [summarize("loaded", "ledgerx_group + 1 busy process", out)]


def four_processes(a: Any, work: Path) -> list[dict]:
    """4 processes of one tool at once, started together; aggregate records/s."""
    res: dict[str, list[float]] = {t: [] for t, _, _ in FOUR}
    errors: dict[str, str] = {}
    for rep in range(a.reps):
        for tool, nq, nf in FOUR:
            n = nq if a.mode == "quick" else nf
            d = work / f"four-{tool}-{rep}"
            d.mkdir(parents=True)
            go = d / "go"
            ps = [
                subprocess.Popen(worker(tool, n, d, go), stdout=subprocess.PIPE, text=True)
                for _ in range(4)
            ]
            time.sleep(1.0)  # let the interpreters start; the clock starts at the barrier
            go.touch()
            busy = []
            for p in ps:
                out, _ = p.communicate(timeout=1200)
                if p.returncode != 0:
                    errors[tool] = f"exit {p.returncode}"
                    continue
                busy.append(sum(json.loads(out.strip().splitlines()[-1])["lat_us"]) / 1e6)
            if len(busy) == 4:
                res[tool].append(4 * n / max(busy))
            shutil.rmtree(d, ignore_errors=True)
    return [
        {"suite": "four", "tool": t, "rate": statistics.median(v) if v else None}
        | ({"error": errors[t]} if t in errors else {})
        for t, v in res.items()
    ]


# Each prints the call's wall seconds, then its CPU seconds (all threads: getrusage).
READ_LEDGERX = """
import resource, sys, time
import ledgerx, pandas
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t, c = time.perf_counter(), cpu()
df = ledgerx.Reader(sys.argv[1]).trials_frame()
print(time.perf_counter() - t, cpu() - c, len(df))
"""
READ_SQLITE = """
import resource, sys, time, sqlite3
import pandas
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t, c = time.perf_counter(), cpu()
con = sqlite3.connect(sys.argv[1])
df = pandas.read_sql_query("select * from trials", con)
print(time.perf_counter() - t, cpu() - c, len(df))
"""
WRITE_TRIALS = """
import sys, random, ledgerx
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
with ledgerx.open(root, durability="os") as led:
    for r in range(max(1, n // 10000)):
        rid = f"run-{r:04d}"
        with led.run(run_id=rid, run_kind="sweep", config={}, data_fingerprint="f") as run:
            for i in range(min(n, 10000)):
                run.trial(i, {"fast": i % 50, "slow": i % 200, "stop": 0.02},
                          {"sharpe": rng.random(), "pnl": rng.random(), "max_dd": rng.random()})
"""


def _timed(cmd: list[str]) -> tuple[float, float, float]:
    """(seconds the process reports for its call, seconds of the whole process, CPU seconds of
    the call)."""
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1200)
    out = p.stdout.split()
    return float(out[0]), time.perf_counter() - t, float(out[1])


def readback(a: Any, work: Path) -> list[dict]:
    """100k (full) trials into pandas: ledgerx trials_frame vs SQLite read_sql_query of the same
    flat rows, each in a fresh process; and with the rebuild (CLI, fresh process) included."""
    n = READBACK[a.mode]
    root, db = work / "rb-ledger", work / "rb.sqlite"
    subprocess.run([sys.executable, "-c", WRITE_TRIALS, str(root), str(n)], check=True)
    cli = str(Path(sys.executable).with_name("ledgerx"))
    rebuild = [cli, "rebuild", "--root", str(root), "--full-rebuild"]
    subprocess.run(rebuild, check=True, capture_output=True)
    import sqlite3

    import ledgerx

    df = ledgerx.Reader(root).trials_frame()
    con = sqlite3.connect(db)
    df.assign(ts=df["ts"].astype(str)).to_sql("trials", con, index=False)
    con.close()
    lx, sq, rb = [], [], []
    for _ in range(a.reps):
        lx.append(_timed([sys.executable, "-c", READ_LEDGERX, str(root)]))
        sq.append(_timed([sys.executable, "-c", READ_SQLITE, str(db)]))
        t = time.perf_counter()
        subprocess.run(rebuild, check=True, capture_output=True)
        rb.append(
            time.perf_counter() - t + _timed([sys.executable, "-c", READ_LEDGERX, str(root)])[0]
        )
    med = statistics.median
    out = [
        {
            "suite": "readback",
            "tool": f"ledgerx trials_frame ({n} trials)",
            "s": med(x[0] for x in lx),
            "process_s": med(x[1] for x in lx),
            "cpu_s": med(x[2] for x in lx),
        },
        {
            "suite": "readback",
            "tool": "sqlite read_sql_query",
            "s": med(x[0] for x in sq),
            "process_s": med(x[1] for x in sq),
            "cpu_s": med(x[2] for x in sq),
        },
        {"suite": "readback", "tool": "ledgerx rebuild + trials_frame", "s": med(rb)},
    ]
    m = OPTUNA_READBACK[a.mode]
    opt = []
    for _ in range(a.reps):
        r = run_worker("optuna_readback", m, work / "rb-optuna")
        opt.append(r.get("seconds"))
    ok = [x for x in opt if x is not None]
    out.append(
        {
            "suite": "readback",
            "tool": f"optuna trials_dataframe ({m} trials)",
            "s": med(ok) if ok else None,
            "per_trial_us": med(ok) / m * 1e6 if ok else None,
        }
    )
    out[0]["per_trial_us"] = out[0]["s"] / n * 1e6
    return out


def sync_counts(a: Any, work: Path) -> list[dict]:
    """fsync + fdatasync calls per write of each durable tool (strace -f -c, whole process:
    setup and warm-up writes included, so the figure per write is an upper bound)."""
    if shutil.which("strace") is None:
        return [{"suite": "syncs", "tool": "strace missing (make bench-peers installs it)"}]
    out = []
    n = 50
    for tool, _, _ in DURABLE + [("ledgerx_group", 0, 0)]:
        d = work / f"strace-{tool}"
        log = work / f"strace-{tool}.txt"
        m = 5000 if tool == "ledgerx_group" else n
        cmd = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(log)]
        p = subprocess.run(cmd + worker(tool, m, d), capture_output=True, text=True, timeout=600)
        calls = {"fsync": 0, "fdatasync": 0}
        for line in log.read_text().splitlines() if log.exists() else []:
            f = line.split()
            if f and f[-1] in calls:
                calls[f[-1]] = int(f[3])
        warm = (
            200
            if tool == "ledgerx_group"
            else (5 if "ask_tell" in tool or "mlflow" in tool or "add_trial" in tool else 20)
        )
        out.append(
            {
                "suite": "syncs",
                "tool": tool,
                **calls,
                "writes": m + warm,
                "per_write": round(sum(calls.values()) / (m + warm), 2),
                "ok": p.returncode == 0,
            }
        )
        shutil.rmtree(d, ignore_errors=True)
    return out


def prealloc(a: Any, work: Path) -> list[dict]:
    """The lever of issue 15 target 4, measured only (the writer is unchanged): 344-byte
    write + fdatasync into a growing file vs into a file preallocated by fallocate vs into one
    zero-filled and synced beforehand; interleaved op by op."""
    n = 300 if a.mode == "quick" else 2000
    line = b"x" * 343 + b"\n"
    size = (n + 10) * len(line)
    fds = {}
    for kind in ("growing", "fallocate", "zero-filled"):
        fd = os.open(work / f"pre-{kind}", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        if kind == "fallocate":
            os.posix_fallocate(fd, 0, size)
        elif kind == "zero-filled":
            os.write(fd, b"\0" * size)
            os.fsync(fd)
        fds[kind] = fd
    lat: dict[str, list[float]] = {k: [] for k in fds}
    for i in range(n):
        for kind, fd in fds.items():
            t = time.perf_counter_ns()
            if kind == "growing":
                os.write(fd, line)
            else:
                os.pwrite(fd, line, i * len(line))
            os.fdatasync(fd)
            lat[kind].append((time.perf_counter_ns() - t) / 1000)
    for fd in fds.values():
        os.close(fd)
    return [
        {
            "suite": "prealloc",
            "tool": f"write+fdatasync, {k} file",
            "p50_us": pct(v, 50),
            "p99_us": pct(v, 99),
            "n": n,
        }
        for k, v in lat.items()
    ]


def table(rows: list[dict]) -> str:
    ref: dict[str, dict] = {}  # the first ledgerx row of each suite is its reference
    for r in rows:
        if r.get("tool", "").startswith("ledgerx") and "p50_us" in r:
            ref.setdefault(r["suite"], r)
    lines = [
        f"{'suite':<9} {'tool':<34} {'p50 us':>10} {'p99 us':>10} {'ledgerx/peer p50':>17}"
        f" {'ledgerx/peer p99':>17}  other"
    ]
    for r in rows:
        p50, p99 = r.get("p50_us"), r.get("p99_us")
        base = ref.get(r["suite"])
        r50 = f"{base['p50_us'] / p50:.3f}" if base and p50 else ""
        r99 = f"{base['p99_us'] / p99:.3f}" if base and p99 else ""
        other = {k: v for k, v in r.items() if k not in ("suite", "tool", "p50_us", "p99_us")}
        lines.append(
            f"{r['suite']:<9} {r['tool'][:34]:<34} "
            f"{'' if p50 is None else f'{p50:.2f}':>10} "
            f"{'' if p99 is None else f'{p99:.2f}':>10} {r50:>17} {r99:>17}  "
            f"{json.dumps(other)[:160]}"
        )
    return "\n".join(lines)


def ratios(rows: list[dict]) -> list[str]:
    """The issue's targets as ratios from this run."""
    get = {(r["suite"], r["tool"]): r for r in rows}
    out = []

    def f(s: str, t: str, k: str) -> float | None:
        return (get.get((s, t)) or {}).get(k)

    lx, sq = f("durable", "ledgerx_fsync", "p50_us"), f("durable", "sqlite_full", "p50_us")
    if lx and sq:
        out.append(f"fsync p50 / SQLite WAL FULL p50 = {lx / sq:.2f} (target <= 0.75)")
    l4, s4 = f("four", "ledgerx_fsync", "rate"), f("four", "sqlite_full", "rate")
    if l4 and s4:
        out.append(f"4 processes durable: ledgerx / SQLite rate = {l4 / s4:.2f} (target >= 3)")
        r4 = f("four", "raw_fsync", "rate")
        if r4:
            out.append(
                f"  ceiling: raw pwrite+fdatasync / SQLite = {r4 / s4:.2f}, "
                f"ledgerx / raw = {l4 / r4:.2f}"
            )
    g = get.get(("loaded", "ledgerx_group + 1 busy process"))
    if g and "p50_us" in g:
        out.append(
            f"group mode under load: p50 {g['p50_us']:.2f} us (target <= 1), "
            f"p99 {g['p99_us']:.2f} us (target <= 10)"
        )
    rb = [r for r in rows if r["suite"] == "readback"]
    if len(rb) >= 3 and rb[0].get("s") and rb[1].get("s"):
        out.append(
            f"read-back: trials_frame / read_sql_query = {rb[0]['s'] / rb[1]['s']:.2f} "
            f"(target <= 1.0; CPU {rb[0]['cpu_s'] / rb[1]['cpu_s']:.2f}); "
            f"rebuild included {rb[2]['s'] / rb[1]['s']:.2f} (<= 1.5)"
        )
    return out


SUITES = {
    "durable": None,
    "fast": None,
    "loaded": loaded_group,
    "four": four_processes,
    "readback": readback,
    "syncs": sync_counts,
    "prealloc": prealloc,
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--mode", choices=["quick", "full"], default=os.environ.get("PEERS_MODE", "quick")
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--workdir", default=None, help="on the disk to measure (default: a temp dir)")
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ledgerx-peers-", dir=a.workdir))
    rows: list[dict] = []
    try:
        for name in a.only.split(","):
            t = time.perf_counter()
            if name == "durable":
                rows += latency_suite("durable", DURABLE, a, work)
            elif name == "fast":
                rows += latency_suite("fast", FAST, a, work)
            else:
                rows += SUITES[name](a, work)
            print(f"[{name}: {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
            if a.json:  # after each suite, so a cut-short run keeps what it measured
                Path(a.json).write_text(json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"ledgerx peers, mode {a.mode}, {a.reps} repetitions, cpu count {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(table(rows))
    for line in ratios(rows):
        print(line)


if __name__ == "__main__":
    main()

"""emit() latency and throughput in each durability mode, against baselines measured in the
same run on the same disk (README "Benchmarks"): raw os.write, orjson.dumps + os.write with a
uuid4 and timestamp, raw write + fdatasync, logging.FileHandler.

    make bench            # or: .venv/bin/pytest benches/bench_emit.py -s
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

import ledgerx

from conftest import find, record, sample

N = int(os.environ.get("LEDGERX_BENCH_N", "200000"))
N_FSYNC = int(os.environ.get("LEDGERX_BENCH_N_FSYNC", "2000"))

# A `trial.recorded` event of about 300 bytes once enveloped.
DATA = {
    "trial_id": 1234,
    "params": {"fast": 12, "slow": 48, "stop": 0.02},
    "metrics": {"sharpe": 1.2345, "pnl": 0.0567, "max_dd": 0.1234},
}


def _line() -> bytes:
    return (
        orjson.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "event_type": "trial.recorded",
                "schema_version": 1,
                "ts": dt.datetime.now(dt.timezone.utc).isoformat(),
                "run_id": "bench-run-000001",
                "writer": "w-0123456789abcdef",
                "seq": 1,
                "data": DATA,
                "crc": "00000000",
            }
        )
        + b"\n"
    )


def test_line_size(bench_dir: Path) -> None:
    with ledgerx.open(bench_dir, durability="os") as ledger:
        file, _ = ledger.emit("trial.recorded", DATA, run_id="bench-run-000001")
    size = (Path(bench_dir) / "events" / file).stat().st_size
    record("emit", "event line bytes (trial.recorded)", {}, note=f"{size} B")
    assert 250 <= size <= 350


def test_baseline_raw_write(bench_dir: Path, benchmark: Any) -> None:
    fd = os.open(Path(bench_dir) / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    line = _line()
    s = sample(lambda: os.write(fd, line), N)
    record("baseline", "raw os.write 300 B", s)
    benchmark.pedantic(os.write, args=(fd, line), rounds=1000, iterations=10)
    os.close(fd)


def test_baseline_orjson_write(bench_dir: Path, benchmark: Any) -> None:
    fd = os.open(Path(bench_dir) / "orjson.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def op() -> None:
        os.write(fd, _line())

    s = sample(op, N)
    record("baseline", "orjson.dumps + os.write (uuid4, timestamp)", s)
    benchmark.pedantic(op, rounds=1000, iterations=10)
    os.close(fd)


def test_baseline_write_fdatasync(bench_dir: Path, benchmark: Any) -> None:
    fd = os.open(Path(bench_dir) / "sync.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    line = _line()

    def op() -> None:
        os.write(fd, line)
        os.fdatasync(fd)

    s = sample(op, N_FSYNC, warmup=50)
    record("baseline", "raw os.write + fdatasync", s)
    benchmark.pedantic(op, rounds=200, iterations=1)
    os.close(fd)


def test_baseline_logging_filehandler(bench_dir: Path, benchmark: Any) -> None:
    log = logging.getLogger("ledgerx.bench")
    log.propagate = False
    h = logging.FileHandler(Path(bench_dir) / "log.txt")
    log.addHandler(h)
    log.setLevel(logging.INFO)
    msg = _line().decode()
    s = sample(lambda: log.info(msg), N // 4)
    record("baseline", "logging.FileHandler.info (300 B)", s)
    benchmark.pedantic(log.info, args=(msg,), rounds=1000, iterations=10)
    log.removeHandler(h)
    h.close()


def test_emit_group(bench_dir: Path, benchmark: Any) -> None:
    ledger = ledgerx.open(bench_dir, durability="group")
    emit = ledger.emit
    s = sample(lambda: emit("trial.recorded", DATA, run_id="bench-run-000001"), N)
    ledger.flush()
    orj = find("baseline", "orjson.dumps + os.write (uuid4, timestamp)")
    ratio = s["p50_us"] / orj["p50_us"] if orj else float("nan")
    ok = s["p50_us"] <= 2 and s["p99_us"] <= 10 and ratio <= 0.5
    record(
        "emit",
        "emit() group, validated",
        s,
        note=f"{ratio:.2f}x orjson p50 {'OK' if ok else 'MISS'}",
    )
    benchmark.pedantic(
        emit, args=("trial.recorded", DATA), kwargs={"run_id": "r"}, rounds=1000, iterations=10
    )
    ledger.close()


def test_emit_os(bench_dir: Path, benchmark: Any) -> None:
    ledger = ledgerx.open(bench_dir, durability="os")
    emit = ledger.emit
    s = sample(lambda: emit("trial.recorded", DATA, run_id="bench-run-000001"), N // 2)
    raw = find("baseline", "raw os.write 300 B")
    ratio = s["p50_us"] / raw["p50_us"] if raw else float("nan")
    record("emit", "emit() os (write, no fsync)", s, note=f"{ratio:.2f}x raw write p50")
    benchmark.pedantic(
        emit, args=("trial.recorded", DATA), kwargs={"run_id": "r"}, rounds=1000, iterations=10
    )
    ledger.close()


def test_emit_fsync(bench_dir: Path, benchmark: Any) -> None:
    ledger = ledgerx.open(bench_dir, durability="fsync")
    emit = ledger.emit
    s = sample(lambda: emit("trial.recorded", DATA, run_id="bench-run-000001"), N_FSYNC, warmup=50)
    base = find("baseline", "raw os.write + fdatasync")
    ratio = s["p99_us"] / base["p99_us"] if base else float("nan")
    record(
        "emit",
        "emit() fsync",
        s,
        note=f"p99 {ratio:.2f}x raw write+fdatasync {'OK' if ratio <= 1.2 else 'MISS'}",
    )
    benchmark.pedantic(
        emit, args=("trial.recorded", DATA), kwargs={"run_id": "r"}, rounds=200, iterations=1
    )
    ledger.close()


def test_group_sustained_throughput(bench_dir: Path, benchmark: Any) -> None:
    n = max(N * 5, 1_000_000)
    ledger = ledgerx.open(bench_dir, durability="group")
    emit = ledger.emit

    def flood() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            emit("trial.recorded", DATA, run_id="bench-run-000001")
        ledger.flush()
        return n / (time.perf_counter() - t0)

    rate = benchmark.pedantic(flood, rounds=1, iterations=1)
    st = ledger.commit_stats()
    ledger.close()
    ok = rate >= 500_000 and st["max_latency_us"] <= 5000
    record(
        "emit",
        f"group sustained, {n} events, one thread",
        {},
        note=f"{rate / 1e3:.0f}k ev/s, max durable lag {st['max_latency_us'] / 1000:.1f} ms "
        f"{'OK' if ok else 'MISS'}",
    )


PROC = """
import sys, time, ledgerx
root, n = sys.argv[1], int(sys.argv[2])
data = {"trial_id": 1, "params": {"fast": 12, "slow": 48, "stop": 0.02},
        "metrics": {"sharpe": 1.2345, "pnl": 0.0567, "max_dd": 0.1234}}
led = ledgerx.open(root, durability="group")
emit = led.emit
sys.stdin.readline()
t0 = time.perf_counter()
for i in range(n):
    emit("trial.recorded", data, run_id="p")
t1 = time.perf_counter()
led.close()
print(t0, t1, time.perf_counter())
"""


def _procs(root: Path, k: int, n: int) -> tuple[float, float]:
    """k processes emitting n events each; returns (events/s while emitting, events/s until
    every event is durable)."""
    ps = [
        subprocess.Popen(
            [sys.executable, "-c", PROC, str(root), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(k)
    ]
    time.sleep(1.0)  # let every interpreter start before the clock runs
    for p in ps:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    spans = []
    for p in ps:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0
        spans.append([float(x) for x in out.split()])
    start = min(s[0] for s in spans)
    emitting = max(s[1] for s in spans) - start
    durable = max(s[2] for s in spans) - start
    return k * n / emitting, k * n / durable


def test_two_processes_scale(bench_dir: Path, benchmark: Any) -> None:
    n = 500_000
    one = _procs(Path(bench_dir) / "one", 1, n)
    two = benchmark.pedantic(lambda: _procs(Path(bench_dir) / "two", 2, n), rounds=1, iterations=1)
    from logcheck_bench import count_events

    assert count_events(Path(bench_dir) / "two") == 2 * n, "nothing lost"
    ratio = two[0] / one[0]
    record(
        "emit",
        "2 processes at once vs 1 (group), emitting",
        {},
        note=f"{ratio:.2f}x ({two[0] / 1e3:.0f}k vs {one[0] / 1e3:.0f}k ev/s) "
        f"{'OK' if ratio >= 1.6 else 'MISS'}",
    )
    record(
        "emit",
        "2 processes at once vs 1 (group), until durable",
        {},
        note=f"{two[1] / one[1]:.2f}x ({two[1] / 1e3:.0f}k vs {one[1] / 1e3:.0f}k ev/s)",
    )


def test_group_durability_lag_at_fixed_rates(bench_dir: Path) -> None:
    """How late an event becomes durable in group mode, at steady emit rates: the bound is the
    disk's fdatasync time for one batch, so it is reported per rate."""
    for rate in (10_000, 50_000, 200_000):
        ledger = ledgerx.open(Path(bench_dir) / f"rate{rate}", durability="group")
        emit = ledger.emit
        per_tick = rate // 1000
        t0 = time.perf_counter()
        for tick in range(2000):  # 2 s in 1 ms ticks
            for _ in range(per_tick):
                emit("trial.recorded", DATA, run_id="bench-run-000001")
            delay = t0 + (tick + 1) / 1000 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        ledger.flush()
        st = ledger.commit_stats()
        ledger.close()
        hist = st["latency_log2_us"]
        total = sum(hist)
        # p99 upper bound from the log2 histogram of batch latencies.
        acc, p99 = 0, 0
        for i, n in enumerate(hist):
            acc += n
            if acc >= 0.99 * total:
                p99 = 2 ** (i + 1)
                break
        record(
            "emit",
            f"group durable lag at {rate // 1000}k ev/s",
            {},
            note=f"p99 < {p99 / 1000:.1f} ms, max {st['max_latency_us'] / 1000:.1f} ms "
            f"{'OK' if st['max_latency_us'] <= 5000 else 'over 5 ms'}",
        )

"""Shared bench helpers: per-call latency sampling (p50/p99 with the timer's own cost taken
out) and one summary table printed at the end of the session, with ratios to baselines
measured in the same run."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

RESULTS: list[dict[str, Any]] = []


def percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    k = min(len(sorted_ns) - 1, max(0, round(q / 100 * (len(sorted_ns) - 1))))
    return float(sorted_ns[k])


def _timer_overhead_ns(n: int = 20000) -> float:
    t = time.perf_counter_ns
    out = []
    for _ in range(n):
        a = t()
        out.append(t() - a)
    out.sort()
    return percentile(out, 50)


def sample(fn: Callable[[], object], n: int, warmup: int = 1000) -> dict[str, float]:
    """Time `fn` call by call; returns p50/p99/mean in microseconds."""
    for _ in range(warmup):
        fn()
    t = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        a = t()
        fn()
        out[i] = t() - a
    over = _timer_overhead_ns()
    out = sorted(max(0, x - over) for x in out)
    return {
        "p50_us": percentile(out, 50) / 1000,
        "p99_us": percentile(out, 99) / 1000,
        "mean_us": sum(out) / len(out) / 1000,
        "n": n,
    }


def record(suite: str, name: str, stats: dict[str, float], **extra: Any) -> None:
    RESULTS.append({"suite": suite, "name": name, **stats, **extra})


def find(suite: str, name: str) -> dict[str, Any] | None:
    for r in RESULTS:
        if r["suite"] == suite and r["name"] == name:
            return r
    return None


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    w = terminalreporter.write_line
    w("")
    w(f"ledgerx benchmarks (cpu count {os.cpu_count()}; ratios against baselines of this run)")
    w(f"{'suite':<10} {'what':<52} {'p50 µs':>9} {'p99 µs':>9} {'other':>28}")
    for r in RESULTS:
        other = r.get("note", "")
        p50 = f"{r['p50_us']:.3f}" if "p50_us" in r else ""
        p99 = f"{r['p99_us']:.3f}" if "p99_us" in r else ""
        w(f"{r['suite']:<10} {r['name']:<52} {p50:>9} {p99:>9} {other:>28}")


@pytest.fixture
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Benchmarks write to the repo's disk (not tmpfs) so fsync costs are real.
    base = os.environ.get("LEDGERX_BENCH_DIR")
    if base:
        os.makedirs(base, exist_ok=True)
        import tempfile

        return tempfile.mkdtemp(dir=base)
    return tmp_path_factory.mktemp("bench")

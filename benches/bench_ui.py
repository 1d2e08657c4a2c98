"""Dashboard benchmarks: server time of the pages on a large index, ratios to the plain Reader
query for the same data measured in the same run.

    .venv/bin/python benches/bench_ui.py --runs 10000 --trials 100000   # + page-ready in chromium
    .venv/bin/pytest benches/bench_ui.py -s

1. the runs page (`/`, first 500 rows, with the filter lists) and `/api/runs` over N runs, vs
   `Reader.latest_runs().fetchall()` (every run, no HTML);
2. the run page of a run with M trials (charts downsampled to 1500 points, table of 200), as on
   a first visit (the per-index cache emptied) and re-sorted (the chart data cached), vs
   `Reader.trials(run).fetchall()` (every trial, no charts);
3. with chromium (unless `--no-browser`): time until `document.body.dataset.ready == "1"` for
   that run page in headless chromium, the first visit (fresh server and browser, empty cache)
   apart from warm loads (plotly.js cached), each split into html received / plotly.js ready /
   charts drawn from the page's performance marks; then the runs page.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from ledgerx import _core
from ledgerx.index import build_index
from ledgerx.reader import Reader
from ledgerx.ui.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def write_ledger(root: Path, runs: int, trials: int) -> None:
    """`runs` small completed runs and one run `big` with `trials` trials (real writer)."""
    w = _core.Writer(str(root), durability="os")
    for r in range(runs):
        rid = f"run-{r:06d}"
        w.emit("run.created", {"run_kind": "sweep" if r % 3 else "backtest",
               "config": {"r": r}, "data_fingerprint": f"fp{r % 7}",
               "tags": {"team": f"t{r % 5}"}}, run_id=rid)  # fmt: skip
        w.emit("run.started", {"host": "bench", "pid": 1}, run_id=rid)
        for t in range(3):
            w.emit("trial.recorded", {"trial_id": t, "params": {"a": t},
                   "metrics": {"pnl": (r * 7 + t) % 11 / 10}}, run_id=rid)  # fmt: skip
        w.emit("run.completed", {"summary": {"best_pnl": r % 11 / 10}, "artifact_paths": []},
               run_id=rid)  # fmt: skip
    rid = "big"
    w.emit("run.created", {"run_kind": "sweep", "config": {}, "data_fingerprint": "fp"}, run_id=rid)
    w.emit("run.started", {"host": "bench", "pid": 1}, run_id=rid)
    for t in range(trials):
        w.emit("trial.recorded", {"trial_id": t, "params": {"fast": t % 50, "slow": t % 200},
               "metrics": {"pnl": ((t * 7919) % 1000) / 1000 - 0.5, "dd": (t % 97) / 97}},
               run_id=rid)  # fmt: skip
    w.emit("run.completed", {"summary": {}, "artifact_paths": []}, run_id=rid)
    w.close()


def timed(fn, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    out.sort()
    return {
        "p50_ms": out[len(out) // 2] * 1000,
        "p99_ms": out[min(len(out) - 1, int(len(out) * 0.99))] * 1000,
    }


# Where a load's time went, from the page's own clocks (ms since navigation start): the HTML
# fully received, plotly.js ready and drawing started (mark `ledgerx-draw`), charts drawn.
_PHASES = """
const n = performance.getEntriesByType('navigation')[0];
const m = Object.fromEntries(performance.getEntriesByType('mark').map(e => [e.name, e.startTime]));
return [n.responseEnd, m['ledgerx-draw'], m['ledgerx-ready']];
"""


def page_loads(root: Path, path: str, n: int) -> list[tuple[float, list[float]]]:
    """Load `path` n times in one fresh headless chromium against a freshly started server:
    [(ms until ready, [html received, drawing starts, ready])]. The first load is a first
    visit (empty cache: plotly.js fetched and compiled, server just started); the browser is
    started on about:blank first, so its own start-up is not counted."""
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    srv = subprocess.Popen([sys.executable, "-m", "ledgerx", "ui", "--root", str(root),
                            "--port", "0"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert srv.stdout is not None
        base = re.search(r"on (http://\S+)/ ", srv.stdout.readline()).group(1)  # type: ignore[union-attr]
        opts = webdriver.ChromeOptions()
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            opts.add_argument(a)
        d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
        out = []
        try:
            d.get("about:blank")
            for _ in range(n):
                t = time.perf_counter()
                d.get(base + path)
                while d.execute_script("return document.body.dataset.ready") != "1":
                    time.sleep(0.01)
                out.append(((time.perf_counter() - t) * 1000, d.execute_script(_PHASES)))
        finally:
            d.quit()
        return out
    finally:
        srv.terminate()
        srv.wait()


def load_lines(loads: list[tuple[float, list[float]]], path: str) -> list[str]:
    (first, fp), warm = loads[0], sorted(loads[1:])
    lines = [
        f"page ready in chromium, {path}, first visit: {first:.0f} ms (html {fp[0]:.0f}, "
        f"plotly ready {fp[1]:.0f}, drawn {fp[2]:.0f} ms after navigation start)"
    ]
    if warm:
        p50 = warm[len(warm) // 2]
        lines.append(
            f"page ready in chromium, {path}, warm (plotly.js cached): p50 {p50[0]:.0f} ms, "
            f"max {warm[-1][0]:.0f} ms ({len(warm)} loads; p50 load: html {p50[1][0]:.0f}, "
            f"plotly ready {p50[1][1]:.0f}, drawn {p50[1][2]:.0f})"
        )
    return lines


def run(runs: int, trials: int, n: int, browser: bool) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory(prefix="ledgerx-bench-ui-") as tmp:
        root = Path(tmp) / "ledger"
        t = time.perf_counter()
        write_ledger(root, runs, trials)
        build_index(root)
        lines.append(f"setup: {runs} runs + 1 run of {trials} trials written and indexed in "
                     f"{time.perf_counter() - t:.1f} s")  # fmt: skip
        reader = Reader(root)
        app = create_app(root)
        c = TestClient(app, base_url="http://127.0.0.1")

        def first_view(path: str) -> object:
            app.state.index._cache.clear()  # as on the first visit after a publish
            return c.get(path)

        def resorted(path: str) -> object:
            cache = app.state.index._cache  # the chart data stays, the table is recomputed
            for k in [k for k in cache if k[1] == "table"]:
                del cache[k]
            return c.get(path)

        cases = [
            ("runs page /", lambda: c.get("/")),
            ("/api/runs (500)", lambda: c.get("/api/runs")),
            ("baseline Reader.latest_runs()", lambda: reader.latest_runs().fetchall()),
            ("run page /runs/big", lambda: first_view("/runs/big")),
            ("/api/runs/big", lambda: first_view("/api/runs/big")),
            ("run page re-sorted (charts cached)", lambda: resorted("/runs/big?tsort=param:fast")),
            ("baseline Reader.trials('big')", lambda: reader.trials("big").fetchall()),
        ]
        res = {}
        for name, fn in cases:
            res[name] = timed(fn, n)
            r = res[name]
            lines.append(f"{name:<34} p50 {r['p50_ms']:8.1f} ms  p99 {r['p99_ms']:8.1f} ms")
        for page, base in (("runs page /", "baseline Reader.latest_runs()"),
                           ("run page /runs/big", "baseline Reader.trials('big')")):  # fmt: skip
            lines.append(f"ratio {page} / {base}: {res[page]['p50_ms'] / res[base]['p50_ms']:.2f}")
        size = len(c.get("/runs/big").content)
        lines.append(f"run page of {trials} trials: {size / 1e6:.2f} MB of HTML+JSON")
        reader.close()
        if browser:
            # each round: a fresh server and a fresh browser, one first visit then warm loads
            firsts = []
            for _ in range(max(3, n // 3)):
                loads = page_loads(root, "/runs/big", 5)
                firsts.append(loads[0][0])
                lines += load_lines(loads, "/runs/big")
            firsts.sort()
            p50 = firsts[len(firsts) // 2]
            lines.append(f"first visits: p50 {p50:.0f} ms, max {firsts[-1]:.0f} ms "
                         f"({len(firsts)} rounds of a fresh server and browser)")  # fmt: skip
            lines += load_lines(page_loads(root, "/", 3), "/ (runs page)")
    return lines


def test_bench_ui() -> None:
    for line in run(10_000, 100_000, 10, browser=os.path.exists("/usr/bin/chromedriver")):
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()
    for line in run(a.runs, a.trials, a.repeat, browser=not a.no_browser):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

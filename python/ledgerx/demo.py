"""`make demo`: a small parameter sweep run by several worker processes into ./data/ledger,
then the index is rebuilt and the runs are listed (the main job, on an embedded default)."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import ledgerx

WORKERS = 4
RUNS_PER_WORKER = 3
TRIALS_PER_RUN = 40


def prices(seed: int, n: int = 500) -> list[float]:
    rng = random.Random(seed)
    p, out = 100.0, []
    for _ in range(n):
        p *= math.exp(rng.gauss(0.0002, 0.01))
        out.append(p)
    return out


def backtest(px: list[float], fast: int, slow: int) -> dict[str, float]:
    """A toy moving-average crossover: enough to produce real metrics."""
    pnl, pos, trades, peak, dd = 0.0, 0, 0, 0.0, 0.0
    for i in range(slow, len(px)):
        f = sum(px[i - fast : i]) / fast
        s = sum(px[i - slow : i]) / slow
        want = 1 if f > s else 0
        if want != pos:
            trades += 1
            pos = want
        pnl += pos * (px[i] / px[i - 1] - 1)
        peak = max(peak, pnl)
        dd = max(dd, peak - pnl)
    return {"pnl": round(pnl, 6), "max_drawdown": round(dd, 6), "trades": float(trades)}


def worker(root: str, worker_no: int, stamp: str) -> None:
    ledger = ledgerx.open(root)
    for r in range(RUNS_PER_WORKER):
        seed = worker_no * 100 + r
        config = {"strategy": "ma_cross", "seed": seed, "grid": {"fast": [2, 20], "slow": [30, 90]}}
        run_id = f"demo-{stamp}-w{worker_no}-r{r}"  # unique per `make demo`
        try:
            with ledger.run(
                run_id=run_id,
                run_kind="sweep",
                config=config,
                data_fingerprint=f"synthetic-{seed}",
                tags={"worker": worker_no},
            ) as run:
                with run.phase("load") as phase:
                    px = prices(seed)
                    phase.output_summary = {"bars": len(px)}
                best = None
                with run.phase("search") as phase:
                    rng = random.Random(seed)
                    for t in range(TRIALS_PER_RUN):
                        params = {"fast": rng.randint(2, 20), "slow": rng.randint(30, 90)}
                        metrics = backtest(px, **params)
                        run.trial(trial_id=t, params=params, metrics=metrics)
                        if best is None or metrics["pnl"] > best[1]["pnl"]:
                            best = (params, metrics)
                    phase.output_summary = {"trials": TRIALS_PER_RUN}
                run.baseline("buy_and_hold", {"pnl": round(px[-1] / px[0] - 1, 6)})
                assert best is not None
                run.summary.update({"best_params": best[0], "best_pnl": best[1]["pnl"]})
                if worker_no == WORKERS - 1 and r == RUNS_PER_WORKER - 1:
                    raise RuntimeError("simulated data vendor outage")
        except RuntimeError:
            pass  # recorded as run.failed by the context manager
    ledger.close()


def node_worker(root: Path, stamp: str) -> subprocess.Popen[bytes] | None:
    """The Node emitter's worker (node/examples/demo_worker.js), when `make node` built it."""
    node_dir = Path(__file__).resolve().parents[2] / "node"
    script = node_dir / "examples" / "demo_worker.js"
    node = shutil.which("node")
    if node is None or not script.exists() or not any(node_dir.glob("ledgerx.*.node")):
        return None
    return subprocess.Popen([node, str(script), str(root), stamp])


def main() -> int:
    root = Path(os.environ.get("LEDGERX_ROOT") or "data/ledger").absolute()
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    stamp = time.strftime("%H%M%S", time.gmtime())
    procs = [ctx.Process(target=worker, args=(str(root), w, stamp)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    node = node_worker(root, stamp)
    if node is not None and node.wait() != 0:
        print(f"demo: node worker exited with {node.returncode}", file=sys.stderr)
        return 1
    for p in procs:
        p.join()
        if p.exitcode != 0:
            print(f"demo: worker exited with {p.exitcode}", file=sys.stderr)
            return 1
    # Per run: created, started, 2 phases x (started, completed), the trials, a baseline, and
    # completed (or failed).
    n_events = WORKERS * RUNS_PER_WORKER * (TRIALS_PER_RUN + 8)
    print(
        f"demo: {WORKERS} workers wrote {n_events} events to {root} "
        f"in {time.perf_counter() - t0:.2f}s"
    )
    from ledgerx.cli import COMMAND_NAMES
    from ledgerx.cli import main as cli

    if "rebuild" in COMMAND_NAMES():
        code = cli(["rebuild", "--root", str(root)]) or cli(["runs", "--root", str(root)])
    else:
        code = cli(["tail", "--root", str(root), "-n", "15"])
    print(f"demo: done in {time.perf_counter() - t0:.2f}s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())

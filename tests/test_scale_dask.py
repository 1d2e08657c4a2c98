"""Sweeps on Dask (docs/scale.md): a LocalCluster of 2 worker processes on 127.0.0.1 records 400
trials through LedgerPlugin; one worker is SIGKILLed mid-sweep. Every trial is in
`trial_results` exactly once, and every line of the log is valid (independent checker)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

import ledgerx  # noqa: E402
from ledgerx.index import build_index  # noqa: E402

from logcheck import check_log  # noqa: E402

N = 400


def objective(i: int, run_id: str) -> float:
    import ledgerx.dask

    sharpe = (i * 37 % 101) / 100
    ledgerx.dask.record_trial(run_id, i, {"fast": i % 7, "slow": i % 13}, {"sharpe": sharpe})
    time.sleep(0.03)  # the result is not back yet: a kill here makes the scheduler rerun it
    return sharpe


@pytest.mark.heavy
def test_sweep_survives_a_sigkilled_worker(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster, as_completed

    from ledgerx.dask import LedgerPlugin

    root = tmp_path / "ledger"
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(LedgerPlugin(root))
        with ledgerx.open(root).run(
            run_kind="sweep", config={"n": N}, data_fingerprint="fp"
        ) as run:
            futures = client.map(objective, range(N), run_id=run.run_id, pure=False)
            pids = client.run(os.getpid)
            victim = sorted(pids.values())[0]
            done = 0
            for _ in as_completed(futures):
                done += 1
                if done == N // 4:
                    os.kill(victim, signal.SIGKILL)
            results = client.gather(futures)
            run_id = run.run_id
        assert victim not in client.run(os.getpid).values()  # the nanny started a new one
    assert len(results) == N
    assert build_index(root).events > 0
    r = ledgerx.Reader(root)
    try:
        got = r.sql(
            "SELECT trial_id.int t, count(*) FROM trial_results "
            "WHERE run_id = ? GROUP BY t ORDER BY t",
            [run_id],
        ).fetchall()
        records = r.sql(
            "SELECT count(*) FROM events WHERE event_type = 'trial.recorded'"
        ).fetchall()[0][0]
        status = r.sql("SELECT status FROM latest_runs WHERE run_id = ?", [run_id]).fetchall()[0][0]
    finally:
        r.close()
    assert got == [(i, 1) for i in range(N)]
    assert records >= N  # a rerun task may have recorded its trial twice: events keeps both
    assert status == "completed"
    check_log(root)  # every line of every writer, the killed one included, is valid v1

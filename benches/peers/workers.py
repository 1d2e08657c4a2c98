"""One measurement of one tool, run as its own process by `run_peers.py` (which picks the venv:
`.venv` for ledgerx, SQLite and DuckDB, `.venv-peers` for Optuna and eventsourcing,
`.venv-mlflow` for MLflow). Usage: `python workers.py TOOL N DIR` prints one JSON line:
{"lat_us": [per-operation latencies]} or {"seconds": s, "rows": n}.

Every write is one trial-like record: {"trial_id", "params": 3 keys, "metrics": 3 keys}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PARAMS = {"fast": 12, "slow": 48, "stop": 0.02}
METRICS = {"sharpe": 1.2345, "pnl": 0.0567, "max_dd": 0.1234}


def _time(op: Callable[[int], object], n: int, warmup: int = 20) -> dict[str, Any]:
    for i in range(warmup):
        op(-1 - i)
    t = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        a = t()
        op(i)
        out[i] = t() - a
    return {"lat_us": [x / 1000 for x in out]}


# -- ledgerx ---------------------------------------------------------------------------------


def _ledgerx(mode: str, n: int, d: Path) -> dict[str, Any]:
    import ledgerx

    led = ledgerx.open(d, durability=mode)
    emit = led.emit

    def op(i: int) -> None:
        emit("trial.recorded", {"trial_id": i, "params": PARAMS, "metrics": METRICS}, run_id="r")

    res = _time(op, n, warmup=200 if mode != "fsync" else 20)
    led.close()
    return res


def ledgerx_fsync(n: int, d: Path) -> dict[str, Any]:
    return _ledgerx("fsync", n, d)


def ledgerx_group(n: int, d: Path) -> dict[str, Any]:
    return _ledgerx("group", n, d)


def ledgerx_os(n: int, d: Path) -> dict[str, Any]:
    return _ledgerx("os", n, d)


# -- the raw ceiling ---------------------------------------------------------------------------


def raw_fsync(n: int, d: Path) -> dict[str, Any]:
    """What any writer that makes each record durable before returning can reach on this disk:
    a ~300-byte line written with one `pwrite` into zeros already written and synced (as
    ledgerx's fsync mode keeps them ahead), then one `fdatasync`; no validation, no envelope.
    Each process writes its own file (as each ledgerx process writes its own part)."""
    fd = os.open(d / f"raw-{os.getpid()}.bin", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"\0" * (4 << 20))
    os.fsync(fd)
    rec = {"trial_id": 0, "params": PARAMS, "metrics": METRICS, "pad": "x" * 150}
    line = json.dumps(rec).encode() + b"\n"
    off = 0

    def op(i: int) -> None:
        nonlocal off
        os.pwrite(fd, line, off)
        off += len(line)
        os.fdatasync(fd)

    res = _time(op, n)
    os.close(fd)
    return res


# -- SQLite (stdlib) -------------------------------------------------------------------------


def _sqlite(sync: str, n: int, d: Path) -> dict[str, Any]:
    import sqlite3

    # timeout: writers of other processes wait on the lock (SQLite busy handler) as in real use
    con = sqlite3.connect(d / "trials.sqlite", isolation_level=None, timeout=60)
    # Four processes switching a new file to WAL at once: SQLite answers "database is locked"
    # at once (the busy handler does not cover it). Setup, before the clock: retry.
    for _ in range(500):
        try:
            con.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            time.sleep(0.01)
    con.execute(f"PRAGMA synchronous={sync}")
    con.execute("CREATE TABLE IF NOT EXISTS t (trial_id INTEGER, params TEXT, metrics TEXT)")
    p, m = json.dumps(PARAMS), json.dumps(METRICS)

    def op(i: int) -> None:  # one transaction per record, as one durable emit
        con.execute("INSERT INTO t VALUES (?, ?, ?)", (i, p, m))

    res = _time(op, n)
    con.close()
    return res


def sqlite_full(n: int, d: Path) -> dict[str, Any]:
    return _sqlite("FULL", n, d)


def sqlite_normal(n: int, d: Path) -> dict[str, Any]:
    return _sqlite("NORMAL", n, d)


# -- DuckDB ----------------------------------------------------------------------------------


def duckdb_insert(n: int, d: Path) -> dict[str, Any]:
    """One INSERT per record, autocommit (each commit writes and syncs DuckDB's WAL)."""
    import duckdb

    con = duckdb.connect(str(d / "trials.duckdb"))
    con.execute("CREATE TABLE IF NOT EXISTS t (trial_id BIGINT, params JSON, metrics JSON)")
    p, m = json.dumps(PARAMS), json.dumps(METRICS)
    res = _time(lambda i: con.execute("INSERT INTO t VALUES (?, ?, ?)", [i, p, m]), n)
    con.close()
    return res


def duckdb_batch(n: int, d: Path) -> dict[str, Any]:
    """Fast path: 1,000 records per INSERT from an Arrow table (one transaction); latency per
    record."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(d / "trials.duckdb"))
    con.execute("CREATE TABLE IF NOT EXISTS t (trial_id BIGINT, params JSON, metrics JSON)")
    p, m = json.dumps(PARAMS), json.dumps(METRICS)
    batch = pa.table({"trial_id": list(range(1000)), "params": [p] * 1000, "metrics": [m] * 1000})
    con.register("batch", batch)
    res = _time(lambda i: con.execute("INSERT INTO t SELECT * FROM batch"), max(1, n // 1000), 1)
    con.close()
    return {"lat_us": [x / 1000 for x in res["lat_us"]]}


# -- Optuna ----------------------------------------------------------------------------------


def _optuna_study(d: Path, storage: Any = None) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(d / "journal.log")))
    return optuna.create_study(storage=storage, study_name=f"s{os.getpid()}", load_if_exists=True)


def optuna_journal_op(n: int, d: Path) -> dict[str, Any]:
    """Per operation: one `append_logs` of one journal record (what each storage call does)."""
    from optuna.storages.journal import JournalFileBackend

    backend = JournalFileBackend(str(d / "journal.log"))
    rec = {"op_code": 7, "worker_id": "w", "trial_id": 0, "param_name": "fast", "value": 1}
    return _time(lambda i: backend.append_logs([rec]), n)


def optuna_journal_add_trial(n: int, d: Path) -> dict[str, Any]:
    import optuna

    study = _optuna_study(d)
    dist = {k: optuna.distributions.FloatDistribution(0, 100) for k in PARAMS}

    def op(i: int) -> None:
        t = optuna.trial.create_trial(params=PARAMS, distributions=dist, value=METRICS["sharpe"])
        study.add_trial(t)

    return _time(op, n, warmup=5)


def _ask_tell(study: Any) -> Callable[[int], None]:
    def op(i: int) -> None:
        t = study.ask()
        for k in PARAMS:
            t.suggest_float(k, 0, 100)
        study.tell(t, METRICS["sharpe"])

    return op


def optuna_journal_ask_tell(n: int, d: Path) -> dict[str, Any]:
    return _time(_ask_tell(_optuna_study(d)), n, warmup=5)


def optuna_memory_ask_tell(n: int, d: Path) -> dict[str, Any]:
    import optuna

    return _time(_ask_tell(_optuna_study(d, optuna.storages.InMemoryStorage())), n, warmup=5)


def optuna_readback(n: int, d: Path) -> dict[str, Any]:
    """Write n trials (not timed), then time study.trials_dataframe() in this process."""
    study = _optuna_study(d)
    if len(study.trials) < n:
        import optuna

        dist = {k: optuna.distributions.FloatDistribution(0, 100) for k in PARAMS}
        study.add_trials(
            [
                optuna.trial.create_trial(params=PARAMS, distributions=dist, value=0.5)
                for _ in range(n - len(study.trials))
            ]
        )
    study = _optuna_study(d)  # a fresh storage object: reads the journal back
    t = time.perf_counter()
    df = study.trials_dataframe()
    return {"seconds": time.perf_counter() - t, "rows": len(df)}


# -- eventsourcing ---------------------------------------------------------------------------


def eventsourcing_sqlite(n: int, d: Path) -> dict[str, Any]:
    """One aggregate saved per record (its created event) through eventsourcing's SQLite
    persistence module."""
    os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
    os.environ["SQLITE_DBNAME"] = str(d / "es.sqlite")
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate

    class Trial(Aggregate):
        def __init__(self, trial_id: int, params: dict, metrics: dict) -> None:
            self.trial_id, self.params, self.metrics = trial_id, params, metrics

    app: Application = Application()
    return _time(lambda i: app.save(Trial(i, PARAMS, METRICS)), n)


# -- MLflow ----------------------------------------------------------------------------------


def _mlflow(uri: str, n: int) -> dict[str, Any]:
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    exp = c.create_experiment(f"e{os.getpid()}")
    run = c.create_run(exp).info.run_id
    return _time(lambda i: c.log_metric(run, "sharpe", METRICS["sharpe"], step=max(i, 0)), n, 5)


def mlflow_file(n: int, d: Path) -> dict[str, Any]:
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # the file store is in maintenance mode
    return _mlflow(f"file://{d / 'mlruns'}", n)


def mlflow_sqlite(n: int, d: Path) -> dict[str, Any]:
    return _mlflow(f"sqlite:///{d / 'mlflow.db'}", n)


def main() -> None:
    tool, n, d = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    d.mkdir(parents=True, exist_ok=True)
    if len(sys.argv) > 4:  # a start barrier for concurrent runs: wait until this file exists
        while not Path(sys.argv[4]).exists():
            time.sleep(0.001)
    t0 = time.perf_counter()
    res = globals()[tool](n, d)
    res["wall_s"] = time.perf_counter() - t0
    print(json.dumps(res))


if __name__ == "__main__":
    main()

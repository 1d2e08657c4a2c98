"""Sweeps on Dask workers (docs/scale.md). Needs the `ledgerx[dask]` extra.

One writer per worker process: `LedgerPlugin(root)` opens a ledger in each worker process when
it starts (and again in the process a nanny starts after a crash) and closes it, flushed, when
the worker stops. Tasks record through `record_trial`, which returns only once the event is
durable, so a task whose result the scheduler has received has its trial on disk.

A worker killed mid-task loses that task's result, not its already-durable event: the scheduler
runs the task again elsewhere and the trial may be recorded twice. Trial identity is
`(run_id, trial_id)`: `events` keeps both records, `trial_results` and `trial_metrics` show the
latest one once (in the DuckDB index and in ledgerx.spark alike).

    client.register_plugin(LedgerPlugin("/shared/ledger"))
    with ledgerx.open("/shared/ledger").run(run_kind="sweep", config=cfg,
                                            data_fingerprint=fp) as run:
        futures = client.map(objective, params_list, run_id=run.run_id)
        client.gather(futures)

    def objective(params, run_id):
        metrics = backtest(params)
        ledgerx.dask.record_trial(run_id, params["trial_id"], params, metrics)
        return metrics

Without the plugin, `worker_ledger()` falls back to the module-level ledger at `$LEDGERX_ROOT`
(also one per process).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import ledgerx
from ledgerx.config import resolve_root
from ledgerx.errors import ConfigError

try:
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - the dask extra is missing
    WorkerPlugin = object  # type: ignore[assignment,misc]

_LOCK = threading.Lock()
_LEDGER: tuple[int, ledgerx.Ledger] | None = None  # (pid, ledger) of this worker process


class LedgerPlugin(WorkerPlugin):  # type: ignore[misc,valid-type]
    """Opens one ledger per worker process at `root`; `client.register_plugin(LedgerPlugin(r))`."""

    name = "ledgerx"

    def __init__(self, root: str | os.PathLike[str] | None = None, **options: Any) -> None:
        if WorkerPlugin is object:
            raise ConfigError("LedgerPlugin needs the dask extra: pip install 'ledgerx[dask]'")
        self.root = str(resolve_root(root))
        self.options = options

    def setup(self, worker: Any) -> None:
        global _LEDGER
        with _LOCK:
            if _LEDGER is None or _LEDGER[0] != os.getpid() or _LEDGER[1].closed:
                _LEDGER = (os.getpid(), ledgerx.open(self.root, **self.options))

    def teardown(self, worker: Any) -> None:
        global _LEDGER
        with _LOCK:
            led, _LEDGER = _LEDGER, None
        if led is not None and led[0] == os.getpid():
            led[1].close()


def worker_ledger() -> ledgerx.Ledger:
    """This process's ledger: the plugin's, else the module-level one at `$LEDGERX_ROOT`."""
    led = _LEDGER
    if led is not None and led[0] == os.getpid() and not led[1].closed:
        return led[1]
    return ledgerx.default_ledger()


def record_trial(
    run_id: str, trial_id: Any, params: Mapping[str, Any], metrics: Mapping[str, Any]
) -> None:
    """Record one trial of `run_id` and return once it is durable."""
    led = worker_ledger()
    led.emit(
        "trial.recorded",
        {"trial_id": trial_id, "params": params, "metrics": metrics},
        run_id=run_id,
    )
    led.flush()

"""ledgerx: an append-only event ledger for backtest and optimizer runs, with a DuckDB index
that can always be rebuilt from the log.

    import ledgerx
    ledger = ledgerx.open("data/ledger")
    with ledger.run(run_kind="sweep", config=cfg, data_fingerprint=fp) as run:
        with run.phase("plan"):
            ...
        run.trial(trial_id=1, params={...}, metrics={...})
"""

from __future__ import annotations

from typing import Any

from ledgerx.errors import (
    ClosedError,
    CommitError,
    ConfigError,
    IndexBusyError,
    IndexLockedError,
    IndexTimeoutError,
    LedgerError,
    LedgerIOError,
    RunStateError,
    SchemaError,
    UnknownUpcasterError,
)
from ledgerx.schema.upcasters import register_upcaster, upcaster
from ledgerx.writer import (
    Ledger,
    Phase,
    Position,
    Run,
    default_ledger,
    emit,
    emit_phase_completed,
    emit_phase_started,
    emit_run_completed,
    emit_run_created,
    emit_run_started,
    flush,
    new_run_id,
    open,
)

__version__ = "0.1.0"

__all__ = [
    "ClosedError",
    "CommitError",
    "ConfigError",
    "IndexBusyError",
    "IndexLockedError",
    "IndexTimeoutError",
    "Ledger",
    "LedgerError",
    "LedgerIOError",
    "Phase",
    "Position",
    "Reader",
    "Run",
    "RunStateError",
    "SchemaError",
    "UnknownUpcasterError",
    "default_ledger",
    "emit",
    "emit_phase_completed",
    "emit_phase_started",
    "emit_run_completed",
    "emit_run_created",
    "emit_run_started",
    "flush",
    "new_run_id",
    "open",
    "register_upcaster",
    "upcaster",
]


def __getattr__(name: str) -> Any:
    # The read side pulls in DuckDB; load it only when asked for.
    if name == "Reader":
        from ledgerx.reader import Reader

        return Reader
    raise AttributeError(f"module 'ledgerx' has no attribute {name!r}")

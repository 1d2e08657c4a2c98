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

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ledgerx.reader import Reader
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


# Loaded on first use: the writer and the schema registry's decorators for programs that write,
# the read side (DuckDB) for those that read. A process that only indexes (`ledgerx rebuild`,
# the daemon) never imports the writer, which cost a one-event rebuild process ~15 ms. Every
# name of `__all__` not defined above comes from the writer, except these.
_LAZY = {
    **{name: "ledgerx.writer" for name in __all__ if name not in globals()},
    "Reader": "ledgerx.reader",
    "register_upcaster": "ledgerx.schema.upcasters",
    "upcaster": "ledgerx.schema.upcasters",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ledgerx' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

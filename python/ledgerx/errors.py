"""The exception hierarchy. Every public entry point raises one of these for bad input."""

from ledgerx._core import ClosedError, LedgerIOError, SchemaError

__all__ = [
    "ClosedError",
    "IndexBusyError",
    "IndexLockedError",
    "LedgerError",
    "LedgerIOError",
    "RunStateError",
    "SchemaError",
]


class LedgerError(Exception):
    """A ledger-level error that is neither an invalid event nor a disk fault."""


class IndexBusyError(LedgerError):
    """Another indexer (CLI or daemon) holds this root's index lock."""


class RunStateError(LedgerError):
    """A run used outside its life: events on a run that was never started (no `with`) or has
    ended, or a run id that already exists (pass `resume=True` to record a new attempt)."""


class IndexLockedError(LedgerError):
    """A published index file is held open read-write by a foreign process (a DuckDB connection
    opened without `read_only=True`); the message names its PID."""

"""The exception hierarchy. Every public entry point raises one of these for bad input."""

from ledgerx._core import ClosedError, LedgerIOError, SchemaError

__all__ = ["ClosedError", "LedgerError", "LedgerIOError", "SchemaError", "IndexBusyError"]


class LedgerError(Exception):
    """A ledger-level error that is neither an invalid event nor a disk fault."""


class IndexBusyError(LedgerError):
    """Another indexer (CLI or daemon) holds this root's index lock."""

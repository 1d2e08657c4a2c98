"""The exception hierarchy. Every public entry point raises one of these for bad input."""

from ledgerx._core import ClosedError, LedgerIOError, SchemaError

__all__ = [
    "ClosedError",
    "IndexBusyError",
    "LedgerError",
    "LedgerIOError",
    "SchemaError",
    "UnknownUpcasterError",
]


class LedgerError(Exception):
    """A ledger-level error that is neither an invalid event nor a disk fault."""


class IndexBusyError(LedgerError):
    """Another indexer (CLI or daemon) holds this root's index lock."""


class UnknownUpcasterError(SchemaError, LedgerError):
    """`_schema.json` names an upcaster that the operator's code or configuration did not
    register; nothing is imported because the file names it (docs/security.md)."""

"""The exception hierarchy: the one place every ledgerx exception is defined.

Every exception the package raises for bad input or a fault derives from `LedgerError`. The
Rust extension raises these same classes (it imports them from here, `src/py/errors.rs`), so a
traceback reads `ledgerx.SchemaError`, never `ledgerx._core.SchemaError`. This module imports
nothing of ledgerx, so the extension can import it at any time.

    LedgerError
    ├── SchemaError (ValueError)     an invalid event or schema: event_type, version, path
    │   └── UnknownUpcasterError     _schema.json names an upcaster nobody registered
    ├── ConfigError (ValueError)     a bad option: durability, commit interval, sizes, dates
    ├── LedgerIOError (OSError)      a disk fault; errno and filename set
    │   ├── ClosedError              the ledger is closed
    │   └── CommitError              a group commit failed: `lost` events not made durable
    ├── IndexBusyError               another indexer holds the index lock
    ├── IndexLockedError             a foreign process holds the published index read-write
    ├── RunStateError                a run used before its start, after its end, or reused
    └── IndexTimeoutError (TimeoutError)  an event was not indexed in time
"""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "CommitError",
    "ConfigError",
    "IndexBusyError",
    "IndexLockedError",
    "IndexTimeoutError",
    "LedgerError",
    "LedgerIOError",
    "RunStateError",
    "SchemaError",
    "UnknownUpcasterError",
]


class LedgerError(Exception):
    """The base of every ledgerx exception."""


class SchemaError(LedgerError, ValueError):
    """An invalid event or schema.

    `event_type` and `version` name the event's schema when known; `path` is where in the
    document the first violation is (`data.metrics.sharpe`), when there is one.
    """

    def __init__(
        self,
        message: str,
        event_type: str | None = None,
        version: int | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.event_type = event_type
        self.version = version
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.event_type, self.version, self.path))


class ConfigError(LedgerError, ValueError):
    """A configuration mistake: an unknown durability mode, a commit interval, a size or a date
    out of range. Raised before anything is written."""


class LedgerIOError(LedgerError, OSError):
    """A disk fault; the message names the path (`errno`, `filename` set as for OSError)."""


class ClosedError(LedgerIOError):
    """The ledger is closed."""


class CommitError(LedgerIOError):
    """A group commit failed: `lost` queued events were not made durable (the part they were
    headed for is abandoned; later events go to a new part)."""

    def __init__(self, errno: int, strerror: str, filename: str | None = None, lost: int = 0):
        super().__init__(errno, strerror, filename)
        self.lost = lost

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.errno, self.strerror, self.filename, self.lost))


class IndexBusyError(LedgerError):
    """Another indexer (CLI or daemon) holds this root's index lock."""


class UnknownUpcasterError(SchemaError):
    """`_schema.json` names an upcaster that the operator's code or configuration did not
    register; nothing is imported because the file names it (docs/security.md)."""


class IndexTimeoutError(LedgerError, TimeoutError):
    """An event was not indexed within the time given (`wait_indexed`)."""


class RunStateError(LedgerError):
    """A run used outside its life: events on a run that was never started (no `with`) or has
    ended, or a run id that already exists (pass `resume=True` to record a new attempt)."""


class IndexLockedError(LedgerError):
    """A published index file is held open read-write by a foreign process (a DuckDB connection
    opened without `read_only=True`); the message names its PID."""


class FrozenInstanceError(LedgerError, AttributeError):
    """A field of a frozen record (`ledgerx._record.recordclass(frozen=True)`: the index's
    reports and paths) assigned or deleted, as `dataclasses.FrozenInstanceError`."""


# Tracebacks and reprs name the public path (`ledgerx.SchemaError`), where users import them.
for _cls in (
    LedgerError,
    SchemaError,
    ConfigError,
    LedgerIOError,
    ClosedError,
    CommitError,
    IndexBusyError,
    IndexTimeoutError,
    UnknownUpcasterError,
    RunStateError,
    IndexLockedError,
):
    _cls.__module__ = "ledgerx"
del _cls

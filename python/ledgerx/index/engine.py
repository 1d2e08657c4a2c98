"""DuckDB for the indexer's modules: the engine module `_duckdb`, without the `duckdb` package's
Python layer (relations, expressions, Arrow source adapters, a version lookup through
importlib.metadata). Importing the package cost about 360 M instructions, a third of a one-event
`ledgerx rebuild` process, for API a round never calls: connections, cursors, statements,
`extract_statements` and the exception classes are the engine's, and the package re-exports
these very objects, so code that imports `duckdb` meets the same classes.

Scanning a Python Arrow object (`register`) needs the package's adapters: `arrow_scans()` first
(the streamed insert of a big round, archived days, rows to upcast)."""

from __future__ import annotations

# The engine module and the early start of an instance live in a top-level module, which the
# console script imports before this package (whose imports would delay that start).
from ledgerx._prestart import duckdb, prestart, settle_prestarted, take_prestarted

__all__ = ["arrow_scans", "duckdb", "prestart", "settle_prestarted", "take_prestarted"]


def arrow_scans() -> None:
    """Let DuckDB scan Python Arrow objects: the `duckdb` package sets that up on import."""
    import duckdb as _package  # noqa: F401

"""DuckDB for the indexer's modules: the engine module `_duckdb`, without the `duckdb` package's
Python layer (relations, expressions, Arrow source adapters, a version lookup through
importlib.metadata). Importing the package cost about 360 M instructions, a third of a one-event
`ledgerx rebuild` process, for API a round never calls: connections, cursors, statements,
`extract_statements` and the exception classes are the engine's, and the package re-exports
these very objects, so code that imports `duckdb` meets the same classes.

Scanning a Python Arrow object (`register`) needs the package's adapters: `arrow_scans()` first
(archived days, rows to upcast). An object that exports an Arrow C stream itself (the core's
`ScanStream`: a big round's insert) is registered through the engine (`register_stream`).
Relations (`con.sql`, what `Reader.sql` returns) are the package's too (`package()`); a query's
result comes to Arrow without them (`fetch_arrow`: `Reader.trials_table`)."""

from __future__ import annotations

from typing import Any

# The engine module and the early start of an instance live in a top-level module, which the
# console script imports before this package (whose imports would delay that start).
from ledgerx._prestart import duckdb, prestart, take_prestarted

__all__ = [
    "arrow_scans",
    "duckdb",
    "fetch_arrow",
    "package",
    "prestart",
    "register_stream",
    "take_prestarted",
]


def package() -> Any:
    """The `duckdb` package, imported on first use: on import it gives the engine's connections
    the relation API (`sql`, `to_arrow_table`, ...) and lets DuckDB scan Python Arrow objects."""
    import duckdb as _package

    return _package


def arrow_scans() -> None:
    """Let DuckDB scan Python Arrow objects: the `duckdb` package sets that up on import."""
    package()


# Rows per batch of the Arrow tables `fetch_arrow` makes (few batches: one per million rows).
_ARROW_BATCH = 1_000_000


def fetch_arrow(con: Any, query: str, params: list[Any]) -> Any:
    """`query`'s rows as a pyarrow Table, through the engine (`_result_as_arrow`, private API)
    when it has it, else through the package's public relation API."""
    take = getattr(con, "_result_as_arrow", None)
    if take is None:
        package()
        return con.sql(query, params=params).to_arrow_table()
    con.execute(query, params)
    return take(_ARROW_BATCH, reader=False)


class _StreamSource:
    """What the engine's Arrow scan reads (the package's `duckdb._sources.ArrowScanSource`
    protocol) for an object with `__arrow_c_stream__` and `__arrow_c_schema__`, read once."""

    one_shot = True
    schema_is_stable = True
    pull_under_gil = False  # the stream takes the GIL itself when it needs it

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def rows(self) -> int | None:
        return None

    def accepts(self, predicate: object) -> bool:
        return False

    def stream(self, columns: object, filters: object) -> tuple[object, bool]:
        return self.obj.__arrow_c_stream__(), False

    def __arrow_c_schema__(self) -> object:
        return self.obj.__arrow_c_schema__()


def register_stream(con: Any, name: str, obj: Any) -> None:
    """Register `obj`, which exports an Arrow C stream and its schema, as view `name`: through
    the engine's own source registration when it has one (the `duckdb` package is not imported),
    else through the package's `register`."""
    reg = getattr(con, "_register_arrow_source", None)
    if reg is None:
        arrow_scans()
        con.register(name, obj)
    else:
        reg(name, _StreamSource(obj))

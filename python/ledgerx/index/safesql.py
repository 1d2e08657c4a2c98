"""Read-only SQL over the index for people who may read but not change it (docs/security.md).

Two layers, both needed:

- `check_read_only_sql(sql)`: exactly one statement, of a kind that only reads: SELECT (which is
  also what DuckDB parses WITH, VALUES, FROM-first, DESCRIBE, SHOW and SUMMARIZE into) or EXPLAIN
  of one. DuckDB's own parser (`duckdb.extract_statements`) decides the kind, not a regex, so
  `DETACH`, `ATTACH`, `USE`, `COPY`, `SET`, `PRAGMA`, `CALL`, `INSTALL`/`LOAD`, writes and
  multi-statement strings never reach the connection.
- `forbid_external_access(con)`: the connection can no longer read or write other files
  (`enable_external_access = false`), load or install extensions, or change any of that
  (`lock_configuration = true`), and its temp directory is a private 0700 folder of this process
  rather than DuckDB's default `.tmp` under the current directory.

The index files themselves are attached READ_ONLY. Whatever runs SQL that a user typed (the CLI's
`query`, the dashboard, a `Reader(external_access=False)`) goes through both.
"""

from __future__ import annotations

import re
import threading

from ledgerx.errors import LedgerError
from ledgerx.index.engine import duckdb

__all__ = ["QueryRefusedError", "check_read_only_sql", "forbid_external_access", "private_tmp"]


class QueryRefusedError(LedgerError, ValueError):
    """A query that is not exactly one read-only statement."""


_READ = {duckdb.StatementType.SELECT}
_EXPLAIN_HEAD = re.compile(
    r"^(?:\s|--[^\n]*\n|/\*.*?\*/)*EXPLAIN\s+(?:ANALYZE\s+|ANALYSE\s+)?", re.IGNORECASE | re.DOTALL
)
ALLOWED = "SELECT, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN of one"


def check_read_only_sql(sql: str) -> str:
    """Return `sql` if DuckDB parses it as exactly one read-only statement, else raise
    QueryRefusedError naming what was found."""
    if not isinstance(sql, str):
        raise QueryRefusedError(f"a query must be a string, not {type(sql).__name__}")
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryRefusedError(f"query does not parse: {' '.join(str(e).split())}") from None
    if len(stmts) != 1:
        raise QueryRefusedError(f"one statement only ({ALLOWED}); got {len(stmts)}")
    kind = stmts[0].type
    if kind == duckdb.StatementType.EXPLAIN:
        m = _EXPLAIN_HEAD.match(sql)
        inner = sql[m.end() :] if m else ""
        try:
            inner_stmts = duckdb.extract_statements(inner) if inner.strip() else []
        except duckdb.Error:
            inner_stmts = []
        if len(inner_stmts) != 1 or inner_stmts[0].type not in _READ:
            raise QueryRefusedError("EXPLAIN only of a read-only statement (SELECT)")
        return sql
    if kind not in _READ:
        raise QueryRefusedError(
            f"read-only queries only ({ALLOWED}); this is a {kind.name} statement"
        )
    return sql


_tmp_lock = threading.Lock()
_tmp: list[str] = []


def private_tmp() -> str:
    """A 0700 temp folder owned by this process (removed at exit), for DuckDB's spill files."""
    import atexit
    import shutil
    import tempfile  # here: an indexing process never needs them (~3 ms to import)

    with _tmp_lock:
        if not _tmp:
            d = tempfile.mkdtemp(prefix="ledgerx-duckdb-")
            atexit.register(shutil.rmtree, d, True)
            _tmp.append(d)
        return _tmp[0]


def forbid_external_access(con: duckdb.DuckDBPyConnection) -> None:
    """No COPY/ATTACH/read_* of other files, no extension loading, temp files only in a private
    folder, from here on and for good: `lock_configuration` keeps a query from turning any of
    it back on. Call it after attaching the files the connection needs."""
    tmp = private_tmp().replace("'", "''")
    con.execute(f"SET temp_directory = '{tmp}'")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET allow_community_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")

"""The DuckDB index (docs/index.md): built from the log by `build_index`, read through
`ledgerx.Reader`. See docs/index.md.

The indexer is imported on first use: `ledgerx.index.hooks` and the other small modules of this
package must not pull in DuckDB and the scanner feed (a one-event `ledgerx rebuild` process pays
for every import)."""

from __future__ import annotations

from typing import Any

from ledgerx.index.publish import IndexPaths

__all__ = ["DEFAULT_STALE_AFTER_S", "IndexPaths", "IndexReport", "build_index", "list_part_files"]

_FROM_INDEXER = {"DEFAULT_STALE_AFTER_S", "IndexReport", "build_index", "list_part_files"}


def __getattr__(name: str) -> Any:
    if name in _FROM_INDEXER:
        from ledgerx.index import indexer

        return getattr(indexer, name)
    raise AttributeError(f"module 'ledgerx.index' has no attribute {name!r}")

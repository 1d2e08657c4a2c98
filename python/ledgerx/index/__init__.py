"""The DuckDB index (docs/index.md): built from the log by `build_index`, read through
`ledgerx.Reader`. See docs/index.md."""

from __future__ import annotations

from ledgerx.index.indexer import DEFAULT_STALE_AFTER_S, IndexReport, build_index, list_part_files
from ledgerx.index.publish import IndexPaths

__all__ = ["DEFAULT_STALE_AFTER_S", "IndexPaths", "IndexReport", "build_index", "list_part_files"]

"""The legacy DuckDB store (docs/legacy.md): dual-mode reading, comparison, migration into the log,
archive, and the legacy-shaped projection the indexer can keep. See docs/legacy.md."""

from __future__ import annotations

from ledgerx.index.hooks import register_publish_hook
from ledgerx.legacy.archive import ArchiveRefused, ArchiveReport, archive
from ledgerx.legacy.compare import CompareReport, compare
from ledgerx.legacy.dual import DualReader, parse_cutover
from ledgerx.legacy.migrate import MigrateReport, MigrationError, migrate
from ledgerx.legacy.projection import on_publish, projection_path, write_projection
from ledgerx.legacy.schema import LEGACY_DDL, legacy_event_id
from ledgerx.legacy.source import LegacyError, LegacyLockedError

# The projection follows the index: every index round in a process that loaded this package.
register_publish_hook("legacy_projection", on_publish)

__all__ = [
    "LEGACY_DDL",
    "ArchiveRefused",
    "ArchiveReport",
    "CompareReport",
    "DualReader",
    "LegacyError",
    "LegacyLockedError",
    "MigrateReport",
    "MigrationError",
    "archive",
    "compare",
    "legacy_event_id",
    "migrate",
    "parse_cutover",
    "projection_path",
    "write_projection",
]

"""The legacy DuckDB store (docs/legacy.md): dual-mode reading, comparison, migration into the log,
archive, and the legacy-shaped projection the indexer can keep. See docs/legacy.md.

Importing the package registers the projection's publish hook and loads nothing else: the names
below are imported on first use (the CLI's and the daemon's index rounds import this package,
and a one-event `ledgerx rebuild` process should not pay for compare, migrate and archive)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ledgerx.index.hooks import PublishRound, register_publish_hook
from ledgerx.legacy.paths import projection_path

if TYPE_CHECKING:
    from ledgerx.legacy.archive import ArchiveRefused, ArchiveReport, archive
    from ledgerx.legacy.compare import CompareReport, compare
    from ledgerx.legacy.dual import DualReader, parse_cutover
    from ledgerx.legacy.migrate import MigrateReport, MigrationError, migrate
    from ledgerx.legacy.projection import write_projection
    from ledgerx.legacy.schema import LEGACY_DDL, legacy_event_id
    from ledgerx.legacy.source import LegacyError, LegacyLockedError

_WHERE = {
    "ArchiveRefused": "archive",
    "ArchiveReport": "archive",
    "archive": "archive",
    "CompareReport": "compare",
    "compare": "compare",
    "DualReader": "dual",
    "parse_cutover": "dual",
    "MigrateReport": "migrate",
    "MigrationError": "migrate",
    "migrate": "migrate",
    "on_publish": "projection",
    "write_projection": "projection",
    "LEGACY_DDL": "schema",
    "legacy_event_id": "schema",
    "LegacyError": "source",
    "LegacyLockedError": "source",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'ledgerx.legacy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ledgerx.legacy.{mod}"), name)
    globals()[name] = value
    return value


def _projection_hook(rnd: PublishRound) -> Any:
    """The projection follows the index (`ledgerx.legacy.projection.on_publish`); its code is
    loaded only when the round may have a projection to write: the option asks for one, or one
    exists (`projection_hook` returns at once otherwise)."""
    enabled = rnd.options.get("legacy_projection")
    if enabled is False or (enabled is None and not projection_path(rnd.paths).exists()):
        return None
    from ledgerx.legacy.projection import on_publish

    return on_publish(rnd)


# The projection follows the index: every index round in a process that loaded this package.
register_publish_hook("legacy_projection", _projection_hook)

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

"""Where the legacy-shaped projection lives: a module of its own, so that the publish hook can
tell whether there is a projection to keep without loading the projection code."""

from __future__ import annotations

from pathlib import Path

from ledgerx.index.publish import IndexPaths


def projection_path(paths: IndexPaths) -> Path:
    """`index/legacy.duckdb`, or `<stem>.legacy.duckdb` beside an index given by `--db`."""
    if paths.runs.name == "runs.duckdb":
        return paths.runs.parent / "legacy.duckdb"
    return paths.runs.parent / f"{paths.runs.stem}.legacy.duckdb"

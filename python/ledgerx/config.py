"""Where a ledger lives: the root given, else `$LEDGERX_ROOT`, else ./data/ledger."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOT = "data/ledger"


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    if root is None or str(root) == "":
        root = os.environ.get("LEDGERX_ROOT") or DEFAULT_ROOT
    return Path(root).expanduser().absolute()


def events_dir(root: Path) -> Path:
    return root / "events"


def index_dir(root: Path) -> Path:
    return root / "index"


def archive_events_dir(root: Path) -> Path:
    """Where retention moves closed days (`ledgerx.retention`)."""
    return root / "archive" / "events"


def artifacts_dir(root: Path) -> Path:
    return root / "artifacts" / "runs"

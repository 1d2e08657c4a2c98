"""`ledgerx legacy archive`: retire the legacy file once the index provably holds it.

Refuses unless, right now, the file is not open for writing, `compare` passes and nothing in the
file is missing from the index (every legacy run and alert was migrated and indexed). Then the
file (and its WAL, if any) moves to `<root>/archive/legacy/`, beside `<name>.sha256`
(`sha256sum -c` format) and `<name>.manifest.json` (hashes, sizes, origin, compare counts).
The hash is taken before the comparison and checked again after the move: a file changed in
between is moved back and the archive refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ledgerx.config import resolve_root
from ledgerx.errors import LedgerError
from ledgerx.fsutil import atomic_write, fsync_path
from ledgerx.legacy.compare import CompareReport, compare
from ledgerx.legacy.source import legacy_files


class ArchiveRefused(LedgerError):
    """The legacy file cannot be archived yet; the message says why and what to do."""


@dataclass
class ArchiveReport:
    archived: list[str] = field(default_factory=list)
    manifest: str = ""
    sha256: dict[str, str] = field(default_factory=dict)
    compare: dict[str, Any] = field(default_factory=dict)


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _move(src: Path, dst: Path) -> None:
    """Rename, or copy + fsync + unlink across file systems."""
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno != 18:  # EXDEV
            raise
        shutil.copyfile(src, dst)
        with open(dst, "rb") as f:
            os.fsync(f.fileno())
        os.unlink(src)


def archive(
    root: str | os.PathLike[str] | None,
    legacy: str | os.PathLike[str],
    *,
    db: str | os.PathLike[str] | None = None,
) -> ArchiveReport:
    """Compare, then move the legacy file into archive/legacy/ with a sha256 manifest."""
    rootp = resolve_root(root)
    src = Path(legacy).expanduser().absolute()
    if not src.is_file():
        raise ArchiveRefused(f"legacy file not found: {src}")
    files = legacy_files(src)
    before = {p.name: sha256_file(p) for p in files}
    try:
        rep: CompareReport = compare(rootp, src, db=db, snapshot=False)
    except LedgerError as e:
        raise ArchiveRefused(f"not archived: {e}") from None
    if not rep.ok:
        raise ArchiveRefused(
            f"not archived: legacy and index differ ({rep.n_differences} differences, "
            f"{len(rep.type_differences)} type differences); "
            f"see `ledgerx legacy compare --legacy {src}`"
        )
    if not rep.complete:
        raise ArchiveRefused(
            f"not archived: {rep.legacy_only_runs} legacy runs and {rep.legacy_only_alerts} "
            "alerts are not in the index; run `ledgerx legacy migrate` and `ledgerx rebuild` first"
        )
    dest_dir = rootp / "archive" / "legacy"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dests = [dest_dir / p.name for p in files]
    clash = [d for d in dests if d.exists()]
    if clash:
        raise ArchiveRefused(f"not archived: {clash[0]} already exists")
    moved: list[tuple[Path, Path]] = []
    try:
        for s, d in zip(files, dests, strict=True):
            _move(s, d)
            moved.append((s, d))
        after = {d.name: sha256_file(d) for d in dests}
        if after != before:
            raise ArchiveRefused(f"not archived: {src} changed while it was being archived")
    except BaseException:
        for s, d in reversed(moved):  # put it back as it was
            _move(d, s)
        raise
    fsync_path(dest_dir)
    fsync_path(src.parent)
    manifest: dict[str, Any] = {
        "ledgerx_legacy_archive": 1,
        "source": str(src),
        "archived_at": datetime.now(timezone.utc).isoformat(),
        "files": [
            {"name": d.name, "sha256": after[d.name], "bytes": d.stat().st_size} for d in dests
        ],
        "compare": {
            "runs": rep.runs_compared,
            "alerts": rep.alerts_compared,
            "rows": rep.rows_compared,
        },
    }
    atomic_write(
        dest_dir / f"{src.name}.sha256", "".join(f"{after[d.name]}  {d.name}\n" for d in dests)
    )
    mpath = dest_dir / f"{src.name}.manifest.json"
    atomic_write(mpath, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    fsync_path(dest_dir)
    return ArchiveReport(
        archived=[str(d) for d in dests],
        manifest=str(mpath),
        sha256=after,
        compare=manifest["compare"],
    )

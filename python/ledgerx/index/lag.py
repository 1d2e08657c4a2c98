"""Lag of the published index behind the log, kept up to date incrementally (for the daemon's
`/healthz` and `/metrics`).

`index_status` (`ledgerx status`) scans every unindexed byte each time; a health endpoint polled
every few seconds must not (a writer could make each poll read gigabytes). `LagTracker`
remembers, per part file, how far past the index's checkpoint it has already counted, and scans
only bytes it has not seen: each log byte is read once per checkpoint the indexer publishes.
The checkpoints are re-read only when a new index file is published.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ledgerx import _core
from ledgerx.config import events_dir
from ledgerx.index.indexer import list_part_files, open_readonly, read_state
from ledgerx.index.publish import IndexPaths

SCAN_CHUNK = 64 << 20


@dataclass
class _Counted:
    start: int  # the index's checkpoint this count starts from
    end: int  # counted up to here (a line boundary)
    events: int = 0
    oldest: datetime | None = None


class LagTracker:
    """`measure()` → {"events", "bytes", "seconds", "indexed_events"}; thread-safe, and the
    work of one call is only what changed since the previous one."""

    def __init__(self, root: Path, db: str | os.PathLike[str] | None = None) -> None:
        self.ev = events_dir(root)
        self.paths = IndexPaths.for_root(root, db)
        self._files: dict[str, _Counted] = {}
        self._index_id: tuple[int, int, int] | None = None
        self._ckpt: dict[str, int] = {}
        self._indexed = 0
        self._lock = threading.Lock()

    def _checkpoints(self) -> None:
        try:
            st = os.stat(self.paths.runs)
            ident: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            ident = None
        if ident == self._index_id:
            return
        ckpt: dict[str, int] = {}
        indexed = 0
        if ident is not None:
            files, _meta = read_state(self.paths.runs)
            ckpt = {f: o for f, (o, _e, _b) in files.items()}
            con = open_readonly(self.paths.runs, external_access=False)
            try:
                indexed = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
            finally:
                con.close()
        self._index_id, self._ckpt, self._indexed = ident, ckpt, indexed

    def measure(self) -> dict[str, Any]:
        with self._lock:
            self._checkpoints()
            lag_bytes = 0
            seen: dict[str, _Counted] = {}
            todo: list[tuple[str, int]] = []
            for rel, _day, size in list_part_files(self.ev):
                off = self._ckpt.get(rel, 0)
                c = self._files.get(rel)
                if c is None or c.start != off or size < c.end:
                    c = _Counted(off, off)  # new checkpoint (or a file cut): count afresh
                seen[rel] = c
                if size > off:
                    lag_bytes += size - off
                if size > c.end:
                    todo.append((rel, c.end))
            self._files = seen
            self._scan(todo)
            events = sum(c.events for c in seen.values())
            oldest = min((c.oldest for c in seen.values() if c.oldest), default=None)
        now = datetime.now(timezone.utc)
        return {
            "events": events,
            "bytes": lag_bytes,
            "seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
            "indexed_events": self._indexed,
        }

    def _scan(self, todo: list[tuple[str, int]]) -> None:
        for batches in _core.Scanner(str(self.ev), todo, max_bytes=SCAN_CHUNK):
            for b in batches:
                c = self._files[b.file]
                if b.error is not None or b.end_offset <= c.end:
                    continue  # unreadable, or only an unterminated tail: wait for more
                c.end = b.end_offset
                if b.num_rows:
                    c.events += b.num_rows
                    m = pc.min(pa.record_batch(b).column("ts")).as_py()
                    c.oldest = m if c.oldest is None or m < c.oldest else c.oldest

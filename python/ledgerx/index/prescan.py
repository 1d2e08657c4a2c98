"""`Prescan`: a full rebuild's scan started before the index's heavy imports. Nothing here
imports DuckDB or pyarrow.

A fresh `ledgerx rebuild --full-rebuild` process spends about 0.3 s importing DuckDB and
pyarrow on one core. The CLI lists the part files and starts the core's `Scanner` first, in a
thread (the scan releases the GIL), so the first chunks are parsed during those imports;
`build_index` adopts the scan when its own plan lists the same files with the same sizes and
drops it otherwise (a file that grew in between is scanned again from its start: nothing is
lost or indexed twice)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledgerx import _core
from ledgerx.index.scan import Producer, has_newline, list_part_files, scan_width

DEFAULT_CHUNK_BYTES = 32 << 20
"""Bytes of each file one scan round reads at most (the indexer's default chunk)."""


class Prescan:
    """The core's `Scanner` over `files` ((rel, start, stop) of the plan to come), run ahead in
    a thread; at most `depth` rounds wait for `build_index` to take them."""

    def __init__(
        self,
        ev: Path,
        files: list[tuple[str, int, int]],
        *,
        strict: bool = False,
        chunk: int = DEFAULT_CHUNK_BYTES,
        threads: int = 0,
        depth: int = 2,
    ) -> None:
        self.ev, self.files, self.strict = ev, files, strict
        self.chunk, self.threads = chunk, threads
        self._p = Producer(self._run, "ledgerx-prescan", depth)
        self._taken = False
        self._scanner: Any = None
        self._p.start()

    @classmethod
    def full(cls, ev: Path, since_date: str | None = None, *, strict: bool = False) -> Prescan:
        """Every part file with a complete line, from its start: a full rebuild's plan."""
        files = [
            (rel, 0, size)
            for rel, _day, size in list_part_files(ev, since_date)
            if size > 0 and has_newline(ev / rel, 0, size)
        ]
        return cls(ev, files, strict=strict)

    def matches(
        self, files: list[tuple[str, int, int]], strict: bool, chunk: int, threads: int
    ) -> bool:
        """Whether this scan is the one a round planned with these arguments would run."""
        mine = (self.files, self.strict, self.chunk, self.threads)
        return not self._taken and mine == (files, strict, chunk, threads)

    def _run(self) -> None:
        try:
            rounds = _core.Scanner(
                str(self.ev),
                self.files,
                strict=self.strict,
                max_bytes=self.chunk,
                threads=self.threads,
                width=scan_width(self.threads),
                track_ids=True,
            )
            self._scanner = rounds
            for batches in rounds:
                if not self._p.put(batches):
                    return
            self._p.put(None)
        except BaseException as e:  # handed to the consumer
            self._p.put(e)

    def rounds(self) -> Iterator[Any]:
        """The scan's rounds in order (each a list of batches), as `Scanner` yields them."""
        self._taken = True
        return self._p.items()

    @property
    def ids_distinct(self) -> bool | None:
        """`Scanner.ids_distinct` of this scan (read once its rounds were all taken)."""
        return None if self._scanner is None else self._scanner.ids_distinct

    @property
    def running(self) -> bool:
        return self._p.running

    def close(self) -> None:
        """Stop the thread and drop what it scanned."""
        self._p.stop()

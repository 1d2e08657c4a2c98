"""The indexer's view of the log: which part files there are (and which entries are not what
they claim), and `ScanFeed`, which runs the core's `Scanner` in a producer thread so the next
chunk is read and parsed while DuckDB stores the previous one (`reader`), or, for a small round,
hands the core's batches straight to DuckDB in the calling thread (`direct`: no pyarrow, whose
import would cost most of a one-event round in a fresh process)."""

from __future__ import annotations

import array
import os
import queue
import threading
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerx import _core
from ledgerx._lazy import LazyModule
from ledgerx._record import recordclass
from ledgerx.fsutil import data_end
from ledgerx.index.upcast import Upcaster, add_upcast_columns

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:  # only the streaming path (`reader`) needs pyarrow
    pa = LazyModule("pyarrow")
    pc = LazyModule("pyarrow.compute")

# Rows of one piece of a scanned batch as the core streams hand them to DuckDB (`stream`): a
# round's batch (up to 32 MB of one file, ~85k trials) is shared by the INSERTs at once.
PIECE_ROWS = 8192

Progress = Callable[[int, int], None]
"""progress(done_bytes, total_bytes), called from the indexing thread."""


@recordclass
class FileState:
    rel: str
    day: str
    start: int  # checkpoint at the start of the round
    size: int
    end: int = 0
    events: int = 0
    bad: int = 0
    old_events: int = 0
    old_bad: int = 0

    @property
    def moved(self) -> bool:
        """Whether the round read past this file's checkpoint."""
        return self.end > self.start

    def checkpoint(self) -> tuple[int, int, int]:
        """The file's checkpoint after the round: (end offset, events, bad lines) so far."""
        return self.end, self.old_events + self.events, self.old_bad + self.bad


def list_part_files(ev: Path, since_date: str | None = None) -> list[tuple[str, str, int]]:
    """(path relative to events/, day, size) of every regular part file, sorted; the size is
    where its data ends (a zero tail preallocated by a writer is not yet written)."""
    out: list[tuple[str, str, int]] = []
    if not ev.is_dir():
        return out
    for d in sorted(os.scandir(ev), key=lambda e: e.name):
        if not d.name.startswith("day=") or not d.is_dir(follow_symlinks=False):
            continue
        day = d.name[4:]
        if since_date is not None and day < since_date:
            continue
        for f in sorted(os.scandir(d.path), key=lambda e: e.name):
            if f.name.endswith(".jsonl") and f.is_file(follow_symlinks=False):
                size = data_end(f.path, f.stat(follow_symlinks=False).st_size)
                out.append((f"{d.name}/{f.name}", day, size))
    return out


def irregular_entries(ev: Path) -> list[str]:
    """Day directories and part files that are not what they claim (a symlink, a FIFO, a
    file in place of a directory): never read, always reported."""
    out: list[str] = []
    if not ev.is_dir():
        return out
    for d in sorted(os.scandir(ev), key=lambda e: e.name):
        if not d.name.startswith("day="):
            continue
        if not d.is_dir(follow_symlinks=False):
            kind = "symlink" if d.is_symlink() else "not a directory"
            out.append(f"{d.name}: skipped ({kind})")
            continue
        for f in sorted(os.scandir(d.path), key=lambda e: e.name):
            if f.name.endswith(".jsonl") and not f.is_file(follow_symlinks=False):
                kind = "symlink" if f.is_symlink() else "not a regular file"
                out.append(f"{d.name}/{f.name}: skipped ({kind})")
    return out


def has_newline(path: Path, start: int, size: int) -> bool:
    """Whether [start, size) holds a complete line: a round that cannot advance any checkpoint
    (only an unterminated tail is new) must not rewrite the index."""
    if size - start > (1 << 20):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return b"\n" in f.read(size - start)
    except OSError:
        return True  # let the scanner report it


def new_bytes(
    ev: Path,
    parts: list[tuple[str, str, int]],
    ckpt: dict[str, tuple[int, int, int]],
    warnings: list[str],
) -> list[FileState]:
    """The part files (rel, day, size) with new complete lines past their checkpoints
    {rel: (offset, events, bad lines)}; a file below its checkpoint is a warning."""
    states: list[FileState] = []
    for rel, day, size in parts:
        off, n_ev, n_bad = ckpt.get(rel, (0, 0, 0))
        if size < off:
            warnings.append(f"{rel}: file is {size} bytes, below its indexed offset {off}")
        elif size > off and has_newline(ev / rel, off, size):
            states.append(FileState(rel, day, off, size, old_events=n_ev, old_bad=n_bad))
    return states


def replays_all(
    p_ckpt: dict[str, tuple[int, int, int]],
    alt_ckpt: dict[str, tuple[int, int, int]],
    states: list[FileState],
) -> bool:
    """Whether the round reads again every file the previous round advanced (one it does not
    list, a day before its `--since-date`, would drop those rows from the alternate)."""
    read = {st.rel: st.size for st in states}
    return all(
        read.get(rel, -1) >= off
        for rel, (off, _, _) in p_ckpt.items()
        if alt_ckpt.get(rel, (0, 0, 0))[0] != off
    )


class ScanFeed:
    """Runs the Rust scanner in a producer thread (it releases the GIL), so the next chunk is
    read and parsed while DuckDB stores the previous one. Memory stays bounded: at most
    `depth` chunks of about `chunk` bytes of log wait in the queue."""

    def __init__(
        self,
        ev: Path,
        states: list[FileState],
        *,
        strict: bool,
        chunk: int,
        threads: int,
        upcaster: Upcaster | None,
        progress: Progress | None,
        depth: int = 1,
        prescan: Any = None,
        track_ids: bool = False,
    ) -> None:
        self.ev, self.states, self.strict, self.chunk = ev, states, strict, chunk
        self.threads, self.upcaster, self.progress = threads, upcaster, progress
        self.newest = upcaster.newest_versions() if upcaster is not None else {}
        self.bad: list[tuple[str, int, int, str]] = []
        self.upcast_errors: list[str] = []
        self.file_errors: list[str] = []
        self.total = sum(s.size - s.start for s in states)
        self.done = 0
        self.rows = 0
        self._p = Producer(self._run, "ledgerx-scan", depth)
        self._by_rel = {s.rel: s for s in states}
        # A `ledgerx.index.prescan.Prescan` of exactly this scan, started earlier: its rounds.
        self.prescan = prescan
        self.track_ids = track_ids  # a full rebuild: the scan tells whether its ids are distinct
        self._scanner_obj: Any = None
        self._arrow, self._pieces = True, False

    def start(self, arrow: bool = True, pieces: bool = False) -> None:
        """Start the producer thread: it hands on pyarrow batches for `reader` (`arrow`), or
        the core's batches as they are for `stream`: a round's batches as one item, or with
        `pieces` (several streams share the scan) each piece of PIECE_ROWS rows as its own."""
        self._arrow, self._pieces = arrow, pieces
        self._p.start()

    def close(self) -> None:
        if self.prescan is not None:
            self.prescan.close()
        self._p.stop()

    def _scanner(self) -> Any:
        for s in self.states:
            s.end = s.start
        if self.prescan is not None:
            return self.prescan.rounds()
        # Each round scans up to `width` files in parallel, `chunk` bytes of each at most; a
        # file is read up to its listed size (one that grew waits for the next round), an
        # unterminated tail is left pending.
        self._scanner_obj = _core.Scanner(
            str(self.ev),
            scan_files(self.states),
            strict=self.strict,
            max_bytes=self.chunk,
            threads=self.threads,
            width=scan_width(self.threads),
            track_ids=self.track_ids,
        )
        return self._scanner_obj

    @property
    def ids_distinct(self) -> bool | None:
        """Once the scan is done: True when the event ids of every row it yielded are distinct
        (`Scanner.ids_distinct`), False when one may repeat, None when unknown."""
        if self.prescan is not None:
            return self.prescan.ids_distinct  # type: ignore[no-any-return]
        return None if self._scanner_obj is None else self._scanner_obj.ids_distinct

    def _book(self, b: Any) -> bool:
        """Account one scanned batch (offsets, counts, bad lines, a file it could not read);
        True when it has rows to insert."""
        if b.error is not None:
            # Unreadable (e.g. replaced by a FIFO): report it, index the rest.
            self.file_errors.append(b.error)
            return False
        s = self._by_rel[b.file]
        self.done += b.end_offset - s.end
        s.end = b.end_offset
        s.events += b.num_rows
        s.bad += len(b.bad_lines)
        for off, ln, reason in b.bad_lines:
            self.bad.append((s.rel, off, ln, reason))
        self.rows += b.num_rows
        return bool(b.num_rows)

    def _run(self) -> None:
        try:
            for batches in self._scanner():
                if self._p.stopped:
                    break
                out = [b for b in batches if self._book(b)]
                if self._arrow:
                    items = [[self._to_arrow(b, b.file) for b in out]] if out else []
                elif self._pieces:  # one per item: the streams of the round share a batch
                    items = [[p] for b in out for p in b.pieces(PIECE_ROWS)]
                else:
                    items = [out] if out else []
                for item in items:
                    if not self._p.put(item):
                        return
                if self.progress is not None:
                    self.progress(self.done, self.total)
            self._p.put(None)
        except BaseException as e:  # handed to the consumer, raised in the indexing thread
            self._p.put(e)

    def direct(self) -> Iterator[Any]:
        """The core's batches with rows, scanned in this thread (no producer thread, no
        pyarrow): for a small round, which DuckDB reads through the Arrow PyCapsule interface.
        The bookkeeping is `reader`'s; the caller adds what `_to_arrow` adds (file, upcast
        columns, JSON typing of `data`) in SQL."""
        for batches in self._scanner():
            yield from (b for b in batches if self._book(b))
            if self.progress is not None:
                self.progress(self.done, self.total)

    def _to_arrow(self, b: Any, rel: str) -> pa.RecordBatch:
        rb = pa.record_batch(b)
        n = rb.num_rows
        rb = add_upcast_columns(rb, self.upcaster, self.newest, self.upcast_errors)
        cols = list(rb.columns)
        up = rb.column("data_upcast")
        if up.null_count < n:
            # The shape and the typed values describe the data as written: none for upcast rows.
            for name in ("shape", "tint", "tnum"):
                i = rb.schema.get_field_index(name)
                cols[i] = pc.if_else(pc.is_null(up), cols[i], pa.scalar(None, cols[i].type))
        # `data` was checked by the scanner: typed as JSON (a zero-copy wrap), DuckDB stores
        # it without parsing it again as it would a VARCHAR cast to JSON.
        i = rb.schema.get_field_index("data")
        cols[i] = pa.ExtensionArray.from_storage(pa.json_(pa.string()), cols[i])
        file_col = pa.repeat(_str_scalar(rel), n)
        return pa.RecordBatch.from_arrays([*cols, file_col], schema=scan_schema())

    def reader(self, failed: list[BaseException]) -> pa.RecordBatchReader:
        """The scanned batches as one Arrow stream, in scan order. An error of the scan ends
        the stream and is appended to `failed` (for the caller to raise once DuckDB is done:
        raised inside the stream, DuckDB would replace it with its own exception)."""
        return pa.RecordBatchReader.from_batches(scan_schema(), self._batches(failed))

    def stream(self, failed: list[BaseException]) -> Any:
        """The core's batches (`start(arrow=False)`) as one Arrow C stream (`_core.ScanStream`:
        `data` typed JSON, `file` added, no upcast columns; no pyarrow), in scan order (in
        pieces of at most PIECE_ROWS rows when several streams share the scan: `start`); an
        error of the scan ends the stream and is appended to `failed`, as in `reader`."""
        return _core.ScanStream(self._batches(failed))

    def _batches(self, failed: list[BaseException]) -> Iterator[Any]:
        """The scanned batches in scan order; an error of the scan ends them, appended to
        `failed`."""
        try:
            for item in self._p.items():
                yield from item
        except BaseException as e:
            failed.append(e)


class Producer:
    """A producer thread handing items to its consumers through a bounded queue: `put` waits
    while the queue is full (False once stopped); `items` yields what was put until the
    producer puts None, and raises an exception it put; `stop` ends the thread, dropping what
    waits in the queue."""

    def __init__(self, target: Callable[[], None], name: str, depth: int) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._t = threading.Thread(target=target, name=name, daemon=True)

    def start(self) -> None:
        self._t.start()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._t.is_alive()

    def put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def items(self) -> Iterator[Any]:
        """What was put, in order; several consumers may share the items (each item goes to
        one of them). The end (None) or the exception is put back for the other consumers:
        it is the producer's last item, so the queue has room for it."""
        while True:
            item = self._q.get()
            if item is None or isinstance(item, BaseException):
                self._q.put_nowait(item)
                if item is None:
                    return
                raise item
            yield item

    def stop(self) -> None:
        self._stop.set()
        while self._t.is_alive():
            try:
                self._q.get_nowait()
            except queue.Empty:
                self._t.join(0.05)


def scan_width(threads: int) -> int:
    """Files one scan round reads in parallel."""
    return threads or os.cpu_count() or 1


def scan_files(states: list[FileState]) -> list[tuple[str, int, int]]:
    """(rel, start, stop) of each file a round scans, as `Scanner` takes them."""
    return [(s.rel, s.start, s.size) for s in states]


@cache
def scan_schema() -> pa.Schema:
    """The columns `reader` streams into `events` (the scanner's, the upcast columns, `file`)."""
    return pa.schema(
        [
            ("event_id", pa.string()),
            ("event_type", pa.string()),
            ("schema_version", pa.int64()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("run_id", pa.string()),
            ("writer", pa.string()),
            ("seq", pa.int64()),
            ("data", pa.json_(pa.string())),
            ("offset", pa.int64()),
            ("line_bytes", pa.int64()),
            ("shape", pa.string()),
            ("tint", pa.list_(pa.field("item", pa.int64(), nullable=False))),
            ("tnum", pa.list_(pa.field("item", pa.float64(), nullable=False))),
            ("data_upcast", pa.string()),
            ("upcast_version", pa.int32()),
            ("file", pa.string()),
        ]
    )


def _str_scalar(s: str) -> pa.Scalar:
    """`pa.scalar(s, pa.string())` without pyarrow's check for pandas values, which imports
    pandas (0.3-0.8 s, most of a one-event round in a fresh process)."""
    b = s.encode()
    offsets = pa.py_buffer(array.array("i", (0, len(b))))
    return pa.StringArray.from_buffers(1, offsets, pa.py_buffer(b))[0]

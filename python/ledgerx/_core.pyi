"""Type stubs for the Rust extension `ledgerx._core` (checked against the built module by
`make lint`: mypy.stubtest). Its errors are the classes of `ledgerx.errors`."""

from collections.abc import Callable, Iterable
from typing import Any, final

__all__ = [
    "BUILTIN_REGISTRY",
    "SUPPORTED_KEYWORDS",
    "ANNOTATIONS",
    "Writer",
    "SchemaValidator",
    "ScanBatch",
    "Scanner",
    "ScanStream",
    "DirWatch",
    "scan_files",
    "check_line",
    "check_json",
    "trial_shapes",
    "check_run_id",
    "quarantine",
    "to_json",
    "day_of",
    "format_ts",
    "parse_ts",
    "crc32c",
    "is_event_id",
    "install_sigterm_watchdog",
    "_tape_matches_parse",
    "_shape_matches_parse",
]

BUILTIN_REGISTRY: str
"""JSON text of the built-in registry (`{"ledgerx_registry": 1, "types": {...}}`)."""

SUPPORTED_KEYWORDS: list[str]
ANNOTATIONS: list[str]

@final
class SchemaValidator:
    """One JSON Schema of the supported subset, compiled once."""

    def __new__(cls, schema_json: str) -> SchemaValidator:
        """Raises SchemaError naming any keyword outside the subset."""
    def is_valid(self, document: Any) -> bool:
        """Validate a Python object (dict, list, str, int, float, bool, None)."""
    def validate(self, document: Any, label: str = "data") -> None:
        """Raise SchemaError `label.path: rule` on the first violation."""
    def is_valid_json(self, text: str | bytes) -> bool:
        """Validate a JSON document given as text."""

@final
class Writer:
    """One writer instance: owns at most one part file at a time. Bad options raise
    ConfigError; invalid events SchemaError; disk faults LedgerIOError (CommitError when a
    group commit fails, ClosedError after close)."""

    def __new__(
        cls,
        root: str,
        durability: str = "group",
        commit_interval_ms: int = 2,
        max_part_bytes: int = 100_000_000,
        max_event_bytes: int = 16 * 1024 * 1024,
        writer_id: str | None = None,
        nonfinite: str = "error",
        default: Callable[[Any], Any] | None = None,
    ) -> Writer:
        """`nonfinite="null"` writes NaN/±Inf as null; `default` is called with any value no
        built-in rule serializes and returns a JSON value."""
    @property
    def registry_error(self) -> str | None:
        """Why the last periodic re-read of _schema.json failed; None when it did not."""
    @property
    def writer_id(self) -> str: ...
    @property
    def durability(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def emit(
        self,
        event_type: str,
        data: dict[str, Any],
        run_id: str | None = None,
        schema_version: int | None = None,
        event_id: str | None = None,
        ts_us: int | None = None,
    ) -> tuple[str, int]:
        """Validate, serialize and append; returns (file relative to events/, offset)."""
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def reload_schemas(self) -> None:
        """Re-read events/_schema.json now (also done on unknown types and every second)."""
    def commit_stats(self) -> dict[str, Any]:
        """Group mode: batches, events, max_latency_us (emit to durable), latency_log2_us."""
    def _set_fake_now(self, us: int | None) -> None:
        """Tests only: fix the clock to `us` microseconds since the epoch. Compiled only with
        the `test-hooks` cargo feature (the dev build of `make setup`), absent from a wheel."""
    def _abandon_after_write(self, on: bool) -> None:
        """Tests only (`test-hooks` build): in fsync mode, abandon the part between each line's
        write and its sync, as another thread's failed fdatasync of that part would."""

@final
class ScanBatch:
    """Columns of good events from one part, exported through the Arrow C data interface."""

    file: str
    start_offset: int
    end_offset: int
    pending_bytes: int
    file_size: int
    bad_lines: list[tuple[int, int, str]]
    error: str | None
    """Why the file could not be read at all (not a regular file, I/O error); else None."""
    num_rows: int
    def pieces(self, max_rows: int) -> list[ScanBatch]:
        """The batch's rows as pieces of at most `max_rows` rows each (sharing its columns, no
        copy): each keeps the batch's file and offsets, but no bad lines."""
    def columns(
        self,
    ) -> tuple[
        list[str],
        list[str],
        list[int],
        list[int],
        list[str | None],
        list[str],
        list[int],
        list[str],
        list[str | None],
        list[list[int] | None],
        list[list[float] | None],
        list[int],
        list[int],
    ]:
        """The columns as Python lists (a small round binds them as DuckDB parameters):
        event_id, event_type, schema_version, ts (microseconds since the epoch, UTC), run_id,
        writer, seq, data, shape, tint, tnum, offset, line_bytes."""
    def __arrow_c_array__(
        self, requested_schema: object | None = None
    ) -> tuple[object, object]: ...

def scan_files(
    events_dir: str,
    files: list[tuple[str, int]],
    strict: bool = False,
    max_bytes: int = 64 * 1024 * 1024,
    threads: int = 0,
) -> list[ScanBatch]:
    """Scan each (relative path, start offset) in parallel without the GIL. Columns:
    event_id, event_type, schema_version (int64), ts (timestamp[us, UTC]), run_id (nullable),
    writer, seq (int64), data (JSON text), offset (int64), line_bytes (int64). A file that
    cannot be read yields a batch with `error` set instead of raising; lines over 16 MiB are
    reported as bad."""

@final
class Scanner:
    """The one "scan until done" loop over part files. Each `next()` scans up to `width` files
    (0: all) in parallel without the GIL, `max_bytes` of each at most, and returns their
    batches; a file that advanced and has complete lines left comes back in a later round.
    A file is `(rel, start)` or `(rel, start, stop)`: with `stop`, no round starts at or past
    `stop` (a file that grew since it was listed waits; the last round may return lines beyond
    `stop`, as many as its read holds). An unreadable file yields one batch with `error` set;
    an unterminated tail is left pending. With `track_ids`, the scan keeps a 64-bit hash of
    each yielded row's event id (`ids_distinct`)."""

    def __new__(
        cls,
        events_dir: str,
        files: list[tuple[str, int]] | list[tuple[str, int, int]],
        strict: bool = False,
        max_bytes: int = 64 * 1024 * 1024,
        threads: int = 0,
        width: int = 0,
        track_ids: bool = False,
    ) -> Scanner: ...
    def __iter__(self) -> Scanner: ...
    def __next__(self) -> list[ScanBatch]: ...
    @property
    def ids_distinct(self) -> bool | None:
        """With `track_ids=True`: True when the event ids of every row yielded so far are
        distinct (no 64-bit hash of one seen twice), False when one may repeat (an exact check
        must decide), None when not tracked (or past about 2M rows)."""
    @property
    def pending(self) -> list[tuple[str, int]]:
        """Files still to scan, with their next offset."""

@final
class ScanStream:
    """The `ScanBatch`es an iterable yields (those without rows skipped) as one Arrow C stream,
    exported once (a second export raises ValueError): each batch's columns with `data` typed
    JSON (extension `arrow.json`), then `file` (dictionary-encoded). DuckDB pulls it without
    the GIL; the stream takes the GIL to advance the iterable, whose exception (or an item that
    is not a ScanBatch) ends the stream with an error."""

    def __new__(cls, batches: Iterable[ScanBatch]) -> ScanStream: ...
    def __arrow_c_schema__(self) -> object: ...
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

@final
class DirWatch:
    """Wakes when a file in one of the watched directories is written, created, moved in or
    deleted (Linux inotify); raises LedgerIOError when a directory cannot be watched."""

    def __new__(cls, dirs: list[str]) -> DirWatch: ...
    def wait(self, timeout_s: float) -> bool:
        """True when something changed since the last call; False after `timeout_s` seconds or
        when a signal arrived. Without the GIL."""

def check_line(line: bytes, strict: bool = False) -> str | None:
    """Why one line (without its newline) is not a valid v1 line, or None: the rules the
    scanner applies to every line of a part (size, UTF-8, I-JSON, envelope, crc, run id,
    artifact paths)."""

def check_json(text: bytes) -> str | None:
    """Why `text` is not one I-JSON value (duplicate key, NaN/Infinity, lone surrogate,
    depth, syntax; with the column), or None."""

def trial_shapes(
    data: list[str],
) -> list[tuple[str, list[int] | None, list[float] | None]]:
    """The shape and typed values the scanner stores for a `trial.recorded` event
    (`events.shape`, `tint`, `tnum`) of each `data` text."""

def check_run_id(run_id: str) -> None:
    """Raise `SchemaError` unless `run_id` matches the log's run-id rule
    (`[A-Za-z0-9][A-Za-z0-9._-]{0,127}`)."""

def quarantine(events_dir: str, rel: str, offset: int, data: bytes, reason: str) -> str:
    """Save `data` (bytes of `rel` at `offset`) under events/_quarantine/ as
    `<rel>@<offset>.<us>.bin` with a `.reason.json`, both fsynced; returns the .bin path."""

def to_json(obj: Any) -> bytes:
    """Serialize like emit() does (I-JSON checks included)."""

def _tape_matches_parse(obj: Any, nonfinite_null: bool = False) -> bool:
    """Tests only (a `test-hooks` build): whether the token tape emit() records while
    serializing `obj` (NaN/±Inf as null with `nonfinite_null`) equals the tape a parse of the
    written JSON gives."""

def _shape_matches_parse(obj: Any, nonfinite_null: bool = False) -> bool:
    """Tests only (a `test-hooks` build): whether the shape emit() records while serializing
    `obj` for validation by shape equals the shape of the written JSON text (where that text's
    shape is plain: no float with an exponent)."""

def install_sigterm_watchdog(callback: Callable[[], object], grace_ms: int) -> None:
    """A C-level SIGTERM handler chained to Python's; `callback()` runs under the GIL if the
    process still lives `grace_ms` after a SIGTERM (see ledgerx._process)."""

def day_of(ts_us: int) -> str: ...
def format_ts(ts_us: int) -> str: ...
def parse_ts(ts: str) -> int | None: ...
def crc32c(data: bytes) -> int: ...
def is_event_id(s: str) -> bool:
    """A UUID in its 36-character text form, any version: the one event_id rule."""

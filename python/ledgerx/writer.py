"""The write API: `Ledger` (one Rust writer per process), runs, phases and trials.

`emit()` goes straight to the Rust extension: the Python object is validated and serialized
in Rust, and write/fsync happen there without the GIL.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ledgerx import _core, _process
from ledgerx.config import events_dir, resolve_root
from ledgerx.errors import ClosedError, ConfigError, LedgerIOError
from ledgerx.run import Phase as Phase  # re-exported: ledgerx.writer.Phase
from ledgerx.run import Run, _core_check_run_id

Position = tuple[str, int]
"""Where an event landed: (part file relative to `events/`, byte offset of its line)."""

DURABILITY_MODES = ("fsync", "group", "os")

DEFAULT_HEARTBEAT_S = 60.0
"""A live run emits `run.heartbeat` this often (well inside the index's `stale_after`)."""


def new_run_id() -> str:
    """A fresh, sortable run id: `run-YYYYMMDDTHHMMSS-<8 hex>` (UTC)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"run-{stamp}-{secrets.token_hex(4)}"


def _seed_registry(events: Path) -> None:
    """Make sure `_schema.json` exists (the schema package owns its format)."""
    from ledgerx.schema import ensure_registry

    try:
        ensure_registry(events)
    except OSError as e:
        if isinstance(e, LedgerIOError):
            raise
        path = e.filename or events / "_schema.json"
        raise LedgerIOError(e.errno or 5, f"{path}: {e.strerror or e}", str(path)) from None


def _check_sizes(commit_interval_ms: Any, max_part_bytes: Any, max_event_bytes: Any) -> None:
    """Whole numbers in range, checked before anything opens (ConfigError, not a TypeError or
    OverflowError from the binding)."""
    for name, v, low in (
        ("commit_interval_ms", commit_interval_ms, 0),
        ("max_part_bytes", max_part_bytes, 1),
        ("max_event_bytes", max_event_bytes, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v < 2**63:
            raise ConfigError(f"{name} must be a whole number >= {low}, not {v!r}")


class Ledger:
    """An open ledger root. One per process is enough; it is safe to share across threads.

    Durability: "group" (default: emit queues, a background flusher fdatasyncs within
    `commit_interval_ms`), "fsync" (emit returns once the line is fdatasynced) or "os".
    Values: `nonfinite="error"` (default) refuses NaN/±Inf, `"null"` records them as null;
    `default=fn` converts values no built-in rule covers (like orjson's `default`).
    `heartbeat_s`: how often a live run emits `run.heartbeat` (0 or None: never).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        durability: str = "group",
        commit_interval_ms: int = 2,
        max_part_bytes: int = 100_000_000,
        max_event_bytes: int = 16 * 1024 * 1024,
        writer_id: str | None = None,
        nonfinite: str = "error",
        default: Any = None,
        heartbeat_s: float | None = DEFAULT_HEARTBEAT_S,
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ConfigError(f"durability must be one of {DURABILITY_MODES}, not {durability!r}")
        _check_sizes(commit_interval_ms, max_part_bytes, max_event_bytes)
        self.root = resolve_root(root)
        self.events_dir = events_dir(self.root)
        self.durability = durability
        self._options: dict[str, Any] = dict(
            durability=durability,
            commit_interval_ms=commit_interval_ms,
            max_part_bytes=max_part_bytes,
            max_event_bytes=max_event_bytes,
            writer_id=writer_id,
            nonfinite=nonfinite,
            default=default,
        )
        self.heartbeat_s = _check_heartbeat(heartbeat_s)
        self._run_ids: set[str] = set()
        self._closed = False
        self._writer: _core.Writer | None = None
        self._open_writer()
        _seed_registry(self.events_dir)
        self._schema: Any = None
        _process.add_ledger(self)
        _process.install(after_fork=_forget_default)

    def _open_writer(self) -> _core.Writer:
        w = _core.Writer(str(self.root), **self._options)
        self._writer = w
        # Bind the Rust method directly: no Python frame on the hot path. (Its parameters after
        # `data` are positional-or-keyword where the signature below makes them keyword-only.)
        self.emit = w.emit  # type: ignore[method-assign,assignment]
        return w

    # The signature users see; replaced per instance by the Rust bound method above.
    def emit(  # type: ignore[no-redef]
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        run_id: str | None = None,
        schema_version: int | None = None,
    ) -> Position:
        """Validate and append one event; returns its position (file, offset).

        `data` is a dict (str keys) of JSON values: dict, list, tuple, str, int (64-bit),
        finite float, bool, None. Anything else raises SchemaError naming the path."""
        return self._live_writer().emit(event_type, data, run_id, schema_version)

    def _live_writer(self) -> _core.Writer:
        if self._closed:
            raise ClosedError("ledger is closed")
        return self._writer if self._writer is not None else self._open_writer()

    def _after_fork_in_child(self) -> None:
        # The child must never share its parent's writer: drop it (the Rust side leaves the
        # parent's part alone) and open a fresh writer lazily on the first emit.
        self._writer = None
        if not self._closed:
            self.emit = self._emit_after_fork  # type: ignore[method-assign]

    def _emit_after_fork(
        self,
        event_type: str,
        data: Any,
        run_id: str | None = None,
        schema_version: int | None = None,
    ) -> Position:
        return self._live_writer().emit(event_type, data, run_id, schema_version)

    @property
    def writer_id(self) -> str:
        return self._live_writer().writer_id

    @property
    def registry_error(self) -> str | None:
        """Why the last periodic re-read of events/_schema.json failed (None when it did not):
        meanwhile emits are validated with the last good registry. Also logged on stderr."""
        return self._live_writer().registry_error

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def schema(self) -> Any:
        """The schema registry of this root (`register`, `get`, `list`)."""
        if self._schema is None:
            from ledgerx.schema import SchemaRegistry

            self._schema = SchemaRegistry(self.events_dir, on_change=self._reload_schemas)
        return self._schema

    def _reload_schemas(self) -> None:
        if self._writer is not None and not self._closed:
            self._writer.reload_schemas()

    def commit_stats(self) -> dict[str, Any]:
        """Group mode: batches, events and emit-to-durable latency of each batch's oldest event."""
        return self._live_writer().commit_stats()

    def flush(self) -> None:
        """Block until every event emitted so far is durable; raises a pending disk error."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and release the part file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.emit = self._emit_closed  # type: ignore[method-assign]
        # The writer stays reachable until it is closed: a SIGTERM between two of these lines
        # must still find it to flush (the handler flushes `_writer` of every live ledger).
        w = self._writer
        if w is not None:
            w.close()
        self._writer = None
        _process.drop_ledger(self)

    def _emit_closed(self, *args: Any, **kwargs: Any) -> Position:
        raise ClosedError(f"ledger at {self.root} is closed")

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_indexed(self, position: Position, timeout: float = 60.0) -> None:
        """Read-your-writes: block until the index includes the event at `position`."""
        from ledgerx.reader import wait_indexed

        self.flush()
        wait_indexed(self.root, position, timeout=timeout)

    def run(
        self,
        *,
        run_id: str | None = None,
        run_kind: str,
        config: Mapping[str, Any],
        data_fingerprint: str,
        tags: Mapping[str, Any] | None = None,
        resume: bool = False,
        heartbeat_s: float | None = None,
    ) -> Run:
        """A run as a context manager: created+started on enter, completed or failed on exit
        (`run.start()` / `run.end()` do the same without `with`).

        A run id is never silently reused: entering a run whose id a run of this root already
        used (any process; a claim file under `<root>/.ledgerx/runs/`) raises RunStateError
        unless `resume=True`, which records a new attempt (`run.started` with `resumed: true`,
        no second `run.created`).
        `heartbeat_s` overrides the ledger's heartbeat interval for this run."""
        rid = run_id if run_id is not None else new_run_id()
        hb = self.heartbeat_s if heartbeat_s is None else _check_heartbeat(heartbeat_s)
        run = Run(self, rid, run_kind, config, data_fingerprint, tags)
        run._resume, run._heartbeat_s = resume, hb
        return run

    def _claim_run(self, run_id: str) -> bool:
        """Claim `run_id` for a run of this root; True when it was claimed before (by this
        ledger or any process that ran it here). The claim is a file created with O_EXCL under
        `<root>/.ledgerx/runs/` — no DuckDB on the write path, exact across processes. Runs
        written without `ledger.run()` (the CLI, the Node emitter, hand-written lines) leave no
        claim, so their ids are not seen (docs/index.md)."""
        if run_id in self._run_ids:
            return True
        _core_check_run_id(run_id)
        claims = self.root / ".ledgerx" / "runs"
        try:
            claims.mkdir(parents=True, exist_ok=True)
            fd = os.open(
                claims / run_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666
            )
        except FileExistsError:
            return True
        except OSError as e:
            raise LedgerIOError(
                e.errno or 5, f"cannot claim run id: {e.strerror}", str(claims)
            ) from None
        os.close(fd)
        return False

    # The seed's names, kept for code that emitted these events by hand.
    def emit_run_created(
        self,
        run_id: str,
        run_kind: str,
        config: Mapping[str, Any],
        data_fingerprint: str,
        tags: Mapping[str, Any] | None = None,
    ) -> Position:
        data: dict[str, Any] = {
            "run_kind": run_kind,
            "config": config,
            "data_fingerprint": data_fingerprint,
        }
        if tags is not None:
            data["tags"] = tags
        return self.emit("run.created", data, run_id=run_id)

    def emit_run_started(self, run_id: str, **extra: Any) -> Position:
        return self.emit(
            "run.started",
            {"host": socket.gethostname(), "pid": os.getpid(), **extra},
            run_id=run_id,
        )

    def emit_run_completed(
        self, run_id: str, summary: Mapping[str, Any], artifact_paths: list[str] | None = None
    ) -> Position:
        return self.emit(
            "run.completed",
            {"summary": summary, "artifact_paths": list(artifact_paths or [])},
            run_id=run_id,
        )

    def emit_run_failed(self, run_id: str, error: str, traceback: str | None = None) -> Position:
        return self.emit("run.failed", {"error": error, "traceback": traceback}, run_id=run_id)

    def emit_phase_started(self, run_id: str, phase: str, phase_index: int) -> Position:
        return self.emit(
            "phase.started", {"phase": phase, "phase_index": phase_index}, run_id=run_id
        )

    def emit_phase_completed(
        self,
        run_id: str,
        phase: str,
        duration_ms: float,
        output_summary: Mapping[str, Any] | None = None,
    ) -> Position:
        data: dict[str, Any] = {"phase": phase, "duration_ms": duration_ms}
        if output_summary is not None:
            data["output_summary"] = output_summary
        return self.emit("phase.completed", data, run_id=run_id)

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.durability
        return f"<ledgerx.Ledger {self.root} ({state})>"


def _check_heartbeat(v: float | None) -> float | None:
    if v is None or v == 0:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
        raise ConfigError(f"heartbeat_s must be a positive number of seconds or 0, not {v!r}")
    return float(v)


def _forget_default() -> None:
    # After fork the child opens its own default ledger on first use.
    global _DEFAULT
    _DEFAULT = None


# --- module-level default ledger ------------------------------------------------------------

_DEFAULT: Ledger | None = None
_DEFAULT_LOCK = threading.Lock()


def open(  # noqa: A001 - mirrors the builtin on purpose: ledgerx.open(root)
    root: str | os.PathLike[str] | None = None, **options: Any
) -> Ledger:
    """Open a ledger at `root` (default `$LEDGERX_ROOT`, else ./data/ledger)."""
    return Ledger(root, **options)


def default_ledger() -> Ledger:
    """The process-wide ledger behind `ledgerx.emit`, opened from `$LEDGERX_ROOT` on first use."""
    global _DEFAULT
    led = _DEFAULT
    if led is None or led.closed:
        with _DEFAULT_LOCK:
            if _DEFAULT is None or _DEFAULT.closed:
                _DEFAULT = Ledger(None)
            led = _DEFAULT
    return led


def emit(
    event_type: str,
    data: dict[str, Any],
    *,
    run_id: str | None = None,
    schema_version: int | None = None,
) -> Position:
    """Emit on the default ledger (`$LEDGERX_ROOT`)."""
    return default_ledger().emit(event_type, data, run_id=run_id, schema_version=schema_version)


def flush() -> None:
    """Flush the default ledger, if one is open."""
    if _DEFAULT is not None:
        _DEFAULT.flush()


def emit_run_created(
    run_id: str, run_kind: str, config: Mapping[str, Any], data_fingerprint: str
) -> Position:
    return default_ledger().emit_run_created(run_id, run_kind, config, data_fingerprint)


def emit_run_started(run_id: str) -> Position:
    return default_ledger().emit_run_started(run_id)


def emit_run_completed(
    run_id: str, summary: Mapping[str, Any], artifact_paths: list[str] | None = None
) -> Position:
    return default_ledger().emit_run_completed(run_id, summary, artifact_paths)


def emit_phase_started(run_id: str, phase: str, phase_index: int) -> Position:
    return default_ledger().emit_phase_started(run_id, phase, phase_index)


def emit_phase_completed(
    run_id: str, phase: str, duration_ms: float, output_summary: Mapping[str, Any] | None = None
) -> Position:
    return default_ledger().emit_phase_completed(run_id, phase, duration_ms, output_summary)

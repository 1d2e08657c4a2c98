"""Runs and phases: `Run` (created+started on enter, completed or failed on exit, heartbeats,
signal handling) and `Phase`, over a `Ledger`'s emit. Moved out of writer.py unchanged."""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ledgerx import _core, _process
from ledgerx.errors import RunStateError, SchemaError

if TYPE_CHECKING:
    from ledgerx.writer import Ledger, Position


class Phase:
    """A timed phase; set `output_summary` inside the block to record it."""

    def __init__(self, run: Run, name: str, index: int) -> None:
        self.run = run
        self.name = name
        self.index = index
        self.output_summary: dict[str, Any] = {}
        self.duration_ms: float | None = None


class Run:
    """One run's events. Use through `ledger.run(...)`, as `with ... as run:` (or `run.start()`
    then `run.end()`); events before the start or after the end are refused."""

    def __init__(
        self,
        ledger: Ledger,
        run_id: str,
        run_kind: str,
        config: Mapping[str, Any],
        data_fingerprint: str,
        tags: Mapping[str, Any] | None,
    ) -> None:
        _core_check_run_id(run_id)
        self.ledger = ledger
        self.run_id = run_id
        self.run_kind = run_kind
        self.config = config
        self.data_fingerprint = data_fingerprint
        self.tags = tags
        self.summary: dict[str, Any] = {}
        self.artifact_paths: list[str] = []
        self.resumed = False
        self._phase_index = 0
        self._artifacts: Any = None
        self._resume = False
        self._heartbeat_s: float | None = None
        self._state = "new"  # new -> live -> ended
        self._beat: threading.Event | None = None

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> Run:
        """Emit run.created (unless resuming) and run.started; start the heartbeat."""
        if self._state != "new":
            raise RunStateError(f"run {self.run_id} was already started")
        led = self.ledger
        exists = led._claim_run(self.run_id)
        if exists and not self._resume:
            raise RunStateError(
                f"run {self.run_id} already exists; pass resume=True to record a resumed "
                "attempt, or leave run_id out for a fresh id"
            )
        if exists:
            self.resumed = True
            led.emit_run_started(self.run_id, resumed=True)
        else:
            led.emit_run_created(
                self.run_id, self.run_kind, self.config, self.data_fingerprint, self.tags
            )
            led.emit_run_started(self.run_id)
        led._run_ids.add(self.run_id)
        self._state = "live"
        _process.run_entered(self)
        if self._heartbeat_s:
            self._beat = threading.Event()
            threading.Thread(
                target=self._heartbeat_loop,
                args=(self._beat, self._heartbeat_s),
                name=f"ledgerx-heartbeat-{self.run_id}",
                daemon=True,
            ).start()
        return self

    def end(self, error: BaseException | str | None = None) -> None:
        """run.completed (no error) or run.failed, then flush: a run boundary is durable."""
        if self._state != "live":
            raise RunStateError(f"run {self.run_id} is not live (state: {self._state})")
        self._leave()
        if error is None:
            self.ledger.emit_run_completed(self.run_id, self.summary, self.artifact_paths)
        elif isinstance(error, BaseException):
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self.ledger.emit_run_failed(self.run_id, _reason(error), text)
        else:
            self.ledger.emit_run_failed(self.run_id, str(error))
        self.ledger.flush()

    def _leave(self) -> None:
        self._state = "ended"
        _process.run_left(self)
        if self._beat is not None:
            self._beat.set()

    def _end_by_signal(self, reason: str, frame: Any) -> None:
        """From the SIGTERM handler: takes no lock, never raises for an ended run."""
        if self._state != "live":
            return
        self._leave()
        stack = "".join(traceback.format_stack(frame)) if frame is not None else None
        self.ledger.emit_run_failed(self.run_id, reason, stack)

    def _heartbeat_loop(self, stop: threading.Event, every: float) -> None:
        # Signals go to the main thread, where Python runs their handlers promptly.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        while not stop.wait(every):
            try:
                self.ledger.emit("run.heartbeat", {}, run_id=self.run_id)
            except Exception:  # noqa: BLE001 - a closed ledger or a disk fault ends the beat
                return

    def __enter__(self) -> Run:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == "live":
            # sys.exit(0) inside the block is a normal end, not a failure.
            clean_exit = isinstance(exc, SystemExit) and exc.code in (0, None)
            self.end(None if clean_exit else exc)

    def _live(self) -> None:
        if self._state != "live":
            hint = (
                "use `with ledger.run(...) as run:` or call run.start() first"
                if self._state == "new"
                else "it has ended"
            )
            raise RunStateError(f"run {self.run_id} is not live: {hint}")

    # -- events ----------------------------------------------------------------------------------

    def emit(
        self, event_type: str, data: dict[str, Any], schema_version: int | None = None
    ) -> Position:
        self._live()
        return self.ledger.emit(event_type, data, run_id=self.run_id, schema_version=schema_version)

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """phase.started on enter; phase.completed with the measured duration on success.
        A phase that raises gets no phase.completed: the run.failed event explains it."""
        self._live()
        p = Phase(self, name, self._phase_index)
        self._phase_index += 1
        self.ledger.emit_phase_started(self.run_id, name, p.index)
        start = time.perf_counter()
        yield p
        p.duration_ms = (time.perf_counter() - start) * 1000.0
        self.ledger.emit_phase_completed(self.run_id, name, p.duration_ms, p.output_summary)

    def trial(
        self, trial_id: int | str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> Position:
        return self.emit(
            "trial.recorded", {"trial_id": trial_id, "params": params, "metrics": metrics}
        )

    def baseline(self, baseline: str, metrics: Mapping[str, float]) -> Position:
        return self.emit("baseline.completed", {"baseline": baseline, "metrics": metrics})

    def heartbeat(self) -> Position:
        return self.emit("run.heartbeat", {})

    @property
    def artifacts(self) -> Any:
        """Artifact files of this run (`write_table`, `write_json`)."""
        self._live()
        if self._artifacts is None:
            from ledgerx.artifacts import RunArtifacts

            self._artifacts = RunArtifacts(self)
        return self._artifacts


def _reason(exc: BaseException) -> str:
    """A readable one-line reason for run.failed (KeyboardInterrupt has no message)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT / KeyboardInterrupt)"
    msg = str(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _core_check_run_id(run_id: str) -> None:
    """The log's run-id rule, owned by the core (`_core.check_run_id`); a non-string is refused
    here with the same message."""
    if not isinstance(run_id, str):
        raise SchemaError(
            f"invalid run_id {run_id!r}: must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}"
        )
    _core.check_run_id(run_id)

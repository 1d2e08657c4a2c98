"""`ledgerx daemon`: keep the index caught up with the log, with a health endpoint.

Each cycle calls the indexer's `build_index` (catch up and publish; a no-op when nothing is
new), then sleeps until the log grows (a stat poll of the newest days' part files every
`WAKE_POLL_S`; `wake=False` turns it off) or `interval` seconds pass, whichever comes first.
One daemon per root: it holds an flock on `.ledgerx/daemon.lock` under the root for its whole
life (not under `index/`, which may be deleted and rebuilt at any time). SIGTERM/SIGINT let the
current cycle finish, then the daemon exits 0. A failing cycle is logged and retried with
exponential backoff (0.5 s doubling, capped at 300 s); it never ends the daemon. A cycle that
finds the index lock taken (a manual `ledgerx rebuild`) is skipped and retried soon, without
counting as a failure.

Health (stdlib http.server in a thread, 127.0.0.1 by default): `/healthz` is JSON, 200 when
healthy and 503 when the age of the oldest unindexed event passes `max_lag_seconds` or the
consecutive failures reach `max_failures`; `/metrics` is Prometheus text (`ledgerx_*`). The lag
is measured incrementally (`ledgerx.index.lag`) at most every `HEALTH_CACHE_S`, by one request
at a time while the others answer from the last measure; at most `HEALTH_MAX_CONNECTIONS`
connections are served at once (more are closed) and each gets `HEALTH_TIMEOUT_S` to send its
request (docs/security.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ledgerx.config import events_dir, resolve_root
from ledgerx.errors import ConfigError, IndexBusyError, LedgerError
from ledgerx.fsutil import open_lock_file

log = logging.getLogger("ledgerx.daemon")

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 300.0
BUSY_RETRY_S = 1.0
HEALTH_CACHE_S = 0.5
HEALTH_TIMEOUT_S = 5.0
HEALTH_MAX_CONNECTIONS = 16
# Between cycles the daemon sleeps on a watch of the log's directory and its newest WAKE_DAYS
# day directories (`watch_log`), looking at the sizes of their part files (and the list of
# days) when woken or every WATCH_SLICE_S, and starts the next cycle as soon as they change.
# Where no watch can be made it polls them every WAKE_POLL_S instead.
WAKE_POLL_S = 0.005
WATCH_SLICE_S = 0.05
WAKE_DAYS = 2


class DaemonBusyError(LedgerError):
    """Another daemon already runs on this root."""


@contextlib.contextmanager
def daemon_lock(root: Path) -> Iterator[None]:
    """One daemon per root: a non-blocking flock on <root>/.ledgerx/daemon.lock, dropped on
    exit or death (the kernel releases it, so a SIGKILLed daemon never blocks its successor).
    Outside index/: deleting the derived index under a running daemon must not let a second
    daemon start."""
    d = root / ".ledgerx"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "daemon.lock"
    fd = open_lock_file(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise DaemonBusyError(
                f"another daemon is already running on {root}"
                + (f" (pid {holder})" if holder else "")
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def quarantine_stats(root: Path) -> tuple[int, int]:
    """(files, bytes) of `events/_quarantine/*.bin`: log bytes that were cut or set aside."""
    q = events_dir(root) / "_quarantine"
    n = size = 0
    if q.is_dir():
        for e in os.scandir(q):
            if e.name.endswith(".bin") and e.is_file(follow_symlinks=False):
                n += 1
                size += e.stat(follow_symlinks=False).st_size
    return n, size


def growth_mark(ev: Path) -> tuple[Any, ...]:
    """What changes when the log grows: the day directories, and the names, sizes and mtimes of
    the part files of the newest `WAKE_DAYS` days (a writer appends to today's part, or starts a
    new part or day; an fsync-mode append lands in zeros written ahead inside the file's size,
    so only its mtime moves). A few stat calls: cheap enough to poll every `WAKE_POLL_S`."""
    try:
        days = sorted(e.name for e in os.scandir(ev) if e.name.startswith("day="))
    except OSError:
        return ()
    parts: list[tuple[str, str, int, int]] = []
    for d in days[-WAKE_DAYS:]:
        try:
            with os.scandir(ev / d) as it:
                for f in it:
                    if f.name.endswith(".jsonl"):
                        st = f.stat(follow_symlinks=False)
                        parts.append((d, f.name, st.st_size, st.st_mtime_ns))
        except OSError:
            continue
    return (tuple(days), tuple(sorted(parts)))


def watch_log(ev: Path, mark: tuple[Any, ...]) -> Any:
    """A `_core.DirWatch` of `ev` and the newest days of `mark` (`growth_mark`), or None where
    none can be made (no inotify, a directory gone): the caller polls instead."""
    from ledgerx import _core

    days = mark[0][-WAKE_DAYS:] if mark else ()
    try:
        return _core.DirWatch([str(ev)] + [str(ev / d) for d in days])
    except OSError:
        return None


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).isoformat() if t is not None else None


@dataclass
class DaemonState:
    """What the daemon has done so far; read by the health thread under `lock`."""

    started_at: float = field(default_factory=time.time)
    cycles: int = 0
    failures_total: int = 0
    consecutive_failures: int = 0
    busy_skips: int = 0
    events_indexed_total: int = 0
    last_success_at: float | None = None
    last_cycle_at: float | None = None
    last_cycle_seconds: float | None = None
    last_cycle: dict[str, Any] | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    in_cycle: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Daemon:
    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        interval: float = 30.0,
        max_lag_seconds: float = 300.0,
        max_failures: int = 3,
        stale_after: float | None = None,
        health_host: str = "127.0.0.1",
        health_port: int | None = None,
        verbose: bool = False,
        ship_to: str | None = None,
        endpoint_url: str | None = None,
        wake: bool = True,
    ) -> None:
        if interval <= 0:
            raise ConfigError("--interval must be > 0 seconds")
        if max_failures < 1:
            raise ConfigError("--max-failures must be >= 1")
        self.root = resolve_root(root)
        self.interval = float(interval)
        self.max_lag_seconds = float(max_lag_seconds)
        self.max_failures = int(max_failures)
        self.stale_after = stale_after
        self.health_host = health_host
        self.health_port = health_port
        self.verbose = verbose
        self.wake = wake
        self.state = DaemonState()
        # `--ship-to`: each cycle also ships the log to object storage (docs/scale.md).
        if ship_to is not None:
            from ledgerx.remote.store import check_url

            check_url(ship_to)
        self.ship_to, self.endpoint_url = ship_to, endpoint_url
        self._shipper: Any = None
        self.stop = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self._lag_lock = threading.Lock()
        self._lag_cache: tuple[float, dict[str, Any], str | None, tuple[int, int]] | None = None
        self._lag_tracker: Any = None

    # -- the loop --------------------------------------------------------------------------------

    def cycle(self) -> bool:
        """One catch-up-and-publish round. True on success (or a busy skip)."""
        import ledgerx.legacy  # noqa: F401 - registers the legacy projection's publish hook
        from ledgerx.index import build_index

        st = self.state
        with st.lock:
            st.in_cycle = True
        t0 = time.monotonic()
        try:
            rep = build_index(self.root, stale_after=self.stale_after)
            self._ship()
        except IndexBusyError as e:
            with st.lock:
                st.busy_skips += 1
                st.in_cycle = False
            log.info("index busy, cycle skipped: %s", e)
            return True
        except Exception as e:  # noqa: BLE001 - any failure is logged and retried, never fatal
            msg = f"{type(e).__name__}: {' '.join(str(e).split())}"
            with st.lock:
                st.cycles += 1
                st.failures_total += 1
                st.consecutive_failures += 1
                st.last_error, st.last_error_at = msg, time.time()
                st.last_cycle_at = st.last_error_at
                st.last_cycle_seconds = time.monotonic() - t0
                st.in_cycle = False
                n = st.consecutive_failures
            log.error("cycle failed (%d in a row): %s", n, msg)
            if self.verbose:
                log.error("%s", traceback.format_exc().rstrip())
            return False
        now = time.time()
        with st.lock:
            st.cycles += 1
            st.consecutive_failures = 0
            st.events_indexed_total += rep.events
            st.last_success_at = st.last_cycle_at = now
            st.last_cycle_seconds = time.monotonic() - t0
            st.last_cycle = {
                "mode": rep.mode,
                "events": rep.events,
                "bad_lines": rep.bad_lines,
                "bytes": rep.bytes,
                "files": rep.files,
                "seconds": round(rep.seconds, 3),
                "gen": rep.gen,
                "at": _iso(now),
            }
            st.in_cycle = False
        if rep.mode != "noop":
            log.info("%s", rep.summary())
        elif self.verbose:
            log.info("no new events (%.3f s)", rep.seconds)
        for w in rep.warnings[:20]:
            log.warning("%s", w)
        return True

    def _ship(self) -> None:
        if self.ship_to is None:
            return
        if self._shipper is None:
            from ledgerx.remote.ship import Shipper

            self._shipper = Shipper(self.root, self.ship_to, endpoint_url=self.endpoint_url)
        srep = self._shipper.round()
        if srep.objects or self.verbose:
            log.info("%s", srep.summary())

    def backoff(self) -> float:
        k = self.state.consecutive_failures
        return min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** max(0, k - 1))

    def run(self, once: bool = False) -> int:
        """Hold the daemon lock and loop until SIGTERM/SIGINT (or one cycle with `once`).
        Returns the exit status: 0, or 1 when `once` and the cycle failed."""
        with daemon_lock(self.root):
            self._install_signals()
            if self.health_port is not None:
                self.start_health()
            log.info(
                "started on %s (pid %d, interval %.3g s%s)",
                self.root,
                os.getpid(),
                self.interval,
                f", health on http://{self.health_host}:{self.port}/healthz" if self.server else "",
            )
            ok = True
            ev = events_dir(self.root)
            try:
                while not self.stop.is_set():
                    mark = growth_mark(ev) if self.wake else ()  # before: growth during a cycle
                    ok = self.cycle()  # starts the next one at once
                    if once:
                        break
                    if not ok:
                        delay = self.backoff()
                        log.info("retrying in %.1f s", delay)
                        self.stop.wait(delay)
                    elif self.state.busy_skips and self.state.last_cycle_at is None:
                        self.stop.wait(min(self.interval, BUSY_RETRY_S))
                    else:
                        self.sleep(ev, mark)
            finally:
                self.stop_health()
                if self._shipper is not None:
                    self._shipper.close()
            log.info("stopped")
            return 0 if ok or not once else 1

    def sleep(self, ev: Path, mark: tuple[Any, ...]) -> None:
        """Until the next cycle: `interval` seconds, or less when the log grows past `mark`
        (with `wake`: woken by `watch_log`, made before the first look so that no change slips
        between them), or stop."""
        from ledgerx.index.dbfile import prepare_work_db

        prepare_work_db()  # the rounds' DuckDB, made once, while nothing happens
        if not self.wake:
            self.stop.wait(self.interval)
            return
        deadline = time.monotonic() + self.interval
        watch = watch_log(ev, mark)
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or growth_mark(ev) != mark:
                return
            if watch is None:
                self.stop.wait(min(WAKE_POLL_S, left))
            else:
                watch.wait(min(WATCH_SLICE_S, left))

    def _install_signals(self) -> None:
        def on_signal(signum: int, frame: object) -> None:
            if not self.stop.is_set():
                log.info("%s: finishing the current cycle", signal.Signals(signum).name)
            self.stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)

    # -- health ------------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        return self.server.server_address[1] if self.server else None  # type: ignore[return-value]

    def start_health(self) -> None:
        daemon = self
        if not is_loopback(self.health_host):
            log.warning(
                "health endpoint on %s, not loopback: anyone who can reach it sees lag, counters "
                "and errors (no authentication)",
                self.health_host,
            )

        class Handler(BaseHTTPRequestHandler):
            timeout = HEALTH_TIMEOUT_S  # a connection that sends nothing is closed

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/healthz":
                        code, body = daemon.health()
                        payload = (json.dumps(body, default=str) + "\n").encode()
                        ctype = "application/json"
                    elif path == "/metrics":
                        code, payload = 200, daemon.metrics().encode()
                        ctype = "text/plain; version=0.0.4; charset=utf-8"
                    else:
                        code, payload, ctype = 404, b"not found\n", "text/plain"
                except Exception as e:  # noqa: BLE001 - the endpoint answers, whatever happens
                    code, ctype = 500, "application/json"
                    payload = json.dumps({"status": "error", "error": str(e)}).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, fmt: str, *args: Any) -> None:
                if daemon.verbose:
                    log.debug("health: " + fmt, *args)

        self.server = BoundedHTTPServer((self.health_host, self.health_port or 0), Handler)
        t = threading.Thread(target=self.server.serve_forever, name="ledgerx-health", daemon=True)
        t.start()

    def stop_health(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def lag(self) -> dict[str, Any]:
        """Lag of the published index behind the log, counted incrementally: only log bytes
        not seen by an earlier call are scanned (`ledgerx.index.lag.LagTracker`)."""
        if self._lag_tracker is None:
            from ledgerx.index.lag import LagTracker

            self._lag_tracker = LagTracker(self.root)
        return self._lag_tracker.measure()  # type: ignore[no-any-return]

    def _measured(self) -> tuple[dict[str, Any], str | None, tuple[int, int]]:
        """(lag, lag error, quarantine) at most HEALTH_CACHE_S old. One request measures at a
        time; concurrent ones answer from the last measure instead of queueing behind it."""
        cache = self._lag_cache
        if cache is not None and time.monotonic() - cache[0] < HEALTH_CACHE_S:
            return cache[1], cache[2], cache[3]
        # With no measure yet the first requests wait for one (bounded); later ones never wait.
        got = (
            self._lag_lock.acquire(timeout=HEALTH_TIMEOUT_S)
            if cache is None
            else (self._lag_lock.acquire(blocking=False))
        )
        if not got:
            if cache is not None:
                return cache[1], cache[2], cache[3]
            unknown = {"events": None, "bytes": None, "seconds": None}
            return unknown, "the first lag measure is still running", (0, 0)
        try:
            lag: dict[str, Any]
            lag_error = None
            try:
                lag = self.lag()
            except Exception as e:  # noqa: BLE001 - reported, and unhealthy
                lag = {"events": None, "bytes": None, "seconds": None}
                lag_error = f"{type(e).__name__}: {' '.join(str(e).split())}"
            quarantine = quarantine_stats(self.root)
            self._lag_cache = (time.monotonic(), lag, lag_error, quarantine)
            return lag, lag_error, quarantine
        finally:
            self._lag_lock.release()

    def health(self) -> tuple[int, dict[str, Any]]:
        lag, lag_error, (qfiles, qbytes) = self._measured()
        st = self.state
        with st.lock:
            body: dict[str, Any] = {
                "root": self.root.name,
                "pid": os.getpid(),
                "uptime_s": round(time.time() - st.started_at, 3),
                "interval_s": self.interval,
                "lag": lag,
                "cycles": st.cycles,
                "failures_total": st.failures_total,
                "consecutive_failures": st.consecutive_failures,
                "busy_skips": st.busy_skips,
                "in_cycle": st.in_cycle,
                "last_success_at": _iso(st.last_success_at),
                "last_cycle": st.last_cycle,
                "last_error": st.last_error,
                "last_error_at": _iso(st.last_error_at),
                "quarantine": {"files": qfiles, "bytes": qbytes},
                "thresholds": {
                    "max_lag_seconds": self.max_lag_seconds,
                    "max_failures": self.max_failures,
                },
            }
            reasons = []
            if st.consecutive_failures >= self.max_failures:
                reasons.append(f"{st.consecutive_failures} consecutive failed cycles")
        if lag_error is not None:
            reasons.append(f"lag unknown: {lag_error}")
        elif lag["seconds"] is not None and lag["seconds"] > self.max_lag_seconds:
            reasons.append(
                f"oldest unindexed event is {lag['seconds']:.1f} s old "
                f"(> {self.max_lag_seconds:g} s)"
            )
        body["status"] = "unhealthy" if reasons else "ok"
        body["healthy"] = not reasons
        body["reasons"] = reasons
        return (503 if reasons else 200), body

    def metrics(self) -> str:
        code, h = self.health()
        lag = h["lag"]
        rows: list[tuple[str, str, str, Any]] = [
            ("ledgerx_up", "gauge", "1 while the daemon runs", 1),
            ("ledgerx_healthy", "gauge", "1 when /healthz answers 200", int(code == 200)),
            ("ledgerx_index_lag_events", "gauge", "events in the log not yet indexed",
             lag.get("events")),
            ("ledgerx_index_lag_bytes", "gauge", "log bytes not yet indexed", lag.get("bytes")),
            ("ledgerx_index_lag_seconds", "gauge", "age of the oldest unindexed event",
             lag.get("seconds") or 0),
            ("ledgerx_indexed_events", "gauge", "events in the published index",
             lag.get("indexed_events")),
            ("ledgerx_daemon_cycles_total", "counter", "indexing cycles run", h["cycles"]),
            ("ledgerx_daemon_cycle_failures_total", "counter", "indexing cycles that failed",
             h["failures_total"]),
            ("ledgerx_daemon_consecutive_failures", "gauge", "failed cycles since the last success",
             h["consecutive_failures"]),
            ("ledgerx_daemon_busy_skips_total", "counter",
             "cycles skipped because another indexer held the lock", h["busy_skips"]),
            ("ledgerx_daemon_events_indexed_total", "counter", "events indexed by this daemon",
             self.state.events_indexed_total),
            ("ledgerx_daemon_last_success_timestamp_seconds", "gauge",
             "unix time of the last successful cycle", self.state.last_success_at or 0),
            ("ledgerx_daemon_last_cycle_duration_seconds", "gauge", "duration of the last cycle",
             self.state.last_cycle_seconds or 0),
            ("ledgerx_quarantine_files", "gauge", "files in events/_quarantine",
             h["quarantine"]["files"]),
            ("ledgerx_quarantine_bytes", "gauge", "bytes in events/_quarantine",
             h["quarantine"]["bytes"]),
        ]  # fmt: skip
        out = []
        for name, kind, help_, value in rows:
            if value is None:
                continue  # unknown (the lag scan failed): absent, not a fake zero
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.append(
                f"{name} {float(value)!r}" if isinstance(value, float) else f"{name} {value}"
            )
        return "\n".join(out) + "\n"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, but at most HEALTH_MAX_CONNECTIONS at once: a connection over
    the bound is closed at once instead of starting another thread (200 half-open connections
    used to make 200 threads that never ended)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(HEALTH_MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s ledgerx-daemon[%(process)d] %(levelname)s %(message)s")
    )
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False

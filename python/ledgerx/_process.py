"""Process-wide hooks: close ledgers at exit, end live runs and flush on SIGTERM, give a forked
child fresh writers.

"At exit" includes the children that `multiprocessing` starts with `fork` or `forkserver`: they
end with `os._exit()` right after `Process._bootstrap()`, so `atexit` never runs there, and a
Pool worker that leaves on its exit sentinel (`Pool.close()`, and often `Pool.terminate()`)
would take its unflushed group-mode events with it. multiprocessing's own exit step does run
there (`util._exit_function`, which runs the `util.Finalize` callbacks with an exit priority,
the way its Queue flushes its feeder thread), so `_close_all` is registered with it too.

The SIGTERM handler runs between two bytecodes of whatever the main thread was doing, possibly
inside `Ledger.close()` or inside this module. So it takes no lock: the registries below are
plain dicts whose single operations (set, pop, `list(values())`) are atomic under the GIL, and
a handler that runs again (a second SIGTERM) only repeats idempotent steps.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

_LEDGERS: dict[int, weakref.ref[Any]] = {}
"""Open ledgers (weakly): flushed on SIGTERM, closed at exit, re-opened lazily after fork."""

_RUNS: dict[int, Any] = {}
"""Runs entered and not yet ended: ended with `run.failed` on SIGTERM."""

_INSTALLED = False
_WATCHING = [False]
_MP_AFTER_FORK = [False]  # inherited by forked children, like multiprocessing's registry
_AFTER_FORK: list[Callable[[], None]] = []


def add_ledger(ledger: Any) -> None:
    key = id(ledger)

    def gone(ref: weakref.ref[Any], key: int = key) -> None:
        if _LEDGERS.get(key) is ref:
            _LEDGERS.pop(key, None)

    _LEDGERS[key] = weakref.ref(ledger, gone)


def drop_ledger(ledger: Any) -> None:
    _LEDGERS.pop(id(ledger), None)


def live_ledgers() -> list[Any]:
    return [led for ref in list(_LEDGERS.values()) if (led := ref()) is not None]


def run_entered(run: Any) -> None:
    _RUNS[id(run)] = run


def run_left(run: Any) -> None:
    _RUNS.pop(id(run), None)


def _close_all() -> None:
    # A run still live at exit (started without `with` and never ended) ends as failed, now,
    # rather than turning `abandoned` an hour later.
    for run in list(_RUNS.values()):
        try:
            run._end_by_signal("the process exited while the run was live", None)
        except Exception:  # noqa: BLE001 - at exit, keep going
            traceback.print_exc()
    for ledger in live_ledgers():
        try:
            ledger.close()
        except Exception:  # noqa: BLE001 - at exit, report and keep closing the others
            traceback.print_exc()


def _close_at_multiprocessing_exit(_: object = None) -> None:
    """Have multiprocessing's exit step (run before a child's `os._exit()`) close every ledger
    of this process. Registered anew in each child: `Process._bootstrap` clears the finalizers
    it inherited, then runs the after-fork callbacks, this one among them. Not in a `spawn`
    child: it leaves through sys.exit(), where atexit closes the ledgers after its threads
    ended (multiprocessing's step runs before it joins them)."""
    util = sys.modules.get("multiprocessing.util")
    mp = sys.modules.get("multiprocessing")
    if util is not None and mp is not None and mp.get_start_method(allow_none=True) != "spawn":
        util.Finalize(None, _close_all, exitpriority=0)


def _watch_multiprocessing(in_this_process: bool) -> None:
    """Where multiprocessing is loaded (never imported here): close ledgers at the exit of
    every child it forks, and of this process when it is such a child already running."""
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    if not _MP_AFTER_FORK[0]:
        _MP_AFTER_FORK[0] = True
        util.register_after_fork(_close_at_multiprocessing_exit, _close_at_multiprocessing_exit)
    mp_process = sys.modules.get("multiprocessing.process")
    if in_this_process and mp_process is not None and mp_process.parent_process() is not None:
        _close_at_multiprocessing_exit()


def _end_and_flush(signum: int, frame: Any) -> None:
    """End every live run with `run.failed`, flush every ledger (idempotent)."""
    name = signal.Signals(signum).name
    for run in list(_RUNS.values()):
        try:
            run._end_by_signal(f"terminated by {name} (signal {signum})", frame)
        except BaseException:  # noqa: BLE001, S110 - best effort: the process is going down
            pass
    for ledger in live_ledgers():
        try:
            ledger.flush()
        except BaseException:  # noqa: BLE001, S110
            pass


def _watchdog() -> None:
    """Run by the Rust SIGTERM watchdog when Python's handler did not run in time (the main
    thread sat in a blocking C call); the watchdog then re-raises SIGTERM itself."""
    _end_and_flush(signal.SIGTERM, None)


def _install_watchdog() -> None:
    from ledgerx import _core

    try:
        _core.install_sigterm_watchdog(_watchdog, WATCHDOG_GRACE_MS)
    except OSError:
        pass


WATCHDOG_GRACE_MS = 500


def _on_sigterm(signum: int, frame: Any) -> None:
    """End every live run with `run.failed`, flush every ledger, then die of SIGTERM."""
    _end_and_flush(signum, frame)
    # Then die of SIGTERM as the sender intended (exit status and all).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _after_fork_in_child() -> None:
    # The parent's runs are not the child's to end; its writers are not the child's to use.
    _RUNS.clear()
    _watch_multiprocessing(in_this_process=False)  # before Process._bootstrap runs its hooks
    if _WATCHING[0] and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        _install_watchdog()  # the parent's watchdog thread did not survive the fork
    for ledger in live_ledgers():
        ledger._after_fork_in_child()
    for hook in _AFTER_FORK:
        hook()


def install(after_fork: Callable[[], None] | None = None) -> None:
    """Once per process: atexit close, the fork hook, and SIGTERM when nobody else took it
    (only from the main thread, Python's rule)."""
    global _INSTALLED
    if after_fork is not None and after_fork not in _AFTER_FORK:
        _AFTER_FORK.append(after_fork)
    if _INSTALLED:
        return
    _INSTALLED = True
    atexit.register(_close_all)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    _watch_multiprocessing(in_this_process=True)
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
                _install_watchdog()
                _WATCHING[0] = True
        except (ValueError, OSError):
            pass

"""Sweeps in real processes (issue: ready for real sweeps): Pool sweeps never hang, SIGTERM and
SIGINT end a run with a readable `run.failed` flushed before death, the background heartbeat,
runs used without `with`, and run ids that are never silently reused. The log is read back with
the independent checker (logcheck)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import ledgerx

from logcheck import check_log

SWEEP = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys
    import ledgerx

    LEDGER = ledgerx.open(os.environ["LEDGERX_ROOT"])  # at module level, as notebooks do

    def work(i):
        LEDGER.emit("sweep.point", {"i": i})  # no flush: leaving the worker must flush it
        return i

    if __name__ == "__main__":
        LEDGER.schema.register("sweep.point", {"type": "object"})
        ctx = mp.get_context(sys.argv[1])
        with ctx.Pool(2) as pool:  # leaving the block calls Pool.terminate()
            print(sum(pool.map(work, range(6))))
    """
)


def _one_sweep(script: Path, root: Path, method: str) -> tuple[str, int | None, str]:
    env = {**os.environ, "LEDGERX_ROOT": str(root)}
    try:
        p = subprocess.run(
            [sys.executable, str(script), method],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as e:
        return (str(root), None, f"hung: {e}")
    return (str(root), p.returncode, p.stdout + p.stderr)


@pytest.mark.heavy
def test_pool_sweeps_spawn_and_forkserver_never_hang(tmp_path: Path) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    jobs = [(m, tmp_path / f"{m}-{i}") for m in ("spawn", "forkserver") for i in range(30)]
    with ThreadPoolExecutor(max_workers=6) as ex:
        results = list(ex.map(lambda j: _one_sweep(script, j[1], j[0]), jobs))
    bad = [r for r in results if r[1] != 0 or r[2].split()[:1] != ["15"]]
    assert not bad, f"{len(bad)} of {len(jobs)} sweeps failed or hung, e.g. {bad[:2]}"
    # Every emitted event survives Pool.terminate(), whether a worker left on its exit sentinel
    # or was SIGTERMed (a forkserver worker lost its unflushed events in about 1 sweep of 10).
    lost = {}
    for method, root in jobs:
        got = sorted(e["data"]["i"] for e in check_log(root).events)
        if got != list(range(6)):
            lost[f"{method}:{root.name}"] = got
    assert not lost, f"{len(lost)} of {len(jobs)} sweeps lost events: {lost}"


EXIT_SWEEP = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys, time
    import ledgerx

    # A commit interval so long that nothing but a flush at the child's exit makes its events
    # durable: each outcome below is deterministic.
    OPTS = dict(commit_interval_ms=3_600_000)
    method, where = sys.argv[1], sys.argv[2]
    LEDGER = [ledgerx.open(os.environ["LEDGERX_ROOT"], **OPTS)] if where == "module" else []

    def work(i):
        if not LEDGER:  # the child's first ledger, opened there and never closed
            LEDGER.append(ledgerx.open(os.environ["LEDGERX_ROOT"], **OPTS))
        alert = {"alert_id": str(i), "source": method, "severity": "low", "payload": {}}
        LEDGER[0].emit("alert.ingested", alert)
        return i

    def work_then_wait(i, emitted):
        work(i)
        emitted.set()
        time.sleep(600)  # until SIGTERM

    if __name__ == "__main__":
        ctx = mp.get_context(method)
        p = ctx.Process(target=work, args=(100,))  # returns normally
        p.start()
        p.join()
        emitted = ctx.Event()
        q = ctx.Process(target=work_then_wait, args=(101, emitted))
        q.start()
        assert emitted.wait(60)
        q.terminate()  # SIGTERM, after the emit returned
        q.join()
        with ctx.Pool(2) as pool:  # close() + join(): the workers leave on their exit sentinel
            pool.map(work, range(6))
            pool.close()
            pool.join()
        with ctx.Pool(2) as pool:  # terminate(): exit sentinel or SIGTERM, whichever is first
            pool.map(work, range(10, 16))
        print("exit", p.exitcode, q.exitcode)
    """
)


LATE_THREAD = textwrap.dedent(
    """
    import multiprocessing as mp, os, threading
    import ledgerx

    def late():
        threading.main_thread().join()  # returns once the child's target has returned
        LEDGER.emit("alert.ingested", {"alert_id": "late", "source": "s", "severity": "low",
                                       "payload": {}})

    def work():
        global LEDGER
        LEDGER = ledgerx.open(os.environ["LEDGERX_ROOT"], commit_interval_ms=3_600_000)
        threading.Thread(target=late).start()  # not a daemon: the child waits for it

    if __name__ == "__main__":
        p = mp.get_context("spawn").Process(target=work)
        p.start()
        p.join()
        print("exit", p.exitcode)
    """
)


def test_a_spawn_child_closes_its_ledgers_after_its_threads(root: Path) -> None:
    """A spawn child leaves through sys.exit(): atexit closes the ledgers after its non-daemon
    threads ended, so an event emitted by one after the target returned is written (closing
    from multiprocessing's exit step, as in fork children, would refuse it)."""
    script = root.parent / "late_thread.py"
    script.write_text(LATE_THREAD)
    p = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LEDGERX_ROOT": str(root)},
    )
    assert p.returncode == 0 and p.stdout.split() == ["exit", "0"], p.stdout + p.stderr
    assert "ClosedError" not in p.stderr, p.stderr
    assert [e["data"]["alert_id"] for e in check_log(root).events] == ["late"]


@pytest.mark.parametrize("where", ["module", "inside"])
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_children_flush_unflushed_events_when_they_end(
    root: Path, method: str, where: str
) -> None:
    """fork and forkserver children end with os._exit() (no atexit): their unflushed group
    events are still written, whether the ledger came from the parent (opened at module level)
    or was first opened in the child; a child SIGTERMed after its emit returned flushes too."""
    script = root.parent / "exit_sweep.py"  # a file: spawn children import their task from it
    script.write_text(EXIT_SWEEP)
    p = subprocess.run(
        [sys.executable, str(script), method, where],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LEDGERX_ROOT": str(root)},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.split() == ["exit", "0", str(-signal.SIGTERM)], p.stdout + p.stderr
    got = sorted(int(e["data"]["alert_id"]) for e in check_log(root).events)
    assert got == [*range(6), *range(10, 16), 100, 101]


RUNNER = textwrap.dedent(
    """
    import os, signal, sys, time
    import ledgerx
    # An interactive program's SIGINT: a job started in the background by a non-interactive
    # shell (CI scripts, `cmd &`) inherits SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    led = ledgerx.open(sys.argv[1], heartbeat_s=float(sys.argv[2]))
    with led.run(run_id="r-sig", run_kind="sweep", config={}, data_fingerprint="fp") as run:
        run.trial(trial_id=1, params={"a": 1}, metrics={"m": 1.0})
        print("ready", flush=True)
        time.sleep(60)
    """
)


def _start_runner(root: Path, heartbeat: float = 0) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(root), str(heartbeat)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    return p


def _types(root: Path) -> list[str]:
    return [e["event_type"] for e in check_log(root).events]


def test_sigterm_inside_run_records_run_failed_then_dies_of_sigterm(root: Path) -> None:
    p = _start_runner(root)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == -signal.SIGTERM
    evs = check_log(root).events
    assert [e["event_type"] for e in evs] == [
        "run.created",
        "run.started",
        "trial.recorded",
        "run.failed",
    ]
    assert evs[-1]["data"]["error"] == "terminated by SIGTERM (signal 15)"
    assert 'File "<string>", line' in evs[-1]["data"]["traceback"]  # where it was stopped


def test_second_sigterm_does_not_deadlock_or_double_fail(root: Path) -> None:
    p = _start_runner(root)
    p.send_signal(signal.SIGTERM)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == -signal.SIGTERM
    assert _types(root).count("run.failed") == 1


def test_sigint_inside_run_gives_a_readable_reason(root: Path) -> None:
    p = _start_runner(root)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    evs = check_log(root).events
    assert evs[-1]["event_type"] == "run.failed"
    assert evs[-1]["data"]["error"] == "interrupted (SIGINT / KeyboardInterrupt)"


def test_background_heartbeat_keeps_a_silent_run_alive(root: Path) -> None:
    p = _start_runner(root, heartbeat=0.1)

    def beats_on_disk() -> int:
        return sum(f.read_bytes().count(b'"run.heartbeat"') for f in root.glob("events/*/*.jsonl"))

    # Wait for the outcome (3 heartbeats from a run that does nothing), not for a guessed time.
    deadline = time.monotonic() + 30
    while beats_on_disk() < 3:
        assert time.monotonic() < deadline and p.poll() is None, "no heartbeats"
        time.sleep(0.05)
    p.kill()
    p.wait(timeout=30)
    assert _types(root).count("run.heartbeat") >= 3  # and the log reads back valid


def test_heartbeat_interval_is_validated(root: Path) -> None:
    with pytest.raises(ledgerx.ConfigError, match="heartbeat_s"):
        ledgerx.open(root, heartbeat_s=-1)
    # 0 turns the heartbeat off (a surviving mutant made it an error): a run writes none.
    with ledgerx.open(root, heartbeat_s=0) as led:
        with led.run(run_kind="k", config={}, data_fingerprint="fp"):
            pass
    assert "run.heartbeat" not in _types(root)


def test_run_without_with_refuses_events(root: Path) -> None:
    with ledgerx.open(root) as led:
        run = led.run(run_kind="k", config={}, data_fingerprint="fp")
        with pytest.raises(ledgerx.RunStateError, match="not live"):
            run.trial(trial_id=1, params={}, metrics={})
        run.start()
        run.trial(trial_id=1, params={}, metrics={})
        run.end()
        with pytest.raises(ledgerx.RunStateError, match="has ended"):
            run.trial(trial_id=2, params={}, metrics={})
    assert _types(root) == ["run.created", "run.started", "trial.recorded", "run.completed"]


def test_reused_run_id_is_refused_unless_resumed(root: Path) -> None:
    with ledgerx.open(root) as led:
        with led.run(run_id="r-1", run_kind="k", config={}, data_fingerprint="fp"):
            pass
        with pytest.raises(ledgerx.RunStateError, match="already exists"):
            with led.run(run_id="r-1", run_kind="k", config={}, data_fingerprint="fp"):
                pass
        with led.run(run_id="r-1", run_kind="k", config={}, data_fingerprint="fp", resume=True):
            pass
    evs = check_log(root).events
    assert [e["event_type"] for e in evs] == [
        "run.created",
        "run.started",
        "run.completed",
        "run.started",
        "run.completed",
    ]
    assert evs[3]["data"]["resumed"] is True


def test_reused_run_id_from_another_process_is_refused_without_duckdb(root: Path) -> None:
    from ledgerx.index import build_index

    with ledgerx.open(root) as led:
        with led.run(run_id="r-2", run_kind="k", config={}, data_fingerprint="fp"):
            pass
    build_index(root)  # an index exists: the check must still not open it
    probe = textwrap.dedent(
        """
        import sys, ledgerx
        led = ledgerx.open(sys.argv[1])
        try:
            led.run(run_id="r-2", run_kind="k", config={}, data_fingerprint="fp").start()
        except ledgerx.RunStateError as e:
            print("refused:", e)
        with led.run(run_id="r-3", run_kind="k", config={}, data_fingerprint="fp"):
            pass
        led.close()
        print("duckdb loaded:", "duckdb" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(root)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "refused: run r-2 already exists" in out.stdout
    assert "duckdb loaded: False" in out.stdout
    assert sorted(p.name for p in (root / ".ledgerx" / "runs").iterdir()) == ["r-2", "r-3"]


def _blocked_signals(tid: int) -> int:
    for line in Path(f"/proc/self/task/{tid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk")


def test_flusher_thread_blocks_signals_so_the_main_thread_gets_them(root: Path) -> None:
    # A SIGTERM delivered to the flusher would not interrupt the main thread's blocking call
    # (a Pool worker waiting on its queue lock), and Python's handler would never run.
    with ledgerx.open(root, durability="group"):
        tids = [int(t.name) for t in Path("/proc/self/task").iterdir()]
        names = {t: Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in tids}
        flusher = [t for t, n in names.items() if n == "ledgerx-flusher"]
        assert flusher, names
        mask = _blocked_signals(flusher[-1])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        assert mask & (1 << (sig - 1)), f"{sig.name} not blocked in the flusher"


def test_exit_ends_a_run_left_live_and_sys_exit_0_completes(root: Path) -> None:
    from conftest import run_py

    code = textwrap.dedent(
        f"""
        import sys, ledgerx
        led = ledgerx.open({str(root)!r})
        led.run(run_id="r-open", run_kind="k", config={{}}, data_fingerprint="f").start()
        with led.run(run_id="r-exit", run_kind="k", config={{}}, data_fingerprint="f"):
            sys.exit(0)
        """
    )
    p = run_py(code)
    assert p.returncode == 0, p.stderr
    ends = {
        e["run_id"]: e
        for e in check_log(root).events
        if e["event_type"] in ("run.completed", "run.failed")
    }
    assert ends["r-exit"]["event_type"] == "run.completed"
    assert ends["r-open"]["event_type"] == "run.failed"
    assert ends["r-open"]["data"]["error"] == "the process exited while the run was live"


INTERRUPTED_CLOSE = textwrap.dedent(
    """
    import atexit, os, signal, sys, ledgerx
    root, mode, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lines = [0]
    if mode == "exit":  # atexit runs last-registered first: this prints after ledgerx's hook
        atexit.register(lambda: print("lines", lines[0], flush=True))
    led = ledgerx.open(root)
    for i in range(5):
        led.emit("alert.ingested", {"alert_id": str(i), "source": "s", "severity": "low",
                                    "payload": {}})

    def tracer(frame, event, arg):
        # Count the lines ledgerx runs while closing; SIGTERM ourselves at line k.
        if event == "call":
            return tracer if frame.f_globals.get("__name__", "").startswith("ledgerx") else None
        if event == "line":
            lines[0] += 1
            if lines[0] == k:
                sys.settrace(None)
                os.kill(os.getpid(), signal.SIGTERM)
        return tracer

    sys.settrace(tracer)
    if mode == "close":
        led.close()
        sys.settrace(None)
        print("lines", lines[0], flush=True)
    else:  # close at interpreter exit (atexit), as a Pool worker does
        sys.settrace(None)
        atexit.register(lambda: sys.settrace(tracer))  # runs before ledgerx's hook
    """
)


@pytest.mark.parametrize("mode", ["close", "exit"])
def test_sigterm_at_every_line_of_close_never_deadlocks(root: Path, mode: str) -> None:
    """The handler takes no lock the interrupted code may hold: SIGTERM at each line that
    ledgerx runs while closing ends the process (by SIGTERM), with every event in the log."""

    def one(k: int) -> subprocess.CompletedProcess[str]:
        r = root / f"{mode}-{k}"
        return subprocess.run(
            [sys.executable, "-c", INTERRUPTED_CLOSE, str(r), mode, str(k)],
            capture_output=True,
            text=True,
            timeout=30,  # a deadlocked handler never ends the process
        )

    full = one(10**9)  # never interrupted: how many lines closing takes
    assert full.returncode == 0, full.stderr
    n = int(full.stdout.split()[-1])
    assert n > 3
    with ThreadPoolExecutor(max_workers=4) as ex:
        results = list(ex.map(one, range(1, n + 1)))
    for k, p in enumerate(results, 1):
        assert p.returncode == -signal.SIGTERM, (k, p.returncode, p.stderr[-500:])
        assert len(check_log(root / f"{mode}-{k}").events) == 5, k


STUCK = textwrap.dedent(
    """
    import ctypes, sys, ledgerx
    led = ledgerx.open(sys.argv[1])
    with led.run(run_id="r-stuck", run_kind="k", config={}, data_fingerprint="f") as run:
        run.trial(trial_id=1, params={}, metrics={"m": 1.0})
        libc = ctypes.CDLL(None)
        mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER
        assert libc.pthread_mutex_lock(mutex) == 0
        print("ready", flush=True)
        # A blocking C call that no signal interrupts (relocking a default mutex): Python's
        # handler can never run here, like a Pool worker that entered its semaphore wait just
        # after SIGTERM arrived.
        libc.pthread_mutex_lock(mutex)
    """
)


def test_sigterm_during_an_uninterruptible_call_still_ends_the_run(root: Path) -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", STUCK, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    # Signal only once the main thread is blocked in the mutex (asleep in the kernel), not after
    # a guessed delay.
    deadline = time.monotonic() + 30
    while Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "S":
        assert time.monotonic() < deadline, "the child never blocked"
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    try:
        assert p.wait(timeout=20) == -signal.SIGTERM
    finally:
        p.kill()
    evs = check_log(root).events
    assert [e["event_type"] for e in evs][-2:] == ["trial.recorded", "run.failed"]
    assert evs[-1]["data"]["error"] == "terminated by SIGTERM (signal 15)"

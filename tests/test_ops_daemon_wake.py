"""`ledgerx daemon` wakes when the log grows (issue #15: `wait_indexed` with a daemon running):
an event is indexed well before `--interval`, a new part file or day too; `--no-wake` sleeps the
whole interval as before."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from index_support import write_sweep
from ops_support import daemon, wait_for

from ledgerx import _core
from ledgerx.daemon import growth_mark
from ledgerx.index import IndexPaths
from ledgerx.index.dbfile import read_state


def _indexed(root: Path, pos: tuple[str, int]) -> bool:
    runs = IndexPaths.for_root(root).runs
    if not runs.exists():
        return False
    ckpt, _ = read_state(runs)
    return ckpt.get(pos[0], (0, 0, 0))[0] > pos[1]


def _emit_one(root: Path, i: int) -> tuple[str, int]:
    w = _core.Writer(str(root), durability="os")
    pos = w.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r-w")
    w.close()
    return (pos[0], pos[1])


def _first_cycle_done(root: Path) -> bool:
    return IndexPaths.for_root(root).runs.exists()


def test_daemon_indexes_a_new_event_well_before_its_interval(root: Path) -> None:
    write_sweep(root, runs=1, trials=3)
    with daemon(root, "--interval", "120") as p:
        wait_for(lambda: _first_cycle_done(root), 60, "a first cycle")
        for i in range(3):
            pos = _emit_one(root, i)
            t = time.monotonic()
            wait_for(lambda pos=pos: _indexed(root, pos), 30, "the new event indexed")
            assert time.monotonic() - t < 30  # far below --interval 120 (~0.1 s when quiet)
        assert p.poll() is None


def test_no_wake_sleeps_the_whole_interval(root: Path) -> None:
    write_sweep(root, runs=1, trials=3)
    with daemon(root, "--interval", "120", "--no-wake"):
        wait_for(lambda: _first_cycle_done(root), 60, "a first cycle")
        time.sleep(0.5)  # the first cycle's publish is done
        pos = _emit_one(root, 0)
        time.sleep(3)
        assert not _indexed(root, pos)


def test_growth_mark_changes_with_appends_new_parts_and_days(root: Path) -> None:
    write_sweep(root, runs=1, trials=3)
    ev = root / "events"
    m0 = growth_mark(ev)
    assert growth_mark(ev) == m0  # stable while nothing is written
    _emit_one(root, 1)
    m1 = growth_mark(ev)
    assert m1 != m0
    (ev / "day=2099-01-01").mkdir()
    m2 = growth_mark(ev)
    assert m2 != m1
    (ev / "day=2099-01-01" / "part-000001.jsonl").write_bytes(b"")
    assert growth_mark(ev) != m2


def test_the_daemon_makes_its_rounds_duckdb_while_it_waits(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between cycles the daemon makes the process's indexer DuckDB (a new instance costs tens
    of ms, off the round's path now); its in-place rounds attach the files into it and make no
    DuckDB instance of their own."""
    import os

    import duckdb

    from ledgerx.daemon import Daemon
    from ledgerx.index import build_index, dbfile

    write_sweep(root, runs=1, trials=3)
    build_index(root)
    old = dbfile._WORK_DB.pop(os.getpid(), None)
    if old is not None:
        old.close()
    d = Daemon(root, interval=0.01)
    d.sleep(root / "events", growth_mark(root / "events"))
    assert os.getpid() in dbfile._WORK_DB
    _emit_one(root, 1)
    assert build_index(root).mode == "incremental"  # on a copy: no alternate yet
    made: list[object] = []
    real = duckdb.connect

    def counted(*a: object, **k: object) -> duckdb.DuckDBPyConnection:
        made.append(a)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(duckdb, "connect", counted)
    for i in range(3):  # in place: the alternate is attached into the daemon's DuckDB
        pos = _emit_one(root, 2 + i)
        rep = build_index(root)
        assert rep.mode == "incremental" and rep.offsets[pos[0]] > pos[1]
    assert made == []
    assert _indexed(root, pos)


def _sleep_until_an_emit(root: Path, d: object) -> None:
    """`d.sleep` in a thread while one event is appended; it returns well before its interval."""
    import threading

    from ledgerx.daemon import Daemon

    assert isinstance(d, Daemon)
    ev = root / "events"
    t = threading.Thread(target=d.sleep, args=(ev, growth_mark(ev)))
    t.start()
    time.sleep(0.3)
    assert t.is_alive()  # nothing changed: still asleep
    _emit_one(root, 7)
    t.join(20)  # the interval is 120 s
    assert not t.is_alive()


def test_the_daemon_sleeps_on_a_watch_of_the_log_and_wakes_on_an_append(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between cycles the daemon waits on an inotify watch of the log's newest directories
    (`watch_log`): an append wakes it (the watch reports the change), and while nothing
    changes it looks at the part files every WATCH_SLICE_S, not every WAKE_POLL_S."""
    import ledgerx.daemon as dm

    write_sweep(root, runs=1, trials=3)
    woke: list[bool] = []
    looks: list[int] = []
    real_watch, real_mark = dm.watch_log, dm.growth_mark

    class Recorded:
        def __init__(self, w: object) -> None:
            self.w = w

        def wait(self, timeout_s: float) -> bool:
            r = self.w.wait(timeout_s)  # type: ignore[attr-defined]
            woke.append(r)
            return r

    def watch(ev: Path, mark: tuple[object, ...]) -> object:
        w = real_watch(ev, mark)
        assert w is not None  # Linux: inotify
        return Recorded(w)

    def mark(ev: Path) -> tuple[object, ...]:
        looks.append(1)
        return real_mark(ev)

    monkeypatch.setattr(dm, "watch_log", watch)
    monkeypatch.setattr(dm, "growth_mark", mark)
    _sleep_until_an_emit(root, dm.Daemon(root, interval=120))
    assert woke and woke[-1] is True  # woken by the watch, not by the end of a slice
    assert len(looks) <= 0.3 / dm.WATCH_SLICE_S + 10  # not 0.3 / WAKE_POLL_S = 60


def test_without_a_watch_the_daemon_polls(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ledgerx.daemon as dm

    write_sweep(root, runs=1, trials=3)
    monkeypatch.setattr(dm, "watch_log", lambda ev, mark: None)
    _sleep_until_an_emit(root, dm.Daemon(root, interval=120))


def test_watch_log_is_none_where_no_watch_can_be_made(root: Path) -> None:
    from ledgerx.daemon import watch_log

    assert watch_log(root / "no-such-events", ()) is None

"""Two runs index files take turns (docs/index.md, "Publishing"): an incremental round updates
the previously published file (`.runs.duckdb.alt`) in place and swaps the names, unless someone
still has that file open, a foreign writer changed it, or a killed round touched it; then it
works on a copy of the published file, as before. Real files, real processes, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from index_support import (
    DAY_US,
    T0,
    index_events,
    index_runs,
    reference_events,
    reference_runs,
    write_sweep,
)

import ledgerx
from ledgerx.index import IndexPaths, build_index
from ledgerx.index.indexer import open_readonly


def _ino(p: Path) -> int:
    return os.stat(p).st_ino


def _exact(root: Path, db: Path) -> None:
    """The published index holds every event of the log once, and the runs derived from them
    (a plain-Python oracle over the same files)."""
    ref = reference_events(root)
    assert index_events(db) == ref
    assert index_runs(db) == reference_runs(ref)


def _count(con: object) -> int:
    return con.execute("SELECT count(*) FROM events").fetchall()[0][0]  # type: ignore[attr-defined]


def _round(root: Path, seed: int) -> ledgerx.IndexReport:
    """Some new events, one incremental round; it reports exactly the new ones (an in-place
    round indexes the previous round's bytes again, and does not count them)."""
    n = len(reference_events(root))
    write_sweep(root, runs=1, trials=30, seed=seed, day_us=T0 + (seed % 2) * DAY_US)
    rep = build_index(root)
    assert rep.mode == "incremental" and rep.published
    assert (rep.events, rep.bad_lines, rep.duplicates) == (len(reference_events(root)) - n, 0, 0)
    return rep


def _two_files(root: Path) -> IndexPaths:
    """A full rebuild, then one incremental round (on a copy: no alternate yet), which leaves
    the full rebuild's file as the alternate."""
    paths = IndexPaths.for_root(root)
    write_sweep(root, runs=2, trials=40, seed=100)
    assert build_index(root).mode == "full"
    assert not paths.alt.exists()
    first = _ino(paths.runs)
    _round(root, 1)
    assert _ino(paths.alt) == first
    return paths


def test_incremental_rounds_update_the_alternate_in_place_and_swap(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    paths = _two_files(root)
    for seed in range(2, 6):
        pub, alt = _ino(paths.runs), _ino(paths.alt)
        _round(root, seed)
        # in place: the alternate became the published file, and the other way round
        assert (_ino(paths.runs), _ino(paths.alt)) == (alt, pub)
        _exact(root, paths.runs)
    con = open_readonly(paths.runs)
    try:  # one `_index_runs` row per round, although each file saw every other round only
        logged = con.execute("SELECT gen, events FROM _index_runs ORDER BY gen").fetchall()
        assert [g for g, _ in logged] == list(range(1, 7))
        assert sum(n for _, n in logged) == len(reference_events(root))
        assert _count(con) == len(reference_events(root))
    finally:
        con.close()
    assert not [p.name for p in paths.runs.parent.iterdir() if ".building-" in p.name]
    assert not paths.alt.with_name(paths.alt.name + ".wal").exists()
    # nothing new: neither file is touched
    before = (paths.runs.read_bytes(), paths.alt.read_bytes())
    assert build_index(root).mode == "noop"
    assert (paths.runs.read_bytes(), paths.alt.read_bytes()) == before
    # a full rebuild starts a new lineage: the old alternate is dropped
    assert build_index(root, full_rebuild=True).mode == "full"
    assert not paths.alt.exists()
    _round(root, 9)  # on a copy again
    _exact(root, paths.runs)


def test_the_alternates_state_comes_from_memory_in_the_process_that_published_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process that published the alternate (before the current file) knows what it holds
    (`dbfile.replaced_state`): its in-place round reads no checkpoints from it. Without that
    memory (another process) the round reads them from the file. Both rounds are exact."""
    from ledgerx.index import dbfile
    from ledgerx.index import indexer as ix

    root = tmp_path / "ledger"
    paths = _two_files(root)
    reads: list[int] = []
    real = ix.state_of

    def counted(con: object) -> object:
        reads.append(1)
        return real(con)  # type: ignore[arg-type]

    monkeypatch.setattr(ix, "state_of", counted)
    pub, alt = _ino(paths.runs), _ino(paths.alt)
    _round(root, 2)
    assert (_ino(paths.runs), _ino(paths.alt)) == (alt, pub) and reads == []
    _exact(root, paths.runs)
    dbfile._REPLACED.clear()  # as in another process
    _round(root, 3)
    assert (_ino(paths.runs), _ino(paths.alt)) == (pub, alt) and reads == [1]
    _exact(root, paths.runs)


def test_an_in_place_round_with_a_duplicate_reports_only_its_new_lines(tmp_path: Path) -> None:
    """An in-place round discounts the rows it replayed (the previous round's) by the
    checkpoints: with a duplicate among its new lines it reports exactly those."""
    root = tmp_path / "ledger"
    paths = _two_files(root)
    n = len(reference_events(root))
    part = sorted((root / "events").rglob("*.jsonl"))[0]
    with part.open("ab") as f:
        f.write(part.read_bytes().splitlines(keepends=True)[0])  # an event indexed long ago
    write_sweep(root, runs=1, trials=30, seed=7, day_us=T0)
    rep = _round_in_place(root, paths)
    assert (rep.events, rep.duplicates, rep.bad_lines) == (len(reference_events(root)) - n, 1, 1)
    _exact(root, paths.runs)


def test_a_new_line_that_wins_over_a_replayed_row_is_counted_once(tmp_path: Path) -> None:
    """Of two lines with one id the first in (file, offset) order stays: a new line in an
    earlier part file than the replayed copy of that id (the previous round's, in a later part)
    drops the replayed row. The round adds no event, and reports the dropped row as a
    duplicate, as a round on a copy does; the next round,
    which replays the new line but not the later part, reports just its own: the rounds'
    events in `_index_runs` sum to the index's (counting the replayed rows below the published
    checkpoints, or by the checkpoints of the files replayed only, would miss by one)."""
    root = tmp_path / "ledger"
    paths = _two_files(root)
    parts = _two_parts(root, paths)  # the previous round: one line in each of two parts
    n = len(reference_events(root))
    with parts[0].open("ab") as f:  # the later part's line, now in the earlier part
        f.write(parts[1].read_bytes().splitlines(keepends=True)[-1])
    rep = _round_in_place(root, paths)
    assert len(reference_events(root)) == n
    assert (rep.events, rep.duplicates, rep.bad_lines) == (0, 1, 1)  # as a copy round says
    _exact(root, paths.runs)
    # the next round replays that line (dropping the row again) but not the later part, which
    # it does not read: its report still counts only its own new lines
    write_sweep(root, runs=1, trials=5, seed=11, day_us=T0)
    rep = _round_in_place(root, paths)
    assert (rep.events, rep.duplicates) == (len(reference_events(root)) - n, 0)
    _exact(root, paths.runs)
    con = open_readonly(paths.runs)
    try:
        logged = con.execute("SELECT sum(events) FROM _index_runs").fetchall()
        assert logged == [(len(reference_events(root)),)]
    finally:
        con.close()


def test_a_new_line_that_wins_over_lines_reported_before_counts_one_duplicate(
    tmp_path: Path,
) -> None:
    """Of a repeated id's lines below the published checkpoints the previous round kept the
    first and reported the others: a new line in an earlier part drops them all, and only the
    first is a new duplicate. The rounds' bad lines in `_index_runs` sum to `_bad_lines`."""
    root = tmp_path / "ledger"
    paths = _two_files(root)
    parts = _two_parts(root, paths)
    x = parts[1].read_bytes().splitlines(keepends=True)[-1]
    with parts[1].open("ab") as f:
        f.write(x)  # repeats the line before it, in its own part: a duplicate
    rep = _round_in_place(root, paths)
    assert (rep.events, rep.duplicates, rep.bad_lines) == (0, 1, 1)
    with parts[0].open("ab") as f:
        f.write(x)  # the same id in the earlier part: kept, both lines of the later part dropped
    rep = _round_in_place(root, paths)
    assert (rep.events, rep.duplicates, rep.bad_lines) == (0, 1, 1)
    _exact(root, paths.runs)
    con = open_readonly(paths.runs)
    try:
        logged = con.execute("SELECT sum(bad_lines) FROM _index_runs").fetchall()[0][0]
        assert logged == con.execute("SELECT count(*) FROM _bad_lines").fetchall()[0][0] == 2
    finally:
        con.close()


def _two_parts(root: Path, paths: IndexPaths) -> list[Path]:
    """Two writers at once write a line each into two parts of the first day; one round, in
    place. Returns the two parts."""
    from ledgerx import _core

    writers = [_core.Writer(str(root), durability="os") for _ in range(2)]
    for w in writers:  # both open at once: two part files
        w._set_fake_now(T0 + 10**6)
        w.emit("run.heartbeat", {}, run_id="run-x")
    for w in writers:
        w.close()
    _round_in_place(root, paths)
    parts = sorted((root / "events" / "day=2026-01-01").glob("*.jsonl"))
    assert [p.name for p in parts] == ["part-000001.jsonl", "part-000002.jsonl"]
    return parts


def _round_in_place(root: Path, paths: IndexPaths) -> ledgerx.IndexReport:
    pub, alt = _ino(paths.runs), _ino(paths.alt)
    rep = build_index(root)
    assert (_ino(paths.runs), _ino(paths.alt)) == (alt, pub)
    return rep


def test_a_round_of_later_days_only_does_not_update_the_alternate_in_place(tmp_path: Path) -> None:
    """The alternate lags a round, which an in-place round indexes again; a round limited by
    `--since-date` to later days would not read the previous round's bytes of an earlier day,
    and would publish the alternate without them: it works on a copy instead."""
    root = tmp_path / "ledger"
    paths = _two_files(root)
    write_sweep(root, runs=1, trials=10, seed=20, day_us=T0)  # the earlier day
    _round_in_place(root, paths)
    write_sweep(root, runs=1, trials=10, seed=21, day_us=T0 + DAY_US)
    pub, alt = _ino(paths.runs), _ino(paths.alt)
    rep = build_index(root, since_date="2026-01-02")
    assert rep.mode == "incremental" and _ino(paths.runs) not in (pub, alt)  # a copy
    _exact(root, paths.runs)


HOLD_RO = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(":memory:")  # a reader in another process, holding its file open
    con.execute(f"ATTACH '{sys.argv[1]}' AS ledger (READ_ONLY)")
    q = "SELECT count(*) FROM ledger.events"
    print(con.execute(q).fetchall()[0][0], flush=True)
    for line in sys.stdin:
        print(con.execute(q).fetchall()[0][0], flush=True)
    """
)


def test_a_reader_in_another_process_holding_the_alternate_forces_a_copy(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    paths = _two_files(root)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RO, str(paths.runs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        held = _ino(paths.runs)
        seen = int(holder.stdout.readline())
        assert seen == len(reference_events(root))
        _round(root, 2)  # in place on the other file: the holder's file becomes the alternate
        assert _ino(paths.alt) == held
        for seed in (3, 4):  # the alternate is held: both rounds work on a copy, no lock error
            pub = _ino(paths.runs)
            _round(root, seed)
            assert _ino(paths.runs) not in (pub, held) and _ino(paths.alt) == pub
            _exact(root, paths.runs)
            holder.stdin.write("again\n")
            holder.stdin.flush()
            assert int(holder.stdout.readline()) == seen  # its file was never written
        with ledgerx.Reader(root) as r:
            assert r.sql("SELECT count(*) FROM events").fetchall() == [
                (len(reference_events(root)),)
            ]
    finally:
        holder.kill()
        holder.wait()
    assert holder.stderr is not None and "Error" not in holder.stderr.read()
    pub, alt = _ino(paths.runs), _ino(paths.alt)
    _round(root, 5)  # nobody holds the alternate any more: in place again
    assert (_ino(paths.runs), _ino(paths.alt)) == (alt, pub)
    _exact(root, paths.runs)


def test_a_connection_of_this_process_on_the_alternate_forces_a_copy(tmp_path: Path) -> None:
    """DuckDB's locks belong to the process: our own read-write open would not conflict with a
    Reader of the same program, so the indexer looks at this process's descriptors."""
    root = tmp_path / "ledger"
    paths = _two_files(root)
    with ledgerx.Reader(root) as r:
        con = r.connection  # the published file, held while the rounds run
        held = _ino(paths.runs)
        ids = [e["event_id"] for e in reference_events(root)]  # what it holds
        _round(root, 2)  # in place on the other file: ours becomes the alternate
        assert _ino(paths.alt) == held
        files = []
        for seed in (3, 4, 5, 6):
            pub = _ino(paths.runs)
            _round(root, seed)
            files.append((pub, _ino(paths.runs), _ino(paths.alt)))
        # Read only now, so that nothing comes from DuckDB's cache: the file as it was.
        q = 'SELECT event_id FROM events ORDER BY file, "offset"'
        assert [x for (x,) in con.execute(q).fetchall()] == ids
        # the first round worked on a copy, and our file left the index folder
        assert files[0][1] not in (files[0][0], held)
        assert all(held not in f[1:] for f in files)
        # the Reader itself moves on to the newest file
        assert r.sql("SELECT count(*) FROM events").fetchall() == [(len(reference_events(root)),)]
    _exact(root, paths.runs)


HOLD_RW = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])  # a notebook that forgot read_only=True
    print("holding", flush=True)
    sys.stdin.readline()
    con.execute("DELETE FROM events WHERE run_id LIKE 'run-100-%'")  # then writes to it
    con.close()
    print("closed", flush=True)
    """
)


def test_a_foreign_writer_on_the_published_file_never_leaks_into_the_index(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ledger"
    paths = _two_files(root)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RW, str(paths.runs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "holding"
        held = _ino(paths.runs)
        # The published file is locked read-write: the round copies it at the file level and
        # publishes the copy; the locked file becomes the alternate.
        _round(root, 2)
        assert _ino(paths.alt) == held
        _exact(root, paths.runs)
        # The writer deletes rows in its file, now the alternate, and closes it.
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "closed"
        assert holder.wait(30) == 0
    finally:
        holder.kill()
        holder.wait()
    # Its identity no longer matches the one the published file recorded: not used in place.
    pub = _ino(paths.runs)
    _round(root, 3)
    _exact(root, paths.runs)
    assert _ino(paths.runs) not in (held, pub) and _ino(paths.alt) == pub
    for seed in (4, 5):  # then in place again
        pub, alt = _ino(paths.runs), _ino(paths.alt)
        _round(root, seed)
        assert (_ino(paths.runs), _ino(paths.alt)) == (alt, pub)
        _exact(root, paths.runs)


# The steps of an in-place round, as LEDGERX_INDEX_TRACE reports them: killed right after each.
STEPS = ["alternate", "insert events", "dedupe", "derive", "commit", "side files", "checkpoint"]


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_while_updating_the_alternate_then_a_correct_round(
    tmp_path: Path, step: str
) -> None:
    root = tmp_path / "ledger"
    paths = _two_files(root)
    _round(root, 2)  # in place once: the alternate scheme is running
    write_sweep(root, runs=2, trials=60, seed=3, day_us=T0 + DAY_US)
    before = index_events(paths.runs)
    p = subprocess.Popen(
        [sys.executable, "-m", "ledgerx", "rebuild", "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LEDGERX_INDEX_TRACE": "1"},
    )
    assert p.stderr is not None
    seen = []
    while True:  # the kill point is the indexer's own report of the step, not a guessed time
        line = p.stderr.readline()
        assert line, f"the round ended before {step!r}: {seen}"
        if line.startswith("[index]"):
            seen.append(line.split(":")[0][len("[index] ") :])
            assert seen[-1] != "no alternate", "the round did not take the alternate"
            if seen[-1] == step:
                p.send_signal(signal.SIGKILL)
                break
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    # The published index is the previous one, untouched.
    assert index_events(paths.runs) == before
    rep = build_index(root)
    assert rep.mode == "incremental" and rep.published
    _exact(root, paths.runs)
    _bookkeeping(root, paths.runs, rep.gen)
    pub, alt = _ino(paths.runs), _ino(paths.alt)
    rep = _round(root, 4)  # and the scheme runs on: in place again
    assert (_ino(paths.runs), _ino(paths.alt)) == (alt, pub)
    _exact(root, paths.runs)
    _bookkeeping(root, paths.runs, rep.gen)


def _bookkeeping(root: Path, db: Path, gen: int) -> None:
    """No event id twice, no bad line, per-file event counts summing to the log's, one
    `_index_runs` row per round."""
    con = open_readonly(db)
    try:
        q = "SELECT count(*) - count(DISTINCT event_id) FROM events"
        assert con.execute(q).fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM _bad_lines").fetchall() == [(0,)]
        q = "SELECT sum(events) FROM _ledger_files"
        assert con.execute(q).fetchall() == [(len(reference_events(root)),)]
        gens = con.execute("SELECT gen FROM _index_runs ORDER BY gen").fetchall()
        assert [g for (g,) in gens] == list(range(1, gen + 1))
    finally:
        con.close()

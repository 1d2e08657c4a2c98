"""Exactly-once under SIGKILL, and readers in another process during repeated rebuilds."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
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

from ledgerx.index import IndexPaths, build_index
from ledgerx.index.indexer import open_readonly


def _assert_consistent_prefix(root: Path, db: Path) -> int:
    """The published index holds, for every file, exactly the events below its checkpoint."""
    con = open_readonly(db)
    try:
        ckpt = dict(con.execute('SELECT file, "offset" FROM _ledger_files').fetchall())
    finally:
        con.close()
    ref = [e for e in reference_events(root) if e["offset"] < ckpt.get(e["file"], 0)]
    assert index_events(db) == ref
    return len(ref)


@pytest.mark.heavy
def test_sigkill_at_random_points_neither_loses_nor_doubles(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    db = IndexPaths.for_root(root).runs
    rng = random.Random(1234)
    write_sweep(root, runs=4, trials=800, seed=0)
    killed = completed = 0
    for rnd in range(12):
        write_sweep(
            root,
            runs=1,
            trials=rng.randrange(50, 400),
            seed=rnd + 1,
            day_us=T0 + (rnd % 3) * DAY_US,
        )
        p = subprocess.Popen(
            [sys.executable, "-m", "ledgerx", "rebuild", "--root", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "LEDGERX_INDEX_TRACE": "1"},
        )
        # The kill point is a condition, not a guessed time: right after the indexer reports
        # its k-th step on stderr (it is then already running step k + 1); a k past its last
        # step lets the round complete.
        k = rng.randrange(1, 12)
        steps = 0
        assert p.stderr is not None
        while steps < k:
            line = p.stderr.readline()
            if not line:
                break  # the round ended before step k
            steps += line.startswith("[index]")
        if steps == k:
            p.send_signal(signal.SIGKILL)
            killed += 1
        else:
            completed += 1
        p.communicate(timeout=120)
        if db.exists():
            _assert_consistent_prefix(root, db)
    assert killed >= 4, (killed, completed)
    build_index(root)  # a no-op when the last round ran to completion
    ref = reference_events(root)
    assert index_events(db) == ref
    assert index_runs(db) == reference_runs(ref)
    con = open_readonly(db)
    try:
        assert con.execute("SELECT count(*) - count(DISTINCT event_id) FROM events").fetchall() == [
            (0,)
        ]
        assert con.execute("SELECT count(*) FROM trial_results").fetchall() == [
            (sum(e["event_type"] == "trial.recorded" for e in ref),)
        ]
        assert con.execute("SELECT count(*) FROM _bad_lines").fetchall() == [(0,)]
    finally:
        con.close()
    # no work files left behind once an indexer ran to completion
    assert not [p for p in db.parent.iterdir() if p.name.startswith(".building-")]


READER = textwrap.dedent(
    """
    import json, os, sys, time
    import duckdb
    from ledgerx.reader import Reader
    root, stop = sys.argv[1], sys.argv[2]
    db = os.path.join(root, "index", "runs.duckdb")
    seen, errors, n = set(), [], 0
    r = Reader(root)
    progress = open(stop + ".seen", "a")
    while not os.path.exists(stop):
        try:
            a = r.sql("SELECT count(*) FROM events").fetchall()[0][0]
            r.latest_runs().fetchall()
            con = duckdb.connect(db, read_only=True)  # any DuckDB client, read-only
            b = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
            con.close()
            for c in (a, b):
                if c not in seen:
                    progress.write(f"{c}\\n"); progress.flush()
                seen.add(c)
            n += 1
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
    print(json.dumps({"n": n, "seen": sorted(seen), "errors": errors[:5], "n_err": len(errors)}))
    """
)


@pytest.mark.heavy
def test_readers_never_see_lock_errors_or_partial_index(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    write_sweep(root, runs=2, trials=200, seed=0)
    published = {build_index(root).events}
    stop = tmp_path / "stop"
    p = subprocess.Popen(
        [sys.executable, "-c", READER, str(root), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_file = Path(f"{stop}.seen")

    def wait_seen(total: int) -> None:
        # Synchronise on the reader having seen this index, not on a guessed time.
        deadline = time.monotonic() + 60
        while str(total) not in (seen_file.read_text().split() if seen_file.exists() else []):
            assert time.monotonic() < deadline and p.poll() is None, f"reader never saw {total}"
            time.sleep(0.01)

    try:
        total = next(iter(published))
        wait_seen(total)
        for rnd in range(12):
            write_sweep(root, runs=1, trials=100, seed=rnd + 1)
            rep = build_index(root, full_rebuild=rnd % 4 == 3)
            assert rep.published
            total = len(reference_events(root))  # what the new index holds
            published.add(total)
            wait_seen(total)  # the reader reads across every publish
    finally:
        stop.touch()
        out, err = p.communicate(timeout=60)
    res = json.loads(out)
    assert res["n_err"] == 0, res["errors"]
    assert res["n"] >= 13
    assert set(res["seen"]) == published  # every published index, and only those


def test_indexer_in_another_process_makes_second_fail_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    write_sweep(root, runs=1, trials=10, seed=0)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from ledgerx.index import IndexPaths\n"
            "from ledgerx.index.publish import index_lock\n"
            "from ledgerx.config import resolve_root\n"
            "with index_lock(IndexPaths.for_root(resolve_root(sys.argv[1]))):\n"
            "    print('locked', flush=True); time.sleep(30)\n",
            str(root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        r = subprocess.run(
            [sys.executable, "-m", "ledgerx", "rebuild", "--root", str(root)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and "another indexer is running" in r.stderr
        assert f"pid {holder.pid}" in r.stderr
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert build_index(root).published  # the lock died with its holder


def test_lock_is_free_only_when_no_indexer_holds_it(tmp_path: Path) -> None:
    from ledgerx.errors import IndexBusyError
    from ledgerx.index.publish import index_lock, lock_is_free

    paths = IndexPaths.for_root(tmp_path / "ledger")
    assert not paths.lock.exists() and lock_is_free(paths)
    with index_lock(paths):
        assert paths.lock.exists() and not lock_is_free(paths)
        try:
            with index_lock(paths):
                raise AssertionError("a second holder got the lock")
        except IndexBusyError as e:
            assert f"(pid {os.getpid()})" in str(e)
    assert paths.lock.exists() and lock_is_free(paths)


def test_indexes_sharing_a_folder_have_their_own_locks(tmp_path: Path) -> None:
    """`--db` beside the root's index (a name sorting before or after `runs.duckdb`): its own
    lock and side files, so indexing one never waits for, or blocks, the other."""
    from ledgerx.index.publish import index_lock, lock_is_free

    root = tmp_path / "ledger"
    default = IndexPaths.for_root(root)
    d = default.runs.parent
    for name in ("a.duckdb", "zz.duckdb"):
        other = IndexPaths.for_root(root, db=d / name)
        stem = name.removesuffix(".duckdb")
        assert (other.lock, other.alerts, other.catalog) == (
            d / f".{name}.lock",
            d / f"{stem}.alerts.duckdb",
            d / f"{stem}.catalog.duckdb",
        )
        with index_lock(default):
            assert lock_is_free(other), name
            with index_lock(other):
                assert not lock_is_free(other) and not lock_is_free(default)

"""Rounds in a process that indexes again and again (`ledgerx daemon`, `wait_indexed` in a loop):
one DuckDB per process into which each round attaches its files, the published state
remembered from the round that published it, `wait_indexed`'s probe reading a published file
once, and the legacy package loading its parts on first use (docs/index.md, "Publishing")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest
from index_support import index_events, part_files, reference_events, write_sweep

from ledgerx import _core
from ledgerx.index import IndexPaths, build_index, dbfile
from ledgerx.index.publish import open_in_this_process

from conftest import cli, run_py


def _emit(root: Path, i: int) -> tuple[str, int]:
    w = _core.Writer(str(root), durability="os")
    pos = w.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r-warm")
    w.close()
    return (pos[0], pos[1])


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    reads: list[Path] = []
    real = dbfile.read_state_any

    def counted(path: Path, work: Path) -> dbfile.PublishedState:
        reads.append(path)
        return real(path, work)

    monkeypatch.setattr(dbfile, "read_state_any", counted)
    return reads


def test_a_round_after_this_process_published_reads_no_state(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = IndexPaths.for_root(root)
    write_sweep(root, runs=1, trials=3)
    build_index(root)
    reads = _counting_reads(monkeypatch)
    for i in range(3):  # a copy, then in place: the state comes from the round that published
        pos = _emit(root, i)
        rep = build_index(root)
        assert rep.events == 1 and rep.offsets[pos[0]] > pos[1]
    assert build_index(root).mode == "noop"
    assert reads == []
    assert index_events(paths.runs) == reference_events(root)
    # Another process publishes: what this one remembers no longer describes the file, the
    # state file that process wrote does.
    _emit(root, 10)
    p = cli("rebuild", "--root", str(root))
    assert p.returncode == 0, p.stderr
    pos = _emit(root, 11)
    rep = build_index(root)
    assert (rep.events, rep.duplicates, rep.bad_lines) == (1, 0, 0)
    assert reads == []
    assert index_events(paths.runs) == reference_events(root)


def _forget_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a new process: nothing remembered in memory (the state file stays)."""
    monkeypatch.setattr(dbfile, "_PUBLISHED", {})


def test_a_new_process_takes_the_published_state_from_the_state_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = IndexPaths.for_root(root)
    write_sweep(root, runs=1, trials=3)
    build_index(root)
    reads = _counting_reads(monkeypatch)
    for i in range(3):  # after a full round, a copy, in place
        _forget_this_process(monkeypatch)
        pos = _emit(root, i)
        rep = build_index(root)
        assert (rep.events, rep.duplicates, rep.bad_lines) == (1, 0, 0)
        assert rep.offsets[pos[0]] > pos[1]
    assert reads == []
    assert index_events(paths.runs) == reference_events(root)
    ckpt, meta = dbfile.read_state(paths.runs)
    state = dbfile._load_state(paths.runs, dbfile.file_ident(paths.runs))
    assert state is not None and (state.ckpt, state.meta) == (ckpt, meta)
    con = dbfile.open_readonly(paths.runs)
    try:
        assert state.last_runs == dbfile.last_runs(con, meta)
    finally:
        con.close()


def test_the_state_file_describes_both_files_while_the_publish_renames(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The round writes the new file's state before it publishes, keeping the published one's:
    whichever file the name points at during the rename, a waiter (`wait_indexed`, another
    process's round) finds its state and does not open the file."""
    from ledgerx.index import indexer as ix

    write_sweep(root, runs=1, trials=3)
    build_index(root)
    seen: list[tuple[bool, bool]] = []
    real = ix.publish_keeping_alt

    def checked(src: Path, dst: Path, **k: object) -> None:
        new = dbfile._load_state(dst, dbfile.file_ident(src))
        old = dbfile._load_state(dst, dbfile.file_ident(dst))
        seen.append((new is not None, old is not None))
        real(src, dst, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ix, "publish_keeping_alt", checked)
    for i in range(3):  # on a copy, then in place
        _emit(root, i)
        assert build_index(root).events == 1
    assert seen == [(True, True)] * 3


@pytest.mark.parametrize("change", ["touched", "unreadable", "missing"])
def test_a_state_file_that_may_not_describe_the_file_is_not_used(
    root: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    paths = IndexPaths.for_root(root)
    write_sweep(root, runs=1, trials=3)
    build_index(root)
    _emit(root, 1)
    build_index(root)
    state = dbfile.state_file(paths.runs)
    if change == "touched":  # the file written since (a foreign writer): another mtime
        st = os.stat(paths.runs)
        os.utime(paths.runs, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    elif change == "unreadable":
        state.write_text('{"ident": ')
    else:
        state.unlink()
    reads = _counting_reads(monkeypatch)
    _forget_this_process(monkeypatch)
    _emit(root, 2)
    rep = build_index(root)
    assert (rep.events, rep.duplicates, rep.bad_lines) == (1, 0, 0)
    assert reads == [paths.runs]
    assert index_events(paths.runs) == reference_events(root)


HOLD_RW = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])  # a notebook that forgot read_only=True
    print("holding", flush=True)
    sys.stdin.readline()
    """
)


def test_a_foreign_writer_still_gets_a_fresh_copy_when_the_state_is_remembered(
    root: Path,
) -> None:
    """The remembered state is not used while another process holds the published file
    read-write: the round copies it and publishes the copy even with no new bytes."""
    paths = IndexPaths.for_root(root)
    write_sweep(root, runs=1, trials=3)
    build_index(root)
    _emit(root, 1)
    build_index(root)  # remembered from here
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RW, str(paths.runs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert dbfile.write_locked(paths.runs) is True
        held = os.stat(paths.runs).st_ino
        rep = build_index(root)
        assert rep.published and os.stat(paths.runs).st_ino != held
    finally:
        holder.kill()
        holder.wait()
    assert dbfile.write_locked(paths.runs) is False
    assert index_events(paths.runs) == reference_events(root)


def _work_databases() -> list[str]:
    cur = dbfile.work_cursor()
    try:
        q = "SELECT database_name FROM duckdb_databases() WHERE NOT internal ORDER BY 1"
        return [r[0] for r in cur.execute(q).fetchall()]
    finally:
        cur.close()


def test_a_failed_in_place_round_leaves_nothing_attached(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledgerx.index import indexer

    paths = IndexPaths.for_root(root)
    write_sweep(root, runs=1, trials=3)
    build_index(root)
    for i in range(2):  # a copy, then in place: the scheme runs
        _emit(root, i)
        build_index(root)
    before = index_events(paths.runs)

    def broken(*a: Any, **k: Any) -> None:
        raise RuntimeError("derive failed")

    monkeypatch.setattr(indexer, "derive", broken)
    _emit(root, 5)
    with pytest.raises(RuntimeError, match="derive failed"):
        build_index(root)
    assert _work_databases() == ["memory"]  # the alternate was detached: closed, unlocked
    assert not open_in_this_process(paths.runs) and not paths.alt.exists()
    assert index_events(paths.runs) == before
    monkeypatch.undo()
    assert build_index(root).events == 1
    assert index_events(paths.runs) == reference_events(root)
    assert _work_databases() == ["memory"]


def test_settings_of_one_round_do_not_stay_with_the_next(root: Path) -> None:
    """The work DuckDB outlives a round: what a round leaves unset is reset."""
    write_sweep(root, runs=1, trials=3)
    build_index(root)
    for i in range(2):
        _emit(root, i)
        build_index(root)
    cur = dbfile.work_cursor()
    try:
        default = cur.execute("SELECT current_setting('threads')").fetchone()
        _emit(root, 3)
        build_index(root, threads=1, memory_limit="100MB")  # in place, in the work DuckDB
        assert cur.execute("SELECT current_setting('threads')").fetchone() == (1,)
        _emit(root, 4)
        build_index(root, memory_limit=None)
        assert cur.execute("SELECT current_setting('threads')").fetchone() == default
        limit = cur.execute("SELECT current_setting('memory_limit')").fetchone()
        assert limit is not None and limit[0] != "95.3 MiB"
    finally:
        cur.close()


def _cli_rebuild(root: Path) -> None:
    p = cli("rebuild", "--root", str(root))  # another process: this one must read its file
    assert p.returncode == 0, p.stderr


def test_the_wait_probe_reads_a_published_file_once(root: Path) -> None:
    """While no publish replaces the file, a look is a `stat`: no query (the file is read:
    its publisher's state file is gone)."""
    from ledgerx import reader
    from ledgerx.index.dbfile import state_file

    write_sweep(root, runs=1, trials=3)
    _cli_rebuild(root)
    state_file(IndexPaths.for_root(root).runs).unlink()
    part = part_files(root)[0].relative_to(root / "events").as_posix()
    queries: list[str] = []

    class Counted:
        def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
            self.con = con

        def execute(self, q: str, *a: Any) -> Any:
            if "_ledger_files" in q:
                queries.append(q)
            return self.con.execute(q, *a)

        def close(self) -> None:
            self.con.close()

    probe = reader._OffsetProbe(IndexPaths.for_root(root).runs)
    probe._con = Counted(reader._probe_cursor())  # type: ignore[assignment]
    try:
        first = probe.offset(part)
        assert all(probe.offset(part) == first for _ in range(20))
        assert len(queries) == 1
        pos = _emit(root, 1)
        _cli_rebuild(root)
        state_file(IndexPaths.for_root(root).runs).unlink()
        assert probe.offset(pos[0]) > pos[1]
        assert probe.offset(pos[0]) > pos[1]
        assert len(queries) == 2
    finally:
        probe.close()


def test_the_legacy_package_loads_its_parts_on_first_use() -> None:
    r = run_py(
        "import sys\n"
        "import ledgerx.legacy as L\n"
        "print(sorted(m for m in sys.modules if m.startswith('ledgerx.legacy')))\n"
        "assert L.compare.__module__ == 'ledgerx.legacy.compare'\n"
        "assert L.DualReader.__module__ == 'ledgerx.legacy.dual'\n"
        "print('ledgerx.legacy.migrate' in sys.modules)\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["['ledgerx.legacy', 'ledgerx.legacy.paths']", "False"]


def test_a_cli_rebuild_without_a_projection_loads_no_legacy_code(root: Path) -> None:
    write_sweep(root, runs=1, trials=3)
    code = (
        "import sys\n"
        "from ledgerx.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(sorted(m for m in sys.modules if m.startswith('ledgerx.legacy.')))\n"
        "sys.exit(rc)\n"
    )
    r = run_py(code, "rebuild", "--root", str(root))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "['ledgerx.legacy.paths']"
    r = run_py(code, "rebuild", "--root", str(root), "--legacy-projection")
    assert r.returncode == 0, r.stderr
    assert "ledgerx.legacy.projection" in r.stdout.strip().splitlines()[-1]
    assert (root / "index" / "legacy.duckdb").exists()


def test_the_wait_probe_knows_the_file_this_process_published(root: Path) -> None:
    """After this process published, `wait_indexed`'s first look needs no ATTACH: the
    checkpoints are those it published. A file another process published is known from the
    state file it left beside it, and read when that is gone."""
    from ledgerx import reader
    from ledgerx.index.dbfile import state_file

    write_sweep(root, runs=1, trials=3)
    build_index(root)
    pos = _emit(root, 1)
    build_index(root)
    probe = reader._OffsetProbe(IndexPaths.for_root(root).runs)
    try:
        assert probe.offset(pos[0]) > pos[1]
        assert probe.offset("day=2000-01-01/part-000001.jsonl") == 0
        assert probe._con is None  # nothing attached, no DuckDB used
        pos = _emit(root, 2)
        assert probe.offset(pos[0]) <= pos[1]
        _cli_rebuild(root)
        assert probe.offset(pos[0]) > pos[1]
        assert probe._con is None  # from the publisher's state file
        pos = _emit(root, 3)
        _cli_rebuild(root)
        state_file(IndexPaths.for_root(root).runs).unlink()
        assert probe.offset(pos[0]) > pos[1]
        assert probe._con is not None  # read from the file
    finally:
        probe.close()


QUICK = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
    "from ledgerx.cli import main\n"
    "sys.argv = ['ledgerx', *sys.argv[1:]]\n"
    "rc = main()\n"
    "print('main returned', rc, file=sys.stderr)\n"
)


def test_a_cli_rebuild_ends_its_process_once_done(root: Path) -> None:
    """`ledgerx rebuild` as the process's entry point skips Python's teardown (unloading
    DuckDB): its output is flushed, its atexit handlers run, its exit status is kept."""
    write_sweep(root, runs=1, trials=3)
    env = {"PYTHONUNBUFFERED": ""}  # stdout to a pipe is block-buffered: it must be flushed
    r = run_py(QUICK, "rebuild", "--root", str(root), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["mode"] == "full"
    assert "atexit ran" in r.stderr and "main returned" not in r.stderr
    r = run_py(QUICK, "rebuild", "--root", str(root), "--since-date", "2026-13-01", env=env)
    assert r.returncode != 0 and "--since-date" in r.stderr
    assert "atexit ran" in r.stderr and "main returned" not in r.stderr
    # Called with its arguments (a test, a program embedding the CLI), main returns.
    r = run_py(QUICK.replace("rc = main()", "rc = main(sys.argv[1:])"), "rebuild", "--root",
               str(root), env=env)  # fmt: skip
    assert r.returncode == 0 and "main returned 0" in r.stderr, r.stderr

"""A small round (`ledgerx.index.insert.SMALL_ROUND_BYTES`) hands the core's batches straight to
DuckDB, without pyarrow: it stores exactly the rows the streamed path stores (upcast columns,
shapes, JSON data, bad lines, duplicates, several files), and a one-event `ledgerx rebuild`
process never imports pyarrow, numpy or pandas (issue #15: most of that process was imports)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from index_support import DAY_US, T0, part_files, rebuild_in_fresh_process, write_sweep

from ledgerx import _core
from ledgerx.index import IndexPaths, build_index
from ledgerx.index import insert as insert_mod
from ledgerx.index.indexer import open_readonly


class Up:
    """trial.recorded is at version 2: every trial is upcast, except trial 3, whose upcast
    fails (indexed as written, reported)."""

    def newest_versions(self) -> dict[str, int]:
        return {"trial.recorded": 2, "run.created": 1}

    def upcast_json(self, event_type: str, version: int, data_json: str) -> tuple[str, int]:
        d = json.loads(data_json)
        if d.get("trial_id") == 3:
            raise ValueError("no upcast for trial 3")
        d["params"] = {"v2": True, **d["params"]}
        return json.dumps(d), 2


def _log(root: Path, seed: int) -> None:
    write_sweep(root, runs=2, trials=6, seed=seed, day_us=T0 + seed * DAY_US)
    part = part_files(root)[-1]
    lines = part.read_bytes().splitlines(keepends=True)
    with part.open("ab") as f:
        f.write(b'{"not": "an event"}\n')  # a bad line
        f.write(lines[1])  # a duplicate event id


def _rows(root: Path) -> dict[str, Any]:
    con = open_readonly(IndexPaths.for_root(root).runs)
    try:
        ev = con.execute(
            """SELECT event_id, event_type, schema_version, ts, run_id, writer, seq,
                      data::VARCHAR, typeof(data), file, "offset", line_bytes, gen,
                      data_upcast::VARCHAR, typeof(data_upcast), upcast_version, shape, tint, tnum
               FROM events ORDER BY file, "offset" """
        ).fetchall()
        files = con.execute("SELECT * EXCLUDE (updated_at) FROM _ledger_files ORDER BY ALL")
        ckpt = files.fetchall()
        bad = con.execute("SELECT * FROM _bad_lines ORDER BY ALL").fetchall()
        trials = con.execute("SELECT * FROM trial_results ORDER BY ALL").fetchall()
        runs = con.execute("SELECT * FROM runs_d ORDER BY run_id").fetchall()
    finally:
        con.close()
    return {"events": ev, "bad": bad, "trials": trials, "runs": runs, "files": ckpt}


def _report(rep: Any) -> tuple[Any, ...]:
    return (rep.mode, rep.events, rep.bad_lines, rep.duplicates, rep.bytes, rep.files,
            sorted(rep.warnings), rep.bad)  # fmt: skip


@pytest.mark.parametrize("upcasts", [True, False], ids=["upcasts", "bound-lists"])
def test_small_and_streamed_rounds_store_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upcasts: bool
) -> None:
    """With types to upcast the small path scans the core's Arrow batches; without, it binds
    their columns as lists (`insert_lists`): both store what the streamed path stores."""
    small, streamed = tmp_path / "small", tmp_path / "streamed"
    _log(small, 1)
    calls: list[str] = []

    def counting(name: str) -> Any:
        real = getattr(insert_mod, name)

        def counted(*a: Any) -> None:
            calls.append(name)
            real(*a)

        return counted

    for name in ("insert_small", "insert_lists"):
        monkeypatch.setattr(insert_mod, name, counting(name))
    up = Up() if upcasts else None
    reports: dict[str, list[Any]] = {"small": [], "streamed": []}
    for rnd in range(3):  # each root: a full rebuild, then a copy, then the alternate in place
        if rnd:
            _log(small, 1 + rnd)
        shutil.copytree(small / "events", streamed / "events", dirs_exist_ok=True)  # same log
        n = len(calls)
        reports["small"].append(_report(build_index(small, upcaster=up)))
        lists = [] if upcasts else ["insert_lists"]
        assert calls[n:] == ["insert_small", *lists]  # the small path ran
        monkeypatch.setattr(insert_mod, "SMALL_ROUND_BYTES", -1)
        reports["streamed"].append(_report(build_index(streamed, upcaster=up)))
        assert len(calls) == n + 1 + len(lists)  # the streamed path ran
        monkeypatch.setattr(insert_mod, "SMALL_ROUND_BYTES", 4 << 20)
        got, want = _rows(small), _rows(streamed)
        assert got == want
    assert reports["small"] == reports["streamed"]
    ev = got["events"]
    assert {r[8] for r in ev} == {"JSON"}
    assert any(r[4] is None for r in ev) and any(r[16] for r in ev)  # null run ids, shapes
    assert all((r[16] is None) == (r[17] is None) == (r[18] is None) for r in ev)
    assert any(r[17] and r[18] for r in ev)  # a trial's typed values
    if not upcasts:
        return
    assert any(r[13] is not None and r[16] is None for r in ev)  # upcast: no shape, no values
    assert any(r[1] == "trial.recorded" and r[13] is None and r[16] for r in ev)  # trial 3
    assert {r[8] for r in ev} == {"JSON"}
    assert got["bad"] and any("upcast failed" in w for w in reports["small"][0][6])


def test_one_event_rebuild_process_does_not_import_pyarrow(root: Path) -> None:
    write_sweep(root, runs=1, trials=5)
    build_index(root)
    w = _core.Writer(str(root), durability="os")
    w.emit("trial.recorded", {"trial_id": 99, "params": {}, "metrics": {}}, run_id="r-one")
    w.close()
    out, got = rebuild_in_fresh_process(root, [], ("pyarrow", "numpy", "pandas", "rich"))
    assert out[0].startswith("indexed 1 events"), out
    assert got == {"rc": 0, "heavy": []}


def test_report_offsets_are_the_published_checkpoints(root: Path) -> None:
    """`IndexReport.offsets` (what `wait_indexed` reads instead of reopening the index) equals
    the published `_ledger_files` after a full round, a copy, the alternate in place, a no-op."""
    from ledgerx.index.dbfile import read_state

    modes = []
    for seed in range(4):
        if seed < 3:
            write_sweep(root, runs=1, trials=3, seed=seed, day_us=T0 + (seed % 2) * DAY_US)
        rep = build_index(root)
        modes.append(rep.mode)
        ckpt, _ = read_state(IndexPaths.for_root(root).runs)
        assert rep.offsets == {rel: off for rel, (off, _, _) in ckpt.items()}
        assert len(rep.offsets) == len(part_files(root))
    assert modes == ["full", "incremental", "incremental", "noop"]


def test_wait_indexed_learns_the_offset_from_its_own_round(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The round `wait_indexed` runs hands back the checkpoints: it returns without asking the
    index again (one look before the round, none after)."""
    from ledgerx.reader import Reader, _OffsetProbe, wait_indexed

    write_sweep(root, runs=1, trials=3)
    build_index(root)
    w = _core.Writer(str(root), durability="os")
    pos = w.emit("trial.recorded", {"trial_id": 9, "params": {}, "metrics": {}}, run_id="r-9")
    w.close()
    looks: list[str] = []
    real = _OffsetProbe.offset

    def counted(self: _OffsetProbe, file: str) -> int:
        looks.append(file)
        return real(self, file)

    monkeypatch.setattr(_OffsetProbe, "offset", counted)
    wait_indexed(root, (pos[0], pos[1]), timeout=60)
    assert looks == [pos[0]]
    with Reader(root) as r:
        assert r.indexed_offset(pos[0]) > pos[1]


def test_offset_probe_follows_each_publish(root: Path) -> None:
    """`wait_indexed`'s probe keeps one connection and attaches the published file again after
    every publish (the alternate scheme swaps names: the old file must not be read)."""
    from ledgerx.reader import _OffsetProbe

    write_sweep(root, runs=1, trials=3)
    probe = _OffsetProbe(IndexPaths.for_root(root).runs)
    try:
        part = part_files(root)[0].relative_to(root / "events").as_posix()
        assert probe.offset(part) == -1  # no index yet
        build_index(root)
        assert probe.offset(part) == part_files(root)[0].stat().st_size
        for i in range(4):  # a copy, then in place
            w = _core.Writer(str(root), durability="os")
            pos = w.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r")
            f, off = pos[0], pos[1]
            w.close()
            assert probe.offset(f) <= off
            build_index(root)
            assert probe.offset(f) > off
            assert probe.offset("day=2000-01-01/part-000001.jsonl") == 0
    finally:
        probe.close()


def test_offset_probe_reads_another_process_publish_from_its_state_file(root: Path) -> None:
    """After a publish by another process (a daemon, a `ledgerx rebuild`), the probe takes the
    offsets from the state file the publisher left beside the file while the file keeps the
    identity recorded there (no ATTACH); a missing state file, or one naming another identity,
    sends it to the file itself: the same offsets either way."""
    import subprocess
    import sys

    from ledgerx.index.dbfile import state_file
    from ledgerx.reader import _OffsetProbe

    write_sweep(root, runs=1, trials=3)
    runs = IndexPaths.for_root(root).runs
    cli = [sys.executable, "-m", "ledgerx", "rebuild", "--root", str(root)]
    subprocess.run(cli, check=True, capture_output=True)
    part = part_files(root)[0].relative_to(root / "events").as_posix()
    size = part_files(root)[0].stat().st_size
    for how in ("state file", "no state file", "another identity"):
        if how == "no state file":
            state_file(runs).unlink()
        elif how == "another identity":
            subprocess.run(cli + ["--full-rebuild"], check=True, capture_output=True)
            doc = json.loads(state_file(runs).read_text())
            doc["ident"], doc["ckpt"] = "0:0:0", {part: [1, 1, 0]}  # another file's state
            state_file(runs).write_text(json.dumps(doc))
        probe = _OffsetProbe(runs)
        try:
            assert probe.offset(part) == size, how
            assert probe._attached == (how != "state file"), how
        finally:
            probe.close()


def test_wait_indexed_in_a_forked_child_after_the_parent_used_it(root: Path) -> None:
    """The probe's in-memory DuckDB is per process: a child forked after the parent waited gets
    its own (DuckDB's threads do not survive a fork) and its wait completes."""
    import os
    import time

    from ledgerx import reader
    from ledgerx.index import dbfile

    write_sweep(root, runs=1, trials=3)
    build_index(root)
    w = _core.Writer(str(root), durability="os")
    pos = w.emit("trial.recorded", {"trial_id": 1, "params": {}, "metrics": {}}, run_id="r")
    reader.wait_indexed(root, (pos[0], pos[1]), timeout=60)
    reader._probe_cursor().close()  # (the wait knew the offsets: this process published)
    parent_db = reader._PROBE_DB[os.getpid()]
    parent_work = dbfile._WORK_DB[os.getpid()]  # the indexer's DuckDB is per process too
    pos2 = w.emit("trial.recorded", {"trial_id": 2, "params": {}, "metrics": {}}, run_id="r")
    w.close()
    # Without the publisher's state file the child's probe opens the published file itself.
    dbfile.state_file(IndexPaths.for_root(root).runs).unlink()
    pid = os.fork()
    if pid == 0:  # the child: wait for the second event, report through the exit status
        code = 1
        try:
            reader.wait_indexed(root, (pos2[0], pos2[1]), timeout=60)
            code = 0 if reader._PROBE_DB[os.getpid()] is not parent_db else 2
            code = code or (0 if dbfile._WORK_DB[os.getpid()] is not parent_work else 3)
        finally:
            os._exit(code)
    deadline = time.monotonic() + 90
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's wait_indexed hung")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0

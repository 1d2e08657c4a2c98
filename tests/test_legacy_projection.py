"""The legacy-shaped projection `index/legacy.duckdb`, filled from events (docs/legacy.md)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
from index_support import T0, part_files, reference_events, write_sweep

import ledgerx
from ledgerx import _core
from ledgerx.cli import main
from ledgerx.index import IndexPaths, build_index
from ledgerx.legacy import compare, migrate, write_projection

from legacy_fixture import build, legacy_rows

COLUMNS = """SELECT table_schema, table_name, column_name, data_type, ordinal_position
             FROM information_schema.columns ORDER BY ALL"""


def _columns(path: Path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(COLUMNS).fetchall()
    finally:
        con.close()


def test_projection_matches_the_legacy_schema_and_data(tmp_path: Path, capsys) -> None:
    fx = build(tmp_path / "legacy.duckdb", runs=12)
    root = tmp_path / "ledger"
    migrate(root, fx.path)
    assert main(["rebuild", "--root", str(root), "--legacy-projection"]) == 0
    capsys.readouterr()
    proj = root / "index" / "legacy.duckdb"
    assert proj.exists()
    assert _columns(proj) == _columns(fx.path)  # same tables, columns, order and types
    # The projection is a legacy file the index agrees with, row by row.
    rep = compare(root, proj)
    assert rep.ok and rep.complete, rep.text()
    assert rep.runs_compared == 12
    con = duckdb.connect(str(proj), read_only=True)
    a = con.execute(
        "SELECT run_id, status, created_at, completed_at FROM optimizer.runs_d ORDER BY run_id"
    ).fetchall()
    con.close()
    con = duckdb.connect(str(fx.path), read_only=True)
    b = con.execute(
        "SELECT run_id, status, created_at, completed_at FROM optimizer.runs_d ORDER BY run_id"
    ).fetchall()
    con.close()
    assert a == b  # same naive UTC times, same statuses (no `abandoned` in legacy)


def test_later_rounds_keep_the_projection_current(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    build_index(root, durable=False)  # empty log, no projection asked for
    assert not (root / "index" / "legacy.duckdb").exists()
    build_index(
        root, durable=False, hook_options={"legacy_projection": True}
    )  # noop round still creates it
    proj = root / "index" / "legacy.duckdb"
    assert _columns(proj)
    with ledgerx.open(root, durability="fsync") as led:
        with led.run(run_kind="sweep", config={"a": 1}, data_fingerprint="fp") as run:
            run.trial(trial_id=7, params={"x": 1}, metrics={"m": 0.5})
        run_id = run.run_id
    build_index(root, durable=False)  # default: an existing projection is kept current
    con = duckdb.connect(str(proj), read_only=True)
    rows = con.execute(
        "SELECT r.status, t.trial_id FROM optimizer.runs_d r "
        "JOIN optimizer.trials_f t USING (run_id) WHERE run_id = ?",
        [run_id],
    ).fetchall()
    con.close()
    assert rows == [("completed", 7)]
    assert main(["legacy", "project", "--root", str(root), "--remove"]) == 0
    build_index(root, durable=False)
    assert not proj.exists()


def _from_scratch(paths: IndexPaths, tmp: Path) -> Path:
    """The projection written in full from a copy of the same index files."""
    tmp.mkdir()
    for f in (paths.runs, paths.alerts):
        shutil.copy(f, tmp / f.name)
    return write_projection(IndexPaths.for_root(tmp, tmp / "runs.duckdb"), full=True).path


def _add_to_run(root: Path, run_id: str, trials: int) -> None:
    w = _core.Writer(str(root), durability="os")
    w._set_fake_now(T0 + 7_200_000_000)
    w.emit("phase.started", {"phase": "extra", "phase_index": 2}, run_id=run_id)
    for t in range(trials):
        data = {"trial_id": 100 + t, "params": {"p": t}, "metrics": {"m": t / 4}}
        w.emit("trial.recorded", data, run_id=run_id)
    w.emit("phase.completed", {"phase": "extra", "duration_ms": 2.5}, run_id=run_id)
    w.close()


def _independent_trials(root: Path) -> list[tuple]:
    """trials_f as the independent reader (tests/logcheck.py) reads the log."""
    out = []
    for e in reference_events(root):
        if e["event_type"] == "trial.recorded":
            d = e["data"]
            ts = datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).replace(tzinfo=None)
            out.append((e["run_id"], d["trial_id"], d["params"], d["metrics"], ts))
    return sorted(out, key=repr)


def test_a_round_touches_only_what_changed_and_equals_a_full_projection(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    ids = write_sweep(root, runs=6, trials=5, alerts=2)
    no_hook = {"legacy_projection": False}
    build_index(root, durable=False, hook_options={"legacy_projection": True})
    paths = IndexPaths.for_root(root)
    # One old run gains a phase and 3 trials; one new run (2 phases, 5 trials, 1 baseline)
    # and one alert arrive.
    _add_to_run(root, ids[2], 3)
    write_sweep(root, runs=1, trials=5, alerts=1, seed=9)
    build_index(root, durable=False, hook_options=no_hook)
    rep = write_projection(paths, durable=False)
    assert rep.mode == "incremental" and rep.runs == 2
    # Exactly the rows of the two runs and the new facts: nothing else rewritten.
    assert rep.deleted == {"runs_d": 1, "phases_d": 2}
    assert rep.inserted == {"runs_d": 2, "phases_d": 3 + 2, "trials_f": 3 + 5, "results": 1,
                            "alerts_raw": 1}  # fmt: skip
    kept = legacy_rows(rep.path)
    assert kept == legacy_rows(_from_scratch(paths, tmp_path / "a"))
    con = duckdb.connect(str(rep.path), read_only=True)
    got = con.execute(
        "SELECT run_id, trial_id, params, metrics, recorded_at FROM optimizer.trials_f"
    )
    got_rows = sorted(
        ((r, t, json.loads(p), json.loads(m), ts) for r, t, p, m, ts in got.fetchall()), key=repr
    )
    con.close()
    assert got_rows == _independent_trials(root)
    # A round with nothing new changes no row; a full rebuild (new lineage) writes all again.
    rep = write_projection(paths, durable=False)
    assert (rep.mode, rep.inserted, rep.deleted) == ("incremental", {}, {})
    build_index(root, durable=False, full_rebuild=True, hook_options=no_hook)
    rep = write_projection(paths, durable=False)
    assert rep.mode == "full" and rep.inserted["trials_f"] == 6 * 5 + 3 + 5
    assert legacy_rows(rep.path) == kept


def test_a_dropped_old_row_makes_the_next_round_full(tmp_path: Path) -> None:
    """A line that repeats an indexed id earlier in (file, offset) order replaces the indexed
    row: the projection, which cannot see that as new rows, is written in full."""
    root = tmp_path / "ledger"
    write_sweep(root, runs=2, trials=3, alerts=0)
    build_index(root, durable=False, hook_options={"legacy_projection": True})
    paths = IndexPaths.for_root(root)
    part = part_files(root)[0]
    first_trial = next(ln for ln in part.read_bytes().splitlines(True) if b"trial.recorded" in ln)
    early = part.with_name("part-000000-aaaaaaaaaaaa-000000.jsonl")
    assert early.name < part.name
    early.write_bytes(first_trial)
    r = build_index(root, durable=False, hook_options={"legacy_projection": False})
    assert r.duplicates == 1
    rep = write_projection(paths, durable=False)
    assert legacy_rows(rep.path) == legacy_rows(_from_scratch(paths, tmp_path / "a"))
    assert rep.mode == "full"

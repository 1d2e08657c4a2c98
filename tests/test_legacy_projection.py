"""The legacy-shaped projection `index/legacy.duckdb`, filled from events (docs/legacy.md)."""

from __future__ import annotations

from pathlib import Path

import duckdb

import ledgerx
from ledgerx.cli import main
from ledgerx.index import build_index
from ledgerx.legacy import compare, migrate

from legacy_fixture import build

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

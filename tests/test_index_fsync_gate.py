"""DuckDB's `fsync_mode` is its instance's setting: a round that writes its side files without
DuckDB's fsyncs through this process's shared indexer instance must not take them from another
round writing through that instance at the same time (`dbfile.fsync_off`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from index_support import write_sweep

from ledgerx import _core
from ledgerx.index import build_index, dbfile
from ledgerx.index.engine import duckdb


def _fsync_mode(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT current_setting('fsync_mode')").fetchone()
    assert row is not None
    return str(row[0]).upper()


def _writer(path: Path) -> tuple[duckdb.DuckDBPyConnection, str]:
    cur = dbfile.work_cursor()
    return cur, dbfile.attach(cur, path, read_only=False)


def test_fsyncs_stay_on_while_another_file_is_written(tmp_path: Path) -> None:
    a, alias_a = _writer(tmp_path / "a.duckdb")
    b, alias_b = _writer(tmp_path / "b.duckdb")
    try:
        with dbfile.fsync_off(a, alias_a):
            assert _fsync_mode(b) != "NONE"  # b's commits stay durable
    finally:
        dbfile.release(b, alias_b)
    try:
        with dbfile.fsync_off(a, alias_a):
            assert _fsync_mode(a) == "NONE"  # alone now
        assert _fsync_mode(a) != "NONE"
    finally:
        dbfile.release(a, alias_a)


def test_a_writer_attaching_meanwhile_waits_until_fsyncs_are_back(tmp_path: Path) -> None:
    a, alias_a = _writer(tmp_path / "a.duckdb")
    seen: list[str] = []

    def other_round() -> None:
        b, alias_b = _writer(tmp_path / "b.duckdb")
        seen.append(_fsync_mode(b))
        dbfile.release(b, alias_b)

    try:
        with dbfile.fsync_off(a, alias_a):
            t = threading.Thread(target=other_round)
            t.start()
            time.sleep(0.2)
            assert seen == []  # still waiting to attach
        t.join(30)
        assert seen and seen[0] != "NONE"
    finally:
        dbfile.release(a, alias_a)


def test_a_private_instance_turns_its_own_fsyncs_off(tmp_path: Path) -> None:
    shared, alias = _writer(tmp_path / "shared.duckdb")
    own = duckdb.connect(str(tmp_path / "own.duckdb"))
    try:
        with dbfile.fsync_off(own, None):
            assert _fsync_mode(own) == "NONE"
            assert _fsync_mode(shared) != "NONE"
        assert _fsync_mode(own) != "NONE"
    finally:
        own.close()
        dbfile.release(shared, alias)


def test_a_side_file_attaches_under_a_name_of_its_own(tmp_path: Path) -> None:
    """Rounds of two roots in two threads share the process's DuckDB, whose database names are
    instance-wide: a side file attached under a fixed name ("side") failed the other round's
    ("database with name side already exists"). With one attached under that name meanwhile,
    small incremental rounds (side files through the shared instance) still publish."""
    root = tmp_path / "ledger"
    write_sweep(root, runs=1, trials=3)
    build_index(root)
    other = dbfile.work_cursor()
    other.execute(f"ATTACH {dbfile.sql_str(str(tmp_path / 'other.duckdb'))} AS side")
    try:
        for i in range(2):  # a copy, then the alternate in place
            w = _core.Writer(str(root), durability="os")
            w.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r")
            w.close()
            rep = build_index(root)
            assert rep.mode == "incremental" and rep.published
    finally:
        other.execute("DETACH side")
        other.close()
    assert not [n for (n,) in _database_names() if n.startswith("side_")]  # none left attached


def _database_names() -> list[tuple[str]]:
    cur = dbfile.work_cursor()
    try:
        return cur.execute("SELECT database_name FROM duckdb_databases()").fetchall()
    finally:
        cur.close()

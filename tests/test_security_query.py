"""Security: `ledgerx query` reads and never changes anything; `verify` catches a changed index.

The attack (before the fix): `USE memory; DETACH ledger; ATTACH '<index>' AS x; DELETE ...;
CHECKPOINT x` re-attached the published index read-write (DuckDB allows a path it attached
before) and changed it, and `COPY ... TO '.tmp/x'` wrote under the current directory (DuckDB's
default temp folder is allowed). An UPDATE of an index row kept counts and event ids, so
`verify` said OK. See docs/security.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from index_support import write_sweep

from ledgerx.index import IndexPaths, build_index
from ledgerx.index.safesql import QueryRefusedError, check_read_only_sql
from ledgerx.reader import Reader

from conftest import cli


@pytest.fixture
def ledger(root: Path) -> Path:
    write_sweep(root, runs=2, trials=5)
    build_index(root)
    return root


def q(root: Path, sql: str, cwd: Path | None = None) -> tuple[int, str, str]:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "ledgerx", "query", "--json", "--root", str(root), sql],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )
    return r.returncode, r.stdout, r.stderr


def count(root: Path, table: str = "events") -> int:
    with Reader(root, external_access=False) as r:
        return int(r.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def test_detach_attach_delete_checkpoint_is_refused(ledger: Path, tmp_path: Path) -> None:
    db = IndexPaths.for_root(ledger).runs
    before = count(ledger)
    attack = (
        f"USE memory; DETACH ledger; ATTACH '{db}' AS x; "
        "DELETE FROM x.events WHERE event_type = 'trial.recorded'; CHECKPOINT x; SELECT 1"
    )
    rc, out, err = q(ledger, attack)
    assert rc == 1 and err.count("\n") == 1 and "one statement only" in err, err
    assert count(ledger) == before, "the published index was changed by a query"
    with Reader(ledger, external_access=False) as r:
        for one in ["USE memory", "DETACH ledger", f"ATTACH '{db}' AS x", "CHECKPOINT"]:
            with pytest.raises(QueryRefusedError, match="read-only queries only"):
                r.sql(one)
    assert count(ledger) == before


def test_copy_to_the_temp_folder_writes_nothing(ledger: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    (cwd / ".tmp").mkdir(parents=True)
    rc, _, err = q(ledger, "COPY (SELECT * FROM events) TO '.tmp/leak.csv'", cwd=cwd)
    assert rc == 1 and "COPY statement" in err, err
    assert list((cwd / ".tmp").iterdir()) == []


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM events",
        "UPDATE events SET data = '{}'",
        "INSERT INTO events SELECT * FROM events",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE events",
        "SET enable_external_access = true",
        "PRAGMA table_info('events')",
        "CALL checkpoint()",
        "INSTALL httpfs",
        "LOAD httpfs",
        "EXPORT DATABASE '/tmp/x'",
        "PIVOT events ON event_type",
        "EXPLAIN ANALYZE DELETE FROM events",
        "EXPLAIN ANALYZE SELECT 1; DELETE FROM events",
        "SELECT 1; SELECT 2",
        "",
        "SELEC 1",
    ],
)
def test_only_one_read_only_statement_passes(sql: str) -> None:
    with pytest.raises(QueryRefusedError):
        check_read_only_sql(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM events",
        "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
        "VALUES (1), (2)",
        "FROM events LIMIT 1",
        "DESCRIBE events",
        "SHOW TABLES",
        "SUMMARIZE runs_d",
        "EXPLAIN SELECT * FROM events",
        "/* note */ EXPLAIN ANALYZE SELECT 1",
        "SELECT 1;",
    ],
)
def test_read_only_statements_run(ledger: Path, sql: str) -> None:
    assert check_read_only_sql(sql) == sql
    with Reader(ledger, external_access=False) as r:  # what `ledgerx query` runs
        r.sql(sql).fetchall()


def test_the_connection_itself_cannot_reach_files_or_settings(ledger: Path) -> None:
    """The second layer, for anything that bypasses the statement check (the dashboard reuses
    it through Reader(external_access=False))."""
    with Reader(ledger, external_access=False) as r:
        con = r.connection
        tmp = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
        assert "ledgerx-duckdb-" in tmp and Path(tmp).stat().st_mode & 0o077 == 0
        for sql in [
            "COPY (SELECT 1) TO '/tmp/ledgerx-never.csv'",
            "SELECT * FROM read_text('/etc/passwd')",
            "SET enable_external_access = true",
            "SET temp_directory = '.tmp'",
            "SET lock_configuration = false",
            "LOAD httpfs",
        ]:
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        with pytest.raises(QueryRefusedError, match="DETACH"):
            r.sql("DETACH ledger")
        assert r.sql("SELECT count(*) FROM events").fetchall()[0][0] > 0
    assert not Path("/tmp/ledgerx-never.csv").exists()


def _tamper(ledger: Path, sql: str) -> None:
    """What an attacker with write access to index/ (or the old query hole) could do."""
    con = duckdb.connect(str(IndexPaths.for_root(ledger).runs))
    try:
        con.execute(sql)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def test_verify_catches_an_updated_row_and_names_it(ledger: Path) -> None:
    r = cli("verify", "--root", str(ledger))
    assert r.returncode == 0, r.stdout
    eid = json.loads(
        q(ledger, "SELECT event_id FROM events WHERE event_type = 'trial.recorded' LIMIT 1")[1]
    )[0]["event_id"]
    _tamper(ledger, f"UPDATE events SET data = '{{\"forged\": true}}' WHERE event_id = '{eid}'")
    # the damage survives an incremental rebuild; verify still sees it
    write_sweep(ledger, runs=1, trials=1, seed=9)
    build_index(ledger)
    r = cli("verify", "--root", str(ledger))
    assert r.returncode == 1, r.stdout
    assert "index content differs from the log (same count" in r.stdout, r.stdout
    assert f"index: event {eid} differs from its log line (day=" in r.stdout, r.stdout


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET run_id = 'other' WHERE rowid = 3",
        "UPDATE events SET ts = ts + INTERVAL 1 SECOND WHERE rowid = 3",
        "UPDATE events SET seq = seq + 1000 WHERE rowid = 3",
        "UPDATE events SET event_type = 'run.failed' WHERE rowid = 3",
        'UPDATE events SET "offset" = "offset" + 1 WHERE rowid = 3',
    ],
)
def test_verify_catches_each_changed_field(ledger: Path, sql: str) -> None:
    _tamper(ledger, sql)
    r = cli("verify", "--root", str(ledger), "--json")
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and not rep["ok"], rep
    assert any("differs from its log line" in p for p in rep["problems"]), rep["problems"]

"""`ledgerx legacy archive`: only after a passing, complete compare (docs/legacy.md)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb

from ledgerx.cli import main
from ledgerx.index import build_index
from ledgerx.legacy import migrate

from legacy_fixture import build, migrated_ledger


def _archive(root: Path, legacy: Path) -> int:
    return main(["legacy", "archive", "--root", str(root), "--legacy", str(legacy)])


def test_archive_refuses_before_migration_and_works_after(tmp_path: Path, capsys) -> None:
    fx = build(tmp_path / "legacy.duckdb", runs=8)
    root = tmp_path / "ledger"
    digest = hashlib.sha256(fx.path.read_bytes()).hexdigest()
    # No index at all.
    assert _archive(root, fx.path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ledgerx: error: not archived: no index")
    # An index without the legacy rows: compare has nothing to prove.
    build_index(root, durable=False)
    assert _archive(root, fx.path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "8 legacy runs and 20 alerts are not in the index" in err
    assert fx.path.exists() and not (root / "archive").exists()

    migrate(root, fx.path)
    build_index(root, durable=False)
    assert _archive(root, fx.path) == 0
    assert "archived" in capsys.readouterr().out
    dest = root / "archive" / "legacy"
    assert not fx.path.exists()
    assert hashlib.sha256((dest / "legacy.duckdb").read_bytes()).hexdigest() == digest
    assert (dest / "legacy.duckdb.sha256").read_text() == f"{digest}  legacy.duckdb\n"
    check = subprocess.run(
        ["sha256sum", "-c", "legacy.duckdb.sha256"], cwd=dest, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads((dest / "legacy.duckdb.manifest.json").read_text())
    assert manifest["files"][0]["sha256"] == digest
    assert manifest["source"] == str(fx.path) and manifest["compare"]["runs"] == 8


def test_archive_refuses_when_compare_fails(tmp_path: Path, capsys) -> None:
    root, fx = migrated_ledger(tmp_path, runs=6)
    con = duckdb.connect(str(fx.path))
    con.execute("UPDATE optimizer.runs_d SET run_kind = 'changed' WHERE run_id = 'run-legacy-000'")
    con.close()
    assert _archive(root, fx.path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "legacy and index differ (1 differences" in err
    assert fx.path.exists()


def test_archive_refuses_a_file_open_for_writing(tmp_path: Path, capsys) -> None:
    root, fx = migrated_ledger(tmp_path, runs=4)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); "
            "print('holding', flush=True); sys.stdin.read()",
            str(fx.path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        assert _archive(root, fx.path) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "open for writing by another process" in err
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert fx.path.exists()
    # An archive that already holds the name is never overwritten.
    dest = root / "archive" / "legacy"
    dest.mkdir(parents=True)
    shutil.copyfile(fx.path, dest / "legacy.duckdb")
    assert _archive(root, fx.path) == 1
    assert "already exists" in capsys.readouterr().err

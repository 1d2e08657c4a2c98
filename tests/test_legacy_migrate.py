"""`ledgerx legacy migrate` and `compare` (docs/legacy.md)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ledgerx.cli import main
from ledgerx.index import build_index
from ledgerx.legacy import MigrationError, compare, migrate

from legacy_fixture import build, build_bulk, migrated_ledger


def _log_lines(root: Path) -> list[dict]:
    out = []
    for p in sorted((root / "events").glob("day=*/*.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines()]
    return out


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return migrated_ledger(tmp_path_factory.mktemp("migrate"))


def test_migrate_then_rebuild_then_compare_passes(migrated, capsys) -> None:
    root, fx = migrated
    rep = compare(root, fx.path)
    assert rep.ok and rep.complete, rep.text()
    assert rep.runs_compared == len(fx.runs)
    assert rep.rows_compared == {
        "latest_runs": len(fx.runs),
        "run_phase_summary": 69,
        "trial_results": fx.n_trials - 1,  # run 4 records trial 3 twice: the latest shows, once
        "baseline_results": fx.n_baselines,
        "alerts": fx.n_alerts,
    }
    assert main(["legacy", "compare", "--root", str(root), "--legacy", str(fx.path)]) == 0
    assert capsys.readouterr().out.startswith("OK: 24 runs and 20 alerts")
    assert main(["legacy", "compare", "--root", str(root), "--legacy", str(fx.path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["complete"] and out["differences"] == []


def test_migrated_events_are_marked_and_exact(migrated) -> None:
    root, fx = migrated
    events = _log_lines(root)
    assert events and all(e["writer"].startswith("legacy-") for e in events)
    by_type: dict[str, list[dict]] = {}
    for e in events:
        by_type.setdefault(e["event_type"], []).append(e)
    assert len(by_type["run.created"]) == len(fx.runs)
    assert len(by_type["trial.recorded"]) == fx.n_trials
    assert len(by_type["alert.ingested"]) == fx.n_alerts
    assert all(e["data"]["artifact_paths"] == [] for e in by_type["run.completed"])
    assert all(e["data"]["error"] == "" for e in by_type["run.failed"])
    # Timestamps keep their microseconds, in UTC; the big unicode config survives byte for byte.
    created = {e["run_id"]: e for e in by_type["run.created"]}
    legacy = duckdb.connect(str(fx.path), read_only=True)
    ((ts, cfg),) = legacy.execute(
        "SELECT created_at, config FROM optimizer.runs_d WHERE run_id = 'run-legacy-002'"
    ).fetchall()
    assert created["run-legacy-002"]["ts"] == ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert created["run-legacy-002"]["data"]["config"] == json.loads(cfg)
    assert created["run-legacy-002"]["data"]["config"]["notes"].endswith("🚀")
    # A running run that never started gets a heartbeat, so the index calls it running too.
    assert [e["run_id"] for e in by_type["run.heartbeat"]] == ["run-legacy-014"]


def test_rerunning_migrate_adds_nothing(migrated, capsys) -> None:
    root, fx = migrated
    before = sorted(p.read_bytes() for p in (root / "events").glob("day=*/*.jsonl"))
    rep = migrate(root, fx.path)
    assert rep.written == 0 and rep.skipped_existing == rep.candidates > 0
    assert main(["legacy", "migrate", "--root", str(root), "--legacy", str(fx.path)]) == 0
    assert "wrote 0 events" in capsys.readouterr().out
    after = sorted(p.read_bytes() for p in (root / "events").glob("day=*/*.jsonl"))
    assert after == before  # not one line more
    assert build_index(root, durable=False).mode == "noop"


def test_new_legacy_rows_migrate_incrementally(tmp_path: Path) -> None:
    root, fx = migrated_ledger(tmp_path, runs=6)
    con = duckdb.connect(str(fx.path))
    con.execute(
        "INSERT INTO optimizer.trials_f VALUES ('run-legacy-000', 99, '{}', "
        "'{\"sharpe\": 1}', TIMESTAMP '2025-11-20 00:00:00')"
    )
    con.close()
    n = len(_log_lines(root))
    rep = migrate(root, fx.path)
    assert rep.written == 1 and rep.by_type == {"trial.recorded": 1}
    assert len(_log_lines(root)) == n + 1
    build_index(root, durable=False)
    assert compare(root, fx.path).complete


def test_compare_fails_with_a_readable_diff(migrated, tmp_path: Path, capsys) -> None:
    root, fx = migrated
    altered = tmp_path / "altered.duckdb"
    shutil.copyfile(fx.path, altered)
    con = duckdb.connect(str(altered))
    con.execute(
        "UPDATE optimizer.trials_f SET metrics = '{\"sharpe\": 9.5}' "
        "WHERE run_id = 'run-legacy-000' AND trial_id = 2"
    )
    con.execute(
        "UPDATE optimizer.runs_d SET completed_at = completed_at + INTERVAL 1 MICROSECOND "
        "WHERE run_id = 'run-legacy-007'"
    )
    con.execute("DELETE FROM optimizer.phases_d WHERE run_id = 'run-legacy-002' AND phase = 'plan'")
    con.close()
    rc = main(["legacy", "compare", "--root", str(root), "--legacy", str(altered)])
    out = capsys.readouterr().out
    assert rc == 1
    assert out.startswith("DIFFERENT")
    assert (
        "trial_results [run_id=run-legacy-000, trial_id=2, #=1] metrics: legacy "
        "'{\"sharpe\":9.5}' != index" in out
    )
    assert "latest_runs [run_id=run-legacy-007] completed_at: legacy " in out
    assert "latest_runs [run_id=run-legacy-007] duration_ms" in out
    assert "run_phase_summary [run_id=run-legacy-002, phase=plan]: row only in index" in out
    rep = compare(root, altered)
    assert not rep.ok and rep.n_differences == 4


def test_compare_checks_types(migrated, tmp_path: Path) -> None:
    root, fx = migrated
    from ledgerx.legacy.compare import compare_reader
    from ledgerx.legacy.dual import DualReader

    with DualReader(root, legacy=fx.path, cutover="2000-01-01") as r:
        # A legacy view drifting from the index's types is reported, not coerced.
        r.connection.execute(
            "CREATE OR REPLACE TEMP VIEW legacy_baseline_results AS SELECT "
            "event_id, run_id, baseline, CAST(metrics AS VARCHAR) AS metrics, "
            "completed_at FROM legacy_baselines_n"
        )
        rep = compare_reader(r)
    assert not rep.ok and "baseline_results" in rep.type_differences[0]


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    fx = build(tmp_path / "legacy.duckdb", runs=4)
    assert main(["legacy", "compare", "--root", str(tmp_path / "r"), "--legacy", str(fx.path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `ledgerx rebuild` first" in err
    assert (
        main(
            [
                "legacy",
                "migrate",
                "--root",
                str(tmp_path / "r"),
                "--legacy",
                str(tmp_path / "missing.duckdb"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "legacy file not found" in err
    not_legacy = tmp_path / "other.duckdb"
    duckdb.connect(str(not_legacy)).close()
    assert (
        main(["legacy", "migrate", "--root", str(tmp_path / "r"), "--legacy", str(not_legacy)]) == 1
    )
    assert "not a legacy file" in capsys.readouterr().err


def test_rows_the_log_cannot_hold_stop_migration_before_writing(tmp_path: Path) -> None:
    fx = build(tmp_path / "legacy.duckdb", runs=4)
    con = duckdb.connect(str(fx.path))
    con.execute("UPDATE optimizer.phases_d SET phase_index = -1 WHERE run_id = 'run-legacy-001'")
    con.close()
    msg = r"5 legacy row\(s\) cannot .* nothing written: phase 'plan' #1 of run run-legacy-001 "
    with pytest.raises(MigrationError, match=msg + r"\(phase.started\): data.phase_index"):
        migrate(tmp_path / "r", fx.path)
    assert not list((tmp_path / "r").glob("events/day=*/*.jsonl"))


def _log_in_order(root: Path) -> list[tuple]:
    """(event_id, type, ts, run_id, data) of every line, in the order the writer wrote them
    (one writer: its parts by name, lines by offset; seq contiguous)."""
    lines = _log_lines(root)
    assert [e["seq"] for e in lines] == list(range(lines[0]["seq"], lines[0]["seq"] + len(lines)))
    return [(e["event_id"], e["event_type"], e["ts"], e["run_id"], e["data"]) for e in lines]


def test_streamed_windows_give_the_same_log_in_time_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read back 3 rows per time window (dozens of windows, equal times on window edges), the
    log is the one a single window gives, in (time, old step order, id) order, each id once."""
    mig = importlib.import_module("ledgerx.legacy.migrate")
    fx = build(tmp_path / "legacy.duckdb", runs=12)
    migrate(tmp_path / "one", fx.path)
    monkeypatch.setattr(mig, "_WINDOW_ROWS", 3)
    monkeypatch.setattr(mig, "_FETCH_ROWS", 2)
    migrate(tmp_path / "many", fx.path)
    one, many = _log_in_order(tmp_path / "one"), _log_in_order(tmp_path / "many")
    assert many == one
    assert len({e[0] for e in many}) == len(many)
    # Time order, the old code's step order within one time, then id.
    keys = [(e[2], mig._RANK[e[1]], e[0]) for e in many]
    assert keys == sorted(keys)


def test_migrate_streams_memory_does_not_grow_with_the_legacy_file(tmp_path: Path) -> None:
    """8,000 trials whose params parse into ~1,000 Python objects each (5 KB of JSON). Held in
    a list, as the old implementation did (or a pass collecting its events: `list(events)`),
    the child's peak RSS is ~1 GB; streamed it stays near 300 MB (DuckDB's share capped at
    256 MB, spilling beyond; one outlier of 448 MB seen with 4,000 trials). The bound sits
    between; 1M rows: `make soak-migrate`."""
    legacy = tmp_path / "bulk.duckdb"
    rows = build_bulk(legacy, runs=4, trials_per_run=2000, floats=2, empties=1000)
    root = tmp_path / "r"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "ledgerx", "legacy", "migrate", "--root", str(root),
             "--legacy", str(legacy)],
            stdout=out, stderr=err,
        )  # fmt: skip
        _, status, usage = os.wait4(p.pid, 0)  # the child's own peak RSS (KiB)
    assert status == 0, (tmp_path / "err").read_text()
    lines = sum(f.read_text().count("\n") for f in (root / "events").glob("day=*/*.jsonl"))
    assert rows == 8004 and lines == 4 * 3 + 8000
    assert usage.ru_maxrss < 600 * 1024, f"peak RSS {usage.ru_maxrss // 1024} MB"

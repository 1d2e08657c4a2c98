"""`ledgerx legacy migrate` and `compare` (docs/legacy.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from ledgerx.cli import main
from ledgerx.index import build_index
from ledgerx.legacy import MigrationError, compare, migrate

from legacy_fixture import build, migrated_ledger


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

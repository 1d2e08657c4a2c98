"""Dual mode: `ledgerx.legacy.DualReader(root, legacy=..., cutover=...)` (docs/legacy.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

import ledgerx
from ledgerx.index import build_index
from ledgerx.legacy import DualReader, LegacyError, LegacyLockedError, legacy_event_id

from legacy_fixture import CUTOVER, build, migrated_ledger

VIEWS = ["latest_runs", "run_phase_summary", "trial_results", "baseline_results"]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return migrated_ledger(tmp_path_factory.mktemp("dual"))


def _types(reader: DualReader, rel: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in reader.sql(f"DESCRIBE SELECT * FROM {rel}").fetchall()]


def _altered_copy(fx_path: Path, dst: Path) -> Path:
    """The fixture with one pre-cutover and one post-cutover run's kind changed."""
    shutil.copyfile(fx_path, dst)
    con = duckdb.connect(str(dst))
    con.execute(
        "UPDATE optimizer.runs_d SET run_kind = 'FROM-LEGACY' WHERE run_id IN "
        "('run-legacy-001', 'run-legacy-022')"
    )
    con.execute(
        "UPDATE optimizer.trials_f SET metrics = '{\"sharpe\": 42}' WHERE run_id = 'run-legacy-001'"
    )
    con.close()
    return dst


def test_reader_with_legacy_is_dual(migrated, tmp_path: Path) -> None:
    root, fx = migrated
    r = DualReader(root, legacy=fx.path, cutover=CUTOVER)
    try:
        assert isinstance(r, DualReader)
        # Same columns and types as the index's own views, for every standard query.
        for v in VIEWS:
            assert _types(r, v) == _types(r, f"ledger.main.{v}"), v
            assert _types(r, f"legacy_{v}") == _types(r, f"ledger.main.{v}"), v
        assert _types(r, "alerts") == _types(r, "index_alerts")
        assert r.latest_runs().columns == [
            "run_id",
            "run_kind",
            "status",
            "created_at",
            "started_at",
            "completed_at",
            "duration_ms",
            "summary",
            "trials",
        ]
        assert len(r.latest_runs().fetchall()) == len(fx.runs)
        assert r.run("run-legacy-021").columns == r.run("run-legacy-022").columns
    finally:
        r.close()
    with pytest.raises(ValueError, match="cutover"):
        ledgerx.Reader(root, cutover=CUTOVER)
    # The plain Reader knows nothing of legacy: dual mode is constructed explicitly.
    with pytest.raises(ledgerx.ConfigError, match="ledgerx.legacy.DualReader"):
        ledgerx.Reader(root, legacy=fx.path, cutover=CUTOVER)


def test_runs_before_cutover_come_from_legacy(migrated, tmp_path: Path) -> None:
    root, fx = migrated
    legacy = _altered_copy(fx.path, tmp_path / "altered.duckdb")
    with DualReader(root, legacy=legacy, cutover=CUTOVER) as r:
        kinds = dict(r.sql("SELECT run_id, run_kind FROM latest_runs").fetchall())
        # run 001 was created before the cutover: legacy answers; run 022 exactly at it: index.
        assert kinds["run-legacy-001"] == "FROM-LEGACY"
        assert kinds["run-legacy-022"] != "FROM-LEGACY"
        assert r.owner("run-legacy-021") == "legacy"  # one microsecond before the cutover
        assert r.owner("run-legacy-022") == "index"
        trials = r.trials("run-legacy-001").fetchall()
        assert trials and all(t[4] == '{"sharpe":42}' for t in trials)
        assert r.run("run-legacy-001").fetchall()[0][1] == "FROM-LEGACY"
        assert r.run("run-legacy-022").fetchall()[0][1] != "FROM-LEGACY"
        # Phases of a legacy run: the retried backtest is one row, durations summed.
        ph = {p[1]: p for p in r.phases("run-legacy-001").fetchall()}
        raw = (
            duckdb.connect(str(legacy), read_only=True)
            .execute(
                "SELECT sum(duration_ms) FROM optimizer.phases_d "
                "WHERE run_id = 'run-legacy-001' AND phase = 'backtest'"
            )
            .fetchall()[0][0]
        )
        assert ph["backtest"][5] == pytest.approx(raw)
        # Alerts split on their own time: the one exactly at the cutover is the index's.
        ts = [a[5] for a in r.alerts().fetchall()]
        assert len(ts) == 20 and ts == sorted(ts)


def test_status_and_nulls_in_the_ledger_model(migrated) -> None:
    root, fx = migrated
    with DualReader(root, legacy=fx.path, cutover="2099-01-01") as r:
        rows = {x[0]: x for x in r.latest_runs().fetchall()}
        assert rows["run-legacy-005"][2] == "running"  # legacy keeps its `running`
        assert rows["run-legacy-011"][2] == "created"
        assert rows["run-legacy-003"][2] == "failed" and rows["run-legacy-003"][7] is None
        assert rows["run-legacy-009"][7] == "{}"  # completed, NULL summary: the neutral object
        assert rows["run-legacy-005"][5] is None and rows["run-legacy-005"][6] is None
        m = r.sql(
            "SELECT metrics FROM trial_results WHERE run_id = 'run-legacy-006' AND trial_id = 1"
        ).fetchall()[0][0]
        assert "sortino" not in m  # a null metric is not a number: dropped


def test_legacy_event_ids_are_deterministic_uuid7(migrated) -> None:
    root, fx = migrated
    with DualReader(root, legacy=fx.path, cutover=CUTOVER) as r:
        rows = r.sql(
            "SELECT epoch_us(recorded_at), run_id, trial_id, k, event_id FROM legacy_trials_n"
        ).fetchall()
    assert rows
    for us, run_id, tid, k, eid in rows:
        assert eid == legacy_event_id(us, "trial.recorded", run_id, tid, str(k))
        assert eid[14] == "7" and eid[19] in "89ab"
        assert int(eid.replace("-", "")[:12], 16) == us // 1000
    assert len({r[4] for r in rows}) == len(rows)  # a re-recorded trial id still has its own


def test_without_an_index_legacy_answers_alone(tmp_path: Path) -> None:
    fx = build(tmp_path / "legacy.duckdb", runs=10)
    with DualReader(tmp_path / "empty-root", legacy=fx.path, cutover=CUTOVER) as r:
        assert {x[0] for x in r.latest_runs().fetchall()} == set(fx.before_cutover)
        assert r.phases("run-legacy-001").fetchall()
    with pytest.raises(LegacyError, match="not found"):
        DualReader(tmp_path, legacy=tmp_path / "nope.duckdb", cutover=CUTOVER)
    with pytest.raises(ValueError, match="cutover"):
        DualReader(tmp_path, legacy=fx.path, cutover="not-a-date")


HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO canon.alerts_raw VALUES ('alert-new', 'canon', 'info', '{}', "
            "TIMESTAMPTZ '2026-01-10 00:00:00+00')")
print("holding", flush=True)
sys.stdin.read()
"""


def test_legacy_file_locked_by_a_writer_is_read_from_a_snapshot(tmp_path: Path) -> None:
    fx = build(tmp_path / "legacy.duckdb", runs=8)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(fx.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(duckdb.IOException, match="lock"):  # the file really is locked
            duckdb.connect(":memory:").execute(f"ATTACH '{fx.path}' AS x (READ_ONLY)")
        r = DualReader(tmp_path / "root", legacy=fx.path, cutover=CUTOVER)
        ids = [a[1] for a in r.alerts().fetchall()]
        assert "alert-new" in ids  # the writer's WAL came along with the copy
        assert len(r.latest_runs().fetchall()) == len(fx.before_cutover)
        first = r.legacy_snapshot
        assert first is not None and first.exists() and first != fx.path
        rel = r.latest_runs()
        build_index(tmp_path / "root", durable=False)  # a publish reopens: a fresh snapshot
        assert len(r.latest_runs().fetchall()) == len(fx.before_cutover)
        snap = r.legacy_snapshot
        assert snap is not None and snap.exists() and snap != first
        assert not first.exists()  # the older copy is gone ...
        assert len(rel.fetchall()) == len(fx.before_cutover)  # ... yet still backs old relations
        r.close()
        assert not snap.exists()  # the snapshot is removed with the reader
        with pytest.raises(LegacyLockedError, match="open for writing by another process"):
            DualReader(
                tmp_path / "root", legacy=fx.path, cutover=CUTOVER, snapshot=False
            ).latest_runs()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)

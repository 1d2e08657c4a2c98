"""The index equals a reference computed in plain Python from the same part files; re-runs are
no-ops; incremental rounds, --since-date, --full-rebuild, derived tables, Reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from index_support import (
    DAY_US,
    T0,
    file_id,
    index_derived,
    index_events,
    index_runs,
    reference_derived,
    reference_events,
    reference_runs,
    write_sweep,
)

import ledgerx
from ledgerx import _core
from ledgerx.errors import IndexBusyError
from ledgerx.index import IndexPaths, build_index
from ledgerx.index import schema as S
from ledgerx.index.indexer import open_readonly
from ledgerx.index.publish import index_lock
from ledgerx.reader import Reader, wait_indexed


def q(db: Path, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    con = open_readonly(db)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    root = tmp_path / "ledger"
    write_sweep(root, runs=3, trials=30, seed=1, fail_last=True)
    write_sweep(root, runs=2, trials=10, seed=2, day_us=T0 + DAY_US, leave_running=True)
    return root


def test_index_equals_reference_and_rerun_is_noop(ledger: Path) -> None:
    rep = build_index(ledger)
    db = IndexPaths.for_root(ledger).runs
    assert rep.mode == "full" and rep.published and rep.bad_lines == 0
    ref = reference_events(ledger)
    assert rep.events == len(ref)
    assert index_events(db) == ref
    assert index_runs(db) == reference_runs(ref)
    # every table and view of docs/index.md exists and is consistent with the log
    trials = [e for e in ref if e["event_type"] == "trial.recorded"]
    got = q(db, "SELECT event_id, run_id, trial_id, params, metrics FROM trial_results")
    assert sorted((r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4])) for r in got) == sorted(
        (
            e["event_id"],
            e["run_id"],
            e["data"]["trial_id"],  # its JSON type: an integer stays an integer
            e["data"]["params"],
            e["data"]["metrics"],
        )
        for e in trials
    )
    n_metrics = sum(len(e["data"]["metrics"]) for e in trials)
    assert q(db, "SELECT count(*), count(value) FROM trial_metrics") == [(n_metrics, n_metrics)]
    assert q(db, "SELECT count(*) FROM baseline_results") == [(5,)]
    assert q(db, "SELECT count(*) FROM artifacts_catalog WHERE bytes >= 100") == [(5,)]
    assert q(db, "SELECT count(*) FROM phase_timings WHERE completed_at >= started_at") == [(10,)]
    phases = q(db, "SELECT phase, phase_index, duration_ms FROM run_phase_summary ORDER BY ALL")
    assert phases == sorted([("plan", 0, 1.5)] * 5 + [("simulate", 1, 2.5)] * 5)
    latest = q(db, "SELECT run_id, status, trials FROM latest_runs")
    assert len(latest) == 5 and latest[0][0] == "run-2-20455-1"  # newest first
    assert {r[1] for r in latest} == {"completed", "failed", "abandoned"}  # old heartbeat
    assert q(db, "SELECT sum(events), sum(bad_lines) FROM _ledger_files") == [(len(ref), 0)]
    # alerts.duckdb and catalog.duckdb
    paths = IndexPaths.for_root(ledger)
    assert q(paths.alerts, "SELECT alert_id FROM alerts ORDER BY 1") == [("a1-0",), ("a2-0",)]
    cat = q(paths.catalog, "SELECT run_id, days, artifact_dir FROM runs ORDER BY run_id")
    assert len(cat) == 5 and cat[0][2] == f"artifacts/runs/{cat[0][0]}"
    assert cat[0][1] == ["2026-01-01"]

    before = [file_id(p) for p in (paths.runs, paths.alerts, paths.catalog)]
    rep2 = build_index(ledger)
    assert rep2.mode == "noop" and not rep2.published
    assert [file_id(p) for p in (paths.runs, paths.alerts, paths.catalog)] == before


def test_incremental_matches_full(ledger: Path, tmp_path: Path) -> None:
    build_index(ledger)
    paths = IndexPaths.for_root(ledger)
    # more events: one run continues (state changes), a new writer, a new day
    w = _core.Writer(str(ledger), durability="os")
    w._set_fake_now(T0 + DAY_US + 5_000_000_000)
    w.emit("run.completed", {"summary": {"late": 1}, "artifact_paths": []}, run_id="run-2-20455-1")
    w.close()
    write_sweep(ledger, runs=1, trials=5, seed=3, day_us=T0 + 2 * DAY_US)
    rep = build_index(ledger)
    assert rep.mode == "incremental" and rep.events == 1 + 15
    ref = reference_events(ledger)
    assert index_events(paths.runs) == ref
    assert index_runs(paths.runs) == reference_runs(ref)
    assert q(paths.runs, "SELECT log_status FROM runs_d WHERE run_id = 'run-2-20455-1'") == [
        ("completed",)
    ]
    # The derived tables of the incremental index equal a plain-Python reference from the same
    # files (not a full rebuild by the same build_index, which would share its bugs).
    want = reference_derived(ref)
    assert index_derived(paths.runs, paths.alerts) == want
    per_file: dict[str, int] = {}
    for e in ref:
        per_file[e["file"]] = per_file.get(e["file"], 0) + 1
    files = q(paths.runs, 'SELECT file, "offset", size_seen, events, bad_lines FROM _ledger_files')
    assert sorted(files) == sorted(
        (f, size, size, n, 0)
        for f, n in per_file.items()
        for size in [(ledger / "events" / f).stat().st_size]
    )
    # and a full rebuild of the same files holds the same reference
    other = tmp_path / "full.duckdb"
    build_index(ledger, db=other)
    assert index_derived(other, other.with_name("full.alerts.duckdb")) == want


def test_format_1_index_is_upgraded_in_place(ledger: Path) -> None:
    """Format 1 stored trial_results as a table; the next incremental round replaces it with
    the view (format 2) and the rows read the same as a fresh index's."""
    import duckdb

    build_index(ledger)
    paths = IndexPaths.for_root(ledger)
    con = duckdb.connect(str(paths.runs))
    con.execute("DROP VIEW trial_results")
    con.execute("CREATE TABLE trial_results (event_id VARCHAR)")  # a stale, empty table
    con.execute("UPDATE _index_meta SET value = '1' WHERE key = 'format'")
    con.close()
    write_sweep(ledger, runs=1, trials=5, seed=3, day_us=T0 + 2 * DAY_US)
    assert build_index(ledger).mode == "incremental"
    fmt = q(paths.runs, "SELECT value FROM _index_meta WHERE key = 'format'")
    assert fmt == [(S.INDEX_FORMAT,)] and int(S.INDEX_FORMAT) >= 2
    kind = "SELECT table_type FROM information_schema.tables WHERE table_name = 'trial_results'"
    assert q(paths.runs, kind) == [("VIEW",)]
    # the upgraded view holds what the plain-Python reference says (not a fresh build_index)
    want = reference_derived(reference_events(ledger))["trial_results"]
    assert index_derived(paths.runs, paths.alerts)["trial_results"] == want


def test_format_6_catalog_is_rewritten_with_nothing_new_to_index(ledger: Path) -> None:
    """Format 7's catalog.duckdb holds what points at a run (no status, counts or index time,
    which went stale in it): a format 6 index gets the new catalog on its next round, even
    with no new bytes, since a round of ordinary events leaves the catalog as it is."""
    import duckdb

    build_index(ledger)
    paths = IndexPaths.for_root(ledger)
    con = duckdb.connect(str(paths.catalog))
    con.execute("ALTER TABLE runs ADD COLUMN n_events BIGINT")  # as format 6 had it
    con.close()
    con = duckdb.connect(str(paths.runs))
    con.execute("UPDATE _index_meta SET value = '6' WHERE key = 'format'")
    con.close()
    assert build_index(ledger).events == 0
    cols = "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'"
    assert [c for (c,) in q(paths.catalog, cols)] == [
        "run_id", "run_kind", "created_at", "days", "index_path", "artifact_dir"
    ]  # fmt: skip
    assert q(paths.runs, "SELECT value FROM _index_meta WHERE key = 'format'") == [("7",)]


def test_since_date_and_full_rebuild(ledger: Path) -> None:
    paths = IndexPaths.for_root(ledger)
    build_index(ledger, since_date="2026-01-02")
    days = q(paths.runs, "SELECT DISTINCT substr(file, 5, 10) FROM events")
    assert days == [("2026-01-02",)]
    # incremental with an earlier date picks up the older day
    build_index(ledger, since_date="2026-01-01")
    assert index_events(paths.runs) == reference_events(ledger)
    build_index(ledger, full_rebuild=True, since_date="2026-01-02")
    assert q(paths.runs, "SELECT DISTINCT substr(file, 5, 10) FROM events") == [("2026-01-02",)]
    build_index(ledger, full_rebuild=True)
    assert index_events(paths.runs) == reference_events(ledger)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        build_index(ledger, since_date="yesterday")


def test_stale_after_marks_running_runs_abandoned(tmp_path: Path) -> None:
    root = tmp_path / "l"
    w = _core.Writer(str(root), durability="os")
    w.emit("run.created", {"run_kind": "k", "config": {}, "data_fingerprint": "f"}, run_id="r1")
    w.emit("run.started", {}, run_id="r1")
    w.close()
    build_index(root)
    with Reader(root) as r:
        assert r.latest_runs().fetchall()[0][2] == "running"
        build_index(root, stale_after=0.0)  # config change alone republishes
        assert r.latest_runs().fetchall()[0][2] == "abandoned"
        assert r.run("r1").fetchall()[0][-1] == "abandoned"


def test_reader_api_and_wait_indexed(ledger: Path) -> None:
    w = _core.Writer(str(ledger), durability="os")
    pos = w.emit("run.heartbeat", {}, run_id="run-x")
    w.close()
    wait_indexed(ledger, pos, timeout=30)  # indexes in-process: no daemon
    with ledgerx.Reader(ledger) as r:
        assert r.indexed_offset(pos[0]) > pos[1]
        assert r.run("run-x").fetchall()[0][0] == "run-x"
        runs = r.latest_runs().arrow().read_all()
        assert runs.num_rows == 6 and runs.column_names == [
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
        rid = "run-1-20454-0"
        assert [p[1] for p in r.phases(rid).fetchall()] == ["plan", "simulate"]
        assert len(r.trials(rid).fetchall()) == 30
        assert len(r.alerts().fetchall()) == 2
        assert r.sql("SELECT count(*) FROM runs_catalog").fetchall() == [(6,)]
        old = r.latest_runs()
        write_sweep(ledger, runs=1, trials=1, seed=9, day_us=T0 + 3 * DAY_US)
        build_index(ledger)
        assert len(r.latest_runs().fetchall()) == 7  # sees the new publish
        assert len(old.fetchall()) == 6  # an older relation keeps its snapshot
    # a position that never gets indexed times out
    with pytest.raises(TimeoutError):
        wait_indexed(ledger, ("day=2026-01-01/part-000099.jsonl", 0), timeout=0.3)


def test_second_indexer_gets_index_busy(ledger: Path) -> None:
    paths = IndexPaths.for_root(ledger)
    with index_lock(paths):
        with pytest.raises(IndexBusyError, match="another indexer is running"):
            build_index(ledger)
    build_index(ledger)


def test_upcast_hook_applies_to_old_versions_only(ledger: Path) -> None:
    class Up:
        def newest_versions(self) -> dict[str, int]:
            return {"trial.recorded": 2}

        def upcast_json(self, event_type: str, version: int, data_json: str) -> tuple[str, int]:
            d = json.loads(data_json)
            d["params"] = {"v2": True, **d["params"]}
            return json.dumps(d), 2

    w = _core.Writer(str(ledger), durability="os")
    w.emit("trial.recorded", {"trial_id": "new", "params": {}, "metrics": {}}, run_id="r9")
    w.close()
    build_index(ledger, upcaster=Up())
    db = IndexPaths.for_root(ledger).runs
    rows = q(db, "SELECT count(*) FROM events WHERE data_upcast IS NOT NULL")
    assert rows == [(3 * 30 + 2 * 10 + 1,)]
    assert q(db, "SELECT count(*) FROM trial_results WHERE params->>'v2' = 'true'") == [(111,)]
    assert q(db, "SELECT count(*) FROM events WHERE data LIKE '%v2%'") == [(0,)]  # raw kept


def test_rebuild_summary_line_reports_exact_figures(ledger: Path) -> None:
    """The one-line summary of a round (docs/index.md) says what was read, in MB of the files."""
    write_sweep(ledger, runs=2, trials=400, seed=5, day_us=T0 + 3 * DAY_US)
    rep = build_index(ledger)
    parts = sorted((ledger / "events").glob("day=*/part-*.jsonl"))
    size = sum(p.stat().st_size for p in parts)
    assert size > 100_000  # so that bytes // 1e6 and bytes / 1e6 print differently
    n = len(reference_events(ledger))
    assert rep.summary().startswith(
        f"indexed {n} events ({size / 1e6:.1f} MB from {len(parts)} files), "
        "0 bad lines, 0 duplicates skipped, "
    )
    assert rep.summary().endswith(" s [full]")


def test_a_round_refused_before_its_scan_leaves_the_index_as_it_was(tmp_path: Path) -> None:
    """DuckDB refuses the round's settings before the scan starts: its own error reaches the
    caller as a ConfigError (not one from the cleanup), the work file is gone, the published
    index untouched."""
    root = tmp_path / "ledger"
    write_sweep(root, runs=1, trials=3)
    assert build_index(root).published
    paths = IndexPaths.for_root(root)
    before = paths.runs.read_bytes()
    write_sweep(root, runs=1, trials=3, seed=2)  # something new: the round has work to do
    with pytest.raises(ledgerx.ConfigError, match="memory_limit 'bogus': .*Memory"):
        build_index(root, memory_limit="bogus")
    assert paths.runs.read_bytes() == before
    assert [p.name for p in paths.runs.parent.iterdir() if ".building-" in p.name] == []


def test_event_id_and_data_keep_their_chosen_compression(tmp_path: Path) -> None:
    """`events.event_id` is stored uncompressed and `data` with zstd (schema.EVENTS_DDL): what
    DuckDB would choose by itself (FSST for unique UUID text) costs the full rebuild most."""
    root = tmp_path / "ledger"
    write_sweep(root, runs=2, trials=3000, seed=3)
    db = IndexPaths.for_root(root).runs
    build_index(root)
    got = dict(
        q(
            db,
            """SELECT column_name, string_agg(DISTINCT compression, ',')
               FROM pragma_storage_info('events')
               WHERE column_name IN ('event_id', 'data') AND segment_type <> 'VALIDITY'
               GROUP BY column_name""",
        )
    )
    assert got == {"event_id": "Uncompressed", "data": "ZSTD"}

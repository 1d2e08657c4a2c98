"""Incremental rounds derive only what their event types can change (`derive.derive_new`): a
round without lifecycle events updates a run's `runs_d` row from its new rows alone
(`schema.UPDATE_RUNS`), a table whose source types the round lacks is left alone, the round's
checkpoints and meta are remembered without reading them back (`dbfile.state_after`). After
every round the derived tables equal a full rebuild of the same log into another file, and the
remembered state equals what the published file holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from index_support import DAY_US, T0, file_id

from ledgerx import _core
from ledgerx.index import IndexPaths, build_index, dbfile
from ledgerx.index import derive as D
from ledgerx.index.indexer import open_readonly, read_state

TABLES = {
    "runs_d": "SELECT * FROM runs_d",
    "phase_timings": "SELECT * FROM phase_timings",
    "baseline_results": "SELECT * FROM baseline_results",
    "artifacts_catalog": "SELECT * FROM artifacts_catalog",
    "_ledger_files": 'SELECT file, day, "offset", size_seen, events, bad_lines FROM _ledger_files',
}
CATALOG = "SELECT * EXCLUDE (index_path) FROM runs"


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = open_readonly(db)
    try:
        return sorted(con.execute(sql).fetchall(), key=repr)
    finally:
        con.close()


def _emit(root: Path, at_us: int, events: list[tuple[str, dict[str, Any], str | None]]) -> None:
    w = _core.Writer(str(root), durability="os")
    for i, (t, data, rid) in enumerate(events):
        w._set_fake_now(at_us + i * 1000)
        w.emit(t, data, run_id=rid)
    w.close()


def _trial(i: int) -> dict[str, Any]:
    return {"trial_id": i, "params": {"a": i}, "metrics": {"m": 0.5}}


# (fake time, events) per round: each round's types pick another path of derive_new.
ROUNDS: list[tuple[int, list[tuple[str, dict[str, Any], str | None]]]] = [
    (T0, [("run.created", {"run_kind": "sweep", "config": {}, "data_fingerprint": "f"}, "A")]),
    # A: 'created' becomes 'running'; B: new to the index, no run.created; C on a later day
    (T0 + 10**6, [("trial.recorded", _trial(0), "A"), ("trial.recorded", _trial(0), "B")]),
    (T0 + DAY_US, [("trial.recorded", _trial(1), "A"), ("run.heartbeat", {}, "C")]),
    # phases, baselines, artifacts, alerts of A and B
    (
        T0 + DAY_US + 10**6,
        [
            ("phase.started", {"phase": "p", "phase_index": 0}, "A"),
            ("baseline.completed", {"baseline": "b", "metrics": {"x": 1}}, "B"),
            (
                "artifact.created",
                {
                    "name": "n",
                    "path": "p",
                    "format": "csv",
                    "bytes": 1,
                    "sha256": "0" * 64,
                    "rows": 1,
                },
                "A",
            ),
            (
                "alert.ingested",
                {"alert_id": "a1", "source": "s", "severity": "low", "payload": {}},
                None,
            ),
        ],
    ),  # fmt: skip
    (T0 + DAY_US + 2 * 10**6, [("phase.completed", {"phase": "p", "duration_ms": 2.0}, "A")]),
    (T0 + DAY_US + 3 * 10**6, [("run.completed", {"summary": {}, "artifact_paths": []}, "A")]),
    # after completion: stays completed; B gets an event earlier than its first (first moves)
    (T0 + DAY_US + 4 * 10**6, [("trial.recorded", _trial(2), "A")]),
    (T0 - 10**6, [("trial.recorded", _trial(3), "B"), ("trial.recorded", _trial(4), "B")]),
    (T0 + 2 * DAY_US, [("trial.recorded", _trial(5), "C")]),
    # B's run.created, late: its kind and creation time (catalog columns) appear
    (
        T0 + 2 * DAY_US + 10**6,
        [("run.created", {"run_kind": "backtest", "config": {}, "data_fingerprint": "f"}, "B")],
    ),
]


def test_each_round_derives_what_a_full_rebuild_derives(tmp_path: Path) -> None:
    root = tmp_path / "ledger"
    paths = IndexPaths.for_root(root)
    paths_seen = []
    for k, (at, events) in enumerate(ROUNDS):
        _emit(root, at, events)
        rep = build_index(root)
        assert rep.events == len(events), (k, rep)
        paths_seen.append(rep.mode)
        full = tmp_path / f"full{k}.duckdb"
        build_index(root, db=full, full_rebuild=True)
        for name, sql in TABLES.items():
            assert _rows(paths.runs, sql) == _rows(full, sql), (k, name)
        assert _rows(paths.catalog, CATALOG) == _rows(
            full.with_name(f"full{k}.catalog.duckdb"), CATALOG
        ), k
        assert _rows(paths.alerts, "SELECT * FROM alerts") == _rows(
            full.with_name(f"full{k}.alerts.duckdb"), "SELECT * FROM alerts"
        ), k
        # what this process remembers of the file it published is what the file holds
        ident, state = dbfile._PUBLISHED[(os.getpid(), str(paths.runs))]
        assert ident == dbfile.file_ident(paths.runs)
        ckpt, meta = read_state(paths.runs)
        assert (state.ckpt, state.meta) == (ckpt, meta), k
        con = open_readonly(paths.runs)
        try:
            assert state.last_runs == dbfile.last_runs(con, meta), k
        finally:
            con.close()
    assert paths_seen[0] == "full" and set(paths_seen[1:]) == {"incremental"}


def test_a_round_with_only_trials_takes_the_update_and_skips_other_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paths are really taken: a trial-only round runs UPDATE_RUNS and no phase, baseline
    or artifact statement; a lifecycle round derives the run's row again."""
    root = tmp_path / "ledger"
    _emit(root, T0, ROUNDS[0][1] + ROUNDS[1][1])
    build_index(root)
    seen: list[str] = []
    real = D.derive_new

    def spy(con: Any, gen: int, new: D.NewRows) -> bool:
        class Con:
            def execute(self, q: str, *a: Any) -> Any:
                seen.append(q)
                return con.execute(q, *a)

        return real(Con(), gen, new)  # type: ignore[arg-type]

    monkeypatch.setattr(D, "derive_new", spy)
    _emit(root, T0 + 10**7, [("trial.recorded", _trial(9), "A")])
    build_index(root)
    assert seen == [D.S.UPDATE_RUNS]
    seen.clear()
    _emit(root, T0 + 2 * 10**7, [("run.completed", {"summary": {}, "artifact_paths": []}, "A")])
    build_index(root)
    assert len(seen) == 2 and "INSERT INTO runs_d" in seen[1]


def test_a_round_of_a_known_runs_trials_leaves_the_catalog_file_as_it_is(tmp_path: Path) -> None:
    """catalog.duckdb holds what points at a run (`S.CATALOG_SELECT`), which a run's ordinary
    events leave as it is: a round of a known run's trials on one of its days does not rewrite
    it (a daemon's warm round, ~10 ms less), whether it works on a copy or in place (replaying
    the round before); a new day does, and the catalog equals a full rebuild's."""
    root = tmp_path / "ledger"
    paths = IndexPaths.for_root(root)
    _emit(root, T0, ROUNDS[0][1] + ROUNDS[1][1])
    build_index(root)
    _emit(root, T0 + 10**7, [("trial.recorded", _trial(7), "A")])
    build_index(root)  # the next in-place round replays this one: no catalog change in it
    before = file_id(paths.catalog)
    for k in range(3):
        _emit(root, T0 + (2 + k) * 10**7, [("trial.recorded", _trial(8 + k), "A")])
        assert build_index(root).events == 1
        assert file_id(paths.catalog) == before, k
    _emit(root, T0 + DAY_US, [("trial.recorded", _trial(20), "A")])  # a day A had no event on
    build_index(root)
    assert file_id(paths.catalog) != before
    full = tmp_path / "full.duckdb"
    build_index(root, db=full, full_rebuild=True)
    days = "SELECT run_id, days FROM runs"
    assert _rows(paths.catalog, days) == _rows(full.with_name("full.catalog.duckdb"), days)
    assert len(dict(_rows(paths.catalog, days))["A"]) == 2


def test_a_catalog_left_by_a_round_that_died_is_rewritten_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full rebuild publishes the side files before the runs file: one that dies in between
    (here its runs file cannot be published) leaves its own catalog and alerts, of other days,
    beside the old runs file. The runs file records which side files were written with it, so
    the next round, of ordinary trials, rewrites both; they then equal a full rebuild's."""
    from ledgerx.index import indexer as ix

    root = tmp_path / "ledger"
    paths = IndexPaths.for_root(root)
    alert = ("alert.ingested", {"alert_id": "a0", "source": "s", "severity": "low", "payload": {}})
    _emit(root, T0, [*ROUNDS[0][1], *ROUNDS[1][1], (*alert, None)])
    _emit(root, T0 + DAY_US, [("trial.recorded", _trial(1), "A")])
    build_index(root)
    day1 = _core.day_of(T0 + DAY_US)

    def dies(*a: Any, **k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ix, "publish", dies)
    with pytest.raises(OSError):
        build_index(root, full_rebuild=True, since_date=day1)
    monkeypatch.undo()
    assert dict(_rows(paths.catalog, "SELECT run_id, days FROM runs")) == {"A": [day1]}
    assert _rows(paths.alerts, "SELECT alert_id FROM alerts") == []  # the dead round's too
    _emit(root, T0 + DAY_US + 10**6, [("trial.recorded", _trial(2), "A")])
    assert build_index(root).events == 1
    full = tmp_path / "full.duckdb"
    build_index(root, db=full, full_rebuild=True)
    want = _rows(full.with_name("full.catalog.duckdb"), CATALOG)
    assert _rows(paths.catalog, CATALOG) == want and len(want) == 2
    alerts = "SELECT * FROM alerts"
    assert _rows(paths.alerts, alerts) == _rows(full.with_name("full.alerts.duckdb"), alerts)
    assert len(_rows(paths.alerts, alerts)) == 1
    assert build_index(root).mode == "noop"  # and then nothing is stale: a quiet round


def test_a_small_round_repeating_an_indexed_event_id_drops_the_repeat(tmp_path: Path) -> None:
    """A small round sums up its ids in Python (`derive.FEW_ROWS`) and looks them up in the whole
    table: a line that repeats an event already indexed is a duplicate, as in a full rebuild."""
    root = tmp_path / "ledger"
    _emit(root, T0, ROUNDS[0][1] + ROUNDS[1][1])
    build_index(root)
    part = sorted((root / "events").rglob("*.jsonl"))[0]
    old = part.read_bytes().splitlines(keepends=True)[1]
    with part.open("ab") as f:
        f.write(old)  # already indexed
    _emit(root, T0 + 10**7, [("trial.recorded", _trial(7), "A")])
    rep = build_index(root)
    assert (rep.events, rep.duplicates, rep.bad_lines) == (1, 1, 1)
    paths = IndexPaths.for_root(root)
    full = tmp_path / "full.duckdb"
    build_index(root, db=full, full_rebuild=True)
    for name, sql in TABLES.items():
        assert _rows(paths.runs, sql) == _rows(full, sql), name
    ids = "SELECT event_id, count(*) FROM events GROUP BY ALL HAVING count(*) > 1"
    assert _rows(paths.runs, ids) == []
    bad = "SELECT file, len, reason FROM _bad_lines"
    assert _rows(paths.runs, bad) == _rows(full, bad) != []

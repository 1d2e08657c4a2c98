"""`ledgerx retention`: closed days move to archive/events/day=D/*.parquet, verified, and the
index rebuilt after retention is identical to the one before."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from index_support import DAY_US, T0, reference_events, write_sweep
from ops_support import snapshot

import ledgerx
from ledgerx import _core
from ledgerx.index import build_index
from ledgerx.retention import ARCHIVE_SCHEMA, run_retention

from conftest import cli

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def _write_old_days(root: Path) -> None:
    for i in range(3):
        write_sweep(root, runs=2, trials=5, seed=10 + i, day_us=T0 + i * DAY_US)


def test_retention_round_trip_gives_an_identical_index(root: Path, tmp_path: Path) -> None:
    _write_old_days(root)
    n_events = len(reference_events(root)) + 1  # and today's alert below
    part = root / "events" / f"day={DAYS[0]}" / "part-000001.jsonl"
    bad, torn = b'{"not": "an event"}\n', b'{"event_id":"torn'
    with open(part, "ab") as f:
        f.write(bad + torn)
    with ledgerx.open(root) as led:  # a live writer on today's part
        led.emit("alert.ingested", {"alert_id": "t", "source": "s", "severity": "x", "payload": {}})
        led.flush()
        build_index(root, full_rebuild=True)
        before = snapshot(root / "index" / "runs.duckdb")
        assert len(before["_bad_lines"]) == 1

        r = cli("retention", "--root", str(root), "--archive-older-than", "30d", "--json")
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        assert [(d["day"], d["action"]) for d in rep["days"]] == [(d, "archived") for d in DAYS]
        assert rep["days"][0]["bad_lines"] == 1
        assert rep["days"][0]["quarantined_bytes"] == len(bad) + len(torn)
        today = sorted((root / "events").glob("day=*"))
        assert len(today) == 1 and today[0].name > f"day={DAYS[-1]}"  # today is never touched

        # The archive: hive layout, the log's columns of `events`, one file per part.
        files = sorted((root / "archive" / "events").glob("day=*/*.parquet"))
        assert [f.parent.name for f in files] == [f"day={d}" for d in DAYS]
        assert all(pq.read_schema(f).remove_metadata() == ARCHIVE_SCHEMA for f in files)
        glob = str(root / "archive" / "events" / "day=*" / "*.parquet")
        archived = duckdb.sql(
            f"SELECT count(*), count(DISTINCT day) FROM read_parquet('{glob}', hive_partitioning=1)"
        ).fetchall()
        assert archived == [(n_events - 1, 3)]
        # Bad bytes are kept in quarantine, byte for byte.
        kept = sorted(p.read_bytes() for p in (root / "events" / "_quarantine").glob("*.bin"))
        assert kept == sorted([bad, torn])

        assert build_index(root).mode == "noop"  # the archived bytes were already indexed
        full = cli("rebuild", "--root", str(root), "--full-rebuild")
        assert full.returncode == 0, full.stderr
        assert snapshot(root / "index" / "runs.duckdb") == before
        v = cli("verify", "--root", str(root))  # archived days count as log for verify
        assert v.returncode == 0 and v.stdout.strip().endswith("OK"), v.stdout + v.stderr
        q = cli("query", "--root", str(root), "SELECT count(*) FROM events", "--json")
        assert json.loads(q.stdout) == [{"count_star()": n_events}]


def test_days_with_a_live_writer_and_today_are_never_archived(root: Path) -> None:
    w = _core.Writer(str(root), durability="fsync")  # holds the flock of its part on day 1
    w._set_fake_now(T0 + 3_600_000_000)
    w.emit("alert.ingested", {"alert_id": "x", "source": "s", "severity": "x", "payload": {}})
    write_sweep(root, runs=1, trials=2, seed=3, day_us=T0 + DAY_US)
    with ledgerx.open(root) as led:
        led.emit("alert.ingested", {"alert_id": "y", "source": "s", "severity": "x", "payload": {}})
        rep = run_retention(root, older_than_days=0)
    assert [(d.day, d.action) for d in rep.days] == [(DAYS[0], "skipped"), (DAYS[1], "archived")]
    assert "writer holds" in rep.days[0].reason
    assert (root / "events" / f"day={DAYS[0]}" / "part-000001.jsonl").exists()
    w.close()
    rep = run_retention(root, older_than_days=0)
    assert [(d.day, d.action) for d in rep.days] == [(DAYS[0], "archived")]
    assert len(list((root / "events").glob("day=*"))) == 1  # today's only
    total = 1 + len(reference_events(root)) + (2 + 4 + 2 + 3 + 1)  # day 1 + today + day 2
    assert build_index(root).events == total


def test_incremental_index_picks_up_the_unindexed_rest_of_an_archived_part(
    root: Path, tmp_path: Path
) -> None:
    write_sweep(root, runs=1, trials=3, seed=1)
    build_index(root)
    write_sweep(root, runs=2, trials=3, seed=2)  # appended to the same part, not indexed yet
    assert len(list((root / "events").glob("day=*/part-*.jsonl"))) == 1
    run_retention(root, older_than_days=0)
    assert not list((root / "events").glob("day=*/part-*.jsonl"))
    rep = build_index(root)
    assert rep.mode == "incremental" and rep.events == 2 * (2 + 4 + 3 + 3) + 1
    ref = tmp_path / "ref.duckdb"
    build_index(root, db=ref, full_rebuild=True)
    assert snapshot(root / "index" / "runs.duckdb") == snapshot(ref)


def test_dry_run_and_policy_move_nothing_they_should_not(root: Path) -> None:
    _write_old_days(root)
    before = sorted(p.name for p in (root / "events").rglob("*"))
    r = cli("retention", "--root", str(root), "--archive-older-than", "0d", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("would archive") == 3 and "3 days would be archived" in r.stdout
    assert sorted(p.name for p in (root / "events").rglob("*")) == before
    assert not (root / "archive").exists()
    # The default policy (90 days) reaches only days older than 90 days before today.
    rep = run_retention(root, dry_run=True, today=_plus_days(DAYS[2], 90))
    assert [d.day for d in rep.days] == DAYS[:2]


def _plus_days(day: str, plus: int) -> object:
    from datetime import date, timedelta

    return date.fromisoformat(day) + timedelta(days=plus)


def test_bad_retention_arguments_are_one_line_errors(root: Path) -> None:
    for age in ("abc", "-3d", "1w"):
        r = cli("retention", "--root", str(root), "--archive-older-than", age)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("ledgerx: error:")


def test_strict_rebuild_refuses_archived_rows_without_crc(root: Path, tmp_path: Path) -> None:
    """`rebuild --strict` treats an archived part as the JSONL it replaced: a third-party line
    without `crc` is refused there too, and a lenient rebuild still indexes it."""
    write_sweep(root, runs=1, trials=3, seed=5)
    part = root / "events" / f"day={DAYS[0]}" / "part-000001.jsonl"
    nocrc = (
        b'{"event_id":"9f1c2d3e-4b5a-4c6d-8e7f-0123456789ab","event_type":"run.heartbeat",'
        b'"schema_version":1,"ts":"2026-01-01T05:00:00.000000Z","run_id":null,"writer":"third",'
        b'"seq":1,"data":{}}\n'
    )
    offset = part.stat().st_size
    with open(part, "ab") as f:
        f.write(nocrc)
    want_strict = {e["event_id"] for e in reference_events(root, strict=True)}
    want_lenient = {e["event_id"] for e in reference_events(root)}
    assert want_lenient - want_strict == {"9f1c2d3e-4b5a-4c6d-8e7f-0123456789ab"}
    r = cli("retention", "--root", str(root), "--archive-older-than", "30d")
    assert r.returncode == 0, r.stderr
    assert not part.exists()
    for strict, want in ((True, want_strict), (False, want_lenient)):
        db = tmp_path / f"strict-{strict}.duckdb"
        build_index(root, db=db, full_rebuild=True, strict=strict)
        con = duckdb.connect(str(db), read_only=True)
        got = {x[0] for x in con.execute("SELECT event_id FROM events").fetchall()}
        bad = con.execute('SELECT file, "offset", reason FROM _bad_lines').fetchall()
        con.close()
        assert got == want
        expect_bad = [(f"day={DAYS[0]}/part-000001.jsonl", offset, "missing crc (strict mode)")]
        assert bad == (expect_bad if strict else [])

"""The log format and the write API (docs/format.md, §4), checked by the independent reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import ledgerx
from ledgerx import _core

from logcheck import check_log

TRIAL = {"trial_id": 7, "params": {"lr": 0.01, "name": 'héllo "q"\n'}, "metrics": {"sharpe": 1.25}}


@pytest.mark.parametrize("mode", ["fsync", "group", "os"])
def test_every_mode_writes_the_v1_format(root: Path, mode: str) -> None:
    with ledgerx.open(root, durability=mode) as ledger:
        positions = [ledger.emit("trial.recorded", TRIAL, run_id="r-1") for _ in range(50)]
        positions.append(
            ledger.emit(
                "alert.ingested",
                {
                    "alert_id": "a1",
                    "source": "s",
                    "severity": "high",
                    "payload": {"x": [1, 2.5, None, True]},
                },
            )
        )
    report = check_log(root)
    assert len(report.events) == 51
    for ev, (file, offset) in zip(report.events, positions, strict=True):
        assert (ev["_file"], ev["_offset"]) == (file, offset)
    assert report.events[0]["data"] == TRIAL
    assert report.events[0]["run_id"] == "r-1"
    assert report.events[-1]["run_id"] is None
    assert report.events[0]["schema_version"] == 1


def test_run_context_manager_emits_the_lifecycle(root: Path) -> None:
    ledger = ledgerx.open(root)
    with ledger.run(run_kind="path-only", config={"n": 3}, data_fingerprint="fp") as run:
        with run.phase("plan") as p:
            p.output_summary = {"rows": 10}
        with run.phase("search"):
            for i in range(3):
                run.trial(trial_id=i, params={"i": i}, metrics={"pnl": i * 1.5})
        run.baseline("buy_and_hold", {"pnl": 0.5})
        run.heartbeat()
        run.summary["best"] = 2
    ledger.close()
    evs = check_log(root).events
    assert run.run_id.startswith("run-")
    assert {e["run_id"] for e in evs} == {run.run_id}
    types = [e["event_type"] for e in evs]
    assert types == [
        "run.created",
        "run.started",
        "phase.started",
        "phase.completed",
        "phase.started",
        "trial.recorded",
        "trial.recorded",
        "trial.recorded",
        "phase.completed",
        "baseline.completed",
        "run.heartbeat",
        "run.completed",
    ]
    assert evs[0]["data"] == {"run_kind": "path-only", "config": {"n": 3}, "data_fingerprint": "fp"}
    assert evs[1]["data"]["pid"] == os.getpid()
    assert evs[3]["data"]["phase"] == "plan" and evs[3]["data"]["output_summary"] == {"rows": 10}
    assert evs[3]["data"]["duration_ms"] >= 0
    assert [e["data"]["phase_index"] for e in evs if e["event_type"] == "phase.started"] == [0, 1]
    assert evs[-1]["data"] == {"summary": {"best": 2}, "artifact_paths": []}


def test_failed_run_records_the_error(root: Path) -> None:
    ledger = ledgerx.open(root)
    with pytest.raises(ZeroDivisionError):
        with ledger.run(run_id="boom-1", run_kind="k", config={}, data_fingerprint="f"):
            1 / 0  # noqa: B018
    ledger.close()
    last = check_log(root).events[-1]
    assert last["event_type"] == "run.failed"
    assert last["data"]["error"].startswith("ZeroDivisionError")
    assert "Traceback" in last["data"]["traceback"]


def test_seed_names_and_module_level_emit(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERX_ROOT", str(root))
    ledgerx.emit_run_created("seed-1", "k", {"a": 1}, "fp")
    ledgerx.emit_run_started("seed-1")
    ledgerx.emit_phase_started("seed-1", "load", 0)
    ledgerx.emit_phase_completed("seed-1", "load", 12.5, {"rows": 1})
    ledgerx.emit_run_completed("seed-1", {"ok": True}, ["artifacts/runs/seed-1/summary.json"])
    ledgerx.emit(
        "alert.ingested", data={"alert_id": "x", "source": "s", "severity": "low", "payload": {}}
    )
    ledgerx.default_ledger().close()
    evs = check_log(root).events
    assert [e["event_type"] for e in evs] == [
        "run.created",
        "run.started",
        "phase.started",
        "phase.completed",
        "run.completed",
        "alert.ingested",
    ]
    assert evs[4]["data"]["artifact_paths"] == ["artifacts/runs/seed-1/summary.json"]


def test_rotation_keeps_parts_under_the_limit(root: Path) -> None:
    with ledgerx.open(root, max_part_bytes=4096, durability="group") as ledger:
        positions = [
            ledger.emit("trial.recorded", {**TRIAL, "trial_id": i}, run_id="rot")
            for i in range(300)
        ]
    report = check_log(root)
    assert [e["data"]["trial_id"] for e in report.events] == list(range(300))
    assert len(report.files) > 10
    assert all(f.stat().st_size <= 4096 for f in report.files)
    # Each returned position is its own line's (the part's name is reused while it lasts).
    assert len({f for f, _ in positions}) == len(report.files)
    for i, (file, offset) in enumerate(positions):
        with open(Path(root) / "events" / file, "rb") as f:
            f.seek(offset)
            assert json.loads(f.readline())["data"]["trial_id"] == i


def test_a_run_crossing_midnight_changes_day(root: Path) -> None:
    before = 1_767_225_599_900_000  # 2025-12-31T23:59:59.9Z
    ledger = ledgerx.open(root, durability="fsync")
    w = ledger._live_writer()
    w._set_fake_now(before)
    with ledger.run(run_id="midnight", run_kind="k", config={}, data_fingerprint="f") as run:
        run.trial(1, {}, {"m": 1.0})
        w._set_fake_now(before + 200_000)
        run.trial(2, {}, {"m": 2.0})
    ledger.close()
    report = check_log(root)
    days = {e["_file"].split("/")[0] for e in report.events}
    assert days == {"day=2025-12-31", "day=2026-01-01"}
    assert [e["seq"] for e in report.events] == [1, 2, 3, 4, 5]
    assert report.events[2]["ts"].startswith("2025-12-31T23:59:59.9")
    assert report.events[3]["ts"].startswith("2026-01-01T00:00:00.1")


def test_adopting_a_torn_part_quarantines_the_tail(root: Path) -> None:
    with ledgerx.open(root) as ledger:
        ledger.emit("run.heartbeat", {}, run_id="a")
        day_file = ledger.emit("run.heartbeat", {}, run_id="a")[0]
    part = root / "events" / day_file
    torn = b'{"event_id":"0190","event_type":"run.hear'
    with part.open("ab") as f:
        f.write(torn)
    with ledgerx.open(root) as ledger:
        pos = ledger.emit("run.heartbeat", {}, run_id="b")
    assert pos[0] == day_file, "the non-full part is adopted"
    report = check_log(root)
    assert [e["run_id"] for e in report.events] == ["a", "a", "b"]
    q = root / "events" / "_quarantine"
    bins = list(q.glob("*.bin"))
    assert len(bins) == 1 and bins[0].read_bytes() == torn
    reason = json.loads(next(q.glob("*.reason.json")).read_text())
    assert reason["file"] == day_file and "torn" in reason["reason"]


def test_busy_part_is_never_shared(root: Path) -> None:
    a = ledgerx.open(root)
    b = ledgerx.open(root)
    pa = a.emit("run.heartbeat", {}, run_id="r1")
    pb = b.emit("run.heartbeat", {}, run_id="r1")
    assert pa[0] != pb[0]
    a.close()
    b.close()
    c = ledgerx.open(root)
    assert c.emit("run.heartbeat", {}, run_id="r1")[0] in (pa[0], pb[0]), "an idle part is adopted"
    c.close()
    assert len(check_log(root).files) == 2


def test_positions_and_flush_in_group_mode(root: Path) -> None:
    ledger = ledgerx.open(root, durability="group")
    pos = [ledger.emit("run.heartbeat", {"i": i}, run_id="r1") for i in range(1000)]
    ledger.flush()
    # After flush() every emitted line is in the file at its reported offset.
    data = (root / "events" / pos[-1][0]).read_bytes()
    for i, (_, off) in enumerate(pos):
        line = data[off : data.index(b"\n", off)]
        assert json.loads(line)["data"] == {"i": i}
    ledger.close()


def test_writer_ids_are_distinct_and_exposed(root: Path) -> None:
    a, b = ledgerx.open(root), ledgerx.open(root)
    assert a.writer_id != b.writer_id and a.writer_id.startswith("w-")
    a.close()
    b.close()


def test_to_json_matches_json_semantics() -> None:
    doc = {"a": [1, -2, 3.5, 1e300, -0.0, True, False, None], "b": {"c": "\u2028\x00é😀"}}
    assert json.loads(_core.to_json(doc)) == doc
    assert json.loads(_core.to_json({"n": 2**63 - 1, "m": 2**64 - 1})) == {
        "n": 2**63 - 1,
        "m": 2**64 - 1,
    }


def test_phase_duration_is_the_measured_time_in_milliseconds(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """duration_ms is perf_counter's difference × 1000 (the clock is replaced, so the value is
    exact and the test does not depend on timing)."""
    import ledgerx.run as run_mod

    ticks = iter([100.0, 100.25])
    with ledgerx.open(root, durability="os") as led:
        with led.run(run_kind="k", config={}, data_fingerprint="fp") as run:
            monkeypatch.setattr(run_mod.time, "perf_counter", lambda: next(ticks))
            with run.phase("plan"):
                pass
            monkeypatch.undo()
    done = [e for e in check_log(root).events if e["event_type"] == "phase.completed"]
    assert [e["data"]["duration_ms"] for e in done] == [250.0]


@pytest.mark.parametrize("shape", ["tail_beyond_one_read_chunk", "no_newline_at_all"])
def test_adopting_a_part_with_a_long_torn_tail(root: Path, shape: str) -> None:
    """The backward search for the last newline reads 64 KiB at a time: a torn tail longer than
    that, and a part that is nothing but a torn line, are quarantined whole."""
    with ledgerx.open(root) as ledger:
        day_file = ledger.emit("run.heartbeat", {}, run_id="a")[0]
    part = root / "events" / day_file
    torn = b'{"event_id":"0190","event_type":"run.hear' + b"x" * 100_000
    if shape == "no_newline_at_all":
        part.write_bytes(torn)
    else:
        with part.open("ab") as f:
            f.write(torn)
    with ledgerx.open(root) as ledger:
        pos = ledger.emit("run.heartbeat", {}, run_id="b")
    assert pos[0] == day_file, "the non-full part is adopted"
    want = ["b"] if shape == "no_newline_at_all" else ["a", "b"]
    assert [e["run_id"] for e in check_log(root, contiguous_seq=False).events] == want
    bins = list((root / "events" / "_quarantine").glob("*.bin"))
    assert len(bins) == 1 and bins[0].read_bytes() == torn


@pytest.mark.parametrize("mode", ["group", "fsync", "os"])
def test_one_writers_events_sort_by_ts_then_event_id_in_emit_order(root: Path, mode: str) -> None:
    """Events emitted within one microsecond share `ts` (here all of them: the writer's clock is
    held still); their UUIDv7 event ids then increase in emit order (a per-writer counter within
    each millisecond), so `ORDER BY ts, event_id` is the writer's order (oracle: seq, which the
    writer assigns in emit order)."""
    n = 300 if mode == "fsync" else 2000
    w = _core.Writer(str(root), durability=mode)
    w._set_fake_now(1_764_650_000_123_456)
    for i in range(n):
        w.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r")
    w.close()
    lines = [json.loads(x) for p in sorted((root / "events").glob("day=*/*.jsonl"))
             for x in p.read_bytes().splitlines()]  # fmt: skip
    assert [e["seq"] for e in lines] == list(range(1, n + 1))
    assert len({e["ts"] for e in lines}) == 1
    by_ts_id = sorted(lines, key=lambda e: (e["ts"], e["event_id"]))
    assert [e["seq"] for e in by_ts_id] == list(range(1, n + 1))

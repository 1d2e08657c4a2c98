"""Bad input: each a clear, typed error, and nothing written (docs/format.md, docs/schema.md)."""

from __future__ import annotations

import datetime as dt
import errno
import subprocess
from pathlib import Path
from typing import Any

import pytest

import ledgerx
from ledgerx import LedgerIOError, SchemaError

from conftest import cli
from logcheck import check_log

GOOD = {"trial_id": 1, "params": {}, "metrics": {"sharpe": 1.0}}


def _cases() -> list[tuple[str, str, Any, dict[str, Any], str]]:
    return [
        ("unknown type", "trial.unknown", GOOD, {}, "unknown event type 'trial.unknown'"),
        (
            "missing field",
            "trial.recorded",
            {"trial_id": 1, "params": {}},
            {},
            "trial.recorded v1: data: missing required field 'metrics'",
        ),
        (
            "wrong type",
            "trial.recorded",
            {**GOOD, "metrics": {"sharpe": "high"}},
            {},
            "trial.recorded v1: data.metrics.sharpe: expected number, got string",
        ),
        (
            "NaN",
            "trial.recorded",
            {**GOOD, "metrics": {"sharpe": float("nan")}},
            {},
            "data.metrics.sharpe: NaN is not allowed",
        ),
        (
            "Infinity",
            "trial.recorded",
            {**GOOD, "params": {"x": [float("inf")]}},
            {},
            "data.params.x[0]: inf is not allowed",
        ),
        (
            "not serializable",
            "trial.recorded",
            {**GOOD, "params": {"when": dt.time(12, 0)}},
            {},
            "data.params.when: value of type datetime.time is not JSON-serializable",
        ),
        (
            "non-string key",
            "trial.recorded",
            {**GOOD, "params": {1: "a"}},
            {},
            "data.params: non-string key 1",
        ),
        (
            "lone surrogate",
            "trial.recorded",
            {**GOOD, "params": {"s": "\ud800"}},
            {},
            "data.params.s: string is not valid Unicode",
        ),
        (
            "huge int",
            "trial.recorded",
            {**GOOD, "params": {"n": 2**70}},
            {},
            "data.params.n: integer out of 64-bit range",
        ),
        (
            "int just over u64",
            "trial.recorded",
            {**GOOD, "params": {"n": 2**64}},
            {},
            "data.params.n: integer out of 64-bit range",
        ),
        (
            "huge negative int under an escaped key",
            "trial.recorded",
            {**GOOD, "params": {'a"b\n': -(2**63) - 1}},
            {},
            'data.params.a"b\n: integer out of 64-bit range',
        ),
        (
            "17 MiB",
            "trial.recorded",
            {**GOOD, "params": {"blob": "x" * (17 << 20)}},
            {},
            "over max_event_bytes 16777216",
        ),
        (
            "bad run_id",
            "trial.recorded",
            GOOD,
            {"run_id": "../etc/passwd"},
            'invalid run_id "../etc/passwd"',
        ),
        ("data not a dict", "trial.recorded", [1, 2], {}, "data must be a dict"),
        (
            "unknown version",
            "trial.recorded",
            GOOD,
            {"schema_version": 9},
            "unknown schema_version 9",
        ),
        ("deep nesting", "run.heartbeat", {"x": _nest(1000)}, {}, "nested deeper than"),
    ]


def _nest(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_bad_event_is_refused_and_nothing_written(root: Path, case: tuple) -> None:
    _, etype, data, kw, message = case
    kw = {"run_id": "r1", **kw}  # run-scoped types need one; the case is about something else
    with ledgerx.open(root, durability="fsync") as ledger:
        with pytest.raises(SchemaError) as err:
            ledger.emit(etype, data, **kw)
        assert message in str(err.value)
        assert isinstance(err.value, ValueError)
        ledger.emit("trial.recorded", GOOD, run_id="ok")  # the ledger still works
    evs = check_log(root).events
    assert [e["run_id"] for e in evs] == ["ok"]
    assert evs[0]["seq"] == 1, "a refused event does not consume a seq"


def test_emit_on_a_closed_ledger(root: Path) -> None:
    ledger = ledgerx.open(root)
    ledger.close()
    with pytest.raises(ledgerx.ClosedError):
        ledger.emit("trial.recorded", GOOD)
    with pytest.raises(LedgerIOError):  # ClosedError is a LedgerIOError (an OSError)
        ledger.emit("trial.recorded", GOOD)


def test_bad_options_are_refused(root: Path) -> None:
    with pytest.raises(ledgerx.ConfigError, match="durability"):
        ledgerx.open(root, durability="sometimes")
    with pytest.raises(SchemaError, match="invalid run_id"):
        ledgerx.open(root).run(run_id="a/b", run_kind="k", config={}, data_fingerprint="f")


def _make_read_only(path: Path) -> list[list[str]]:
    """A read-only bind mount (EROFS); else the immutable flag (EPERM), which binds root too.
    Returns the commands that undo it."""
    p = str(path)
    if subprocess.run(["mount", "--bind", p, p], capture_output=True).returncode == 0:
        if (
            subprocess.run(["mount", "-o", "remount,ro,bind", p], capture_output=True).returncode
            == 0
        ):
            return [["umount", p]]
        subprocess.run(["umount", p], capture_output=True)
    subprocess.run(["chattr", "+i", p], check=True, capture_output=True)
    return [["chattr", "-i", p]]


def test_read_only_log_directory_names_the_path(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    events = root / "events"
    events.mkdir(parents=True)
    undo = _make_read_only(events)
    try:
        with pytest.raises(LedgerIOError) as err:
            ledgerx.open(root).emit("run.heartbeat", {}, run_id="r1")
        assert isinstance(err.value, OSError)
        assert err.value.errno in (errno.EROFS, errno.EPERM, errno.EACCES)
        assert str(events) in str(err.value)
        r = cli("emit", "--root", str(root), "run.heartbeat", "--run-id", "r1")
        assert r.returncode == 1 and str(events) in r.stderr and len(r.stderr.splitlines()) == 1
    finally:
        for cmd in undo:
            subprocess.run(cmd, check=True)
    assert not list(events.glob("day=*"))


def test_symlinked_day_directory_is_refused(root: Path, tmp_path: Path) -> None:
    with ledgerx.open(root) as ledger:
        day = ledger.emit("run.heartbeat", {}, run_id="r1")[0].split("/")[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    day_dir = root / "events" / day
    for p in day_dir.iterdir():
        p.unlink()
    day_dir.rmdir()
    day_dir.symlink_to(elsewhere)
    with ledgerx.open(root) as ledger:
        with pytest.raises(LedgerIOError, match="not a directory"):
            ledger.emit("run.heartbeat", {}, run_id="r1")
    assert list(elsewhere.iterdir()) == []


def test_cli_emit_errors_are_one_line(root: Path) -> None:
    cases = [
        (["trial.recorded", "--data", "{not json"], "not valid JSON"),
        (["trial.recorded", "--data", "[1]"], "must be a JSON object"),
        (["trial.recorded", "--data", '{"a": 1, "a": 2}'], "duplicate key"),
        (["trial.recorded", "--data", '{"x": NaN}'], "NaN is not valid JSON"),
        (["trial.recorded", "--data", '{"trial_id": 1}'], "missing required field"),
        (["nope.type", "--data", "{}"], "unknown event type"),
        (["run.heartbeat", "--run-id", "bad id"], "invalid run_id"),
    ]
    for args, msg in cases:
        r = cli("emit", "--root", str(root), *args)
        assert r.returncode != 0, args
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not list((root / "events").glob("day=*/part-*.jsonl")) or not check_log(root).events


def test_cli_emit_and_tail(root: Path) -> None:
    r = cli(
        "emit",
        "--root",
        str(root),
        "trial.recorded",
        "--run-id",
        "cli-1",
        "--data",
        '{"trial_id": 3, "params": {"a": 1}, "metrics": {"m": 0.5}}',
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("@0")
    r = cli("emit", "--root", str(root), "run.heartbeat", "--run-id", "cli-1", "--json")
    assert r.returncode == 0 and '"offset"' in r.stdout
    r = cli("tail", "--root", str(root), "--json", "-n", "5")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and '"trial_id": 3' in lines[0]
    r = cli("tail", "--root", str(root), "--type", "run.heartbeat")
    assert r.returncode == 0 and "run.heartbeat" in r.stdout and "trial" not in r.stdout
    r = cli("tail", "--root", str(root / "missing"))
    assert r.returncode == 1 and "no ledger" in r.stderr

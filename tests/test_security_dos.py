"""Security: bounded work on hostile input (docs/security.md).

- An object with many keys: the duplicate-key check was O(n²) in the keys (900k keys that
  `emit()` accepts made `status`/`rebuild`/`/healthz` run for hours). Now a hash set, each key
  decoded once. The sizes here take seconds when linear and many minutes when quadratic; no
  timing is asserted (the subprocess timeout only keeps a regression from hanging the suite).
- An array validated against `items` walked the token tape from the start for every element
  (O(n²) in `emit()` itself).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ledgerx
from ledgerx import _core

from conftest import cli

N_KEYS = 200_000
TIMEOUT = 600  # a hang guard, not a speed assertion


def _day(root: Path) -> Path:
    return next((root / "events").glob("day=*"))


def test_objects_with_many_keys_are_checked_in_linear_time(root: Path) -> None:
    led = ledgerx.open(root, durability="fsync")
    try:
        payload = {f"k{i}": i for i in range(N_KEYS)}
        led.emit("alert.ingested", {"alert_id": "a1", "source": "s", "severity": "x",
                                    "payload": payload})  # fmt: skip
    finally:
        led.close()
    # Hand-written lines (no crc, as a third-party tool writes): every key escaped, and the
    # same with one duplicate (`\u006b0` is `k0`) at the very end.
    keys = ",".join(f'"\\u006b{i}":{i}' for i in range(N_KEYS))
    env = (
        '{"event_id":"%s","event_type":"alert.ingested","schema_version":1,'
        '"ts":"2026-01-01T00:00:00.000000Z","run_id":null,"writer":"w","seq":%d,'
        '"data":{"alert_id":"a","source":"s","severity":"x","payload":{%s}}}\n'
    )
    good = env % ("01940000-0000-7000-8000-000000000001", 1, keys)
    dup = env % ("01940000-0000-7000-8000-000000000002", 2, keys + ',"k0":1')
    (_day(root) / "part-000900.jsonl").write_text(good + dup)
    r = cli("rebuild", "--json", "--root", str(root), timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["events"] == 2 and rep["bad_lines"] == 1, rep
    assert "duplicate key" in rep["bad"][0]["reason"], rep["bad"]
    r = cli("verify", "--json", "--root", str(root), timeout=TIMEOUT)
    problems = json.loads(r.stdout)["problems"]
    assert len(problems) == 1 and "duplicate key" in problems[0], problems
    text = json.dumps(payload).encode()
    validator = _core.SchemaValidator('{"type": "object"}')
    assert validator.is_valid_json(text)
    with pytest.raises(ledgerx.SchemaError, match="duplicate key"):
        validator.is_valid_json(text[:-1] + b', "k7": 1}')


def test_long_arrays_validate_in_linear_time(root: Path) -> None:
    led = ledgerx.open(root, durability="fsync")
    try:
        led.emit_run_created("r1", "k", {}, "fp")
        paths = [f"artifacts/runs/r1/{i}.parquet" for i in range(N_KEYS)]
        led.emit_run_completed("r1", {}, paths)  # artifact_paths: {"items": {"type": "string"}}
        try:
            led.emit_run_completed("r1", {}, [*paths, 7])
            raise AssertionError("a non-string path was accepted")
        except ledgerx.SchemaError as e:
            assert f"data.artifact_paths[{N_KEYS}]" in str(e)
    finally:
        led.close()

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
import subprocess
import sys
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


# Peak RSS of this process only: VmHWM belongs to the process's own memory map, where
# getrusage's ru_maxrss keeps the parent's peak across fork+exec (pytest's, hundreds of MiB).
HWM = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"

PEAK_RSS = f"""
import sys
from ledgerx import _core
ev, rel = sys.argv[1:]
(b,) = _core.scan_files(ev, [(rel, 0)])
print(b.num_rows, b.end_offset, len(b.bad_lines), b.pending_bytes)
print({HWM} // 1024)
"""

CLI_RSS = f"""
import sys
from ledgerx.cli import main
try:
    main(sys.argv[1:])
finally:
    print({HWM} // 1024, file=sys.stderr)
"""


def _peak(code: str, *args: str) -> tuple[str, int]:
    r = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=TIMEOUT
    )
    return r.stdout, int(
        r.stderr.strip().splitlines()[-1] if code is CLI_RSS else r.stdout.split()[-1]
    )


@pytest.mark.heavy
def test_an_unterminated_line_is_not_read_whole(root: Path) -> None:
    """A sparse 2 GiB part file with no newline (no disk used): scanning it, and the commands
    that read the log, stay far below the file's size in memory (peak RSS of a fresh process,
    VmHWM)."""
    led = ledgerx.open(root, durability="fsync")
    try:
        led.emit("alert.ingested", {"alert_id": "a", "source": "s", "severity": "x", "payload": {}})
    finally:
        led.close()
    part = _day(root) / "part-000900.jsonl"
    with open(part, "wb") as f:
        f.write(b'{"event_id":"x",')
        f.truncate(2 << 30)
        f.seek((2 << 30) - 1)  # a last non-NUL byte: all of it is data (a trailing NUL run
        f.write(b"x")  # would be a writer's preallocated space, not yet written)
    rel = str(part.relative_to(root / "events"))
    out, peak = _peak(PEAK_RSS, str(root / "events"), rel)
    rows, end, bad, pending = map(int, out.split()[:4])
    assert (rows, end, bad, pending) == (0, 0, 0, 2 << 30), "left pending, never returned"
    assert peak < 400, f"peak RSS {peak} MiB for a 2 GiB unterminated line"
    for cmd in (["rebuild", "--json"], ["verify", "--json"], ["status", "--json"]):
        out, peak = _peak(CLI_RSS, *cmd, "--root", str(root))
        assert peak < 500, f"ledgerx {cmd[0]}: peak RSS {peak} MiB"
    assert json.loads(out)["lag_bytes"] == 2 << 30  # the last status: still pending


def test_an_overlong_line_is_skipped_and_what_follows_is_indexed(root: Path) -> None:
    led = ledgerx.open(root, durability="fsync")
    try:
        pos = led.emit("alert.ingested", {"alert_id": "a", "source": "s", "severity": "x",
                                          "payload": {}})  # fmt: skip
    finally:
        led.close()
    good = (root / "events" / pos[0]).read_bytes()
    good2 = good.replace(b'"alert_id":"a"', b'"alert_id":"b"')  # crc now wrong: a bad line
    part = _day(root) / "part-000900.jsonl"
    overlong = b"A" * (40 << 20) + b"\n"  # longer than max_event_bytes (16 MiB) and the chunk
    part.write_bytes(overlong + good2 + overlong)
    r = cli("rebuild", "--json", "--root", str(root), timeout=TIMEOUT)
    rep = json.loads(r.stdout)
    reasons = [(b["offset"], b["len"], b["reason"][:22]) for b in rep["bad"]]
    n = len(overlong)
    assert reasons[0] == (0, n, f"line of {n} bytes exceeds"[:22])
    assert reasons[-1] == (n + len(good2), n, f"line of {n} bytes exceeds"[:22]), reasons
    assert rep["bad_lines"] == 3 and rep["events"] == 1, rep

"""The bad-input matrix for files dropped into the log by hand and for the read-side CLI
(issue 5): each is refused or reported clearly, nothing good is lost, the indexer goes on."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

import ledgerx
from ledgerx import _core

from conftest import cli
from crc32c_ref import crc32c


def _env(i: int, data: str = "{}") -> str:
    return (
        '{"event_id":"0190c1f0-0000-7000-8000-%012d","event_type":"run.heartbeat",'
        '"schema_version":1,"ts":"2026-02-03T04:05:06.000007Z","run_id":"hand","writer":"w-hand",'
        f'"seq":{i},"data":{data}'
    ) % i


def _crc_line(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return raw + b',"crc":"%08x"}\n' % crc32c(raw)


@pytest.mark.heavy
def test_hand_dropped_part_with_every_kind_of_bad_line(root: Path) -> None:
    with ledgerx.open(root) as led:
        led.emit("run.heartbeat", {"ok": 1}, run_id="good")
    day = root / "events" / "day=2026-02-03"
    day.mkdir()
    deep = "[" * 1000 + "]" * 1000
    bad_lines = {
        "invalid JSON": b'{"event_id": oops}\n',
        "NaN": _crc_line(_env(2, '{"x":NaN}')),
        "lone surrogate": _crc_line(_env(3, '{"x":"\\ud800"}')),
        "duplicate key": _crc_line(_env(4, '{"x":1,"x":2}')),
        "deep nesting": _crc_line(_env(5, '{"x":' + deep + "}")),
        "over 16 MiB": _crc_line(_env(6, '{"x":"' + "a" * (16 << 20) + '"}')),
        "non-UTF-8": _env(7, '{"x":"').encode() + b'\xff\xfe"}}\n',
    }
    good = [_crc_line(_env(1)), _crc_line(_env(8))]
    part = day / "part-000001.jsonl"
    part.write_bytes(good[0] + b"".join(bad_lines.values()) + good[1])
    r = cli("rebuild", "--root", str(root))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("bad line") == len(bad_lines), r.stderr
    con = duckdb.connect(str(root / "index" / "runs.duckdb"), read_only=True)
    seqs = sorted(
        x[0] for x in con.execute("SELECT seq FROM events WHERE run_id='hand'").fetchall()
    )
    assert seqs == [1, 8], "good lines around the bad ones are indexed"
    reasons = [
        x[0] for x in con.execute('SELECT reason FROM _bad_lines ORDER BY "offset"').fetchall()
    ]
    assert len(reasons) == len(bad_lines)
    for want in [
        "invalid JSON",
        "invalid JSON",
        "lone surrogate",
        "duplicate key",
        "too deep",
        "exceeds",
        "UTF-8",
    ]:
        assert any(want in why for why in reasons), (want, reasons)
    con.close()
    v = cli("verify", "--root", str(root))
    assert v.returncode == 1, "verify flags a log with bad lines"


def test_symlinks_and_fifos_in_the_log_are_reported_and_skipped(root: Path, tmp_path: Path) -> None:
    with ledgerx.open(root) as led:
        led.emit("run.heartbeat", {}, run_id="good")
    events = root / "events"
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(_crc_line(_env(1)))
    (events / "day=2026-02-04").mkdir()
    (events / "day=2026-02-04" / "part-000001.jsonl").symlink_to(outside)
    os.mkfifo(events / "day=2026-02-04" / "part-000002.jsonl")
    outside_dir = tmp_path / "outside_dir"
    outside_dir.mkdir()
    (events / "day=2026-02-05").symlink_to(outside_dir)
    r = cli("rebuild", "--root", str(root), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "day=2026-02-04/part-000001.jsonl: skipped (symlink)" in r.stderr
    assert "day=2026-02-04/part-000002.jsonl: skipped (not a regular file)" in r.stderr
    assert "day=2026-02-05: skipped (symlink)" in r.stderr
    con = duckdb.connect(str(root / "index" / "runs.duckdb"), read_only=True)
    assert con.execute("SELECT run_id FROM events").fetchall() == [("good",)]
    con.close()
    # The scanner itself refuses them too, file by file, without failing the others.
    batches = _core.scan_files(
        str(events),
        [("day=2026-02-04/part-000001.jsonl", 0), ("day=2026-02-04/part-000002.jsonl", 0)],
    )
    assert all(b.error and b.num_rows == 0 for b in batches)


@pytest.mark.heavy
def test_read_side_cli_refuses_injection_and_file_access(root: Path, tmp_path: Path) -> None:
    with ledgerx.open(root) as led:
        with led.run(run_id="r1", run_kind="k", config={}, data_fingerprint="f"):
            pass
        with led.run(run_id="r2", run_kind="k", config={}, data_fingerprint="f"):
            pass
    assert cli("rebuild", "--root", str(root)).returncode == 0
    # A run id is a value, never SQL.
    r = cli("show", "--root", str(root), "x' OR '1'='1", "--json")
    assert r.returncode != 0 and "r1" not in r.stdout and "r2" not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    for sql in [
        f"COPY (SELECT * FROM events) TO '{tmp_path / 'leak.csv'}'",
        f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
        f"SELECT * FROM read_csv('{secret}')",
        "SELECT * FROM read_text('/etc/passwd')",
        "INSERT INTO events SELECT * FROM events",
        "SET enable_external_access = true",
    ]:
        r = cli("query", "--root", str(root), sql)
        assert r.returncode != 0, sql
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "leak.csv").exists()
    assert not (tmp_path / "other.duckdb").exists()
    r = cli("query", "--root", str(root), "SELECT count(*) AS n FROM latest_runs", "--json")
    assert r.returncode == 0 and '"n": 2' in r.stdout, r.stdout

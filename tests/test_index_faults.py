"""Damaged logs (torn tail, bad crc, glued record, lines without crc, duplicate ids), `verify`
and the CLI, through real files and real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from index_support import T0, index_events, part_files, reference_events, write_sweep

from ledgerx import _core
from ledgerx.index import IndexPaths, build_index
from ledgerx.index.indexer import open_readonly
from ledgerx.index.verify import verify

from crc32c_ref import crc32c


def make_line(event_id: str, seq: int = 1, crc: bool = True, writer: str = "third") -> bytes:
    body = (
        f'{{"event_id":"{event_id}","event_type":"run.heartbeat","schema_version":1,'
        f'"ts":"2026-01-01T05:00:00.000000Z","run_id":"rx","writer":"{writer}","seq":{seq},'
        f'"data":{{}}'
    ).encode()
    if not crc:
        return body + b"}\n"
    return body + f',"crc":"{crc32c(body):08x}"}}\n'.encode()


def cli(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerx", *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def count(db: Path, sql: str) -> Any:
    con = open_readonly(db)
    try:
        return con.execute(sql).fetchall()[0][0]
    finally:
        con.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    root = tmp_path / "ledger"
    write_sweep(root, runs=2, trials=5, seed=1)
    return root


def test_torn_tail_is_left_for_later_and_verify_flags_it(ledger: Path) -> None:
    part = part_files(ledger)[0]
    full = make_line("00000000-0000-7000-8000-00000000000a")
    with open(part, "ab") as f:
        f.write(full[:50])
    rep = build_index(ledger)
    db = IndexPaths.for_root(ledger).runs
    assert rep.bad_lines == 0
    assert count(db, 'SELECT "offset" FROM _ledger_files') == part.stat().st_size - 50
    assert count(db, "SELECT count(*) FROM events WHERE run_id = 'rx'") == 0
    v = verify(ledger)
    assert not v.ok and any("torn tail: 50 bytes" in p for p in v.problems)
    # A tail that only grew, still unterminated, changes nothing
    with open(part, "ab") as f:
        f.write(full[50:60])
    assert build_index(ledger).mode == "noop"
    with open(part, "ab") as f:  # the writer finishes the line
        f.write(full[60:])
    assert build_index(ledger).events == 1
    assert index_events(db) == reference_events(ledger)
    assert verify(ledger).ok


def test_bad_crc_glued_record_and_missing_crc(ledger: Path, tmp_path: Path) -> None:
    part = part_files(ledger)[0]
    good = make_line("00000000-0000-7000-8000-0000000000b1", seq=1)
    flipped = bytearray(make_line("00000000-0000-7000-8000-0000000000b2", seq=2))
    flipped[120] ^= 0x01
    glued = make_line("00000000-0000-7000-8000-0000000000b3", seq=3)
    nocrc = make_line("00000000-0000-7000-8000-0000000000b4", seq=4, crc=False)
    size = part.stat().st_size
    with open(part, "ab") as f:
        f.write(good + bytes(flipped) + glued[:70] + glued + nocrc)
    rep = build_index(ledger)
    db = IndexPaths.for_root(ledger).runs
    assert rep.bad_lines == 2
    rel = f"{part.parent.name}/{part.name}"
    (crc_bad, torn_bad) = sorted(rep.bad)
    at = size + len(good)
    assert crc_bad[:3] == (rel, at, len(flipped)) and crc_bad[3].startswith("crc mismatch")
    assert torn_bad[:3] == (rel, at + len(flipped), 70)
    assert torn_bad[3].startswith("torn prefix before a valid event")
    ids = {r[0] for r in open_readonly(db).execute("SELECT event_id FROM events").fetchall()}
    assert "00000000-0000-7000-8000-0000000000b1" in ids
    assert "00000000-0000-7000-8000-0000000000b2" not in ids
    assert "00000000-0000-7000-8000-0000000000b3" in ids  # recovered behind the torn prefix
    assert "00000000-0000-7000-8000-0000000000b4" in ids  # third-party line without crc
    assert count(db, "SELECT count(*) FROM _bad_lines") == 2
    assert index_events(db) == reference_events(ledger)
    # strict mode refuses the line without crc
    strict_db = tmp_path / "strict.duckdb"
    rep = build_index(ledger, db=strict_db, strict=True)
    assert rep.bad_lines == 3
    assert count(strict_db, "SELECT count(*) FROM events WHERE run_id = 'rx'") == 2
    assert index_events(strict_db) == reference_events(ledger, strict=True)
    v = verify(ledger)
    assert not v.ok
    assert any("crc mismatch" in p for p in v.problems)


def test_duplicate_event_ids_are_indexed_once(ledger: Path) -> None:
    build_index(ledger)
    src = part_files(ledger)[0]
    first = src.read_bytes().split(b"\n")[0] + b"\n"
    other = src.parent / "part-000777.jsonl"  # e.g. a copied part
    other.write_bytes(first + make_line("00000000-0000-7000-8000-0000000000c1"))
    rep = build_index(ledger)
    assert rep.duplicates == 1 and rep.events == 1
    ((f, off, ln, why),) = rep.bad
    assert (f, off, ln) == (f"{other.parent.name}/{other.name}", 0, len(first))
    assert why.startswith(f"duplicate event_id {first[13:49].decode()} (kept the line at ")
    db = IndexPaths.for_root(ledger).runs
    assert count(db, "SELECT count(*) - count(DISTINCT event_id) FROM events") == 0
    assert index_events(db) == reference_events(ledger)
    assert count(db, "SELECT sum(n_events) FROM runs_d WHERE run_id LIKE 'run-%'") == count(
        db, "SELECT count(*) FROM events WHERE run_id LIKE 'run-%'"
    )


def test_verify_catches_deleted_index_row_and_flipped_byte(ledger: Path) -> None:
    build_index(ledger)
    assert cli("verify", root=ledger).returncode == 0
    db = IndexPaths.for_root(ledger).runs
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM events WHERE event_id = (SELECT min(event_id) FROM events)")
    con.close()
    r = cli("verify", "--json", root=ledger)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert not out["ok"] and any("index has" in p for p in out["problems"])
    build_index(ledger, full_rebuild=True)
    assert cli("verify", root=ledger).returncode == 0
    part = part_files(ledger)[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x04
    part.write_bytes(bytes(data))
    r = cli("verify", root=ledger)
    assert r.returncode == 1 and "crc mismatch" in r.stdout


def test_verify_schema_and_seq_gaps(ledger: Path) -> None:
    part = part_files(ledger)[0]
    bad = (
        b'{"event_id":"00000000-0000-7000-8000-0000000000d1","event_type":"trial.recorded",'
        b'"schema_version":1,"ts":"2026-01-01T05:00:00.000000Z","run_id":"rx","writer":"w9",'
        b'"seq":1,"data":{"trial_id":1}'
    )
    gap = make_line("00000000-0000-7000-8000-0000000000d2", seq=3, writer="w9")
    with open(part, "ab") as f:
        f.write(bad + f',"crc":"{crc32c(bad):08x}"}}\n'.encode() + gap)
    v = verify(ledger)
    assert any("schema: trial.recorded v1" in p for p in v.problems), v.problems
    assert any("writer w9: seq gap: 2..2 missing" in p for p in v.problems), v.problems


@pytest.mark.heavy
def test_cli_commands(ledger: Path) -> None:
    r = cli("rebuild", root=ledger)
    assert r.returncode == 0 and r.stderr == ""  # no progress bar in a pipe
    assert r.stdout.startswith("indexed ") and "bad lines" in r.stdout
    r = cli("rebuild", "--json", root=ledger)
    assert json.loads(r.stdout)["mode"] == "noop"
    runs = json.loads(cli("runs", "--json", root=ledger).stdout)
    assert [x["status"] for x in runs] == ["completed", "completed"]
    rid = runs[0]["run_id"]
    shown = json.loads(cli("show", rid, "--json", root=ledger).stdout)
    assert shown["run"]["run_id"] == rid and len(shown["phases"]) == 2 and shown["trials"] == 5
    assert rid in cli("show", rid, root=ledger).stdout
    r = cli("show", "nope", root=ledger)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "unknown run" in r.stderr
    r = cli("query", "SELECT count(*) AS n FROM events", "--json", root=ledger)
    assert json.loads(r.stdout) == [{"n": 2 * 14 + 1}]
    for sql in [
        f"COPY events TO '{ledger}/x.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"ATTACH '{ledger}/y.duckdb' AS y",
        "DELETE FROM events",
        "SET enable_external_access = true",
    ]:
        r = cli("query", sql, root=ledger)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, (sql, r.stderr)
    assert not (ledger / "x.csv").exists()
    st = json.loads(cli("status", "--json", root=ledger).stdout)
    assert st["lag_events"] == 0 and st["last_rebuild"]["mode"] == "full"
    w = _core.Writer(str(ledger), durability="os")
    w._set_fake_now(T0)
    w.emit("run.heartbeat", {}, run_id="late")
    w.close()
    st = json.loads(cli("status", "--json", root=ledger).stdout)
    assert st["lag_events"] == 1 and st["lag_bytes"] > 0 and st["oldest_unindexed_age_s"] > 0
    assert "lag              1 events" in cli("status", root=ledger).stdout
    r = cli("rebuild", "--since-date", "bad", root=ledger)
    assert r.returncode == 1 and "YYYY-MM-DD" in r.stderr
    missing = ledger.parent / "missing"
    r = cli("runs", root=missing)
    assert r.returncode == 1 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
    assert not missing.exists()
    empty = ledger.parent / "empty"
    (empty / "events").mkdir(parents=True)
    r = cli("runs", root=empty)
    assert r.returncode == 1 and "ledgerx rebuild" in r.stderr

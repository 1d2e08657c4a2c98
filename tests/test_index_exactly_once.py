"""Exactly once, within one round as across rounds, in a full rebuild as in an incremental one;
a line is v1 only with exactly the envelope keys. Expected values are hand-computed from what
write_sweep writes, or come from the independent reader (tests/logcheck.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from index_support import index_runs, part_files, write_sweep

from ledgerx.index import IndexPaths, build_index
from ledgerx.index.indexer import open_readonly

from crc32c_ref import crc32c
from logcheck import expected_index

# write_sweep(runs=2, trials=5, alerts=1): per run created, started, 2 phases x (started,
# completed), 5 trials, a baseline, an artifact, completed = 14 events; plus 1 alert.
EVENTS, TRIALS = 29, 5


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    root = tmp_path / "ledger"
    write_sweep(root, runs=2, trials=5, seed=1)
    return root


def line(eid: str, seq: int, key: str = "crc", version: int = 1) -> bytes:
    body = (
        f'{{"event_id":"{eid}","event_type":"trial.recorded","schema_version":{version},'
        f'"ts":"2026-01-01T05:00:00.000000Z","run_id":"run-x","writer":"hand","seq":{seq},'
        f'"data":{{"trial_id":{seq},"params":{{}},"metrics":{{}}}}'
    ).encode()
    return body + f',"{key}":"{crc32c(body):08x}"}}\n'.encode()


def rows(root: Path) -> list[tuple[str, str, int]]:
    con = open_readonly(IndexPaths.for_root(root).runs)
    try:
        return con.execute('SELECT event_id, file, "offset" FROM events ORDER BY ALL').fetchall()
    finally:
        con.close()


def oracle(root: Path) -> list[tuple[str, str, int]]:
    return sorted((e["event_id"], e["file"], e["offset"]) for e in expected_index(root))


def bad_reasons(root: Path) -> list[tuple[str, int, str]]:
    con = open_readonly(IndexPaths.for_root(root).runs)
    try:
        return con.execute('SELECT file, "offset", reason FROM _bad_lines ORDER BY ALL').fetchall()
    finally:
        con.close()


E1 = "00000000-0000-7000-8000-0000000000e1"
E2 = "00000000-0000-7000-8000-0000000000e2"


def test_copied_part_in_a_full_rebuild_counts_each_event_once(ledger: Path) -> None:
    (src,) = part_files(ledger)
    src.with_name("part-000777.jsonl").write_bytes(src.read_bytes())  # e.g. a copied part
    rep = build_index(ledger, full_rebuild=True)
    assert (rep.mode, rep.events, rep.duplicates) == ("full", EVENTS, EVENTS)
    got = rows(ledger)
    assert len(got) == EVENTS and {f for _, f, _ in got} == {f"day=2026-01-01/{src.name}"}
    assert got == oracle(ledger)
    runs = index_runs(IndexPaths.for_root(ledger).runs)
    assert {r: (v["n_events"], v["n_trials"]) for r, v in runs.items()} == {
        "run-1-20454-0": (14, TRIALS),
        "run-1-20454-1": (14, TRIALS),
    }


def test_one_event_gained_by_two_parts_in_one_round_is_indexed_once(ledger: Path) -> None:
    build_index(ledger)
    (src,) = part_files(ledger)
    new = line(E1, 1)
    with open(src, "ab") as f:
        f.write(new)
    src.with_name("part-000002.jsonl").write_bytes(new + line(E2, 2))
    rep = build_index(ledger)
    assert (rep.mode, rep.events, rep.duplicates) == ("incremental", 2, 1)
    got = rows(ledger)
    assert [r for r in got if r[0] in (E1, E2)] == [
        (E1, "day=2026-01-01/part-000001.jsonl", src.stat().st_size - len(new)),
        (E2, "day=2026-01-01/part-000002.jsonl", len(new)),
    ]
    assert got == oracle(ledger)
    assert index_runs(IndexPaths.for_root(ledger).runs)["run-x"]["n_trials"] == 2
    (dup,) = [b for b in bad_reasons(ledger) if "duplicate" in b[2]]
    assert dup[:2] == ("day=2026-01-01/part-000002.jsonl", 0)


def test_glued_copy_beside_the_original_in_one_round_is_indexed_once(ledger: Path) -> None:
    build_index(ledger)
    (src,) = part_files(ledger)
    size = src.stat().st_size
    new = line(E1, 1)
    with open(src, "ab") as f:
        f.write(new + new[:30] + new)  # the original, then a torn prefix glued to a copy
    rep = build_index(ledger)
    assert (rep.events, rep.duplicates, rep.bad_lines) == (1, 1, 2)
    assert [r for r in rows(ledger) if r[0] == E1] == [(E1, f"day=2026-01-01/{src.name}", size)]
    assert rows(ledger) == oracle(ledger)
    full = build_index(ledger, full_rebuild=True)
    assert (full.events, full.duplicates) == (EVENTS + 1, 1)
    assert rows(ledger) == oracle(ledger)


@pytest.mark.parametrize("key", ["Crc", "src", "crk", "crc "])
def test_a_damaged_crc_key_makes_a_bad_line(ledger: Path, key: str) -> None:
    (src,) = part_files(ledger)
    size = src.stat().st_size
    with open(src, "ab") as f:
        f.write(line(E1, 1, key=key))
    rep = build_index(ledger)
    assert (rep.events, rep.bad_lines) == (EVENTS, 1)
    (bad,) = bad_reasons(ledger)
    assert bad == (
        f"day=2026-01-01/{src.name}",
        size,
        f'not a v1 envelope: key 9 is "{key}", expected "crc"',
    )
    assert E1 not in {r[0] for r in rows(ledger)}
    assert rows(ledger) == oracle(ledger)


def test_schema_version_beyond_the_index_column_is_a_bad_line(ledger: Path) -> None:
    (src,) = part_files(ledger)
    with open(src, "ab") as f:
        f.write(line(E1, 1, version=1 << 31) + line(E2, 2, version=(1 << 31) - 1))
    rep = build_index(ledger)
    assert (rep.events, rep.bad_lines) == (EVENTS + 1, 1)
    assert "schema_version" in bad_reasons(ledger)[0][2]
    assert rows(ledger) == oracle(ledger)

"""`_core.Scanner`, the one "scan until done" loop of the binding (issue 14, item 2), against
offsets computed here by splitting the file's bytes on newlines (not by the scanner)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from ledgerx import _core

REL = "day=2026-01-02/part-000001.jsonl"


def _write(root: Path, n: int) -> Path:
    w = _core.Writer(str(root), durability="fsync")
    try:
        for i in range(n):
            w.emit("alert.ingested", {"alert_id": f"a{i}", "source": "t", "severity": "low",
                                      "payload": {"pad": "x" * (i % 7) * 500}})  # fmt: skip
    finally:
        w.close()
    (part,) = (root / "events").glob("day=*/part-*.jsonl")
    return part


def _line_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while (nl := data.find(b"\n", pos)) >= 0:
        starts.append(pos)
        pos = nl + 1
    return starts


def _offsets(batches: list[_core.ScanBatch]) -> list[int]:
    out: list[int] = []
    for b in batches:
        if b.num_rows:
            out += pa.record_batch(b).column("offset").to_pylist()
    return out


def test_chunks_rounds_stop_and_tail(root: Path) -> None:
    part = _write(root, 300)
    ev = root / "events"
    rel = part.relative_to(ev).as_posix()
    with open(part, "ab") as f:
        f.write(b'{"event_id":"torn')  # an unterminated tail: left pending
    data = part.read_bytes()
    starts = _line_starts(data)
    last_end = data.rfind(b"\n") + 1
    assert len(starts) == 300

    # Chunks (a read is 64 KiB at least): many rounds, every line once, in order, no tail.
    rounds = list(_core.Scanner(str(ev), [(rel, 0)], max_bytes=1000))
    batches = [b for r in rounds for b in r]
    assert len(rounds) > 5 and all(len(r) == 1 for r in rounds)  # ~450 KB
    assert _offsets(batches) == starts
    assert batches[-1].end_offset == last_end and batches[-1].pending_bytes == len(data) - last_end
    assert [b.start_offset for b in batches[1:]] == [b.end_offset for b in batches[:-1]]

    # From an offset, with a stop offset: no round starts at or past the stop (the last one may
    # return lines beyond it, as much as one read holds), and lines come once, in order.
    mid, stop = starts[100], starts[250] - 1
    got = [b for r in _core.Scanner(str(ev), [(rel, mid, stop)], max_bytes=1) for b in r]
    assert len(got) > 1 and all(b.start_offset < stop for b in got)
    assert got[-1].end_offset >= stop
    k = starts.index(got[-1].end_offset) if got[-1].end_offset < last_end else len(starts)
    assert _offsets(got) == starts[100:k]


def test_width_errors_and_pending(root: Path, tmp_path: Path) -> None:
    part = _write(root, 5)
    ev = root / "events"
    rel = part.relative_to(ev).as_posix()
    fifo = part.with_name("part-000002.jsonl")
    os.mkfifo(fifo)
    starts = _line_starts(part.read_bytes())
    sc = _core.Scanner(str(ev), [(rel, 0), (fifo.relative_to(ev).as_posix(), 0)], width=1)
    assert sc.pending == [(rel, 0), (fifo.relative_to(ev).as_posix(), 0)]
    first = next(sc)  # width 1: one file per round
    assert [b.file for b in first] == [rel] and _offsets(first) == starts
    second = next(sc)  # the FIFO: one batch with the error, then dropped
    assert len(second) == 1 and second[0].error is not None and second[0].num_rows == 0
    assert sc.pending == [] and list(sc) == []


def test_track_ids_tells_whether_the_yielded_ids_are_distinct(root: Path) -> None:
    """`track_ids`: True only when no event id repeats across every round and file the scan
    yielded (a full rebuild then skips its duplicate check); a copied line in another file,
    read in a later round, makes it False; untracked, None."""
    part = _write(root, 40)
    ev = root / "events"
    rel = part.relative_to(ev).as_posix()
    lines = part.read_bytes().splitlines(keepends=True)
    copy = part.with_name("part-000002.jsonl")
    copy.write_bytes(lines[0] + lines[1])  # two valid lines: ids already in part-000001
    other = part.with_name("part-000003.jsonl")
    other.write_bytes(b"")

    def scan(files: list[tuple[str, int]], **kw: object) -> _core.Scanner:
        sc = _core.Scanner(str(ev), files, max_bytes=1000, width=1, **kw)  # type: ignore[arg-type]
        rows = sum(b.num_rows for r in sc for b in r)
        assert rows > 0
        return sc

    assert scan([(rel, 0)], track_ids=True).ids_distinct is True
    copy_rel = copy.relative_to(ev).as_posix()
    assert scan([(rel, 0), (copy_rel, 0)], track_ids=True).ids_distinct is False
    assert scan([(copy_rel, 0), (rel, 0)], track_ids=True).ids_distinct is False
    assert scan([(rel, 0), (copy_rel, 0)]).ids_distinct is None
    # The same id twice within one batch.
    other.write_bytes(lines[5] + lines[5])
    other_rel = other.relative_to(ev).as_posix()
    assert scan([(other_rel, 0)], track_ids=True).ids_distinct is False

"""Preallocated parts (issue 15, durable speed): a writer keeps zeros written ahead of a part's
data so an fdatasync commits no file size. Every reader treats the trailing run of NUL bytes as
not yet written (docs/format.md): after a SIGKILL, while a writer races the reader, in
`verify`, the index and the shipper; an old part without zeros still reads and is adopted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ledgerx
from ledgerx import _core
from ledgerx.index import build_index
from ledgerx.index.scan import list_part_files
from ledgerx.index.verify import index_status, verify

from logcheck import check_log, expected_index

CHILD = r"""
import sys, ledgerx
led = ledgerx.open(sys.argv[1], durability=sys.argv[2])
i = 0
while True:
    led.emit("trial.recorded", {"trial_id": i, "params": {"a": i}, "metrics": {"m": 0.5}},
             run_id="r")
    print(i, flush=True)
    i += 1
"""


def _writer(root: Path, mode: str = "fsync") -> subprocess.Popen[str]:
    ledgerx.open(root).close()
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), mode], stdout=subprocess.PIPE, text=True
    )


def _kill_after(p: subprocess.Popen[str], n: int) -> list[int]:
    """Read n acknowledgments, SIGKILL the writer; the acknowledged trial ids."""
    assert p.stdout is not None
    acked = [int(p.stdout.readline()) for _ in range(n)]
    os.kill(p.pid, signal.SIGKILL)
    out, _ = p.communicate()
    acked += [int(x) for x in out.split("\n")[:-1]]  # the last one may be cut by the kill
    return acked


def _parts(root: Path) -> list[Path]:
    return sorted((root / "events").glob("day=*/part-*.jsonl"))


def _trials(root: Path) -> list[int]:
    r = ledgerx.Reader(root)
    try:
        q = "SELECT CAST(data->>'trial_id' AS BIGINT) AS t FROM events ORDER BY t"
        return [x[0] for x in r.sql(q).fetchall()]
    finally:
        r.close()


def test_a_zero_tail_left_by_sigkill_is_read_as_unwritten(root: Path) -> None:
    acked = _kill_after(_writer(root), 50)
    (part,) = _parts(root)
    raw = part.read_bytes()
    data = raw.rstrip(b"\0")
    assert len(raw) - len(data) > 100_000, "the killed writer left its zero tail"
    assert data.endswith(b"\n")
    # The independent reader takes the zeros for unwritten space, not a torn line.
    on_disk = sorted(e["data"]["trial_id"] for e in check_log(root).events)
    assert set(acked) <= set(on_disk) and on_disk == list(range(len(on_disk)))
    assert list_part_files(root / "events")[0][2] == len(data)
    rep = verify(root)
    assert rep.ok, rep.problems
    build_index(root)
    assert _trials(root) == on_disk
    st = index_status(root)
    assert (st["lag_bytes"], st["lag_events"]) == (0, 0)
    # Crash recovery: the next writer adopts the part, cuts the zeros (nothing quarantined) and
    # writes right after the last line.
    with ledgerx.open(root, durability="fsync") as led:
        led.emit("trial.recorded", {"trial_id": 10_000, "params": {}, "metrics": {}}, run_id="r")
    assert _parts(root) == [part]
    after = part.read_bytes()
    assert after.startswith(data) and after.count(b"\n") == data.count(b"\n") + 1
    assert b"\0" not in after, "a closed part ends with its last line"
    assert not (root / "events" / "_quarantine").exists()
    assert check_log(root).events[-1]["data"]["trial_id"] == 10_000


def test_a_reader_racing_the_writer_never_sees_the_zeros(root: Path) -> None:
    p = _writer(root)
    assert p.stdout is not None
    p.stdout.readline()
    deadline, rounds, rows = time.monotonic() + 3.0, 0, 0
    try:
        while time.monotonic() < deadline:
            for rel, _day, size in list_part_files(root / "events"):
                with open(root / "events" / rel, "rb") as f:
                    assert f.read(size).find(b"\0") < 0, f"{rel}: listed size covers zeros"
                for (b,) in _core.Scanner(str(root / "events"), [(rel, 0, size)]):
                    assert not b.bad_lines, b.bad_lines
                    rows += b.num_rows
                    with open(root / "events" / rel, "rb") as f:
                        f.seek(b.end_offset)
                        rest = f.read(b.file_size - b.end_offset)
                    assert b"\0" not in rest, "the scanner's file end covers zeros"
            build_index(root)
            rounds += 1
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.communicate()
    assert rounds >= 3 and rows > 0
    r = ledgerx.Reader(root)
    try:
        assert r.sql("SELECT count(*) FROM _bad_lines").fetchall() == [(0,)]
    finally:
        r.close()


@pytest.mark.parametrize("mode", ["fsync", "group"])
def test_an_old_part_without_zeros_still_reads_and_is_adopted(root: Path, mode: str) -> None:
    """A part as writers before preallocation left it (ends with its last line): read as it is,
    adopted, appended to after its last line; the result equals the independent reader."""
    with ledgerx.open(root, durability=mode) as led:
        for i in range(5):
            led.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r")
    (part,) = _parts(root)
    old = part.read_bytes()
    assert old.endswith(b"\n") and b"\0" not in old
    build_index(root)
    assert _trials(root) == list(range(5))
    with ledgerx.open(root, durability=mode) as led:
        led.emit("trial.recorded", {"trial_id": 5, "params": {}, "metrics": {}}, run_id="r")
        led.flush()
        live = part.read_bytes()
        assert live.startswith(old) and live.rstrip(b"\0").count(b"\n") == 6
    assert part.read_bytes() == live.rstrip(b"\0")
    build_index(root)
    assert _trials(root) == list(range(6))
    assert [e["event_id"] for e in expected_index(root)] == [
        e["event_id"] for e in check_log(root).events
    ]


def test_fdatasync_in_fsync_mode_finds_the_size_already_covering_the_line(root: Path) -> None:
    """The lever itself: between appends the part's size does not move (the line lands in
    zeros already written inside it), so an fdatasync has no size to commit; it moves once per
    `PREALLOC_BYTES / 2` of data at most."""
    sizes = []
    with ledgerx.open(root, durability="fsync") as led:
        for i in range(300):
            led.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r")
            sizes.append(_parts(root)[0].stat().st_size)
    assert len(set(sizes)) == 1, f"the size moved {len(set(sizes)) - 1} times in 300 appends"


def test_shipping_never_sends_the_zero_tail(root: Path) -> None:
    pytest.importorskip("obstore")
    pytest.importorskip("moto")
    from s3_support import AWS_ENV, check_chains, moto_server, new_bucket, objects

    def ship() -> None:
        p = subprocess.run(
            [sys.executable, "-m", "ledgerx", "ship", "--root", str(root), "--to", url,
             "--endpoint-url", endpoint],
            capture_output=True, text=True, timeout=120, env={**os.environ, **AWS_ENV},
        )  # fmt: skip
        assert p.returncode == 0, p.stderr

    with moto_server() as endpoint:
        new_bucket(endpoint, "prealloc-b")
        url = "s3://prealloc-b/fleet"
        led = ledgerx.open(root, durability="fsync")
        for i in range(20):
            led.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r")
        (part,) = _parts(root)
        assert part.read_bytes().endswith(b"\0"), "the live part has its zero tail"
        ship()
        rid = (root / "ship" / "root-id").read_text().strip()
        first = objects(endpoint, "prealloc-b")
        assert check_chains(first, "fleet", {rid: root}) >= 1
        for i in range(20, 25):
            led.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r")
        ship()
        led.close()
        ship()
        after = objects(endpoint, "prealloc-b")
        assert check_chains(after, "fleet", {rid: root}) == 2
        assert all(b"\0" not in v for v in after.values())
        assert b"".join(after[k] for k in sorted(after)) == part.read_bytes()


@pytest.mark.parametrize("mode", ["group", "os"])
def test_group_and_os_mode_parts_keep_no_zeros(root: Path, mode: str) -> None:
    """Zeros ahead pay only where each append has its own fdatasync: a group or os mode part
    would write them back for nothing, so it grows with its data."""
    with ledgerx.open(root, durability=mode) as led:
        for i in range(50):
            led.emit("trial.recorded", {"trial_id": i, "params": {}, "metrics": {}}, run_id="r")
            led.flush()
            raw = _parts(root)[0].read_bytes()
            assert raw.endswith(b"\n") and b"\0" not in raw


def test_data_end_skips_a_sparse_zero_tail_unread(tmp_path: Path) -> None:
    """A part of 16 bytes and a 2 GiB hole (no disk used): its data ends after the 16 bytes,
    found without reading the hole (SEEK_DATA), in the Python reader as in the scanner."""
    from ledgerx.fsutil import data_end

    ev = tmp_path / "events"
    (ev / "day=2026-01-01").mkdir(parents=True)
    rel = "day=2026-01-01/part-000001.jsonl"
    with open(ev / rel, "wb") as f:
        f.write(b'{"event_id":"x",')
        f.truncate(2 << 30)
    t = time.monotonic()
    assert data_end(ev / rel, 2 << 30) == 16
    batches = [b for bs in _core.Scanner(str(ev), [(rel, 0)]) for b in bs]
    assert (batches[-1].end_offset, batches[-1].pending_bytes) == (0, 16)
    assert time.monotonic() - t < 5, "the hole was read"


def test_a_forked_child_leaves_its_parents_zeros_alone(root: Path) -> None:
    """The child drops the parent's writer at the fork (it opens its own): dropping a part
    cuts its zero tail, which only the process that opened it may do — else a parent's line
    written meanwhile could be cut with it."""
    with ledgerx.open(root, durability="fsync") as led:
        led.emit("trial.recorded", {"trial_id": 0, "params": {}, "metrics": {}}, run_id="r")
        (part,) = _parts(root)
        before = part.stat().st_size
        assert before > len(part.read_bytes().rstrip(b"\0")), "the parent's part has zeros"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                led.emit("trial.recorded", {"trial_id": 1, "params": {}, "metrics": {}}, run_id="r")
                led.close()
                code = 0
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0
        assert part.stat().st_size == before, "the child cut the parent's zeros"
        led.emit("trial.recorded", {"trial_id": 2, "params": {}, "metrics": {}}, run_id="r")
    assert sorted(e["data"]["trial_id"] for e in check_log(root).events) == [0, 1, 2]


def test_the_daemon_wakes_for_an_fsync_append_that_leaves_the_size_alone(root: Path) -> None:
    """`ledgerx daemon` wakes when the log grows; an fsync-mode append lands inside the zeros
    (the size stays), so the wake mark follows the part's mtime too: the event is indexed well
    before `--interval`."""
    from ops_support import daemon, wait_for

    from ledgerx.daemon import growth_mark
    from ledgerx.index import IndexPaths
    from ledgerx.index.dbfile import read_state

    def indexed(pos: tuple[str, int]) -> bool:
        runs = IndexPaths.for_root(root).runs
        return runs.exists() and read_state(runs)[0].get(pos[0], (0, 0, 0))[0] > pos[1]

    with ledgerx.open(root, durability="fsync") as led:
        emit = led.emit
        first = emit("trial.recorded", {"trial_id": 0, "params": {}, "metrics": {}}, run_id="r")
        (part,) = _parts(root)
        size, mark = part.stat().st_size, growth_mark(root / "events")
        time.sleep(0.05)  # past a coarse file-time tick
        emit("trial.recorded", {"trial_id": 1, "params": {}, "metrics": {}}, run_id="r")
        assert part.stat().st_size == size and growth_mark(root / "events") != mark
        with daemon(root, "--interval", "120"):
            wait_for(lambda: indexed(first), 60, "a first cycle")
            time.sleep(0.5)
            pos = emit("trial.recorded", {"trial_id": 2, "params": {}, "metrics": {}}, run_id="r")
            assert part.stat().st_size == size, "the append stayed inside the zeros"
            t = time.monotonic()
            wait_for(lambda: indexed(pos), 30, "the new event indexed")
            assert time.monotonic() - t < 30  # far below --interval 120

"""Durability is audited, not assumed: real processes run under strace, and the system calls
show every acknowledged write made durable. A SIGKILL keeps the page cache, so no kill test can
prove an fsync; these audits fail when one is missing (each was checked with the fsync removed).

- group mode: every flush() and every acknowledged batch is followed by an fdatasync of its part;
- index publish: the work file (a fresh file, a copy, or the alternate updated in place) is
  fsynced after its last write and before the rename (or exchange of names) that publishes it,
  and the directory is fsynced after it;
- artifacts: the final name appears only by rename(2) of an fsynced temporary file (never opened
  for writing, never a copy), and the run's folder is fsynced after the rename."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import ledgerx

# -y shows each descriptor's path: fsync(5</x/index/.building-1-runs.duckdb>) = 0
FD_CALL = re.compile(r"^\d+\s+(\w+)\((\d+)<([^>]*)>(.*)$")
# *at() calls name a directory descriptor (shown with its path) or AT_FDCWD before each name.
_AT = r'(?:(?:\d+|AT_FDCWD)(?:<([^>]*)>)?, )?"([^"]+)"'
RENAME = re.compile(r"^\d+\s+rename(?:at2?)?\(" + _AT + ", " + _AT)
COPY_DST = re.compile(r"^, [^,]+, \d+<([^>]*)>")
OPEN = re.compile(r"^\d+\s+open(?:at)?\(" + _AT + r", ([A-Z_|]+)")


def _at(dir_path: str | None, name: str) -> str:
    """The path an *at() call names: relative names are relative to its directory fd."""
    return name if dir_path is None or name.startswith("/") else f"{dir_path}/{name}"


@dataclass
class Call:
    name: str
    path: str
    rest: str = ""
    dst: str = ""
    exchange: bool = False  # renameat2(RENAME_EXCHANGE): the two names swap files


def strace(tmp: Path, code: str, *args: str, trace: str) -> list[Call]:
    """Run `code` in a fresh interpreter under strace -f -y; its calls in order."""
    log = tmp / "strace.log"
    r = subprocess.run(
        ["strace", "-f", "-qq", "-y", "-s", "64", "-o", str(log), "-e", f"trace={trace}"]
        + [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    calls: list[Call] = []
    for line in log.read_text().splitlines():
        if "resumed>" in line:
            continue  # the call was recorded where it started (`<unfinished ...>`)
        if m := RENAME.match(line):
            src, dst = _at(m.group(1), m.group(2)), _at(m.group(3), m.group(4))
            calls.append(Call("rename", src, dst=dst, exchange="RENAME_EXCHANGE" in line))
        elif m := OPEN.match(line):
            calls.append(Call("open", _at(m.group(1), m.group(2)), rest=m.group(3)))
        elif m := FD_CALL.match(line):
            path = m.group(3)
            if m.group(1) == "copy_file_range" and (out := COPY_DST.match(m.group(4))):
                path = out.group(1)  # it writes its second descriptor, reads the first
            calls.append(Call(m.group(1), path, rest=m.group(4)))
    return calls


WRITES = ("write", "pwrite64", "copy_file_range")


class FileStates:
    """Per path: written → reopened → fsynced. A file is durable for its rename only when, after
    its last write, the publisher itself opened it again and fsynced it (the design's
    "temp file, fsync, rename"): an fsync that DuckDB may or may not do while writing does not
    count. With `reopen=False` (a file the publisher writes through its own descriptor, as the
    artifacts do) an fsync after the last write is enough."""

    def __init__(self, reopen: bool = True) -> None:
        self.state: dict[str, int] = {}
        self.reopen = reopen

    def see(self, c: Call) -> None:
        st = self.state.get(c.path)
        if c.name == "rename":  # a file keeps its state under its new name
            moved = self.state.pop(c.path, None)
            if c.exchange and c.dst in self.state:
                self.state[c.path] = self.state.pop(c.dst)
            if moved is not None:
                self.state[c.dst] = moved
        elif c.name in WRITES:
            self.state[c.path] = 0 if self.reopen else 1
        elif c.name == "open" and st == 0:
            self.state[c.path] = 1
        elif c.name in ("fsync", "fdatasync") and st == 1:
            self.state[c.path] = 2

    def durable(self, path: str) -> bool:
        return self.state.get(path) == 2


GROUP_CHILD = """
import os, sys, ledgerx
led = ledgerx.open(sys.argv[1], durability="group", commit_interval_ms=1)
for burst in range(8):
    for i in range(50):
        led.emit("run.heartbeat", {"i": i}, run_id="audit")
    led.flush()
    os.write(1, b"ACK\\n")
stats = led.commit_stats()
led.close()
os.write(1, b"BATCHES %d\\n" % stats["batches"])
"""


@dataclass
class Acks:
    """What an ACK-printing child's calls show: acknowledgments, those made while some part
    held written but not yet fdatasynced bytes, fdatasyncs of written data, the parts still
    dirty at the end and the child's BATCHES count."""

    acks: int = 0
    unsynced: int = 0
    syncs: int = 0
    dirty: set[str] | None = None
    batches: int | None = None
    parts: int = 0


def _acks(calls: list[Call]) -> Acks:
    a, dirty, parts = Acks(), set(), set()
    for c in calls:
        if c.name == "write" and '"ACK\\n"' in c.rest:
            a.acks += 1
            a.unsynced += bool(dirty)
        elif c.name == "write" and "BATCHES" in c.rest:
            a.batches = int(re.search(r"BATCHES (\d+)", c.rest).group(1))  # type: ignore[union-attr]
        elif c.name == "write" and c.path.endswith(".jsonl"):
            dirty.add(c.path)
            parts.add(c.path)
        elif c.name in ("fdatasync", "fsync") and c.path.endswith(".jsonl"):
            a.syncs += c.path in dirty
            dirty.discard(c.path)
    a.dirty, a.parts = dirty, len(parts)
    return a


def test_group_mode_fdatasyncs_every_batch_and_every_flush(root: Path, tmp_path: Path) -> None:
    ledgerx.open(root).close()
    a = _acks(strace(tmp_path, GROUP_CHILD, str(root), trace="write,fdatasync,fsync"))
    assert a.acks == 8 and a.unsynced == 0, "flush() returned before its part was fdatasynced"
    assert not a.dirty, "events written at close but never fdatasynced"
    # Each acknowledged batch (the writer's own count) had an fdatasync of written data.
    assert a.batches is not None and a.batches >= 8
    assert a.syncs == a.batches


# os mode across rotations: 40 events of ~150 bytes into 1 KB parts between two flushes.
OS_CHILD = """
import os, sys, ledgerx
led = ledgerx.open(sys.argv[1], durability="os", max_part_bytes=1024)
for burst in range(3):
    for i in range(40):
        led.emit("run.heartbeat", {"i": i, "pad": "x" * 40}, run_id="audit")
    led.flush()
    os.write(1, b"ACK\\n")
led.close()
"""


def test_os_mode_flush_fdatasyncs_every_part_written_since_the_last_one(
    root: Path, tmp_path: Path
) -> None:
    """flush() in os mode promises every event emitted so far is on disk, also those in parts
    the writer rotated away from since the last flush (not only the current part)."""
    ledgerx.open(root).close()
    a = _acks(strace(tmp_path, OS_CHILD, str(root), trace="write,fdatasync,fsync"))
    assert a.parts >= 6, f"the child did not rotate: {a.parts} parts"
    assert a.acks == 3 and a.unsynced == 0, "flush() returned with a part written, not synced"
    assert not a.dirty, "events written before close but never fdatasynced"


PUBLISH_CHILD = """
import sys
from index_support import write_sweep, T0, DAY_US
from ledgerx.index import build_index
root = sys.argv[1]
write_sweep(root, runs=2, trials=5, seed=1)
assert build_index(root).mode == "full"
write_sweep(root, runs=1, trials=3, seed=2, day_us=T0 + DAY_US)
assert build_index(root).mode == "incremental"  # on a copy of the published file
write_sweep(root, runs=1, trials=3, seed=3, day_us=T0 + DAY_US)
assert build_index(root).mode == "incremental"  # the alternate, updated in place
"""


def test_index_publish_fsyncs_the_work_file_then_the_directory(root: Path, tmp_path: Path) -> None:
    sys_path = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {sys_path!r})\n" + PUBLISH_CHILD
    calls = strace(
        tmp_path,
        code,
        str(root),
        trace="/^rename,/^open,fsync,fdatasync,write,pwrite64,copy_file_range",
    )
    index = str((root / "index").resolve())
    files = FileStates()
    published: list[str] = []
    swapped: list[str] = []
    need_dir_sync: list[str] = []
    names = ("alerts.duckdb", "catalog.duckdb", "runs.duckdb")
    for c in calls:
        # The published state beside runs.duckdb (`dbfile.state_file`) is a cache that a round
        # uses only while the file's identity matches: renamed into place, never fsynced.
        if c.name == "rename" and c.dst.endswith(".state.json"):
            continue
        if c.name == "rename" and c.dst.startswith(index + "/"):
            assert files.durable(c.path), f"{c.path} renamed over {c.dst} without its fsync"
            if Path(c.dst).name in names:
                published.append(Path(c.dst).name)
            if c.exchange:
                swapped.append(Path(c.path).name)
            need_dir_sync.append(c.dst)
        files.see(c)
        if c.name in ("fsync", "fdatasync") and c.path == index:
            need_dir_sync.clear()
    assert sorted(published) == sorted(names * 3)
    # the copy, then the alternate updated in place, swapped with the published file
    assert [n.startswith(".building-") for n in swapped] == [True, False]
    assert swapped[1] == ".runs.duckdb.alt"
    assert not need_dir_sync, f"no directory fsync after publishing {need_dir_sync}"


ARTIFACT_CHILD = """
import sys, pyarrow as pa, ledgerx
led = ledgerx.open(sys.argv[1], durability="fsync")
with led.run(run_kind="t", config={"a": 1}, data_fingerprint="f", run_id="run-a") as run:
    run.artifacts.write_table("trades", pa.table({"i": list(range(100))}))
    run.artifacts.write_json("extra", {"x": 1})
    run.artifacts.write_summary()
led.close()
"""


def test_artifacts_appear_only_by_rename_of_an_fsynced_file(root: Path, tmp_path: Path) -> None:
    calls = strace(
        tmp_path,
        ARTIFACT_CHILD,
        str(root),
        trace="/^rename,/^open,fsync,fdatasync,write,pwrite64,copy_file_range",
    )
    folder = str((root / "artifacts" / "runs" / "run-a").resolve())
    finals = {folder + "/" + n for n in ("trades.parquet", "extra.json", "summary.json")}
    files = FileStates(reopen=False)
    renamed: list[str] = []
    need_dir_sync: list[str] = []
    for c in calls:
        if c.name == "open" and c.path in finals:
            assert "O_RDONLY" in c.rest and "O_CREAT" not in c.rest, f"{c.path} opened to write"
        elif c.name in WRITES:
            assert c.path not in finals, f"bytes written straight into {c.path}"
        if c.name in ("fsync", "fdatasync") and c.path == folder:
            need_dir_sync.clear()
        elif c.name == "rename" and c.dst in finals:
            assert files.durable(c.path), f"{c.path} renamed to {c.dst} before its fsync"
            assert Path(c.path).parent == Path(c.dst).parent
            renamed.append(c.dst)
            need_dir_sync.append(c.dst)
        files.see(c)
    assert sorted(renamed) == sorted(finals)
    assert not need_dir_sync, f"no fsync of the run's folder after {need_dir_sync}"


def test_side_files_are_fsynced_once_by_the_publisher_only(root: Path, tmp_path: Path) -> None:
    """DuckDB writes the side files with its fsyncs off (`fsync_mode` NONE: a new private file
    that the publisher fsyncs before its rename), and only them: the runs file that a round
    updates keeps DuckDB's own fsyncs (WAL, checkpoint)."""
    sys_path = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {sys_path!r})\n" + PUBLISH_CHILD
    calls = strace(tmp_path, code, str(root), trace="fsync,fdatasync")
    syncs: dict[str, int] = {}
    for c in calls:
        syncs[Path(c.path).name] = syncs.get(Path(c.path).name, 0) + 1
    sides = {n: k for n, k in syncs.items() if n.startswith(".building-") and "-runs" not in n}
    assert sorted(sides) == sorted(
        f".building-{pid}-{name}.duckdb"
        for pid in {n.split("-")[1] for n in sides}
        for name in ("alerts", "catalog")
    ), syncs
    assert set(sides.values()) == {3}, syncs  # three rounds, one fsync each: the publisher's
    assert syncs.get(".runs.duckdb.alt", 0) > 1, syncs  # DuckDB's checkpoint + the publisher's

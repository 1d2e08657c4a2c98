"""Retention (docs/ops.md): closed days of the log move to `archive/events/day=D/` as Parquet.

Layout: one Parquet file per archived part, `archive/events/day=D/part-NNNNNN.parquet`, with
the columns of the index's `events` table that come from the log (event_id, event_type,
schema_version, ts, run_id, writer, seq, data, file, offset, line_bytes; `file` and `offset`
are the original JSONL position). The file's key-value metadata `ledgerx.archive` holds what
the indexer's checkpoint needs: the indexed end offset, the part's size, its event count, the
hash of its event ids and its bad lines (offset, length, reason). So the indexer can treat an
archived part exactly as the JSONL it replaced: `ledgerx rebuild --full-rebuild` after retention
gives the same index, and an incremental round picks up whatever of an archived part it had not
indexed yet (`pending_archived` / `load_archived` below).

Bad lines and an unterminated tail of an archived part are not lost: their raw bytes are copied
to `events/_quarantine/` (with a `.reason.json`, the writer's format) before the JSONL is removed,
and they count in the daemon's quarantined bytes.

A day is archived only when it is older than the policy (never today, UTC) and every part's
exclusive flock can be taken (a live writer holds its part's flock); the flocks are held until
the JSONL is gone, so no writer can adopt a part meanwhile. The Parquet file is written under a
temporary name, fsynced, read back and verified (row count and SHA-256 of the sorted event ids
against the scan of the JSONL), renamed and its folder fsynced; only then, holding the index
lock so no indexer round is between listing and scanning that file, is the JSONL unlinked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerx import _core
from ledgerx._lazy import LazyModule
from ledgerx.config import archive_events_dir, events_dir, resolve_root
from ledgerx.errors import ConfigError, IndexBusyError, LedgerError
from ledgerx.fsutil import data_end, ensure_dir, fsync_path

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:  # imported on first use: the indexer imports this module on every round
    pa = LazyModule("pyarrow")
    pq = LazyModule("pyarrow.parquet")

ARCHIVE_FORMAT = 1
META_KEY = b"ledgerx.archive"
SCAN_CHUNK = 64 << 20
DAY_RE = re.compile(r"day=(\d{4}-\d{2}-\d{2})")
PART_RE = re.compile(r"part-\d{6}\.jsonl")


@cache
def archive_schema() -> pa.Schema:
    """The columns of an archived part (`ARCHIVE_SCHEMA`)."""
    return pa.schema(
        [
            ("event_id", pa.string()),
            ("event_type", pa.string()),
            ("schema_version", pa.int32()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("run_id", pa.string()),
            ("writer", pa.string()),
            ("seq", pa.int64()),
            ("data", pa.string()),
            ("file", pa.string()),
            ("offset", pa.int64()),
            ("line_bytes", pa.int32()),
        ]
    )


def __getattr__(name: str) -> Any:
    if name == "ARCHIVE_SCHEMA":  # built on first use, like the pyarrow it needs
        return archive_schema()
    raise AttributeError(f"module 'ledgerx.retention' has no attribute {name!r}")


# --- reading the archive (used by the indexer) ---------------------------------------------


@dataclass
class ArchivedPart:
    """One archived part: `rel` is its original path relative to events/."""

    rel: str
    day: str
    path: Path
    offset: int  # end of the last complete line: the indexer's checkpoint for the whole part
    size: int
    events: int
    event_ids_sha256: str
    bad_lines: list[tuple[int, int, str]] = field(default_factory=list)
    # Offsets (and line lengths) of the archived rows that had no `crc`: a strict rebuild
    # refuses them as it refuses such lines in JSONL.
    no_crc: list[tuple[int, int]] = field(default_factory=list)


def read_archive_meta(path: Path) -> ArchivedPart:
    md = pq.read_schema(path).metadata or {}
    if META_KEY not in md:
        raise LedgerError(f"{path}: not a ledgerx archive (no {META_KEY.decode()} metadata)")
    m = json.loads(md[META_KEY])
    return ArchivedPart(
        rel=m["file"],
        day=m["day"],
        path=path,
        offset=int(m["offset"]),
        size=int(m["size"]),
        events=int(m["events"]),
        event_ids_sha256=m["event_ids_sha256"],
        bad_lines=[(int(o), int(n), str(r)) for o, n, r in m["bad_lines"]],
        no_crc=[(int(o), int(n)) for o, n in m.get("no_crc", [])],
    )


def list_archived(root: Path, since_date: str | None = None) -> list[ArchivedPart]:
    """Every archived part (metadata only), sorted by original path."""
    adir = archive_events_dir(root)
    out: list[ArchivedPart] = []
    if not adir.is_dir():
        return out
    for d in sorted(os.scandir(adir), key=lambda e: e.name):
        m = DAY_RE.fullmatch(d.name)
        if not m or not d.is_dir(follow_symlinks=False):
            continue
        if since_date is not None and m.group(1) < since_date:
            continue
        for f in sorted(os.scandir(d.path), key=lambda e: e.name):
            if f.name.endswith(".parquet") and not f.name.startswith("."):
                out.append(read_archive_meta(Path(f.path)))
    return sorted(out, key=lambda p: p.rel)


@dataclass
class PendingArchived:
    part: ArchivedPart
    start: int  # the index's checkpoint for this part
    old_events: int
    old_bad: int


def pending_archived(
    root: Path,
    ckpt: dict[str, tuple[int, int, int]],
    since_date: str | None,
    present: set[str],
) -> list[PendingArchived]:
    """Archived parts with bytes past the index's checkpoint. A part whose JSONL is still in
    `present` (retention stopped between rename and unlink) is read from the JSONL instead."""
    out = []
    for p in list_archived(root, since_date):
        if p.rel in present:
            continue
        off, n_ev, n_bad = ckpt.get(p.rel, (0, 0, 0))
        if off < p.offset:
            out.append(PendingArchived(p, off, n_ev, n_bad))
    return out


def load_archived(
    con: Any,
    pending: list[PendingArchived],
    gen: int,
    upcaster: Any,
    upcast_errors: list[str],
    strict: bool = False,
) -> tuple[list[tuple[PendingArchived, int, int]], list[tuple[str, int, int, str]], int, int]:
    """Insert the rows of `pending` past their checkpoints into `events` (round `gen`), with
    the same upcast columns as scanned rows; `strict` leaves out the rows that had no `crc`
    (reported as bad lines, as a strict scan of the JSONL would). Returns ([(pending, events,
    bad)], bad lines as (file, offset, len, reason), rows, bytes)."""
    from ledgerx.index.upcast import add_upcast_columns

    newest = upcaster.newest_versions() if upcaster is not None else {}
    done: list[tuple[PendingArchived, int, int]] = []
    bad: list[tuple[str, int, int, str]] = []
    rows = nbytes = 0
    if pending:  # DuckDB scans the archive's Arrow batches (`register`)
        from ledgerx.index.engine import arrow_scans

        arrow_scans()
    for pa_ in pending:
        p = pa_.part
        pf = pq.ParquetFile(p.path)
        n = 0
        refused = {o for o, _ in p.no_crc} if strict else set()
        for batch in pf.iter_batches(batch_size=65536):
            import pyarrow.compute as pc

            if pa_.start:
                batch = batch.filter(pc.greater_equal(batch.column("offset"), pa_.start))
            if refused:
                keep = pc.invert(pc.is_in(batch.column("offset"), pa.array(sorted(refused))))
                batch = batch.filter(keep)
            if not batch.num_rows:
                continue
            rb = add_upcast_columns(batch, upcaster, newest, upcast_errors)
            shape, tint, tnum = _shapes(rb)
            tb = pa.Table.from_batches([rb]).append_column("shape", shape)
            con.register("_arch", tb.append_column("tint", tint).append_column("tnum", tnum))
            con.execute(
                """INSERT INTO events
                   SELECT event_id, event_type, schema_version, ts, run_id, writer, seq, data,
                          file, "offset", line_bytes, ?, data_upcast, upcast_version, shape,
                          tint, tnum
                   FROM _arch""",
                [gen],
            )
            con.unregister("_arch")
            n += rb.num_rows
        b = [(p.rel, o, ln, r) for o, ln, r in p.bad_lines if o >= pa_.start]
        if strict:
            b += [(p.rel, o, ln, "missing crc (strict mode)") for o, ln in p.no_crc]
            b = sorted(x for x in b if x[1] >= pa_.start)
        bad.extend(b)
        done.append((pa_, n, len(b)))
        rows += n
        nbytes += p.offset - pa_.start
    return done, bad, rows, nbytes


def _shapes(rb: pa.RecordBatch) -> tuple[pa.Array, pa.Array, pa.Array]:
    """`events.shape`, `tint` and `tnum` of archived rows, as the scanner gives them for the
    same line: for trial events not upcast, else null."""
    import pyarrow.compute as pc

    mask = pc.and_(
        pc.equal(rb.column("event_type"), "trial.recorded"), pc.is_null(rb.column("data_upcast"))
    )
    idx = pc.indices_nonzero(mask).to_pylist()
    out: list[tuple[Any, Any, Any]] = [(None, None, None)] * rb.num_rows
    if idx:
        data = rb.column("data")
        for i, got in zip(idx, _core.trial_shapes([data[i].as_py() for i in idx]), strict=True):
            out[i] = got
    shape, tint, tnum = zip(*out, strict=True) if out else ((), (), ())
    return (
        pa.array(shape, pa.string()),
        pa.array(tint, pa.list_(pa.int64())),
        pa.array(tnum, pa.list_(pa.float64())),
    )


def archived_log_rows(root: Path, present: set[str]) -> Iterator[pa.Table]:
    """For `ledgerx verify`: the envelope, data and position of every event of the archived
    parts whose JSONL is gone (the columns of `ARCHIVE_SCHEMA` plus `day`), one table per part,
    after checking each against its recorded count and event id hash (a mismatch raises
    LedgerError)."""
    for p in list_archived(root):
        if p.rel in present:
            continue
        t = pq.read_table(p.path, columns=archive_schema().names)
        if t.num_rows != p.events or ids_hash(t.column("event_id").to_pylist()) != (
            p.event_ids_sha256
        ):
            raise LedgerError(f"{p.path}: archived events do not match the recorded count/hash")
        yield t.append_column("day", pa.repeat(pa.scalar(p.day, pa.string()), t.num_rows))


# --- retention ------------------------------------------------------------------------------


def parse_age(text: str) -> int:
    """`90d` (or `90`) → 90 days."""
    m = re.fullmatch(r"\s*(\d+)\s*d?\s*", str(text))
    if not m:
        raise ConfigError(f"--archive-older-than must be a number of days like 90d, got {text!r}")
    return int(m.group(1))


@dataclass
class DayResult:
    day: str
    action: str  # archived, would_archive, skipped
    reason: str = ""
    parts: int = 0
    events: int = 0
    bad_lines: int = 0
    bytes: int = 0  # JSONL bytes
    archive_bytes: int = 0
    quarantined_bytes: int = 0
    event_ids_sha256: str = ""


@dataclass
class RetentionReport:
    root: str
    older_than_days: int
    cutoff: str  # days strictly before this date are eligible
    dry_run: bool
    days: list[DayResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ids_hash(ids: list[str]) -> str:
    """SHA-256 of the sorted event ids, one per line: order-free, so the log and the archive
    (or the index) can be compared."""
    import hashlib  # here: OpenSSL's load costs every indexing process (which never calls this)

    h = hashlib.sha256()
    for i in sorted(ids):
        h.update(i.encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass
class _Scanned:
    rel: str
    day: str
    size: int
    end: int
    table: pa.Table
    bad: list[tuple[int, int, str]]
    no_crc: list[tuple[int, int]] = field(default_factory=list)


def _scan_part(ev: Path, rel: str, day: str, size: int) -> _Scanned:
    """The whole part through the Rust scanner (crc checked, bad lines reported)."""
    batches: list[pa.RecordBatch] = []
    bad: list[tuple[int, int, str]] = []
    end = 0
    # Up to the listed size: an unterminated tail stays pending (it goes to quarantine).
    for (b,) in _core.Scanner(str(ev), [(rel, 0, size)], strict=False, max_bytes=SCAN_CHUNK):
        end = b.end_offset
        bad.extend((int(o), int(n), str(r)) for o, n, r in b.bad_lines)
        if b.num_rows:
            rb = pa.record_batch(b)
            n = rb.num_rows
            cols = {name: rb.column(name) for name in rb.schema.names}
            cols["file"] = pa.repeat(pa.scalar(rel, pa.string()), n)
            batches.append(
                pa.RecordBatch.from_arrays(
                    [cols[f.name].cast(f.type) for f in archive_schema()],
                    schema=archive_schema(),
                )
            )
    table = pa.Table.from_batches(batches, schema=archive_schema())
    return _Scanned(rel, day, size, end, table, bad, _rows_without_crc(ev, rel, end, table))


def _rows_without_crc(ev: Path, rel: str, end: int, table: pa.Table) -> list[tuple[int, int]]:
    """(offset, line_bytes) of the rows a strict scan refuses (lines without `crc`): the rows
    of the lenient scan whose offset the strict scan does not return."""
    strict: set[int] = set()
    for (b,) in _core.Scanner(str(ev), [(rel, 0, end)], strict=True, max_bytes=SCAN_CHUNK):
        if b.num_rows:
            strict.update(pa.record_batch(b).column("offset").to_pylist())
    offs = table.column("offset").to_pylist()
    lens = table.column("line_bytes").to_pylist()
    return [(o, n) for o, n in zip(offs, lens, strict=True) if o not in strict]


def _write_archive(adir: Path, s: _Scanned) -> tuple[Path, int, str]:
    """Write, fsync, verify and publish the Parquet file of one part. Returns (path, bytes,
    event id hash)."""
    name = Path(s.rel).name.removesuffix(".jsonl") + ".parquet"
    final = adir / name
    import secrets  # here: not imported by an indexing process, which never writes archives

    tmp = adir / f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    want_hash = ids_hash(s.table.column("event_id").to_pylist())
    meta = {
        "format": ARCHIVE_FORMAT,
        "file": s.rel,
        "day": s.day,
        "offset": s.end,
        "size": s.size,
        "events": s.table.num_rows,
        "event_ids_sha256": want_hash,
        "bad_lines": [list(b) for b in s.bad],
        "no_crc": [list(x) for x in s.no_crc],
        "archived_at": datetime.now(timezone.utc).isoformat(),
    }
    table = s.table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    try:
        pq.write_table(table, tmp, compression="zstd")
        fsync_path(tmp)
        # Verify what is on disk, not what we meant to write.
        back = pq.read_table(tmp)
        got = read_archive_meta(tmp)
        if back.num_rows != s.table.num_rows or got.events != s.table.num_rows:
            raise LedgerError(f"{tmp}: verify failed: {back.num_rows} rows, want {got.events}")
        if ids_hash(back.column("event_id").to_pylist()) != want_hash:
            raise LedgerError(f"{tmp}: verify failed: event id hash differs from {s.rel}")
        if back.schema.remove_metadata() != archive_schema():
            raise LedgerError(f"{tmp}: verify failed: unexpected columns {back.schema.names}")
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_path(adir)
    return final, final.stat().st_size, want_hash


def _quarantine(ev: Path, rel: str, offset: int, data: bytes, reason: str) -> None:
    """The writer's quarantine (the Rust core's): `<rel>@<offset>.<us>.bin` + `.reason.json`."""
    _core.quarantine(str(ev), rel, offset, data, reason)


def _save_leftovers(ev: Path, s: _Scanned) -> int:
    """Copy the bad lines and the unterminated tail of a part to quarantine. Returns bytes."""
    total = 0
    with open(ev / s.rel, "rb") as f:
        for off, n, why in s.bad:
            data = os.pread(f.fileno(), n, off)
            _quarantine(ev, s.rel, off, data, f"retention: bad line of an archived part: {why}")
            total += len(data)
        if s.end < s.size:
            data = os.pread(f.fileno(), s.size - s.end, s.end)
            _quarantine(ev, s.rel, s.end, data, "retention: unterminated tail of an archived part")
            total += len(data)
    return total


@contextlib.contextmanager
def _part_locks(paths: list[Path]) -> Iterator[bool]:
    """Exclusive non-blocking flocks on every part; yields False when any is held (a live
    writer). Held until the block ends, so no writer adopts a part while it is archived."""
    fds: list[int] = []
    ok = True
    try:
        for p in paths:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                ok = False
                break
        yield ok
    finally:
        for fd in fds:
            os.close(fd)


@contextlib.contextmanager
def _index_lock_wait(root: Path, timeout: float) -> Iterator[None]:
    """The indexer's lock, waiting for a running round (e.g. the daemon's) to finish."""
    from ledgerx.index.publish import IndexPaths, index_lock

    paths = IndexPaths.for_root(root)
    deadline = time.monotonic() + timeout
    while True:
        cm = index_lock(paths)
        try:
            cm.__enter__()
        except IndexBusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
            continue
        break
    try:
        yield
    finally:
        cm.__exit__(None, None, None)


def closed_days(root: Path, older_than_days: int, today: date | None = None) -> list[str]:
    """Days of events/ strictly before today - older_than_days (never today)."""
    today = today or datetime.now(timezone.utc).date()
    cutoff = (today - timedelta(days=max(0, older_than_days))).isoformat()
    ev = events_dir(root)
    if not ev.is_dir():
        return []
    days = []
    for d in sorted(os.scandir(ev), key=lambda e: e.name):
        m = DAY_RE.fullmatch(d.name)
        if m and d.is_dir(follow_symlinks=False) and m.group(1) < cutoff:
            days.append(m.group(1))
    return days


def run_retention(
    root: str | os.PathLike[str] | None = None,
    *,
    older_than_days: int = 90,
    dry_run: bool = False,
    today: date | None = None,
    lock_timeout: float = 120.0,
) -> RetentionReport:
    """Archive every closed day older than the policy. See the module docstring."""
    if older_than_days < 0:
        raise ConfigError("--archive-older-than must be >= 0 days")
    rootp = resolve_root(root)
    ev = events_dir(rootp)
    today = today or datetime.now(timezone.utc).date()
    cutoff = (today - timedelta(days=older_than_days)).isoformat()
    rep = RetentionReport(str(rootp), older_than_days, cutoff, dry_run)
    for day in closed_days(rootp, older_than_days, today):
        rep.days.append(_archive_day(rootp, ev, day, dry_run, lock_timeout))
    return rep


def _archive_day(root: Path, ev: Path, day: str, dry_run: bool, lock_timeout: float) -> DayResult:
    ddir = ev / f"day={day}"
    res = DayResult(day=day, action="skipped")
    parts = sorted(
        p
        for p in ddir.iterdir()
        if PART_RE.fullmatch(p.name) and p.is_file() and not p.is_symlink()
    )
    if not parts:
        res.reason = "no part files"
        return res
    res.parts = len(parts)
    with _part_locks(parts) as free:
        if not free:
            res.reason = "a writer holds a part of this day"
            return res
        scanned = [
            _scan_part(ev, f"day={day}/{p.name}", day, data_end(p, p.stat().st_size)) for p in parts
        ]
        res.events = sum(s.table.num_rows for s in scanned)
        res.bad_lines = sum(len(s.bad) for s in scanned)
        res.bytes = sum(s.size for s in scanned)
        res.event_ids_sha256 = ids_hash(
            [i for s in scanned for i in s.table.column("event_id").to_pylist()]
        )
        if dry_run:
            res.action = "would_archive"
            return res
        adir = archive_events_dir(root) / f"day={day}"
        ensure_dir(adir)
        for s in scanned:
            _, nbytes, _ = _write_archive(adir, s)
            res.archive_bytes += nbytes
            res.quarantined_bytes += _save_leftovers(ev, s)
        # Everything is durable in the archive; now the JSONL may go.
        with _index_lock_wait(root, lock_timeout):
            for p in parts:
                p.unlink()
                with contextlib.suppress(FileNotFoundError):
                    p.with_name(p.name + ".abandoned").unlink()
            fsync_path(ddir)
            try:
                ddir.rmdir()  # fails when a new part appeared meanwhile: leave it for next time
                fsync_path(ev)
            except OSError:
                pass
    res.action = "archived"
    return res

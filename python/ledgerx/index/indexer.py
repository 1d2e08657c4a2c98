"""The indexer: part files → `index/runs.duckdb` (+ alerts.duckdb, catalog.duckdb), exactly once.

One round:
  1. take `index/.lock` (a second indexer gets IndexBusyError);
  2. read the per-file checkpoints of the published index and stat the part files; nothing new
     → return without touching any file;
  3. pick the work file: the alternate (the previously published file, `.runs.duckdb.alt`),
     updated in place from its own checkpoints when it is exactly the file published before and
     nobody has it open; else a kernel copy of the published one, or a fresh one (full rebuild);
  4. in ONE DuckDB transaction: stream the Rust scanner's Arrow batches into `events` (a small
     round: batch by batch, without pyarrow; `insert`), drop duplicate event ids, derive the
     other tables from the new rows, record the new checkpoints (a fresh or copied work file
     commits the big INSERT on its own: it is private until published, and dropped on failure);
  5. checkpoint, fsync, and publish alerts/catalog (those the round changed), then runs.duckdb:
     a rename (full rebuild) or an exchange of names keeping the replaced file as the alternate.

A crash before the final rename leaves the published index as it was (a work file is deleted by
the next round, an alternate touched by a killed round no longer matches the identity recorded
in the published file and is replaced by a copy); a crash after it leaves the new one. Either
way the checkpoints and the rows moved together: the next round neither skips nor repeats a byte.

The round's parts beside this module: `scan` (part files, the scanner feed), `insert` (rows into
`events`), `dbfile` (published files, checkpoints), `derive` (dedupe, derived tables, side files).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ledgerx._lazy import LazyModule
from ledgerx._record import field, recordclass
from ledgerx.config import archive_events_dir, events_dir, resolve_root
from ledgerx.errors import ConfigError
from ledgerx.index import dbfile, insert
from ledgerx.index import schema as S
from ledgerx.index.dbfile import (
    Checkpoints,
    json_list,
    open_readonly,
    raise_if_foreign_lock,
    read_state,
    sql_str,
    state_of,
)
from ledgerx.index.derive import (
    NewRows,
    derive,
    discount_replay,
    drop_duplicates,
    new_rows,
    record,
    side_stale,
    unlink_spill,
    unlink_work,
    upgrade_format,
    write_sides,
)
from ledgerx.index.engine import duckdb
from ledgerx.index.hooks import PublishRound, run_publish_hooks
from ledgerx.index.insert import insert_events, stream_count
from ledgerx.index.prescan import DEFAULT_CHUNK_BYTES, Prescan
from ledgerx.index.publish import (
    IndexPaths,
    copy_file,
    file_ident,
    index_lock,
    open_in_this_process,
    publish,
    publish_keeping_alt,
    remove_stale_tmp,
)
from ledgerx.index.scan import (
    FileState,
    Progress,
    ScanFeed,
    irregular_entries,
    list_part_files,
    new_bytes,
    replays_all,
    scan_files,
)
from ledgerx.index.upcast import Upcaster, default_upcaster

# Re-exported: other modules and tests import them from here.
__all__ = [
    "DEFAULT_STALE_AFTER_S",
    "IndexReport",
    "Progress",
    "build_index",
    "irregular_entries",
    "list_part_files",
    "open_readonly",
    "raise_if_foreign_lock",
    "read_state",
]


DEFAULT_STALE_AFTER_S = 3600.0
uuid = LazyModule("uuid")  # a new lineage (full rounds) only: uuid imports platform
# The alternate is updated in place only when it lags by at most this many log bytes (it replays
# the previous round too); a bigger round works on a copy, which costs the same at that size.
IN_PLACE_MAX_BYTES = 64 << 20
MAX_REPORTED_BAD = 1000

_DEFAULT = object()
_TRACE = bool(os.environ.get("LEDGERX_INDEX_TRACE"))
_T0 = [0.0]


def _trace(what: str) -> None:
    """LEDGERX_INDEX_TRACE=1: time of each step on stderr (for benchmarks)."""
    if _TRACE:
        now = time.monotonic()
        import resource
        import sys

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"[index] {what}: {now - _T0[0]:.3f}s (peak rss {rss} MiB)", file=sys.stderr)
        _T0[0] = now


@recordclass
class IndexReport:
    """What one indexing round did."""

    mode: str  # "full", "incremental" or "noop"
    events: int = 0
    bad_lines: int = 0
    duplicates: int = 0
    bytes: int = 0
    files: int = 0
    seconds: float = 0.0
    gen: int = 0
    published: bool = False
    db: str = ""
    bad: list[tuple[str, int, int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The published index's checkpoints after the round ({part: indexed offset}), so a caller
    # waiting for an event (`wait_indexed`) need not open the index to learn them.
    offsets: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"indexed {self.events} events ({self.bytes / 1e6:.1f} MB from {self.files} files), "
            f"{self.bad_lines} bad lines, {self.duplicates} duplicates skipped, "
            f"{self.seconds:.2f} s [{self.mode}]"
        )


def check_since_date(since_date: str | None) -> str | None:
    if since_date is None:
        return None
    try:
        return date.fromisoformat(since_date).isoformat()
    except ValueError:
        raise ConfigError(f"--since-date must be YYYY-MM-DD, got {since_date!r}") from None


def check_stale_after(stale_after: float | None) -> None:
    if stale_after is None:
        return
    ok = isinstance(stale_after, (int, float)) and not isinstance(stale_after, bool)
    if not ok or not math.isfinite(stale_after) or stale_after < 0:
        raise ConfigError(f"stale_after must be a number of seconds >= 0, not {stale_after!r}")


def build_index(
    root: str | os.PathLike[str] | None = None,
    *,
    db: str | os.PathLike[str] | None = None,
    since_date: str | None = None,
    full_rebuild: bool = False,
    strict: bool = False,
    stale_after: float | None = None,
    progress: Progress | None = None,
    upcaster: Any = _DEFAULT,
    threads: int = 0,
    memory_limit: str | None = "384MB",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    durable: bool = True,
    hook_options: Mapping[str, Any] | None = None,
    prescan: Prescan | None = None,
) -> IndexReport:
    """Index the new bytes of every part file (or everything, with `full_rebuild`) and publish.

    `since_date` (YYYY-MM-DD) limits the days scanned; `stale_after` (seconds) sets when a
    running run with no new event counts as abandoned; `upcaster` defaults to the root's schema
    registry (None disables upcasting). Raises IndexBusyError when another indexer holds the
    lock. Returns an IndexReport; `mode == "noop"` means no file was touched.
    After each round the publish hooks (`ledgerx.index.hooks`) run with `hook_options`, e.g.
    `{"legacy_projection": True}` for the legacy projection (`ledgerx.legacy` registers it).
    `prescan`: a scan started before this call (`ledgerx.index.prescan.Prescan`, the CLI's full
    rebuild), used when it scans exactly what the round plans to, else dropped.
    """
    t0 = time.monotonic()
    started_at = datetime.now(timezone.utc)
    since = check_since_date(since_date)
    check_stale_after(stale_after)
    rootp = resolve_root(root)
    paths = IndexPaths.for_root(rootp, db)
    rep = IndexReport(mode="noop", db=str(paths.runs))
    try:
        with index_lock(paths):
            remove_stale_tmp(paths)
            _T0[0] = t0
            rnd = _plan(rootp, paths, since, full_rebuild, stale_after, rep)
            if rnd is None:  # nothing new: no file is touched
                run_publish_hooks(PublishRound(paths, False, durable, hook_options or {}))
                rep.seconds = time.monotonic() - t0
                return rep
            _trace("plan")
            rep.mode = "incremental" if rnd.incremental else "full"
            rep.gen = rnd.gen
            up = default_upcaster(rnd.ev) if upcaster is _DEFAULT else upcaster
            opts = _Options(strict, chunk_bytes, threads, memory_limit, durable, progress, prescan)
            _use_alternate(rnd)
            _trace("alternate" if rnd.in_place else "no alternate")
            con = _index_into_work(rnd, rep, up, opts, started_at, t0)
            dbfile.release(con, rnd.alias)  # an attached alternate: detached, unlocked
            unlink_spill(rnd.work)
            ident = file_ident(rnd.work)
            if rnd.after is not None:  # before the rename: a waiter woken by it finds it
                dbfile.save_state_ahead(paths.runs, ident, rnd.after)
            if rnd.incremental:
                publish_keeping_alt(rnd.work, paths.runs, durable=durable)
            else:  # a new lineage: the old file is no base for the next round
                publish(rnd.work, paths.runs, durable=durable)
                unlink_work(paths.alt)
            _trace("close + publish")
            if rnd.after is not None and file_ident(paths.runs) == ident:
                dbfile.remember_published(paths.runs, ident, rnd.after)
            rep.published = True
            rep.offsets = {rel: off for rel, (off, _, _) in rnd.ckpt.items()}
            rep.offsets.update((st.rel, st.end) for st in rnd.states if st.moved)
            run_publish_hooks(PublishRound(paths, True, durable, hook_options or {}))
            rep.seconds = time.monotonic() - t0
            return rep
    finally:
        if prescan is not None:
            prescan.close()  # a no-op once the round has taken it


@recordclass
class _Options:
    strict: bool
    chunk_bytes: int
    threads: int
    memory_limit: str | None
    durable: bool
    progress: Progress | None
    prescan: Prescan | None = None


def _adopt(opts: _Options, rnd: _Round) -> Prescan | None:
    """The prescan when it scans exactly what this round plans to (the same files from the same
    offsets to the same sizes, the same options); else None (closed when the call ends)."""
    pre = opts.prescan
    want = (scan_files(rnd.states), opts.strict, opts.chunk_bytes, opts.threads)
    if pre is not None and pre.matches(*want):
        _trace("prescan adopted")
        return pre
    return None


def _index_into_work(
    rnd: _Round,
    rep: IndexReport,
    up: Upcaster | None,
    opts: _Options,
    started_at: datetime,
    t0: float,
) -> duckdb.DuckDBPyConnection:
    """The round's new rows, derived tables, checkpoints and side files, in the work file.
    On any error the work file is dropped and the published index stays as it was."""
    if rnd.incremental and not rnd.copied and not rnd.in_place:
        copy_file(rnd.paths.runs, rnd.work)
        _trace("copy")
    con = _work_connection(rnd)
    feed: ScanFeed | None = None
    try:
        if rnd.alias is not None:  # the process's DuckDB: its settings outlive the round
            dbfile.configure_shared(con, rnd.work, opts.memory_limit, opts.threads)
        else:
            _configure(con, rnd.work, opts.memory_limit, opts.threads)
        feed = ScanFeed(
            rnd.ev,
            rnd.states,
            strict=opts.strict,
            chunk=opts.chunk_bytes,
            threads=opts.threads,
            upcaster=up,
            progress=opts.progress,
            prescan=_adopt(opts, rnd),
            track_ids=not rnd.incremental,
        )
        _prepare_tables(con, rnd)
        if rnd.in_place:  # a published file: rows and checkpoints in one transaction
            con.begin()
        # A file attached into the process's DuckDB (in place: rows and checkpoints in one
        # transaction; a small copy) takes one INSERT: other cursors would not have its `USE`.
        streams = 1 if rnd.alias is not None else stream_count(opts.threads, len(rnd.states))
        insert_events(con, feed, rnd.gen, streams)
        _trace("insert events")
        if not rnd.in_place:
            con.begin()
        _account(con, rnd, feed, up, opts.strict, rep)
        meta, row = _write_meta(con, rnd, rep, strict=opts.strict, started_at=started_at, t0=t0)
        con.commit()
        _trace("commit")
        dups = rnd.dropped > 0  # not rep.duplicates: an in-place round discounts the replayed
        rnd.after = dbfile.state_after(con, rnd.ckpt, rnd.states, meta, row, dups)
        sides = write_sides(con, rnd.paths, rnd.rootp, rnd.gen, rnd.incremental, dups, rnd.new,
                            rnd.catalog, rnd.meta, opts.durable, rnd.alias)  # fmt: skip
        rnd.after.meta.update(sides)
        _trace("side files")
        con.execute("CHECKPOINT")
        _trace("checkpoint")
    except BaseException:
        if feed is not None:
            feed.close()
        dbfile.release(con, rnd.alias)
        unlink_work(rnd.work)
        raise
    return con


def _work_connection(rnd: _Round) -> duckdb.DuckDBPyConnection:
    """The alternate's cursor (in place); a small round's copy attached into the process's
    DuckDB like the alternate (no second instance: ~150 M instructions); else its own
    connection (a big round's INSERTs run on cursors of it: they would not have the `USE`)."""
    if (con := rnd.con) is not None:
        rnd.con = None
        return con
    small = sum(st.size - st.start for st in rnd.states) <= insert.SMALL_ROUND_BYTES  # as ScanFeed
    small = small and not rnd.arch
    if not (rnd.incremental and small):
        return duckdb.connect(str(rnd.work))
    con = dbfile.work_cursor()
    try:
        rnd.alias = dbfile.attach(con, rnd.work, read_only=False)
    except BaseException:
        con.close()
        raise
    return con


@recordclass
class _Round:
    """What one round works on, planned under the index lock."""

    rootp: Path
    ev: Path
    paths: IndexPaths
    since: str | None
    incremental: bool
    ckpt: dict[str, tuple[int, int, int]]
    meta: dict[str, str]
    work: Path
    copied: bool  # `work` already holds a file-level copy of the published index
    states: list[FileState]
    arch: list[Any]  # days moved to archive/ by retention: their Parquet replaces the JSONL
    want_stale: str | None
    gen: int
    parts: list[tuple[str, str, int]]
    p_ident: str = ""  # identity of the published file when planned: the next alternate's
    last_runs: list[Any] = field(default_factory=list)  # its `_index_runs` row
    in_place: bool = False  # `work` is the alternate, updated in place through `con`
    con: duckdb.DuckDBPyConnection | None = None
    alias: str | None = None  # in place or a small copy: `con` is a work cursor, file attached
    after: dbfile.PublishedState | None = None  # the work file's state once committed
    p_ckpt: Checkpoints = field(default_factory=dict)  # in place: the published checkpoints
    new: NewRows | None = None  # what the round's rows are, when `derive` learned it
    catalog: bool = True  # whether the catalog's rows may have changed (`derive`)
    dropped: int = 0  # rows the round dropped as duplicates (`drop_duplicates`)


def _plan(
    rootp: Path,
    paths: IndexPaths,
    since: str | None,
    full_rebuild: bool,
    stale_after: float | None,
    rep: IndexReport,
) -> _Round | None:
    """The files (and archived days) with new complete lines since the checkpoints; None when
    an incremental round has nothing to do."""
    ev = events_dir(rootp)
    incremental = paths.runs.exists() and not full_rebuild
    ckpt: dict[str, tuple[int, int, int]] = {}
    meta: dict[str, str] = {}
    work = paths.tmp_for(paths.runs)
    copied = False
    last_runs: list[Any] = []
    p_ident = file_ident(paths.runs)
    if incremental:
        pub = dbfile.published_state(paths.runs, work)
        _trace("published state")
        ckpt, meta, copied, last_runs = pub.ckpt, pub.meta, pub.copied, pub.last_runs
        rep.offsets = {rel: off for rel, (off, _, _) in ckpt.items()}
    parts = list_part_files(ev, since)
    rep.warnings.extend(irregular_entries(ev))
    states = new_bytes(ev, parts, ckpt, rep.warnings)
    want_stale = str(float(stale_after)) if stale_after is not None else None
    meta_change = want_stale is not None and meta.get("stale_after_s") != want_stale
    sides_missing = side_stale(paths.alerts, meta, "alerts_ident")
    sides_missing = sides_missing or side_stale(paths.catalog, meta, "catalog_ident")
    arch = _pending_archived(rootp, ckpt, since, parts)
    # An index of an older format is upgraded (its views replaced) even with no new bytes.
    old_format = incremental and meta.get("format") != S.INDEX_FORMAT
    quiet = not (states or arch or meta_change or sides_missing or copied or old_format)
    if incremental and quiet:
        return None
    gen = int(meta.get("gen", "0")) + 1 if incremental else 1
    return _Round(
        rootp, ev, paths, since, incremental, ckpt, meta, work, copied, states, arch,
        want_stale, gen, parts, p_ident, last_runs,
    )  # fmt: skip


def _pending_archived(
    rootp: Path, ckpt: Checkpoints, since: str | None, parts: list[tuple[str, str, int]]
) -> list[Any]:
    """`retention.pending_archived`; a root without an archive never imports retention."""
    if not archive_events_dir(rootp).is_dir():
        return []
    from ledgerx.retention import pending_archived

    return pending_archived(rootp, ckpt, since, {rel for rel, _, _ in parts})


def _use_alternate(rnd: _Round) -> None:
    """Make the round update the alternate in place, from the alternate's own checkpoints (it
    lags one round: that round's bytes are indexed again, as new rows of this round), when it
    is exactly the file published before the current one (its identity is recorded in the
    published file's meta: a killed round or a foreign writer changed it), nobody has it open
    (this process: its descriptors; any other: DuckDB's write lock, which our read-write
    connection takes and holds until the round ends) and it lags little. Otherwise the round
    works on a copy."""
    alt, meta = rnd.paths.alt, rnd.meta
    if not rnd.incremental or rnd.copied or meta.get("format") != S.INDEX_FORMAT:
        return
    if not meta.get("alt_ident") or file_ident(alt) != meta.get("alt_ident"):
        return
    if alt.with_name(alt.name + ".wal").exists() or open_in_this_process(alt):
        return
    con = dbfile.work_cursor()
    try:
        alias = dbfile.attach(con, alt, read_only=False)
    except duckdb.Error:  # someone holds it (a reader's lock) or it is damaged: copy instead
        con.close()
        return
    try:  # the state this process wrote in it, or read from it
        known = dbfile.replaced_state(rnd.paths.runs, meta["alt_ident"])
        ckpt, alt_meta = (dict(known.ckpt), dict(known.meta)) if known else state_of(con)
        same = all(alt_meta.get(k) == meta.get(k) for k in ("lineage", "format", "since_date"))
        states = new_bytes(rnd.ev, rnd.parts, ckpt, [])
        arch = _pending_archived(rnd.rootp, ckpt, rnd.since, rnd.parts)
        lag = sum(st.size - st.start for st in states)
        ok = same and int(alt_meta.get("gen", "0")) == rnd.gen - 2
        ok = ok and not arch and lag <= IN_PLACE_MAX_BYTES and replays_all(rnd.ckpt, ckpt, states)
    except duckdb.Error:  # not an index we can read: copy instead
        ok = False
    except BaseException:
        dbfile.release(con, alias)
        raise
    if not ok:
        dbfile.release(con, alias)
        return
    rnd.con, rnd.alias, rnd.work, rnd.in_place = con, alias, alt, True
    rnd.p_ckpt, rnd.ckpt, rnd.states, rnd.arch = rnd.ckpt, ckpt, states, arch


def _configure(
    con: duckdb.DuckDBPyConnection, work: Path, memory_limit: str | None, threads: int
) -> None:
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")  # DuckDB's own bar goes to stdout
    if memory_limit:
        try:
            con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
        except duckdb.Error as e:
            raise ConfigError(f"memory_limit {memory_limit!r}: {e}") from None
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET temp_directory = {sql_str(str(work) + '.spill')}")


def _prepare_tables(con: duckdb.DuckDBPyConnection, rnd: _Round) -> None:
    """Tables of a fresh index; views (re)created for a new file or an older format."""
    if not rnd.incremental:
        for ddl in S.TABLES_DDL:
            con.execute(ddl)
    if not rnd.incremental or rnd.meta.get("format") != S.INDEX_FORMAT:
        if rnd.incremental:
            upgrade_format(con)
        for ddl in S.VIEWS_DDL:
            con.execute(ddl)


def _account(
    con: duckdb.DuckDBPyConnection,
    rnd: _Round,
    feed: ScanFeed,
    up: Upcaster | None,
    strict: bool,
    rep: IndexReport,
) -> None:
    """In the round's transaction: archived days, duplicates, derived tables, checkpoints."""
    arch_done: list[Any] = []
    arch_bad: list[tuple[str, int, int, str]] = []
    arch_rows = arch_bytes = 0
    if rnd.arch:
        from ledgerx.retention import load_archived

        arch_done, arch_bad, arch_rows, arch_bytes = load_archived(
            con, rnd.arch, rnd.gen, up, feed.upcast_errors, strict=strict
        )
    for pa_, n_ev, n_bad in arch_done:
        ap = pa_.part
        st = FileState(ap.rel, ap.day, pa_.start, ap.size, end=ap.offset, events=n_ev)
        st.bad, st.old_events, st.old_bad = n_bad, pa_.old_events, pa_.old_bad
        rnd.states.append(st)
    rep.bytes = feed.done + arch_bytes
    rep.events = feed.rows + arch_rows
    rep.warnings.extend(feed.upcast_errors[:MAX_REPORTED_BAD])
    rep.warnings.extend(feed.file_errors)
    bad = list(feed.bad) + arch_bad
    distinct = feed.rows if feed.ids_distinct is True else None  # the scan's ids: distinct
    files = [s.rel for s in rnd.states if s.moved]
    new = new_rows(con, rnd.gen, files, rep.events) if rnd.incremental else None
    kept: dict[tuple[str, int], tuple[str, int]] = {}
    rep.duplicates = drop_duplicates(con, rnd.gen, rnd.incremental, bad, distinct, new, kept)
    _trace("dedupe")
    rep.events -= rep.duplicates
    rep.bad_lines = len(bad)
    rep.bad = bad[:MAX_REPORTED_BAD]
    rnd.dropped = rep.duplicates
    rnd.new, changed = derive(con, rnd.gen, rnd.incremental, rep.duplicates > 0, new)
    rnd.catalog = changed or rnd.meta.get("format") != S.INDEX_FORMAT
    _trace("derive")
    record(con, rnd.gen, rnd.states, bad, rep.duplicates > 0)
    if rnd.in_place:
        discount_replay(rnd.states, rnd.p_ckpt, rnd.ckpt, rep, bad, kept, MAX_REPORTED_BAD)


def _write_meta(
    con: duckdb.DuckDBPyConnection,
    rnd: _Round,
    rep: IndexReport,
    *,
    strict: bool,
    started_at: datetime,
    t0: float,
) -> tuple[dict[str, Any], list[Any]]:
    """`_index_meta` (format, generation, lineage, options) and this round's `_index_runs` row
    (`started_at` in epoch microseconds, as `dbfile.last_runs` reads it); returns both."""
    meta, incremental = rnd.meta, rnd.incremental
    stale = rnd.want_stale or meta.get("stale_after_s") or str(DEFAULT_STALE_AFTER_S)
    new_meta = {
        "format": S.INDEX_FORMAT,
        "gen": str(rnd.gen),
        "lineage": meta.get("lineage") if incremental else uuid.uuid4().hex,
        "stale_after_s": stale,
        "strict": str(bool(strict)).lower(),
        "since_date": (meta.get("since_date") if incremental else rnd.since) or "",
        "last_rebuild_at": started_at.isoformat(),
        # the file this one replaces, which becomes the alternate the next round may update
        "alt_ident": rnd.p_ident if incremental else "",
        # the side files published with this file: `write_sides` sets them when it writes one
        "alerts_ident": meta.get("alerts_ident", "") if incremental else "",
        "catalog_ident": meta.get("catalog_ident", "") if incremental else "",
    }
    con.execute("DELETE FROM _index_meta")
    con.execute(  # one statement: an executemany is a statement per row
        "INSERT INTO _index_meta SELECT unnest(?::JSON::VARCHAR[]), unnest(?::JSON::VARCHAR[])",
        [json_list(list(new_meta)), json_list(list(new_meta.values()))],
    )
    floor = {rel: off for rel, (off, _, _) in rnd.p_ckpt.items()}
    rep.files = sum(1 for s in rnd.states if s.end > max(s.start, floor.get(s.rel, 0)))
    at_us = (started_at - _EPOCH) // timedelta(microseconds=1)
    row = [rnd.gen, rep.mode, at_us, time.monotonic() - t0]
    row += [rep.events, rep.bad_lines, rep.bytes, rep.files]
    # in place: the round that made the published file, missing from the alternate, too
    rows = [*(list(p) for p in (rnd.last_runs if rnd.in_place else [])), row]
    con.execute(
        "INSERT INTO _index_runs VALUES "
        + ", ".join(["(?, ?, make_timestamptz(?), ?, ?, ?, ?, ?)"] * len(rows)),
        [x for r in rows for x in r],
    )
    return new_meta, row


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

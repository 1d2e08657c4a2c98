"""The steps of an indexing round inside DuckDB: duplicate removal, derived tables, checkpoints
and bad lines (all in the round's transaction), the side files, and work-file cleanup."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ledgerx._record import recordclass
from ledgerx.index import schema as S
from ledgerx.index.dbfile import fsync_off, json_list, new_alias, sql_str
from ledgerx.index.engine import duckdb
from ledgerx.index.publish import IndexPaths, file_ident, publish, tmp_for
from ledgerx.index.scan import FileState


def unlink_spill(work: Path) -> None:
    import shutil

    shutil.rmtree(str(work) + ".spill", ignore_errors=True)


def unlink_work(work: Path) -> None:
    for p in (work, work.with_name(work.name + ".wal")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    unlink_spill(work)


def upgrade_format(con: duckdb.DuckDBPyConnection) -> None:
    """An index of an older format, updated in place: drop what became a view, add what is new."""
    old = con.execute(
        """SELECT count(*) FROM duckdb_tables()
           WHERE database_name = current_database() AND schema_name = 'main'
             AND table_name = 'trial_results'"""
    ).fetchone()[0]  # type: ignore[index]  # count(*): one row
    if old:
        con.execute("DROP TABLE trial_results")
    # Format 5: trials indexed before have no shape (Reader.trials_table reads them as before).
    con.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS shape VARCHAR")
    # Format 6: nor typed values (Reader.trials_table parses those rows' JSON).
    con.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS tint BIGINT[]")
    con.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS tnum DOUBLE[]")


def drop_duplicates(
    con: duckdb.DuckDBPyConnection,
    gen: int,
    incremental: bool,
    bad: list[Any],
    distinct_rows: int | None = None,
    new: NewRows | None = None,
    kept: dict[tuple[str, int], tuple[str, int]] | None = None,
) -> int:
    """`event_id` is unique in the index: of several lines with one id, the first in
    (file, offset) order stays, the others are reported as bad lines. Returns rows dropped;
    `kept` gets {(file, offset) of each dropped line: (file, offset) of the line kept}.
    `distinct_rows`: the rows of this round's scan when it saw no id hash twice
    (`Scanner.ids_distinct`); a full rebuild whose table holds exactly those rows has no
    duplicate, and the check over every id in DuckDB is skipped. `new`: an incremental round's
    `new_rows`, which already tells whether its ids occur once in the table."""
    if incremental and new is not None and new.id_rows == new.ids:
        return 0
    if distinct_rows is not None and not incremental:
        n = con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
        if n == distinct_rows:
            con.execute("CREATE OR REPLACE TEMP TABLE _dups (event_id VARCHAR)")
            return 0
    if incremental:
        # No duplicate iff every id of this round occurs once in the whole table: as many rows
        # carry the round's ids as the round has distinct ids (two new lines with one id, or a
        # new line repeating an old id, both make `n` larger).
        n = con.execute(
            """SELECT count(*) FROM events
               WHERE event_id IN (SELECT event_id FROM events WHERE gen = ?)""",
            [gen],
        ).fetchone()[0]  # type: ignore[index]  # count(*): one row
        new = con.execute(
            "SELECT count(DISTINCT event_id) FROM events WHERE gen = ?", [gen]
        ).fetchone()[0]  # type: ignore[index]
        if n == new:
            con.execute("CREATE OR REPLACE TEMP TABLE _dups (event_id VARCHAR)")
            return 0
        scope = "WHERE event_id IN (SELECT event_id FROM events WHERE gen = ?)"
        args: list[Any] = [gen]
    else:
        # Distinct 64-bit hashes are cheaper to count than distinct strings, and as many
        # distinct hashes as rows proves the ids distinct; a collision falls to the exact path.
        n, d = con.execute("SELECT count(*), count(DISTINCT hash(event_id)) FROM events").fetchone()  # type: ignore[misc]
        if n == d:
            con.execute("CREATE OR REPLACE TEMP TABLE _dups (event_id VARCHAR)")
            return 0
        scope, args = "", []
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dup_rows AS
            SELECT rowid AS rid, event_id, file, "offset", line_bytes, run_id,
                   row_number() OVER w AS rn, first_value(file) OVER w AS first_file,
                   first_value("offset") OVER w AS first_off
            FROM events {scope}
            WINDOW w AS (PARTITION BY event_id ORDER BY file, "offset")
            QUALIFY count(*) OVER (PARTITION BY event_id) > 1""",
        args,
    )
    con.execute("CREATE OR REPLACE TEMP TABLE _dups AS SELECT DISTINCT event_id FROM _dup_rows")
    rows = con.execute(
        """SELECT file, "offset", line_bytes, event_id, first_file, first_off FROM _dup_rows
           WHERE rn > 1 ORDER BY file, "offset" """
    ).fetchall()
    con.execute("DELETE FROM events WHERE rowid IN (SELECT rid FROM _dup_rows WHERE rn > 1)")
    for f, off, ln, eid, kf, ko in rows:
        bad.append((f, off, ln, f"duplicate event_id {eid} (kept the line at {kf}:{ko})"))
        if kept is not None:
            kept[(f, off)] = (kf, ko)
    return len(rows)


@recordclass(frozen=True)
class NewRows:
    """The rows of an incremental round (`gen`), summed up by one query: the rows of the whole
    table that carry one of their event ids and how many distinct ids they have (equal: no
    duplicate), their event types and their runs; `days`: the days of the part files the round
    read (`substr(file, 5, 10)`), a superset of its rows' days."""

    id_rows: int
    ids: int
    types: frozenset[str]
    runs: list[str]
    days: frozenset[str]


# A round of at most this many rows is summed up from its columns in Python and its ids looked
# up as constants (zone maps skip the row groups): DuckDB's DISTINCT aggregates and the semi-join
# over every id cost ~4 ms of a one-event round, these two statements ~1.5 ms.
FEW_ROWS = 256


def new_rows(con: duckdb.DuckDBPyConnection, gen: int, files: list[str], rows: int) -> NewRows:
    """`NewRows` of round `gen`, which read the part files `files` and scanned `rows` rows."""
    days = frozenset(f[4:14] for f in files)  # SQL's substr(file, 5, 10)
    if rows <= FEW_ROWS:
        got = con.execute(
            "SELECT list(event_id), list(event_type), list(run_id) FROM events WHERE gen = ?",
            [gen],
        ).fetchone()
        assert got is not None  # an aggregate: one row
        ids, types, runs = (x or [] for x in got)
        id_rows = 0
        if ids:
            q = f"SELECT count(*) FROM events WHERE event_id IN ({', '.join(['?'] * len(ids))})"
            id_rows = con.execute(q, ids).fetchone()[0]  # type: ignore[index]  # count(*)
        run_ids = list(dict.fromkeys(r for r in runs if r is not None))
        return NewRows(id_rows, len(set(ids)), frozenset(types), run_ids, days)
    row = con.execute(
        """SELECT (SELECT count(*) FROM events
                   WHERE event_id IN (SELECT event_id FROM events WHERE gen = $1)),
                  count(DISTINCT event_id), list(DISTINCT event_type),
                  list(DISTINCT run_id) FILTER (WHERE run_id IS NOT NULL)
           FROM events WHERE gen = $1""",
        [gen],
    ).fetchone()
    assert row is not None  # an aggregate: one row
    return NewRows(row[0], row[1], frozenset(row[2] or ()), list(row[3] or ()), days)


# An incremental round that touched at most this many runs names them as constants in the
# derive queries instead of joining `_touched`.
FEW_RUNS = 64


def derive(
    con: duckdb.DuckDBPyConnection,
    gen: int,
    incremental: bool,
    has_dups: bool,
    new: NewRows | None = None,
) -> tuple[NewRows | None, bool]:
    """Derived tables from the rows of round `gen` (plus re-derived duplicates); returns `new`
    when it still describes the round's rows, else None, and whether the catalog's rows
    (`S.CATALOG_SELECT`) may have changed. With `new` (an incremental round's `new_rows`), no
    duplicate and a few runs: `derive_new`, which knows; otherwise they may have."""
    if incremental and not has_dups and new is not None and len(new.runs) <= FEW_RUNS:
        return new, derive_new(con, gen, new)
    sel = f"gen = {int(gen)}"
    if has_dups:
        sel += " OR event_id IN (SELECT event_id FROM _dups)"
        for t in S.APPEND_TABLES:
            con.execute(f"DELETE FROM {t} WHERE event_id IN (SELECT event_id FROM _dups)")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _touched AS
            SELECT DISTINCT run_id FROM events WHERE ({sel}) AND run_id IS NOT NULL"""
    )
    if has_dups:  # a dropped duplicate may have been the only row of its run
        con.execute(
            """INSERT INTO _touched SELECT DISTINCT run_id FROM _dup_rows
               WHERE run_id IS NOT NULL AND run_id NOT IN (SELECT run_id FROM _touched)"""
        )
    if incremental:
        con.execute("DELETE FROM runs_d WHERE run_id IN (SELECT run_id FROM _touched)")
        con.execute("DELETE FROM phase_timings WHERE run_id IN (SELECT run_id FROM _touched)")
    # A full rebuild touches every run: no semi-join against _touched.
    runs, args = (S.TOUCHED_RUNS, []) if incremental else (S.ALL_RUNS, [])
    if incremental:
        touched = [r for (r,) in con.execute("SELECT run_id FROM _touched").fetchall()]
        if 0 < len(touched) <= FEW_RUNS:  # constants: DuckDB skips row groups by their min/max
            runs = f"run_id IN ({', '.join(f'${i + 1}' for i in range(len(touched)))})"
            args = touched
    con.execute(S.DERIVE_RUNS.replace("{runs}", runs), args)
    con.execute(S.DERIVE_PHASES.replace("{runs}", runs), args)
    for q in S.DERIVE_APPEND:
        con.execute(q.replace("{sel}", sel))
    return None, True


LIFECYCLE = frozenset({"run.created", "run.started", "run.completed", "run.failed"})
PHASE_TYPES = frozenset({"phase.started", "phase.completed"})


def derive_new(con: duckdb.DuckDBPyConnection, gen: int, new: NewRows) -> bool:
    """`derive` of an incremental round without duplicates that touched at most FEW_RUNS runs,
    doing only what its event types can change (each statement costs a millisecond or more to
    plan, most of a one-event round): a table whose source types the round lacks is left as
    it is; without lifecycle events a run's `runs_d` row is updated from the new rows alone
    (`S.UPDATE_RUNS`: counts, first and last times, 'created' becomes 'running'; the days only
    when a run may lack one of the round's, `S.UPDATE_RUN_DAYS`), and only
    a run new to the index is derived from its rows. Returns whether a catalog column (kind,
    creation, days: `S.CATALOG_SELECT`) may have changed: lifecycle events, a new run, days."""
    runs = new.runs
    changed = False
    if runs:
        ph = f"run_id IN ({', '.join(f'${i + 1}' for i in range(len(runs)))})"
        if new.types & LIFECYCLE:
            con.execute(f"DELETE FROM runs_d WHERE {ph}", runs)
            con.execute(S.DERIVE_RUNS.replace("{runs}", ph), runs)
            changed = True
        else:
            done = dict(con.execute(S.UPDATE_RUNS, [gen]).fetchall())  # {run: its days}
            if any(not new.days <= set(days) for days in done.values()):
                con.execute(S.UPDATE_RUN_DAYS, [gen])
                changed = True
            fresh = [r for r in runs if r not in done]  # no row yet: derived from its rows
            if fresh:
                changed = True
                ph2 = f"run_id IN ({', '.join(f'${i + 1}' for i in range(len(fresh)))})"
                con.execute(S.DERIVE_RUNS.replace("{runs}", ph2), fresh)
        if new.types & PHASE_TYPES:
            con.execute(f"DELETE FROM phase_timings WHERE {ph}", runs)
            con.execute(S.DERIVE_PHASES.replace("{runs}", ph), runs)
    for q, t in zip(S.DERIVE_APPEND, S.APPEND_TYPES, strict=True):
        if t in new.types:
            con.execute(q.replace("{sel}", f"gen = {int(gen)}"))
    return changed


def record(
    con: duckdb.DuckDBPyConnection,
    gen: int,
    states: list[FileState],
    bad: list[tuple[str, int, int, str]],
    has_dups: bool,
) -> None:
    """Checkpoints and bad lines, in the transaction that added the rows."""
    now_us = time.time_ns() // 1000
    moved = [s for s in states if s.moved]
    ckpts = [s.checkpoint() for s in moved]
    # Lists bound as JSON texts (`json_list`) and unnested side by side: pyarrow's conversion of
    # Python lists would import pandas (0.3-0.8 s of a small round in a fresh process).
    if moved:  # two statements, no temp table: each statement costs ~1 ms of a small round
        files = json_list([s.rel for s in moved])
        q = "DELETE FROM _ledger_files WHERE file IN (SELECT unnest(?::JSON::VARCHAR[]))"
        con.execute(q, [files])
        con.execute(
            """INSERT INTO _ledger_files SELECT
                   unnest(?::JSON::VARCHAR[]), unnest(?::JSON::VARCHAR[]),
                   unnest(?::JSON::BIGINT[]), unnest(?::JSON::BIGINT[]),
                   unnest(?::JSON::BIGINT[]), unnest(?::JSON::BIGINT[]), ?, make_timestamptz(?)""",
            [
                files,
                json_list([s.day for s in moved]),
                json_list([c[0] for c in ckpts]),
                json_list([max(s.size, s.end) for s in moved]),
                json_list([c[1] for c in ckpts]),
                json_list([c[2] for c in ckpts]),
                gen,
                now_us,
            ],
        )
    if bad:
        con.execute(
            """INSERT INTO _bad_lines
               SELECT * FROM (SELECT unnest(?::JSON::VARCHAR[]) AS file,
                                     unnest(?::JSON::BIGINT[]) AS o, unnest(?::JSON::BIGINT[]),
                                     unnest(?::JSON::VARCHAR[]), ?)
               ORDER BY file, o""",
            [
                json_list([b[0] for b in bad]),
                json_list([b[1] for b in bad]),
                json_list([b[2] for b in bad]),
                json_list([b[3] for b in bad]),
                gen,
            ],
        )
    if has_dups:  # per-file counts of the files whose duplicates were dropped (to 0, maybe)
        con.execute(
            """UPDATE _ledger_files SET events = c.n,
                   bad_lines = (SELECT count(*) FROM _bad_lines b WHERE b.file = _ledger_files.file)
               FROM (SELECT d.file, count(e.file) AS n
                     FROM (SELECT DISTINCT file FROM _dup_rows) d LEFT JOIN events e USING (file)
                     GROUP BY d.file) c
               WHERE _ledger_files.file = c.file"""
        )


def discount_replay(
    states: list[FileState],
    p_ckpt: dict[str, tuple[int, int, int]],
    alt_ckpt: dict[str, tuple[int, int, int]],
    rep: Any,
    bad: list[tuple[str, int, int, str]],
    kept: dict[tuple[str, int], tuple[str, int]],
    max_bad: int,
) -> None:
    """An in-place round indexes the previous round's bytes again (the alternate lagged one
    round): report in `rep` (an `IndexReport`, logged in `_index_runs`) only what lies past the
    published checkpoints `p_ckpt` (the alternate's: `alt_ckpt`). A bad line below them was
    reported before, unless it is a duplicate whose kept line (`kept`, from `drop_duplicates`)
    is new: a new line repeating the id of an older one in a later part drops that one now."""
    floor = {rel: off for rel, (off, _, _) in p_ckpt.items()}
    replayed = [st for st in states if floor.get(st.rel, 0) > st.start]
    if not replayed:
        return
    # The rows the previous round added, net (its checkpoints' events beyond the alternate's,
    # over all files: a row it dropped as a duplicate in a file it did not read counts too),
    # come again in this round's rows, net of its duplicates (no statement: ~2 ms of a round).
    old_rows = sum(p[1] for p in p_ckpt.values()) - sum(a[1] for a in alt_ckpt.values())

    def below(at: tuple[str, int]) -> bool:
        return at[1] < floor.get(at[0], 0)

    # Of the lines of one id below the checkpoints, the previous round kept the first and
    # reported the others; a new line kept now drops that first one too, which is new.
    first_dropped: set[tuple[str, int]] = set()

    def old(b: tuple[str, int, int, str]) -> bool:  # reported by the previous round
        at = (b[0], b[1])
        k = kept.get(at, at)
        if not below(at) or below(k):
            return below(at)
        if k in first_dropped:
            return True
        first_dropped.add(k)
        return False

    old_bad = [b for b in bad if old(b)]
    rep.events -= old_rows
    rep.duplicates -= sum(1 for b in old_bad if b[3].startswith("duplicate event_id"))
    rep.bad_lines -= len(old_bad)
    rep.bad = [b for b in bad if not old(b)][:max_bad]
    rep.bytes -= sum(min(floor[st.rel], st.end) - st.start for st in replayed)


def write_side(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    table: str,
    select: str,
    params: list[Any],
    durable: bool,
    alias: str | None,
) -> None:
    """Write a small side file (alerts, catalog) from the work index, and publish it.

    DuckDB need not fsync it (six fdatasyncs of a one-event round): the file is new and
    private until `publish` fsyncs it, then renames it, and a crash before that leaves a
    `.building-` file that nothing reads and the next round deletes. `alias`: the round's file
    when `con` is the process's shared DuckDB instance (`dbfile.fsync_off`)."""
    tmp = tmp_for(target)
    unlink_work(tmp)
    side = new_alias("side")  # a round of another root may be writing its own meanwhile
    with fsync_off(con, alias):
        con.execute(f"ATTACH {sql_str(str(tmp))} AS {side}")
        try:
            con.execute(f"CREATE TABLE {side}.{table} AS {select}", params)
            con.execute(f"CREATE TABLE {side}._index_meta AS SELECT * FROM _index_meta")
        finally:
            con.execute(f"DETACH {side}")
    publish(tmp, target, durable=durable)


def write_sides(
    con: duckdb.DuckDBPyConnection,
    paths: IndexPaths,
    root: Path,
    gen: int,
    incremental: bool,
    has_dups: bool,
    new: NewRows | None,
    catalog: bool,
    meta: dict[str, str],
    durable: bool,
    alias: str | None,
) -> dict[str, str]:
    """alerts.duckdb and catalog.duckdb, when round `gen` changed them (`new`: what its rows
    are, when `derive` knows it, else the alerts are counted here; `catalog`: whether the
    catalog's rows may have changed; `alias`: as for `write_side`), or when they are not the
    files written with the published runs file (`meta`, `side_stale`). Side files first: if
    we die between the renames, runs.duckdb still points at the old checkpoints and records
    the identities of the old side files (`_index_meta.alerts_ident`, `catalog_ident`), so the
    next round redoes these bytes and rewrites a side file left by the dead round even when
    the bytes do not change it (a full rebuild of other days, say). Returns the identities of
    the files written, which it also records in the work file's `_index_meta`."""
    written: dict[str, str] = {}
    if (
        not incremental
        or has_dups
        or side_stale(paths.alerts, meta, "alerts_ident")
        or ("alert.ingested" in new.types if new is not None else _new_alerts(con, gen))
    ):
        write_side(con, paths.alerts, "alerts", S.ALERTS_SELECT, [], durable, alias)
        written["alerts_ident"] = file_ident(paths.alerts)
    if not incremental or catalog or side_stale(paths.catalog, meta, "catalog_ident"):
        rel_index = _rel_to_root(paths.runs, root)
        write_side(con, paths.catalog, "runs", S.CATALOG_SELECT, [rel_index], durable, alias)
        written["catalog_ident"] = file_ident(paths.catalog)
    for key, ident in written.items():
        con.execute("UPDATE _index_meta SET value = ? WHERE key = ?", [ident, key])
    return written


def side_stale(path: Path, meta: dict[str, str], key: str) -> bool:
    """The side file `path` is missing, or not the one whose identity `meta[key]` records."""
    ident = file_ident(path)
    return not ident or ident != meta.get(key)


def _new_alerts(con: duckdb.DuckDBPyConnection, gen: int) -> bool:
    q = "SELECT count(*) > 0 FROM events WHERE gen = ? AND event_type = 'alert.ingested'"
    return bool(con.execute(q, [gen]).fetchone()[0])  # type: ignore[index]  # one row


def _rel_to_root(p: Path, root: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)

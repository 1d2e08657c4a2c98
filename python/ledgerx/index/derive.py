"""The steps of an indexing round inside DuckDB: duplicate removal, derived tables, checkpoints
and bad lines (all in the round's transaction), the side files, and work-file cleanup."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from ledgerx.index import schema as S
from ledgerx.index.dbfile import sql_str
from ledgerx.index.publish import publish
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


def drop_duplicates(
    con: duckdb.DuckDBPyConnection,
    gen: int,
    incremental: bool,
    bad: list[Any],
    distinct_rows: int | None = None,
) -> int:
    """`event_id` is unique in the index: of several lines with one id, the first in
    (file, offset) order stays, the others are reported as bad lines. Returns rows dropped.
    `distinct_rows`: the rows of this round's scan when it saw no id hash twice
    (`Scanner.ids_distinct`); a full rebuild whose table holds exactly those rows has no
    duplicate, and the check over every id in DuckDB is skipped."""
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
                   row_number() OVER (PARTITION BY event_id ORDER BY file, "offset") AS rn,
                   first_value(file || ':' || "offset") OVER
                       (PARTITION BY event_id ORDER BY file, "offset") AS first_at
            FROM events {scope}
            QUALIFY count(*) OVER (PARTITION BY event_id) > 1""",
        args,
    )
    con.execute("CREATE OR REPLACE TEMP TABLE _dups AS SELECT DISTINCT event_id FROM _dup_rows")
    rows = con.execute(
        """SELECT file, "offset", line_bytes, event_id, first_at FROM _dup_rows WHERE rn > 1
           ORDER BY file, "offset" """
    ).fetchall()
    con.execute("DELETE FROM events WHERE rowid IN (SELECT rid FROM _dup_rows WHERE rn > 1)")
    for f, off, ln, eid, first in rows:
        bad.append((f, off, ln, f"duplicate event_id {eid} (kept the line at {first})"))
    return len(rows)


# An incremental round that touched at most this many runs names them as constants in the
# derive queries instead of joining `_touched`.
FEW_RUNS = 64


def derive(con: duckdb.DuckDBPyConnection, gen: int, incremental: bool, has_dups: bool) -> None:
    """Derived tables from the rows of round `gen` (plus re-derived duplicates)."""
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


def record(
    con: duckdb.DuckDBPyConnection,
    gen: int,
    states: list[FileState],
    bad: list[tuple[str, int, int, str]],
    has_dups: bool,
) -> None:
    """Checkpoints and bad lines, in the transaction that added the rows."""
    now = datetime.now(timezone.utc)
    moved = [s for s in states if s.end > s.start]
    # Lists bound as DuckDB parameters and unnested side by side: pyarrow's conversion of
    # Python lists would import pandas (0.3-0.8 s of a small round in a fresh process).
    if moved:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _ckpt AS SELECT
                   unnest(?::VARCHAR[]) AS file, unnest(?::VARCHAR[]) AS day,
                   unnest(?::BIGINT[]) AS "offset", unnest(?::BIGINT[]) AS size_seen,
                   unnest(?::BIGINT[]) AS events, unnest(?::BIGINT[]) AS bad_lines""",
            [
                [s.rel for s in moved],
                [s.day for s in moved],
                [s.end for s in moved],
                [max(s.size, s.end) for s in moved],
                [s.old_events + s.events for s in moved],
                [s.old_bad + s.bad for s in moved],
            ],
        )
        con.execute("DELETE FROM _ledger_files WHERE file IN (SELECT file FROM _ckpt)")
        con.execute(
            """INSERT INTO _ledger_files
               SELECT file, day, "offset", size_seen, events, bad_lines, ?, ? FROM _ckpt""",
            [gen, now],
        )
        con.execute("DROP TABLE _ckpt")
    if bad:
        con.execute(
            """INSERT INTO _bad_lines
               SELECT * FROM (SELECT unnest(?::VARCHAR[]) AS file, unnest(?::BIGINT[]) AS o,
                                     unnest(?::BIGINT[]), unnest(?::VARCHAR[]), ?)
               ORDER BY file, o""",
            [
                [b[0] for b in bad],
                [b[1] for b in bad],
                [b[2] for b in bad],
                [b[3] for b in bad],
                gen,
            ],
        )
    if has_dups:  # per-file counts of the files whose duplicates were dropped
        con.execute(
            """UPDATE _ledger_files SET events = c.n,
                   bad_lines = (SELECT count(*) FROM _bad_lines b WHERE b.file = _ledger_files.file)
               FROM (SELECT file, count(*) AS n FROM events
                     WHERE file IN (SELECT DISTINCT file FROM _dup_rows) GROUP BY file) c
               WHERE _ledger_files.file = c.file"""
        )


def write_side(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    table: str,
    select: str,
    params: list[Any],
    durable: bool,
) -> None:
    """Write a small side file (alerts, catalog) from the work index, and publish it."""
    tmp = target.with_name(f".building-{os.getpid()}-{target.name}")
    unlink_work(tmp)
    con.execute(f"ATTACH {sql_str(str(tmp))} AS side")
    try:
        con.execute(f"CREATE TABLE side.{table} AS {select}", params)
        con.execute(
            "CREATE TABLE side._index_meta AS SELECT * FROM _index_meta",
        )
    finally:
        con.execute("DETACH side")
    publish(tmp, target, durable=durable)

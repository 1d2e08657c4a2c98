"""Inserting a round's scanned rows into `events`: streamed through pyarrow for a big round,
batch by batch straight from the core's batches for a small one (no pyarrow import: most of a
one-event `ledgerx rebuild` process was that import). Both store the same rows."""

from __future__ import annotations

import threading

from ledgerx.index.dbfile import json_list
from ledgerx.index.engine import arrow_scans, duckdb, register_stream
from ledgerx.index.scan import ScanFeed, scan_width
from ledgerx.index.upcast import upcast_rows

# A round with at most this many new log bytes takes `insert_small`: an INSERT per scanned batch,
# in this thread. A bigger one streams (one INSERT, whole row groups, the scan overlapping it).
SMALL_ROUND_BYTES = 4 << 20


def insert_events(
    con: duckdb.DuckDBPyConnection, feed: ScanFeed, gen: int, streams: int = 1
) -> None:
    """INSERTs over streams of the scanner's batches: DuckDB pulls batches as the scanner
    produces them and writes whole row groups, where an INSERT per chunk (each its own commit)
    left a partial row group to be rewritten at every commit. The work file is private until
    the rename publishes it, so each INSERT commits on its own (memory stays bounded) and the
    rest of the round is one transaction. Without rows to upcast the streams are the core's
    (`ScanFeed.stream`: no pyarrow, no `duckdb` package), `streams` of them at once
    (`insert_streams`); with some, one pyarrow stream (`reader`, which adds the upcast columns).
    A small round takes `insert_small`."""
    if feed.total <= SMALL_ROUND_BYTES:
        insert_small(con, feed, gen)
        return
    failed: list[BaseException] = []
    if no_upcasts(feed):
        feed.start(arrow=False, pieces=streams > 1)
        insert_streams(con, feed, gen, failed, streams)
    else:
        arrow_scans()
        feed.start()
        con.register("_scan", feed.reader(failed))
        con.execute(_INSERT_READER, [gen])
        con.unregister("_scan")
    if failed:  # the scan failed: the stream ended early, the work file is dropped
        raise failed[0]


def stream_count(threads: int, files: int) -> int:
    """How many INSERTs a big round of `files` part files runs at once (`insert_streams`): the
    scanner keeps a core per file busy, each INSERT one more; the INSERTs share the cores the
    scanner leaves, at most MAX_STREAMS, at least one. A second INSERT without a core of its
    own only costs CPU: 0.4 CPU-s and 70 MB peak RSS more for a 1M-event, 4-file rebuild on 2
    cores (under load); for one 100k-event file on 2 cores (quiet, 8 interleaved pairs), two
    INSERTs took 0.48-0.66 s (0.52-0.70 CPU-s) where one took 0.45-0.59 s (0.47-0.60)."""
    return max(1, min(scan_width(threads) - files, MAX_STREAMS))


MAX_STREAMS = 4


def insert_streams(
    con: duckdb.DuckDBPyConnection,
    feed: ScanFeed,
    gen: int,
    failed: list[BaseException],
    n: int,
) -> None:
    """`n` INSERTs at once, on `con` and `n - 1` cursors of it (threads; DuckDB releases the
    GIL), each over its own `ScanFeed.stream` of the one scan (each piece goes to one stream):
    DuckDB reads one Arrow stream on one thread, so one INSERT left the other cores to the
    scanner alone. Each INSERT commits on its own, so `con` must not be in a transaction (a
    round updating the published file in place takes n = 1). Raises the first error of an
    INSERT once all have ended."""
    curs = [con.cursor() for _ in range(n - 1)]
    for c in curs:  # per connection: DuckDB's bar goes to stdout
        c.execute("SET enable_progress_bar = false")
    errors: list[BaseException] = []

    def run(c: duckdb.DuckDBPyConnection) -> None:
        try:
            register_stream(c, "_scan", feed.stream(failed))
            c.execute(_INSERT_STREAM, [gen])
            c.unregister("_scan")
        except BaseException as e:  # raised below, in the indexing thread
            errors.append(e)

    workers = [threading.Thread(target=run, args=(c,), name="ledgerx-insert") for c in curs]
    try:
        for w in workers:
            w.start()
        run(con)
        if errors:  # this INSERT failed (or was interrupted): the others need not finish
            for c in curs:
                c.interrupt()
    finally:
        for w in workers:
            w.join()
        for c in curs:
            c.close()
    if errors:
        raise errors[0]


def no_upcasts(feed: ScanFeed) -> bool:
    """Whether no row of the round can need an upcast (no upcaster, or no event type has a
    version above 1)."""
    return feed.upcaster is None or all(v <= 1 for v in feed.newest.values())


_INSERT_READER = """INSERT INTO events
    SELECT event_id, event_type, schema_version, ts, run_id, writer, seq, data,
           file, "offset", line_bytes, ?, data_upcast, upcast_version, shape, tint, tnum
    FROM _scan"""
_INSERT_STREAM = """INSERT INTO events
    SELECT event_id, event_type, schema_version, ts, run_id, writer, seq, data,
           file, "offset", line_bytes, ?, NULL, NULL, shape, tint, tnum
    FROM _scan"""


def insert_small(con: duckdb.DuckDBPyConnection, feed: ScanFeed, gen: int) -> None:
    """The rows of a small round, batch by batch as the core scanned them (DuckDB reads a
    batch through the Arrow PyCapsule interface): `file`, the upcast columns and the JSON type
    of `data` are added here as `ScanFeed._to_arrow` adds them, so both paths store the same
    rows; pyarrow is never imported. A batch with no row to upcast (the usual case) takes one
    INSERT; the table of upcast rows is made only for a batch that has some. When no event
    type has a version to upcast from, the batches go in as bound lists (`insert_lists`)."""
    if no_upcasts(feed):
        insert_lists(con, feed, gen)
        return
    arrow_scans()
    upc = False
    for b in feed.direct():
        con.register("_batch", b)
        try:
            up = upcast_rows(con, "_batch", feed.upcaster, feed.newest, feed.upcast_errors)
            if up:
                if not upc:
                    con.execute(
                        'CREATE OR REPLACE TEMP TABLE _upc ("offset" BIGINT, '
                        "data_upcast VARCHAR, v INTEGER)"
                    )
                    upc = True
                con.execute("DELETE FROM _upc")
                con.executemany("INSERT INTO _upc VALUES (?, ?, ?)", up)
            con.execute(_INSERT_UPCAST if up else _INSERT_PLAIN, [b.file, gen])
        finally:
            con.unregister("_batch")
    if upc:
        con.execute("DROP TABLE _upc")


_COLUMNS = """b.event_id, b.event_type, b.schema_version, b.ts, b.run_id, b.writer, b.seq,
              CAST(b.data AS JSON), ?, b."offset", b.line_bytes, ?"""
_INSERT_PLAIN = f"""INSERT INTO events
    SELECT {_COLUMNS}, NULL, NULL, b.shape, b.tint, b.tnum FROM _batch b"""
# The shape and typed values describe the data as written: none for an upcast row.
_INSERT_UPCAST = f"""INSERT INTO events
    SELECT {_COLUMNS}, u.data_upcast, u.v, CASE WHEN u.data_upcast IS NULL THEN b.shape END,
           CASE WHEN u.data_upcast IS NULL THEN b.tint END,
           CASE WHEN u.data_upcast IS NULL THEN b.tnum END
    FROM _batch b LEFT JOIN _upc u USING ("offset")"""


def insert_lists(con: duckdb.DuckDBPyConnection, feed: ScanFeed, gen: int) -> None:
    """A small round's rows without upcasts, each batch's columns (`ScanBatch.columns`) bound
    as JSON lists (`json_list`) and unnested side by side: DuckDB reads no Python Arrow object,
    so the `duckdb` package's Python layer is never imported (`ledgerx.index.engine`). The same
    rows as `insert_small`'s: `ts` from microseconds, `data` typed JSON, `file` and `gen` added."""
    for b in feed.direct():
        con.execute(_INSERT_LISTS, [*map(json_list, b.columns()), b.file, gen])


_INSERT_LISTS = """INSERT INTO events
    SELECT event_id, event_type, schema_version, make_timestamptz(ts), run_id, writer, seq,
           CAST(data AS JSON), $14, "offset", line_bytes, $15, NULL, NULL, shape, tint, tnum
    FROM (SELECT unnest($1::JSON::VARCHAR[]) AS event_id, unnest($2::JSON::VARCHAR[]) AS event_type,
                 unnest($3::JSON::INTEGER[]) AS schema_version, unnest($4::JSON::BIGINT[]) AS ts,
                 unnest($5::JSON::VARCHAR[]) AS run_id, unnest($6::JSON::VARCHAR[]) AS writer,
                 unnest($7::JSON::BIGINT[]) AS seq, unnest($8::JSON::VARCHAR[]) AS data,
                 unnest($9::JSON::VARCHAR[]) AS shape, unnest($10::JSON::BIGINT[][]) AS tint,
                 unnest($11::JSON::DOUBLE[][]) AS tnum, unnest($12::JSON::BIGINT[]) AS "offset",
                 unnest($13::JSON::INTEGER[]) AS line_bytes)"""

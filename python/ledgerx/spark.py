"""`ledgerx.spark.tables(spark, path)`: the index's tables and views as Spark DataFrames, computed
from the log itself (docs/scale.md). Needs the `ledgerx[spark]` extra (pyspark).

`path` is a ledger root — `events/` and `archive/` below it — as a local path or any Hadoop
filesystem URL (hdfs://, s3a://, ...). Part files are read whole (`binaryFile`) and split by the
same Rust scanner the indexer uses (`ledgerx._core.scan_files`, run on the executors inside
`mapInArrow`), so a line is valid in Spark exactly when it is valid in the index: CRC-32C checked,
torn and corrupt lines skipped, the unterminated tail left out. Archived days are read from their
Parquet (a part whose JSONL is still there is read from the JSONL, as the indexer does). An
`event_id` seen twice keeps its first line in (file, offset) order, as in the index.

The derived tables repeat the index's SQL (ledgerx.index.schema) in Spark SQL; JSON columns are
JSON text (compare them as parsed values: two engines may space or format numbers differently).
Not carried over: upcasting (Spark reads `data` as written; the index's `data_upcast` comes from
upcasters registered in the indexing process) and the index's bookkeeping columns (`gen`).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from ledgerx.index.indexer import DEFAULT_STALE_AFTER_S

EVENTS_DDL = (
    "event_id string, event_type string, schema_version int, ts timestamp, run_id string, "
    "writer string, seq bigint, data string, file string, offset bigint, line_bytes int"
)
_DAY_GLOB = "day=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"


def _scan_partition(batches: Iterator[Any]) -> Iterator[Any]:
    """mapInArrow: (path, content) of whole part files → one row per valid event."""
    import pyarrow as pa

    from ledgerx import _core
    from ledgerx.errors import LedgerIOError
    from ledgerx.retention import ARCHIVE_SCHEMA

    schema = ARCHIVE_SCHEMA  # the scanner's columns, as retention archives them
    with tempfile.TemporaryDirectory(prefix="ledgerx-spark-") as tmp:
        for batch in batches:
            paths = batch.column("path").to_pylist()
            contents = batch.column("content").to_pylist()
            for path, content in zip(paths, contents, strict=True):
                day, name = path.rstrip("/").split("/")[-2:]
                rel = f"{day}/{name}"
                os.makedirs(os.path.join(tmp, day), exist_ok=True)
                local = os.path.join(tmp, rel)
                with open(local, "wb") as f:
                    f.write(content)
                (b,) = _core.scan_files(tmp, [(rel, 0)], strict=False, max_bytes=len(content) + 1)
                os.unlink(local)
                if b.error is not None:
                    raise LedgerIOError(errno.EIO, str(b.error), path)
                rb = pa.record_batch(b)
                if rb.num_rows == 0:
                    continue
                cols = {n: rb.column(n) for n in rb.schema.names}
                cols["file"] = pa.array([rel] * rb.num_rows, pa.string())
                yield pa.RecordBatch.from_arrays(
                    [cols[f.name].cast(f.type) for f in schema], schema=schema
                )


def raw_events(spark: Any, path: str) -> Any:
    """Every valid line of the log and of the archive, duplicates included."""
    from pyspark.sql import functions as F

    base = _base(path)
    jsonl = _load(spark.read.format("binaryFile"), f"{base}/events/{_DAY_GLOB}/*.jsonl")
    if jsonl is None:
        ev = spark.createDataFrame([], EVENTS_DDL)
    else:
        ev = jsonl.select("path", "content").mapInArrow(_scan_partition, EVENTS_DDL)
    # Archived parts (ledgerx.retention): the same columns, so no schema inference job.
    arch = _load(spark.read.schema(EVENTS_DDL), f"{base}/archive/events/{_DAY_GLOB}/*.parquet")
    if arch is None:
        return ev
    if jsonl is None:
        return arch
    # A part whose JSONL is still there (retention stopped before removing it) is read from the
    # JSONL, as the indexer does; the paths come from the listing, not from a second scan.
    present = jsonl.select(F.regexp_extract("path", r"(day=[^/]+/[^/]+)$", 1).alias("file"))
    return ev.unionByName(arch.join(present, "file", "left_anti"))


def tables(spark: Any, path: str, *, stale_after: float = DEFAULT_STALE_AFTER_S) -> dict[str, Any]:
    """{name: DataFrame} for events, runs_d, runs_status, phase_timings, trial_results,
    trial_metrics, baseline_results, artifacts_catalog, alerts, latest_runs, run_phase_summary.
    `stale_after`: seconds without an event after which a running run is `abandoned`."""
    from ledgerx import spark_sql as Q

    raw = raw_events(spark, path)
    raw.createOrReplaceTempView("ledgerx_raw_events")
    out: dict[str, Any] = {}
    for name, sql in Q.queries(float(stale_after)):
        df = spark.sql(sql)
        if name in Q.CACHED:
            df = df.cache()
        df.createOrReplaceTempView(f"ledgerx_{name}")
        out[name] = df
    return out


def _base(path: str) -> str:
    if "://" in path or path.startswith("file:"):
        return path.rstrip("/")
    return "file://" + os.path.abspath(path)


def _load(reader: Any, glob: str) -> Any:
    """A DataFrame over the files matching `glob`, or None when none does."""
    from pyspark.errors import AnalysisException

    try:
        return reader.parquet(glob) if "/archive/" in glob else reader.load(glob)
    except AnalysisException as e:
        if "PATH_NOT_FOUND" in str(e) or "Path does not exist" in str(e):
            return None
        raise

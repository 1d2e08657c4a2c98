"""`ledgerx.spark.tables`: every table and view equals the DuckDB index's, row for row, on a
fixture log with duplicates, bad lines, a torn tail, a failed and a running run, and an
archived day (Spark local[2] on 127.0.0.1, one session for the module)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("pyspark")

from index_support import DAY_US, T0, write_sweep  # noqa: E402

from ledgerx.index import build_index  # noqa: E402
from ledgerx.retention import run_retention  # noqa: E402

TABLES = {  # name: (index file, columns the index keeps for itself)
    "events": ("runs", {"gen", "data_upcast", "upcast_version", "shape", "tint", "tnum"}),
    "runs_d": ("runs", set()),
    "runs_status": ("runs", set()),
    "phase_timings": ("runs", set()),
    "trial_results": ("runs", set()),
    "trial_metrics": ("runs", set()),
    "baseline_results": ("runs", set()),
    "artifacts_catalog": ("runs", set()),
    "alerts": ("alerts", set()),
    "latest_runs": ("runs", set()),
    "run_phase_summary": ("runs", set()),
}
ORDERED = {"alerts", "latest_runs", "run_phase_summary"}  # views with an ORDER BY


@pytest.fixture(scope="module")
def spark():
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[2]")
        .appName("ledgerx-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # a short run on tiny data: C1-only JIT and no whole-stage codegen start faster
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.sql.codegen.wholeStage", "false")
        .getOrCreate()
    )
    yield s
    s.stop()


def make_fixture(root: Path) -> None:
    today = date.today().toordinal() - date(1970, 1, 1).toordinal()
    recent = today * DAY_US - 3 * DAY_US
    write_sweep(root, runs=2, trials=6, day_us=T0, seed=1)  # archived below
    old = sorted((root / "events").glob("day=2026-01-01/part-*.jsonl"))[0]
    write_sweep(root, runs=3, trials=8, day_us=recent, seed=2, fail_last=True)
    write_sweep(root, runs=1, trials=3, day_us=recent + 3600 * 10**6, seed=3, leave_running=True)
    parts = sorted((root / "events").glob("day=*/part-*.jsonl"))
    new_day = parts[-1].parent
    # duplicates: a part of the archived day, and a part of the recent day, copied
    shutil.copy(old, new_day / "part-000090.jsonl")
    src = parts[-1].read_bytes().splitlines(keepends=True)
    bad = src[0].replace(b'"crc":"', b'"crc":"0').replace(b'"}\n', b'"}\n')
    no_crc = src[1][: src[1].rindex(b',"crc":')] + b"}\n"
    (new_day / "part-000091.jsonl").write_bytes(
        src[2]  # a duplicate of a line in another file
        + b'{"not": "an event"}\n'  # not v1: bad line
        + bad  # wrong crc: bad line
        + b"\xff\xfe garbage\n"
        + no_crc  # no crc: accepted (not strict); a duplicate too
        + b'{"event_id":"0190'  # torn tail: never read
    )
    # a trial recorded twice (a retried task): trial_results shows the latest record once
    import ledgerx

    with ledgerx.open(root, durability="fsync") as led:
        led.emit(
            "trial.recorded",
            {"trial_id": 0, "params": {"fast": 9}, "metrics": {"sharpe": 9.5}},
            run_id=f"run-2-{recent // DAY_US}-0",
        )
    rep = run_retention(root, older_than_days=30)
    assert rep.days and (root / "archive").is_dir()


def duck_rows(root: Path, name: str, file: str, drop: set[str]) -> tuple[list[str], list, dict]:
    import duckdb

    con = duckdb.connect(str(root / "index" / f"{file}.duckdb"), read_only=True)
    try:
        desc = con.execute(f"DESCRIBE {name}").fetchall()
        cols = [c[0] for c in desc if c[0] not in drop]
        types = {c[0]: c[1] for c in desc}
        sel = ", ".join(
            f'epoch_us("{c}")' if types[c].startswith("TIMESTAMP") else f'"{c}"' for c in cols
        )
        rows = con.execute(f"SELECT {sel} FROM {name}").fetchall()
    finally:
        con.close()
    return cols, rows, types


def norm(row: tuple, cols: list[str], types: dict[str, str]) -> tuple:
    out = []
    for c, v in zip(cols, row, strict=True):
        if types[c] == "JSON" and v is not None:
            v = json.loads(v)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if c == "trial_id" and v is not None:  # Spark has no UNION type: its ids are text
            v = str(v)
        out.append(json.dumps(v, sort_keys=True))
    return tuple(out)


@pytest.mark.heavy
def test_every_table_equals_duckdb_row_for_row(tmp_path, spark):
    """Then an empty root, in the same test: one Spark JVM per test run (each pytest-xdist
    worker that ran a Spark test would start its own, ~20 s)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    from ledgerx.spark import tables

    root = tmp_path / "ledger"
    make_fixture(root)
    rep = build_index(root)
    assert rep.duplicates > 0 and rep.bad_lines >= 3
    # the retried trial: both records in events, the latest once in trial_results
    run0 = [r for r in duck_rows(root, "runs_d", "runs", set())[1] if r[0].startswith("run-2-")]
    rid0 = sorted(r[0] for r in run0)[0]
    _, trials, _ = duck_rows(root, "trial_results", "runs", set())
    mine = [t for t in trials if t[1] == rid0 and t[2] == 0]
    assert len(mine) == 1 and json.loads(mine[0][4]) == {"sharpe": 9.5}
    dfs = tables(spark, str(root))
    assert set(dfs) == set(TABLES)
    for name, (file, drop) in TABLES.items():
        cols, drows, types = duck_rows(root, name, file, drop)
        df = dfs[name]
        assert df.columns == cols, name
        df = df.select(
            *[
                F.unix_micros(F.col(f.name)).alias(f.name)
                if isinstance(f.dataType, TimestampType)
                else F.col(f.name)
                for f in df.schema.fields
            ]
        )
        srows = [tuple(r) for r in df.collect()]
        want = [norm(r, cols, types) for r in drows]
        got = [norm(r, cols, types) for r in srows]
        if name not in ORDERED:
            want, got = sorted(want), sorted(got)
        assert got == want, name
        assert len(want) > 0, name
    _an_empty_root_gives_empty_tables(tmp_path / "empty", spark)


def _an_empty_root_gives_empty_tables(tmp_path, spark):
    from ledgerx.spark import tables

    (tmp_path / "ledger" / "events").mkdir(parents=True)
    dfs = tables(spark, str(tmp_path / "ledger"))
    assert set(dfs) == set(TABLES) and dfs["events"].count() == 0

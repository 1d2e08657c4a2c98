"""A big round without rows to upcast streams the core's batches to DuckDB as one Arrow C stream
(`_core.ScanStream`, `ScanFeed.stream`), without pyarrow or the `duckdb` package: it stores
exactly what pyarrow's stream (`ScanFeed.reader`, kept for rounds with upcasts) stores, an error
of the scan fails the round as before, and a `ledgerx rebuild --full-rebuild` process of a big
log imports neither pyarrow nor the `duckdb` package (issue #15, target 5b)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from index_support import (
    DAY_US,
    T0,
    WithoutAttribute,
    index_events,
    part_files,
    rebuild_in_fresh_process,
    reference_events,
    write_sweep,
)
from test_index_small_round import _log, _report, _rows

from ledgerx import _core
from ledgerx.index import IndexPaths, build_index
from ledgerx.index import indexer as indexer_mod
from ledgerx.index import insert as insert_mod
from ledgerx.index import scan as scan_mod


def _paths_taken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which stream each big round took: 'core' (`ScanFeed.stream`) or 'pyarrow' (`reader`)."""
    from ledgerx.index.scan import ScanFeed

    taken: list[str] = []
    for name, label in (("stream", "core"), ("reader", "pyarrow")):
        real = getattr(ScanFeed, name)

        def spy(
            self: ScanFeed, failed: list[BaseException], real: Any = real, lb: str = label
        ) -> Any:
            taken.append(lb)
            return real(self, failed)

        monkeypatch.setattr(ScanFeed, name, spy)
    return taken


def test_the_core_stream_stores_what_the_pyarrow_stream_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several part files, bad lines, a repeated event id, null run ids, shapes; each round
    streamed in many chunks (many batches per file), in pieces of 3 rows, three core streams
    at once but one in place: the same rows, checkpoints, bad lines, derived tables and
    reports, through a full rebuild, a copy and the alternate in place."""
    core, arrow = tmp_path / "core", tmp_path / "arrow"
    taken = _paths_taken(monkeypatch)
    monkeypatch.setattr(indexer_mod, "stream_count", lambda threads, files: 3)  # three INSERTs
    monkeypatch.setattr(scan_mod, "PIECE_ROWS", 3)  # pieces at odd rows: null run ids inside
    monkeypatch.setattr(insert_mod, "SMALL_ROUND_BYTES", -1)  # every round streams
    real, use_pyarrow = insert_mod.no_upcasts, [False]
    monkeypatch.setattr(insert_mod, "no_upcasts", lambda feed: real(feed) and not use_pyarrow[0])
    reports: dict[str, list[Any]] = {"core": [], "arrow": []}
    for rnd in range(3):
        _log(core, 1 + rnd)
        shutil.copytree(core / "events", arrow / "events", dirs_exist_ok=True)  # same log
        use_pyarrow[0] = False
        reports["core"].append(_report(build_index(core, chunk_bytes=1)))
        use_pyarrow[0] = True
        reports["arrow"].append(_report(build_index(arrow, chunk_bytes=1)))
        assert _rows(core) == _rows(arrow)
    assert taken == ["core"] * 3 + ["pyarrow"] + ["core"] * 3 + ["pyarrow"] + ["core", "pyarrow"]
    assert reports["core"] == reports["arrow"]
    ev = _rows(core)["events"]
    assert len({r[9] for r in ev}) > 1 and {r[8] for r in ev} == {"JSON"}  # files; JSON data
    assert any(r[4] is None for r in ev) and any(r[16] for r in ev)  # null run ids, shapes
    assert _rows(core)["bad"] and reports["core"][0][3] == 1  # a bad line, a duplicate skipped


def test_a_round_without_upcasts_takes_the_core_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = _paths_taken(monkeypatch)
    monkeypatch.setattr(insert_mod, "SMALL_ROUND_BYTES", -1)
    write_sweep(tmp_path, runs=2, trials=30, seed=1)
    build_index(tmp_path, upcaster=None)
    write_sweep(tmp_path, runs=1, trials=30, seed=2, day_us=T0 + DAY_US)
    build_index(tmp_path)  # the root's registry: every built-in type at version 1
    assert set(taken) == {"core"}
    assert index_events(IndexPaths.for_root(tmp_path).runs) == reference_events(tmp_path)


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("stream", ["core", "core x3", "pyarrow"])
def test_an_error_of_the_scan_mid_stream_fails_the_round_and_keeps_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: str
) -> None:
    """The producer fails after some batches went to DuckDB (here: the progress callback of
    the third round raises): the round raises that error (every stream ends), the published
    index is the one before, no work file is left, and the next round indexes everything
    once."""
    monkeypatch.setattr(insert_mod, "SMALL_ROUND_BYTES", -1)
    monkeypatch.setattr(indexer_mod, "stream_count", lambda t, f: 3 if stream == "core x3" else 1)
    if stream == "pyarrow":
        monkeypatch.setattr(insert_mod, "no_upcasts", lambda feed: False)
    write_sweep(tmp_path, runs=1, trials=20, seed=3)
    build_index(tmp_path)
    paths = IndexPaths.for_root(tmp_path)
    before = index_events(paths.runs)
    write_sweep(tmp_path, runs=3, trials=200, seed=4, day_us=T0 + DAY_US)
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise _Boom("scan failed")

    with pytest.raises(_Boom):
        build_index(tmp_path, chunk_bytes=1, progress=progress)
    assert index_events(paths.runs) == before
    assert not list(paths.runs.parent.glob(".building-*"))
    rep = build_index(tmp_path, chunk_bytes=1)
    assert rep.bad_lines == 0 and rep.duplicates == 0
    assert index_events(paths.runs) == reference_events(tmp_path)


def test_a_scan_stream_is_exported_once_and_reports_a_bad_item(tmp_path: Path) -> None:
    import _duckdb

    from ledgerx.index.engine import register_stream

    write_sweep(tmp_path, runs=1, trials=5)
    ev = tmp_path / "events"
    rel = part_files(tmp_path)[0].relative_to(ev).as_posix()
    batches = [b for r in _core.Scanner(str(ev), [(rel, 0)]) for b in r]
    s = _core.ScanStream(iter(batches))
    s.__arrow_c_stream__()
    with pytest.raises(ValueError, match="already exported"):
        s.__arrow_c_stream__()
    con = _duckdb.connect()
    register_stream(con, "_s", _core.ScanStream(iter([*batches, "not a batch"])))
    with pytest.raises(_duckdb.Error, match="ScanBatch"):
        con.execute("SELECT count(*) FROM _s").fetchall()
    register_stream(con, "_t", _core.ScanStream(iter(batches)))
    got = con.execute("SELECT count(*), any_value(file), typeof(any_value(data)) FROM _t")
    assert got.fetchall() == [(sum(b.num_rows for b in batches), rel, "JSON")]


def test_a_duckdb_without_the_private_registration_reads_the_same_rows(tmp_path: Path) -> None:
    """`register_stream` falls back to the package's `register` (the engine's
    `_register_arrow_source` is private API): the same rows, `data` still JSON."""
    import _duckdb

    from ledgerx.index.engine import register_stream

    write_sweep(tmp_path, runs=2, trials=7)
    ev = tmp_path / "events"
    rel = part_files(tmp_path)[0].relative_to(ev).as_posix()
    con = _duckdb.connect()
    rows = {}
    for name, target in (
        ("engine", con),
        ("package", WithoutAttribute(con, "_register_arrow_source")),
    ):
        batches = [b for r in _core.Scanner(str(ev), [(rel, 0)]) for b in r]
        register_stream(target, f"_{name}", _core.ScanStream(iter(batches)))
        q = f'SELECT *, typeof(data) FROM _{name} ORDER BY "offset"'
        rows[name] = con.execute(q).fetchall()
    assert rows["engine"] == rows["package"]
    lines = (ev / rel).read_bytes().count(b"\n")
    assert len(rows["engine"]) == lines and rows["engine"][0][-1] == "JSON"


def test_a_big_full_rebuild_process_imports_neither_pyarrow_nor_the_duckdb_package(
    root: Path,
) -> None:
    write_sweep(root, runs=4, trials=4000)  # over SMALL_ROUND_BYTES: the streamed insert
    size = sum(p.stat().st_size for p in part_files(root))
    assert size > insert_mod.SMALL_ROUND_BYTES
    _, got = rebuild_in_fresh_process(
        root, ["--full-rebuild"], ("pyarrow", "numpy", "pandas", "duckdb")
    )
    assert got == {"rc": 0, "heavy": []}
    assert index_events(IndexPaths.for_root(root).runs) == reference_events(root)


@pytest.mark.parametrize("end", ["done", "error"])
def test_consumers_sharing_a_producer_take_each_item_once_and_all_see_its_end(end: str) -> None:
    """`Producer.items` from three threads at once (the streams of one big round): every item
    goes to exactly one consumer, and the end or the producer's exception reaches them all."""
    from ledgerx.index.scan import Producer

    def produce() -> None:
        for i in range(200):
            p.put(i)
        p.put(None if end == "done" else _Boom("scan failed"))

    p = Producer(produce, "test-producer", 2)
    got: list[int] = []
    ended: list[str] = []

    def consume() -> None:
        try:
            for i in p.items():
                got.append(i)
            ended.append("done")
        except _Boom:
            ended.append("error")

    threads = [threading.Thread(target=consume, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    p.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)  # none waits for an item that never comes
    p.stop()
    assert sorted(got) == list(range(200)) and ended == [end] * 3


def test_extra_inserts_only_for_cores_the_scan_leaves_idle() -> None:
    assert insert_mod.stream_count(2, 1) == 1  # one part file on two cores: scan + one INSERT
    assert insert_mod.stream_count(3, 1) == 2
    assert insert_mod.stream_count(2, 4) == 1  # the scan keeps both cores busy
    assert insert_mod.stream_count(2, 2) == 1
    assert insert_mod.stream_count(8, 5) == 3
    assert insert_mod.stream_count(16, 1) == insert_mod.MAX_STREAMS
    assert insert_mod.stream_count(1, 1) == 1


def test_pieces_of_a_batch_hold_its_rows_once_in_order(tmp_path: Path) -> None:
    """`ScanBatch.pieces`: every row once, in order, through the lists and through the Arrow
    stream (a piece starts at an odd row: string and list offsets and null bits from there)."""
    import _duckdb

    from ledgerx.index.engine import register_stream

    write_sweep(tmp_path, runs=2, trials=7)
    ev = tmp_path / "events"
    rel = part_files(tmp_path)[0].relative_to(ev).as_posix()
    (b,) = [b for r in _core.Scanner(str(ev), [(rel, 0)]) for b in r]
    cols = b.columns()
    assert any(x is None for x in cols[4])  # null run ids
    for n in (1, 3, 8, b.num_rows, b.num_rows + 5):
        pieces = b.pieces(n)
        assert [p.num_rows for p in pieces[:-1]] == [n] * (len(pieces) - 1)
        assert sum(p.num_rows for p in pieces) == b.num_rows
        joined = [sum((list(p.columns()[i]) for p in pieces), []) for i in range(len(cols))]
        assert joined == [list(c) for c in cols]
        assert all(p.file == b.file and p.bad_lines == [] for p in pieces)
        con = _duckdb.connect()
        register_stream(con, "_s", _core.ScanStream(iter(pieces)))
        got = con.execute(
            'SELECT event_id, run_id, data::VARCHAR, shape, tint, tnum, "offset", file FROM _s'
        ).fetchall()
        want = list(
            zip(*(cols[i] for i in (0, 4, 7, 8, 9, 10, 11)), [rel] * b.num_rows, strict=True)
        )
        assert got == want


def test_a_failed_insert_among_several_fails_the_round_and_keeps_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One of three INSERTs fails (its stream yields an item that is not a batch, mid-round):
    the round raises DuckDB's error once the others ended, the published index stays, and
    the next round indexes every event once."""
    import _duckdb

    monkeypatch.setattr(insert_mod, "SMALL_ROUND_BYTES", -1)
    monkeypatch.setattr(indexer_mod, "stream_count", lambda t, f: 3)
    write_sweep(tmp_path, runs=1, trials=20, seed=5)
    build_index(tmp_path)
    paths = IndexPaths.for_root(tmp_path)
    before = index_events(paths.runs)
    write_sweep(tmp_path, runs=3, trials=200, seed=6, day_us=T0 + DAY_US)
    real = insert_mod.register_stream
    calls: list[int] = []

    def bad_second(con: Any, name: str, stream: Any) -> None:
        calls.append(1)
        if len(calls) != 2:
            return real(con, name, stream)
        return real(con, name, _core.ScanStream(iter(["not a batch"])))

    monkeypatch.setattr(insert_mod, "register_stream", bad_second)
    with pytest.raises(_duckdb.Error, match="ScanBatch"):
        build_index(tmp_path, chunk_bytes=1)
    assert len(calls) == 3
    assert index_events(paths.runs) == before
    assert not list(paths.runs.parent.glob(".building-*"))
    monkeypatch.setattr(insert_mod, "register_stream", real)
    build_index(tmp_path, chunk_bytes=1)
    assert index_events(paths.runs) == reference_events(tmp_path)


def test_the_core_stream_has_the_scan_schema_columns_without_the_upcast_ones() -> None:
    """`_core.ScanStream` spells the batch layout a second time (in Rust): the same names and
    types, in order, as `scan_schema()` less the two upcast columns (`file` dictionary-encoded;
    nullability aside)."""
    import pyarrow as pa

    from ledgerx.index.scan import scan_schema

    core = pa.schema(_core.ScanStream(iter([])))
    want = [f for f in scan_schema() if f.name not in ("data_upcast", "upcast_version")]
    assert core.names == [f.name for f in want]
    for got, exp in zip(core, want, strict=True):
        t = got.type.value_type if pa.types.is_dictionary(got.type) else got.type
        assert t == exp.type, got.name

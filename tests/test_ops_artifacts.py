"""Run artifacts: Parquet/JSON files under artifacts/runs/{run_id}/, atomic, recorded by
artifact.created, listed by `ledgerx show`."""

from __future__ import annotations

import errno
import hashlib
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ops_support import wait_for

import ledgerx
from ledgerx.index import build_index

from conftest import cli


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_tables_and_json_are_written_recorded_and_listed(root: Path) -> None:
    trades = pa.table({"ts": pa.array([1, 2, 3], pa.int64()), "px": [1.5, 2.5, 3.5]})
    with ledgerx.open(root) as led:
        with led.run(run_kind="backtest", config={"k": 1}, data_fingerprint="fp") as run:
            run.summary["sharpe"] = 1.25
            a1 = run.artifacts.write_trades(trades)
            a2 = run.artifacts.write_equity_curve(trades.to_batches()[0])
            a3 = run.artifacts.write_table(
                "signals.v2", duckdb.sql("SELECT range AS i FROM range(7)")
            )
            a4 = run.artifacts.write_summary()
            a5 = run.artifacts.write_config()
            a6 = run.artifacts.write_json("extra.json", [1, "x", None])  # extension not doubled
            rid = run.run_id
    folder = root / "artifacts" / "runs" / rid
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "equity_curve.parquet",
        "extra.json",
        "signals.v2.parquet",
        "summary.json",
        "trades.parquet",
    ]
    assert pq.read_table(folder / "trades.parquet").equals(trades)
    assert (
        pq.ParquetFile(folder / "trades.parquet").metadata.row_group(0).column(0).compression
        == "ZSTD"
    )
    assert json.loads((folder / "summary.json").read_text()) == {"sharpe": 1.25}
    assert json.loads((folder / "config.json").read_text()) == {"k": 1}
    assert [a.rows for a in (a1, a2, a3, a4, a5, a6)] == [3, 3, 7, None, None, None]
    for a in (a1, a2, a3, a4, a5, a6):
        p = root / a.path
        assert p.parent == folder and a.bytes == p.stat().st_size and a.sha256 == _sha(p)

    build_index(root)
    with ledgerx.Reader(root) as r:
        cat = r.sql(
            "SELECT name, path, format, bytes, sha256, rows FROM artifacts_catalog "
            "WHERE run_id = ? ORDER BY created_at",
            [rid],
        ).fetchall()
        paths = json.loads(
            r.sql("SELECT artifact_paths FROM runs_d WHERE run_id = ?", [rid]).fetchall()[0][0]
        )
    assert cat == [
        (a.name, a.path, a.format, a.bytes, a.sha256, a.rows) for a in (a1, a2, a3, a4, a5, a6)
    ]
    assert paths == [a.path for a in (a1, a2, a3, a4, a5, a6)]  # run.completed carries them
    out = cli("show", rid, "--root", str(root), "--json")
    assert out.returncode == 0, out.stderr
    assert [x["path"] for x in json.loads(out.stdout)["artifacts"]] == paths
    text = cli("show", rid, "--root", str(root))
    names = [ln.split()[0] for ln in text.stdout.splitlines()[-6:]]
    assert names == ["trades", "equity_curve", "signals.v2", "summary", "config", "extra"]


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/b", "..", "x..y", ".hidden", "", "/abs", "a\\b", "a" * 65, "ok\x00", " sp", 7],
)
def test_bad_names_are_refused_and_write_nothing(root: Path, name: object) -> None:
    with ledgerx.open(root) as led:
        with led.run(run_kind="t", config={}, data_fingerprint="f") as run:
            with pytest.raises(ledgerx.SchemaError, match="artifact name"):
                run.artifacts.write_json(name, {"a": 1})  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="artifact name"):
                run.artifacts.write_table(name, pa.table({"a": [1]}))  # type: ignore[arg-type]
    files = [p for p in root.rglob("*") if p.is_file() and "artifacts" in p.parts]
    assert files == []
    assert (
        not (root.parent / "evil.json").exists() and not (root / "artifacts" / "evil.json").exists()
    )


def test_non_strict_json_and_unsupported_data_are_refused(root: Path) -> None:
    with ledgerx.open(root) as led:
        with led.run(run_kind="t", config={}, data_fingerprint="f") as run:
            with pytest.raises(ledgerx.SchemaError, match="strict JSON"):
                run.artifacts.write_json("m", {"x": float("nan")})
            with pytest.raises(ledgerx.SchemaError, match="strict JSON"):
                run.artifacts.write_json("m", {"x": object()})
            with pytest.raises(ledgerx.SchemaError, match="unsupported data"):
                run.artifacts.write_table("t", [{"a": 1}])
            folder = root / "artifacts" / "runs" / run.run_id
    assert not folder.exists() or list(folder.iterdir()) == []


KILLED_WRITER = r"""
import sys, pyarrow as pa, ledgerx
root, n = sys.argv[1], int(sys.argv[2])
t = pa.table({"i": pa.array(range(n), pa.int64()), "s": pa.array([str(i) * 3 for i in range(n)])})
led = ledgerx.open(root, durability="fsync")
with led.run(run_kind="t", config={}, data_fingerprint="f", run_id="run-kill") as run:
    while True:
        run.artifacts.write_table("big", t)
"""


def test_artifact_write_killed_midway_leaves_no_partial_file(root: Path) -> None:
    n = 400_000
    p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(root), str(n)])
    folder = root / "artifacts" / "runs" / "run-kill"
    final = folder / "big.parquet"
    try:
        # Kill while a later write is under way: one write completed (the final name exists)
        # and the temporary file of the next one exists.
        wait_for(
            lambda: final.exists() and list(folder.glob(".big.parquet.tmp-*")),
            120,
            "a second write in progress",
        )
        p.send_signal(signal.SIGKILL)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(30)
    assert p.returncode == -signal.SIGKILL
    # The file under the final name is whole; what is left besides it is temporary files only.
    assert pq.read_table(final).num_rows == n
    leftovers = sorted(x.name for x in folder.iterdir() if x != final)
    assert all(re.fullmatch(r"\.big\.parquet\.tmp-\d+-[0-9a-f]{8}", x) for x in leftovers), (
        leftovers
    )
    # Every artifact.created event points at that complete file with its recorded hash (the
    # same table gives the same bytes every time).
    build_index(root)
    with ledgerx.Reader(root) as r:
        rows = r.sql("SELECT path, sha256, rows FROM artifacts_catalog").fetchall()
    assert rows and set(rows) == {("artifacts/runs/run-kill/big.parquet", _sha(final), n)}


def test_only_numpy_ndarrays_are_read_as_arrays() -> None:
    """A foreign type that is merely *named* ndarray (cupy, jax, ...) is refused with the typed
    error, not handed to pyarrow as if it were numpy's."""
    from ledgerx.artifacts import to_arrow_table
    from ledgerx.errors import SchemaError

    fake = type("ndarray", (), {"__module__": "cupy", "ndim": 1})()
    with pytest.raises(SchemaError, match=r"unsupported data of type cupy\.ndarray"):
        to_arrow_table(fake)


def test_a_file_planted_at_the_temporary_name_is_never_written_through(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary name is created with O_EXCL: a hard link to a file outside the root planted
    there (O_NOFOLLOW does not stop a hard link) makes the write fail, the outside file intact."""
    import os

    import ledgerx.artifacts as arts

    monkeypatch.setattr(arts.secrets, "token_hex", lambda n: "feedf00d")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not yours\n")
    with ledgerx.open(root) as led:
        with led.run(run_kind="t", config={}, data_fingerprint="f") as run:
            folder = root / "artifacts" / "runs" / run.run_id
            folder.mkdir(parents=True)
            tmp = folder / f".summary.json{arts.TMP_MARK}{os.getpid()}-feedf00d"
            os.link(outside, tmp)
            with pytest.raises(ledgerx.LedgerIOError, match="File exists") as ei:
                run.artifacts.write_json("summary", {"a": 1})
            assert ei.value.errno == errno.EEXIST
    assert outside.read_bytes() == b"not yours\n"
    assert not (folder / "summary.json").exists()

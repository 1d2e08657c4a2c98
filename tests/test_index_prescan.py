"""The full rebuild's prescan (`ledgerx.index.prescan.Prescan`): the CLI starts the scan before
importing DuckDB and pyarrow; `build_index` uses it only when it scans exactly what the round
plans to. Oracle: a plain-Python reading of the same files (index_support)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from index_support import T0, index_events, reference_events, write_sweep

from ledgerx.errors import IndexBusyError
from ledgerx.index import IndexPaths, build_index
from ledgerx.index.prescan import Prescan
from ledgerx.index.publish import index_lock
from ledgerx.index.scan import list_part_files

CLI = [sys.executable, "-m", "ledgerx"]


def _trace_env() -> dict[str, str]:
    return {**os.environ, "LEDGERX_INDEX_TRACE": "1"}


def test_the_cli_full_rebuild_uses_the_prescan_and_indexes_every_event_once(
    tmp_path: Path,
) -> None:
    write_sweep(tmp_path, runs=3, trials=50, seed=1)
    write_sweep(tmp_path, runs=2, trials=20, seed=2, day_us=T0 + 86_400_000_000)
    p = subprocess.run(
        [*CLI, "rebuild", "--root", str(tmp_path), "--full-rebuild"],
        capture_output=True,
        text=True,
        env=_trace_env(),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "prescan adopted" in p.stderr
    assert index_events(IndexPaths.for_root(tmp_path).runs) == reference_events(tmp_path)


def test_log_bytes_written_after_the_prescan_make_the_round_scan_again(tmp_path: Path) -> None:
    write_sweep(tmp_path, runs=2, trials=30, seed=3)
    pre = Prescan.full(tmp_path / "events")
    write_sweep(tmp_path, runs=1, trials=30, seed=4)  # a part file appears or grows
    rep = build_index(tmp_path, full_rebuild=True, prescan=pre)
    ref = reference_events(tmp_path)
    assert rep.events == len(ref)
    assert index_events(IndexPaths.for_root(tmp_path).runs) == ref
    assert not pre.running


def test_a_prescan_with_other_options_is_not_used(tmp_path: Path) -> None:
    write_sweep(tmp_path, runs=1, trials=10, seed=5)
    part = next((tmp_path / "events").glob("day=*/*.jsonl"))
    ev = json.loads(part.read_bytes().splitlines()[-1])
    del ev["crc"]  # a line without crc: bad in strict mode only
    ev["event_id"], ev["seq"] = str(uuid.uuid4()), ev["seq"] + 1
    with open(part, "ab") as f:
        f.write(json.dumps(ev, separators=(",", ":")).encode() + b"\n")
    pre = Prescan.full(tmp_path / "events", strict=True)
    rep = build_index(tmp_path, full_rebuild=True, prescan=pre)  # a lax round
    assert (rep.events, rep.bad_lines) == (len(reference_events(tmp_path)), 0)
    assert not pre.running


def test_the_prescan_stops_when_the_round_fails(tmp_path: Path) -> None:
    write_sweep(tmp_path, runs=4, trials=300, seed=6)  # ~6 rounds of 64 KiB (the least)
    ev = tmp_path / "events"
    files = [(rel, 0, size) for rel, _day, size in list_part_files(ev)]
    pre = Prescan(ev, files, chunk=1)  # more rounds than its queue holds: it waits
    time.sleep(0.2)
    assert pre.running
    with index_lock(IndexPaths.for_root(tmp_path)), pytest.raises(IndexBusyError):
        build_index(tmp_path, full_rebuild=True, prescan=pre)
    assert not pre.running


def test_importing_the_prescan_needs_neither_duckdb_nor_pyarrow() -> None:
    code = (
        "import sys, ledgerx.index.prescan; "
        "print(sorted(m for m in ('duckdb', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cli_rebuild_keeps_openblas_to_one_thread_unless_the_user_chose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numpy (imported by pyarrow) must not start spinning BLAS threads in a rebuild process;
    OPENBLAS_NUM_THREADS is read when numpy loads, so the CLI sets it first (a user's value
    stays)."""
    from ledgerx.cli import main

    write_sweep(tmp_path, runs=1, trials=5, seed=1)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert main(["rebuild", "--root", str(tmp_path), "--full-rebuild"]) == 0
    assert os.environ.get("OPENBLAS_NUM_THREADS") == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert main(["rebuild", "--root", str(tmp_path)]) == 0
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"

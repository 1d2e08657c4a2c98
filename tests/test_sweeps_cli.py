"""The CLI as a sweep user meets it, run as real processes: runs filters and "showing N of M",
show with config/tags/baselines/best trial/whole artifact paths and run-id prefixes, trials in
four formats, --json without JSON text inside JSON, --version, a closed pipe, a mistyped root,
--stale-after. Expected values are written out by hand from the events emitted here."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import ledgerx
from ledgerx.index import build_index

from conftest import cli

LONG = "a long note " * 20  # wider than any terminal: never cut in a pipe
SHARPES = [0.5, 3.5, 2.0]


def _make(root: Path, n_runs: int = 25, n_trials: int = 3) -> list[str]:
    ids = []
    with ledgerx.open(root) as led:
        for k in range(n_runs):
            rid = f"run-{k:03d}"
            ids.append(rid)
            kind = "grid" if k % 2 == 0 else "optuna"
            tags = {"user": "ann" if k % 5 == 0 else "bob"}
            cfg = {"symbol": "ES", "k": k, "window": {"days": 5}}
            try:
                with led.run(
                    run_id=rid, run_kind=kind, config=cfg, data_fingerprint="fp", tags=tags
                ) as run:
                    for i in range(n_trials):
                        run.trial(i, {"fast": i, "note": LONG}, {"sharpe": SHARPES[i % 3]})
                    run.baseline("buy_hold", {"sharpe": 0.25})
                    run.summary["k"] = k
                    run.artifacts.write_json("summary", {"k": k})
                    if k % 7 == 3:
                        raise RuntimeError("boom")
            except RuntimeError:
                pass
    build_index(root)
    return ids


@pytest.fixture(scope="module")
def ledger_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "ledger"
    _make(root)
    return root


def _ok(*args: str) -> str:
    p = cli(*args)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    return p.stdout


def _data_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("run-")]


def test_runs_limit_says_showing_n_of_m(ledger_root: Path) -> None:
    out = _ok("runs", "--root", str(ledger_root))
    assert len(_data_lines(out)) == 20
    assert "showing 20 of 25 runs" in out
    assert _data_lines(out)[0].split()[0] == "run-024"  # newest first
    out = _ok("runs", "--root", str(ledger_root), "--all")
    assert len(_data_lines(out)) == 25 and "25 runs" in out


def test_runs_filters(ledger_root: Path) -> None:
    root = str(ledger_root)
    failed = [
        ln.split()[0] for ln in _data_lines(_ok("runs", "--root", root, "--status", "failed"))
    ]
    assert sorted(failed) == ["run-003", "run-010", "run-017", "run-024"]  # k % 7 == 3
    grid = _data_lines(_ok("runs", "--root", root, "--kind", "grid", "--all"))
    assert len(grid) == 13 and all(" grid " in ln for ln in grid)
    ann = _data_lines(_ok("runs", "--root", root, "--tag", "user=ann", "--kind", "optuna"))
    assert sorted(ln.split()[0] for ln in ann) == ["run-005", "run-015"]
    p = cli("runs", "--root", root, "--tag", "user")
    assert p.returncode == 2 and "KEY=VALUE" in p.stderr and len(p.stderr.splitlines()) == 1


def test_runs_json_has_nested_values_not_json_text(ledger_root: Path) -> None:
    rows = json.loads(_ok("runs", "--root", str(ledger_root), "--json", "--limit", "2"))
    assert [r["run_id"] for r in rows] == ["run-024", "run-023"]
    assert rows[1]["summary"] == {"k": 23}
    rows = json.loads(
        _ok(
            "query",
            "--root",
            str(ledger_root),
            "--json",
            "SELECT config FROM runs_d WHERE run_id = 'run-001'",
        )
    )
    assert rows == [{"config": {"symbol": "ES", "k": 1, "window": {"days": 5}}}]


def test_show(ledger_root: Path) -> None:
    root = str(ledger_root)
    p = cli("show", "--root", root, "run-01")
    assert p.returncode == 1 and "ambiguous" in p.stderr and len(p.stderr.splitlines()) == 1
    out = _ok("show", "--root", root, "run-006")
    lines = out.splitlines()
    words = [ln.split() for ln in lines]
    assert ["symbol", "ES"] in words and ["window", '{"days":5}'] in words
    assert ["user", "bob"] in words
    assert "buy_hold" in out and '{"sharpe":0.25}' in out
    best = lines.index("best trial (sharpe, max)")
    assert lines[best + 1].split() == ["trial_id", "1"]  # sharpe 3.5 of trials 0, 1, 2
    assert lines[best + 2].split() == ["sharpe", "3.5"]
    art = str(ledger_root / "artifacts/runs/run-006/summary.json")
    assert any(art in ln for ln in lines), out
    data = json.loads(_ok("show", "--root", root, "run-006", "--json"))
    assert data["run"]["config"]["window"] == {"days": 5}
    assert data["best_trial"]["trial_id"] == 1 and data["best_trial"]["value"] == 3.5
    assert data["baselines"][0]["metrics"] == {"sharpe": 0.25}
    assert data["artifacts"][0]["abs_path"] == art


def test_trials_formats(ledger_root: Path, tmp_path: Path) -> None:
    root = str(ledger_root)
    rows = list(
        csv.DictReader(io.StringIO(_ok("trials", "--root", root, "run-002", "--format", "csv")))
    )
    got = [(int(r["trial_id"]), int(r["params.fast"]), float(r["metrics.sharpe"])) for r in rows]
    assert got == [(0, 0, 0.5), (1, 1, 3.5), (2, 2, 2.0)]
    js = json.loads(_ok("trials", "--root", root, "run-002", "--format", "json"))
    assert [t["trial_id"] for t in js] == [0, 1, 2]
    assert js[1]["params"] == {"fast": 1, "note": LONG} and js[1]["metrics"] == {"sharpe": 3.5}
    out = tmp_path / "t.parquet"
    _ok("trials", "--root", root, "run-002", "--format", "parquet", "-o", str(out))
    t = pq.read_table(out)
    assert t["trial_id"].to_pylist() == [0, 1, 2]
    assert t["metrics.sharpe"].to_pylist() == SHARPES
    table = _ok("trials", "--root", root, "run-002")
    assert sum(LONG.strip() in ln for ln in table.splitlines()) == 3  # whole cells in a pipe


@pytest.mark.parametrize("when", ["before any output", "after two lines"])
def test_closed_pipe_ends_quietly(tmp_path: Path, when: str) -> None:
    root = tmp_path / "big"
    _make(root, n_runs=1, n_trials=3000)
    cmd = "show" if when == "before any output" else "trials"
    p = subprocess.Popen(
        [sys.executable, "-m", "ledgerx", cmd, "--root", str(root), "run-000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout is not None and p.stderr is not None
    if when == "after two lines":  # like `| head -2`
        p.stdout.readline()
        p.stdout.readline()
    p.stdout.close()  # before any output: like `| true`, the write meets EPIPE for sure
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0
    assert err == ""


@pytest.mark.parametrize(
    "cmd",
    [
        ["verify"],
        ["status"],
        ["runs"],
        ["query", "SELECT 1"],
        ["rebuild"],
        ["show", "r"],
        ["trials", "r"],
    ],
    ids=lambda c: c[0],
)
def test_a_root_that_does_not_exist_is_an_error(tmp_path: Path, cmd: list[str]) -> None:
    typo = tmp_path / "ledgr"
    p = cli(cmd[0], "--root", str(typo), *cmd[1:])
    assert p.returncode == 1
    assert p.stderr.startswith("ledgerx: error: no ledger at") and len(p.stderr.splitlines()) == 1
    assert "OK" not in p.stdout
    assert not typo.exists(), "nothing may be created under a mistyped root"


def test_stale_after_is_validated_persisted_and_shown(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _make(root, n_runs=1, n_trials=1)
    for bad in ("-5", "nan", "soon"):
        p = cli("rebuild", "--root", str(root), "--stale-after", bad)
        assert p.returncode == 2 and "--stale-after" in p.stderr, p.stderr
        assert len(p.stderr.splitlines()) == 1
    assert "stale after      3600 s" in _ok("status", "--root", str(root))
    _ok("rebuild", "--root", str(root), "--stale-after", "7200")
    _ok("rebuild", "--root", str(root))  # a later rebuild keeps it
    assert "stale after      7200 s" in _ok("status", "--root", str(root))
    assert json.loads(_ok("status", "--root", str(root), "--json"))["stale_after_s"] == 7200
    help_text = " ".join(_ok("rebuild", "--help").split())
    assert "the value is kept in the index" in help_text


def test_version() -> None:
    assert _ok("--version").strip() == f"ledgerx {ledgerx.__version__}"


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    import os
    import pty

    root = tmp_path / "p"
    _make(root, n_runs=2, n_trials=200)
    master, slave = pty.openpty()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "ledgerx", "rebuild", "--root", str(root), "--full-rebuild"],
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=120,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:
                break
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    assert p.returncode == 0
    assert "indexing" in err and "%" in err, err  # rich's bar, drawn on the terminal
    assert b"indexing" not in p.stdout

"""Reading results: Reader.trials_table/trials_frame, runs_table/runs_frame with a best trial,
baselines, artifacts, run-id prefixes; independent results (an unread `.arrow()` reader blocks
nothing); a foreign read-write DuckDB connection on the published index never stops a rebuild.
Expected values are written out by hand from the events emitted here."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

import ledgerx
from ledgerx.index import build_index

from conftest import cli

np = pytest.importorskip("numpy")


def _sweep(root: Path) -> None:
    with ledgerx.open(root) as led:
        with led.run(
            run_id="run-a",
            run_kind="grid",
            config={"symbol": "ES", "lookback": 20},
            data_fingerprint="fp",
            tags={"user": "ann"},
        ) as run:
            run.trial(2, {"fast": 5, "stop": 0.02, "mode": "long"}, {"sharpe": 1.5, "pnl": 10})
            run.trial(
                10,
                {"fast": 8, "stop": 0.03, "mode": "short", "grid": [1, 2]},
                {"sharpe": 0.5, "pnl": 20.5},
            )
            run.trial(2, {"fast": 5, "stop": 0.02, "mode": "long"}, {"sharpe": 1.75, "pnl": 11})
            run.trial(1, {"fast": 3, "stop": 0.01, "mode": "long"}, {"sharpe": -0.25, "pnl": 3})
            run.baseline("buy_hold", {"sharpe": 0.4})
            run.summary["best_sharpe"] = 1.75
            run.artifacts.write_json("summary", {"ok": True})
        with led.run(
            run_id="run-b", run_kind="optuna", config={"symbol": "NQ"}, data_fingerprint="fp"
        ) as run:
            run.trial("t-1", {"fast": 1.5}, {"sharpe": 2.0})
            run.trial("t-2", {"fast": 2}, {"sharpe": 3.0})
    build_index(root)


@pytest.fixture
def swept(root: Path) -> Path:
    _sweep(root)
    return root


def test_trials_table_one_typed_row_per_trial(swept: Path) -> None:
    with ledgerx.Reader(swept) as r:
        t = r.trials_table("run-a")
    assert t.column_names == [
        "run_id",
        "trial_id",
        "ts",
        "params.fast",
        "params.stop",
        "params.mode",
        "params.grid",
        "metrics.sharpe",
        "metrics.pnl",
    ]
    assert t.schema.field("trial_id").type == pa.int64()
    assert t.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert t.schema.field("params.fast").type == pa.int64()
    assert t.schema.field("params.stop").type == pa.float64()
    assert t.schema.field("params.mode").type == pa.string()
    assert t.schema.field("params.grid").type == pa.string()  # nested: JSON text
    assert t.schema.field("metrics.pnl").type == pa.float64()  # 10 and 20.5: float
    rows = {d["trial_id"]: d for d in t.to_pylist()}
    assert sorted(rows) == [1, 2, 10]  # trial 2's retry is shown once, the latest record
    assert rows[2]["metrics.sharpe"] == 1.75 and rows[2]["metrics.pnl"] == 11.0
    assert rows[10]["params.grid"] == "[1,2]" and rows[1]["params.grid"] is None
    assert rows[1]["params.mode"] == "long" and rows[1]["metrics.sharpe"] == -0.25


def test_trials_table_string_ids_and_all_runs(swept: Path) -> None:
    with ledgerx.Reader(swept) as r:
        t = r.trials_table()
        b = r.trials_table(["run-b"])
    assert t.num_rows == 5
    assert t.schema.field("trial_id").type == pa.string()  # mixed: "2", "t-1", ...
    assert b["trial_id"].to_pylist() == ["t-1", "t-2"]
    assert b["params.fast"].to_pylist() == [1.5, 2.0]
    assert b.schema.field("params.fast").type == pa.float64()


def test_trials_frame_is_pandas(swept: Path) -> None:
    pd = pytest.importorskip("pandas")
    with ledgerx.Reader(swept) as r:
        df = r.trials_frame("run-a")
    assert isinstance(df, pd.DataFrame)
    assert list(df.sort_values("trial_id")["trial_id"]) == [1, 2, 10]


def test_frames_without_pandas_say_what_to_install(swept: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys

        class NoPandas:  # as if pandas were not installed
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "pandas":
                    raise ImportError("No module named 'pandas'")

        sys.meta_path.insert(0, NoPandas())
        import ledgerx
        from ledgerx.results import MissingDependencyError
        try:
            ledgerx.Reader({str(swept)!r}).trials_frame()
        except MissingDependencyError as e:
            print(e)
        """
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "needs pandas (pip install pandas)" in p.stdout, p.stderr


def test_runs_table_with_config_summary_tags_and_best(swept: Path) -> None:
    with ledgerx.Reader(swept) as r:
        t = r.runs_table(best_metric="sharpe")
        lo = r.runs_table("run-a", best_metric="sharpe", mode="min")
    rows = {d["run_id"]: d for d in t.to_pylist()}
    a, b = rows["run-a"], rows["run-b"]
    assert a["status"] == "completed" and a["run_kind"] == "grid" and a["trials"] == 4
    assert (
        a["config.symbol"] == "ES" and a["config.lookback"] == 20 and b["config.lookback"] is None
    )
    assert a["tags.user"] == "ann" and b["tags.user"] is None
    assert a["summary.best_sharpe"] == 1.75
    assert (a["best_trial_id"], a["best.sharpe"]) == ("2", 1.75)  # ids mix int and str: text
    assert (b["best_trial_id"], b["best.sharpe"]) == ("t-2", 3.0)
    assert lo.to_pylist()[0]["best_trial_id"] == 1 and lo.to_pylist()[0]["best.sharpe"] == -0.25
    assert a["duration_ms"] >= 0


def test_baselines_artifacts_and_prefix(swept: Path) -> None:
    with ledgerx.Reader(swept) as r:
        assert r.baselines("run-a").fetchall()[0][:1] == ("buy_hold",)
        art = r.artifacts("run-a").fetchall()
        assert r.resolve_run_id("run-a") == "run-a"
        with pytest.raises(ledgerx.LedgerError, match="ambiguous"):
            r.resolve_run_id("run-")
        with pytest.raises(ledgerx.LedgerError, match="unknown run"):
            r.resolve_run_id("zzz")
    assert art[0][0] == "summary" and art[0][1] == "artifacts/runs/run-a/summary.json"
    assert Path(art[0][2]) == swept / "artifacts/runs/run-a/summary.json"
    assert Path(art[0][2]).is_file()


def test_unread_arrow_reader_does_not_block_later_calls(swept: Path) -> None:
    with ledgerx.Reader(swept) as r:
        pending = r.trials("run-a").arrow()  # a RecordBatchReader, left unread
        assert r.latest_runs().fetchall()  # another call on the same Reader works
        assert len(r.trials("run-b").fetchall()) == 2
        assert r.trials_table("run-b").num_rows == 2
        assert isinstance(pending, pa.RecordBatchReader)
        # and the first result is still whole: 3 trials (trial_results shows trial 2 once)
        assert sum(b.num_rows for b in pending) == 3


HOLD_RW = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])  # a notebook that forgot read_only=True
    print("holding", flush=True)
    time.sleep(120)
    """
)


def test_foreign_read_write_connection_never_stops_a_rebuild(swept: Path) -> None:
    db = swept / "index" / "runs.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RW, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        # A reader of the locked file gets a clear error naming the holder.
        with pytest.raises(ledgerx.IndexLockedError) as ei:
            ledgerx.Reader(swept).latest_runs()
        assert f"process {holder.pid}" in str(ei.value) and "read_only=True" in str(ei.value)
        st = cli("status", "--root", str(swept))
        assert st.returncode == 1 and f"process {holder.pid}" in st.stderr
        assert len(st.stderr.splitlines()) == 1
        # A rebuild with nothing new still publishes a fresh file, which nobody locks.
        rep = build_index(swept)
        assert rep.published
        with ledgerx.open(swept) as led:
            with led.run(run_id="run-c", run_kind="k", config={}, data_fingerprint="f"):
                pass
        p = cli("rebuild", "--root", str(swept))
        assert p.returncode == 0, p.stderr
        with ledgerx.Reader(swept) as r:
            assert {x[0] for x in r.latest_runs().fetchall()} == {"run-a", "run-b", "run-c"}
        for cmd in ("status", "runs"):
            p = cli(cmd, "--root", str(swept))
            assert p.returncode == 0, p.stderr
    finally:
        holder.kill()
        holder.wait()


def test_trial_ids_from_numpy_are_integers(root: Path) -> None:
    with ledgerx.open(root) as led:
        with led.run(run_id="run-n", run_kind="k", config={}, data_fingerprint="f") as run:
            for i in np.arange(3):
                run.trial(i, {"w": np.float32(i) / 2}, {"x": np.float64(i)})
    build_index(root)
    with ledgerx.Reader(root) as r:
        t = r.trials_table()
    assert t["trial_id"].to_pylist() == [0, 1, 2]
    assert t["params.w"].to_pylist() == [0.0, 0.5, 1.0]
    assert isinstance(t["ts"][0].as_py(), datetime)

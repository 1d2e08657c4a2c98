"""`ledgerx daemon` as a real subprocess: catch-up, /healthz and /metrics over real HTTP,
one daemon per root, SIGTERM/SIGKILL mid-cycle, failing cycles and recovery."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from index_support import DAY_US, T0, reference_events, write_sweep
from ops_support import daemon, free_port, get, healthz, snapshot, wait_for

import ledgerx
from ledgerx.index import build_index

from conftest import cli


def _caught_up(port: int, indexed: int) -> dict | None:
    code, h = healthz(port)
    lag = h["lag"]
    ok = code == 200 and lag["events"] == 0 and lag["bytes"] == 0
    return h if ok and lag["indexed_events"] == indexed else None


def test_daemon_end_to_end_over_http(root: Path) -> None:
    port = free_port()
    led = ledgerx.open(root, durability="fsync")
    with daemon(root, "--interval", "0.2", "--health-port", str(port)) as p:
        wait_for(lambda: healthz(port)[1]["cycles"] >= 1, 30, "a first cycle")
        with led.run(run_kind="sweep", config={"a": 1}, data_fingerprint="fp") as run:
            for i in range(20):
                run.trial(i, {"x": i}, {"sharpe": i / 10})
        rid = run.run_id
        h = wait_for(lambda: _caught_up(port, 23), 30, "lag 0 after the run")
        assert h["status"] == "ok" and h["healthy"] and h["reasons"] == []
        assert h["last_success_at"] and h["last_error"] is None and h["consecutive_failures"] == 0
        assert h["lag"]["seconds"] is None and h["quarantine"] == {"files": 0, "bytes": 0}
        with ledgerx.Reader(root) as r:
            assert r.trials(rid).count("*").fetchall() == [(20,)]
            assert r.sql("SELECT status FROM latest_runs").fetchall() == [("completed",)]

        # More events while it runs: they show up through `ledgerx query` once lag is 0 again.
        for i in range(5):
            led.emit(
                "alert.ingested",
                {"alert_id": f"a{i}", "source": "t", "severity": "low", "payload": {}},
            )
        wait_for(lambda: _caught_up(port, 28), 30, "lag 0 after the alerts")
        q = cli("query", "--root", str(root), "--json", "SELECT count(*) AS n FROM alerts")
        assert q.returncode == 0 and '"n": 5' in q.stdout, q.stderr

        code, text = get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        samples = dict(
            ln.split(" ", 1) for ln in text.splitlines() if ln and not ln.startswith("#")
        )
        assert all(name.startswith("ledgerx_") for name in samples)
        assert samples["ledgerx_index_lag_events"] == "0" and samples["ledgerx_healthy"] == "1"
        assert int(samples["ledgerx_daemon_cycles_total"]) >= 2
        assert int(samples["ledgerx_daemon_events_indexed_total"]) == 28
        assert "# TYPE ledgerx_daemon_cycles_total counter" in text
        assert get(f"http://127.0.0.1:{port}/nope")[0] == 404

        # One daemon per root: a second one is refused with one line.
        second = cli("daemon", "--root", str(root), "--once")
        assert second.returncode == 1
        assert second.stderr.strip().startswith("ledgerx: error: another daemon is already running")
        assert len(second.stderr.strip().splitlines()) == 1
        # The daemon's lock is not in the derived index/: deleting it changes nothing. Renamed
        # away first (atomic), as the running daemon may be writing a new file in it meanwhile.
        (root / "index").rename(root / "index.gone")
        shutil.rmtree(root / "index.gone", ignore_errors=True)
        second = cli("daemon", "--root", str(root), "--once")
        assert second.returncode == 1 and "another daemon is already running" in second.stderr

        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        err = p.stderr.read()
    led.close()
    assert "Traceback" not in err and "SIGTERM: finishing the current cycle" in err


def test_sigterm_mid_cycle_finishes_the_cycle_and_exits_0(root: Path, tmp_path: Path) -> None:
    write_sweep(root, runs=2, trials=10)
    with daemon(root, "--interval", "30", stall=1.5) as p:
        wait_for(lambda: list((root / "index").glob(".building-*")), 30, "a cycle in progress")
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    ref = tmp_path / "ref.duckdb"
    assert cli("rebuild", "--root", str(root), "--full-rebuild", "--db", str(ref)).returncode == 0
    # The interrupted cycle was finished and published, not dropped.
    assert snapshot(root / "index" / "runs.duckdb") == snapshot(ref)


def test_sigkill_mid_cycle_then_restart_gives_the_exact_index(root: Path, tmp_path: Path) -> None:
    write_sweep(root, runs=2, trials=10, seed=1)
    build_index(root)
    write_sweep(root, runs=3, trials=10, seed=2, day_us=T0 + DAY_US)
    port = free_port()
    args = ("--interval", "30", "--health-port", str(port), "--max-lag-seconds", "60")
    with daemon(root, *args, stall=60) as p:
        wait_for(lambda: list((root / "index").glob(".building-*")), 30, "a cycle in progress")
        # Stuck mid-cycle with old unindexed events: the health thread still answers, 503.
        code, h = healthz(port)
        assert code == 503 and h["in_cycle"] and h["lag"]["events"] > 0
        assert any("oldest unindexed event" in r for r in h["reasons"])
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    assert list((root / "index").glob(".building-*"))  # killed with its work file half-built
    again = cli("daemon", "--root", str(root), "--once")
    assert again.returncode == 0, again.stderr
    assert not list((root / "index").glob(".building-*"))
    ref = tmp_path / "ref.duckdb"
    assert cli("rebuild", "--root", str(root), "--full-rebuild", "--db", str(ref)).returncode == 0
    assert snapshot(root / "index" / "runs.duckdb") == snapshot(ref)
    assert cli("daemon", "--root", str(root), "--once").returncode == 0  # nothing new: no-op


def test_failing_cycles_turn_health_503_then_recover(root: Path) -> None:
    write_sweep(root, runs=1, trials=3)
    (root / "index").mkdir(parents=True)
    corrupt = root / "index" / "runs.duckdb"
    corrupt.write_bytes(b"not a duckdb file\n" * 512)
    port = free_port()
    with daemon(root, "--interval", "0.2", "--health-port", str(port), "--max-failures", "2") as p:

        def failing() -> dict | None:
            code, h = healthz(port)
            return h if code == 503 and h["consecutive_failures"] >= 2 else None

        h = wait_for(failing, 30, "two failed cycles")
        assert h["status"] == "unhealthy" and h["last_error"] and h["failures_total"] >= 2
        assert any("consecutive failed cycles" in r for r in h["reasons"])
        assert p.poll() is None  # a failing cycle never kills the daemon
        corrupt.unlink()
        wait_for(lambda: _caught_up(port, len(reference_events(root))), 30, "recovery")
        code, h = healthz(port)
        assert h["consecutive_failures"] == 0 and h["failures_total"] >= 2
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        err = p.stderr.read()
    assert "cycle failed" in err and "Traceback" not in err


def test_bad_daemon_flags_are_one_line_errors(root: Path) -> None:
    for args in (["--interval", "0"], ["--max-failures", "0"], ["--health-port", "70000"]):
        r = cli("daemon", "--root", str(root), *args)
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert r.stderr.startswith("ledgerx: error:")

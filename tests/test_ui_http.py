"""The dashboard over HTTP: the JSON API against values computed from what the tests wrote, the
read-only guarantees, and downloads that never leave the root's artifacts/ (requests sent raw,
so no client normalizes `..` away)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import duckdb
import pytest
from ui_support import (
    UiServer,
    add_run,
    cli,
    env_without_ui,
    rebuild,
    wait_for,
    write_ledger,
)

from ledgerx.ui.app import create_app

with warnings.catch_warnings():  # starlette suggests httpx2; httpx is what the test extra has
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SECRET = b"TOP-SECRET-OUTSIDE-ARTIFACTS"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ui-http") / "ledger"
    exp = write_ledger(root)
    rebuild(root)
    (root / "secret.txt").write_bytes(SECRET)
    runs = root / "artifacts" / "runs"
    os.symlink(root / "secret.txt", runs / "sweep-0" / "leak.json")  # file symlink out
    os.symlink(root, runs / "escape")  # folder symlink out
    os.symlink("/etc", runs / "etc")
    os.symlink("sweep-0", runs / "alias")  # a folder symlink that stays inside artifacts/
    os.link(root / "secret.txt", runs / "sweep-0" / "hard.json")  # a hard link out
    return root, exp


@pytest.fixture(scope="module")
def client(ledger):
    root, _ = ledger
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        yield c


def test_api_runs_lists_every_run_with_its_status(client, ledger):
    _, exp = ledger
    body = client.get("/api/runs").json()
    assert {r["run_id"]: r["status"] for r in body["runs"]} == exp.runs
    assert body["total"] == len(exp.runs)
    kinds = {r["run_id"]: r["run_kind"] for r in body["runs"]}
    assert kinds == exp.kinds
    # the list's count is of records, as Reader.latest_runs() (sweep-2 recorded trial 5 twice)
    assert {r["run_id"]: r["trials"] for r in body["runs"]} == exp.records
    assert exp.records["sweep-2"] == len(exp.trials["sweep-2"]) + 1


@pytest.mark.parametrize(
    "query, expect",
    [
        ("status=failed", {"bt-failed"}),
        ("status=running", {"bt-running"}),
        ("kind=sweep", {"sweep-0", "sweep-1", "sweep-2"}),
        ("tag=team%3Dbeta", {"sweep-2", "bt-failed"}),
        ("tag=idx", {"sweep-0", "sweep-1", "sweep-2"}),
        ("q=FP-1", {"sweep-1"}),
        ("q=bt-", {"bt-failed", "bt-running"}),
        ("kind=backtest&status=failed", {"bt-failed"}),
        ("status=nonsense", {"sweep-0", "sweep-1", "sweep-2", "bt-failed", "bt-running"}),
    ],
)
def test_api_runs_filters(client, query, expect):
    body = client.get(f"/api/runs?{query}").json()
    assert {r["run_id"] for r in body["runs"]} == expect
    assert body["total"] == len(expect)


def test_api_runs_sorts_and_pages(client, ledger):
    _, exp = ledger
    asc = [r["run_id"] for r in client.get("/api/runs?sort=run_id&dir=asc").json()["runs"]]
    assert asc == sorted(exp.runs)
    desc = [r["run_id"] for r in client.get("/api/runs?sort=run_id").json()["runs"]]
    assert desc == sorted(exp.runs, reverse=True)
    page = client.get("/api/runs?sort=run_id&dir=asc&limit=2").json()
    assert [r["run_id"] for r in page["runs"]] == sorted(exp.runs)[:2]
    assert page["total"] == len(exp.runs)
    # a sort key outside the whitelist is ignored, never pasted into SQL
    r = client.get("/api/runs?sort=run_id;DROP TABLE runs_d&dir=asc")
    assert r.status_code == 200 and r.json()["total"] == len(exp.runs)


def test_api_run_detail_against_what_was_written(client, ledger):
    root, exp = ledger
    d = client.get("/api/runs/sweep-0").json()
    trials = exp.trials["sweep-0"]
    assert d["run"]["status"] == "completed"
    assert d["run"]["config"] == {"grid": 0, "seed": 0}
    assert d["run"]["data_fingerprint"] == "fp-0"
    assert d["metrics"] == ["pnl", "sharpe", "trades"] and d["params"] == ["fast", "slow"]
    best = max(trials, key=lambda t: t["metrics"]["pnl"])  # first of the maxima
    assert d["best"]["trial_id"] == best["trial_id"]  # a JSON number, as written
    assert d["best"]["metrics"] == best["metrics"]
    assert [r["metrics"] for r in d["series"]["rows"]] == [t["metrics"] for t in trials]
    assert not d["series"]["sampled"]
    assert [p["phase"] for p in d["phases"]] == ["load", "search"]
    assert [b["baseline"] for b in d["baselines"]] == ["buy_and_hold"]
    # table: sorted by pnl, descending, ties in recording order
    want = sorted(trials, key=lambda t: (-t["metrics"]["pnl"], t["trial_id"]))
    assert [t["trial_id"] for t in d["table"]] == [t["trial_id"] for t in want]
    # artifacts: size and sha256 of the files on disk
    arts = {a["name"]: a for a in d["artifacts"]}
    for name in ("equity_curve", "notes"):
        data = (root / arts[name]["path"]).read_bytes()
        assert arts[name]["bytes"] == len(data)
        assert arts[name]["sha256"] == hashlib.sha256(data).hexdigest()
    (curve,) = d["curves"]
    assert curve["rows"] == exp.equity_rows and curve["x_name"] == "step"
    assert curve["y"]["equity"] == [1.0 + k / 1000 for k in range(exp.equity_rows)]


def test_a_retried_trial_is_shown_once_its_latest_record(client, ledger):
    _, exp = ledger
    trials = exp.trials["sweep-2"]  # trial 5 recorded twice: the second record, last in order
    assert [t["trial_id"] for t in trials] == [*range(5), *range(6, 30), 5]
    d = client.get("/api/runs/sweep-2").json()
    assert [(r["i"], r["trial_id"], r["metrics"]) for r in d["series"]["rows"]] == [
        (i, t["trial_id"], t["metrics"]) for i, t in enumerate(trials)
    ]
    assert d["n_trials"] == d["series"]["total"] == 30 and d["n_records"] == 31
    assert d["best"]["trial_id"] == 5 and d["best"]["metrics"]["pnl"] == 9.5
    want = sorted(trials, key=lambda t: (-t["metrics"]["pnl"], trials.index(t)))
    assert [t["trial_id"] for t in d["table"]] == [t["trial_id"] for t in want]
    d = client.get("/api/runs/sweep-2?tsort=trial_id&tdir=asc&goal=min").json()
    assert [t["trial_id"] for t in d["table"]] == list(range(30))
    assert d["best"]["metrics"]["pnl"] == min(t["metrics"]["pnl"] for t in trials)
    html = client.get("/runs/sweep-2").text
    assert '<span id="n-trials">30</span>' in html and "31 records" in html


def _retry_ledger(root: Path, n: int, retried: dict[int, float]) -> list[tuple[int, float]]:
    """A run of `n` trials written by one writer, then a second writer (a retried task in
    another process) recording the trials in `retried` again with new values. Returns the
    (trial_id, pnl) the Reader must show, in order: first the trials not retried, then the
    retried ones in the order of their second record."""
    import ledgerx

    first = {t: float((t * 7919) % 1000) / 1000 for t in range(n)}
    for t in retried:
        first[t] = 1000.0 + t  # the superseded records hold the extreme values
    with ledgerx.open(root) as led:
        led.emit_run_created("r", "sweep", {}, "fp", {})
        for t in range(n):
            led.emit("trial.recorded", {"trial_id": t, "params": {"a": t % 7},
                     "metrics": {"pnl": first[t]}}, run_id="r")  # fmt: skip
    with ledgerx.open(root) as led:
        for t, v in retried.items():
            led.emit("trial.recorded", {"trial_id": t, "params": {"a": -1},
                     "metrics": {"pnl": v}}, run_id="r")  # fmt: skip
    rebuild(root)
    return [(t, first[t]) for t in range(n) if t not in retried] + list(retried.items())


@pytest.mark.parametrize("max_points", [4000, 40])
def test_retries_in_charts_table_count_and_best_agree_with_the_reader(
    tmp_path, monkeypatch, max_points
):
    import ledgerx
    from ledgerx.ui import trials as trials_mod

    root = tmp_path / "ledger"
    retried = {3: -5.0, 150: 0.5, 90: -7.0}  # retried in this order
    want = _retry_ledger(root, 200, retried)
    monkeypatch.setattr(trials_mod, "MAX_POINTS", max_points)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        d = c.get("/api/runs/r").json()
        worst = c.get("/api/runs/r?goal=min").json()["best"]
        asc = c.get("/api/runs/r?tsort=metric:pnl&tdir=asc").json()["table"]
    assert d["n_trials"] == d["series"]["total"] == 200 and d["n_records"] == 203
    rows = d["series"]["rows"]
    assert d["series"]["sampled"] == (max_points < 200)
    for r in rows:  # each drawn point is the trial at that position, with its latest values
        assert (int(r["trial_id"]), r["metrics"]["pnl"]) == want[r["i"]]
    if max_points >= 200:
        assert [r["i"] for r in rows] == list(range(200))
    top = max(range(200), key=lambda i: (want[i][1], -i))
    assert (d["best"]["trial_id"], d["best"]["metrics"]["pnl"]) == want[top]
    assert (worst["trial_id"], worst["metrics"]["pnl"]) == (90, -7.0)
    order = sorted(range(200), key=lambda i: (want[i][1], i))
    assert [(int(t["trial_id"]), t["metrics"]["pnl"]) for t in asc] == [want[i] for i in order]
    # the Reader's own views say the same (in trial_id order)
    with ledgerx.Reader(root) as reader:
        tr = reader.trials("r").fetchall()
        table = reader.trials_table("r")
    assert [(t[2], json.loads(t[4])["pnl"]) for t in tr] == sorted(want)
    assert list(zip(table["trial_id"].to_pylist(), table["metrics.pnl"].to_pylist(),
                    strict=True)) == sorted(want)  # fmt: skip


def test_trials_table_sorts_by_param_and_goal_min(client, ledger):
    _, exp = ledger
    trials = exp.trials["sweep-1"]
    d = client.get("/api/runs/sweep-1?tsort=param:slow&tdir=asc").json()
    want = sorted(trials, key=lambda t: (t["params"]["slow"], t["trial_id"]))
    assert [t["trial_id"] for t in d["table"]] == [t["trial_id"] for t in want]
    d = client.get("/api/runs/sweep-1?metric=sharpe&goal=min").json()
    worst = min(trials, key=lambda t: t["metrics"]["sharpe"])
    assert d["metric"] == "sharpe" and d["best"]["metrics"]["sharpe"] == worst["metrics"]["sharpe"]


def test_failed_run_shows_its_error(client):
    html = client.get("/runs/bt-failed").text
    assert "simulated data vendor outage" in html and 'id="run-error"' in html
    # an unknown run is a 404 page, decided before the streamed page's head goes out
    r = client.get("/runs/no-such-run")
    assert r.status_code == 404 and "no-such-run" in r.text and "plotly" not in r.text
    assert client.get("/api/runs/no-such-run").status_code == 404


def test_many_trials_are_downsampled_keeping_the_envelope(tmp_path, monkeypatch):
    import random

    import ledgerx
    from ledgerx.ui import trials as trials_mod

    root = tmp_path / "ledger"
    n, max_points = 1500, 100
    rng = random.Random(5)
    pnl = [round(rng.gauss(0, 1), 6) for _ in range(n)]
    pnl[900] = pnl[905] = pnl[1400] = max(pnl) + 1  # ties: the first recorded one is best
    pnl[920] = pnl[925] = pnl[1410] = min(pnl) - 1
    led = ledgerx.open(root)
    with led.run(run_id="big", run_kind="sweep", config={}, data_fingerprint="fp") as run:
        for t in range(n):
            run.trial(trial_id=t, params={"a": t % 17}, metrics={"pnl": pnl[t]})
    led.close()
    rebuild(root)
    monkeypatch.setattr(trials_mod, "MAX_POINTS", max_points)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        d = c.get("/api/runs/big").json()
        worst = c.get("/api/runs/big?goal=min").json()["best"]
    assert d["best"]["trial_id"] == pnl.index(max(pnl))
    assert worst["trial_id"] == pnl.index(min(pnl))
    rows = d["series"]["rows"]
    assert d["series"]["sampled"] and d["series"]["total"] == n
    assert len(rows) <= max_points + 2
    assert rows[0]["i"] == 0 and rows[-1]["i"] == n - 1
    assert [r["i"] for r in rows] == sorted({r["i"] for r in rows})
    for r in rows:  # every sampled point is the trial it claims to be
        assert r["trial_id"] == r["i"] and r["metrics"]["pnl"] == pnl[r["i"]]
    # the envelope: each bucket of consecutive trials keeps its highest and lowest pnl
    bucket = -(-2 * n // max_points)
    got = {r["i"] for r in rows}
    for b in range(0, n, bucket):
        idx = range(b, min(n, b + bucket))
        hi = max(idx, key=lambda i: pnl[i])
        lo = min(idx, key=lambda i: pnl[i])
        assert hi in got and lo in got, b


def test_equity_curve_with_gaps_and_timestamps(tmp_path):
    from datetime import datetime, timedelta, timezone

    import pyarrow as pa

    import ledgerx

    root = tmp_path / "ledger"
    t0 = datetime(2026, 1, 2, 9, 30, tzinfo=timezone.utc)
    curve = pa.table({
        "ts": [t0 + timedelta(minutes=k) for k in range(4)],
        "equity": [1.0, float("nan"), float("inf"), 1.5],
        "label": ["a", "b", "c", "d"],
    })  # fmt: skip
    with ledgerx.open(root) as led:
        with led.run(run_id="eq", run_kind="backtest", config={}, data_fingerprint="fp") as run:
            run.artifacts.write_equity_curve(curve)
    rebuild(root)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        r = c.get("/api/runs/eq")
        assert r.status_code == 200
        (got,) = r.json()["curves"]
        assert c.get("/runs/eq").status_code == 200
    assert got["x_name"] == "ts" and list(got["y"]) == ["equity"]
    assert got["x"] == ["2026-01-02 09:30:00", "2026-01-02 09:31:00", "2026-01-02 09:32:00",
                        "2026-01-02 09:33:00"]  # fmt: skip
    assert got["y"]["equity"] == [1.0, None, None, 1.5]


def test_compare_alerts_status(client, ledger):
    root, _ = ledger
    c = client.get("/api/compare?runs=sweep-0,sweep-2,nope").json()
    assert [r["run_id"] for r in c["runs"]] == ["sweep-0", "sweep-2"] and c["missing"] == ["nope"]
    config = {row["key"]: row for row in c["sections"][2]["rows"]}
    assert config["grid"]["values"] == [0, 2] and config["grid"]["differs"]
    alerts = client.get("/api/alerts").json()["alerts"]
    assert [(a["alert_id"], a["run_id"]) for a in alerts] == [("a-1", "sweep-1")]
    st = client.get("/api/status").json()
    lines = sum(p.read_bytes().count(b"\n") for p in (root / "events").rglob("part-*.jsonl"))
    assert st["status"]["indexed_events"] == lines and st["status"]["lag_events"] == 0
    assert st["status"]["last_rebuild"]["mode"] in ("full", "incremental")


def test_download_serves_the_artifact_bytes(client, ledger):
    root, _ = ledger
    r = client.get("/download/artifacts/runs/sweep-0/equity_curve.parquet")
    assert r.status_code == 200
    assert r.content == (root / "artifacts/runs/sweep-0/equity_curve.parquet").read_bytes()
    assert "attachment" in r.headers["content-disposition"]


TRAVERSALS = [
    "/download/artifacts/../secret.txt",
    "/download/artifacts/runs/../../secret.txt",
    "/download/artifacts/%2e%2e/secret.txt",
    "/download/artifacts/runs/%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/download/artifacts/runs/sweep-0/..%2F..%2F..%2Fsecret.txt",
    "/download/secret.txt",
    "/download/index/runs.duckdb",
    "/download//etc/passwd",
    "/download/%2Fetc%2Fpasswd",
    "/download/artifacts/runs/sweep-0/leak.json",
    "/download/artifacts/runs/escape/secret.txt",
    "/download/artifacts/runs/etc/passwd",
    "/download/artifacts/runs/sweep-0/..\\..\\..\\secret.txt",
    "/download/artifacts/runs/sweep-0/%00",
    "/download/artifacts/runs",
    "/download/artifacts/./runs/sweep-0/notes.json",
    "/download/artifacts/runs/sweep-0/hard.json",
    "/download/artifacts/runs/alias/notes.json",
    "/download/artifacts/runs/%252e%252e/%252e%252e/secret.txt",
    "/download/artifacts/runs/%2e./%2e./secret.txt",
    "/download/artifacts/runs/.%2e/.%2e/secret.txt",
    "/download/artifacts/runs/sweep-0/..%5c..%5c..%5csecret.txt",
    "/download/artifacts/runs/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
    "/download/artifacts/runs/sweep-0/notes.json%00.png",
    "/download/artifacts/%2Fetc%2Fpasswd",
    "/download/artifacts//etc/passwd",
    "/download/" + str(Path("/etc/passwd")).replace("/", "%2F"),
]


@pytest.fixture(scope="module")
def live(ledger):
    srv = UiServer(ledger[0])
    yield srv
    srv.stop()


def raw_get(base: str, path: str) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", TRAVERSALS)
def test_downloads_never_leave_artifacts(live, path):
    status, body = raw_get(live.base, path)
    assert status in (403, 404), (path, status)
    assert SECRET not in body and b"root:" not in body and b"DUCK" not in body


def test_hard_links_and_symlinks_inside_artifacts_are_refused_with_403(live, ledger):
    root, _ = ledger
    runs = root / "artifacts" / "runs"
    assert (runs / "sweep-0" / "hard.json").stat().st_nlink == 2
    for path, why in [
        ("runs/sweep-0/hard.json", b"hard link"),
        ("runs/sweep-0/leak.json", b"symlink"),
        ("runs/alias/notes.json", b"symlink"),
        ("runs/escape/secret.txt", b"symlink"),
    ]:
        status, body = raw_get(live.base, "/download/artifacts/" + path)
        assert status == 403 and why in body and SECRET not in body, path
    # the file the writer made (one link) is served
    status, body = raw_get(live.base, "/download/artifacts/runs/sweep-0/notes.json")
    assert status == 200 and body == (runs / "sweep-0" / "notes.json").read_bytes()


def test_live_server_serves_a_real_download_and_plotly_locally(live, ledger):
    root, _ = ledger
    status, body = raw_get(live.base, "/download/artifacts/runs/sweep-0/notes.json")
    assert status == 200 and body == (root / "artifacts/runs/sweep-0/notes.json").read_bytes()
    import plotly

    shipped = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    status, body = raw_get(live.base, "/static/plotly.min.js")
    assert status == 200 and body == shipped.read_bytes()


def test_read_only_and_locked_down(client, ledger):
    root, _ = ledger
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert client.post("/api/runs").status_code == 405
    assert client.delete("/runs/sweep-0").status_code == 405
    for path in ("/", "/runs/sweep-0", "/compare?runs=sweep-0", "/alerts", "/status"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "default-src 'self'" in r.headers["content-security-policy"]
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert after == before
    # a host name other than loopback is refused (DNS rebinding)
    assert client.get("/api/runs", headers={"host": "evil.example"}).status_code == 400
    # the index connection cannot read other files
    index = client.app.state.index
    with pytest.raises(duckdb.PermissionException):
        index.rows("SELECT * FROM read_text('/etc/hostname')")


def test_index_appears_and_reloads_without_restart(tmp_path):
    import ledgerx

    root = tmp_path / "ledger"
    root.mkdir()
    with TestClient(create_app(root), base_url="http://127.0.0.1") as c:
        r = c.get("/api/runs")
        assert r.status_code == 503 and "rebuild" in r.json()["error"]
        assert c.get("/").status_code == 503
        write_ledger(root)
        rebuild(root)
        v1 = c.get("/api/version").json()["version"]
        assert c.get("/api/runs").json()["total"] == 5
        assert c.get("/api/runs/bt-running").json()["series"] is None
        add_run(root, "late-run")
        with ledgerx.open(root) as led:  # the running run records a trial meanwhile
            led.emit("trial.recorded", {"trial_id": 0, "params": {"k": 1}, "metrics": {"x": 2}},
                     run_id="bt-running")  # fmt: skip
        rebuild(root)
        assert c.get("/api/version").json()["version"] != v1
        ids = {r["run_id"] for r in c.get("/api/runs").json()["runs"]}
        assert "late-run" in ids and len(ids) == 6
        d = c.get("/api/runs/bt-running").json()
        assert [r["metrics"] for r in d["series"]["rows"]] == [{"x": 2}]
        assert d["metrics"] == ["x"] and d["params"] == ["k"] and d["best"]["trial_id"] == 0
        # sweep-0 seen before and after: the cached trials belong to the old index
        assert c.get("/api/runs/sweep-0").json()["series"]["total"] == 30


@pytest.mark.parametrize("cmd", [["ui"], ["daemon", "--once", "--ui-port", "0"]])
def test_missing_extra_is_one_line_naming_it(ledger, cmd):
    r = subprocess.run(
        [sys.executable, "-m", "ledgerx", *cmd, "--root", str(ledger[0])],
        capture_output=True, text=True, env=env_without_ui(), timeout=60,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "ledgerx[ui]" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--port", "70000"], "between 0 and 65535"),
        (["--root", "/nonexistent/ledger"], "no ledger at"),
        (["--host", "203.0.113.7", "--port", "0"], "cannot serve on"),
    ],
)
def test_bad_arguments_are_one_line_errors(ledger, args, needle):
    r = cli("ui", "--root", str(ledger[0]), *args, timeout=60)
    assert r.returncode != 0 and needle in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_binding_beyond_loopback_warns(ledger):
    srv = UiServer(ledger[0], "--host", "0.0.0.0")
    try:
        base = srv.base.replace("0.0.0.0", "127.0.0.1")
        assert json.loads(raw_get(base, "/api/runs")[1])["total"] == 5
    finally:
        srv.stop()
    assert "warning: binding 0.0.0.0, not loopback" in srv.stderr()


def test_daemon_serves_the_dashboard(ledger, tmp_path):
    root = tmp_path / "ledger"
    write_ledger(root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledgerx", "daemon", "--root", str(root), "--interval", "0.2",
         "--ui-port", "0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        base = None
        for line in proc.stderr:
            if "dashboard on " in line:
                base = line.split("dashboard on ", 1)[1].strip().rstrip("/")
                break
        assert base, "the daemon did not report the dashboard"

        def runs() -> int:
            status, body = raw_get(base, "/api/runs")
            return json.loads(body)["total"] if status == 200 else 0

        assert wait_for(runs, timeout=30) == 5
        add_run(root, "late-run")
        assert wait_for(lambda: runs() == 6, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

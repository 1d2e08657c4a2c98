"""Security: what the daemon's health endpoint exposes and how much work a poller can cause
(docs/security.md).

Before: every `/healthz` rescanned every unindexed byte, one request at a time behind a lock
(pollers queued behind a slow scan); each connection got its own thread with no timeout (200
half-open connections made 204 threads that never ended); the body held the root's absolute
path; `--health-host` was undocumented and binding a public address said nothing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ops_support import get, wait_for

import ledgerx
from ledgerx import _core, daemon
from ledgerx.daemon import Daemon
from ledgerx.index import build_index
from ledgerx.index.lag import LagTracker

from conftest import cli


def _alerts(root: Path, n: int) -> None:
    led = ledgerx.open(root, durability="fsync")
    try:
        for i in range(n):
            led.emit("alert.ingested", {"alert_id": f"a{i}", "source": "s", "severity": "x",
                                        "payload": {}})  # fmt: skip
    finally:
        led.close()


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, int]]]:
    """Every (file, offset) list the scanner is asked to read, in this process (the files a
    `_core.Scanner` starts from: the one scan-until-done loop)."""
    calls: list[list[tuple[str, int]]] = []
    real = _core.Scanner

    def spy(ev: str, todo: list[tuple[str, int]], **kw: Any) -> Any:
        if todo:  # a Scanner over no file reads nothing
            calls.append(list(todo))
        return real(ev, todo, **kw)

    monkeypatch.setattr(_core, "Scanner", spy)
    return calls


def test_lag_scans_each_unindexed_byte_once(root: Path, scans: list[Any]) -> None:
    _alerts(root, 3)
    build_index(root)
    _alerts(root, 4)
    tracker = LagTracker(root)
    scans.clear()
    first = tracker.measure()
    assert (first["events"], first["indexed_events"]) == (4, 3)
    assert len(scans) == 1 and scans[0][0][1] > 0, "starts at the index's checkpoint"
    scans.clear()
    assert tracker.measure()["events"] == 4
    assert scans == [], "nothing new: nothing scanned"
    ev = root / "events"
    sizes = {str(p.relative_to(ev)): p.stat().st_size for p in ev.glob("day=*/*.jsonl")}
    _alerts(root, 2)
    assert tracker.measure()["events"] == 6
    read_from = [(rel, off) for call in scans for rel, off in call]
    assert read_from and all(off == sizes.get(rel, 0) for rel, off in read_from), (
        "only the bytes appended since the last measure are read",
        read_from,
        sizes,
    )
    build_index(root)  # a new checkpoint: counted afresh from it, which is the end
    scans.clear()
    after = tracker.measure()
    assert (after["events"], after["bytes"], after["indexed_events"]) == (0, 0, 9)
    assert scans == []


def _serve(root: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> Daemon:
    monkeypatch.setattr(daemon, "HEALTH_CACHE_S", 0.0, raising=False)
    d = Daemon(root, health_port=0, **kw)
    d.start_health()
    return d


def test_concurrent_health_requests_do_not_queue(root: Path, monkeypatch: Any) -> None:
    _alerts(root, 2)
    d = _serve(root, monkeypatch)
    try:
        url = f"http://127.0.0.1:{d.port}/healthz"
        assert get(url)[0] in (200, 503)  # a first measure fills the cache
        release = threading.Event()
        entered = threading.Event()
        real = d.lag

        def slow_lag() -> dict[str, Any]:
            entered.set()
            release.wait(60)
            return real()

        monkeypatch.setattr(d, "lag", slow_lag)
        slow = threading.Thread(target=get, args=(url, 60.0))
        slow.start()
        assert entered.wait(10), "the measuring request started"
        answers = []
        for _ in range(8):  # each would wait 60 s behind the measure if requests queued
            code, body = get(url, timeout=10.0)
            answers.append((code, json.loads(body)["lag"]["events"]))
        assert answers == [(answers[0][0], 2)] * 8
        release.set()
        slow.join(30)
    finally:
        d.stop_health()


@pytest.mark.heavy
def test_connections_are_bounded_and_time_out(root: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(daemon, "HEALTH_TIMEOUT_S", 1.0, raising=False)
    d = _serve(root, monkeypatch)
    socks = []
    try:
        base = threading.active_count()
        for _ in range(200):  # half-open: connect, send nothing
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            socks.append(s)
        time.sleep(0.5)
        assert threading.active_count() <= base + getattr(daemon, "HEALTH_MAX_CONNECTIONS", 16)
        # the handler threads end once the clients time out; the endpoint answers again
        wait_for(lambda: threading.active_count() <= base, 30, "handler threads to end")
        code, body = get(f"http://127.0.0.1:{d.port}/healthz")
        assert code in (200, 503) and json.loads(body)["pid"]
    finally:
        for s in socks:
            s.close()
        d.stop_health()


def test_healthz_does_not_reveal_the_absolute_root(root: Path, monkeypatch: Any) -> None:
    _alerts(root, 1)
    d = _serve(root, monkeypatch)
    try:
        _, body = get(f"http://127.0.0.1:{d.port}/healthz")
        _, metrics = get(f"http://127.0.0.1:{d.port}/metrics")
    finally:
        d.stop_health()
    assert str(root.parent) not in body + metrics
    assert json.loads(body)["root"] == root.name


def test_health_host_is_documented_and_warns_when_not_loopback(root: Path) -> None:
    r = cli("daemon", "--help")
    assert "--health-host" in r.stdout and "not loopback" in r.stdout
    r = cli("daemon", "--once", "--health-port", "0", "--health-host", "0.0.0.0",
            "--root", str(root))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "health endpoint on 0.0.0.0, not loopback" in r.stderr
    r = cli("daemon", "--once", "--health-port", "0", "--root", str(root))
    assert "not loopback" not in r.stderr

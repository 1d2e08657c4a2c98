"""Shipping the log to object storage and indexing it back (docs/scale.md), against a real S3
server (moto) on 127.0.0.1. The bucket is read back with boto3, not with the shipper's client."""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("obstore")
pytest.importorskip("moto")

from index_support import reference_events, write_sweep  # noqa: E402

from ledgerx import Reader  # noqa: E402
from ledgerx.index import build_index  # noqa: E402

from conftest import REPO  # noqa: E402
from s3_support import (  # noqa: E402
    AWS_ENV,
    check_chains,
    moto_server,
    new_bucket,
    object_versions,
    objects,
    s3_client,
)


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture
def bucket(endpoint: str) -> str:
    name = f"b-{uuid.uuid4().hex[:12]}"
    new_bucket(endpoint, name)
    return name


def lx(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerx", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **AWS_ENV},
        cwd=REPO,
    )


def ship(root: Path, url: str, endpoint: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return lx("ship", "--root", str(root), "--to", url, "--endpoint-url", endpoint, *extra)


def rid(root: Path) -> str:
    return (root / "ship" / "root-id").read_text().strip()


def event_ids(db_root: Path) -> list[str]:
    r = Reader(db_root)
    try:
        return [x[0] for x in r.sql("SELECT event_id FROM events ORDER BY event_id").fetchall()]
    finally:
        r.close()


def test_ship_tiles_the_log_and_appends_go_out_as_new_objects(tmp_path, endpoint, bucket):
    root = tmp_path / "a"
    write_sweep(root, runs=2, trials=30, max_part_bytes=6000)
    url = f"s3://{bucket}/fleet"
    p = ship(root, url, endpoint, "--max-object-bytes", "2500")
    assert p.returncode == 0, p.stderr
    first = objects(endpoint, bucket)
    assert check_chains(first, "fleet", {rid(root): root}) > 3
    # a torn tail (no newline yet) is never shipped; once completed it is
    part = sorted((root / "events").glob("day=*/part-*.jsonl"))[-1]
    with open(part, "ab") as f:
        f.write(b'{"event_id":"half')
    assert ship(root, url, endpoint).returncode == 0
    assert objects(endpoint, bucket) == first
    write_sweep(root, runs=1, trials=5, seed=7, max_part_bytes=6000)  # new parts, and tails
    with open(part, "ab") as f:
        f.write(b'-line"}\n')
    assert ship(root, url, endpoint).returncode == 0
    after = objects(endpoint, bucket)
    assert {k: after[k] for k in first} == first  # old objects untouched
    assert len(after) > len(first)
    check_chains(after, "fleet", {rid(root): root})
    # nothing overwritten: every key has exactly one version in the versioned bucket
    assert set(object_versions(endpoint, bucket).values()) == {1}
    # shipping deleted nothing locally; a round with nothing new uploads nothing
    assert part.read_bytes().endswith(b'-line"}\n')
    p = ship(root, url, endpoint, "--json")
    assert json.loads(p.stdout)["objects"] == 0


def test_two_roots_never_collide_and_rebuild_indexes_each_event_once(tmp_path, endpoint, bucket):
    a, b, idx = tmp_path / "a", tmp_path / "b", tmp_path / "idx"
    idx.mkdir()  # an empty root of its own for the remote index
    write_sweep(a, runs=2, trials=10, seed=1)
    write_sweep(b, runs=2, trials=10, seed=2)
    # the same events on two hosts (a log copied by hand): the index holds each one once
    dup = b / "events" / "day=2026-01-01" / "part-000099.jsonl"
    dup.write_bytes(sorted((a / "events").glob("day=*/part-*.jsonl"))[0].read_bytes())
    url = f"s3://{bucket}/p"
    assert ship(a, url, endpoint).returncode == 0
    assert ship(b, url, endpoint, "--max-object-bytes", "3000").returncode == 0
    assert rid(a) != rid(b)
    check_chains(objects(endpoint, bucket), "p", {rid(a): a, rid(b): b})
    p = lx("rebuild", "--root", str(idx), "--source", url, "--endpoint-url", endpoint, "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    want = sorted({e["event_id"] for e in reference_events(a) + reference_events(b)})
    assert event_ids(idx) == want
    assert rep["duplicates"] == len(reference_events(a))
    # incremental: new events on one host, shipped, indexed once; a repeat indexes nothing
    write_sweep(a, runs=1, trials=3, seed=3)
    assert ship(a, url, endpoint).returncode == 0
    p = lx("rebuild", "--root", str(idx), "--source", url, "--endpoint-url", endpoint, "--json")
    rep = json.loads(p.stdout)
    assert rep["mode"] == "incremental" and rep["duplicates"] == 0
    want = sorted({e["event_id"] for e in reference_events(a) + reference_events(b)})
    assert event_ids(idx) == want
    p = lx("rebuild", "--root", str(idx), "--source", url, "--endpoint-url", endpoint, "--json")
    assert json.loads(p.stdout)["mode"] == "noop"


def test_remote_rebuild_equals_local_rebuild(tmp_path, endpoint, bucket):
    root, idx = tmp_path / "a", tmp_path / "idx"
    idx.mkdir()
    write_sweep(root, runs=3, trials=25, fail_last=True, max_part_bytes=8000)
    url = f"s3://{bucket}/x"
    assert ship(root, url, endpoint, "--max-object-bytes", "1500").returncode == 0
    # the same bytes in two overlapping objects (a shipper that lost its state and re-sent a
    # whole part under a fresh name range) are mirrored, and indexed, once
    part = sorted((root / "events").glob("day=*/part-*.jsonl"))[0]
    day, name = part.parent.name, part.stem
    whole = part.read_bytes()
    s3_client(endpoint).put_object(
        Bucket=bucket,
        Key=f"x/roots/{rid(root)}/{day}/{name}/{0:015d}-{len(whole):015d}.jsonl",
        Body=whole,
    )
    p = lx("rebuild", "--root", str(idx), "--source", url, "--endpoint-url", endpoint)
    assert p.returncode == 0, p.stderr
    p = lx("runs", "--root", str(idx), "--json")  # the CLI reads a remote index as any root
    assert p.returncode == 0 and len(json.loads(p.stdout)) == 3, p.stderr
    build_index(root)
    local, remote = Reader(root), Reader(idx)
    try:
        for q in [
            "SELECT event_id, event_type, ts, run_id, seq, data::VARCHAR FROM events",
            "SELECT * EXCLUDE (days) FROM runs_d",
            "SELECT * FROM phase_timings",
            "SELECT * FROM trial_results",
            "SELECT * FROM latest_runs",
        ]:
            got = sorted(map(repr, remote.sql(q).fetchall()))
            assert got == sorted(map(repr, local.sql(q).fetchall())), q
    finally:
        local.close()
        remote.close()


def test_sigkilled_shipper_resumes_without_loss_or_duplicate(tmp_path, endpoint, bucket):
    """Kill -9 the shipper at random points while the log grows; in the end the objects tile
    every part exactly (no loss, no overlap) and no key was ever written twice."""
    root = tmp_path / "a"
    write_sweep(root, runs=2, trials=40, max_part_bytes=9000)
    url = f"s3://{bucket}/k"
    rng = random.Random(13)
    env = {**os.environ, **AWS_ENV}
    args = ["--root", str(root), "--to", url, "--endpoint-url", endpoint, "--interval", "0.01"]
    kills = 0
    for i in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ledgerx", "ship", *args, "--max-object-bytes", "700"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        time.sleep(rng.uniform(0.3, 1.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, err = proc.communicate()
        assert proc.returncode in (-signal.SIGKILL, 0), err
        write_sweep(root, runs=1, trials=rng.randrange(1, 15), seed=100 + i, max_part_bytes=9000)
    assert kills >= 8
    p = ship(root, url, endpoint)
    assert p.returncode == 0, p.stderr
    check_chains(objects(endpoint, bucket), "k", {rid(root): root})
    assert set(object_versions(endpoint, bucket).values()) == {1}


def test_other_bytes_under_our_name_are_never_overwritten(tmp_path, endpoint, bucket):
    a, b = tmp_path / "a", tmp_path / "b"
    write_sweep(a, runs=1, trials=5, seed=1)
    write_sweep(b, runs=1, trials=5, seed=2)
    url = f"s3://{bucket}/c"
    assert ship(a, url, endpoint).returncode == 0
    before = objects(endpoint, bucket)
    (b / "ship").mkdir()
    (b / "ship" / "root-id").write_text(rid(a) + "\n")  # a root copied with its id
    p = ship(b, url, endpoint)
    assert p.returncode == 1
    assert p.stderr.startswith("ledgerx: error:") and "not overwritten" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert objects(endpoint, bucket) == before


def test_bad_input_is_one_line_errors(tmp_path, endpoint, bucket):
    root = tmp_path / "a"
    write_sweep(root, runs=1, trials=2)
    for args, msg in [
        (["--to", "http://x/y"], "s3://bucket/prefix"),
        (["--to", f"s3://{bucket}/p", "--interval", "0"], "--interval"),
    ]:
        p = lx("ship", "--root", str(root), *args)
        assert p.returncode != 0 and msg in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = ship(tmp_path / "missing", f"s3://{bucket}/p", endpoint)
    assert p.returncode == 1 and "no ledger root" in p.stderr
    p = ship(root, "s3://no-such-bucket-x/p", endpoint)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    p = lx(
        "rebuild", "--root", str(root), "--source", f"s3://{bucket}/p", "--endpoint-url", endpoint
    )
    assert p.returncode == 1 and "local log" in p.stderr


def test_failed_requests_are_retried_with_backoff(tmp_path, endpoint, bucket, monkeypatch):
    import obstore
    from obstore.exceptions import GenericError

    ship_mod = importlib.import_module("ledgerx.remote.ship")

    root = tmp_path / "a"
    write_sweep(root, runs=1, trials=3)
    monkeypatch.setattr(ship_mod, "BACKOFF_S", 0.01)
    real_put, calls = obstore.put, []

    def flaky_put(*a, **kw):  # two failures, then the real request
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise GenericError("connection reset (injected)")
        return real_put(*a, **kw)

    monkeypatch.setattr(obstore, "put", flaky_put)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_ENV["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    rep = ship_mod.ship(root, f"s3://{bucket}/r", endpoint_url=endpoint)
    assert rep.objects == 1 and len(calls) == 3
    assert calls[2] - calls[1] >= 2 * (calls[1] - calls[0]) * 0.9 or calls[2] - calls[1] >= 0.02
    check_chains(objects(endpoint, bucket), "r", {rid(root): root})


def test_daemon_ships_each_cycle(tmp_path, endpoint, bucket):
    root = tmp_path / "a"
    write_sweep(root, runs=1, trials=4)
    url = f"s3://{bucket}/d"
    p = lx("daemon", "--root", str(root), "--once", "--ship-to", url, "--endpoint-url", endpoint)
    assert p.returncode == 0, p.stderr
    check_chains(objects(endpoint, bucket), "d", {rid(root): root})
    assert (root / "index" / "runs.duckdb").exists()


def test_create_only_put_never_replaces_an_object(tmp_path, endpoint, bucket, monkeypatch):
    """An object that appears under our next name after the listing (a race the listing cannot
    see) is checked, not overwritten: same bytes are adopted, other bytes refused."""
    from ledgerx.remote import RemoteError, Shipper

    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "a"
    write_sweep(root, runs=1, trials=5)
    part = sorted((root / "events").glob("day=*/part-*.jsonl"))[0]
    data = part.read_bytes()
    url = f"s3://{bucket}/z"
    with Shipper(root, url, endpoint_url=endpoint) as s:
        s._found = s._listing()
        key = f"z/roots/{s.root_id}/day=2026-01-01/{part.stem}/{0:015d}-{len(data):015d}.jsonl"
        s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=data[:-2] + b"X\n")
        with pytest.raises(RemoteError, match="not overwritten"):
            s.round()
    assert objects(endpoint, bucket)[key] == data[:-2] + b"X\n"
    assert set(object_versions(endpoint, bucket).values()) == {1}
    s3_client(endpoint).delete_object(Bucket=bucket, Key=key)  # a delete marker: 2 versions
    with Shipper(root, url, endpoint_url=endpoint) as s:
        s._found = s._listing()
        s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=data)
        rep = s.round()
    assert rep.adopted == 1 and rep.objects == 0
    check_chains(objects(endpoint, bucket), "z", {rid(root): root})


def test_a_forked_child_is_refused_not_hung(tmp_path, endpoint, bucket):
    """obstore's async runtime does not survive fork(): a child of a process that shipped gets
    a clear RemoteError instead of hanging."""
    root = tmp_path / "a"
    write_sweep(root, runs=1, trials=2)
    code = f"""
import os, sys
from ledgerx.remote import RemoteError, ship
ship({str(root)!r}, "s3://{bucket}/f", endpoint_url={endpoint!r})
pid = os.fork()
if pid == 0:
    try:
        ship({str(root)!r}, "s3://{bucket}/g", endpoint_url={endpoint!r})
        os._exit(3)
    except RemoteError as e:
        print("refused:", e, flush=True)
        os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **AWS_ENV},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "cannot be used after fork()" in p.stdout

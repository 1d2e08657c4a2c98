"""A real S3 server for the tests: moto's server in its own process on 127.0.0.1, and helpers
that read the bucket with boto3 (an independent client, not the code under test)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server() -> Iterator[str]:
    """Start `moto.server` on a free loopback port; yield its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **AWS_ENV},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def new_bucket(endpoint: str, name: str, versioned: bool = True) -> None:
    """A bucket with versioning on: an overwritten object would show a second version."""
    c = s3_client(endpoint)
    c.create_bucket(Bucket=name)
    if versioned:
        c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def object_versions(endpoint: str, bucket: str) -> dict[str, int]:
    """{key: number of versions (delete markers included)}."""
    c = s3_client(endpoint)
    out: dict[str, int] = {}
    for page in c.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out[v["Key"]] = out.get(v["Key"], 0) + 1
    return out


def objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    c = s3_client(endpoint)
    out: dict[str, bytes] = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def check_chains(objs: dict[str, bytes], prefix: str, roots: dict[str, Path]) -> int:
    """Per shipped part: the objects tile [0, last newline) of the local file exactly, with no
    gap, no overlap, each holding the local bytes of its range. Parsed with a regex of its own
    (not the code under test). Returns the number of objects."""
    import re

    rx = re.compile(
        re.escape(prefix)
        + r"/roots/([0-9a-f]{32})/(day=[0-9-]{10})/(part-\d{6})/(\d{15})-(\d{15})\.jsonl"
    )
    parts: dict[tuple[str, str], list[tuple[int, int, bytes]]] = {}
    for key, data in objs.items():
        m = rx.fullmatch(key)
        assert m, f"unexpected object name {key}"
        rid, day, part, s, e = m.groups()
        parts.setdefault((rid, f"{day}/{part}.jsonl"), []).append((int(s), int(e), data))
    seen_local = set()
    for (rid, rel), chunks in parts.items():
        assert rid in roots, f"unknown root id {rid}"
        local = (roots[rid] / "events" / rel).read_bytes()
        chunks.sort()
        pos = 0
        for s, e, data in chunks:
            assert s == pos, f"{rid}/{rel}: object at {s}, expected {pos} (gap or overlap)"
            assert len(data) == e - s and data == local[s:e], f"{rid}/{rel}: bytes differ at {s}"
            assert data.endswith(b"\n"), "an object ends mid-line"
            pos = e
        assert pos == local.rfind(b"\n") + 1, f"{rid}/{rel}: shipped {pos} of {len(local)}"
        seen_local.add((rid, rel))
    for rid, r in roots.items():
        for p in sorted((r / "events").glob("day=*/part-*.jsonl")):
            rel = f"{p.parent.name}/{p.name}"
            if b"\n" in p.read_bytes():
                assert (rid, rel) in seen_local, f"{rel} of {rid} never shipped"
    return len(objs)

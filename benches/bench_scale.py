"""Object-storage benchmarks (docs/scale.md), against moto's S3 server on 127.0.0.1, ratios
measured in the same run.

    .venv/bin/python benches/bench_scale.py --events 200000
    .venv/bin/pytest benches/bench_scale.py -s

1. `ledgerx ship` (one round, fresh root id) of N events in 8 MB parts vs a plain boto3
   `put_object` of the same part files, one after the other (best of `--repeat`, interleaved);
2. `rebuild --source` (list + fetch into the mirror + index) into a fresh root vs a local full
   rebuild of the same log.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from ledgerx import _core  # noqa: E402
from ledgerx.index import build_index  # noqa: E402

from s3_support import AWS_ENV, moto_server, new_bucket, s3_client  # noqa: E402


def write_log(root: Path, n: int, seed: int = 0) -> int:
    """~300-byte trial events in 8 MB parts; returns the log's size in bytes."""
    rng = random.Random(seed)
    w = _core.Writer(str(root), durability="os", max_part_bytes=8 << 20)
    rid = "run-bench-0"
    w.emit("run.created", {"run_kind": "sweep", "config": {}, "data_fingerprint": "fp"}, run_id=rid)
    for i in range(n - 1):
        w.emit(
            "trial.recorded",
            {
                "trial_id": i,
                "params": {"fast": i % 50, "slow": i % 200, "stop": 0.02},
                "metrics": {"sharpe": rng.random(), "dd": -rng.random(), "trades": i % 997},
            },
            run_id=rid,
        )
    w.close()
    return sum(p.stat().st_size for p in (root / "events").glob("day=*/*.jsonl"))


def time_ship(root: Path, url: str, endpoint: str) -> float:
    from ledgerx.remote.ship import Shipper

    shutil.rmtree(root / "ship", ignore_errors=True)  # a fresh root id: every byte goes out
    t0 = time.perf_counter()
    with Shipper(root, url, endpoint_url=endpoint) as s:
        rep = s.round()
    dt = time.perf_counter() - t0
    assert rep.objects > 0
    return dt


def time_boto3(root: Path, bucket: str, endpoint: str) -> float:
    c = s3_client(endpoint)
    prefix = uuid.uuid4().hex
    t0 = time.perf_counter()
    for p in sorted((root / "events").glob("day=*/*.jsonl")):
        c.put_object(Bucket=bucket, Key=f"{prefix}/{p.parent.name}/{p.name}", Body=p.read_bytes())
    return time.perf_counter() - t0


def time_remote_rebuild(url: str, endpoint: str, work: Path) -> float:
    from ledgerx.remote import rebuild_from_remote

    dest = work / f"idx-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    rebuild_from_remote(dest, url, endpoint_url=endpoint)
    dt = time.perf_counter() - t0
    shutil.rmtree(dest)
    return dt


def time_local_rebuild(root: Path) -> float:
    t0 = time.perf_counter()
    build_index(root, full_rebuild=True)
    return time.perf_counter() - t0


def run(events: int, repeat: int) -> dict[str, float]:
    os.environ.update(AWS_ENV)
    work = Path(tempfile.mkdtemp(prefix="ledgerx-bench-scale-"))
    try:
        root = work / "ledger"
        size = write_log(root, events)
        with moto_server() as endpoint:
            new_bucket(endpoint, "ship", versioned=False)
            new_bucket(endpoint, "plain", versioned=False)
            ship_t, boto_t = [], []
            for _ in range(repeat):  # interleaved, best of each
                ship_t.append(time_ship(root, "s3://ship/b", endpoint))
                boto_t.append(time_boto3(root, "plain", endpoint))
            shutil.rmtree(root / "ship")
            new_bucket(endpoint, "remote", versioned=False)
            time_ship(root, "s3://remote/r", endpoint)
            remote_t, local_t = [], []
            for _ in range(repeat):
                remote_t.append(time_remote_rebuild("s3://remote/r", endpoint, work))
                local_t.append(time_local_rebuild(root))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "events": events,
        "mb": size / 1e6,
        "ship_s": min(ship_t),
        "boto3_s": min(boto_t),
        "remote_rebuild_s": min(remote_t),
        "local_rebuild_s": min(local_t),
    }
    out["ship_mb_s"] = out["mb"] / out["ship_s"]
    out["boto3_mb_s"] = out["mb"] / out["boto3_s"]
    out["ship_ratio"] = out["ship_s"] / out["boto3_s"]
    out["rebuild_ratio"] = out["remote_rebuild_s"] / out["local_rebuild_s"]
    return out


def report(r: dict[str, float]) -> str:
    return "\n".join(
        [
            f"log: {r['events']:,} events, {r['mb']:.1f} MB in 8 MB parts; moto on 127.0.0.1",
            f"ship (one round)          {r['ship_s']:7.3f} s  {r['ship_mb_s']:7.1f} MB/s",
            f"boto3 put_object, same    {r['boto3_s']:7.3f} s  {r['boto3_mb_s']:7.1f} MB/s",
            f"  ratio ship / boto3      {r['ship_ratio']:7.2f}",
            f"rebuild --source (fresh)  {r['remote_rebuild_s']:7.3f} s",
            f"local full rebuild        {r['local_rebuild_s']:7.3f} s",
            f"  ratio remote / local    {r['rebuild_ratio']:7.2f}",
        ]
    )


def test_bench_scale() -> None:
    from conftest import record

    r = run(int(os.environ.get("LEDGERX_BENCH_SCALE_EVENTS", "200000")), 3)
    print("\n" + report(r))
    record("scale", "ship vs boto3 put_object (s)", {}, note=f"ratio {r['ship_ratio']:.2f}")
    record("scale", "rebuild --source vs local (s)", {}, note=f"ratio {r['rebuild_ratio']:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(report(run(a.events, a.repeat)))

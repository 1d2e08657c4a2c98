"""SIGKILL loop (issues 5 and 16): Python writers in mixed durability modes, Node writers (the
napi addon's `getEventEmitter`), the indexer (with the legacy projection) and the shipper (to a
real S3 server, moto, on 127.0.0.1) are started each round, and SIGKILLed in random order at a
random moment once every writer has acknowledged something. One oracle for acknowledgments:
each writer prints every acknowledged event on its stdout, read by this test process, which
survives every kill.

G1 every acknowledged event is in the index; G2 no event is indexed twice; G3 only complete,
valid lines are indexed; G4 every byte of every part is indexed, bad or pending; G5 re-running
the indexer changes nothing; G6 per-writer seq unique and increasing. Beside them: the shipped
objects tile every part exactly and no key was written twice, an index rebuilt from the bucket
holds the same events as the local one, and the projection (killed mid-round too) equals one
built from scratch.

`make test` runs 6 rounds on one ledger; `make soak` runs LEDGERX_SOAK_ROUNDS (1,000) in chunks
of 100 rounds, each on a fresh ledger and bucket, checked after each chunk (progress lines on
stderr and, with LEDGERX_SOAK_LOG=FILE, appended to FILE)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from conftest import REPO, soak_progress
from crc32c_ref import crc32c
from legacy_fixture import legacy_rows

ROUNDS = int(os.environ.get("LEDGERX_KILL_ROUNDS", "6"))
SOAK_ROUNDS = int(os.environ.get("LEDGERX_SOAK_ROUNDS", "1000"))
CHUNK = 100
SOAK_SEED = int(os.environ.get("LEDGERX_SOAK_SEED", "5000"))

WRITER = """
import sys, time, ledgerx
root, name, mode = sys.argv[1], sys.argv[2], sys.argv[3]
led = ledgerx.open(root, durability=mode)
out = sys.stdout
unacked = []
i = 0
while True:
    led.emit("trial.recorded",
             {"trial_id": i, "params": {"mode": mode}, "metrics": {"x": i * 0.25}}, run_id=name)
    unacked.append(i)
    i += 1
    # group mode acknowledges at flush(); fsync and os modes when emit() returns (a SIGKILL
    # does not lose the page cache, so os-mode writes survive it).
    if mode != "group" or i % 20 == 0:
        if mode == "group":
            led.flush()
        out.write("".join(f"{name} {k}\\n" for k in unacked))
        out.flush()
        unacked.clear()
    if i % 50 == 0:
        time.sleep(0.005)  # a few thousand events a second: kills land mid-write, not mid-parse
"""

# A Node writer: a Promise resolves when its event is durable (group: at the group commit,
# fsync: after its fdatasync); only then is the event printed (stdout to a pipe is synchronous
# in Node on Linux, so a printed line was handed to the kernel before any kill).
NODE_WRITER = """
const [root, name, mode] = process.argv.slice(1);
const em = lx.getEventEmitter(root, { durability: mode });
(async () => {
  for (let i = 0; ; i += 20) {
    const batch = [];
    for (let k = i; k < i + 20; k++) {
      batch.push(em.emitTrialRecorded(name, k, { mode, lang: 'node' }, { x: k * 0.25 }));
    }
    await Promise.all(batch);
    let s = '';
    for (let k = i; k < i + 20; k++) s += `${name} ${k}\\n`;
    process.stdout.write(s);
    await new Promise((r) => setTimeout(r, 2));
  }
})().catch((e) => { console.error(e); process.exit(1); });
"""

MODES = ["fsync", "group", "os", "group"]
NODE_MODES = ["group", "fsync"]
NODE_ADDON = REPO / "node" / "ledgerx.linux-x64-gnu.node"


@dataclass
class Ship:
    endpoint: str
    bucket: str
    prefix: str = "kill"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class Loop:
    root: Path
    rng: random.Random
    ship: Ship
    acked: set[tuple[str, int]] = field(default_factory=set)
    kills: dict[str, int] = field(default_factory=dict)
    rounds: int = 0


def _env() -> dict[str, str]:
    from s3_support import AWS_ENV

    return {**os.environ, **AWS_ENV}


def _reader(p: subprocess.Popen[str], acked: set[tuple[str, int]], seen: set[str]) -> None:
    assert p.stdout is not None
    for line in p.stdout:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():  # a line cut by the kill is not an ack
            acked.add((parts[0], int(parts[1])))
            seen.add(parts[0])


def _lx(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ledgerx", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=REPO,
        **kw,  # type: ignore[call-overload]
    )


def _spawn_round(lp: Loop) -> tuple[dict[str, subprocess.Popen[str]], list[str]]:
    """Start this round's processes: {role: process} and the names of its writers."""
    rnd, root = lp.rounds, str(lp.root)
    procs: dict[str, subprocess.Popen[str]] = {}
    names: list[str] = []
    for k, mode in enumerate(MODES):
        name = f"r{rnd}-w{k}"
        procs[f"py-{mode}-{k}"] = subprocess.Popen(
            [sys.executable, "-c", WRITER, root, name, mode], stdout=subprocess.PIPE, text=True
        )
        names.append(name)
    node = f"const lx = require({str(REPO / 'node')!r});\n{NODE_WRITER}"
    for k, mode in enumerate(NODE_MODES):
        name = f"r{rnd}-n{k}"
        procs[f"node-{mode}-{k}"] = subprocess.Popen(
            ["node", "-e", node, "--", root, name, mode], stdout=subprocess.PIPE, text=True
        )
        names.append(name)
    procs["indexer"] = _lx("rebuild", "--root", root, "--legacy-projection")
    procs["shipper"] = _lx(
        "ship", "--root", root, "--to", lp.ship.url, "--endpoint-url", lp.ship.endpoint,
        "--interval", "0.05", "--max-object-bytes", "20000",
    )  # fmt: skip
    return procs, names


def _index_identity(root: Path) -> tuple[int, int] | None:
    try:
        st = (root / "index" / "runs.duckdb").stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _kill_indexer_after_its_publish(
    lp: Loop, indexer: subprocess.Popen[str], before: tuple[int, int] | None
) -> None:
    """Half the rounds: the writers are killed first (by the caller), then this waits (a
    condition, with a deadline) until this round's indexer has published runs.duckdb (a new
    inode by rename) and SIGKILLs it a random 0-50 ms later, while it writes the other indexes,
    the catalog or the projection, or is about to exit. Without this the kill mostly lands in
    the scan (under load a round's scan outlives its 0-0.5 s). Writers keep running meanwhile
    would let the ledger snowball: each wait longer than the last."""
    deadline = time.monotonic() + 60
    while _index_identity(lp.root) == before and indexer.poll() is None:
        assert time.monotonic() < deadline, "the indexer never published"
        time.sleep(0.001)
    time.sleep(lp.rng.uniform(0.0, 0.05))
    if _index_identity(lp.root) != before and indexer.poll() is None:
        os.kill(indexer.pid, signal.SIGKILL)
        lp.kills["indexer-after-publish"] = lp.kills.get("indexer-after-publish", 0) + 1


def _kill_all(lp: Loop, victims: list[tuple[str, subprocess.Popen[str]]]) -> None:
    """SIGKILL each live one in the given order, a random 0-20 ms apart; counts the kills."""
    for role, p in victims:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kind = role.split("-")[0]
            lp.kills[kind] = lp.kills.get(kind, 0) + 1
        time.sleep(lp.rng.uniform(0, 0.02))


def one_round(lp: Loop) -> None:
    """Start everything, wait until every writer acknowledged at least once (a condition, with
    a deadline), let them run a random while, then SIGKILL all in random order."""
    published = _index_identity(lp.root)
    procs, names = _spawn_round(lp)
    seen: set[str] = set()
    readers = [
        threading.Thread(target=_reader, args=(p, lp.acked, seen))
        for p in procs.values()
        if p.stdout is not None
    ]
    for t in readers:
        t.start()
    deadline = time.monotonic() + 60
    while len(seen) < len(names):
        dead = [
            r for r, p in procs.items() if r.startswith(("py", "node")) and p.poll() is not None
        ]
        assert not dead, f"writers died before acknowledging anything: {dead}"
        assert time.monotonic() < deadline, f"writers never acknowledged: {set(names) - seen}"
        time.sleep(0.01)
    time.sleep(lp.rng.uniform(0.0, 0.5))
    victims = list(procs.items())
    lp.rng.shuffle(victims)
    if lp.rng.random() < 0.5:
        writers = [v for v in victims if v[0].startswith(("py", "node"))]
        _kill_all(lp, writers)
        _kill_indexer_after_its_publish(lp, procs["indexer"], published)
    _kill_all(lp, victims)
    for _, p in victims:
        p.wait()
    for t in readers:
        t.join()
    for role in ("indexer", "shipper"):
        p = procs[role]
        err = p.stderr.read() if p.stderr else ""
        if p.returncode not in (0, -signal.SIGKILL):
            # A second indexer refusing while the previous one is still dying is fine.
            assert "busy" in err or "lock" in err, f"{role}: {err}"
    lp.rounds += 1


def _finish(root: Path, *args: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ledgerx", *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=900,
        env=_env(),
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr


def check_guarantees(lp: Loop, tmp: Path) -> int:
    """G1–G6 on the local index, then the shipped copy and the projection. Returns the number
    of indexed events."""
    root = lp.root
    assert len(lp.acked) > 1000, "the writers acknowledged too little to prove anything"
    # Let the indexer finish, twice: the second run must change nothing (G5).
    _finish(root, "rebuild", "--legacy-projection")
    db = root / "index" / "runs.duckdb"
    before = (db.stat().st_mtime_ns, db.stat().st_size)
    _finish(root, "rebuild", "--legacy-projection")
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before, "G5: re-run changed the index"

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT run_id, CAST(json_extract(data, '$.trial_id') AS BIGINT), event_id, writer,"
            ' seq, file, "offset", line_bytes FROM events'
        ).fetchall()
        bad = dict(con.execute("SELECT file, sum(len) FROM _bad_lines GROUP BY file").fetchall())
        offsets = dict(con.execute('SELECT file, "offset" FROM _ledger_files').fetchall())
    finally:
        con.close()
    indexed = {(r[0], r[1]) for r in rows}
    missing = lp.acked - indexed
    assert not missing, (
        f"G1: {len(missing)} acknowledged events not indexed, e.g. {sorted(missing)[:3]}"
    )
    assert {w[:-2] for w, _ in lp.acked if "-n" in w}, "no Node writer acknowledged anything"
    assert len({r[2] for r in rows}) == len(rows), "G2: an event indexed twice"
    assert len(indexed) == len(rows), "G2: the same trial indexed twice"

    events = root / "events"
    per_file_bytes: dict[str, int] = {}
    cache: dict[str, bytes] = {}
    for run_id, _, event_id, _writer, _seq, file, off, n in rows:
        if file not in cache:
            cache[file] = (events / file).read_bytes()
        line = cache[file][off : off + n]
        assert line.endswith(b"\n"), f"G3: {file}@{off} is not a complete line"
        cut = line.rindex(b',"crc":')
        assert line[cut + 8 : cut + 16].decode() == f"{crc32c(line[:cut]):08x}", "G3: bad crc"
        assert event_id.encode() in line and run_id.encode() in line
        per_file_bytes[file] = per_file_bytes.get(file, 0) + n
    cache.clear()
    for part in events.glob("day=*/part-*.jsonl"):
        rel = f"{part.parent.name}/{part.name}"
        size = len(part.read_bytes().rstrip(b"\0"))  # a zero tail is not yet written
        pending = size - offsets.get(rel, 0)
        accounted = per_file_bytes.get(rel, 0) + int(bad.get(rel, 0) or 0) + pending
        assert accounted == size, f"G4: {rel}: {accounted} of {size} bytes accounted for"

    by_writer: dict[str, list[tuple[str, int, int]]] = {}
    for _, _, _, writer, seq, file, off, _ in rows:
        by_writer.setdefault(writer, []).append((file, off, seq))
    for writer, items in by_writer.items():
        seqs = [s for _, _, s in sorted(items)]
        assert len(set(seqs)) == len(seqs), f"G6: {writer} repeats a seq"
        assert seqs == sorted(seqs), f"G6: {writer} seq not increasing in log order"
    _check_shipped(lp, {r[2] for r in rows}, tmp)
    _check_projection(root, tmp)
    return len(rows)


def _check_shipped(lp: Loop, local_ids: set[str], tmp: Path) -> None:
    """After one last unkilled ship: objects tile each part, one version per key, and the
    index rebuilt from the bucket holds exactly the local index's events."""
    from s3_support import check_chains, object_versions, objects

    _finish(lp.root, "ship", "--to", lp.ship.url, "--endpoint-url", lp.ship.endpoint)
    rid = (lp.root / "ship" / "root-id").read_text().strip()
    check_chains(objects(lp.ship.endpoint, lp.ship.bucket), lp.ship.prefix, {rid: lp.root})
    assert set(object_versions(lp.ship.endpoint, lp.ship.bucket).values()) == {1}, (
        "a shipped key was written twice"
    )
    idx = tmp / f"remote-{uuid.uuid4().hex[:8]}"
    idx.mkdir()
    _finish(idx, "rebuild", "--source", lp.ship.url, "--endpoint-url", lp.ship.endpoint)
    con = duckdb.connect(str(idx / "index" / "runs.duckdb"), read_only=True)
    try:
        remote = [r[0] for r in con.execute("SELECT event_id FROM events").fetchall()]
    finally:
        con.close()
    assert len(remote) == len(set(remote)), "the shipped copy indexes an event twice"
    assert set(remote) == local_ids, "the shipped copy's index differs from the local one"
    shutil.rmtree(idx)


def _check_projection(root: Path, tmp: Path) -> None:
    """The projection the killed rounds kept up equals one written from scratch."""
    from ledgerx.index.publish import IndexPaths
    from ledgerx.legacy.projection import projection_path, write_projection

    paths = IndexPaths.for_root(root, None)
    kept = projection_path(paths)
    fresh_dir = tmp / f"fresh-{uuid.uuid4().hex[:8]}"
    fresh_dir.mkdir()
    for f in (paths.runs, paths.alerts):
        if f.exists():
            shutil.copy(f, fresh_dir / f.name)
    fresh = write_projection(IndexPaths.for_root(root, fresh_dir / "runs.duckdb"), full=True).path
    assert legacy_rows(kept) == legacy_rows(fresh), "the kept projection drifted"
    shutil.rmtree(fresh_dir)


@pytest.fixture(scope="module")
def endpoint():
    pytest.importorskip("obstore")
    pytest.importorskip("moto")
    if shutil.which("node") is None or not NODE_ADDON.exists():
        pytest.skip("the Node addon is not built (`make node`; `make test` builds it)")
    from s3_support import moto_server

    with moto_server() as url:
        yield url


def _new_loop(tmp: Path, endpoint: str, seed: int) -> Loop:
    from s3_support import new_bucket

    bucket = f"k-{uuid.uuid4().hex[:12]}"
    new_bucket(endpoint, bucket)
    root = tmp / "ledger"
    # The ledger exists before the first indexer starts (a root that does not exist is a
    # mistyped --root, which `ledgerx rebuild` refuses).
    (root / "events").mkdir(parents=True)
    return Loop(root, random.Random(seed), Ship(endpoint, bucket))


@pytest.mark.heavy
def test_sigkill_loop(tmp_path: Path, endpoint: str) -> None:
    lp = _new_loop(tmp_path, endpoint, 1234)
    for _ in range(ROUNDS):
        one_round(lp)
    check_guarantees(lp, tmp_path)
    # Every kind of process was killed at least once while alive.
    assert {"py", "node", "indexer", "shipper"} <= set(lp.kills), lp.kills


@pytest.mark.slow
def test_sigkill_soak(tmp_path: Path, endpoint: str) -> None:
    """`make soak`: LEDGERX_SOAK_ROUNDS rounds in chunks of 100, each chunk a fresh ledger and
    bucket checked for G1–G6 (and shipping, projection) before the next starts."""
    from s3_support import s3_client

    done, t0 = 0, time.monotonic()
    totals: dict[str, int] = {}
    chunk_no = 0
    while done < SOAK_ROUNDS:
        n = min(CHUNK, SOAK_ROUNDS - done)
        tmp = tmp_path / f"chunk{chunk_no}"
        lp = _new_loop(tmp, endpoint, SOAK_SEED + chunk_no)
        for _ in range(n):
            one_round(lp)
        events = check_guarantees(lp, tmp)
        done += n
        chunk_no += 1
        for k, v in lp.kills.items():
            totals[k] = totals.get(k, 0) + v
        soak_progress(
            f"kill soak: {done}/{SOAK_ROUNDS} rounds, chunk of {n} checked (G1-G6, shipping, "
            f"projection): {len(lp.acked)} acked, {events} indexed; kills so far {totals}; "
            f"{time.monotonic() - t0:.0f} s"
        )
        c = s3_client(endpoint)  # free the server's memory before the next chunk
        for page in c.get_paginator("list_object_versions").paginate(Bucket=lp.ship.bucket):
            for v in page.get("Versions", []):
                c.delete_object(Bucket=lp.ship.bucket, Key=v["Key"], VersionId=v["VersionId"])
        shutil.rmtree(tmp)
    # The indexer was killed after a publish too, not only inside its scan.
    assert totals.get("indexer-after-publish", 0) > 0, totals

"""Differential fuzz of the read side against the independent reader (tests/logcheck.py):
valid logs get random damage (flipped bytes, damaged keys, garbage lines, torn prefixes glued to
valid lines, duplicated lines, CRLF, BOM, blank lines, cut tails), then the Rust scanner and a
full or incremental `build_index` must keep exactly the events the oracle reads.

`make test` runs a bounded number of examples (about 30 s); `make soak` (-m slow) runs many
more, LEDGERX_FUZZ_EXAMPLES sets how many."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from ledgerx import _core
from ledgerx.index import IndexPaths, build_index
from ledgerx.index.indexer import open_readonly

from conftest import soak_progress
from crc32c_ref import crc32c
from logcheck import expected_index, read_part

SOAK = int(os.environ.get("LEDGERX_FUZZ_EXAMPLES", "3000"))
SOAK_SECONDS = float(os.environ.get("LEDGERX_FUZZ_SECONDS", "0"))
DAYS = ["2026-03-01", "2026-03-02"]
TYPES = ["trial.recorded", "run.heartbeat", "x.custom"]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_data = st.dictionaries(
    st.text(max_size=4),
    st.recursive(
        json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c)
    ),
    max_size=4,
)


@st.composite
def lines(draw: Any) -> bytes:
    """One well-formed line: a writer's (UUIDv7, crc) or a third-party tool's (uuid4, no crc)."""
    third = draw(st.booleans())
    bits = draw(st.integers(0, 2**128 - 1))
    eid = str(uuid.UUID(int=bits, version=4)) if third else _uuid7(bits)
    day = draw(st.sampled_from(DAYS))
    us = draw(st.integers(0, 86_400 * 10**6 - 1))
    s, frac = divmod(us, 10**6)
    ts = f"{day}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:06d}Z"
    env = {
        "event_id": eid,
        "event_type": draw(st.sampled_from(TYPES)),
        "schema_version": draw(st.integers(1, 3)),
        "ts": ts,
        "run_id": draw(st.none() | st.sampled_from(["r1", "r2"])),
        "writer": draw(st.sampled_from(["w-a", "w-b", ""])),
        "seq": draw(st.integers(0, 50)),
        "data": draw(json_data),
    }
    body = json.dumps(env, separators=(",", ":"), ensure_ascii=draw(st.booleans())).encode()
    if third:
        return body + b"\n"
    return body[:-1] + f',"crc":"{crc32c(body[:-1]):08x}"}}\n'.encode()


def _uuid7(bits: int) -> str:
    u = (bits & ~(0xF << 76) & ~(0x3 << 62)) | (0x7 << 76) | (0x2 << 62)
    return str(uuid.UUID(int=u))


def _flip(b: bytes, pos: int, bit: int) -> bytes:
    if not b:
        return b
    i = pos % len(b)
    return b[:i] + bytes([b[i] ^ (1 << bit)]) + b[i + 1 :]


def damage(draw: Any, ls: list[bytes]) -> bytes:
    """Apply random damage to a list of lines; returns the part's bytes."""
    ops = draw(st.lists(st.integers(0, 10), max_size=6))
    for op in ops:
        i = draw(st.integers(0, max(len(ls) - 1, 0)))
        if not ls:
            ls.append(b"\n")
            continue
        ln = ls[i]
        if op == 0:  # a flipped bit anywhere
            ls[i] = _flip(ln, draw(st.integers(0, 10**6)), draw(st.integers(0, 7)))
        elif op == 1:  # a flipped bit in a top-level key: `"crc"` → `"cRc"`, `"seq"` → ...
            keys = [k for k in range(len(ln)) if ln[k : k + 2] == b',"'] or [0]
            k = draw(st.sampled_from(keys)) + 2
            ls[i] = _flip(ln, k + draw(st.integers(0, 3)), draw(st.integers(0, 6)))
        elif op == 2:  # a garbage line
            ls.insert(i, draw(st.binary(max_size=40)).replace(b"\n", b"") + b"\n")
        elif op == 3:  # a torn prefix glued to a valid line
            ls.insert(i, ln[: draw(st.integers(0, max(len(ln) - 1, 0)))] + ls[i])
            del ls[i + 1]
            ls.insert(i, ln)
        elif op == 4:  # a duplicated line, here or further down
            ls.insert(draw(st.integers(0, len(ls))), ln)
        elif op == 5:  # CRLF
            ls[i] = ln[:-1] + b"\r\n"
        elif op == 6:  # a byte order mark
            ls[i] = b"\xef\xbb\xbf" + ln
        elif op == 7:  # blank lines, with and without whitespace
            ls.insert(i, draw(st.sampled_from([b"\n", b" \n", b"\t\r\n"])))
        elif op == 8:  # trailing JSON whitespace
            ls[i] = ln[:-1] + draw(st.sampled_from([b" ", b"\t", b"\r \t"])) + b"\n"
        elif op == 9:  # a line cut short, the rest lost
            ls[i] = ln[: draw(st.integers(0, max(len(ln) - 1, 0)))] + b"\n"
        else:  # a byte inserted or removed
            k = draw(st.integers(0, max(len(ln) - 1, 0)))
            ls[i] = ln[:k] + draw(st.sampled_from([b"", b"{", b'"', b",", b"\\"])) + ln[k + 1 :]
    raw = b"".join(ls)
    if draw(st.booleans()):  # a cut tail: an unterminated last line
        raw = raw[: len(raw) - draw(st.integers(0, min(len(raw), 120)))]
    return raw


@st.composite
def damaged_part(draw: Any) -> bytes:
    return damage(draw, draw(st.lists(lines(), min_size=0, max_size=6)))


def scanned(ev: Path, rel: str, strict: bool, max_bytes: int) -> list[tuple[int, dict[str, Any]]]:
    """Every event the Rust scanner returns for one part, read from `start` in chunks."""
    out: list[tuple[int, dict[str, Any]]] = []
    start = 0
    while True:
        (b,) = _core.scan_files(str(ev), [(rel, start)], strict=strict, max_bytes=max_bytes)
        assert b.error is None
        for r in pa.record_batch(b).to_pylist():
            ts = r["ts"]
            r["ts_us"] = (ts.toordinal() - 719163) * 86_400_000_000 + (
                (ts.hour * 3600 + ts.minute * 60 + ts.second) * 10**6 + ts.microsecond
            )
            out.append((r["offset"], _event(r)))
        if b.end_offset == start or b.pending_bytes == 0:
            return out
        start = b.end_offset


KEYS = ["event_id", "event_type", "schema_version", "ts_us", "run_id", "writer", "seq"]


def _event(r: dict[str, Any]) -> dict[str, Any]:
    return {**{k: r[k] for k in KEYS}, "data": json.loads(r["data"])}


def _oracle_part(raw: bytes, strict: bool) -> list[tuple[int, dict[str, Any]]]:
    return [
        (off, {**{k: e[k] for k in KEYS}, "data": e["data"]}) for off, e in read_part(raw, strict)
    ]


def check_scanner(tmp: Path, raw: bytes, strict: bool, max_bytes: int) -> None:
    ev = tmp / "events"
    (ev / "day=2026-03-01").mkdir(parents=True, exist_ok=True)
    (ev / "day=2026-03-01" / "part-000001.jsonl").write_bytes(raw)
    got = scanned(ev, "day=2026-03-01/part-000001.jsonl", strict, max_bytes)
    assert got == _oracle_part(raw, strict), raw


def index_rows(db: Path) -> list[tuple[Any, ...]]:
    con = open_readonly(db)
    try:
        return con.execute(
            """SELECT file, "offset", event_id, event_type, schema_version, epoch_us(ts), run_id,
                      writer, seq, data FROM events ORDER BY file, "offset" """
        ).fetchall()
    finally:
        con.close()


def oracle_rows(root: Path, strict: bool) -> list[tuple[Any, ...]]:
    return [
        (e["file"], e["offset"], *(e[k] for k in KEYS), e["data"])
        for e in expected_index(root, strict)
    ]


def check_index(root: Path, db: Path, strict: bool) -> None:
    got = [(*r[:-1], json.loads(r[-1])) for r in index_rows(db)]
    assert got == oracle_rows(root, strict)


def write_parts(root: Path, parts: list[bytes], append: bool = False) -> None:
    for n, raw in enumerate(parts):
        p = root / "events" / f"day={DAYS[n % 2]}" / f"part-{n // 2 + 1:06d}.jsonl"
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "ab" if append else "wb") as f:
            f.write(raw)


def run_full(tmp: Path, parts: list[bytes], strict: bool) -> None:
    root = tmp / "ledger"
    write_parts(root, parts)
    db = tmp / f"full-{strict}.duckdb"
    build_index(root, db=db, full_rebuild=True, strict=strict, durable=False, upcaster=None)
    check_index(root, db, strict)


def run_incremental(tmp: Path, rounds: list[list[bytes]]) -> None:
    """Each round appends damaged bytes to the parts (a cut tail is finished by the next
    round's bytes), then indexes; the result must equal the oracle over the final files."""
    root = tmp / "ledger"
    for parts in rounds:
        write_parts(root, parts, append=True)
        build_index(root, durable=False, upcaster=None)
    check_index(root, IndexPaths.for_root(root).runs, strict=False)


def _fresh(tmp_path: Path, n: list[int]) -> Path:
    n[0] += 1
    d = tmp_path / f"ex{n[0]}"
    d.mkdir(parents=True)
    return d


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def scanner_case(tmp_path: Path, examples: int, seed: int | None = None) -> None:
    n = [0]

    @_settings(examples)
    @given(damaged_part(), st.booleans(), st.sampled_from([0, 1, 97, 4096]))
    def case(raw: bytes, strict: bool, max_bytes: int) -> None:
        check_scanner(_fresh(tmp_path, n), raw, strict, max_bytes)

    (case if seed is None else hypothesis_seed(seed)(case))()


def full_case(tmp_path: Path, examples: int, seed: int | None = None) -> None:
    n = [0]

    @_settings(examples)
    @given(st.lists(damaged_part(), min_size=1, max_size=4), st.booleans())
    def case(parts: list[bytes], strict: bool) -> None:
        run_full(_fresh(tmp_path, n), parts, strict)

    (case if seed is None else hypothesis_seed(seed)(case))()


def incremental_case(tmp_path: Path, examples: int, seed: int | None = None) -> None:
    n = [0]

    @_settings(examples)
    @given(st.lists(st.lists(damaged_part(), min_size=1, max_size=3), min_size=1, max_size=3))
    def case(rounds: list[list[bytes]]) -> None:
        run_incremental(_fresh(tmp_path, n), rounds)

    (case if seed is None else hypothesis_seed(seed)(case))()


@pytest.mark.heavy
def test_scanner_matches_the_independent_reader(tmp_path: Path) -> None:
    scanner_case(tmp_path, 150)


@pytest.mark.heavy
def test_full_rebuild_matches_the_independent_reader(tmp_path: Path) -> None:
    full_case(tmp_path, 20)


@pytest.mark.heavy
def test_incremental_rounds_match_the_independent_reader(tmp_path: Path) -> None:
    incremental_case(tmp_path, 10)


@pytest.mark.slow
def test_soak_differential(tmp_path: Path) -> None:
    """`make soak`: LEDGERX_FUZZ_EXAMPLES full cases (10x scanner cases, half as many
    incremental sequences); with LEDGERX_FUZZ_SECONDS, batches of a thirtieth of that with a
    new seed each, until the time is spent (a batch that started finishes)."""
    if SOAK_SECONDS <= 0:
        scanner_case(tmp_path / "s", SOAK * 10)
        full_case(tmp_path / "f", SOAK)
        incremental_case(tmp_path / "i", SOAK // 2)
        return
    n = max(1, SOAK // 30)
    t0 = time.monotonic()
    done = {"scanner": 0, "full": 0, "incremental": 0}
    batch = 0
    while time.monotonic() - t0 < SOAK_SECONDS:
        d = tmp_path / f"b{batch}"
        scanner_case(d / "s", n * 10, seed=batch)
        full_case(d / "f", n, seed=batch)
        incremental_case(d / "i", max(1, n // 2), seed=batch)
        done["scanner"] += n * 10
        done["full"] += n
        done["incremental"] += max(1, n // 2)
        shutil.rmtree(d, ignore_errors=True)
        batch += 1
        soak_progress(
            f"fuzz soak: batch {batch} passed (seed {batch - 1}); examples so far {done}; "
            f"{time.monotonic() - t0:.0f} s"
        )

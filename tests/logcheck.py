"""An independent reader of the log format (docs/format.md), written from the spec, not from the
Rust code: every test that writes events checks them with it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import crc32c_ref

ENVELOPE = [
    "event_id",
    "event_type",
    "schema_version",
    "ts",
    "run_id",
    "writer",
    "seq",
    "data",
    "crc",
]
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def strict_loads(line: str) -> Any:
    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate key in {line[:80]}"
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise AssertionError(f"{name} in {line[:80]}")

    return json.loads(line, object_pairs_hook=no_dupes, parse_constant=no_constant)


def ordered_keys(line: str) -> list[str]:
    return [k for k, _ in json.loads(line, object_pairs_hook=lambda p: p)]


@dataclass
class LogReport:
    events: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def by_writer(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for e in self.events:
            out.setdefault(e["writer"], []).append(e)
        return out


def check_log(
    root: Path, *, allow_torn_tail: bool = False, contiguous_seq: bool = True
) -> LogReport:
    """Read every part file under root/events and assert the v1 format line by line."""
    report = LogReport()
    events = root / "events"
    for day_dir in sorted(events.glob("day=*")):
        day = day_dir.name.removeprefix("day=")
        for part in sorted(day_dir.glob("part-*.jsonl")):
            report.files.append(part)
            # A trailing run of NUL bytes is a writer's preallocated space, not data.
            raw = part.read_bytes().rstrip(b"\0")
            if raw and not raw.endswith(b"\n"):
                assert allow_torn_tail, f"{part}: unterminated last line"
                raw = raw[: raw.rfind(b"\n") + 1]
            offset = 0
            for bline in raw.split(b"\n")[:-1]:
                line = bline.decode("utf-8")
                assert "\r" not in line
                keys = ordered_keys(line)
                assert keys == ENVELOPE, f"{part}@{offset}: envelope order {keys}"
                cut = bline.rindex(b',"crc":')
                want = f"{crc32c_ref.crc32c(bline[:cut]):08x}"
                ev = strict_loads(line)
                assert ev["crc"] == want, f"{part}@{offset}: crc {ev['crc']} != {want}"
                assert UUID7.match(ev["event_id"]), ev["event_id"]
                assert TS.match(ev["ts"]), ev["ts"]
                assert ev["ts"][:10] == day, f"{part}: event of {ev['ts']} in day={day}"
                assert isinstance(ev["seq"], int) and ev["seq"] >= 1
                assert isinstance(ev["data"], dict)
                ev["_file"] = f"{day_dir.name}/{part.name}"
                ev["_offset"] = offset
                report.events.append(ev)
                offset += len(bline) + 1
    if contiguous_seq:
        for writer, evs in report.by_writer().items():
            seqs = sorted(e["seq"] for e in evs)
            assert seqs == list(range(1, len(seqs) + 1)), f"writer {writer}: seq gaps/dupes"
    return report


# ---------------------------------------------------------------------------------------------
# What a reader must index (docs/format.md, "Reading rules"), line by line, from the spec:
# the oracle of the scanner/indexer differential. Nothing here calls ledgerx.

MAX_LINE_BYTES = 16 << 20
MAX_DEPTH = 128  # nesting levels, the top-level object counting as 1
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
RFC3339 = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    rb"(?:[Zz]|([+-])(\d{2}):(\d{2}))"
)
# The crc member as the last one: `,"crc"`, a string value, the closing brace, JSON whitespace.
CRC_TAIL = re.compile(rb',"crc"[ \t\r\n]*:[ \t\r\n]*"(?:[^"\\]|\\.)*"[ \t\r\n]*}[ \t\r\n]*\Z')
I64 = (-(1 << 63), (1 << 63) - 1)
I32_MAX = (1 << 31) - 1


class _Obj(list):  # type: ignore[type-arg]
    """A JSON object as its list of (key, value) pairs, in order."""


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _sound(v: Any, depth: int) -> bool:
    """I-JSON beyond what json.loads checks: no duplicate keys, no lone surrogates, nesting."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(v, _Obj):
        keys = [k for k, _ in v]
        if depth > MAX_DEPTH or len(set(keys)) != len(keys):
            return False
        return all(_sound(k, 0) and _sound(x, depth + 1) for k, x in v)
    if isinstance(v, list):
        return depth <= MAX_DEPTH and all(_sound(x, depth + 1) for x in v)
    return True


def _plain(v: Any) -> Any:
    if isinstance(v, _Obj):
        return {k: _plain(x) for k, x in v}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _days_in_month(y: int, m: int) -> int:
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]


def ts_us(s: str) -> int | None:
    """RFC 3339 (`T`, `t` or space; any fraction, truncated to µs; `Z` or ±hh:mm) → µs since the
    epoch, or None."""
    m = RFC3339.fullmatch(s.encode("utf-8", "surrogatepass"))
    if m is None:
        return None
    y, mo, d, h, mi, se = (int(x) for x in m.groups()[:6])
    if not (1 <= mo <= 12 and 1 <= d <= _days_in_month(y, mo) and h < 24 and mi < 60 and se < 60):
        return None
    off = 0
    if m.group(8):
        oh, om = int(m.group(9)), int(m.group(10))
        if oh > 23 or om > 59:
            return None
        off = (oh * 3600 + om * 60) * (1 if m.group(8) == b"+" else -1)
    # Year 0 has the calendar of year 400 (both leap, 146097 days per 400 years).
    base = date(y or 400, mo, d).toordinal() - (146_097 if y == 0 else 0)
    days = base - date(1970, 1, 1).toordinal()
    frac = int((m.group(7) or b"").decode()[:6].ljust(6, "0"))
    return (days * 86_400 + h * 3600 + mi * 60 + se - off) * 1_000_000 + frac


def read_line(line: bytes, strict: bool = False) -> dict[str, Any] | None:
    """The event of one line (without its `\\n`) if a reader must accept it, else None."""
    try:
        obj = json.loads(line.decode("utf-8"), object_pairs_hook=_Obj, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(obj, _Obj) or not _sound(obj, 1):
        return None
    keys = [k for k, _ in obj]
    if keys not in (ENVELOPE[:8], ENVELOPE):
        return None
    ev = dict(obj)
    if "crc" in ev:
        tail = CRC_TAIL.search(line)
        crc = ev["crc"]
        if tail is None or not (isinstance(crc, str) and re.fullmatch("[0-9a-f]{8}", crc)):
            return None
        if int(crc, 16) != crc32c_ref.crc32c(line[: tail.start()]):
            return None
    elif strict:
        return None
    ok = (
        isinstance(ev["event_id"], str)
        and UUID.fullmatch(ev["event_id"]) is not None
        and isinstance(ev["event_type"], str)
        and ev["event_type"] != ""
        and type(ev["schema_version"]) is int
        and 1 <= ev["schema_version"] <= I32_MAX
        and isinstance(ev["ts"], str)
        and ts_us(ev["ts"]) is not None
        and (ev["run_id"] is None or isinstance(ev["run_id"], str))
        and isinstance(ev["writer"], str)
        and type(ev["seq"]) is int
        and 1 <= ev["seq"] <= I64[1]
        and isinstance(ev["data"], _Obj)
    )
    if not ok:
        return None
    out = {k: ev[k] for k in ENVELOPE[:8]}
    out["data"] = _plain(ev["data"])
    out["ts_us"] = ts_us(ev["ts"])
    return out


def read_part(raw: bytes, strict: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """(offset, event) of every line a reader must accept: complete lines only; a line that is
    bad as a whole but ends in a valid event after its last `{"event_id":` (a torn prefix glued
    to it) yields that event at its own offset."""
    out: list[tuple[int, dict[str, Any]]] = []
    off = 0
    for line in raw.split(b"\n")[:-1]:
        start, off = off, off + len(line) + 1
        if len(line) + 1 > MAX_LINE_BYTES:
            continue
        ev = read_line(line, strict)
        k = line.rfind(b'{"event_id":')
        if ev is None and k > 0:
            ev, start = read_line(line[k:], strict), start + k
        if ev is not None:
            out.append((start, ev))
    return out


def expected_index(root: Path, strict: bool = False) -> list[dict[str, Any]]:
    """The `events` rows an index of root must hold, in (file, offset) order: every accepted
    line of every part under events/day=*/, the first of each event_id only."""
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    events = root / "events"
    parts = sorted(
        (str(p.relative_to(events)), p)
        for p in events.glob("day=*/*.jsonl")
        if p.is_file() and not p.is_symlink() and not p.parent.is_symlink()
    )
    for rel, p in parts:
        for off, ev in read_part(p.read_bytes().rstrip(b"\0"), strict):
            if ev["event_id"] in seen:
                continue
            seen.add(ev["event_id"])
            rows.append({**ev, "file": rel, "offset": off})
    return rows

"""An independent reader of the log format (docs/format.md), written from the spec, not from the
Rust code: every test that writes events checks them with it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
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
            raw = part.read_bytes()
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

"""`ledgerx emit` and `ledgerx tail`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ledgerx import _core, strictjson
from ledgerx.cli.term import printable
from ledgerx.config import events_dir, resolve_root
from ledgerx.fsutil import data_end


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ledgerx.cli import add_common

    p = sub.add_parser("emit", help="append one event (durable when the command returns)")
    add_common(p)
    p.add_argument("event_type", metavar="TYPE")
    p.add_argument("--run-id", default=None)
    p.add_argument("--data", default="{}", help="the event's data as a JSON object")
    p.add_argument("--schema-version", type=int, default=None)
    p.set_defaults(handler=cmd_emit)

    p = sub.add_parser("tail", help="show the newest events of the log")
    add_common(p)
    p.add_argument("-n", "--lines", type=int, default=10, help="how many events (default 10)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.add_argument("--type", dest="event_type", default=None, help="only this event type")
    p.add_argument("--run-id", default=None, help="only this run")
    p.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    p.add_argument("--max-seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_tail)


def parse_json_object(text: str, what: str = "--data") -> dict[str, Any]:
    """Strict JSON (no NaN/Infinity, no duplicate keys) with an object at the top."""
    from ledgerx.cli import CliError

    try:
        value = strictjson.loads(text)
    except ValueError as e:  # the core's I-JSON verdict: `not valid JSON: <rule> at column N`
        raise CliError(f"{what}: {e}") from None
    if not isinstance(value, dict):
        raise CliError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def cmd_emit(args: argparse.Namespace) -> int:
    from ledgerx.cli import print_json
    from ledgerx.writer import Ledger

    data = parse_json_object(args.data)
    with Ledger(args.root, durability="fsync") as ledger:
        file, offset = ledger.emit(
            args.event_type, data, run_id=args.run_id, schema_version=args.schema_version
        )
    if args.json:
        print_json({"file": file, "offset": offset})
    else:
        print(f"{file}@{offset}")
    return 0


def _part_files(events: Path) -> list[str]:
    """Every part file, oldest day and number first, relative to events/."""
    out: list[str] = []
    for day in sorted(events.glob("day=*")):
        if day.is_dir() and not day.is_symlink():
            out.extend(f"{day.name}/{p.name}" for p in sorted(day.glob("part-*.jsonl")))
    return out


def _scan_all(events: Path, files: list[tuple[str, int]]) -> list[_core.ScanBatch]:
    """Every complete line from each (file, offset): the core's scan-until-done loop."""
    return [b for batches in _core.Scanner(str(events), files) for b in batches]


def _rows(batches: list[_core.ScanBatch]) -> list[dict[str, Any]]:
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for b in batches:
        if b.num_rows:
            for r in pa.record_batch(b).to_pylist():
                r["file"] = b.file
                rows.append(r)
    return rows


def _show(row: dict[str, Any], as_json: bool) -> None:
    ts = row["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if as_json:
        event = {
            "event_id": row["event_id"],
            "event_type": row["event_type"],
            "schema_version": row["schema_version"],
            "ts": ts,
            "run_id": row["run_id"],
            "writer": row["writer"],
            "seq": row["seq"],
            "data": json.loads(row["data"]),
        }
        print(json.dumps(event, ensure_ascii=False))
        return
    data = row["data"]
    if len(data) > 100:
        data = data[:97] + "..."
    run = row["run_id"] or "-"
    line = f"{ts}  {row['event_type']:<18} {run:<28} {row['writer']}#{row['seq']}  {data}"
    print(printable(line))


def cmd_tail(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError

    if args.lines < 0:
        raise CliError("-n must be >= 0")
    events = events_dir(resolve_root(args.root))
    if not events.is_dir():
        raise CliError(f"no ledger at {events.parent} (no events/ directory)")

    def keep(r: dict[str, Any]) -> bool:
        return (args.event_type is None or r["event_type"] == args.event_type) and (
            args.run_id is None or r["run_id"] == args.run_id
        )

    offsets: dict[str, int] = {}
    found: list[dict[str, Any]] = []
    files = _part_files(events)
    # Newest days first until we have enough events.
    days = sorted({f.split("/")[0] for f in files}, reverse=True)
    for day in days:
        day_files = [f for f in files if f.startswith(day + "/")]
        batches = _scan_all(events, [(f, 0) for f in day_files])
        for b in batches:
            offsets[b.file] = b.end_offset
        found = [r for r in _rows(batches) if keep(r)] + found
        if len(found) >= args.lines:
            break
    for f in files:
        offsets.setdefault(f, -1)  # older days not read: start them at their end on follow
    found.sort(key=lambda r: (r["ts"], r["writer"], r["seq"]))
    for r in found[len(found) - args.lines :] if args.lines else []:
        _show(r, args.json)
    sys.stdout.flush()
    if not args.follow:
        return 0
    started = time.monotonic()
    while args.max_seconds is None or time.monotonic() - started < args.max_seconds:
        time.sleep(args.interval)
        todo = []
        for f in _part_files(events):
            off = offsets.get(f, 0)
            if off < 0:
                off = data_end(events / f, (events / f).stat().st_size)
                offsets[f] = off
            todo.append((f, off))
        batches = _scan_all(events, todo)
        new: list[dict[str, Any]] = []
        for b in batches:
            offsets[b.file] = b.end_offset
            new.extend(r for r in _rows([b]) if keep(r))
        new.sort(key=lambda r: (r["ts"], r["writer"], r["seq"]))
        for r in new:
            _show(r, args.json)
        sys.stdout.flush()
    return 0

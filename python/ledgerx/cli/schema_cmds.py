"""`ledgerx schema list|show|register|validate` (docs/schema.md, README "CLI")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ledgerx import _core
from ledgerx.cli.term import printable
from ledgerx.config import events_dir, resolve_root
from ledgerx.errors import SchemaError
from ledgerx.schema import SchemaRegistry


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ledgerx.cli import add_common

    p = sub.add_parser("schema", help="the schema registry: list, show, register, validate")
    ssub = p.add_subparsers(dest="schema_command", metavar="SUBCOMMAND", parser_class=type(p))
    ssub.required = True

    q = ssub.add_parser("list", help="registered event types and their versions")
    add_common(q)
    q.set_defaults(handler=cmd_list)

    q = ssub.add_parser("show", help="print the JSON Schema of a type (newest version by default)")
    q.add_argument("event_type", metavar="TYPE")
    q.add_argument("--version", type=int, default=None, help="schema version (default: newest)")
    add_common(q)
    q.set_defaults(handler=cmd_show)

    q = ssub.add_parser("register", help="add a type or a new version from a JSON Schema file")
    q.add_argument("event_type", metavar="TYPE")
    q.add_argument("file", metavar="FILE", help="JSON Schema for `data` ('-' reads stdin)")
    q.add_argument(
        "--upcaster",
        metavar="NAME",
        default=None,
        help="name of a registered upcaster (LEDGERX_UPCASTER_MODULES or the ledgerx.upcasters "
        "entry points) lifting the previous version; nothing is imported by this name",
    )
    add_common(q)
    q.set_defaults(handler=cmd_register)

    q = ssub.add_parser(
        "validate", help="check JSONL events (envelope and data) against the registry"
    )
    q.add_argument("files", metavar="FILE.jsonl", nargs="+")
    add_common(q)
    q.set_defaults(handler=cmd_validate)


def _registry(args: argparse.Namespace) -> SchemaRegistry:
    return SchemaRegistry(events_dir(resolve_root(args.root)))


def cmd_list(args: argparse.Namespace) -> int:
    from ledgerx.cli import print_json

    reg = _registry(args)
    types = reg.list()
    ups = reg.upcasters()
    for t, why in sorted(reg.broken().items()):  # fails closed; the other types still work
        print(printable(f"warning: {t}: invalid entry in _schema.json: {why}"), file=sys.stderr)
    if args.json:
        print_json(types)
        return 0
    width = max((len(t) for t in types), default=0)
    for t, versions in types.items():
        line = f"{t:<{width}}  v{', v'.join(map(str, versions))}"
        if ups.get(t):
            line += "  (upcasters: " + ", ".join(f"v{v}->v{v + 1}" for v in sorted(ups[t])) + ")"
        print(line)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ledgerx.cli import print_json

    reg = _registry(args)
    schema = reg.get(args.event_type, args.version)
    version = args.version if args.version is not None else reg.newest(args.event_type)
    if args.json:
        up = reg.upcasters().get(args.event_type, {}).get(version - 1)
        print_json(
            {"event_type": args.event_type, "version": version, "schema": schema, "upcaster": up}
        )
    else:
        print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


def _read_json_file(name: str) -> Any:
    from ledgerx.cli import CliError

    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as e:
        raise CliError(f"{name}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise CliError(f"{name}: not UTF-8 text: {e.reason}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise CliError(f"{name}: not valid JSON: {e}") from None


def cmd_register(args: argparse.Namespace) -> int:
    from ledgerx.cli import print_json

    schema = _read_json_file(args.file)
    reg = _registry(args)
    before = reg.versions(args.event_type) if args.event_type in reg.list() else []
    version = reg.register(args.event_type, schema, upcaster=args.upcaster)
    changed = version not in before
    if args.json:
        print_json({"event_type": args.event_type, "version": version, "changed": changed})
    elif changed:
        print(f"registered {args.event_type} v{version}")
    else:
        print(f"{args.event_type} v{version} unchanged (identical schema)")
    return 0


def check_line(reg: SchemaRegistry, raw: bytes) -> str | None:
    """Why one JSONL line is not a valid ledgerx event, or None if it is: the core's verdict
    (the rules `verify` and `rebuild` apply to every line of a part: I-JSON, the v1 envelope,
    crc, run id, artifact paths), then `data` against the registry."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    reason = _core.check_line(raw)
    if reason is not None:
        return reason
    ev = json.loads(raw)
    try:
        reg.validate(ev["event_type"], ev["data"], ev["schema_version"])
    except SchemaError as e:
        return str(e)
    return None


def cmd_validate(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError, print_json

    reg = _registry(args)
    reg.list()  # a broken registry is one error, not one per line
    results = []
    total_bad = 0
    for name in args.files:
        bad: list[dict[str, Any]] = []
        lines = 0
        try:
            f = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
        except OSError as e:
            raise CliError(f"{name}: cannot read: {e.strerror or e}") from None
        with f:
            for lines, raw in enumerate(f, start=1):  # noqa: B007 - `lines` is the count after
                reason = check_line(reg, raw)
                if reason is not None:
                    bad.append({"line": lines, "error": reason})
                    if not args.json:
                        print(f"{name}:{lines}: {' '.join(reason.split())}")
        total_bad += len(bad)
        results.append({"file": name, "lines": lines, "bad": bad})
    if args.json:
        print_json({"files": results, "bad": total_bad})
    else:
        n = sum(r["lines"] for r in results)
        print(
            f"{n} line{'s' if n != 1 else ''} checked, {total_bad} invalid",
            file=sys.stderr if total_bad else sys.stdout,
        )
    return 1 if total_bad else 0

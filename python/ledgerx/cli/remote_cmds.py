"""`ledgerx ship`: send the log to S3-compatible object storage (docs/scale.md)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ledgerx.cli import add_common

    p = sub.add_parser("ship", help="upload the log to s3://bucket/prefix as immutable objects")
    add_common(p)
    p.add_argument("--to", required=True, metavar="URL", help="s3://bucket/prefix")
    p.add_argument("--endpoint-url", default=None, metavar="URL", help="S3-compatible endpoint")
    p.add_argument(
        "--interval", type=float, default=None, metavar="SECONDS", help="ship again every S s"
    )
    p.add_argument("--max-object-bytes", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=_ship)


def _ship(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError, print_json
    from ledgerx.remote.ship import DEFAULT_MAX_OBJECT_BYTES, Shipper

    if args.interval is not None and args.interval <= 0:
        raise CliError("--interval must be > 0 seconds")
    stop = threading.Event()
    if args.interval is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    with Shipper(
        args.root,
        args.to,
        endpoint_url=args.endpoint_url,
        max_object_bytes=args.max_object_bytes or DEFAULT_MAX_OBJECT_BYTES,
    ) as shipper:
        while True:
            rep = shipper.round()
            if args.json:
                print_json(dict(rep.__dict__))
            else:
                for w in rep.warnings[:20]:
                    print(f"warning: {w}", file=sys.stderr)
                print(rep.summary(), flush=True)
            if args.interval is None or stop.wait(args.interval):
                return 0

"""Operations: `ledgerx daemon` (index catch-up loop with /healthz and /metrics) and
`ledgerx retention` (archive closed days to Parquet). See docs/ops.md."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ledgerx.cli import add_common, seconds_arg
    from ledgerx.cli.index_cmds import STALE_HELP

    p = sub.add_parser("daemon", help="keep the index caught up; optional health endpoint")
    add_common(p, json_flag=False)
    p.add_argument("--interval", type=float, default=30.0, help="most seconds between cycles (30)")
    wake = "sleep the whole --interval (default: a cycle starts as soon as the log grows)"
    p.add_argument("--no-wake", dest="wake", action="store_false", help=wake)
    p.add_argument("--verbose", action="store_true", help="log every cycle and request")
    p.add_argument(
        "--health-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /healthz and /metrics on 127.0.0.1:PORT",
    )
    p.add_argument(
        "--health-host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address for --health-port (127.0.0.1); a warning is logged when it is not "
        "loopback: /healthz and /metrics have no authentication",
    )
    p.add_argument(
        "--max-lag-seconds",
        type=float,
        default=300.0,
        help="/healthz is 503 when the oldest unindexed event is older (300)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=3,
        help="/healthz is 503 after this many failed cycles in a row (3)",
    )
    p.add_argument(
        "--stale-after",
        type=seconds_arg,
        default=None,
        metavar="SECONDS",
        help=STALE_HELP,
    )
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.add_argument(
        "--ui-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also serve the dashboard (ledgerx ui) on --ui-host:PORT; needs ledgerx[ui]",
    )
    p.add_argument("--ui-host", default="127.0.0.1", help="address for --ui-port (127.0.0.1)")
    p.add_argument(
        "--ship-to", default=None, metavar="URL", help="also ship the log to s3://bucket/prefix"
    )
    p.add_argument("--endpoint-url", default=None, metavar="URL", help="S3-compatible endpoint")
    p.set_defaults(handler=_daemon)

    p = sub.add_parser("retention", help="move closed days older than the policy to archive/")
    add_common(p)
    p.add_argument(
        "--archive-older-than",
        default="90d",
        metavar="AGE",
        help="archive days older than this many days, e.g. 90d (default 90d)",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would move, move nothing")
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for a running indexer before removing JSONL (120)",
    )
    p.set_defaults(handler=_retention)


def _daemon(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError
    from ledgerx.daemon import Daemon, DaemonBusyError, setup_logging

    if args.health_port is not None and not 0 <= args.health_port <= 65535:
        raise CliError("--health-port must be between 0 and 65535")
    setup_logging(args.verbose)
    ui = _start_ui(args) if args.ui_port is not None else None
    try:
        d = Daemon(
            args.root,
            interval=args.interval,
            wake=args.wake,
            max_lag_seconds=args.max_lag_seconds,
            max_failures=args.max_failures,
            stale_after=args.stale_after,
            health_host=args.health_host,
            health_port=args.health_port,
            verbose=args.verbose,
            ship_to=args.ship_to,
            endpoint_url=args.endpoint_url,
        )
        return d.run(once=args.once)
    except DaemonBusyError as e:
        raise CliError(str(e)) from None
    except ValueError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        if args.health_port is not None and e.errno in (98, 13, 99):  # in use / denied / addr
            raise CliError(
                f"cannot serve health on port {args.health_port}: {e.strerror}"
            ) from None
        raise
    finally:
        if ui is not None:
            ui.stop()


def _start_ui(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The dashboard on a thread of the daemon (stopped when the daemon stops)."""
    import logging

    from ledgerx.cli import CliError
    from ledgerx.cli.ui_cmds import warn_if_exposed
    from ledgerx.ui import UiMissingError, require_extra

    try:
        require_extra()
    except UiMissingError as e:
        raise CliError(str(e)) from None
    from ledgerx.ui.server import BackgroundServer

    if not 0 <= args.ui_port <= 65535:
        raise CliError("--ui-port must be between 0 and 65535")
    try:
        server = BackgroundServer(args.root, args.ui_host, args.ui_port)
    except OSError as e:
        raise CliError(f"cannot serve the dashboard on port {args.ui_port}: {e.strerror}") from None
    warn_if_exposed(args.ui_host, "ledgerx daemon")
    logging.getLogger("ledgerx.daemon").info("dashboard on %s", server.url)
    return server.start()


def _retention(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError, print_json
    from ledgerx.retention import parse_age, run_retention

    try:
        days = parse_age(args.archive_older_than)
    except ValueError as e:
        raise CliError(str(e)) from None
    rep = run_retention(
        args.root, older_than_days=days, dry_run=args.dry_run, lock_timeout=args.lock_timeout
    )
    if args.json:
        print_json(rep.to_json())
        return 0
    verb = "would archive" if args.dry_run else "archived"
    moved = [d for d in rep.days if d.action != "skipped"]
    for d in rep.days:
        if d.action == "skipped":
            print(f"day {d.day}: skipped ({d.reason})")
        else:
            extra = f", {d.bad_lines} bad lines kept in events/_quarantine" if d.bad_lines else ""
            print(f"day {d.day}: {verb} {d.parts} parts, {d.events} events, {d.bytes} bytes{extra}")
    done = "would be archived (dry run)" if args.dry_run else "archived"
    print(
        f"retention: {len(moved)} days {done} (days before {rep.cutoff}), "
        f"{len(rep.days) - len(moved)} skipped"
    )
    return 0

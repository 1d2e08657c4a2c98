"""`ledgerx ui`: the read-only dashboard (docs/ui.md)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ledgerx.cli import add_common

    p = sub.add_parser("ui", help="serve the read-only dashboard (needs ledgerx[ui])")
    add_common(p, json_flag=False)
    p.add_argument("--db", default=None, help="the runs index file, when not under the root")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (8765; 0 picks a free one)")
    p.add_argument(
        "--poll-ms", type=int, default=2000, help="how often pages check for a new index (2000)"
    )
    p.set_defaults(handler=_ui)


def warn_if_exposed(host: str, what: str = "ledgerx ui") -> None:
    from ledgerx.ui.server import is_loopback

    if not is_loopback(host):
        print(
            f"{what}: warning: binding {host}, not loopback: anyone who can reach it can read "
            "the whole ledger (no authentication)",
            file=sys.stderr,
        )


def bind_or_fail(host: str, port: int, flag: str = "--port"):  # type: ignore[no-untyped-def]
    from ledgerx.cli import CliError
    from ledgerx.ui.server import bind

    if not 0 <= port <= 65535:
        raise CliError(f"{flag} must be between 0 and 65535")
    try:
        return bind(host, port)
    except OSError as e:
        raise CliError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None


def _ui(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError
    from ledgerx.config import resolve_root
    from ledgerx.ui import UiMissingError, require_extra

    try:
        require_extra()
    except UiMissingError as e:
        raise CliError(str(e)) from None
    from ledgerx.ui.server import make_server, url

    root = resolve_root(args.root)
    if not root.is_dir():
        raise CliError(f"no ledger at {root} (give --root or set LEDGERX_ROOT)")
    if args.poll_ms < 100:
        raise CliError("--poll-ms must be at least 100")
    sock = bind_or_fail(args.host, args.port)
    warn_if_exposed(args.host)
    try:
        server = make_server(root, args.host, db=args.db, poll_ms=args.poll_ms)
        print(f"ledgerx ui: serving {root} on {url(sock)} (Ctrl-C to stop)", flush=True)
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C is how the dashboard is stopped: not an error
        pass
    finally:
        sock.close()
    print("ledgerx ui: stopped", file=sys.stderr)
    return 0

"""`ledgerx legacy compare|migrate|archive|project` (docs/legacy.md)."""

from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ledgerx.cli import _Parser, add_common

    p = sub.add_parser("legacy", help="the legacy DuckDB file: compare, migrate, archive")
    lsub = p.add_subparsers(dest="legacy_command", metavar="ACTION", parser_class=_Parser)
    lsub.required = True

    def common(q: argparse.ArgumentParser, legacy: bool = True) -> None:
        add_common(q)
        if legacy:
            q.add_argument(
                "--legacy",
                default=os.environ.get("LEDGERX_LEGACY"),
                metavar="FILE",
                help="the legacy DuckDB file (default $LEDGERX_LEGACY)",
            )
        q.add_argument("--db", default=None, help="index file (default <root>/index/runs.duckdb)")

    q = lsub.add_parser(
        "compare", help="legacy vs index: identical standard queries? (exit 1 if not)"
    )
    common(q)
    q.set_defaults(handler=_compare)

    q = lsub.add_parser("migrate", help="write legacy rows into the log as events (idempotent)")
    common(q)
    q.add_argument("--dry-run", action="store_true", help="count what would be written")
    q.set_defaults(handler=_migrate)

    q = lsub.add_parser("archive", help="after a passing compare, move the file to archive/legacy/")
    common(q)
    q.set_defaults(handler=_archive)

    q = lsub.add_parser(
        "project", help="publish index/legacy.duckdb (legacy layout) from the current index"
    )
    common(q, legacy=False)
    q.add_argument("--remove", action="store_true", help="delete it: rebuilds stop updating it")
    q.set_defaults(handler=_project)


def _need_legacy(args: argparse.Namespace) -> str:
    from ledgerx.cli import CliError

    if not args.legacy:
        raise CliError("legacy: --legacy FILE is required (or set $LEDGERX_LEGACY)", 2)
    return str(args.legacy)


def _compare(args: argparse.Namespace) -> int:
    from ledgerx.cli import print_json
    from ledgerx.legacy.compare import compare

    rep = compare(args.root, _need_legacy(args), db=args.db)
    if args.json:
        print_json(rep.to_json())
    else:
        print(rep.text())
    return 0 if rep.ok else 1


def _migrate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ledgerx.cli import print_json
    from ledgerx.legacy.migrate import migrate

    bar = None
    if sys.stderr.isatty() and not args.json:

        def bar(done: int, total: int) -> None:
            sys.stderr.write(f"\rmigrating {done}/{total} events")
            sys.stderr.flush()

    rep = migrate(args.root, _need_legacy(args), dry_run=args.dry_run, progress=bar)
    if bar is not None:
        sys.stderr.write("\r\033[K")
    if args.json:
        print_json(asdict(rep))
    else:
        print(rep.summary())
        if rep.written and not rep.dry_run:
            print("next: `ledgerx rebuild`, then `ledgerx legacy compare --legacy FILE`")
    return 0


def _archive(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ledgerx.cli import CliError, print_json
    from ledgerx.legacy.archive import ArchiveRefused, archive

    try:
        rep = archive(args.root, _need_legacy(args), db=args.db)
    except ArchiveRefused as e:
        raise CliError(str(e)) from None
    if args.json:
        print_json(asdict(rep))
    else:
        print(f"archived {', '.join(rep.archived)}; manifest {rep.manifest}")
    return 0


def _project(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError, print_json
    from ledgerx.config import resolve_root
    from ledgerx.index.publish import IndexPaths, index_lock
    from ledgerx.legacy.projection import projection_path, remove_projection, write_projection

    paths = IndexPaths.for_root(resolve_root(args.root), args.db)
    with index_lock(paths):  # the indexer also writes it: one at a time
        if args.remove:
            removed = remove_projection(paths)
            out = {"removed": removed, "path": str(projection_path(paths))}
        else:
            if not paths.runs.exists():
                raise CliError(f"no index at {paths.runs}; run `ledgerx rebuild` first")
            out = {"path": str(write_projection(paths, full=True).path)}
    if args.json:
        print_json(out)
    elif args.remove:
        print(f"{'removed' if out['removed'] else 'no projection at'} {out['path']}")
    else:
        print(f"published {out['path']} (kept current by every later rebuild)")
    return 0

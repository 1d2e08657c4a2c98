"""Read-side commands: rebuild, query, status, verify (runs, show, trials: results_cmds)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ledgerx.cli.term import printable

STALE_HELP = (
    "a running run with no event for this long is abandoned; the value is kept in the index, "
    "so later rebuilds and the daemon use it until changed (`ledgerx status` shows it; "
    "default 3600)"
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ledgerx.cli import add_common, seconds_arg

    p = sub.add_parser("rebuild", help="index new log bytes into index/runs.duckdb and publish")
    add_common(p)
    p.add_argument("--db", default=None, help="index file (default <root>/index/runs.duckdb)")
    p.add_argument("--since-date", default=None, metavar="YYYY-MM-DD", help="scan only these days")
    p.add_argument("--full-rebuild", action="store_true", help="start from an empty index")
    p.add_argument("--strict", action="store_true", help="refuse lines without crc")
    p.add_argument(
        "--stale-after",
        type=seconds_arg,
        default=None,
        metavar="SECONDS",
        help=STALE_HELP,
    )
    p.add_argument(
        "--legacy-projection",
        action="store_true",
        default=None,  # None: keep an existing index/legacy.duckdb current (docs/legacy.md)
        help="also publish index/legacy.duckdb in the legacy layout, for old readers",
    )
    p.add_argument(
        "--source", default=None, metavar="URL", help="index a shipped log: s3://bucket/prefix"
    )
    p.add_argument("--endpoint-url", default=None, metavar="URL", help="S3-compatible endpoint")
    p.set_defaults(handler=_rebuild, quick_exit=True)  # (`main` with the process's argv)

    p = sub.add_parser("query", help="read-only SQL over the index (no access to other files)")
    add_common(p)
    p.add_argument("--db", default=None)
    p.add_argument("sql")
    p.set_defaults(handler=_query)

    p = sub.add_parser("status", help="index lag behind the log and last rebuild")
    add_common(p)
    p.add_argument("--db", default=None)
    p.set_defaults(handler=_status)

    p = sub.add_parser("verify", help="check the log (crc, schema, tails, seq) and the index")
    add_common(p)
    p.add_argument("--db", default=None)
    p.add_argument("--strict", action="store_true", help="lines without crc are errors")
    p.set_defaults(handler=_verify)


class _Bar:
    """A progress bar on stderr (rich), only when stderr is a terminal; quiet in pipes."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.on = sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.on:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                DownloadColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=total)
        self._progress.update(self._task, completed=done, total=total)

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _reader(args: argparse.Namespace, external_access: bool = True) -> Any:
    from ledgerx.cli import CliError, existing_root
    from ledgerx.reader import Reader

    if args.db is None:
        existing_root(args.root)
    r = Reader(args.root, db=args.db, external_access=external_access)
    if not r.paths.runs.exists():
        raise CliError(f"no index at {r.paths.runs}; run `ledgerx rebuild` first")
    return r


def _rows(rel: Any) -> tuple[list[str], list[tuple[Any, ...]], set[str]]:
    from ledgerx.cli.render import rel_rows

    return rel_rows(rel)


def _emit_rows(
    args: argparse.Namespace,
    cols: list[str],
    rows: list[tuple[Any, ...]],
    json_cols: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    from ledgerx.cli import print_json
    from ledgerx.cli.render import as_json_rows, parse_json_cols, table

    if args.json:  # JSON columns as JSON values, never as JSON text inside JSON
        print_json(as_json_rows(cols, rows, json_cols))
    else:
        table(cols, parse_json_cols(cols, rows, json_cols))


def _rebuild(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError, existing_root, print_json
    from ledgerx.config import resolve_root

    if args.source is None:
        existing_root(args.root)
    elif not resolve_root(args.root).is_dir():  # a remote index's root: events/ comes later
        raise CliError(f"no directory at {resolve_root(args.root)} (check --root)")
    _one_blas_thread()
    pre = _prescan(args)  # before the imports below (DuckDB, pyarrow: ~0.3 s on one core)
    if pre is None and args.source is None:
        # The indexer's in-memory DuckDB starts in a thread (`dbfile.work_cursor` takes it),
        # overlapping the imports below; a no-op after the console script's early start.
        from ledgerx.index.engine import prestart

        prestart()
    import ledgerx.legacy  # noqa: F401 - registers the legacy projection's publish hook
    from ledgerx.index import build_index

    bar = _Bar("indexing")
    kw: dict[str, Any] = dict(
        since_date=args.since_date,
        full_rebuild=args.full_rebuild,
        strict=args.strict,
        stale_after=args.stale_after,
        progress=bar,
        hook_options={"legacy_projection": args.legacy_projection},
    )
    try:
        if args.source is not None:
            rep = _rebuild_remote(args, kw)
        else:
            rep = build_index(args.root, db=args.db, prescan=pre, **kw)
    finally:
        bar.end()
        if pre is not None:
            pre.close()
    if args.json:
        d = dict(rep.__dict__)
        del d["offsets"]  # every part's checkpoint: for callers in this process
        d["bad"] = [{"file": f, "offset": o, "len": n, "reason": r} for f, o, n, r in rep.bad[:100]]
        print_json(d)
    else:
        for f, o, n, r in rep.bad[:20]:
            print(f"bad line {f}:{o} ({n} bytes): {r}", file=sys.stderr)
        if rep.bad_lines > 20:
            print(f"... {rep.bad_lines - 20} more bad lines (table _bad_lines)", file=sys.stderr)
        for w in rep.warnings[:20]:
            print(f"warning: {w}", file=sys.stderr)
        if rep.mode == "noop":
            print(f"index up to date (no new bytes), {rep.seconds:.2f} s")
        else:
            print(rep.summary())
    return 0


def _one_blas_thread() -> None:
    """pyarrow imports numpy, whose OpenBLAS starts a thread per core that spins for a while
    (about 0.1 CPU-s of a 100k-event rebuild, CPU the scan and DuckDB's insert want); a rebuild
    does no BLAS work. A value the user set is kept."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _prescan(args: argparse.Namespace) -> Any:
    """A full rebuild's scan, started ahead (`ledgerx.index.prescan`); None otherwise."""
    if not args.full_rebuild or args.source is not None:
        return None
    from ledgerx.config import events_dir, resolve_root
    from ledgerx.index.prescan import Prescan

    return Prescan.full(events_dir(resolve_root(args.root)), args.since_date, strict=args.strict)


def _rebuild_remote(args: argparse.Namespace, kw: dict[str, Any]) -> Any:
    """`rebuild --source s3://…`: mirror the shipped objects, then index them (docs/scale.md)."""
    from ledgerx.cli import CliError
    from ledgerx.remote import rebuild_from_remote

    if args.db is not None:
        raise CliError("--db cannot be combined with --source (the index goes to <root>/index)")
    fetched, rep = rebuild_from_remote(args.root, args.source, endpoint_url=args.endpoint_url, **kw)
    rep.warnings[:0] = fetched.warnings
    if not args.json:
        print(fetched.summary(), file=sys.stderr)
    return rep


def _query(args: argparse.Namespace) -> int:
    with _reader(args, external_access=False) as r:
        rel = r.sql(args.sql)
        if rel is None:  # a statement with no result (and nothing can be written read-only)
            return 0
        cols, rows, jcols = _rows(rel)
    _emit_rows(args, cols, rows, jcols)
    return 0


def _status(args: argparse.Namespace) -> int:
    from ledgerx.cli import existing_root, print_json
    from ledgerx.index.verify import index_status

    existing_root(args.root)
    st = index_status(args.root, db=args.db)
    if args.json:
        print_json(st)
        return 0
    lr = st.get("last_rebuild")
    print(f"index            {st['index']}")
    print(f"indexed events   {st.get('indexed_events', 0)}  runs {st.get('runs', 0)}")
    age = st["oldest_unindexed_age_s"]
    print(
        f"lag              {st['lag_events']} events, {st['lag_bytes']} bytes"
        + (f", oldest {age:.1f} s old" if age is not None else "")
    )
    if "stale_after_s" in st:
        print(
            f"stale after      {st['stale_after_s']:g} s (kept in the index; rebuild --stale-after)"
        )
    if lr:
        print(
            f"last rebuild     {lr['at']} ({lr['mode']}, {lr['events']} events, {lr['seconds']} s)"
        )
    else:
        print("last rebuild     never")
    if st.get("registry_error"):
        print(
            f"schema registry  UNREADABLE: {st['registry_error']} "
            "(writers keep validating with the last good registry)"
        )
    for t, why in st.get("schema_invalid", {}).items():
        print(printable(f"schema invalid   {t}: {why} (no event of this type is written)"))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ledgerx.cli import existing_root, print_json
    from ledgerx.index.verify import verify

    existing_root(args.root)
    bar = _Bar("verifying")
    try:
        rep = verify(args.root, db=args.db, strict=args.strict, progress=bar)
    finally:
        bar.end()
    if args.json:
        print_json(
            {
                "ok": rep.ok,
                "files": rep.files,
                "events": rep.events,
                "problems": rep.problems,
                "problem_count": rep.problem_count,
                "index_checked": rep.index_checked,
                "unindexed_events": rep.unindexed_events,
                "days": rep.days,
            }
        )
    else:
        for p in rep.problems:
            print(p)
        if rep.problem_count > len(rep.problems):
            print(f"... {rep.problem_count - len(rep.problems)} more problems")
        idx = (
            f"index checked ({rep.unindexed_events} events not indexed yet)"
            if rep.index_checked
            else "no index to check"
        )
        verdict = "OK" if rep.ok else f"{rep.problem_count} problems"
        print(f"verify: {rep.files} files, {rep.events} events, {idx}: {verdict}")
    return 0 if rep.ok else 1

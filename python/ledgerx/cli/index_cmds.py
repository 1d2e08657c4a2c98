"""Read-side commands: rebuild, runs, show, query, status, verify."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

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
    p.set_defaults(handler=_rebuild)

    p = sub.add_parser("runs", help="latest runs, newest first")
    add_common(p)
    p.add_argument("--db", default=None)
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(handler=_runs)

    p = sub.add_parser("show", help="one run: state, phases, trials")
    add_common(p)
    p.add_argument("--db", default=None)
    p.add_argument("run_id")
    p.set_defaults(handler=_show)

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
    """A progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.on = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.on or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        frac = done / total if total else 1.0
        width = 30
        fill = int(frac * width)
        sys.stderr.write(
            f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}% "
            f"{done / 1e6:.1f}/{total / 1e6:.1f} MB {now - self.t0:.1f}s"
        )
        sys.stderr.flush()

    def end(self) -> None:
        if self.on:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _reader(args: argparse.Namespace, external_access: bool = True) -> Any:
    from ledgerx.cli import CliError, existing_root
    from ledgerx.reader import Reader

    if args.db is None:
        existing_root(args.root)
    r = Reader(args.root, db=args.db, external_access=external_access)
    if not r.paths.runs.exists():
        raise CliError(f"no index at {r.paths.runs}; run `ledgerx rebuild` first")
    return r


def _jsonable(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def _rows(rel: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    return list(rel.columns), rel.fetchall()


def _print_table(cols: list[str], rows: list[tuple[Any, ...]], width: int = 40) -> None:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if hasattr(v, "isoformat"):
            s = v.isoformat(sep=" ", timespec="seconds") if hasattr(v, "hour") else v.isoformat()
        elif isinstance(v, float):
            s = f"{v:.6g}"
        else:
            s = str(v)
        s = " ".join(s.split())
        return s if len(s) <= width else s[: width - 1] + "…"

    body = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for r in body:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _emit_rows(args: argparse.Namespace, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
    from ledgerx.cli import print_json

    if args.json:
        print_json([{c: _jsonable(v) for c, v in zip(cols, r, strict=True)} for r in rows])
    else:
        _print_table(cols, rows)


def _rebuild(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError, existing_root, print_json
    from ledgerx.config import resolve_root
    from ledgerx.index import build_index

    if args.source is None:
        existing_root(args.root)
    elif not resolve_root(args.root).is_dir():  # a remote index's root: events/ comes later
        raise CliError(f"no directory at {resolve_root(args.root)} (check --root)")
    bar = _Bar("indexing")
    kw: dict[str, Any] = dict(
        since_date=args.since_date,
        full_rebuild=args.full_rebuild,
        strict=args.strict,
        stale_after=args.stale_after,
        progress=bar,
        legacy_projection=args.legacy_projection,
    )
    try:
        if args.source is not None:
            rep = _rebuild_remote(args, kw)
        else:
            rep = build_index(args.root, db=args.db, **kw)
    finally:
        bar.end()
    if args.json:
        d = dict(rep.__dict__)
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


def _runs(args: argparse.Namespace) -> int:
    with _reader(args) as r:
        rel = r.latest_runs().limit(max(0, args.limit))
        cols, rows = _rows(rel)
    if not args.json:
        keep = ["run_id", "run_kind", "status", "created_at", "duration_ms", "trials"]
        idx = [cols.index(c) for c in keep]
        cols, rows = keep, [tuple(row[i] for i in idx) for row in rows]
    _emit_rows(args, cols, rows)
    return 0


def _show(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError, print_json

    with _reader(args) as r:
        cols, rows = _rows(r.run(args.run_id))
        if not rows:
            raise CliError(f"unknown run {args.run_id!r} (not in the index)")
        run = dict(zip(cols, rows[0], strict=True))
        pcols, prows = _rows(r.phases(args.run_id))
        ntr = r.sql(
            "SELECT count(*) FROM trial_results WHERE run_id = ?", [args.run_id]
        ).fetchall()[0][0]
        arts = r.sql(
            "SELECT name, path, format, bytes FROM artifacts_catalog WHERE run_id = ? "
            "ORDER BY created_at",
            [args.run_id],
        ).fetchall()
    if args.json:
        print_json(
            {
                "run": {k: _jsonable(v) for k, v in run.items()},
                "phases": [{c: _jsonable(v) for c, v in zip(pcols, p, strict=True)} for p in prows],
                "trials": ntr,
                "artifacts": [
                    dict(zip(["name", "path", "format", "bytes"], a, strict=True)) for a in arts
                ],
            }
        )
        return 0
    for k in (
        "run_id",
        "run_kind",
        "status",
        "created_at",
        "started_at",
        "completed_at",
        "failed_at",
        "last_event_at",
        "data_fingerprint",
        "host",
        "pid",
        "error",
        "summary",
        "n_events",
        "days",
    ):
        v = run.get(k)
        if v is not None:
            print(f"{k:17} {_jsonable(v)}")
    print(f"{'trials':17} {ntr}")
    if prows:
        print()
        _print_table(pcols[1:], [p[1:] for p in prows])
    if arts:
        print()
        _print_table(["artifact", "path", "format", "bytes"], arts)
    return 0


def _query(args: argparse.Namespace) -> int:
    with _reader(args, external_access=False) as r:
        rel = r.sql(args.sql)
        if rel is None:  # a statement with no result (and nothing can be written read-only)
            return 0
        cols, rows = _rows(rel)
    _emit_rows(args, cols, rows)
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

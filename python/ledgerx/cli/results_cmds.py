"""Results commands: `runs` (filters, "showing N of M"), `show RUN` (a unique prefix is
enough) and `trials RUN` (table, csv, json, parquet). Tables through ledgerx.cli.render."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ledgerx.cli import render

RUN_COLUMNS = ["run_id", "run_kind", "status", "created_at", "duration_ms", "trials"]
FORMATS = ("table", "csv", "json", "parquet")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ledgerx.cli import add_common

    p = sub.add_parser("runs", help="latest runs, newest first (filters: status, kind, tag)")
    add_common(p)
    p.add_argument("--db", default=None)
    p.add_argument(
        "--status",
        action="append",
        default=None,
        help="only runs in this status (repeatable): running, completed, failed, ...",
    )
    p.add_argument("--kind", action="append", default=None, help="only this run_kind (repeatable)")
    p.add_argument(
        "--tag",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="only runs whose tag KEY equals VALUE (repeatable: all must match)",
    )
    p.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")
    p.add_argument("--all", action="store_true", help="every matching run (no limit)")
    p.set_defaults(handler=_runs)

    p = sub.add_parser("show", help="one run: state, config, tags, phases, best trial, artifacts")
    add_common(p)
    p.add_argument("--db", default=None)
    p.add_argument("--metric", default=None, help="rank trials on this metric (default: the first)")
    p.add_argument("--mode", choices=("max", "min"), default="max", help="best is max or min")
    p.add_argument("run_id", help="a run id or a unique prefix of one")
    p.set_defaults(handler=_show)

    p = sub.add_parser("trials", help="one row per trial of a run: params.* and metrics.*")
    add_common(p, json_flag=False)
    p.add_argument("--db", default=None)
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (table)")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write to FILE")
    p.add_argument("run_id", help="a run id or a unique prefix of one")
    p.set_defaults(handler=_trials)


def _reader(args: argparse.Namespace) -> Any:
    from ledgerx.cli.index_cmds import _reader as reader

    return reader(args)


def _resolve(r: Any, prefix: str) -> str:
    from ledgerx.cli import CliError
    from ledgerx.reader import RunNotFoundError

    try:
        return r.resolve_run_id(prefix)
    except RunNotFoundError as e:
        raise CliError(str(e)) from None


def _filters(args: argparse.Namespace) -> tuple[str, list[Any]]:
    from ledgerx.cli import EXIT_USAGE, CliError

    where, params = [], []
    if args.status:
        where.append("l.status IN (SELECT unnest(?::VARCHAR[]))")
        params.append(args.status)
    if args.kind:
        where.append("l.run_kind IN (SELECT unnest(?::VARCHAR[]))")
        params.append(args.kind)
    for t in args.tag or []:
        key, sep, value = t.partition("=")
        if not sep or not key:
            raise CliError(f"runs: --tag wants KEY=VALUE, not {t!r}", EXIT_USAGE)
        where.append("json_extract_string(d.tags, '$.' || to_json(?::VARCHAR)) = ?")
        params += [key, value]
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _runs(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError

    if args.limit < 0:
        raise CliError("--limit must be >= 0")
    where, params = _filters(args)
    base = f"FROM latest_runs l JOIN runs_d d USING (run_id){where}"
    with _reader(args) as r:
        total = r.sql(f"SELECT count(*) {base}", params).fetchall()[0][0]
        sql = f"SELECT l.* {base} ORDER BY l.created_at DESC NULLS LAST, l.run_id DESC"
        if not args.all:
            sql += f" LIMIT {int(args.limit)}"
        cols, rows, jcols = render.rel_rows(r.sql(sql, params))
    if args.json:
        from ledgerx.cli import print_json

        print_json(render.as_json_rows(cols, rows, jcols))
        return 0
    idx = [cols.index(c) for c in RUN_COLUMNS]
    render.table(RUN_COLUMNS, [tuple(row[i] for i in idx) for row in rows])
    if len(rows) < total:
        print(f"showing {len(rows)} of {total} runs (--limit N or --all for more)")
    else:
        print(f"{total} run{'s' if total != 1 else ''}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ledgerx.cli import print_json

    with _reader(args) as r:
        rid = _resolve(r, args.run_id)
        cols, rows, jcols = render.rel_rows(r.run(rid))
        run = render.as_json_rows(cols, rows, jcols)[0]
        pc, pr, pj = render.rel_rows(r.phases(rid))
        bc, br, bj = render.rel_rows(r.baselines(rid))
        ac, ar, _ = render.rel_rows(r.artifacts(rid))
        trials = r.trials_table(rid)
    best = _best(trials, args.metric, args.mode)
    if args.json:
        print_json(
            {
                "run": run,
                "phases": render.as_json_rows(pc, pr, pj),
                "baselines": render.as_json_rows(bc, br, bj),
                "trials": trials.num_rows,
                "best_trial": best,
                "artifacts": render.as_json_rows(ac, ar),
            }
        )
        return 0
    keys = [
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
    ]
    render.kv([(k, run.get(k)) for k in keys] + [("trials", trials.num_rows)])
    for name in ("config", "tags", "summary"):
        if run.get(name):
            print(f"\n{name}")
            render.kv([(f"  {k}", v) for k, v in run[name].items()])
    if best:
        print(f"\nbest trial ({best['metric']}, {best['mode']})")
        render.kv(
            [("  trial_id", best["trial_id"]), (f"  {best['metric']}", best["value"])]
            + [(f"  {k}", v) for k, v in best["params"].items()]
        )
    if pr:
        print()
        render.table(pc[1:], [p[1:] for p in pr], title="phases")
    if br:
        print()
        render.table(bc, render.parse_json_cols(bc, br, bj), title="baselines")
    if ar:
        print()
        keep = ["name", "abs_path", "format", "bytes"]
        idx = [ac.index(c) for c in keep]
        render.table(keep, [tuple(a[i] for i in idx) for a in ar], title="artifacts")
    return 0


def _best(trials: Any, metric: str | None, mode: str) -> dict[str, Any] | None:
    from ledgerx.results import best_trials

    metrics = [c.removeprefix("metrics.") for c in trials.column_names if c.startswith("metrics.")]
    if not metrics:
        return None
    metric = metric or metrics[0]
    got = best_trials(trials, metric, mode).values()
    if not got:
        return None
    tid, value = next(iter(got))
    row = next(x for x in trials.to_pylist() if x["trial_id"] == tid)
    params = {k.removeprefix("params."): v for k, v in row.items() if k.startswith("params.")}
    return {"metric": metric, "mode": mode, "trial_id": tid, "value": value, "params": params}


def _trials(args: argparse.Namespace) -> int:
    from ledgerx.cli import CliError

    if args.format == "parquet" and args.output is None and sys.stdout.isatty():
        raise CliError("--format parquet writes binary: give -o FILE (or redirect stdout)")
    with _reader(args) as r:
        rid = _resolve(r, args.run_id)
        if args.format == "json":  # trial_id keeps its JSON type: numbers stay numbers
            rel = r.trials(rid).project("run_id, trial_id, recorded_at AS ts, params, metrics")
            cols, data, jcols = render.rel_rows(rel)
            out = render.as_json_rows(cols, data, jcols)
            return _write_text(args, json.dumps(out, ensure_ascii=False) + "\n")
        table = r.trials_table(rid)
    if args.format == "table":
        if args.output:
            raise CliError("-o FILE goes with --format csv, json or parquet")
        render.table(table.column_names, [tuple(d.values()) for d in table.to_pylist()])
        return 0
    if args.format == "csv":
        import pyarrow.csv as pacsv

        return _write_with(args, lambda f: pacsv.write_csv(table, f))
    import pyarrow.parquet as pq

    return _write_with(args, lambda f: pq.write_table(table, f))


def _write_text(args: argparse.Namespace, text: str) -> int:
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _write_with(args: argparse.Namespace, write: Any) -> int:
    if args.output:
        with open(args.output, "wb") as f:
            write(f)
    else:
        sys.stdout.flush()
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    return 0

"""`ledgerx legacy compare`: the standard queries, legacy vs index, row by row and type by type.

Scope: runs present in both stores (a run id of any legacy table that the index has), and alerts
whose alert_id both stores have. For each standard query the column names and types must be
equal, and the rows are matched on their key (a repeated key, such as a trial id recorded twice
in one run, is matched by its order in time) and compared column by column. The only
equivalence (docs/legacy.md): a legacy `running` run equals an index `running` or `abandoned`
one.
Event ids are not compared (the index of a store written in parallel has its own); JSON values
are compared as DuckDB minifies them.

Rows of the legacy file that the index lacks entirely (runs and alerts not migrated) are
counted, not failed: `complete` says whether there are none, which `archive` requires.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from ledgerx.legacy.dual import DualReader


@dataclass(frozen=True)
class _Spec:
    name: str
    legacy: str
    index: str
    key: tuple[str, ...]
    order: tuple[str, ...]  # ranks rows that share a key
    scope: str  # "runs" or "alerts"
    skip: tuple[str, ...] = ()


SPECS = [
    _Spec("latest_runs", "legacy_latest_runs", "ledger.main.latest_runs", ("run_id",), (), "runs"),
    _Spec(
        "run_phase_summary",
        "legacy_run_phase_summary",
        "ledger.main.run_phase_summary",
        ("run_id", "phase"),
        (),
        "runs",
    ),
    _Spec(
        "trial_results",
        "legacy_trial_results",
        "ledger.main.trial_results",
        ("run_id", "trial_id"),
        ("recorded_at", "params", "metrics"),
        "runs",
        skip=("event_id",),
    ),
    _Spec(
        "baseline_results",
        "legacy_baseline_results",
        "ledger.main.baseline_results",
        ("run_id", "baseline"),
        ("completed_at", "metrics"),
        "runs",
        skip=("event_id",),
    ),
    _Spec(
        "alerts",
        "legacy_alerts",
        "index_alerts",
        ("alert_id",),
        ("ts", "payload"),
        "alerts",
        skip=("event_id",),
    ),
]

MAX_DIFFS = 200


@dataclass
class Difference:
    query: str
    key: dict[str, Any]
    column: str  # "(row)" when the row is on one side only
    legacy: Any
    index: Any

    def line(self) -> str:
        k = ", ".join(f"{n}={v}" for n, v in self.key.items())
        if self.column == "(row)":
            side = "legacy" if self.index is None else "index"
            return f"{self.query} [{k}]: row only in {side}"
        old, new = _show(self.legacy), _show(self.index)
        return f"{self.query} [{k}] {self.column}: legacy {old} != index {new}"


def _show(v: Any) -> str:
    if v is None:
        return "NULL"
    if hasattr(v, "isoformat"):
        return v.isoformat()
    s = repr(v)
    return s if len(s) <= 120 else s[:117] + "..."


@dataclass
class CompareReport:
    legacy: str
    ok: bool = True
    runs_compared: int = 0
    alerts_compared: int = 0
    rows_compared: dict[str, int] = field(default_factory=dict)
    legacy_only_runs: int = 0
    legacy_only_alerts: int = 0
    type_differences: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    n_differences: int = 0
    snapshot: bool = False

    @property
    def complete(self) -> bool:
        """Passing, and nothing in the legacy file is missing from the index."""
        return self.ok and self.legacy_only_runs == 0 and self.legacy_only_alerts == 0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["differences"] = [asdict(x) for x in self.differences]
        d["complete"] = self.complete
        return d

    def text(self) -> str:
        lines = [
            f"{'OK' if self.ok else 'DIFFERENT'}: {self.runs_compared} runs and "
            f"{self.alerts_compared} alerts present in both stores ("
            + ", ".join(f"{n} {q}" for q, n in self.rows_compared.items())
            + " rows)"
        ]
        if self.legacy_only_runs or self.legacy_only_alerts:
            lines.append(
                f"not in the index: {self.legacy_only_runs} legacy runs, "
                f"{self.legacy_only_alerts} legacy alerts (run `ledgerx legacy migrate`, then "
                "`ledgerx rebuild`)"
            )
        if self.snapshot:
            lines.append("note: the legacy file is open for writing; compared a snapshot copy")
        lines += [f"type: {t}" for t in self.type_differences]
        lines += [d.line() for d in self.differences]
        if self.n_differences > len(self.differences):
            lines.append(f"... and {self.n_differences - len(self.differences)} more differences")
        return "\n".join(lines)


def _q(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[Any]:
    return con.execute(sql, params or []).fetchall()


def _describe(con: duckdb.DuckDBPyConnection, rel: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in _q(con, f"DESCRIBE SELECT * FROM {rel}")]


def _compare_one(con: duckdb.DuckDBPyConnection, s: _Spec, rep: CompareReport) -> None:
    lt, it = _describe(con, s.legacy), _describe(con, s.index)
    if lt != it:
        rep.type_differences.append(f"{s.name}: legacy {lt} != index {it}")
        return
    types = dict(lt)
    scope = "_cmp_runs" if s.scope == "runs" else "_cmp_alerts"
    col = "run_id" if s.scope == "runs" else "alert_id"
    cols = [c for c, _ in lt if c not in s.key and c not in s.skip]

    def side(rel: str) -> str:
        order = ", ".join(f"CAST({c} AS VARCHAR)" for c in s.order) or "1"
        return f"""SELECT *, row_number() OVER (PARTITION BY {", ".join(s.key)} ORDER BY {order})
                   AS _n FROM {rel} WHERE {col} IN (SELECT {col} FROM {scope})"""

    def norm(c: str, t: str) -> str:  # JSON as DuckDB minifies it, so formatting never differs
        return f"json(CAST({t}.{c} AS VARCHAR))" if types[c] == "JSON" else f"{t}.{c}"

    on = " AND ".join([f"l.{k} IS NOT DISTINCT FROM i.{k}" for k in s.key] + ["l._n = i._n"])
    checks: list[str] = []
    for c in cols:
        same = f"{norm(c, 'l')} IS NOT DISTINCT FROM {norm(c, 'i')}"
        if c == "status":  # legacy has no `abandoned` (docs/legacy.md)
            same = f"({same} OR (l.status = 'running' AND i.status = 'abandoned'))"
        checks.append(f"CASE WHEN NOT ({same}) THEN '{c}' END")
    diff_cols = f"list_filter([{', '.join(checks)}], lambda x: x IS NOT NULL)" if checks else "[]"
    keys = ", ".join(f"coalesce(l.{k}, i.{k}) AS {k}" for k in s.key)
    sel = ", ".join([f"l.{c} AS l_{c}, i.{c} AS i_{c}" for c in cols])
    sql = f"""
        WITH l AS ({side(s.legacy)}), i AS ({side(s.index)}),
        j AS (
            SELECT {keys}, coalesce(l._n, i._n) AS _n,
                   l._n IS NULL AS only_i, i._n IS NULL AS only_l,
                   {diff_cols} AS bad {", " + sel if sel else ""}
            FROM l FULL OUTER JOIN i ON {on}
        )
        SELECT * FROM j WHERE only_i OR only_l OR len(bad) > 0
        ORDER BY {", ".join(s.key)}, _n"""
    n_rows = _q(con, f"SELECT count(*) FROM ({side(s.legacy)})")[0][0]
    rep.rows_compared[s.name] = n_rows
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    for row in rows:
        r = dict(zip(names, row, strict=True))
        key = {k: r[k] for k in s.key}
        if s.order:  # a key that may repeat: which occurrence, in time order
            key["#"] = r["_n"]
        found: list[Difference] = []
        if r["only_l"]:
            found.append(Difference(s.name, key, "(row)", "present", None))
        elif r["only_i"]:
            found.append(Difference(s.name, key, "(row)", None, "present"))
        else:
            for c in r["bad"]:
                found.append(Difference(s.name, key, c, r[f"l_{c}"], r[f"i_{c}"]))
        rep.n_differences += len(found)
        room = MAX_DIFFS - len(rep.differences)
        rep.differences.extend(found[: max(room, 0)])


def compare_reader(reader: DualReader) -> CompareReport:
    """Compare on an open DualReader's connection (legacy views + index)."""
    con = reader.connection
    rep = CompareReport(str(reader.legacy_path), snapshot=reader.legacy_snapshot is not None)
    # Scope tables: runs and alerts that both stores hold.
    con.execute("""CREATE OR REPLACE TEMP TABLE _cmp_legacy_runs AS
        SELECT run_id FROM legacy_runs_n UNION SELECT run_id FROM legacy_phases_n
        UNION SELECT run_id FROM legacy_trials_n
        UNION SELECT run_id FROM legacy_baselines_n WHERE run_id IS NOT NULL""")
    con.execute("""CREATE OR REPLACE TEMP TABLE _cmp_runs AS
        SELECT run_id FROM _cmp_legacy_runs
        WHERE run_id IN (SELECT run_id FROM ledger.main.runs_d)""")
    con.execute("""CREATE OR REPLACE TEMP TABLE _cmp_alerts AS
        SELECT DISTINCT alert_id FROM legacy_alerts_n
        WHERE alert_id IN (SELECT alert_id FROM index_alerts)""")
    rep.runs_compared = _q(con, "SELECT count(*) FROM _cmp_runs")[0][0]
    rep.alerts_compared = _q(con, "SELECT count(*) FROM _cmp_alerts")[0][0]
    rep.legacy_only_runs = _q(
        con,
        "SELECT count(*) FROM _cmp_legacy_runs WHERE run_id NOT IN (SELECT run_id FROM _cmp_runs)",
    )[0][0]
    rep.legacy_only_alerts = _q(
        con,
        """SELECT count(DISTINCT coalesce(alert_id, '')) FROM legacy_alerts_n
           WHERE alert_id IS NULL OR alert_id NOT IN (SELECT alert_id FROM _cmp_alerts)""",
    )[0][0]
    for s in SPECS:
        _compare_one(con, s, rep)
    rep.ok = not rep.type_differences and rep.n_differences == 0
    return rep


def compare(
    root: str | os.PathLike[str] | None,
    legacy: str | os.PathLike[str],
    *,
    db: str | os.PathLike[str] | None = None,
    snapshot: bool = True,
) -> CompareReport:
    """Compare the legacy file with the published index of `root`. The index must exist."""
    from ledgerx.reader import IndexMissingError

    reader = DualReader(root, legacy=legacy, cutover="1970-01-01", db=db, snapshot=snapshot)
    try:
        if not reader.paths.runs.exists():
            raise IndexMissingError(f"no index at {reader.paths.runs}; run `ledgerx rebuild` first")
        return compare_reader(reader)
    finally:
        reader.close()

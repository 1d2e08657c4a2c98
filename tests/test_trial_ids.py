"""trial_id keeps its JSON type in the index (issue 10): integer ids sort as integers (2 before
10) in the `trial_results` view, `Reader.trials`, `trials_table`, the CLI and the dual reader;
string ids stay strings; a mixed run sorts every integer before every string. An index of the
previous format is upgraded by the next round even with nothing new to index. Expected values
and orders are written out by hand from the trials recorded here."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import ledgerx
from ledgerx.index import build_index
from ledgerx.index.publish import IndexPaths
from ledgerx.index.schema import INDEX_FORMAT
from ledgerx.legacy import DualReader, compare, migrate

from conftest import cli
from legacy_fixture import LEGACY_DDL

# Recorded in this order: neither numeric nor text order (text would give 1, 10, 2, 3, 33).
INT_IDS = [10, 2, 33, 1, 3]
INT_SORTED = [1, 2, 3, 10, 33]
STR_IDS = ["b", "a10", "a2"]
STR_SORTED = ["a10", "a2", "b"]
# 3.0 is an integer to JSON Schema (the trial.recorded schema accepts it): the id 3. The
# integer 10 and the string "10" are two trials. Integers first, then strings.
MIXED_IDS: list[int | float | str] = [10, "x", 2, "10", 3.0]
MIXED_SORTED: list[int | str] = [2, 3, 10, "10", "x"]
UNION = 'UNION("int" BIGINT, str VARCHAR)'


def _record(led: ledgerx.Ledger, run_id: str, ids: list[int | float | str]) -> None:
    with led.run(run_id=run_id, run_kind="grid", config={}, data_fingerprint="fp") as run:
        for i, tid in enumerate(ids):
            run.trial(tid, {"i": i}, {"sharpe": float(i)})  # type: ignore[arg-type]
        run.trial(ids[1], {"i": 99}, {"sharpe": 99.0})  # a retried trial: shown once, latest


@pytest.fixture
def swept(root: Path) -> Path:
    with ledgerx.open(root) as led:
        _record(led, "ints", INT_IDS)
        _record(led, "strs", STR_IDS)
        _record(led, "mixed", MIXED_IDS)
    build_index(root)
    return root


def _col(r: ledgerx.Reader, sql: str, params: list[object] | None = None) -> list[object]:
    return [row[0] for row in r.sql(sql, params).fetchall()]


def test_view_keeps_the_json_type_and_sorts_integers_as_integers(swept: Path) -> None:
    with ledgerx.Reader(swept) as r:
        types = {c[0]: c[1] for c in r.sql("DESCRIBE trial_results").fetchall()}
        assert types["trial_id"] == UNION
        order = "SELECT trial_id FROM trial_results WHERE run_id = ? ORDER BY trial_id"
        assert _col(r, order, ["ints"]) == INT_SORTED
        assert _col(r, order, ["strs"]) == STR_SORTED
        assert _col(r, order, ["mixed"]) == MIXED_SORTED
        tags = "SELECT union_tag(trial_id) FROM trial_results WHERE run_id = ? ORDER BY trial_id"
        assert _col(r, tags, ["mixed"]) == ["int", "int", "int", "str", "str"]
        # a literal picks the member of its type: 10 the integer, '10' the string
        pick = "SELECT trial_id, params->>'i' FROM trial_results WHERE run_id = 'mixed' AND "
        assert r.sql(pick + "trial_id = 10").fetchall() == [(10, "0")]
        assert r.sql(pick + "trial_id = '10'").fetchall() == [("10", "3")]
        assert r.sql(pick + "trial_id = 3").fetchall() == [(3, "4")]  # written as 3.0
        # the retried trial (2 in ints): once, its latest record
        got = r.sql("SELECT params->>'i' FROM trial_results WHERE run_id = 'ints' AND trial_id = 2")
        assert got.fetchall() == [("99",)]
        m = "SELECT trial_id FROM trial_metrics WHERE run_id = 'ints' ORDER BY trial_id"
        assert _col(r, m) == INT_SORTED


def test_reader_trials_gives_a_plain_column_per_run(swept: Path) -> None:
    with ledgerx.Reader(swept) as r:
        ints = r.trials("ints")
        assert dict(zip(ints.columns, map(str, ints.types), strict=True))["trial_id"] == "BIGINT"
        assert [t[2] for t in ints.fetchall()] == INT_SORTED
        tab = r.trials("ints").arrow().read_all()
        assert tab.schema.field("trial_id").type == pa.int64()
        assert tab["trial_id"].to_pylist() == INT_SORTED
        strs = r.trials("strs")
        assert dict(zip(strs.columns, map(str, strs.types), strict=True))["trial_id"] == "VARCHAR"
        assert [t[2] for t in strs.fetchall()] == STR_SORTED
        mixed = r.trials("mixed")  # both kinds: the view's UNION, values in their own type
        assert str(mixed.types[mixed.columns.index("trial_id")]) == UNION
        assert [t[2] for t in mixed.fetchall()] == MIXED_SORTED


def test_trials_table_and_runs_table(swept: Path) -> None:
    with ledgerx.Reader(swept) as r:
        t = r.trials_table("ints")
        assert t.schema.field("trial_id").type == pa.int64()
        assert t["trial_id"].to_pylist() == INT_SORTED
        assert t["params.i"].to_pylist() == [3, 99, 4, 0, 2]  # trial 2: its latest record
        s = r.trials_table("strs")
        assert s.schema.field("trial_id").type == pa.string()
        assert s["trial_id"].to_pylist() == STR_SORTED
        m = r.trials_table("mixed")  # not all integers: text, in the view's order
        assert m.schema.field("trial_id").type == pa.string()
        assert m["trial_id"].to_pylist() == ["2", "3", "10", "10", "x"]
        every = r.trials_table()
        assert every["run_id"].to_pylist() == ["ints"] * 5 + ["mixed"] * 5 + ["strs"] * 3
        best = r.runs_table(["ints"], best_metric="sharpe")
        assert best["best_trial_id"].to_pylist() == [2]  # sharpe 99 (the retry)
        assert best.schema.field("best_trial_id").type == pa.int64()


def _ok(*args: str) -> str:
    p = cli(*args)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.heavy
def test_cli_keeps_integers_as_numbers_in_numeric_order(swept: Path) -> None:
    root = str(swept)
    js = json.loads(_ok("trials", "--root", root, "ints", "--format", "json"))
    assert [t["trial_id"] for t in js] == INT_SORTED
    assert all(type(t["trial_id"]) is int for t in js)
    assert js[1]["params"] == {"i": 99}
    js = json.loads(_ok("trials", "--root", root, "strs", "--format", "json"))
    assert [t["trial_id"] for t in js] == STR_SORTED
    js = json.loads(_ok("trials", "--root", root, "mixed", "--format", "json"))
    assert [t["trial_id"] for t in js] == MIXED_SORTED
    rows = list(
        csv.DictReader(io.StringIO(_ok("trials", "--root", root, "ints", "--format", "csv")))
    )
    assert [r["trial_id"] for r in rows] == [str(i) for i in INT_SORTED]
    table = _ok("trials", "--root", root, "ints").splitlines()
    firsts = [ln.split()[1] for ln in table if ln.split()[:1] == ["ints"]]
    assert firsts == [str(i) for i in INT_SORTED]
    q = "SELECT trial_id FROM trial_results WHERE run_id = 'ints' ORDER BY trial_id"
    assert json.loads(_ok("query", "--root", root, "--json", q)) == [
        {"trial_id": i} for i in INT_SORTED
    ]
    shown = json.loads(_ok("show", "--root", root, "ints", "--json"))
    assert shown["best_trial"]["trial_id"] == 2 and shown["best_trial"]["value"] == 99.0


# The view of format 3: trial_id as VARCHAR (what an index built before this change holds).
FORMAT_3_VIEW = """
CREATE OR REPLACE VIEW trial_results AS
SELECT event_id, run_id, s.trial_id, s.params, s.metrics, ts AS recorded_at
FROM (SELECT event_id, run_id, ts, file, "offset",
             json_transform(coalesce(data_upcast, data),
                            '{"trial_id":"VARCHAR","params":"JSON","metrics":"JSON"}') s
      FROM events WHERE event_type = 'trial.recorded')
QUALIFY row_number() OVER (PARTITION BY run_id, s.trial_id
                           ORDER BY ts DESC, file DESC, "offset" DESC) = 1
"""


def test_an_older_index_is_upgraded_with_nothing_new_to_index(swept: Path) -> None:
    paths = IndexPaths.for_root(swept)
    con = duckdb.connect(str(paths.runs))
    con.execute(FORMAT_3_VIEW)
    con.execute("UPDATE _index_meta SET value = '3' WHERE key = 'format'")
    con.close()
    with ledgerx.Reader(swept) as r:  # still readable before the upgrade: ids as text
        assert [t[2] for t in r.trials("ints").fetchall()] == ["1", "10", "2", "3", "33"]
    rep = build_index(swept)  # no new bytes: only the format differs
    assert rep.mode == "incremental" and rep.events == 0
    with ledgerx.Reader(swept) as r:
        assert _col(r, "SELECT value FROM _index_meta WHERE key = 'format'") == [INDEX_FORMAT]
        order = "SELECT trial_id FROM trial_results WHERE run_id = 'ints' ORDER BY trial_id"
        assert _col(r, order) == INT_SORTED
    assert build_index(swept).mode == "noop"  # and once upgraded, a quiet round stays quiet


# -- legacy: the dual reader answers legacy runs with the index's types ----------------------


def _legacy_file(path: Path, trial_id_type: str, trials: list[tuple[str, object]]) -> Path:
    """A legacy DuckDB file (docs/legacy.md layout) with run `old` created before the cutover
    and the given (run_id, trial_id) rows, trial_id typed `trial_id_type`."""
    con = duckdb.connect(str(path))
    con.execute(LEGACY_DDL.replace("trial_id BIGINT", f"trial_id {trial_id_type}"))
    t0 = datetime(2026, 1, 10, 9, 0, 0)
    con.execute(
        "INSERT INTO optimizer.runs_d VALUES ('old', 'grid', '{}', 'fp', 'completed', ?, ?, ?, "
        "'{}')",
        [t0, t0, t0.replace(hour=10)],
    )
    for k, (run_id, tid) in enumerate(trials):
        con.execute(
            "INSERT INTO optimizer.trials_f VALUES (?, ?, ?, '{\"sharpe\": 1.5}', ?)",
            [run_id, tid, json.dumps({"k": k}), t0.replace(minute=k + 1)],
        )
    con.close()
    return path


def _trial_id_type(rel: duckdb.DuckDBPyRelation) -> str:
    return str(rel.types[rel.columns.index("trial_id")])


def test_dual_reader_types_legacy_runs_as_index_runs(root: Path, tmp_path: Path) -> None:
    legacy = _legacy_file(tmp_path / "legacy.duckdb", "BIGINT", [("old", i) for i in INT_IDS])
    with ledgerx.open(root) as led:  # a run after the cutover, in the log
        _record(led, "new", INT_IDS)
    build_index(root)
    with DualReader(root, legacy=legacy, cutover="2026-01-23") as r:
        assert r.owner("old") == "legacy" and r.owner("new") == "index"
        old, new = r.trials("old"), r.trials("new")
        assert old.columns == new.columns
        assert _trial_id_type(old) == _trial_id_type(new) == "BIGINT"
        assert [t[2] for t in old.fetchall()] == INT_SORTED
        assert [t[2] for t in new.fetchall()] == INT_SORTED
        types = {c[0]: c[1] for c in r.sql("DESCRIBE trial_results").fetchall()}
        assert types["trial_id"] == UNION
        both = "SELECT run_id, trial_id FROM trial_results ORDER BY run_id DESC, trial_id"
        assert r.sql(both).fetchall() == [("old", i) for i in INT_SORTED] + [
            ("new", i) for i in INT_SORTED
        ]
        tab = r.trials_table(["old", "new"])
        assert tab.schema.field("trial_id").type == pa.int64()
        assert tab["trial_id"].to_pylist() == INT_SORTED + INT_SORTED
        assert tab["run_id"].to_pylist() == ["new"] * 5 + ["old"] * 5


def test_string_legacy_ids_stay_strings_through_migration(root: Path, tmp_path: Path) -> None:
    ids = ["t10", "t2", "7"]  # "7" in a VARCHAR column is a string id, not the number 7
    legacy = _legacy_file(tmp_path / "legacy.duckdb", "VARCHAR", [("old", i) for i in ids])
    with DualReader(root, legacy=legacy, cutover="2026-01-23") as r:  # no index yet
        before = r.trials("old")
        assert _trial_id_type(before) == "VARCHAR"
        assert [t[2] for t in before.fetchall()] == ["7", "t10", "t2"]
    rep = migrate(root, legacy)
    assert rep.written > 0
    build_index(root)
    with ledgerx.Reader(root) as r:  # the index alone: what migration wrote
        tags = "SELECT trial_id, union_tag(trial_id) FROM trial_results ORDER BY trial_id"
        assert r.sql(tags).fetchall() == [("7", "str"), ("t10", "str"), ("t2", "str")]
    cmp = compare(root, legacy)
    assert cmp.ok and cmp.rows_compared["trial_results"] == 3, cmp.text()
    with DualReader(root, legacy=legacy, cutover="2026-01-23") as r:
        assert [t[2] for t in r.trials("old").fetchall()] == ["7", "t10", "t2"]


def test_integer_legacy_ids_compare_equal_after_migration(root: Path, tmp_path: Path) -> None:
    legacy = _legacy_file(tmp_path / "legacy.duckdb", "BIGINT", [("old", i) for i in INT_IDS])
    migrate(root, legacy)
    build_index(root)
    cmp = compare(root, legacy)
    assert cmp.ok and cmp.rows_compared["trial_results"] == 5, cmp.text()
    with ledgerx.Reader(root) as r:
        assert [t[2] for t in r.trials("old").fetchall()] == INT_SORTED


# -- the rule itself, in SQL (the views) and in Python (the dashboard) ---------------------------

RULE = [  # (JSON of the id, the id in the index)
    ("7", 7),
    ("-3", -3),
    ("3.0", 3),
    ("1e3", 1000),
    ("9223372036854775807", 2**63 - 1),
    ("-9223372036854775808", -(2**63)),
    ("9223372036854775808", "9223372036854775808"),  # beyond BIGINT: its JSON text
    ("1.5", "1.5"),
    ('"7"', "7"),
    ('"é x"', "é x"),
    ('""', ""),
    ("null", None),
]


@pytest.mark.parametrize(("text", "want"), RULE)
def test_the_trial_id_rule_in_sql_and_python(text: str, want: object) -> None:
    from ledgerx.index.schema import trial_id_sql, trial_id_value

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT CAST(? AS JSON) AS j", [text])
    got = con.execute(f"SELECT {trial_id_sql('j')} FROM t").fetchall()[0][0]
    assert got == want and type(got) is type(want)
    py = trial_id_value(json.loads(text))
    assert py == want and type(py) is type(want)

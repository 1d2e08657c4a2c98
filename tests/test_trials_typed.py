"""`Reader.trials_table` from the shapes the scanner stores (`events.shape`, ledgerx.typed_trials):
the table equals an oracle computed in plain Python from the events emitted here (the latest
record of each (run_id, trial_id), rows in (run_id, trial_id) order, columns typed by the
documented rules of `test_results_flatten.reference`), for generated sweeps over several
indexing rounds, with retries that change a key's type, mixed id kinds, awkward key names and
integers beyond 64 bits; and it equals what the former path (`ledgerx.flatten`) gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from index_support import WithoutAttribute
from test_results_flatten import reference

import ledgerx
import ledgerx.typed_trials as tt
from ledgerx.flatten import flatten_trials
from ledgerx.index import build_index
from ledgerx.results import TRIALS_SQL
from ledgerx.typed_trials import typed_trials

I64 = 2**63
Trial = tuple[str, Any, dict[str, Any], dict[str, Any]]  # run_id, trial_id, params, metrics


def _tid_order(t: Any) -> tuple[int, Any]:
    """The view's trial_id order: integers (as numbers) before strings (by code point)."""
    return (0, t) if isinstance(t, int) else (1, t)


def oracle(trials: list[Trial], runs: set[str] | None = None) -> dict[str, Any]:
    """{column: (type, values)} of trials_table from the emitted trials, in emission order."""
    latest: dict[tuple[str, str], Trial] = {}
    for tr in trials:
        if runs is None or tr[0] in runs:
            latest[(tr[0], json.dumps(tr[1]))] = tr  # a later record replaces an earlier one
    rows = sorted(latest.values(), key=lambda t: (t[0], _tid_order(t[1])))
    ids = [t[1] for t in rows]
    if rows and all(isinstance(i, int) for i in ids):
        tid: tuple[pa.DataType, list[Any]] = (pa.int64(), ids)
    else:
        tid = (pa.string(), [str(i) for i in ids])
    cols = {"run_id": (pa.string(), [t[0] for t in rows]), "trial_id": tid}
    cols.update(reference([{"params": t[2], "metrics": t[3]} for t in rows]))
    return cols


def check(table: pa.Table, want: dict[str, Any]) -> None:
    assert [c for c in table.column_names if c != "ts"] == list(want)
    for name, (typ, vals) in want.items():
        assert table.schema.field(name).type == typ, name
        assert table[name].to_pylist() == vals, name
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")


def emit(root: Path, trials: list[Trial]) -> None:
    with ledgerx.open(root) as led:
        for run_id, tid, params, metrics in trials:
            led.emit(
                "trial.recorded",
                {"trial_id": tid, "params": params, "metrics": metrics},
                run_id=run_id,
            )


def former(root: Path, runs: list[str] | None = None) -> pa.Table:
    """What trials_table gave before shapes: the view, then `ledgerx.flatten`."""
    with ledgerx.Reader(root) as r:
        where, params = ("", []) if runs is None else (
            "AND run_id IN (SELECT unnest(?::VARCHAR[]))", [runs])  # fmt: skip
        return flatten_trials(r.sql(TRIALS_SQL.format(where=where), params).to_arrow_table())


def fast(root: Path, runs: list[str] | None = None) -> pa.Table | None:
    with ledgerx.Reader(root) as r:
        where, params = ("", []) if runs is None else (
            "AND run_id IN (SELECT unnest(?::VARCHAR[]))", [runs])  # fmt: skip
        return typed_trials(r, where, params)


keys = st.sampled_from(["a", "b", "c", "a.b", "x/y", "t~1", "it's", 'q"', "é", "0"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-I64, max_value=I64 - 1),
    st.sampled_from([I64 - 1, I64, 2**64 - 1, -I64, 0, -1]),  # the writer refuses wider
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=2), st.dictionaries(keys, scalars, max_size=2)
)
numbers = st.one_of(
    st.integers(-5, 5), st.floats(-1, 1, allow_nan=False), st.sampled_from([2**64 - 1, 1e300])
)
trials_st = st.lists(
    st.tuples(
        st.sampled_from(["run-a", "run-b"]),
        st.one_of(st.integers(0, 4), st.sampled_from(["t1", "t10", "2"])),
        st.dictionaries(keys, values, max_size=3),
        st.dictionaries(keys, numbers, max_size=3),
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=20,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # shrinking a failure takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(first=trials_st, second=trials_st)
def test_typed_trials_match_the_oracle_over_two_rounds(
    tmp_path_factory: Any, first: list[Trial], second: list[Trial]
) -> None:
    root = tmp_path_factory.mktemp("ledger")
    emit(root, first)
    build_index(root)
    check(ledgerx.Reader(root).trials_table(), oracle(first))
    emit(root, second)  # a trial recorded again replaces its earlier record
    assert build_index(root).mode == "incremental"
    both = first + second
    with ledgerx.Reader(root) as r:
        check(r.trials_table(), oracle(both))
        check(r.trials_table("run-b"), oracle(both, {"run-b"}))
    got = fast(root)
    assert got is not None  # the stored shapes answered (no empty or case-folded key here)
    assert got.equals(former(root))


def test_retry_that_changes_a_type_and_the_key_order(root: Path) -> None:
    trials: list[Trial] = [
        ("r", 1, {"x": "text", "y": 1}, {"m": 1}),
        ("r", 2, {"y": 2, "z": [1]}, {"m": 2.5}),
        ("r", 1, {"y": 3, "x": 7}, {"m": 3}),  # retry: x was a string, now an integer
        ("r", 10, {"w": 2**64 - 1}, {}),
    ]
    emit(root, trials)
    build_index(root)
    with ledgerx.Reader(root) as r:
        t = r.trials_table()
    check(t, oracle(trials))
    assert t.column_names == [
        "run_id", "trial_id", "ts", "params.y", "params.x", "params.z", "params.w", "metrics.m"
    ]  # fmt: skip
    assert t.schema.field("params.x").type == pa.int64()  # the superseded string is gone
    assert t["params.w"].to_pylist() == [None, None, "18446744073709551615"]
    assert fast(root) is not None


def test_keys_a_struct_cannot_hold_fall_back_to_the_former_path(root: Path) -> None:
    trials: list[Trial] = [
        ("r", 1, {"": 1, "k": 2}, {"m": 1}),
        ("r", 2, {"A": 1, "a": "x"}, {"m": 2}),
    ]
    emit(root, trials)
    build_index(root)
    assert fast(root) is None
    check(ledgerx.Reader(root).trials_table(), oracle(trials))


def test_rows_without_a_shape_fall_back(root: Path) -> None:
    """An index upgraded from format 4 has no shape for the trials indexed before."""
    trials: list[Trial] = [("r", i, {"p": i}, {"m": i / 2}) for i in range(3)]
    emit(root, trials)
    build_index(root)
    db = root / "index" / "runs.duckdb"
    con = duckdb.connect(str(db))
    for col in ("shape", "tint", "tnum"):  # the layout of format 4
        con.execute(f"ALTER TABLE events DROP COLUMN {col}")
    con.execute("UPDATE _index_meta SET value = '4' WHERE key = 'format'")
    con.close()
    assert fast(root) is None  # no shape column: the former path
    check(ledgerx.Reader(root).trials_table(), oracle(trials))
    more: list[Trial] = [("r", 1, {"p": "one"}, {"m": 9})]
    emit(root, more)
    build_index(root)  # upgrades: the column is back, empty for the old rows
    with ledgerx.Reader(root) as r:
        assert r.sql("SELECT count(*) FROM events WHERE shape IS NULL").fetchall() == [(3,)]
    assert fast(root) is None
    check(ledgerx.Reader(root).trials_table(), oracle(trials + more))


def test_upcast_trials_have_no_shape_and_read_the_upcast_data(root: Path) -> None:
    """A trial below its type's newest schema version is read as upcast: its shape (of the data
    as written) is not stored, so the former path answers from `coalesce(data_upcast, data)`."""
    from ledgerx import _core
    from ledgerx.config import events_dir
    from ledgerx.schema import SchemaRegistry, ensure_registry

    import schema_upcasters

    ensure_registry(events_dir(root))
    w = _core.Writer(str(root), durability="os")
    try:
        w.emit("trial.recorded", {"trial_id": 7, "params": {"w": 1}, "metrics": {}}, run_id="r")
        reg = SchemaRegistry(events_dir(root), on_change=w.reload_schemas)
        v2 = {
            "type": "object",
            "required": ["trial_id", "params", "metrics", "stage"],
            "properties": {"trial_id": {"type": "string"}, "stage": {"type": "string"}},
        }
        assert reg.register("trial.recorded", v2, upcaster=schema_upcasters.trial_id_to_label)
        w.emit(
            "trial.recorded",
            {"trial_id": "t-8", "params": {"w": 2}, "metrics": {}, "stage": "new"},
            run_id="r",
        )
    finally:
        w.close()
    assert not build_index(root).warnings
    with ledgerx.Reader(root) as r:
        shapes = r.sql("SELECT shape FROM events ORDER BY seq").fetchall()
        t = r.trials_table()
    assert shapes == [(None,), ('["ts","piw"]',)]
    assert t["trial_id"].to_pylist() == ["t-7", "t-8"] and t["params.w"].to_pylist() == [1, 2]
    assert fast(root) is None


def values_path(root: Path) -> bool:
    """Whether trials_table reads the stored typed values (`tint`, `tnum`) rather than JSON."""
    with ledgerx.Reader(root) as r:
        got = tt._shapes(r._cursor(), "", [])
        assert got is not None
        shapes, valued = got
        parsed = tt._parse(shapes)
        assert parsed is not None
        return valued and tt._from_values(shapes, *parsed) is not None


# Keys whose values keep one kind (a column of ints, of floats or ints, of booleans, of nulls):
# every column of such a sweep comes from the typed values.
numeric_keys = {
    "i": st.integers(min_value=-I64, max_value=I64 - 1),
    "f": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-3, 3)),
    "b": st.booleans(),
    "n": st.none(),
}


def numeric_objects(kinds: str) -> Any:
    return st.fixed_dictionaries(
        {}, optional={k + s: numeric_keys[k] for k in kinds for s in ("", ".x", "é")}
    )


numeric_trials = st.lists(
    st.tuples(
        st.sampled_from(["run-a", "run-b"]),
        st.one_of(st.integers(0, 3), st.integers(-3, 2**62)),  # retries, and wide ids
        numeric_objects("ifbn"),
        numeric_objects("if"),  # the built-in schema: metrics are numbers
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=20,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(first=numeric_trials, second=numeric_trials)
def test_numeric_sweeps_read_the_typed_values(
    tmp_path_factory: Any, first: list[Trial], second: list[Trial]
) -> None:
    """Integer ids, numbers, booleans and nulls: the typed values answer (no JSON parsed),
    over a round and an incremental one (retries included), equal to the oracle and to the
    former path."""
    root = tmp_path_factory.mktemp("ledger")
    emit(root, first)
    build_index(root)
    assert values_path(root)
    check(ledgerx.Reader(root).trials_table(), oracle(first))
    emit(root, second)
    assert build_index(root).mode == "incremental"
    both = first + second
    assert values_path(root)
    with ledgerx.Reader(root) as r:
        check(r.trials_table(), oracle(both))
        check(r.trials_table("run-b"), oracle(both, {"run-b"}))
    assert fast(root).equals(former(root))  # type: ignore[union-attr]


def test_the_typed_values_answer_without_reading_the_json(root: Path) -> None:
    """With every trial's `data` overwritten in the index, trials_table still gives the emitted
    values (from `tint`, `tnum`), where the former path now reads the overwritten JSON."""
    trials: list[Trial] = [
        ("r", i, {"fast": i, "stop": 0.5 * i, "on": i % 2 == 0, "z": None}, {"m": -1.5 + i})
        for i in range(4)
    ] + [("r", 2, {"fast": 20, "stop": 7, "on": True, "z": None}, {"m": 0.25})]  # a retry
    emit(root, trials)
    build_index(root)
    con = duckdb.connect(str(root / "index" / "runs.duckdb"))
    con.execute(
        """UPDATE events SET data = '{"trial_id":0,"params":{},"metrics":{}}'
           WHERE event_type = 'trial.recorded'"""
    )
    con.close()
    assert values_path(root)
    t = ledgerx.Reader(root).trials_table()
    check(t, oracle(trials))
    assert t["params.stop"].to_pylist() == [0.0, 0.5, 7.0, 1.5]  # an int in a float column
    assert t.schema.field("params.on").type == pa.bool_()
    assert former(root)["trial_id"].to_pylist() == [0]  # what the JSON now says


def test_an_index_without_typed_values_reads_the_json(root: Path) -> None:
    """Format 5 (shapes, no typed values), then upgraded in place (the rows indexed before have
    none: the JSON answers), then rebuilt (the typed values answer): the same table."""
    trials: list[Trial] = [("r", i, {"p": i}, {"m": i / 2}) for i in range(3)]
    emit(root, trials)
    build_index(root)
    con = duckdb.connect(str(root / "index" / "runs.duckdb"))
    for col in ("tint", "tnum"):  # the layout of format 5
        con.execute(f"ALTER TABLE events DROP COLUMN {col}")
    con.execute("UPDATE _index_meta SET value = '5' WHERE key = 'format'")
    con.close()
    assert not values_path(root)
    check(ledgerx.Reader(root).trials_table(), oracle(trials))
    more: list[Trial] = [("r", 5, {"p": 5}, {"m": 9})]
    emit(root, more)
    build_index(root)  # upgrades in place: the columns are back, empty for the old rows
    assert not values_path(root)
    check(ledgerx.Reader(root).trials_table(), oracle(trials + more))
    build_index(root, full_rebuild=True)
    assert values_path(root)
    check(ledgerx.Reader(root).trials_table(), oracle(trials + more))


def test_a_retry_that_narrows_a_number_column_reads_the_typed_values(root: Path) -> None:
    """A superseded record made `k` a fraction and a boolean `b`; the records kept make them
    integers and nulls: the second pass types by the kept records, and the superseded shape's
    elements (which that type cannot read) give NULL to rows that are dropped anyway."""
    trials: list[Trial] = [
        ("r", 1, {"k": 1.5, "b": True}, {"m": 1}),
        ("r", 2, {"k": 3}, {"m": 2}),
        ("r", 1, {"k": 2, "b": None}, {"m": 3}),  # the retry
    ]
    emit(root, trials)
    build_index(root)
    assert values_path(root)
    t = ledgerx.Reader(root).trials_table()
    check(t, oracle(trials))
    assert t.schema.field("params.k").type == pa.int64() and t["params.k"].to_pylist() == [2, 3]
    assert fast(root).equals(former(root))  # type: ignore[union-attr]


def test_trials_frame_in_a_fresh_process_needs_no_duckdb_package(root: Path) -> None:
    """The trials path reads through the engine alone (`Reader._arrow`: the package's Python
    layer cost ~40 ms of the call); `Reader.sql` imports the package when first used and its
    relations work in that same process."""
    trials: list[Trial] = [("r", i, {"p": i}, {"m": i / 2}) for i in range(3)]
    emit(root, trials)
    build_index(root)
    code = (
        "import sys, ledgerx\n"
        "r = ledgerx.Reader(sys.argv[1])\n"
        "df = r.trials_frame()\n"
        "print(len(df), 'duckdb' in sys.modules)\n"
        "print(r.sql('SELECT count(*) FROM events').fetchall(), 'duckdb' in sys.modules)\n"
    )
    got = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ["3 False", "[(3,)] True"]


def test_fetch_arrow_without_the_private_engine_call_gives_the_same_table() -> None:
    """`engine.fetch_arrow` falls back to the package's public relation API (`sql`, then
    `to_arrow_table`) when the engine lacks `_result_as_arrow` (private API): the same table."""
    import _duckdb

    from ledgerx.index.engine import fetch_arrow

    q = "SELECT i, [i, 2 * i] AS l, 'x' || i AS s FROM range(5) t(i) WHERE i < ?"
    con = _duckdb.connect()
    want = fetch_arrow(con, q, [9])
    got = fetch_arrow(WithoutAttribute(con, "_result_as_arrow"), q, [9])
    assert got.equals(want) and want.num_rows == 5
    assert want.column_names == ["i", "l", "s"]


def test_many_shapes_read_by_position_up_to_a_limit(root: Path) -> None:
    """Trials whose keys come and go (a shape each): up to `MAX_SHAPES` shapes each row finds
    its shape's positions; beyond, the JSON path answers; the oracle's table either way."""
    trials: list[Trial] = [
        ("r", i, {f"k{j}": j * i for j in range(7) if i >> j & 1}, {"m": i / 4}) for i in range(70)
    ]
    emit(root, trials[: tt.MAX_SHAPES])
    build_index(root)
    assert values_path(root)
    check(ledgerx.Reader(root).trials_table(), oracle(trials[: tt.MAX_SHAPES]))
    emit(root, trials[tt.MAX_SHAPES :])
    build_index(root)
    assert not values_path(root)  # 70 shapes
    check(ledgerx.Reader(root).trials_table(), oracle(trials))

"""`trials_table` flattens params/metrics in DuckDB (ledgerx.flatten): the typed columns equal
what an independent reference of the documented rules (docs/index.md, below) computes from the
Python values, on generated objects (every JSON type, int64/uint64 edges, integers beyond 64
bits, awkward key names, missing keys, nulls, non-object params) and end to end through a real
ledger and index."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledgerx
from ledgerx.flatten import flatten_trials
from ledgerx.index import build_index

I64 = 2**63


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int" if -I64 <= v < I64 else "json"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return "json"


def reference(rows: list[dict[str, Any]]) -> dict[str, tuple[pa.DataType, list[Any]]]:
    """{column: (type, values)} by the documented rules, from the Python values."""
    out: dict[str, tuple[pa.DataType, list[Any]]] = {}
    for obj in ("params", "metrics"):
        keys: dict[str, None] = {}
        for r in rows:
            if isinstance(r.get(obj), dict):
                keys.update(dict.fromkeys(r[obj]))
        for k in keys:
            vals = [r[obj].get(k) if isinstance(r.get(obj), dict) else None for r in rows]
            kinds = {_kind(v) for v in vals if v is not None}
            if kinds == {"int", "float"}:
                kinds = {"float"}
            kind = kinds.pop() if len(kinds) == 1 else ("json" if kinds else "str")
            if kind == "json":
                vals = [None if v is None else json.dumps(v, separators=(",", ":")) for v in vals]
            if kind == "float":
                vals = [None if v is None else float(v) for v in vals]
            typ = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}
            out[f"{obj}.{k}"] = (typ.get(kind, pa.string()), vals)
    return out


def _base(rows: list[dict[str, Any]], tids: list[Any]) -> pa.Table:
    """What TRIALS_SQL hands over: rn, run_id, tid (JSON text), ts, d (the data's JSON text)."""
    n = len(rows)
    return pa.table(
        {
            "rn": pa.array(range(1, n + 1), pa.int64()),
            "run_id": pa.array(["r"] * n, pa.string()),
            "tid": pa.array([json.dumps(t) for t in tids], pa.string()),
            "ts": pa.array([i * 1000 for i in range(n)], pa.timestamp("us", tz="UTC")),
            "d": pa.array([json.dumps(r) for r in rows], pa.string()),
        }
    )


keys = st.sampled_from(["a", "b", "a.b", "x/y", "t~1", "it's", 'q"', "", "é", "0"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-I64, max_value=I64 - 1),
    st.sampled_from([I64 - 1, I64, 2**64 - 1, 2**64, -I64, -I64 - 1, 10**30, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=2), st.dictionaries(keys, scalars, max_size=2)
)
objects = st.dictionaries(keys, values, max_size=4)
one_kind = st.sampled_from([st.booleans(), st.integers(-5, 5), st.floats(-1, 1), st.text()])
rows_st = st.lists(
    st.fixed_dictionaries(
        {"params": st.one_of(objects, st.just([1, 2]), st.none()), "metrics": objects}
    ),
    min_size=1,
    max_size=8,
)


def _check(rows: list[dict[str, Any]], tids: list[Any]) -> pa.Table:
    t = flatten_trials(_base(rows, tids))
    ref = reference(rows)
    assert t.column_names == ["run_id", "trial_id", "ts", *ref]
    for name, (typ, vals) in ref.items():
        assert t.schema.field(name).type == typ, name
        assert t[name].to_pylist() == vals, name
    return t


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows_st)
def test_flatten_matches_the_reference_rules(rows: list[dict[str, Any]]) -> None:
    _check(rows, list(range(len(rows))))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([1, "t-1", 2.5, None, True, I64, -3, {"a": 1}]), min_size=1))
def test_trial_ids_int64_only_when_all_are(tids: list[Any]) -> None:
    t = flatten_trials(_base([{"params": {}, "metrics": {}}] * len(tids), tids))
    if all(_kind(x) == "int" for x in tids):
        assert t.schema.field("trial_id").type == pa.int64()
        assert t["trial_id"].to_pylist() == tids
    else:
        want = [x if isinstance(x, str) or x is None else json.dumps(x) for x in tids]
        assert t["trial_id"].to_pylist() == want


def test_a_column_typed_by_one_value() -> None:
    """Each kind alone, then spoilt by one other value (the mutant `column_kind` returning
    "float" for ints, or "str" for mixed columns, fails here)."""
    for a, b, typ in [
        (1, 2, pa.int64()),
        (1, 2.5, pa.float64()),
        (True, False, pa.bool_()),
        ("x", "y", pa.string()),
        (1, "y", pa.string()),
        (1, True, pa.string()),
        (1, 2**64, pa.string()),
    ]:
        t = _check(
            [{"params": {"k": a}, "metrics": {}}, {"params": {"k": b}, "metrics": {}}], [1, 2]
        )
        assert t.schema.field("params.k").type == typ


def test_end_to_end_awkward_keys_and_values(root: Any) -> None:
    rows = [
        {"params": {"a.b": 1, "x/y": "s", "t~1": [1, {"z": None}]}, "metrics": {"m": 1}},
        {"params": {"it's": True, 'q"': None, "é": 2**63 - 1}, "metrics": {"m": 0.5, "": 2}},
        {"params": {"a.b": -(2**63), "x/y": 3}, "metrics": {}},
    ]
    with ledgerx.open(root) as led:
        with led.run(run_id="run-k", run_kind="k", config={}, data_fingerprint="f") as run:
            for i, r in enumerate(rows):
                run.trial(i, r["params"], r["metrics"])
    build_index(root)
    with ledgerx.Reader(root) as rd:
        t = rd.trials_table()
    ref = reference(rows)
    assert t.column_names == ["run_id", "trial_id", "ts", *ref]
    assert t["trial_id"].to_pylist() == [0, 1, 2]
    for name, (typ, vals) in ref.items():
        assert (t.schema.field(name).type, t[name].to_pylist()) == (typ, vals), name


def test_no_trials_gives_the_fixed_columns(root: Any) -> None:
    with ledgerx.open(root) as led:
        led.emit(
            "alert.ingested", {"alert_id": "a", "source": "s", "severity": "low", "payload": {}}
        )
    build_index(root)
    with ledgerx.Reader(root) as rd:
        t = rd.trials_table()
    assert t.num_rows == 0 and t.column_names == ["run_id", "trial_id", "ts"]
    assert t.schema.field("trial_id").type == pa.string()

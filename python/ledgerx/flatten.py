"""Spread the trials' `params` and `metrics` objects into typed `params.<k>` / `metrics.<k>`
columns, in DuckDB rather than in a Python loop per value.

The input is the Arrow result of `ledgerx.results.TRIALS_SQL`: `rn` (the row's place), run_id,
`tid` (trial_id as JSON text), ts and `d`, a JSON object text with the trial's params and
metrics. One in-memory DuckDB connection (no file, no access to the index) reads it. It lists
the distinct shapes of the data
(`json_structure`: keys in order with the JSON type of each value), which gives every key in
first-seen order with the types its values take; then it extracts all keys of a row in one
parse (`json_extract` with a list of JSON pointers, so any key name is safe) and casts each to
its column's type. Arrow carries the typed columns out; only JSON-text columns (rare) go through
Python, to be rendered exactly as before.

Column types (docs/index.md): all booleans `bool`, all integers in the int64 range `int64`,
integers and floats mixed `float64`, all strings `string`; nested values, integers outside int64
and mixed types are JSON text (`json.dumps`, compact separators); a key a row lacks, or JSON
null, is null. trial_id: `int64` when every id is an int64 integer, else `string` (strings as
they are, other values as `json.dumps` text, null for none).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ledgerx.index.engine import package

if TYPE_CHECKING:
    import duckdb

_TS = pa.timestamp("us", tz="UTC")
_INT64_MAX = 2**63 - 1
_INTS = {"BIGINT", "UBIGINT"}
_OBJECTS = ("params", "metrics")

# The distinct shapes of the data, by first row (a sweep has one or a few).
_SHAPES_SQL = """
SELECT json_structure(CAST(d AS JSON)) AS s FROM base GROUP BY s ORDER BY min(rn)
"""

# An integer beyond int64 has 19 digits or more in a row. Only when some row has such a run are
# the values looked at one by one (rendering every double as text is slow): per pointer, whether
# each UBIGINT (DuckDB's type of a non-negative integer) fits int64, and whether each DOUBLE was
# written with a fraction or exponent (an integer beyond 64 bits becomes a DOUBLE).
_LONG_DIGITS = "SELECT coalesce(bool_or(regexp_matches(d, '[0-9]{19}')), false) FROM base"
_FITS_SQL = """
SELECT i, bool_and(CASE WHEN t = 'UBIGINT' THEN TRY_CAST(v AS BIGINT) IS NOT NULL
                        WHEN t = 'DOUBLE' THEN regexp_matches(CAST(v AS VARCHAR), '[.e]')
                        ELSE true END)
FROM (SELECT unnest(ts) AS t, unnest(vs) AS v, generate_subscripts(ts, 1) AS i
      FROM (SELECT json_type(j, {paths}) AS ts, json_extract(j, {paths}) AS vs
            FROM (SELECT CAST(d AS JSON) AS j FROM base)))
GROUP BY i
"""

# trial_id: rows whose id is not an int64 integer, and rows whose id is neither a string nor
# null (those are rendered by Python's json.dumps, as before).
_TID_SQL = f"""
SELECT count(*) FILTER (WHERE t IS NULL OR t NOT IN ('BIGINT', 'UBIGINT')
                        OR (t = 'UBIGINT' AND TRY_CAST(tid AS UBIGINT) > {_INT64_MAX})),
       count(*) FILTER (WHERE t IS NOT NULL AND t NOT IN ('VARCHAR', 'NULL'))
FROM (SELECT tid, json_type(CAST(tid AS JSON)) AS t FROM base)
"""

_CAST = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN"}
_ARROW = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}


def column_kind(types: set[str], fits: bool) -> str:
    """The kind of a column from the JSON types of its non-null values ("NESTED" for arrays
    and objects) and whether its integers all fit int64."""
    if not types:
        return "str"  # only nulls
    if not fits:
        return "json"  # an integer beyond int64 is JSON text, and so is its column
    if types <= _INTS:
        return "int"
    if types <= _INTS | {"DOUBLE"}:
        return "float"
    if types == {"BOOLEAN"}:
        return "bool"
    if types == {"VARCHAR"}:
        return "str"
    return "json"


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _pointer(*keys: str) -> str:
    """RFC 6901 JSON pointer to a nested key."""
    return "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in keys)


def _shapes(con: duckdb.DuckDBPyConnection) -> tuple[dict[tuple[str, str], set[str]], bool]:
    """({(object, key): JSON types of its non-null values}, in first-seen order; whether some
    row's params or metrics is not an object, so extraction must check)."""
    types: dict[tuple[str, str], set[str]] = {}
    odd = False
    for (shape,) in con.execute(_SHAPES_SQL).fetchall():
        s = json.loads(shape)
        for obj in _OBJECTS:
            o = s.get(obj, "NULL") if isinstance(s, dict) else "NULL"
            if not isinstance(o, dict):
                odd = True
                continue
            for k, t in o.items():
                seen = types.setdefault((obj, k), set())
                if t != "NULL":
                    seen.add(t if isinstance(t, str) else "NESTED")
    return types, odd


def _value_sql(kind: str, v: str) -> str:
    if kind == "str":
        return f"({v} ->> '$')"
    if kind == "json":
        return f"CAST({v} AS VARCHAR)"
    return f"CAST({v} AS {_CAST[kind]})"


def redump(arr: pa.ChunkedArray) -> pa.Array:
    """JSON text (DuckDB's rendering) as Python's compact json.dumps writes it; null for null."""
    out = []
    for text in arr.to_pylist():
        v = None if text is None else json.loads(text)
        out.append(None if v is None else json.dumps(v, separators=(",", ":")))
    return pa.array(out, pa.string())


def _tid_column(con: duckdb.DuckDBPyConnection, rows: int) -> tuple[str, Any]:
    """(SQL of the trial_id column, or "" when Python renders it; the Arrow type)."""
    not_int, other = con.execute(_TID_SQL).fetchall()[0]
    if rows and not not_int:
        return "CAST(tid AS BIGINT)", pa.int64()
    if not other:
        return "(CAST(tid AS JSON) ->> '$')", pa.string()
    return "", pa.string()


def _python_tids(base: pa.Table) -> pa.Array:
    out = []
    for text in base["tid"].to_pylist():
        t = None if text is None else json.loads(text)
        out.append(t if isinstance(t, str) or t is None else json.dumps(t))
    return pa.array(out, pa.string())


def _columns(con: duckdb.DuckDBPyConnection) -> tuple[str, list[tuple[str, str, str]]]:
    """(the FROM clause, [(column name, kind, SQL of the value)]) for params and metrics."""
    types, odd = _shapes(con)
    if not types:
        return "base", []
    keys = [k for o in _OBJECTS for k in types if k[0] == o]  # params first, as documented
    paths = "[" + ", ".join(_sql_str(_pointer(o, k)) for o, k in keys) + "]"
    fits = [True] * len(keys)
    if con.execute(_LONG_DIGITS).fetchall()[0][0]:
        for i, ok in con.execute(_FITS_SQL.format(paths=paths)).fetchall():
            fits[i - 1] = bool(ok)
    j = "CAST(d AS JSON)"
    extra = ""
    if odd:  # a pointer into a list would find an element: keep only objects' keys
        guards = ", ".join(_sql_str(_pointer(o)) for o in _OBJECTS)
        extra = f", json_type({j}, [{guards}]) AS ot"
    cols = []
    for i, (obj, key) in enumerate(keys):
        kind = column_kind(types[(obj, key)], fits[i])
        sql = _value_sql(kind, f"x[{i + 1}]")
        if odd:
            sql = f"CASE WHEN ot[{_OBJECTS.index(obj) + 1}] = 'OBJECT' THEN {sql} END"
        cols.append((f"{obj}.{key}", kind, sql))
    return f"(SELECT *, json_extract({j}, {paths}) AS x{extra} FROM base)", cols


def flatten_trials(base: pa.Table) -> pa.Table:
    """run_id, trial_id, ts, params.<k>..., metrics.<k>... from TRIALS_SQL's Arrow result."""
    con = package().connect(":memory:")  # scans a Python Arrow table: the package's adapters
    try:
        con.register("base", base)
        tid_sql, tid_type = _tid_column(con, base.num_rows)
        source, cols = _columns(con)
        outer = ["run_id", tid_sql or "NULL", "ts"] + [sql for _, _, sql in cols]
        select = ", ".join(f"{e} AS c{i}" for i, e in enumerate(outer))
        got = con.sql(f"SELECT {select} FROM {source} ORDER BY rn").to_arrow_table()
    finally:
        con.close()
    arrays: list[Any] = [
        got.column(0).cast(pa.string()),
        got.column(1).cast(tid_type) if tid_sql else _python_tids(base),
        got.column(2).cast(_TS),
    ]
    for i, (_, kind, _) in enumerate(cols, start=3):
        col = got.column(i)
        arrays.append(redump(col) if kind == "json" else col.cast(_ARROW[kind]))
    names = ["run_id", "trial_id", "ts"] + [name for name, _, _ in cols]
    return pa.table(arrays, names=names)

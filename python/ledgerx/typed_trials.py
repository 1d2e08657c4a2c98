"""`trials_table` from the shapes the indexer stored: one typed scan of the trial events.

The scanner records, for every `trial.recorded` event, the keys of its `params` and `metrics`
and the JSON kind of each value (`events.shape`, src/core/scanner/shape.rs). A selection's
columns and their types follow from its distinct shapes alone (a handful per sweep, read from a
dictionary-compressed column without parsing any JSON); then ONE `json_transform` per row into
a STRUCT of exactly those types gives the typed columns, the trial id and the dedupe key in a
single parse, straight to Arrow. Same rules and results as `ledgerx.flatten` (docs/index.md),
which remains the path when a selection has a row without a shape (indexed by an older format,
or upcast), a key DuckDB cannot name in a STRUCT (empty, or two keys
equal but for case), or when `trial_results` is not the index's own view (the dual reader).

Faster still, without parsing any JSON: the scanner also stores each trial's integers and
booleans (`events.tint`) and other numbers (`events.tnum`) in its shape's order, so when every
trial id of the selection is an integer and every column is a number, a boolean or all null,
each column is a list element at a position its row's shape gives (`_from_values`).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ledgerx.flatten import column_kind, redump
from ledgerx.index.engine import duckdb, fetch_arrow
from ledgerx.index.schema import trial_id_sql

_TS = pa.timestamp("us", tz="UTC")
_OBJECTS = {"p": "params", "m": "metrics"}
# Shape letters (scanner/shape.rs) as the JSON types `column_kind` takes; `u` (an integer
# beyond int64) makes the column JSON text, `n` (null) types nothing.
_LETTER = {"b": "BOOLEAN", "i": "BIGINT", "f": "DOUBLE", "s": "VARCHAR", "j": "NESTED"}
_TRANSFORM = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "str": "VARCHAR"}
_ARROW = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}

# Whether `trial_results` is the index's own view (a dual reader puts a union in front of it).
_OWN_VIEW = """SELECT count(*) FROM duckdb_views()
WHERE view_name = 'trial_results' AND database_name <> 'ledger'"""
_SHAPES = "SELECT DISTINCT shape FROM events WHERE event_type = 'trial.recorded' {where}"
# Format 6: the shapes, and whether every row of each has its typed values.
_SHAPES_VALUES = """SELECT shape, bool_and(tint IS NOT NULL) FROM events
WHERE event_type = 'trial.recorded' {where} GROUP BY shape"""
# No window: the rows come either in the table's order (usually already by run and trial id:
# the log's order) or sorted so that each trial's records are adjacent, the latest first (the
# view's order: ts, file, offset); `_first_of_each` keeps that one. With one row per trial
# left, (run_id, trial_id) alone gives the view's row order. `tkey` identifies the trial id.
_MAIN = """
SELECT run_id, {tid_cols}, ts, file, "offset", shape{cols}
FROM (SELECT run_id, {tid} AS trial_id, ts, file, "offset", shape, {src}
      FROM (SELECT run_id, ts, file, "offset", shape, {vals}
            FROM events WHERE event_type = 'trial.recorded' {where}))
{order}
"""
_JSON = {"src": "s", "vals": "json_transform(data, ?) AS s"}
_ORDER = 'ORDER BY run_id, trial_id, ts DESC, file DESC, "offset" DESC'
_SORT_KEYS = [
    ("run_id", "ascending"),
    ("tkey", "ascending"),
    ("ts", "descending"),
    ("file", "descending"),
    ("offset", "descending"),
]
# Every id of the selection is an int64 integer: a plain BIGINT, sorted in Arrow when the table's
# order is not already the result's.
_TID_INT = {
    "tid": "s.trial_id",
    "tid_cols": "true AS is_int, trial_id AS tid_int, NULL AS tid, trial_id AS tkey",
    "order": "",
}
_TID_ANY = {
    "tid": trial_id_sql("s.trial_id"),
    "tid_cols": "coalesce(union_tag(trial_id) = 'int', false) AS is_int, "
    "trial_id.int AS tid_int, CAST(trial_id AS VARCHAR) AS tid, "
    "union_tag(trial_id) || ':' || CAST(trial_id AS VARCHAR) AS tkey",
    "order": _ORDER,
}

Keys = dict[tuple[str, str], set[str]]


def _parse(shapes: list[str]) -> tuple[Keys, bool] | None:
    """({(object, key): letters} over `shapes`, keys in the order given; whether every trial id
    is an int64 integer). None when a key cannot be a STRUCT field (empty, or equal to another
    of its object but for case)."""
    keys: Keys = {}
    all_int = True
    for text in shapes:
        tid = None
        for e in json.loads(text):
            if e[0] == "t":
                tid = e[1]
            else:
                keys.setdefault((_OBJECTS[e[0]], e[2:]), set()).add(e[1])
        all_int = all_int and tid == "i"
    folded = {(o, k.lower()) for o, k in keys}
    if len(folded) != len(keys) or any(k == "" for _, k in keys):
        return None
    return keys, all_int


def _kind(letters: set[str]) -> str:
    types = {_LETTER[x] for x in letters if x in _LETTER}
    return column_kind(types, "u" not in letters)


def _spec(keys: Keys, all_int: bool) -> str:
    """The json_transform structure: the trial id, each key as its column's type."""
    spec: dict[str, Any] = {"trial_id": "BIGINT" if all_int else "JSON"}
    for obj in ("params", "metrics"):
        fields = {k: _TRANSFORM.get(_kind(ls), "JSON") for (o, k), ls in keys.items() if o == obj}
        if fields:
            spec[obj] = fields
    return json.dumps(spec)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# Where each element of a shape's values is: {(object, key) or ("t", ""): (letter, index)},
# the 1-based index into `tint` (letters i, b) or `tnum` (f); 0 for other letters.
Slots = dict[tuple[str, str], tuple[str, int]]
# Above this many shapes in a selection the JSON path answers: each row looks its shape up.
MAX_SHAPES = 64


def _slots(shape: str) -> Slots | None:
    """Where each element's value is in rows of `shape`; None when it names a key twice."""
    out: Slots = {}
    n = {"tint": 0, "tnum": 0}
    for e in json.loads(shape):
        key = ("t", "") if e[0] == "t" else (_OBJECTS[e[0]], e[2:])
        lst = _LIST.get(e[1])
        if lst:
            n[lst] += 1
        if key in out:
            return None
        out[key] = (e[1], n[lst] if lst else 0)
    return out


_LIST = {"i": "tint", "b": "tint", "f": "tnum"}
# Each column kind's value SQL from the list elements of the letters it reads: {letter: SQL}.
# A letter the kind does not read (a shape of superseded records only: the kinds of a second
# pass are the kept records') leaves those rows NULL; they are dropped.
_READS = {
    "int": {"i": "{p}"},
    "float": {"i": "CAST({p} AS DOUBLE)", "f": "{p}"},
    "bool": {"b": "CAST({p} AS BOOLEAN)"},
    "str": {},  # all null
}


def _element(lst: str, at: list[int | None]) -> str | None:
    """SQL of list `lst`'s element at the row's shape's position (`at`, by shape number `k`;
    None: no element), or None when no shape has one."""
    if not any(at):
        return None
    if len(set(at)) == 1:  # every shape puts it at one place
        return f"{lst}[{at[0]}]"
    return f"{lst}[[{', '.join('NULL' if a is None else str(a) for a in at)}][k]]"


def _column(slots: list[Slots], key: tuple[str, str], kind: str) -> str:
    """The value SQL of column `key` of `kind` (NULL where a row's shape lacks it)."""
    parts = []
    for letter, sql in _READS[kind].items():
        at = [sl[key][1] if sl.get(key, ("",))[0] == letter else None for sl in slots]
        el = _element(_LIST[letter], at)
        if el is not None:
            parts.append(sql.format(p=el))
    if not parts:
        return "NULL"
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def _from_values(
    shapes: list[str], keys: Keys, all_int: bool
) -> tuple[dict[str, str], str, str] | None:
    """(the inner columns, trial id SQL, columns SQL) reading the typed values (`tint`,
    `tnum`) instead of the JSON, or None when a column is not a number, a boolean or all null,
    a trial id not an integer, or the shapes are many. With several shapes each row finds its
    shape's number `k` once (`list_position`), and each column indexes a list of positions
    by it."""
    kinds = {k: _kind(ls) for k, ls in keys.items()}
    if not all_int or len(shapes) > MAX_SHAPES:
        return None
    if any(kinds[k] not in _READS or (kinds[k] == "str" and ls != {"n"}) for k, ls in keys.items()):
        return None
    slots = [_slots(sh) for sh in shapes]
    if any(sl is None for sl in slots):
        return None
    ok = [sl for sl in slots if sl is not None]
    inner = {"src": "tint, tnum", "vals": "tint, tnum"}
    if len(shapes) > 1:
        listed = ", ".join(map(_sql_str, shapes))
        inner = {
            "src": "tint, tnum, k",
            "vals": f"tint, tnum, list_position([{listed}], shape) AS k",
        }
    cols = "".join(
        f", CAST({_column(ok, key, kind)} AS {_TRANSFORM[kind]}) AS c{i}"
        for i, (key, kind) in enumerate(kinds.items())
    )
    return inner, _column(ok, ("t", ""), "int"), cols


def _run(
    con: Any, where: str, params: list[Any], keys: Keys, all_int: bool, shapes: list[str]
) -> pa.Table:
    """The selection's rows with the columns of `keys` (`c0`, ...); `shapes`: the selection's
    shapes when every row has its typed values (format 6), else empty."""
    fast = _from_values(shapes, keys, all_int) if shapes else None
    if fast is not None:
        inner, tid, cols = fast
        q = _MAIN.format(**_TID_INT | {"tid": tid}, **inner, cols=cols, where=where)
        got = fetch_arrow(con, q, params)
    else:
        cols = "".join(
            f", struct_extract(struct_extract(s, {_sql_str(o)}), {_sql_str(k)}) AS c{i}"
            for i, (o, k) in enumerate(keys)
        )
        q = _MAIN.format(**(_TID_INT if all_int else _TID_ANY), **_JSON, cols=cols, where=where)
        got = fetch_arrow(con, q, [_spec(keys, all_int), *params])
    if all_int and not _strictly_sorted(got):
        got = got.take(pc.sort_indices(got, sort_keys=_SORT_KEYS))
    return got.filter(_first_of_each(got))


def _strictly_sorted(got: pa.Table) -> bool:
    """Whether the rows are in (run_id, trial_id) order with no trial twice (BIGINT ids)."""
    if got.num_rows < 2:
        return True
    run, tid = got["run_id"], got["tkey"]
    up = pc.or_(
        pc.greater(run[1:], run[:-1]),
        pc.and_(pc.equal(run[1:], run[:-1]), pc.greater(tid[1:], tid[:-1])),
    )
    return bool(pc.all(pc.fill_null(up, False)).as_py())


def _same(a: Any, b: Any) -> Any:
    """a == b per row, two nulls equal."""
    eq = pc.fill_null(pc.equal(a, b), False)
    return pc.or_(eq, pc.and_(pc.is_null(a), pc.is_null(b)))


def _first_of_each(got: pa.Table) -> Any:
    """True for the first row of each (run_id, trial_id) run of rows."""
    n = got.num_rows
    if n < 2:
        return pa.array([True] * n, pa.bool_())
    run, tid = got["run_id"], got["tkey"]
    dup = pc.and_(_same(run[1:], run[:-1]), _same(tid[1:], tid[:-1]))
    return pa.concat_arrays([pa.array([True]), pc.invert(dup.combine_chunks())])


def _ordered(got: pa.Table) -> Keys:
    """The keys of the rows kept, params first, each object's keys in first-seen order (rows in
    result order, keys in object order), with the letters of the rows kept only."""
    latest: Keys = {}
    for text in pc.unique(got["shape"]).to_pylist():
        for e in json.loads(text):
            if e[0] != "t":
                latest.setdefault((_OBJECTS[e[0]], e[2:]), set()).add(e[1])
    return {k: latest[k] for obj in ("params", "metrics") for k in latest if k[0] == obj}


def _shapes(con: Any, where: str, params: list[Any]) -> tuple[list[Any], bool] | None:
    """(the selection's distinct shapes, whether every row has its typed values); None for an
    index of format < 5 (no shapes)."""
    try:
        rows = con.execute(_SHAPES_VALUES.format(where=where), params).fetchall()
        return [s for s, _ in rows], all(v for _, v in rows)
    except duckdb.BinderException:  # format 5: shapes, no typed values
        pass
    try:
        got = con.execute(_SHAPES.format(where=where), params).fetchall()
        return [s for (s,) in got], False
    except duckdb.BinderException:  # format < 5: no shape column yet
        return None


def typed_trials(reader: Any, where: str, params: list[Any]) -> pa.Table | None:
    """`trials_table` from the stored shapes, or None when `ledgerx.flatten` must do it. Every
    query runs on one cursor, so on one published file: the shapes the first query finds are
    those of the rows the next ones read (a publish in between would change them)."""
    return _typed(reader._cursor(), where, params)  # not closed: a dual reader's is its own


def _typed(con: Any, where: str, params: list[Any]) -> pa.Table | None:
    if con.execute(_OWN_VIEW).fetchall()[0][0]:
        return None
    got_shapes = _shapes(con, where, params)
    if got_shapes is None:
        return None
    shapes, valued = got_shapes
    if None in shapes:
        return None
    parsed = _parse(shapes)
    if parsed is None:
        return None
    keys, all_int = parsed
    with_values = shapes if valued else []
    got = _run(con, where, params, keys, all_int, with_values)
    cols = _ordered(got)
    if any(_kind(cols[k]) != _kind(keys[k]) for k in cols):
        # A record superseded by a retry changed a key's type: type by the kept rows alone.
        keys = cols
        got = _run(con, where, params, keys, all_int, with_values)
    index = {k: i for i, k in enumerate(keys)}
    return _assemble(got, cols, index)


def _assemble(got: pa.Table, cols: Keys, index: dict[tuple[str, str], int]) -> pa.Table:
    n = got.num_rows
    if n and pc.all(got["is_int"]).as_py():
        tid: Any = got["tid_int"].cast(pa.int64())
    else:
        tid = got["tid"].cast(pa.string())
    arrays: list[Any] = [got["run_id"].cast(pa.string()), tid, got["ts"].cast(_TS)]
    names = ["run_id", "trial_id", "ts"]
    for key, letters in cols.items():
        kind = _kind(letters)
        col = got[f"c{index[key]}"]
        arrays.append(redump(col) if kind == "json" else col.cast(_ARROW[kind]))
        names.append(f"{key[0]}.{key[1]}")
    return pa.table(arrays, names=names)

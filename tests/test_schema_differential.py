"""Differential test (docs/schema.md): on generated (schema, document) pairs within the supported
subset, the Rust validator's verdict equals the `jsonschema` package's, every time.

The oracle is `Draft202012Validator(schema, format_checker=FormatChecker())` (date-time asserted
through rfc3339-validator, as docs/schema.md says). Every Rust entry point is checked: Python
objects (`is_valid`), JSON text (`is_valid_json`) and `Writer.emit` (serialized data against the
registry loaded from `_schema.json`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerx import SchemaError, _core

I64_MIN, I64_MAX = -(2**63), 2**63 - 1

# -- values ------------------------------------------------------------------------------------

EDGE_NUMBERS: list[Any] = [
    0,
    1,
    -1,
    2,
    3,
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1.5,
    2.0,
    2.5,
    3.0,
    1e-300,
    5e-324,
    1e300,
    2**31,
    2**53,
    2**53 + 1,
    float(2**53),
    float(2**53 + 2),
    2**63 - 1,
    -(2**63),
    float(2**63),
    -float(2**63),
    9007199254740993,
    0.1,
    0.2,
    0.30000000000000004,
    1e16,
    1e22,
    1e23,
    123.456,
    3.9303146784428416e-13,
    2.2250738585072014e-308,
    1.7976931348623157e308,
]
numbers = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(-1000, 1000),
    st.integers(I64_MIN, I64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1000, 1000, allow_nan=False).map(lambda f: float(round(f))),  # integral floats
)

# Strings: code points, not UTF-16 units or bytes, are what minLength/maxLength count.
ALPHABET = st.characters(blacklist_categories=("Cs",))  # no lone surrogates (not I-JSON)
EDGE_STRINGS = [
    "",
    "a",
    "ab",
    "abc",
    "é",
    "ééé",
    "😀",
    "😀😀",
    "a😀",
    "\u0000",
    "日本語",
    "1",
    "true",
]


@st.composite
def date_times(draw: st.DrawFn) -> str:
    """RFC 3339 date-times, valid and near-valid (the edges the validators must agree on)."""

    def pick(good: list[Any], bad: list[Any]) -> Any:
        # mostly valid parts, so that about half of the strings are valid date-times
        return (
            draw(st.sampled_from(bad))
            if draw(st.integers(0, 9)) == 0
            else draw(st.sampled_from(good))
        )

    year = pick([1, 1900, 1970, 2000, 2023, 2024, 2100, 9999], [0])
    month = pick(list(range(1, 13)), [0, 13])
    day = pick([1, 9, 28, 29, 30, 31], [0, 32])
    hh = pick([0, 9, 23], [24])
    mm = pick([0, 59], [60])
    ss = pick([0, 30, 59], [60])
    frac = pick(["", "", ".0", ".123456", ".1234567890123"], ["."])
    tz = pick(["Z", "z", "+00:00", "-05:30", "+23:59"], ["+24:00", "+05:60", "+0530", "", "+5:30"])
    sep = pick(["T", "t"], [" ", "_"])
    s = f"{year:04d}-{month:02d}-{day:02d}{sep}{hh:02d}:{mm:02d}:{ss:02d}{frac}{tz}"
    mutate = draw(st.integers(0, 15))
    if mutate == 1:
        s += "\n"  # Python's `$` tolerates one trailing newline
    elif mutate == 2:
        s += draw(st.sampled_from(["\n\n", " ", "x", "\r\n"]))
    elif mutate == 3:
        s = " " + s
    elif mutate == 4 and len(s) > 5:
        i = draw(st.integers(0, len(s) - 1))
        s = s[:i] + draw(st.sampled_from(["٣", "３", "ı", "ſ", "0", ":", "-"])) + s[i + 1 :]
    elif mutate == 5:
        s = s.lower()
    return s


strings = st.one_of(
    st.sampled_from(EDGE_STRINGS),
    st.text(ALPHABET, max_size=6),
    date_times(),
)
KEYS = ["a", "b", "c", "é", "", "__proto__", "1"]
keys = st.one_of(st.sampled_from(KEYS), st.text(ALPHABET, max_size=3))
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(keys, inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


# -- schemas within the subset ---------------------------------------------------------------

TYPES = ["null", "boolean", "object", "array", "number", "string", "integer"]
annotations = st.fixed_dictionaries(
    {},
    optional={
        "title": st.text(max_size=5),
        "description": st.text(max_size=5),
        "$comment": st.text(max_size=5),
        "default": json_values(3),
        "examples": st.lists(json_values(2), max_size=2),
        "$schema": st.just("https://json-schema.org/draft/2020-12/schema"),
    },
)
counts = st.one_of(st.integers(0, 4), st.sampled_from([0.0, 1.0, 2.0]))
enum_members = st.one_of(
    st.sampled_from([1, 1.0, True, False, 0, 0.0, None, "1", "", [1], [True], [1.0], {"a": 1}]),
    json_values(4),
)


def node(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(
                st.sampled_from(TYPES), st.lists(st.sampled_from(TYPES), min_size=1, max_size=3)
            ),
            "properties": st.dictionaries(st.sampled_from(KEYS), children, max_size=3),
            "required": st.lists(st.sampled_from(KEYS), max_size=3, unique=True),
            "additionalProperties": children,
            "items": children,
            "enum": st.lists(enum_members, max_size=4),
            "minimum": numbers,
            "maximum": numbers,
            "minLength": counts,
            "maxLength": counts,
            "format": st.just("date-time"),
        },
    ).flatmap(lambda d: annotations.map(lambda a: {**a, **d}))


schemas = st.recursive(st.booleans() | node(st.booleans()), node, max_leaves=6)


def constants(schema: Any) -> list[Any]:
    """Values a schema mentions (enum members, bounds, property names): documents built from
    them hit the boundaries where validators tend to differ."""
    out: list[Any] = []
    if isinstance(schema, dict):
        out += schema.get("enum", [])
        for k in ("minimum", "maximum"):
            if k in schema:
                x = schema[k]
                out += [x, x + 1, x - 1] if isinstance(x, int) else [x, math.nextafter(x, math.inf)]
                if isinstance(x, float) and x.is_integer() and abs(x) < 2**63:
                    out.append(int(x))
        for sub in schema.get("properties", {}).values():
            out += [{k: c} for k in schema["properties"] for c in constants(sub)[:3]]
        for k in ("items", "additionalProperties"):
            if k in schema:
                sub_consts = constants(schema[k])[:3]
                out += [sub_consts] if k == "items" else [{"zz": c} for c in sub_consts]
    return out


def in_i64(v: Any) -> bool:
    """JSON-representable for ledgerx: ints within int64, finite floats."""
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return True
    if isinstance(v, int):
        return I64_MIN <= v <= I64_MAX
    if isinstance(v, list):
        return all(in_i64(x) for x in v)
    return all(in_i64(x) for x in v.values())


def oracle(schema: Any) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


class EmitPath:
    """The writer's path: `Writer.emit` validates the serialized `data` (a token tape) against
    schemas the Rust registry loaded from `_schema.json`. The schema is wrapped as
    `{"v": SCHEMA}` because event data is always an object."""

    def __init__(self, root: Path) -> None:
        (root / "events").mkdir(parents=True, exist_ok=True)
        self.path = root / "events" / "_schema.json"
        self.writer = _core.Writer(str(root), durability="os")

    def use(self, schema: Any) -> None:
        wrapped = {"type": "object", "properties": {"v": schema}, "required": ["v"]}
        doc = {"ledgerx_registry": 1, "types": {"diff.case": {"1": wrapped}}}
        self.path.write_text(json.dumps(doc, allow_nan=False))
        self.writer.reload_schemas()

    def is_valid(self, doc: Any) -> bool:
        try:
            self.writer.emit("diff.case", {"v": doc})
        except SchemaError as e:
            assert str(e).startswith("diff.case v1: data"), str(e)
            return False
        return True


@pytest.fixture(scope="module")
def emit_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmitPath]:
    e = EmitPath(tmp_path_factory.mktemp("differential") / "ledger")
    yield e
    e.writer.close()


def check_agree(
    schema: Any,
    doc: Any,
    validator: _core.SchemaValidator | None = None,
    emit: EmitPath | None = None,
) -> None:
    """Every Rust entry point gives jsonschema's verdict. `emit`, when given, must already
    hold `schema` (EmitPath.use)."""
    text = json.dumps(schema, allow_nan=False)
    v = validator or _core.SchemaValidator(text)
    want = oracle(schema).is_valid(doc)
    where = f"schema={text} doc={json.dumps(doc)!s}"
    assert v.is_valid(doc) is want, f"Python-object verdict differs from jsonschema: {where}"
    for ensure_ascii in (True, False):
        doc_text = json.dumps(doc, ensure_ascii=ensure_ascii).encode()
        assert v.is_valid_json(doc_text) is want, f"JSON-text verdict differs: {where}"
    if emit is not None:
        assert emit.is_valid(doc) is want, f"emit() verdict differs from jsonschema: {where}"


# `make test` runs EXAMPLES per test; `make soak` many more (LEDGERX_SCHEMA_EXAMPLES).
EXAMPLES = int(os.environ.get("LEDGERX_SCHEMA_EXAMPLES", "350"))


@pytest.mark.heavy
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(schema=schemas, docs=st.lists(json_values(), min_size=1, max_size=4))
def test_rust_agrees_with_jsonschema(emit_path: EmitPath, schema: Any, docs: list[Any]) -> None:
    v = _core.SchemaValidator(json.dumps(schema, allow_nan=False))
    emit_path.use(schema)
    for doc in docs + [c for c in constants(schema) if in_i64(c)][:8]:
        check_agree(schema, doc, v, emit_path)
        # Same shape, other leaves (an emit of a remembered shape may skip the schema walk:
        # docs/schema.md, "Validation by shape"); each must still get jsonschema's verdict.
        for sibling in same_shape(doc):
            check_agree(schema, sibling, v, emit_path)


def same_shape(doc: Any) -> list[Any]:
    """Documents with `doc`'s structure and keys whose leaves differ: integers moved, an
    integral float made fractional and back, booleans flipped, strings changed."""

    def alter(x: Any, k: int) -> Any:
        if isinstance(x, dict):
            return {key: alter(val, k) for key, val in x.items()}
        if isinstance(x, list):
            return [alter(val, k) for val in x]
        if isinstance(x, bool):
            return not x
        if isinstance(x, int):
            return x + (1 if k else -7)
        if isinstance(x, float):
            return x + 0.5 if k else float(int(x)) if abs(x) < 1e15 else x
        if isinstance(x, str):
            return x + "z" if k else ""
        return x

    return [y for y in (alter(doc, 0), alter(doc, 1)) if in_i64(y)]


@pytest.mark.heavy
@settings(max_examples=EXAMPLES, deadline=None, database=None)
@given(schema=node(st.booleans()), doc=scalars)
def test_rust_agrees_with_jsonschema_on_scalars(schema: dict[str, Any], doc: Any) -> None:
    """Flat schemas against single values: many more boundary hits per second."""
    check_agree(schema, doc)
    for c in constants(schema)[:4]:
        if in_i64(c):
            check_agree(schema, c)


# -- regressions and edges, always run -----------------------------------------------------------

REGRESSIONS: list[tuple[Any, Any]] = [
    # Float literals in a schema must parse to the same double Python has (serde_json's default
    # float parser is off by an ulp for ~10% of 17-digit literals: needs `float_roundtrip`).
    ({"minimum": 3.9303146784428416e-13}, 3.9303146784428416e-13),
    ({"maximum": 3.9303146784428416e-13}, 3.9303146784428416e-13),
    ({"enum": [3.9303146784428416e-13]}, 3.9303146784428416e-13),
    ({"enum": [0.30000000000000004]}, 0.30000000000000004),
    ({"minimum": 2.2250738585072014e-308}, 2.2250738585072014e-308),
    ({"maximum": 1.7976931348623157e308}, 1.7976931348623157e308),
    ({"enum": [1]}, 1.0),
    ({"enum": [1]}, True),
    ({"enum": [1.0]}, 1),
    ({"enum": [True]}, 1),
    ({"enum": [False]}, 0),
    ({"enum": [0]}, -0.0),
    ({"enum": [[1]]}, [True]),
    ({"enum": [{"a": 1}]}, {"a": 1.0}),
    ({"enum": [{"a": 1}]}, {"a": 1, "b": 2}),
    ({"type": "integer"}, 1.0),
    ({"type": "integer"}, 1e300),
    ({"type": "integer"}, -0.0),
    ({"type": "integer"}, True),
    ({"type": "number"}, False),
    ({"minimum": 9007199254740993}, 9007199254740992.0),
    ({"maximum": 9007199254740992.0}, 9007199254740993),
    ({"minimum": -(2**63)}, -float(2**63)),
    ({"maximum": 2**63 - 1}, float(2**63)),
    ({"maxLength": 1}, "😀"),
    ({"minLength": 2}, "😀"),
    ({"maxLength": 2.0}, "éé"),
    ({"minimum": 5}, "a string is not a number"),
    ({"format": "date-time"}, "2024-02-29T00:00:00Z"),
    ({"format": "date-time"}, "2023-02-29T00:00:00Z"),
    ({"format": "date-time"}, "0000-01-01T00:00:00Z"),
    ({"format": "date-time"}, "2024-01-01T23:59:60Z"),
    ({"format": "date-time"}, "2024-01-01T00:00:00Z\n"),
    ({"format": "date-time"}, "2024-01-01T00:00:00Z\n\n"),
    ({"format": "date-time"}, "2024-01-01t00:00:00z"),
    ({"format": "date-time"}, "2024-01-01T00:00:00.Z"),
    ({"format": "date-time"}, "2024-01-01T00:00:00+23:59"),
    ({"format": "date-time"}, "2024-01-01T00:00:00+24:00"),
    ({"format": "date-time"}, "2024-01-01 00:00:00Z"),
    ({"format": "date-time"}, "2024-01-0١T00:00:00Z"),
    ({"format": "date-time"}, 20240101),
    (True, {"anything": [1, None]}),
    (False, None),
    ({"properties": {"a": False}}, {"a": None}),
    ({"properties": {"a": False}}, {"b": None}),
    ({"additionalProperties": False, "properties": {"a": True}}, {"a": 1, "b": 2}),
    ({"items": False}, []),
    ({"items": False}, [None]),
    ({"required": ["__proto__"]}, {"__proto__": 1}),
    ({"required": ["a"]}, ["a"]),
]


@pytest.mark.parametrize(("schema", "doc"), REGRESSIONS, ids=[repr(r)[:60] for r in REGRESSIONS])
def test_regressions(emit_path: EmitPath, schema: Any, doc: Any) -> None:
    emit_path.use(schema)
    check_agree(schema, doc, emit=emit_path)


def test_float_literals_parse_exactly() -> None:
    """Every double written in a schema compares equal to itself as a document. Deterministic:
    2000 doubles spread over the exponent range."""
    import random

    rnd = random.Random(4)
    xs = [rnd.uniform(-1, 1) * 10.0 ** rnd.randint(-300, 300) for _ in range(2000)]
    bad = [x for x in xs if not _core.SchemaValidator(json.dumps({"enum": [x]})).is_valid(x)]
    assert not bad, f"{len(bad)} of {len(xs)} float literals misparsed, e.g. {bad[:3]}"

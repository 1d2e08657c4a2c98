"""Validation by shape (docs/schema.md): for a schema with no rule that looks into leaf values, a
writer accepts `data` of the last accepted shape without walking the schema. Oracles: the
written JSON text's own shape (the tokenizer's), and the verdicts the `jsonschema` package gives
for the sequences below, which alternate one shape's accepted and refused leaves."""

from __future__ import annotations

import decimal
import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from test_writer_tape import values

from ledgerx import SchemaError, _core

SCHEMA = {
    "type": "object",
    "required": ["a"],
    "properties": {
        "a": {"type": "integer"},
        "b": {"type": "integer"},
        "l": {"type": "array", "items": {"type": "array"}},
    },
    "additionalProperties": {"type": "string"},
}

# Each pair shares a shape with its neighbour up to what the shape tells apart; the verdict
# changes only where the shape does (a memo that lost that distinction accepts the refused one).
SEQUENCES = [
    # integral floats are integers, fractional ones are not
    [{"a": 1}, {"a": 2.0}, {"a": 3.0}, {"a": 2.5}, {"a": 4.0}],
    # the key decides which rule applies: `b` must be an integer, extras strings
    [{"a": 1, "c": "s"}, {"a": 1, "b": "s"}, {"a": 1, "c": "t"}],
    # nesting: [[1, 2]] and [1, [2]] have the same leaves in order
    [{"a": 1, "l": [[1, 2]]}, {"a": 1, "l": [1, [2]]}, {"a": 1, "l": [[3, 4]]}],
    # values written by other means (Decimal, numpy) are shaped from their text
    [{"a": decimal.Decimal("2")}, {"a": decimal.Decimal("2.5")}, {"a": np.int64(7)}],
    [{"a": decimal.Decimal("2.50E+1")}, {"a": decimal.Decimal("2.51E+1")}],
    [{"a": np.float64(3.0)}, {"a": np.float64(3.5)}, {"a": 5}],
    # a missing required key and booleans
    [{"a": 1, "c": "x"}, {"c": "x"}, {"a": True}],
]


def oracle(doc: dict[str, Any]) -> bool:
    plain = json.loads(_core.to_json(doc))
    return jsonschema.Draft202012Validator(SCHEMA).is_valid(plain)


def registry(root: Path, schema: dict[str, Any]) -> None:
    events = root / "events"
    events.mkdir(parents=True, exist_ok=True)
    doc = {"ledgerx_registry": 1, "types": {"shape.case": {"1": schema}}}
    (events / "_schema.json").write_text(json.dumps(doc))


def accepted(w: Any, doc: dict[str, Any]) -> bool:
    try:
        w.emit("shape.case", doc)
    except SchemaError:
        return False
    return True


@pytest.mark.parametrize("seq", SEQUENCES, ids=range(len(SEQUENCES)))
@pytest.mark.parametrize("durability", ["group", "os"])
def test_verdicts_in_sequences_of_one_shape_are_jsonschemas(
    tmp_path: Path, seq: list[dict[str, Any]], durability: str
) -> None:
    registry(tmp_path, SCHEMA)
    w = _core.Writer(str(tmp_path), durability=durability)
    try:
        for _ in range(2):  # a second pass meets every shape remembered
            for doc in seq:
                assert accepted(w, doc) is oracle(doc), doc
    finally:
        w.close()


def test_a_new_registry_forgets_the_remembered_shape(tmp_path: Path) -> None:
    registry(tmp_path, SCHEMA)
    w = _core.Writer(str(tmp_path), durability="os")
    try:
        assert accepted(w, {"a": 1, "c": "s"})
        registry(tmp_path, {**SCHEMA, "additionalProperties": False})
        w.reload_schemas()
        assert not accepted(w, {"a": 1, "c": "s"})
    finally:
        w.close()


@settings(max_examples=400, deadline=None)
@given(values)
def test_the_shape_recorded_while_serializing_is_the_texts(v: Any) -> None:
    assert _core._shape_matches_parse({"v": v})
    assert _core._shape_matches_parse({"v": v, "n": [float("nan"), 2.0]}, nonfinite_null=True)

"""The official JSON Schema Test Suite (draft 2020-12) for the keywords of docs/schema.md.

The suite's files are vendored under tests/conformance/ (MIT, see its LICENSE and README.md).
For every test group: if its schema uses only supported
keywords and annotations, compiling and registering it must succeed and every test's `valid`
verdict must match; otherwise compiling and registering must be refused with an error naming one
of the unsupported keywords it uses. Registration wraps the schema as the README says, since
event `data` is always an object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledgerx import _core
from ledgerx.errors import SchemaError
from ledgerx.schema import SchemaRegistry

SUITE = Path(__file__).resolve().parent / "conformance" / "json-schema-test-suite" / "draft2020-12"
KNOWN = set(_core.SUPPORTED_KEYWORDS) | set(_core.ANNOTATIONS)


def _groups() -> list[tuple[str, int, dict[str, Any]]]:
    if not SUITE.is_dir():
        raise RuntimeError(f"conformance suite not found at {SUITE} (vendored in the repository)")
    out = []
    for f in sorted(SUITE.glob("*.json")):
        for i, group in enumerate(json.loads(f.read_text(encoding="utf-8"))):
            out.append((f.name, i, group))
    return out


GROUPS = _groups()


def unsupported_keywords(schema: Any) -> set[str]:
    """Keywords outside the subset anywhere the subset looks for subschemas."""
    found: set[str] = set()
    if not isinstance(schema, dict):
        return found
    for k, v in schema.items():
        if k not in KNOWN:
            found.add(k)
        elif k == "properties" and isinstance(v, dict):
            for sub in v.values():
                found |= unsupported_keywords(sub)
        elif k in ("items", "additionalProperties"):
            found |= unsupported_keywords(v)
    return found


def wrap(schema: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"v": schema}, "required": ["v"]}


def test_the_suite_is_all_there() -> None:
    supported = [g for _, _, g in GROUPS if not unsupported_keywords(g["schema"])]
    assert len(GROUPS) == 64
    assert len(supported) == 53
    assert sum(len(g["tests"]) for g in supported) == 221


@pytest.mark.parametrize("group", [g for _, _, g in GROUPS], ids=[f"{f}#{i}" for f, i, _ in GROUPS])
def test_group(group: dict[str, Any], tmp_path: Path) -> None:
    schema = group["schema"]
    reg = SchemaRegistry(tmp_path / "events")
    bad = unsupported_keywords(schema)
    if bad:
        with pytest.raises(SchemaError) as ei:
            _core.SchemaValidator(json.dumps(schema))
        assert any(f"unsupported keyword '{k}'" in str(ei.value) for k in bad), str(ei.value)
        with pytest.raises(SchemaError) as ei:
            reg.register("conformance.group", wrap(schema))
        assert any(f"unsupported keyword '{k}'" in str(ei.value) for k in bad), str(ei.value)
        assert "conformance.group" not in reg.list()
        return

    validator = _core.SchemaValidator(json.dumps(schema))
    assert reg.register("conformance.group", wrap(schema)) == 1
    for t in group["tests"]:
        doc, want = t["data"], t["valid"]
        label = f"{group['description']} / {t['description']}"
        assert validator.is_valid(doc) is want, label
        assert validator.is_valid_json(json.dumps(doc).encode()) is want, label
        try:
            reg.validate("conformance.group", {"v": doc})
            got = True
        except SchemaError:
            got = False
        assert got is want, label

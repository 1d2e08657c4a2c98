"""emit() remembers the JSON text of recent dict keys by key object (src/py/keys.rs). Oracle: the
`data` read back from the written lines with the standard json module equals what was emitted,
while key objects are made and freed all the time (a freed key's address is soon another key's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledgerx import _core


class Key(str):
    """A str subclass: written each time, never remembered."""


def written(root: Path) -> list[Any]:
    lines = []
    for p in sorted((root / "events").glob("day=*/part-*.jsonl")):
        lines += p.read_bytes().rstrip(b"\0").splitlines()
    return [json.loads(x)["data"] for x in lines]


# Validated by shape (no leaf rules), and through the token tape (a leaf rule).
SCHEMAS = [{"type": "object"}, {"type": "object", "additionalProperties": {"minimum": -1}}]


@pytest.mark.parametrize("schema", SCHEMAS, ids=["shape", "tape"])
def test_keys_read_back_as_emitted_while_key_objects_come_and_go(
    tmp_path: Path, schema: dict[str, Any]
) -> None:
    events = tmp_path / "events"
    events.mkdir()
    reg = {"ledgerx_registry": 1, "types": {"keys.case": {"1": schema}}}
    (events / "_schema.json").write_text(json.dumps(reg))
    w = _core.Writer(str(tmp_path), durability="os")
    sent = []
    for i in range(4000):
        # New key objects every time (built at run time, not interned): escaped, non-ASCII,
        # longer than what is remembered, and a str subclass.
        d = {
            f"k{i % 97}": i,
            f'q{i % 13}"\\\n' if i % 3 else f"é{i % 11}": i,
            "x" * (30 + i % 20) + str(i % 7): i,
            Key(f"s{i % 5}"): i,
            "fixed": i,
        }
        w.emit("keys.case", d)
        sent.append(json.loads(json.dumps(d)))  # new objects: the keys die with `d`
        del d
    w.close()
    assert written(tmp_path) == sent

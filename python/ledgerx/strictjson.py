"""JSON parsing as the log requires it (I-JSON): duplicate keys and NaN/Infinity are errors."""

from __future__ import annotations

import json
from typing import Any


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes) -> Any:
    """`json.loads`, refusing duplicate keys and NaN/Infinity with a ValueError."""
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)

"""JSON parsing as the log requires it (I-JSON): a thin call into the Rust core, which owns the
rules (duplicate keys, NaN/Infinity, lone surrogates, nesting depth) for every line it scans."""

from __future__ import annotations

import json
from typing import Any

from ledgerx import _core


def loads(text: str | bytes) -> Any:
    """`json.loads` of a text the core's I-JSON check accepts; else a ValueError naming the
    rule and the column (`not valid JSON: duplicate key "a" at column 9`)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    why = _core.check_json(raw)
    if why is not None:
        raise ValueError(f"not valid JSON: {why}")
    return json.loads(raw)

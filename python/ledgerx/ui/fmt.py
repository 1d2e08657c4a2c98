"""Small formatting helpers for the templates (Jinja2 filters and the `link` global)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode


def duration(ms: Any) -> str:
    if ms is None:
        return ""
    ms = float(ms)
    if ms < 1000:
        return f"{ms:.3g} ms"
    s = ms / 1000
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def number(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v).lower()
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int):
        return str(v)
    return str(v)


def size(n: Any) -> str:
    if n is None:
        return ""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def when(iso: Any) -> str:
    """An ISO timestamp shortened to 'YYYY-MM-DD HH:MM:SS'."""
    if not iso:
        return ""
    s = str(iso).replace("T", " ")
    return s[:19]


def pretty(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str, sort_keys=False)


def compact(obj: Any) -> str:
    if isinstance(obj, dict):
        return ", ".join(f"{k}={compact(v)}" for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(compact(v) for v in obj) + "]"
    return number(obj)


def link(base: str, params: dict[str, Any], **changes: Any) -> str:
    """`base?params` with `changes` applied (None or '' removes a key)."""
    merged = {**params, **changes}
    q = urlencode({k: v for k, v in merged.items() if v not in (None, "")})
    return f"{base}?{q}" if q else base


def pathq(s: Any, safe: str = "") -> str:
    """Percent-encode a path segment (or a path, with safe='/')."""
    return quote(str(s), safe=safe)


FILTERS = {
    "pathq": pathq,
    "duration": duration,
    "number": number,
    "size": size,
    "when": when,
    "pretty": pretty,
    "compact": compact,
}

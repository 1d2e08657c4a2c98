"""Terminal output for the read commands: rich tables that fit the terminal (cells wrap, never
cut) and, in a pipe, plain aligned columns at full width; readable durations and times in
tables, raw values in `--json` / csv; JSON columns parsed once so `--json` never nests JSON
text inside JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from ledgerx.cli.term import printable

PIPE_WIDTH = 1 << 20
"""Console width in a pipe: wide enough that no cell is ever wrapped or cut."""


def _print(renderable: Any) -> None:
    """On a terminal: at the terminal's width (cells wrap). In a pipe: at full width, no
    colour, trailing blanks stripped."""
    import io

    from rich.console import Console

    if sys.stdout.isatty():
        Console(highlight=False).print(renderable)
        return
    buf = io.StringIO()
    Console(file=buf, width=PIPE_WIDTH, no_color=True, highlight=False).print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines()))


def duration(ms: float | None) -> str:
    """1234.5 -> '1.2 s'; 125000 -> '2 min 5 s'; 7500000 -> '2 h 5 min'."""
    if ms is None:
        return ""
    s = ms / 1000.0
    if s < 1:
        return f"{ms:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def cell(v: Any, column: str = "") -> str:
    """How a value reads in a table cell; control characters escaped (ledgerx.cli.term)."""
    return printable(_cell(v, column))


def _cell(v: Any, column: str) -> str:
    if v is None:
        return ""
    if column.endswith("duration_ms") and isinstance(v, (int, float)):
        return duration(float(v))
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="seconds")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return " ".join(str(v).split())


def table(cols: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False
    )
    for c in cols:
        t.add_column(c.removesuffix("_ms") if c.endswith("duration_ms") else c, overflow="fold")
    for r in rows:  # Text, not markup: "[red]" in run data is shown, not applied
        t.add_row(*(Text(cell(v, c)) for c, v in zip(cols, r, strict=True)))
    _print(t)


def kv(pairs: Sequence[tuple[str, Any]]) -> None:
    """`key  value` lines (values never cut)."""
    width = max((len(printable(k)) for k, _ in pairs), default=0) + 2
    for k, v in pairs:
        if v is None:
            continue
        print(f"{printable(k):<{width}}{cell(v, k)}")


def json_value(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


def rel_rows(rel: Any) -> tuple[list[str], list[tuple[Any, ...]], set[str]]:
    """Columns, rows and the names of JSON-typed columns of a DuckDB relation."""
    cols = list(rel.columns)
    json_cols = {c for c, t in zip(cols, rel.types, strict=True) if str(t) == "JSON"}
    return cols, rel.fetchall(), json_cols


def as_json_rows(
    cols: Sequence[str],
    rows: Sequence[Sequence[Any]],
    json_cols: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = {}
        for c, v in zip(cols, r, strict=True):
            if c in json_cols and isinstance(v, str):
                v = json.loads(v)
            d[c] = json_value(v)
        out.append(d)
    return out


def parse_json_cols(
    cols: Sequence[str], rows: Sequence[Sequence[Any]], json_cols: set[str]
) -> list[tuple[Any, ...]]:
    """Rows with the JSON text of `json_cols` parsed (for tables: one compact rendering)."""
    idx = [i for i, c in enumerate(cols) if c in json_cols]
    out = []
    for r in rows:
        lst = list(r)
        for i in idx:
            if isinstance(lst[i], str):
                lst[i] = json.loads(lst[i])
        out.append(tuple(lst))
    return out

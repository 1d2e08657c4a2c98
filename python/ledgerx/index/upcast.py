"""The upcast hook: events below their type's newest schema version get upcast `data` at index
time. `events.data` keeps the raw bytes of the log; the upcast form goes to `events.data_upcast`
(NULL for rows already at the newest version) and every derived table reads
`coalesce(data_upcast, data)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ledgerx._lazy import LazyModule

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
else:  # a small round upcasts in SQL (`upcast_rows`) and never needs pyarrow
    pa = LazyModule("pyarrow")


class Upcaster(Protocol):
    """What the indexer needs from the schema registry (`ledgerx.schema.SchemaRegistry`)."""

    def newest_versions(self) -> dict[str, int]: ...

    def upcast_json(self, event_type: str, version: int, data_json: str) -> tuple[str, int]: ...


def default_upcaster(events_dir: Path) -> Upcaster | None:
    """The root's schema registry."""
    from ledgerx.schema import SchemaRegistry

    return SchemaRegistry(events_dir)


def add_upcast_columns(
    batch: pa.RecordBatch, upcaster: Upcaster | None, newest: dict[str, int], errors: list[str]
) -> pa.RecordBatch:
    """Append `data_upcast` (JSON text or null) and `upcast_version` to a scanned batch. Only
    rows whose schema_version is below their type's newest version reach Python."""
    n = batch.num_rows
    up = pa.nulls(n, pa.string())
    upv = pa.nulls(n, pa.int32())
    old = {t: v for t, v in newest.items() if v > 1}
    if upcaster is not None and old and n:
        import pyarrow.compute as pc  # here: its import costs a small round in a fresh process

        et, sv = batch.column("event_type"), batch.column("schema_version")
        mask = None
        for t, v in old.items():
            m = pc.and_(pc.equal(et, t), pc.less(sv, v))
            mask = m if mask is None else pc.or_(mask, m)
        assert mask is not None
        if pc.any(mask).as_py():
            idx = pc.indices_nonzero(mask).to_pylist()
            texts: list[Any] = [None] * n
            versions: list[Any] = [None] * n
            data, ids = batch.column("data"), batch.column("event_id")
            for i in idx:
                t, v = et[i].as_py(), sv[i].as_py()
                try:
                    texts[i], versions[i] = upcaster.upcast_json(t, v, data[i].as_py())
                except Exception as e:  # indexed as written; reported, never fatal
                    errors.append(f"{ids[i].as_py()}: {t} v{v}: upcast failed: {e}")
            up, upv = pa.array(texts, pa.string()), pa.array(versions, pa.int32())
    return pa.RecordBatch.from_arrays(
        [*batch.columns, up, upv], names=[*batch.schema.names, "data_upcast", "upcast_version"]
    )


def upcast_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    upcaster: Upcaster | None,
    newest: dict[str, int],
    errors: list[str],
) -> list[tuple[int, str, int]]:
    """`add_upcast_columns` for rows DuckDB can read as `table` (a scanned batch): (offset,
    upcast JSON text, version) of each row below its type's newest version that upcast; a
    failure is reported in `errors` and the row keeps its data as written."""
    old = [(t, v) for t, v in newest.items() if v > 1]
    if upcaster is None or not old:
        return []
    cond = " OR ".join("(event_type = ? AND schema_version < ?)" for _ in old)
    rows = con.execute(
        f'SELECT "offset", event_type, schema_version, data, event_id FROM {table} WHERE {cond}'
        ' ORDER BY "offset"',
        [x for tv in old for x in tv],
    ).fetchall()
    out: list[tuple[int, str, int]] = []
    for off, t, v, data, eid in rows:
        try:
            text, ver = upcaster.upcast_json(t, v, data)
        except Exception as e:  # indexed as written; reported, never fatal
            errors.append(f"{eid}: {t} v{v}: upcast failed: {e}")
            continue
        out.append((off, text, ver))
    return out

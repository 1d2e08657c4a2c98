"""What the dashboard reads from the index, and nothing else: fixed SQL with bound parameters
(the browser never sends SQL; sort keys come from a whitelist), on a `Reader` opened with
external access off, so a query can read no file but the published index. The Reader reopens
the index when a newer one was published, so the pages follow the log without a restart.

One DuckDB connection is not safe to use from several threads at once; the server answers
requests on a thread pool, so each query holds `Index.lock` for the short time it runs.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import duckdb

from ledgerx.errors import LedgerError
from ledgerx.reader import Reader, _file_id

STATUSES = ["created", "running", "completed", "failed", "abandoned"]
# Sort keys the runs list accepts, and the SQL each one stands for.
RUN_SORTS = {
    "created": "coalesce(d.created_at, d.first_event_at)",
    "run_id": "d.run_id",
    "status": "s.status",
    "kind": "d.run_kind",
    "duration": "duration_ms",
    "trials": "d.n_trials",
    "last_event": "d.last_event_at",
}
MAX_LIMIT = 5000
# Charts get at most this many points per trace (min/max per bucket past that).
MAX_POINTS = 1500
TRIALS_TABLE_ROWS = 200
CACHE_SIZE = 64


def json_path(key: str) -> str:
    """A JSONPath selecting the top-level member `key` (any characters, quoted)."""
    return "$." + json.dumps(key, ensure_ascii=False)


def plain(v: Any) -> Any:
    """A value as JSON-ready Python: timestamps as ISO strings."""
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def loads(v: str | None) -> Any:
    return None if v is None else json.loads(v)


class Index:
    """Read-only queries over one ledger's index."""

    def __init__(self, root: str | os.PathLike[str] | None, db: str | None = None) -> None:
        self.reader = Reader(root, db=db, external_access=False)
        self.root = self.reader.root
        self.paths = self.reader.paths
        self.lock = threading.Lock()
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def cached(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """`compute()`, remembered for the published index it was computed on: a published
        index never changes (a publish replaces the file), so the key includes its identity.
        Keeps the last CACHE_SIZE results (the trials of a few large runs)."""
        full = (self.version(), *key)
        with self.lock:
            if full in self._cache:
                self._cache.move_to_end(full)
                return self._cache[full]
        value = compute()
        with self.lock:
            self._cache[full] = value
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return value

    def version(self) -> str | None:
        """Identity of the published index file: changes at every publish."""
        fid = _file_id(self.paths.runs)
        return None if fid is None else "-".join(map(str, fid))

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            rel = self.reader.sql(sql, params)
            cols = rel.columns
            return [dict(zip(cols, map(plain, r), strict=True)) for r in rel.fetchall()]

    def warm(self) -> None:
        """Open the index and read the runs once, so the first page does not pay for it (the
        server calls this on a thread at start); nothing when no index is published yet."""
        try:
            self.rows("SELECT count(*) AS n, max(last_event_at) AS t FROM runs_d")
        except (LedgerError, duckdb.Error):
            pass

    def close(self) -> None:
        with self.lock:
            self.reader.close()

    # -- the runs list ---------------------------------------------------------------------------

    def runs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        tag: str | None = None,
        q: str | None = None,
        sort: str = "created",
        desc: bool = True,
        limit: int = 500,
        offset: int = 0,
    ) -> dict[str, Any]:
        """A page of runs and the total that match the filters."""
        where, params = ["true"], []
        if status:
            where.append("s.status = ?")
            params.append(status)
        if kind:
            where.append("d.run_kind = ?")
            params.append(kind)
        if tag:
            key, sep, value = tag.partition("=")
            if sep:
                where.append("json_extract_string(d.tags, ?) = ?")
                params += [json_path(key.strip()), value.strip()]
            else:
                where.append("list_contains(json_keys(coalesce(d.tags, '{}')), ?)")
                params.append(key.strip())
        if q:
            where.append(
                "(contains(lower(d.run_id), ?) OR contains(lower(coalesce(d.run_kind, '')), ?)"
                " OR contains(lower(coalesce(CAST(d.tags AS VARCHAR), '')), ?)"
                " OR contains(lower(coalesce(d.data_fingerprint, '')), ?))"
            )
            params += [q.lower()] * 4
        order = RUN_SORTS.get(sort, RUN_SORTS["created"])
        direction = "DESC" if desc else "ASC"
        cond = " AND ".join(where)
        base = f"FROM runs_d d JOIN runs_status s USING (run_id) WHERE {cond}"
        limit = max(1, min(int(limit), MAX_LIMIT))
        rows = self.rows(
            f"""SELECT d.run_id, d.run_kind, s.status, d.tags, d.created_at,
                       coalesce(d.completed_at, d.failed_at) AS ended_at,
                       (epoch_ms(coalesce(d.completed_at, d.failed_at, d.last_event_at))
                        - epoch_ms(coalesce(d.started_at, d.created_at, d.first_event_at)))
                           AS duration_ms,
                       d.n_trials AS trials, d.summary, d.error, d.last_event_at
                {base} ORDER BY {order} {direction} NULLS LAST, d.run_id {direction}
                LIMIT {limit} OFFSET {max(0, int(offset))}""",
            params,
        )
        total = self.rows(f"SELECT count(*) AS n {base}", params)[0]["n"]
        for r in rows:
            r["tags"] = loads(r["tags"]) or {}
            r["summary"] = loads(r["summary"])
            r["best"] = best_of_summary(r["summary"])
        return {"runs": rows, "total": total, "limit": limit, "offset": offset}

    def run_filters(self) -> dict[str, list[str]]:
        kinds = self.rows(
            "SELECT DISTINCT run_kind AS k FROM runs_d WHERE run_kind IS NOT NULL ORDER BY 1"
        )
        keys = self.rows(
            "SELECT DISTINCT unnest(json_keys(tags)) AS k FROM runs_d"
            " WHERE tags IS NOT NULL AND json_type(tags) = 'OBJECT' ORDER BY 1 LIMIT 200"
        )
        return {"statuses": STATUSES, "kinds": [r["k"] for r in kinds],
                "tag_keys": [r["k"] for r in keys]}  # fmt: skip

    # -- one run ---------------------------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.rows(
            """SELECT d.*, s.status, epoch_us(d.last_event_at) / 1000.0 AS last_event_ms,
                      (epoch_ms(coalesce(d.completed_at, d.failed_at, d.last_event_at))
                       - epoch_ms(coalesce(d.started_at, d.created_at, d.first_event_at)))
                          AS duration_ms
               FROM runs_d d JOIN runs_status s USING (run_id) WHERE run_id = ?""",
            [run_id],
        )
        if not rows:
            return None
        r = rows[0]
        for k in ("config", "tags", "summary", "artifact_paths"):
            r[k] = loads(r[k])
        return r

    def phases(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.rows(
            """SELECT phase, attempt, phase_index, started_at, completed_at, duration_ms,
                      output_summary, epoch_us(started_at) / 1000.0 AS start_ms,
                      epoch_us(completed_at) / 1000.0 AS end_ms
               FROM phase_timings WHERE run_id = ?
               ORDER BY phase_index NULLS LAST, started_at NULLS LAST, phase, attempt""",
            [run_id],
        )
        for r in rows:
            r["output_summary"] = loads(r["output_summary"])
        return rows

    def baselines(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.rows(
            "SELECT baseline, metrics, completed_at FROM baseline_results WHERE run_id = ?"
            " ORDER BY completed_at, event_id",
            [run_id],
        )
        for r in rows:
            r["metrics"] = loads(r["metrics"]) or {}
        return rows

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return self.rows(
            'SELECT name, path, format, bytes, sha256, "rows", created_at'
            " FROM artifacts_catalog WHERE run_id = ? ORDER BY created_at, event_id",
            [run_id],
        )

    def alerts(self, limit: int = 1000, run_id: str | None = None) -> list[dict[str, Any]]:
        cond, params = ("WHERE run_id = ?", [run_id]) if run_id else ("", [])
        try:
            rows = self.rows(
                "SELECT alert_id, source, severity, payload, ts, run_id FROM alerts"
                f" {cond} ORDER BY ts DESC, event_id DESC LIMIT {int(limit)}",
                params,
            )
        except duckdb.CatalogException:  # no alerts.duckdb published yet
            return []
        for r in rows:
            r["payload"] = loads(r["payload"])
        return rows

    def bad_lines(self, limit: int = 200) -> list[dict[str, Any]]:
        return self.rows(
            'SELECT file, "offset", len, reason FROM _bad_lines ORDER BY file, "offset"'
            f" LIMIT {int(limit)}"
        )

    def rebuilds(self, limit: int = 20) -> list[dict[str, Any]]:
        return self.rows(f"SELECT * FROM _index_runs ORDER BY gen DESC LIMIT {int(limit)}")


def best_of_summary(summary: Any) -> tuple[str, float] | None:
    """The number a run's list row shows: the summary's first numeric entry named `best…`,
    else its first numeric entry."""
    if not isinstance(summary, dict):
        return None
    nums = [(k, v) for k, v in summary.items() if _is_number(v)]
    for k, v in nums:
        if k.lower().startswith("best"):
            return (k, v)
    return nums[0] if nums else None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)

"""Dual mode (docs/legacy.md): `ledgerx.legacy.DualReader(root, legacy=FILE, cutover=DATE)`.

A run created before the cutover that the legacy file holds is answered from legacy; every other
run from the index. Alerts split on their own time. The standard views keep their names in the
reader's connection (temp views shadow the index's): `latest_runs`, `run_phase_summary`,
`trial_results`, `baseline_results`, `alerts`, so `Reader.sql()` sees the merged store too;
`ledger.main.<view>` is the index alone and `legacy_<view>` the legacy file alone.
"""

from __future__ import annotations

import os
import weakref
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from ledgerx.errors import ConfigError
from ledgerx.index import schema as S
from ledgerx.index.indexer import DEFAULT_STALE_AFTER_S
from ledgerx.legacy.source import (
    Attached,
    LegacyError,
    attach_legacy,
    create_legacy_views,
    remove_snapshot,
)
from ledgerx.reader import Reader, _file_id

# The index's alerts file may not exist yet: an empty relation of its shape stands in.
EMPTY_ALERTS = """SELECT CAST(NULL AS VARCHAR) AS event_id, CAST(NULL AS VARCHAR) AS alert_id,
    CAST(NULL AS VARCHAR) AS source, CAST(NULL AS VARCHAR) AS severity,
    CAST(NULL AS JSON) AS payload, CAST(NULL AS TIMESTAMPTZ) AS ts,
    CAST(NULL AS VARCHAR) AS run_id WHERE false"""

DUAL_RUN_QUERY = """
SELECT * FROM legacy_run_rows
WHERE run_id = ? AND run_id IN (SELECT run_id FROM legacy_owned)
UNION ALL
SELECT r.*, s.status FROM ledger.main.runs_d r JOIN ledger.main.runs_status s USING (run_id)
WHERE run_id = ? AND run_id NOT IN (SELECT run_id FROM legacy_owned)
"""


def parse_cutover(cutover: str | date | datetime) -> datetime:
    """`2026-01-23`, an ISO datetime, a date or a datetime; naive means UTC."""
    if isinstance(cutover, datetime):
        dt = cutover
    elif isinstance(cutover, date):
        dt = datetime(cutover.year, cutover.month, cutover.day)
    else:
        try:
            dt = datetime.fromisoformat(str(cutover).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"cutover must be a date (YYYY-MM-DD) or ISO datetime, got {cutover!r}"
            ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def cutover_sql(dt: datetime) -> str:
    return f"TIMESTAMPTZ '{dt.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"


def create_dual_views(con: duckdb.DuckDBPyConnection, cutover: datetime, has_alerts: bool) -> None:
    """The merged standard views, over `ledger.main.*` (index) and the legacy_* views."""
    cut = cutover_sql(cutover)
    idx_alerts = "alerts_db.main.alerts" if has_alerts else f"({EMPTY_ALERTS})"
    not_owned = "(run_id IS NULL OR run_id NOT IN (SELECT run_id FROM legacy_owned))"
    con.execute(f"CREATE OR REPLACE TEMP VIEW index_alerts AS SELECT * FROM {idx_alerts}")
    con.execute(f"""CREATE OR REPLACE TEMP VIEW legacy_owned AS
        SELECT run_id FROM legacy_runs_n WHERE created_at < {cut}""")
    con.execute(f"""CREATE OR REPLACE TEMP VIEW latest_runs AS
        SELECT * FROM legacy_latest_runs WHERE run_id IN (SELECT run_id FROM legacy_owned)
        UNION ALL
        SELECT * FROM ledger.main.latest_runs WHERE {not_owned}
        ORDER BY created_at DESC NULLS LAST, run_id DESC""")
    con.execute(f"""CREATE OR REPLACE TEMP VIEW run_phase_summary AS
        SELECT * FROM legacy_run_phase_summary WHERE run_id IN (SELECT run_id FROM legacy_owned)
        UNION ALL
        SELECT * FROM ledger.main.run_phase_summary WHERE {not_owned}
        ORDER BY run_id, phase_index NULLS LAST, started_at, phase""")
    for view in ("trial_results", "baseline_results"):
        con.execute(f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT * FROM legacy_{view} WHERE run_id IN (SELECT run_id FROM legacy_owned)
            UNION ALL
            SELECT * FROM ledger.main.{view} WHERE {not_owned}""")
    con.execute(f"""CREATE OR REPLACE TEMP VIEW alerts AS
        SELECT * FROM legacy_alerts WHERE ts < {cut}
        UNION ALL
        SELECT * FROM index_alerts WHERE ts IS NULL OR ts >= {cut}
        ORDER BY ts, event_id""")


def _rm_snapshots(snaps: list[Attached]) -> None:
    for a in snaps:
        remove_snapshot(a)
    snaps.clear()


class DualReader(Reader):
    """A Reader that answers runs created before `cutover` from the legacy DuckDB `legacy`.

    The legacy file is opened read-only. If the old code holds it open for writing, the reader
    answers from a snapshot copy (file + WAL, in a temporary folder, refreshed whenever the
    connection is reopened; `legacy_snapshot` says so) or, with `snapshot=False` or when the copy
    cannot be opened, raises `LegacyLockedError` saying why. Without a published index yet, the
    index side is empty and everything comes from legacy.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        legacy: str | os.PathLike[str],
        cutover: str | date | datetime,
        db: str | os.PathLike[str] | None = None,
        external_access: bool = True,
        snapshot: bool = True,
    ) -> None:
        super().__init__(root, db=db, external_access=external_access)
        self.legacy_path = Path(legacy).expanduser().absolute()
        if not self.legacy_path.is_file():
            raise LegacyError(f"legacy file not found: {self.legacy_path}")
        self.cutover = parse_cutover(cutover)
        self.allow_snapshot = snapshot
        self.attached: Attached | None = None
        self.trial_id_is_int = False
        self._empty = False
        self._snaps: list[Attached] = []
        self._finalizer = weakref.finalize(self, _rm_snapshots, self._snaps)

    @property
    def legacy_snapshot(self) -> Path | None:
        """The snapshot copy answering for a locked legacy file, else None."""
        return self.attached.snapshot if self.attached is not None else None

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        if _file_id(self.paths.runs) is not None:
            self._empty = False
            return super().connection
        # No index published yet: legacy beside an empty in-memory index.
        if self._con is None or not self._empty:
            self._con = self._open_empty()
            self._opened = None
            self._empty = True
        return self._con

    def _open_empty(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        try:
            con.execute("ATTACH ':memory:' AS ledger")
            con.execute("USE ledger")
            for ddl in S.TABLES_DDL + S.VIEWS_DDL:
                con.execute(ddl)
            con.execute(
                "INSERT INTO _index_meta VALUES ('stale_after_s', ?)", [str(DEFAULT_STALE_AFTER_S)]
            )
        except BaseException:
            con.close()
            raise
        return self._finish(con)

    def _attach_extra(self, con: duckdb.DuckDBPyConnection) -> None:
        super()._attach_extra(con)
        att = attach_legacy(con, self.legacy_path, snapshot=self.allow_snapshot)
        try:
            shape = create_legacy_views(con)
            has_alerts = bool(
                con.execute(
                    "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'alerts_db'"
                ).fetchall()[0][0]
            )
            create_dual_views(con, self.cutover, has_alerts)
        except BaseException:
            remove_snapshot(att)
            raise
        self.trial_id_is_int = shape.trial_id_is_int
        self.attached = att
        # Older snapshots can go: DuckDB keeps an attached file open, so relations still
        # reading one keep working after its name is unlinked (and the WAL was replayed).
        _rm_snapshots(self._snaps)
        if att.snapshot is not None:
            self._snaps.append(att)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # The merged views are TEMP views of this connection (ledgerx.legacy.source), which a
        # cursor would not see: dual-mode queries share the connection.
        return self.connection

    def _standard(self, name: str, params: list[Any] | None = None) -> duckdb.DuckDBPyRelation:
        if name == "run":
            rid = (params or [None])[0]
            return self.sql(DUAL_RUN_QUERY, [rid, rid])
        if name == "trial_id_kinds":  # legacy runs too: from the merged view
            return self.sql(
                "SELECT DISTINCT union_tag(trial_id) FROM trial_results WHERE run_id = ?", params
            )
        if name == "latest_runs":
            return self.sql(
                "SELECT * FROM latest_runs ORDER BY created_at DESC NULLS LAST, run_id DESC"
            )
        return super()._standard(name, params)

    def owner(self, run_id: str) -> str:
        """'legacy' when the run is answered from the legacy file, else 'index'."""
        rows = self.sql("SELECT count(*) FROM legacy_owned WHERE run_id = ?", [run_id]).fetchall()
        return "legacy" if rows[0][0] else "index"

    def close(self) -> None:
        super().close()
        _rm_snapshots(self._snaps)

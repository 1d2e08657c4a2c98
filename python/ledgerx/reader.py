"""Read API over the published index: `ledgerx.Reader` and `wait_indexed`.

Every query runs on a read-only connection to the published files. The indexer replaces those
files by atomic rename (or exchange of names with the alternate it updated in place, which no
open connection holds), so a Reader never meets a lock or a half-built index: before each call
it checks whether a newer file was published and, if so, opens that one (relations already
handed out keep reading the version they started on, and the indexer leaves a file that any
connection holds alone).

Dual mode (docs/legacy.md) plugs in by subclassing, and this module knows nothing of it: the
standard queries all go through `Reader._standard(name, params)`, whose SQL lives in
`STANDARD_QUERIES`; `ledgerx.legacy.DualReader` attaches the legacy file in `_attach_extra` and
overrides `_standard` to union the two. Construct it explicitly.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerx.config import resolve_root
from ledgerx.errors import ConfigError, IndexTimeoutError, LedgerError
from ledgerx.fsutil import ForkSafeLock
from ledgerx.index.dbfile import open_readonly, raise_if_foreign_lock, remembered_offsets
from ledgerx.index.engine import duckdb, package
from ledgerx.index.publish import IndexPaths, file_ident, lock_is_free
from ledgerx.index.safesql import check_read_only_sql, forbid_external_access
from ledgerx.index.schema import trial_id_sql

if TYPE_CHECKING:  # pyarrow is imported where a table is built, not by every reader
    import pyarrow as pa
    from duckdb import DuckDBPyRelation

STANDARD_QUERIES: dict[str, str] = {
    "latest_runs": "SELECT * FROM latest_runs",
    "run": "SELECT r.*, s.status FROM runs_d r JOIN runs_status s USING (run_id) WHERE run_id = ?",
    "phases": "SELECT * FROM run_phase_summary WHERE run_id = ? ORDER BY phase_index, started_at",
    "trials": "SELECT * FROM trial_results WHERE run_id = ? ORDER BY trial_id, recorded_at",
    # Which members of the trial_id UNION a run uses (one kind: the plain column instead), from
    # the ids alone: the same set as the view's (a record and its retry share their id).
    "trial_id_kinds": f"SELECT DISTINCT union_tag({trial_id_sql('j')}) FROM ("
    "SELECT coalesce(data_upcast, data)->'trial_id' AS j FROM events "
    "WHERE run_id = ? AND event_type = 'trial.recorded')",
    "trials_int": "SELECT * REPLACE (trial_id.int AS trial_id) FROM trial_results "
    "WHERE run_id = ? ORDER BY trial_id, recorded_at",
    "trials_str": "SELECT * REPLACE (trial_id.str AS trial_id) FROM trial_results "
    "WHERE run_id = ? ORDER BY trial_id, recorded_at",
    "alerts": "SELECT * FROM alerts ORDER BY ts, event_id",
}

_RETRIES = 20

SEARCH_PATH = "memory.main,ledger.main"
"""Names resolve in the reader's own views (memory.main: `alerts`, `runs_catalog`) and then in
the index; every query runs on its own cursor with this path."""


class IndexMissingError(LedgerError):
    """No published index yet: run `ledgerx rebuild` (or the daemon) first."""


class RunNotFoundError(LedgerError, KeyError):
    """No run (or more than one) matches the id or prefix given."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _file_id(p: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


def _retryable(e: BaseException) -> bool:
    msg = str(e).lower()
    return "lock" in msg or "no such file" in msg or "cannot open" in msg


class Reader:
    """Queries over a ledger's index; results are DuckDB relations (`.arrow()`, `.df()`,
    `.pl()`, `.fetchall()`).

    `Reader(root=None, db=None)`: root defaults to $LEDGERX_ROOT or ./data/ledger; `db` points at
    a runs index elsewhere (`ledgerx rebuild --db PATH`). With `external_access=False` (what
    `ledgerx query` and the dashboard use) every `sql()` must be one read-only statement and the
    connection cannot read or write other files, attach, load extensions or change settings
    (`ledgerx.index.safesql`, docs/security.md).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        db: str | os.PathLike[str] | None = None,
        external_access: bool = True,
        legacy: None = None,
        cutover: None = None,
    ) -> None:
        if legacy is not None or cutover is not None:
            raise ConfigError(
                "Reader reads the index only: for legacy= and cutover= construct "
                "ledgerx.legacy.DualReader(root, legacy=FILE, cutover=DATE)"
            )
        self.root = resolve_root(root)
        self.paths = IndexPaths.for_root(self.root, db)
        self.external_access = external_access
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opened: tuple[int, int, int] | None = None

    # -- connection management -----------------------------------------------------------------

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The current connection, reopened if a newer index was published since."""
        current = _file_id(self.paths.runs)
        if self._con is not None and current == self._opened:
            return self._con
        last: BaseException | None = None
        for attempt in range(_RETRIES):
            current = _file_id(self.paths.runs)
            if current is None:
                raise IndexMissingError(
                    f"no index at {self.paths.runs}; run `ledgerx rebuild` first"
                )
            try:
                con = self._open()
            except (duckdb.IOException, OSError) as e:
                if not _retryable(e):
                    raise
                last = e
                time.sleep(0.01 * (attempt + 1))
                continue
            # Drop, don't close, the old connection: relations made from it stay usable.
            self._con, self._opened = con, current
            return con
        raise LedgerError(f"could not open {self.paths.runs}: {last}")

    def _open(self) -> duckdb.DuckDBPyConnection:
        return self._finish(open_readonly(self.paths.runs, external_access=True))

    def _finish(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """Attach the side files, then turn external file access off when asked."""
        try:
            self._attach_extra(con)
            if not self.external_access:
                forbid_external_access(con)
        except BaseException:
            con.close()
            raise
        return con

    def _attach_extra(self, con: duckdb.DuckDBPyConnection) -> None:
        """Attach the side files; `alerts` and `runs_catalog` resolve as temp views. A dual-mode
        reader attaches the legacy database here too."""
        for path, alias, table, view in (
            (self.paths.alerts, "alerts_db", "alerts", "alerts"),
            (self.paths.catalog, "catalog_db", "runs", "runs_catalog"),
        ):
            if path.exists():
                con.execute(f"ATTACH '{_esc(str(path))}' AS {alias} (READ_ONLY)")
                # In memory.main, not TEMP: a temp view is private to one cursor.
                con.execute(
                    f"CREATE OR REPLACE VIEW memory.main.{view} AS "
                    f"SELECT * FROM {alias}.main.{table}"
                )

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries -------------------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for one query, so results are independent: an unread
        `.arrow()` reader or a half-fetched relation never blocks the next call."""
        cur = self.connection.cursor()
        cur.execute(f"SET search_path = '{SEARCH_PATH}'")
        return cur

    def sql(self, query: str, params: list[Any] | None = None) -> DuckDBPyRelation:
        """Any read-only SQL over the index (tables, views, `alerts`, `runs_catalog`). With
        `external_access=False`, anything but one read-only statement is QueryRefusedError."""
        if not self.external_access:
            check_read_only_sql(query)
        package()  # relations are the package's: it adds `sql` to the engine's connections
        for attempt in range(_RETRIES):
            con = self._cursor()
            try:
                return con.sql(query, params=params) if params else con.sql(query)
            except duckdb.IOException as e:  # the file went away under a lazy scan: reopen
                if not _retryable(e) or attempt == _RETRIES - 1:
                    raise
                self._con = None
        raise AssertionError("unreachable")

    def _standard(self, name: str, params: list[Any] | None = None) -> DuckDBPyRelation:
        return self.sql(STANDARD_QUERIES[name], params)

    def latest_runs(self) -> DuckDBPyRelation:
        """One row per run, newest first: run_id, run_kind, status, created_at, started_at,
        completed_at, duration_ms, summary, trials."""
        return self._standard("latest_runs")

    def run(self, run_id: str) -> DuckDBPyRelation:
        """The run's row of runs_d with its current status (empty when unknown)."""
        return self._standard("run", [run_id])

    def phases(self, run_id: str) -> DuckDBPyRelation:
        """run_phase_summary for one run, in phase order."""
        return self._standard("phases", [run_id])

    def trials(self, run_id: str) -> DuckDBPyRelation:
        """trial_results for one run in trial_id order (params and metrics as JSON); trial_id
        is BIGINT when every id of the run is an integer, VARCHAR when every one is a string,
        else the view's UNION(int BIGINT, str VARCHAR) (docs/index.md)."""
        kinds = {k for (k,) in self._standard("trial_id_kinds", [run_id]).fetchall()}
        plain = (
            {"int": "trials_int", "str": "trials_str"}.get(kinds.pop()) if len(kinds) == 1 else None
        )
        if plain is not None:
            try:
                return self._standard(plain, [run_id])
            except duckdb.BinderException:  # an index of format < 4 (VARCHAR ids) until upgraded
                pass
        return self._standard("trials", [run_id])

    def alerts(self) -> DuckDBPyRelation:
        """All ingested alerts (alerts.duckdb)."""
        return self._standard("alerts")

    # -- results as tables (ledgerx.results) ------------------------------------------------------

    def trials_table(self, run_ids: str | Sequence[str] | None = None) -> pa.Table:
        """One row per trial (the latest record of each): run_id, trial_id (int64 when every
        id is an integer), ts, `params.<k>`..., `metrics.<k>`... as typed columns."""
        from ledgerx.results import trials_table

        return trials_table(self, run_ids)

    def trials_frame(self, run_ids: str | Sequence[str] | None = None) -> Any:
        """`trials_table()` as a pandas DataFrame (needs pandas)."""
        from ledgerx.results import to_pandas

        return to_pandas(self.trials_table(run_ids), "trials_frame")

    def runs_table(
        self,
        run_ids: str | Sequence[str] | None = None,
        *,
        best_metric: str | None = None,
        mode: str = "max",
    ) -> pa.Table:
        """One row per run, newest first: status, kind, times, duration_ms, trials, error,
        `tags.<k>`, `config.<k>`, `summary.<k>`; with `best_metric`, the best trial on it
        (`best_trial_id`, `best.<metric>`; mode "max" or "min")."""
        from ledgerx.results import runs_table

        return runs_table(self, run_ids, best_metric=best_metric, mode=mode)

    def runs_frame(
        self,
        run_ids: str | Sequence[str] | None = None,
        *,
        best_metric: str | None = None,
        mode: str = "max",
    ) -> Any:
        """`runs_table()` as a pandas DataFrame (needs pandas)."""
        from ledgerx.results import to_pandas

        table = self.runs_table(run_ids, best_metric=best_metric, mode=mode)
        return to_pandas(table, "runs_frame")

    def baselines(self, run_id: str) -> DuckDBPyRelation:
        """The run's baselines: baseline, metrics (JSON), completed_at."""
        return self.sql(
            "SELECT baseline, metrics, completed_at FROM baseline_results WHERE run_id = ? "
            "ORDER BY completed_at, event_id",
            [run_id],
        )

    def artifacts(self, run_id: str) -> DuckDBPyRelation:
        """The run's artifacts: name, path (relative to the root), abs_path, format, bytes,
        sha256, rows, created_at."""
        return self.sql(
            """SELECT name, path, ? || '/' || path AS abs_path, format, bytes, sha256, "rows",
                      created_at
               FROM artifacts_catalog WHERE run_id = ? ORDER BY created_at, event_id""",
            [str(self.root), run_id],
        )

    def resolve_run_id(self, prefix: str) -> str:
        """The run id that `prefix` names: itself when it is a run id, else the one run id
        starting with it. KeyError (with a message) when none or several match."""
        rows = self.sql(
            "SELECT run_id FROM runs_d WHERE starts_with(run_id, ?) ORDER BY run_id LIMIT 6",
            [prefix],
        ).fetchall()
        ids = [r[0] for r in rows]
        if prefix in ids:
            return prefix
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise RunNotFoundError(f"unknown run {prefix!r} (not in the index)")
        more = ", ..." if len(ids) > 5 else ""
        raise RunNotFoundError(f"run id prefix {prefix!r} is ambiguous: {', '.join(ids[:5])}{more}")

    def indexed_offset(self, file: str) -> int:
        """Bytes of part `file` (relative to events/) indexed so far; 0 when never seen."""
        rows = self.sql('SELECT "offset" FROM _ledger_files WHERE file = ?', [file]).fetchall()
        return int(rows[0][0]) if rows else 0


def _esc(s: str) -> str:
    return s.replace("'", "''")


def wait_indexed(
    root: str | os.PathLike[str] | None,
    position: tuple[str, int],
    timeout: float = 60.0,
    *,
    db: str | os.PathLike[str] | None = None,
    run_indexer: bool = True,
    poll: float = 0.002,
) -> None:
    """Block until the index includes the event at `position` ((file, offset) from emit()).

    With `run_indexer` (default) and no indexer running, index the new bytes in this process
    (no daemon needed); otherwise wait for the running indexer to publish. Raises TimeoutError.
    While another indexer runs, each look every `poll` seconds is a `stat` of the published
    file (and a lock probe); the file is read only after a publish replaced it.
    """
    from ledgerx.errors import IndexBusyError
    from ledgerx.index.indexer import build_index

    file, offset = position[0], int(position[1])
    rootp = resolve_root(root)
    paths = IndexPaths.for_root(rootp, db)
    deadline = time.monotonic() + timeout
    probe = _OffsetProbe(paths.runs)
    try:
        while True:
            if probe.offset(file) > offset:
                return
            if run_indexer and lock_is_free(paths):
                try:
                    rep = build_index(rootp, db=db)
                    if rep.offsets.get(file, 0) > offset:  # what it published
                        return
                    if rep.mode != "noop":
                        continue
                except IndexBusyError:
                    pass
            if time.monotonic() >= deadline:
                raise IndexTimeoutError(
                    f"event at {file}:{offset} not indexed after {timeout:.1f} s"
                )
            time.sleep(poll)
    finally:
        probe.close()


_PROBE_DB: dict[int, duckdb.DuckDBPyConnection] = {}  # by pid: a forked child makes its own
_PROBE_LOCK = ForkSafeLock()
_PROBE_IDS = itertools.count()


def _probe_cursor() -> duckdb.DuckDBPyConnection:
    """A cursor on this process's one in-memory DuckDB for probes: a new DuckDB instance costs
    tens of ms, a cursor on an existing one nothing (each probe attaches under its own name).
    A forked child never touches its parent's instance (its threads did not survive the fork)."""
    with _PROBE_LOCK:
        con = _PROBE_DB.get(os.getpid())
        if con is None:
            con = _PROBE_DB[os.getpid()] = duckdb.connect(":memory:")
        return con.cursor()


class _OffsetProbe:
    """How far the published runs index has indexed a part, for `wait_indexed`: from the state
    its publisher recorded (in this process, or in the state file beside it) while the file
    keeps the identity recorded there; else from one cursor on an in-memory DuckDB for the whole
    wait, into which the published file is attached again (a few ms) only when a publish
    replaced it; a fresh connection per look (a new DuckDB instance) cost more than the look.
    The file attached must be the one the name pointed at before and after the ATTACH (a publish
    may swap the names meanwhile), as in `open_readonly`. Nothing stays attached after `close`:
    a file held open would keep the next round from updating the alternate in place."""

    def __init__(self, runs: Path) -> None:
        self.runs = runs
        self._alias = f"probe_{os.getpid()}_{next(_PROBE_IDS)}"
        self._con: duckdb.DuckDBPyConnection | None = None
        self._ident = ""  # of the file attached and verified
        self._attached = False
        self._seen: dict[str, int] = {}  # offsets read from that file: it cannot change
        self._all = False  # `_seen` has every part of that file (its publisher's state)

    def offset(self, file: str) -> int:
        """The part's indexed offset; -1 with no published index."""
        for attempt in range(_RETRIES):
            ident = file_ident(self.runs)
            if not ident:
                self._detach()
                return -1
            if ident == self._ident:
                break
            self._detach()
            known = remembered_offsets(self.runs, ident)
            if known is not None:  # its publisher's state: its checkpoints are known
                self._ident, self._seen, self._all = ident, known, True
                break
            try:
                self._attach()
            except duckdb.Error as e:
                if file_ident(self.runs) == ident or attempt + 1 == _RETRIES:
                    if isinstance(e, duckdb.IOException):
                        raise_if_foreign_lock(self.runs, e)
                    raise
                continue
            if file_ident(self.runs) == ident:
                self._ident = ident
                break
        if file in self._seen or self._all:  # the same file as at the last look: the same answer
            return self._seen.get(file, 0)
        con = self._con
        assert con is not None
        rows = con.execute(
            f'SELECT "offset" FROM {self._alias}._ledger_files WHERE file = ?', [file]
        ).fetchall()
        off = self._seen[file] = int(rows[0][0]) if rows else 0
        return off

    def _attach(self) -> None:
        if self._con is None:
            self._con = _probe_cursor()
        self._con.execute(f"ATTACH '{_esc(str(self.runs))}' AS {self._alias} (READ_ONLY)")
        self._attached = True

    def _detach(self) -> None:
        if self._con is not None and self._attached:
            self._con.execute(f"DETACH {self._alias}")
        self._attached = False
        self._ident = ""
        self._seen = {}
        self._all = False

    def close(self) -> None:
        if self._con is not None:
            try:
                self._detach()
            finally:
                self._con.close()
                self._con = None

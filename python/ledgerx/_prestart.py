"""The engine module `_duckdb` (see `ledgerx.index.engine`) and an in-memory DuckDB instance
started early, in a thread (`prestart`), for the indexer (`dbfile.work_cursor` takes it). Only
the engine and the standard library are imported here: the console script calls `prestart`
before the CLI's and the indexer's imports (`ledgerx._entry`)."""

from __future__ import annotations

import os
import threading

try:
    import _duckdb as duckdb
except ImportError:  # a DuckDB whose package keeps its engine elsewhere: the package itself
    import duckdb  # type: ignore[no-redef]

__all__ = ["duckdb", "prestart", "settle_prestarted", "take_prestarted"]


# By pid: (set once made, [the instance until taken]; empty when making it failed). A forked
# child never takes its parent's (DuckDB's threads do not survive a fork).
_PRESTARTED: dict[int, tuple[threading.Event, list[duckdb.DuckDBPyConnection]]] = {}


def prestart() -> None:
    """Start making an in-memory DuckDB instance in a thread, for `take_prestarted`: DuckDB
    releases the GIL while it starts one (~150 M instructions: its built-in extensions and
    parser), so this overlaps what the caller imports next. The thread only connects: the
    engine module is imported here, before it starts. Once per process: a later call (the
    command after the console script, another in-process `ledgerx rebuild`) does nothing, and
    the indexer then uses the instance it has or makes one."""
    if os.getpid() in _PRESTARTED:
        return
    done = threading.Event()
    box: list[duckdb.DuckDBPyConnection] = []
    _PRESTARTED[os.getpid()] = (done, box)

    def make() -> None:
        try:
            box.append(duckdb.connect(":memory:"))
        except Exception:  # noqa: BLE001, S110 - the taker makes one itself and reports why
            pass
        finally:
            done.set()

    threading.Thread(target=make, name="ledgerx-duckdb", daemon=True).start()


def take_prestarted() -> duckdb.DuckDBPyConnection | None:
    """The instance `prestart` made in this process (waiting for it), once; else None."""
    entry = _PRESTARTED.get(os.getpid())
    if entry is None:
        return None
    done, box = entry
    done.wait()
    return box.pop() if box else None


def settle_prestarted() -> None:
    """Wait until a `prestart` of this process has finished making its instance (untaken)."""
    entry = _PRESTARTED.get(os.getpid())
    if entry is not None:
        entry[0].wait()

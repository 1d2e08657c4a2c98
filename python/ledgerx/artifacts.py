"""Run artifacts (docs/ops.md): files under `artifacts/runs/{run_id}/`, each recorded by an
`artifact.created` event.

    with ledger.run(run_kind="backtest", config=cfg, data_fingerprint=fp) as run:
        run.artifacts.write_table("trades", trades)        # trades.parquet (zstd)
        run.artifacts.write_json("summary", {"sharpe": 1.2})  # summary.json

A file is written under a temporary name in the run's folder, fsynced, renamed to its final
name and the folder fsynced; only then is the event emitted. Folders and files are created
relative to directory handles opened without following links, so a symlink under the root
cannot send an artifact elsewhere. A crash at any point leaves either
no file under the final name or the complete one (temporaries start with `.` and end in
`.tmp-<pid>-<hex>`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledgerx.config import artifacts_dir
from ledgerx.errors import LedgerIOError, SchemaError

if TYPE_CHECKING:
    import pyarrow as pa

    from ledgerx.writer import Run

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TMP_MARK = ".tmp-"

# The conventional artifacts of a backtest run.
TRADES = "trades"
EQUITY_CURVE = "equity_curve"
SUMMARY = "summary"
CONFIG = "config"


@dataclass(frozen=True)
class Artifact:
    """What `artifact.created` recorded: `path` is relative to the ledger root."""

    name: str
    path: str
    format: str
    bytes: int
    sha256: str
    rows: int | None

    def event_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "rows": self.rows,
        }


def check_name(name: object, ext: str) -> str:
    """The artifact's file stem. Only `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, no `..`: nothing can
    leave the run's folder or hide as a dot file. A trailing `.{ext}` is accepted and dropped."""
    if not isinstance(name, str):
        raise SchemaError(f"artifact name must be a string, not {type(name).__name__}")
    stem = name[: -len(ext) - 1] if name.endswith("." + ext) else name
    if not NAME_RE.fullmatch(stem) or ".." in stem:
        raise SchemaError(
            f"invalid artifact name {name!r}: must match [A-Za-z0-9][A-Za-z0-9._-]{{0,63}} "
            "without '..' (no path separators)"
        )
    return stem


def to_arrow_table(data: Any) -> pa.Table:
    """A pyarrow Table from a Table, RecordBatch, RecordBatchReader, DuckDB relation, pandas
    DataFrame or Series, polars DataFrame, 1-D/2-D numpy array, or any object with the Arrow
    PyCapsule stream interface."""
    import pyarrow as pa

    special = _series_or_ndarray(data)
    if special is not None:
        return special
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    mod = type(data).__module__ or ""
    if mod.startswith("duckdb"):
        # DuckDBPyRelation: `.arrow()` is a Table in duckdb < 1.4 and a reader after.
        out = data.to_arrow_table() if hasattr(data, "to_arrow_table") else data.arrow()
        return out.read_all() if isinstance(out, pa.RecordBatchReader) else out
    if mod.startswith("polars"):
        return data.to_arrow()
    if mod.startswith("pandas"):
        return pa.Table.from_pandas(data)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    raise SchemaError(
        f"write_table: unsupported data of type {type(data).__module__}.{type(data).__qualname__}"
        " (pyarrow Table/RecordBatch, pandas DataFrame/Series, polars DataFrame, DuckDB relation,"
        " 1-D/2-D numpy array)"
    )


def _series_or_ndarray(data: Any) -> pa.Table | None:
    """A pandas Series (an equity curve: its index becomes a column unless it is the default
    0..n-1) or a 1-D/2-D numpy array; None for anything else."""
    import pyarrow as pa

    mod, name = type(data).__module__ or "", type(data).__name__
    if mod.startswith("pandas") and name == "Series":
        frame = data.to_frame(name="value" if data.name is None else str(data.name))
        if type(data.index).__name__ != "RangeIndex":
            frame = frame.reset_index()
        frame.columns = [str(c) for c in frame.columns]
        return pa.Table.from_pandas(frame, preserve_index=False)
    if mod == "numpy" and name == "ndarray":
        if data.ndim == 1:
            return pa.table({"value": pa.array(data)})
        if data.ndim == 2:
            return pa.table({str(i): pa.array(data[:, i]) for i in range(data.shape[1])})
        raise SchemaError(
            f"write_table: a {data.ndim}-D numpy array is not a table (1-D or 2-D only)"
        )
    return None


def _sha256_and_size(f: Any) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    while chunk := f.read(1 << 20):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


class RunArtifacts:
    """The artifact folder of one run; use it as `run.artifacts`."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.root = Path(run.ledger.root)
        self.dir = artifacts_dir(self.root) / run.run_id
        self.written: list[Artifact] = []

    def path(self, name: str, ext: str) -> Path:
        """Absolute path of artifact `name` with extension `ext` (validated)."""
        return self.dir / f"{check_name(name, ext)}.{ext}"

    def write_table(self, name: str, data: Any, *, compression: str = "zstd") -> Artifact:
        """Write `data` as `{name}.parquet`; `rows` is the table's row count."""
        import pyarrow.parquet as pq

        stem = check_name(name, "parquet")
        table = to_arrow_table(data)
        return self._commit(
            stem,
            "parquet",
            lambda f: pq.write_table(table, f, compression=compression),
            table.num_rows,
        )

    def write_json(self, name: str, obj: Any) -> Artifact:
        """Write `obj` as strict JSON (no NaN/Infinity) to `{name}.json`; `rows` is null."""
        stem = check_name(name, "json")
        try:
            text = json.dumps(obj, allow_nan=False, ensure_ascii=False, indent=2)
        except (ValueError, TypeError) as e:
            raise SchemaError(f"write_json({stem!r}): not strict JSON: {e}") from None
        payload = (text + "\n").encode("utf-8", "strict")

        def write(f: Any) -> None:
            f.write(payload)

        return self._commit(stem, "json", write, None)

    # The conventional names.
    def write_trades(self, data: Any) -> Artifact:
        return self.write_table(TRADES, data)

    def write_equity_curve(self, data: Any) -> Artifact:
        return self.write_table(EQUITY_CURVE, data)

    def write_summary(self, obj: Any = None) -> Artifact:
        """`summary.json`; by default the run's `summary` dict (the one run.completed carries)."""
        return self.write_json(SUMMARY, self.run.summary if obj is None else obj)

    def write_config(self, obj: Any = None) -> Artifact:
        """`config.json`; by default the run's config."""
        return self.write_json(CONFIG, dict(self.run.config) if obj is None else obj)

    def _commit(self, stem: str, fmt: str, write: Any, rows: int | None) -> Artifact:
        final = f"{stem}.{fmt}"
        tmp = f".{final}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        dfd = open_run_dir(self.root, self.run.run_id)
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(tmp, flags, 0o666, dir_fd=dfd)
            except OSError as e:
                raise LedgerIOError(
                    e.errno, f"cannot create {self.run.run_id}/{tmp}: {e.strerror}"
                ) from None
            try:
                with os.fdopen(fd, "w+b") as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
                    f.seek(0)
                    sha, size = _sha256_and_size(f)
                os.rename(tmp, final, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dfd)
                raise
            os.fsync(dfd)
        finally:
            os.close(dfd)
        rel = f"artifacts/runs/{self.run.run_id}/{final}"
        art = Artifact(name=stem, path=rel, format=fmt, bytes=size, sha256=sha, rows=rows)
        self.run.emit("artifact.created", art.event_data())
        if rel not in self.run.artifact_paths:
            self.run.artifact_paths.append(rel)
        self.written.append(art)
        return art


def open_run_dir(root: Path, run_id: str) -> int:
    """The run's artifact folder as a directory fd, created as needed. Each folder below the
    root (`artifacts`, `runs`, the run's) is opened relative to its parent's fd with
    O_NOFOLLOW|O_DIRECTORY, so a symlink planted anywhere on the way is refused instead of
    leading the write out of the root (docs/security.md)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in ("artifacts", "runs", run_id):
            created = False
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
                created = True
            try:
                sub = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise LedgerIOError(
                        e.errno,
                        f"{root}/artifacts/runs/{run_id}: '{part}' is a symlink or not a folder; "
                        "artifacts are never written through links",
                    ) from None
                raise
            if created:
                os.fsync(fd)  # the new entry is durable
            os.close(fd)
            fd = sub
        return fd
    except BaseException:
        os.close(fd)
        raise

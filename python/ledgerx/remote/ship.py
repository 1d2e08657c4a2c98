"""`ledgerx ship`: send the local log to object storage as immutable, create-only objects.

A round lists the part files and, for each one, sends the complete lines past the offset
already shipped: one object per chunk of at most `max_object_bytes`, named after the byte range
it holds (ledgerx.remote.store.ObjectName), created with `If-None-Match: *` so that nothing is
ever overwritten. The unterminated tail of a part (a writer may be mid-line) waits for the next
round. Bytes appended later to a shipped part go out as new objects. Nothing local is deleted.

State, in the root: `ship/root-id` (this root's random id, created once, exclusively) and
`ship/state-<hash of the URL>.json` (the shipped offset per part, replaced atomically after each
wave of uploads), guarded by the flock `ship/.lock-<hash>` (one shipper per root and bucket).

Crash safety: an object is uploaded before its offset is recorded. A shipper killed in between
finds, on restart, the object already in the bucket: the first round lists the root's objects
and adopts any object that starts at a part's recorded offset after checking that it holds the
same bytes as the local file, so it never uploads a second, overlapping object for those bytes.
A create that fails because the object exists (a retried request that had in fact succeeded) is
checked the same way. Different bytes under our name raise RemoteError: nothing is overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledgerx.config import events_dir, resolve_root
from ledgerx.errors import ConfigError, LedgerError
from ledgerx.fsutil import atomic_write, ensure_dir, fsync_path
from ledgerx.index.indexer import list_part_files
from ledgerx.remote.store import (
    ObjectName,
    RemoteError,
    check_not_forked,
    check_url,
    open_store,
)

DEFAULT_MAX_OBJECT_BYTES = 32 << 20
RETRIES = 6
BACKOFF_S = 0.2
MAX_BACKOFF_S = 30.0
STATE_FORMAT = 1


class ShipBusyError(LedgerError):
    """Another shipper already ships this root to this destination."""


@dataclass
class ShipReport:
    objects: int = 0  # objects created by this round
    adopted: int = 0  # objects found already in the bucket (a previous run died before saving)
    bytes: int = 0
    parts: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"shipped {self.bytes / 1e6:.1f} MB in {self.objects} objects from {self.parts} "
            f"parts ({self.adopted} already there), {self.seconds:.2f} s"
        )


def ship_dir(root: Path) -> Path:
    return root / "ship"


def root_id(root: Path) -> str:
    """This root's id (32 hex digits), created on first use. Created by hard-linking a fully
    written temp file into place, so two first shippers agree on one id."""
    d = ship_dir(root)
    path = d / "root-id"
    with contextlib.suppress(FileNotFoundError):
        return _read_id(path)
    ensure_dir(d)
    tmp = d / f".root-id.{os.getpid()}.{secrets.token_hex(4)}"
    tmp.write_text(secrets.token_hex(16) + "\n")
    fsync_path(tmp)
    try:
        os.link(tmp, path)
        fsync_path(d)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _read_id(path)


def _read_id(path: Path) -> str:
    rid = path.read_text().strip()
    if len(rid) != 32 or any(c not in "0123456789abcdef" for c in rid):
        raise LedgerError(f"{path}: not a root id (32 lowercase hex digits)")
    return rid


class Shipper:
    """Ships one root to one `s3://bucket/prefix`; holds the ship lock while open."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        url: str,
        *,
        endpoint_url: str | None = None,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        threads: int = 4,
        store: Any = None,
    ) -> None:
        check_url(url)
        if max_object_bytes < 1:
            raise ConfigError("max_object_bytes must be >= 1")
        self.root = resolve_root(root)
        if not self.root.is_dir():
            raise LedgerError(f"no ledger root at {self.root}")
        self.url = url.rstrip("/")
        self.max_object_bytes = max_object_bytes
        self.threads = max(1, threads)
        tag = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        self.state_path = ship_dir(self.root) / f"state-{tag}.json"
        self._lock_fd = _take_lock(ship_dir(self.root) / f".lock-{tag}", self.root, self.url)
        try:
            self.root_id = root_id(self.root)
            self.offsets = self._load_state()
            self.store = store if store is not None else open_store(url, endpoint_url)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._found: dict[str, dict[int, int]] | None = None  # listing, first round only

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> Shipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state ---------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, int]:
        try:
            st = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise LedgerError(f"{self.state_path}: unreadable ship state: {e}") from None
        if st.get("root_id") != self.root_id or st.get("url") != self.url:
            raise LedgerError(f"{self.state_path}: ship state of another root or destination")
        return {str(k): int(v) for k, v in st["parts"].items()}

    def _save_state(self) -> None:
        st = {
            "format": STATE_FORMAT,
            "url": self.url,
            "root_id": self.root_id,
            "parts": dict(sorted(self.offsets.items())),
        }
        atomic_write(self.state_path, json.dumps(st, indent=1) + "\n")

    def _listing(self) -> dict[str, dict[int, int]]:
        """{part rel: {start: end}} of this root's objects already in the bucket."""
        import obstore

        found: dict[str, dict[int, int]] = {}
        prefix = f"roots/{self.root_id}/"
        metas = _retry(lambda: [m for b in obstore.list(self.store, prefix=prefix) for m in b])
        for meta in metas:
            if True:
                name = ObjectName.parse(meta["path"])
                if name is None or name.root_id != self.root_id:
                    continue
                if meta["size"] != name.end - name.start:
                    raise RemoteError(f"{meta['path']}: {meta['size']} bytes, name says otherwise")
                found.setdefault(name.rel, {})[name.start] = name.end
        return found

    # -- one round -----------------------------------------------------------------------------

    def round(self) -> ShipReport:
        """Ship every complete line not shipped yet. Raises RemoteError after retries."""
        t0 = time.monotonic()
        rep = ShipReport()
        if self._found is None:
            self._found = self._listing()
        ev = events_dir(self.root)
        todo = {
            rel: size for rel, _, size in list_part_files(ev) if size > self.offsets.get(rel, 0)
        }
        rep.parts = len(todo)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="ledgerx-ship") as pool:
            while todo:
                wave = sorted(todo)
                results = list(pool.map(lambda rel: self._next_object(ev, rel, todo[rel]), wave))
                for rel, res in zip(wave, results, strict=True):
                    if res is None:
                        del todo[rel]
                        continue
                    end, nbytes, created = res
                    self.offsets[rel] = end
                    rep.bytes += nbytes
                    rep.objects += created
                    rep.adopted += not created
                    if end >= todo[rel]:
                        del todo[rel]
                self._save_state()
        rep.seconds = time.monotonic() - t0
        return rep

    def _next_object(self, ev: Path, rel: str, size: int) -> tuple[int, int, bool] | None:
        """Ship the next chunk of one part: (new offset, bytes, created?) or None when only an
        unterminated tail (or nothing) is left."""
        start = self.offsets.get(rel, 0)
        assert self._found is not None
        known_end = self._found.get(rel, {}).get(start)
        try:
            with open(ev / rel, "rb") as f:
                if known_end is not None:
                    data = os.pread(f.fileno(), known_end - start, start)
                else:
                    data = _read_lines(f.fileno(), start, size, self.max_object_bytes)
        except FileNotFoundError:  # removed by retention since the listing: nothing to send
            return None
        if not data:
            return None
        day, name = rel.split("/")
        obj = ObjectName(self.root_id, day, name.removesuffix(".jsonl"), start, start + len(data))
        if known_end is not None:  # uploaded by a run that died before saving its state
            obj = ObjectName(self.root_id, obj.day, obj.part, start, known_end)
            self._verify_same(obj, data)
            return obj.end, len(data), False
        created = self._put_create(obj, data)
        return obj.end, len(data), created

    def _put_create(self, obj: ObjectName, data: bytes) -> bool:
        """Create the object; if it already exists, check it holds these bytes. True when this
        call created it."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            _retry(lambda: obstore.put(self.store, obj.key, data, mode="create"))
        except (AlreadyExistsError, PreconditionError):
            self._verify_same(obj, data)
            return False
        return True

    def _verify_same(self, obj: ObjectName, data: bytes) -> None:
        import obstore

        have = _retry(lambda: bytes(obstore.get(self.store, obj.key).bytes()))
        if have != data:
            raise RemoteError(
                f"{obj.key} exists with other bytes: not overwritten (does another root share "
                f"the root id in {ship_dir(self.root) / 'root-id'}?)"
            )


def _read_lines(fd: int, start: int, size: int, limit: int) -> bytes:
    """Complete lines from `start`: at most `limit` bytes unless one line is longer."""
    want = min(size - start, limit)
    data = os.pread(fd, want, start)
    cut = data.rfind(b"\n")
    if cut < 0 and len(data) == limit:  # one line longer than the limit: send it whole
        data = os.pread(fd, size - start, start)
        cut = data.find(b"\n")
    return data[: cut + 1] if cut >= 0 else b""


def _retry(fn: Any) -> Any:
    """Call fn, retrying transient failures (connection errors, 5xx, 408, 429) with exponential
    backoff; typed errors (exists, precondition, permission, not found) and other 4xx answers are
    raised at once."""
    from obstore.exceptions import (
        AlreadyExistsError,
        NotFoundError,
        PermissionDeniedError,
        PreconditionError,
        UnauthenticatedError,
    )

    check_not_forked()
    final = (AlreadyExistsError, PreconditionError)
    denied = (PermissionDeniedError, UnauthenticatedError, NotFoundError)
    delay = BACKOFF_S
    for attempt in range(RETRIES + 1):
        try:
            return fn()
        except final:
            raise
        except denied as e:
            raise RemoteError(_msg(e)) from None
        except Exception as e:  # noqa: BLE001 - obstore's generic/IO errors: retry, then raise
            m = _STATUS.search(str(e))
            if m and 400 <= int(m[1]) < 500 and int(m[1]) not in (408, 429):
                raise RemoteError(_msg(e)) from None
            if attempt == RETRIES:
                raise RemoteError(f"gave up after {RETRIES + 1} attempts: {_msg(e)}") from None
            time.sleep(delay)
            delay = min(MAX_BACKOFF_S, delay * 2)
    raise RemoteError("the retry loop ended without a result")


_STATUS = re.compile(r"status code: (\d{3})")
_S3_ERROR = re.compile(r"<Code>([^<]*)</Code>\s*<Message>([^<]*)</Message>")


def _msg(e: BaseException) -> str:
    """One line: the S3 error code and message when the answer has them."""
    text = str(e).split("Debug source:")[0]
    m = _S3_ERROR.search(text)
    head = text.split(": <?xml")[0] if m else text
    out = " ".join(head.split())
    if m:
        out = f"{m[1]}: {m[2]} ({out})"
    return out[:500] or type(e).__name__


def _take_lock(path: Path, root: Path, url: str) -> int:
    ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ShipBusyError(f"another shipper is shipping {root} to {url}") from None
        raise
    return fd


def ship(
    root: str | os.PathLike[str] | None,
    url: str,
    *,
    endpoint_url: str | None = None,
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
) -> ShipReport:
    """One round: ship what is new, then release the lock."""
    with Shipper(root, url, endpoint_url=endpoint_url, max_object_bytes=max_object_bytes) as s:
        return s.round()

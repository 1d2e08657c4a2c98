"""`ledgerx rebuild --source s3://…`: index a shipped log (docs/scale.md).

The objects of each shipped part (one root id, one part) are byte ranges of that part, named by
their range. They are appended, in order, to a local mirror of the part under
`<root>/remote/events/day=D/<root_id>-part-NNNNNN.jsonl`, so the mirror is always a byte-exact
prefix of the part on the shipping host. The mirror's size is the checkpoint: an object
`[start, end)` has been taken once the mirror reaches `end`; the next sync lists the bucket and
fetches only objects ending past it, appending just the bytes past the mirror's end (so bytes
that arrive in two overlapping objects are written once). A sync killed mid-append leaves a
shorter prefix, completed by the next one.

The usual indexer then indexes the mirror into `<root>/index/` with its per-file byte
checkpoints and its event-id dedupe, so each event is indexed exactly once, also when the same
event reached the bucket from two roots. `Reader(root)` reads that index as usual.
"""

from __future__ import annotations

import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledgerx.config import events_dir, resolve_root
from ledgerx.errors import LedgerError, LedgerIOError
from ledgerx.fsutil import ensure_dir, fsync_path
from ledgerx.index.indexer import list_part_files
from ledgerx.remote.ship import _retry
from ledgerx.remote.store import ObjectName, RemoteError, check_url, open_store


@dataclass
class FetchReport:
    objects: int = 0  # objects fetched this time
    bytes: int = 0  # bytes appended to the mirror
    parts: int = 0  # parts seen in the bucket
    roots: int = 0  # shipping roots seen in the bucket
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"fetched {self.bytes / 1e6:.1f} MB in {self.objects} objects "
            f"({self.parts} parts from {self.roots} roots), {self.seconds:.2f} s"
        )


def mirror_root(root: Path) -> Path:
    """The pseudo-root whose events/ holds the mirrored parts."""
    return root / "remote"


def mirror_rel(name: ObjectName) -> str:
    return f"{name.day}/{name.root_id}-{name.part}.jsonl"


def sync_remote(
    root: str | os.PathLike[str] | None,
    url: str,
    *,
    endpoint_url: str | None = None,
    store: Any = None,
    threads: int = 4,
) -> FetchReport:
    """Bring the local mirror up to date with the bucket."""
    import obstore

    check_url(url)
    t0 = time.monotonic()
    rootp = resolve_root(root)
    st = store if store is not None else open_store(url, endpoint_url)
    metas = _retry(lambda: [m for b in obstore.list(st, prefix="roots/") for m in b])
    groups: dict[str, list[ObjectName]] = {}
    rep = FetchReport()
    for meta in metas:
        name = ObjectName.parse(meta["path"])
        if name is None:
            rep.warnings.append(f"{meta['path']}: not a ledgerx object name, skipped")
            continue
        if meta["size"] != name.end - name.start:
            rep.warnings.append(f"{meta['path']}: {meta['size']} bytes, name says otherwise")
            continue
        groups.setdefault(mirror_rel(name), []).append(name)
    rep.parts = len(groups)
    rep.roots = len({v[0].root_id for v in groups.values()})
    ev = events_dir(mirror_root(rootp))
    ensure_dir(ev)
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="ledgerx-fetch") as pool:
        for n_obj, n_bytes, warn in pool.map(
            lambda item: _sync_part(st, ev, item[0], item[1]), sorted(groups.items())
        ):
            rep.objects += n_obj
            rep.bytes += n_bytes
            rep.warnings.extend(warn)
    rep.seconds = time.monotonic() - t0
    return rep


def _sync_part(st: Any, ev: Path, rel: str, names: list[ObjectName]) -> tuple[int, int, list[str]]:
    """Append to one mirror file the bytes of its objects past its current end."""
    import obstore

    path = ev / rel
    ensure_dir(path.parent)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    objects = nbytes = 0
    warnings: list[str] = []
    try:
        if new:
            fsync_path(path.parent)
        cur = os.fstat(fd).st_size
        for name in sorted(names, key=lambda n: (n.start, -n.end)):
            if name.end <= cur:
                continue  # taken already
            if name.start > cur:
                warnings.append(f"{rel}: bytes {cur}..{name.start} not in the bucket yet")
                break
            data = _retry(lambda n=name: bytes(obstore.get(st, n.key).bytes()))
            if len(data) != name.end - name.start:
                raise RemoteError(f"{name.key}: read {len(data)} bytes, expected a different size")
            tail = data[cur - name.start :]
            if os.write(fd, tail) != len(tail):
                raise LedgerIOError(errno.EIO, "short write", str(path))
            cur = name.end
            objects += 1
            nbytes += len(tail)
        if nbytes:
            os.fsync(fd)
    finally:
        os.close(fd)
    return objects, nbytes, warnings


def rebuild_from_remote(
    root: str | os.PathLike[str] | None,
    url: str,
    *,
    endpoint_url: str | None = None,
    store: Any = None,
    **index_kw: Any,
) -> tuple[FetchReport, Any]:
    """Sync the mirror, then index it into `<root>/index/`: (FetchReport, IndexReport)."""
    from ledgerx.index import build_index
    from ledgerx.index.upcast import default_upcaster

    rootp = resolve_root(root)
    if list_part_files(events_dir(rootp)):
        raise LedgerError(
            f"{rootp} has a local log in events/: index a remote log into a root of its own"
        )
    ensure_dir(events_dir(rootp))  # empty: a root like any other for the CLI and Reader
    fetched = sync_remote(rootp, url, endpoint_url=endpoint_url, store=store)
    index_kw.setdefault("upcaster", default_upcaster(events_dir(rootp)))
    rep = build_index(mirror_root(rootp), db=rootp / "index" / "runs.duckdb", **index_kw)
    return fetched, rep

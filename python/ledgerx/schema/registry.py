"""The schema registry: `events/_schema.json` (docs/schema.md).

File format (read by the Rust writer through `Registry::from_json`, which ignores keys it does
not know):

    {
      "ledgerx_registry": 1,
      "types": {"trial.recorded": {"1": {SCHEMA}, "2": {SCHEMA}}, ...},
      "upcasters": {"trial.recorded": {"1": "my_pkg.upcasts:trial_v1_to_v2"}}
    }

`types` maps each event type to its numbered versions, each a JSON Schema (the subset in
docs/schema.md) for `data`. `upcasters` maps (type, from_version N-1) to the *name* of a function
`(data: dict, from_version: int) -> dict` that lifts `data` from version N-1 to N. The name is
looked up among the upcasters the operator's code or configuration registered
(`ledgerx.schema.upcasters`); nothing is ever imported because this file names it.

Every change is a read-modify-write of the whole file under an exclusive `flock` on
`events/_schema.lock`, published by an atomic rename (temp file, fsync, rename, fsync dir), so
readers never see a torn file and two processes registering at once both land. A published
version is never changed.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ledgerx import _core
from ledgerx.errors import SchemaError
from ledgerx.fsutil import atomic_write, fsync_path, open_lock_file
from ledgerx.schema.names import validate_event_type
from ledgerx.schema.upcasters import (
    Upcaster,
    ensure_known,
    lookup_upcaster,
    register_upcaster,
    upcaster_name,
)

__all__ = [
    "FORMAT_VERSION",
    "LOCK_FILE",
    "REGISTRY_FILE",
    "SchemaRegistry",
    "builtin_registry",
    "ensure_registry",
    "validate_event_type",
]

REGISTRY_FILE = "_schema.json"
LOCK_FILE = "_schema.lock"
FORMAT_VERSION = 1


def builtin_registry() -> dict[str, Any]:
    """A fresh copy of the built-in registry document."""
    doc: dict[str, Any] = json.loads(_core.BUILTIN_REGISTRY)
    doc.setdefault("upcasters", {})
    return doc


def _bind(
    event_type: str, from_version: int, upcaster: Upcaster | str, *, replace: bool = False
) -> str:
    """The name to record for a step: a function is registered in this process under its name;
    a name must already be registered for this step (UnknownUpcasterError otherwise)."""
    if isinstance(upcaster, str):
        lookup_upcaster(upcaster.strip(), event_type, from_version)
        return upcaster.strip()
    return register_upcaster(event_type, from_version, upcaster, replace=replace)


@contextlib.contextmanager
def _exclusive(events_dir: Path) -> Iterator[None]:
    """Hold the registry lock: every read-modify-write of `_schema.json` happens under it."""
    fd = open_lock_file(events_dir / LOCK_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, ensure_ascii=False, allow_nan=False)


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise SchemaError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("types"), dict):
        raise SchemaError(f"{path}: not a ledgerx registry (no 'types' object)")
    fmt = doc.get("ledgerx_registry", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise SchemaError(f"{path}: registry format {fmt!r} is not supported (expected 1)")
    ups = doc.setdefault("upcasters", {})
    if not isinstance(ups, dict):
        raise SchemaError(f"{path}: 'upcasters' must be an object")
    return doc


def broken_types(doc: Mapping[str, Any]) -> dict[str, str]:
    """`{type: reason}` for the entries of a registry document that are not valid (a
    hand-edited file): those types fail closed, every other type stays usable."""
    out: dict[str, str] = {}
    for t, versions in doc["types"].items():
        if (
            not isinstance(versions, dict)
            or not versions
            or not all(isinstance(v, str) and v.isdigit() for v in versions)
        ):
            out[t] = "it must map version numbers to schemas"
            continue
        for v, schema in versions.items():
            try:
                _core.SchemaValidator(json.dumps(schema, allow_nan=False))
            except (SchemaError, TypeError, ValueError) as e:
                out[t] = f"v{v}: {e}"
                break
    return out


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return _parse(text, path)


def ensure_registry(events_dir: str | os.PathLike[str]) -> Path:
    """Create `events/_schema.json` from the built-in registry if it is missing, and add any
    built-in type the file lacks (existing types and versions are never touched).

    Returns the registry path. Called by `ledgerx.open()`.
    """
    events = Path(events_dir)
    path = events / REGISTRY_FILE
    builtin = builtin_registry()
    doc = _read(path) if path.exists() else None
    if doc is not None and all(t in doc["types"] for t in builtin["types"]):
        return path  # the common case: nothing to write, no lock taken
    created = not events.exists()
    events.mkdir(parents=True, exist_ok=True)
    if created:
        fsync_path(events.parent)
    with _exclusive(events):
        doc = _read(path)
        if doc is None:
            doc = builtin
        else:
            missing = [t for t in builtin["types"] if t not in doc["types"]]
            if not missing:
                return path
            for t in missing:
                doc["types"][t] = builtin["types"][t]
        atomic_write(path, _dumps(doc))
    return path


class SchemaRegistry:
    """Versioned JSON Schemas for event `data`, with upcasters, for one ledger's `events/`.

    Reads need no lock (the file is replaced atomically) and are cached until the file changes.
    A root without `_schema.json` reads as the built-in registry; the first write creates it.
    """

    def __init__(
        self,
        events_dir: str | os.PathLike[str],
        on_change: Callable[[], object] | None = None,
    ) -> None:
        self.events_dir = Path(events_dir)
        self.path = self.events_dir / REGISTRY_FILE
        self._on_change = on_change
        self._stamp: tuple[int, int, int] | None = None
        self._doc: dict[str, Any] = {}
        self._newest: dict[str, int] = {}
        self._broken: dict[str, str] = {}
        self._validators: dict[tuple[str, int], _core.SchemaValidator] = {}
        self._upcasters: dict[tuple[str, int], tuple[Upcaster, str]] = {}

    # -- reading -------------------------------------------------------------------------------

    def _current(self) -> dict[str, Any]:
        """The registry document, re-read only when the file changed (stat is cheap)."""
        try:
            st = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp or not self._doc:
            doc = _read(self.path) if stamp is not None else None
            self._set(doc if doc is not None else builtin_registry(), stamp)
        return self._doc

    def _set(self, doc: dict[str, Any], stamp: tuple[int, int, int] | None) -> None:
        self._doc = doc
        self._stamp = stamp
        self._broken = broken_types(doc)
        self._newest = {
            t: max(map(int, vs)) for t, vs in doc["types"].items() if vs and t not in self._broken
        }
        # The file changed (rare): recompile and re-resolve lazily. Modules stay imported.
        self._validators = {}
        self._upcasters = {}

    def _versions_of(self, doc: Mapping[str, Any], event_type: str) -> dict[str, Any]:
        why = (self._broken if doc is self._doc else broken_types(doc)).get(event_type)
        if why is not None:
            raise SchemaError(
                f"{event_type}: its entry in events/_schema.json is invalid ({why}); no event "
                "of this type is written until it is fixed"
            )
        versions = doc["types"].get(event_type)
        if not versions:
            raise SchemaError(f"unknown event type {event_type!r}")
        return versions  # type: ignore[no-any-return]

    def list(self) -> dict[str, list[int]]:
        """Every registered type with its versions, oldest first (types whose entry is invalid
        are left out: see `broken()`)."""
        doc = self._current()
        return {
            t: sorted(map(int, vs))
            for t, vs in sorted(doc["types"].items())
            if t not in self._broken
        }

    def broken(self) -> dict[str, str]:
        """`{type: reason}` of the types whose entry in the file is invalid (they fail closed)."""
        self._current()
        return dict(self._broken)

    def versions(self, event_type: str) -> builtins.list[int]:
        return sorted(map(int, self._versions_of(self._current(), event_type)))

    def newest(self, event_type: str) -> int:
        """The newest version of a type (what `emit()` validates against by default)."""
        self._versions_of(self._current(), event_type)
        return self._newest[event_type]

    def newest_versions(self) -> dict[str, int]:
        """`{event_type: newest version}` for every type."""
        self._current()
        return dict(self._newest)

    def get(self, event_type: str, version: int | None = None) -> dict[str, Any]:
        """The schema (a copy) of the newest version, or of `version`."""
        doc = self._current()
        versions = self._versions_of(doc, event_type)
        v = self._newest[event_type] if version is None else version
        if str(v) not in versions or isinstance(v, bool):
            have = ", ".join(str(x) for x in sorted(map(int, versions)))
            raise SchemaError(f"{event_type}: no version {version!r} (versions: {have})")
        return copy.deepcopy(versions[str(v)])  # type: ignore[no-any-return]

    def upcasters(self) -> dict[str, dict[int, str]]:
        """Recorded upcaster import paths: `{event_type: {from_version: 'module:qualname'}}`."""
        ups = self._current().get("upcasters", {})
        return {t: {int(v): p for v, p in m.items()} for t, m in sorted(ups.items())}

    def validator(self, event_type: str, version: int | None = None) -> _core.SchemaValidator:
        """The compiled validator for a version (cached; versions never change)."""
        doc = self._current()
        if version is None:
            self._versions_of(doc, event_type)
            version = self._newest[event_type]
        key = (event_type, version)
        v = self._validators.get(key)
        if v is None:
            schema = self.get(event_type, version)
            try:
                v = _core.SchemaValidator(json.dumps(schema, allow_nan=False))
            except SchemaError as e:
                raise SchemaError(f"{event_type} v{version}: {e}") from None
            self._validators[key] = v
        return v

    def validate(self, event_type: str, data: Any, version: int | None = None) -> int:
        """Validate `data` like `emit()` does; returns the version checked. Raises SchemaError
        `TYPE vN: data.path: rule`."""
        if version is None:
            self._versions_of(self._current(), event_type)
            version = self._newest[event_type]
        validator = self.validator(event_type, version)
        try:
            validator.validate(data, "data")
        except SchemaError as e:
            raise SchemaError(f"{event_type} v{version}: {e}") from None
        return version

    # -- writing -------------------------------------------------------------------------------

    def register(
        self,
        event_type: str,
        schema: Mapping[str, Any] | bool,
        upcaster: Upcaster | str | None = None,
    ) -> int:
        """Add a type (version 1) or a new version of it; returns the version number.

        Registering a schema identical to the newest version changes nothing and returns that
        version. `upcaster` (for a version N > 1) lifts `data` of version N-1 to N: a function
        (registered in this process under its `module:qualname` by `register_upcaster`) or the
        name of an upcaster already registered. The file records only the name; other processes
        (the indexer, the daemon) find the function through their own registrations
        (`LEDGERX_UPCASTER_MODULES`, entry points; see docs/security.md).
        """
        schema = _checked_schema(event_type, schema, upcaster)
        ensure_registry(self.events_dir)
        with _exclusive(self.events_dir):
            doc = _read(self.path)
            if doc is None:  # deleted between ensure and lock: start again from the built-ins
                doc = builtin_registry()
            if event_type in doc["types"]:
                self._versions_of(doc, event_type)  # an invalid entry is refused, not extended
            version, changed = _add_version(doc, event_type, schema, upcaster)
            if changed:
                atomic_write(self.path, _dumps(doc))
        if changed and self._on_change is not None:
            self._on_change()
        return version

    def register_upcaster(
        self, event_type: str, from_version: int, upcaster: Upcaster | str, *, replace: bool = False
    ) -> None:
        """Record the upcaster that lifts `from_version` to `from_version + 1` (both must exist):
        a function (registered in this process too) or the name of a registered upcaster."""
        if not isinstance(upcaster, str):
            upcaster_name(upcaster)
        ensure_registry(self.events_dir)
        with _exclusive(self.events_dir):
            doc = _read(self.path) or builtin_registry()
            versions = self._versions_of(doc, event_type)
            for v in (from_version, from_version + 1):
                if str(v) not in versions:
                    raise SchemaError(f"{event_type}: no version {v} to attach an upcaster to")
            path = _bind(event_type, from_version, upcaster, replace=replace)
            ups = doc.setdefault("upcasters", {}).setdefault(event_type, {})
            old = ups.get(str(from_version))
            if old == path:
                return
            if old is not None and not replace:
                raise SchemaError(
                    f"{event_type}: v{from_version}->v{from_version + 1} already has upcaster "
                    f"{old} (pass replace=True to change it)"
                )
            ups[str(from_version)] = path
            atomic_write(self.path, _dumps(doc))
        if self._on_change is not None:
            self._on_change()

    # -- upcasting -----------------------------------------------------------------------------

    def load_upcasters(self) -> dict[tuple[str, int], Upcaster]:
        """Resolve every upcaster the file names now: `{(event_type, from_version): function}`.

        Raises UnknownUpcasterError naming the type, versions and name of any that no code or
        configuration registered (nothing is imported because the file names it).
        """
        return {(t, v): self._upcaster(t, v)[0] for t, m in self.upcasters().items() for v in m}

    def _upcaster(self, event_type: str, from_version: int) -> tuple[Upcaster, str]:
        hit = self._upcasters.get((event_type, from_version))
        if hit is not None:
            return hit
        path = self._doc.get("upcasters", {}).get(event_type, {}).get(str(from_version))
        if path is None:
            raise SchemaError(
                f"{event_type}: no upcaster from v{from_version} to v{from_version + 1}; register "
                f"one with register({event_type!r}, schema, upcaster=fn) or "
                f"register_upcaster({event_type!r}, {from_version}, fn)"
            )
        fn = lookup_upcaster(path, event_type, from_version)
        self._upcasters[(event_type, from_version)] = (fn, path)
        return fn, path

    def needs_upcast(self, event_type: str, version: int) -> bool:
        """True when `version` is older than the newest of a known type (cheap; no I/O unless
        the file changed)."""
        self._current()
        newest = self._newest.get(event_type)
        return newest is not None and version < newest

    def upcast(
        self, event_type: str, version: int, data: dict[str, Any], *, validate: bool = True
    ) -> tuple[dict[str, Any], int]:
        """Bring `data` of `version` up to the newest version through the upcaster chain.

        Returns `(data, newest_version)`; data already at the newest version is returned as is.
        Upcasters may mutate and return the dict they get. With `validate`, each step's output
        is checked against the schema of the version it claims to be.
        """
        doc = self._current()
        versions = self._versions_of(doc, event_type)
        newest = self._newest[event_type]
        if (
            isinstance(version, bool)
            or not isinstance(version, int)
            or str(version) not in versions
        ):
            have = ", ".join(str(x) for x in sorted(map(int, versions)))
            raise SchemaError(f"{event_type}: cannot upcast unknown v{version} (versions: {have})")
        v = version
        while v < newest:
            fn, path = self._upcaster(event_type, v)
            try:
                out = fn(data, v)
            except SchemaError:
                raise
            except Exception as e:
                raise SchemaError(
                    f"{event_type}: upcaster v{v}->v{v + 1} ({path}) failed: "
                    f"{type(e).__name__}: {e}"
                ) from e
            if not isinstance(out, dict):
                raise SchemaError(
                    f"{event_type}: upcaster v{v}->v{v + 1} ({path}) returned "
                    f"{type(out).__name__}, not dict"
                )
            v += 1
            if validate:
                try:
                    self.validator(event_type, v).validate(out, "data")
                except SchemaError as e:
                    raise SchemaError(
                        f"{event_type} v{v}: {e} (output of upcaster from v{v - 1})"
                    ) from None
            data = out
        return data, v

    def upcast_json(
        self, event_type: str, version: int, data_json: str | bytes, *, validate: bool = True
    ) -> tuple[str, int]:
        """`upcast` for `data` as JSON text (the index's `data` column); returns JSON text
        serialized like `emit()` does."""
        if not self.needs_upcast(event_type, version):
            text = data_json.decode() if isinstance(data_json, bytes) else data_json
            return text, version
        data, v = self.upcast(event_type, version, json.loads(data_json), validate=validate)
        return _core.to_json(data).decode(), v

    def upcast_rows(
        self, rows: Iterable[tuple[str, int, str | bytes]], *, validate: bool = True
    ) -> builtins.list[tuple[str, int]]:
        """Batch form of `upcast_json`: `(event_type, schema_version, data_json)` in,
        `(data_json, schema_version)` out, in order; rows already newest pass through."""
        return [self.upcast_json(t, v, d, validate=validate) for t, v, d in rows]

    def upcast_arrow(self, batch: Any, *, validate: bool = True) -> Any:
        """Upcast a pyarrow RecordBatch or Table with columns `event_type`, `schema_version`
        and `data` (JSON text), as `scan_files` produces: rows older than the newest version
        get new `data` and `schema_version`; the rest are untouched (no copy when none is old).
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(batch, pa.Table):
            batches = [self.upcast_arrow(b, validate=validate) for b in batch.to_batches()]
            return pa.Table.from_batches(batches, schema=batch.schema)
        self._current()
        old_types = {t: n for t, n in self._newest.items() if n > 1}
        if not old_types or batch.num_rows == 0:
            return batch
        et = batch.column("event_type")
        sv = batch.column("schema_version")
        mask = None
        for t, n in old_types.items():
            m = pc.and_(pc.equal(et, t), pc.less(sv, n))
            mask = m if mask is None else pc.or_(mask, m)
        mask = pc.fill_null(mask, False)
        if not pc.any(mask).as_py():
            return batch
        idx = pc.indices_nonzero(mask)
        data_col = batch.column("data")
        todo = zip(
            pc.take(et, idx).to_pylist(),
            pc.take(sv, idx).to_pylist(),
            pc.take(data_col, idx).to_pylist(),
            strict=True,
        )
        out = self.upcast_rows(todo, validate=validate)
        new_data = pc.replace_with_mask(
            data_col, mask, pa.array([d for d, _ in out], type=data_col.type)
        )
        new_sv = pc.replace_with_mask(sv, mask, pa.array([v for _, v in out], type=sv.type))
        names = batch.schema.names
        cols = [batch.column(i) for i in range(len(names))]
        cols[names.index("data")] = new_data
        cols[names.index("schema_version")] = new_sv
        return pa.RecordBatch.from_arrays(cols, schema=batch.schema)


def _checked_schema(
    event_type: str, schema: Mapping[str, Any] | bool, upcaster: Upcaster | str | None
) -> Any:
    """register()'s checks before any write: the type name, a JSON object or boolean schema in
    the supported subset that accepts an object, a known or nameable upcaster. Returns the
    schema exactly as the file (and the Rust side) will hold it."""
    validate_event_type(event_type)
    if isinstance(schema, Mapping):
        schema = dict(schema)
    elif not isinstance(schema, bool):
        raise SchemaError(
            f"{event_type}: a schema must be a JSON object (dict) or a boolean, "
            f"not {type(schema).__name__}"
        )
    try:
        text = json.dumps(schema, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise SchemaError(f"{event_type}: schema is not JSON: {e}") from None
    try:
        _core.SchemaValidator(text)  # refuses keywords outside the subset, naming them
    except SchemaError as e:
        raise SchemaError(f"{event_type}: schema refused: {e}") from None
    out = json.loads(text)
    if out is False or (
        isinstance(out, dict)
        and "type" in out
        and "object" not in ([out["type"]] if isinstance(out["type"], str) else out["type"])
    ):
        raise SchemaError(f"{event_type}: the schema must accept an object (event data is one)")
    if isinstance(upcaster, str):
        ensure_known(upcaster.strip(), f"{event_type}")
    elif upcaster is not None:
        upcaster_name(upcaster)  # a lambda without a name is refused before any write
    return out


def _add_version(
    doc: dict[str, Any], event_type: str, schema: Any, upcaster: Upcaster | str | None
) -> tuple[int, bool]:
    """Add `schema` to `doc` as the type's next version (or find it is the newest already) and
    bind its upcaster from the previous version. Returns (version, whether `doc` changed)."""
    versions: dict[str, Any] = doc["types"].setdefault(event_type, {})
    newest = max(map(int, versions), default=0)
    changed = True
    if newest and _canonical(versions[str(newest)]) == _canonical(schema):
        version, changed = newest, False
    else:
        version = newest + 1
        versions[str(version)] = schema
    if upcaster is None:
        return version, changed
    if version == 1:
        raise SchemaError(
            f"{event_type} v1: an upcaster lifts version N-1 to N; version 1 has nothing to lift"
        )
    up_path = _bind(event_type, version - 1, upcaster)
    ups = doc.setdefault("upcasters", {}).setdefault(event_type, {})
    old = ups.get(str(version - 1))
    if old is not None and old != up_path:
        raise SchemaError(
            f"{event_type}: v{version - 1}->v{version} already has upcaster {old}; "
            f"not replacing it with {up_path}"
        )
    if old is None:
        ups[str(version - 1)] = up_path
        changed = True
    return version, changed

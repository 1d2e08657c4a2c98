"""Where upcasters come from: the operator's code and configuration, never the data.

`events/_schema.json` may be writable by everyone who may emit events, so it only *names* an
upcaster; nothing is ever imported because that file says so (docs/security.md). A name resolves
to a function only when one of these registered it in this process:

- code: `ledgerx.register_upcaster(event_type, from_version, fn, name=...)` or the
  `@ledgerx.upcaster(event_type, from_version)` decorator;
- configuration: the modules listed in `$LEDGERX_UPCASTER_MODULES` (comma-separated), imported
  on the first lookup that misses; their decorators register what they define;
- installed packages: the `ledgerx.upcasters` entry points, loaded the same way.

Each name is bound to the (event_type, from_version) pairs it was registered for: a registry
that points another type's step at it is refused like an unknown name.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ledgerx._record import field, recordclass
from ledgerx.errors import SchemaError, UnknownUpcasterError
from ledgerx.schema.names import validate_event_type

__all__ = [
    "ENTRY_POINT_GROUP",
    "MODULES_ENV",
    "Upcaster",
    "lookup_upcaster",
    "register_upcaster",
    "registered_upcasters",
    "upcaster",
    "upcaster_name",
]

Upcaster = Callable[[dict[str, Any], int], dict[str, Any]]
F = TypeVar("F", bound=Callable[..., Any])

MODULES_ENV = "LEDGERX_UPCASTER_MODULES"
ENTRY_POINT_GROUP = "ledgerx.upcasters"
HOW = (
    "see docs/security.md: register_upcaster, LEDGERX_UPCASTER_MODULES, the ledgerx.upcasters "
    "entry points"
)

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,199}$")


@recordclass
class _Entry:
    fn: Upcaster
    targets: set[tuple[str, int]] = field(default_factory=set)


_lock = threading.RLock()
_by_name: dict[str, _Entry] = {}
_imported_modules: set[str] = set()
_entry_points_loaded = [False]


def upcaster_name(fn: Upcaster, name: str | None = None) -> str:
    """The name an upcaster is registered under: `name`, else `module:qualname`."""
    if not callable(fn):
        raise SchemaError(f"upcaster must be a function, not {fn!r}")
    if name is None:
        module = getattr(fn, "__module__", None)
        qualname = getattr(fn, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str):
            raise SchemaError(f"upcaster {fn!r} has no module:qualname; pass name=")
        if "<lambda>" in qualname or "<locals>" in qualname:
            raise SchemaError(
                f"upcaster {module}:{qualname} is a lambda or closure; pass name= to register it"
            )
        name = f"{module}:{qualname}"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SchemaError(
            f"upcaster name {name!r} is not valid: letters, digits, '_', '.', ':', '-' "
            "(at most 200)"
        )
    return name


def register_upcaster(
    event_type: str,
    from_version: int,
    fn: Upcaster,
    *,
    name: str | None = None,
    replace: bool = False,
) -> str:
    """Allow `fn` to lift `event_type` data from `from_version` to `from_version + 1` in this
    process, under `name` (default `module:qualname`). Returns the name, which is what
    `_schema.json` records. Registering the same function again (for more steps) is fine;
    another function under a taken name needs `replace=True`."""
    validate_event_type(event_type)
    if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
        raise SchemaError(f"{event_type}: from_version must be an integer >= 1")
    key = upcaster_name(fn, name)
    with _lock:
        entry = _by_name.get(key)
        if entry is not None and entry.fn is not fn:
            if not replace:
                raise SchemaError(
                    f"upcaster name {key!r} is already registered for another function "
                    "(pass replace=True to change it)"
                )
            entry = None
        if entry is None:
            entry = _by_name[key] = _Entry(fn)
        entry.targets.add((event_type, from_version))
    return key


def upcaster(event_type: str, from_version: int, *, name: str | None = None) -> Callable[[F], F]:
    """Decorator form of `register_upcaster`; returns the function unchanged (stackable)."""

    def deco(fn: F) -> F:
        register_upcaster(event_type, from_version, fn, name=name)
        return fn

    return deco


def registered_upcasters() -> dict[str, list[tuple[str, int]]]:
    """`{name: [(event_type, from_version), ...]}` of everything registered in this process."""
    with _lock:
        return {n: sorted(e.targets) for n, e in sorted(_by_name.items())}


def ensure_known(name: str, step: str) -> None:
    """Raise UnknownUpcasterError unless some code or configuration registered `name`."""
    if name not in _by_name:
        _load_configured_sources()
    if name not in _by_name:
        raise UnknownUpcasterError(
            f"{step}: unknown upcaster {name!r}: no upcaster of that name is registered ({HOW})"
        )


def lookup_upcaster(name: object, event_type: str, from_version: int) -> Upcaster:
    """The function registered as `name` for this step. Raises UnknownUpcasterError, never
    imports anything `name` says: a miss loads only the operator's configured sources."""
    step = f"{event_type} v{from_version}->v{from_version + 1}"
    if not isinstance(name, str):
        raise UnknownUpcasterError(f"{step}: upcaster name must be a string, not {name!r}")
    ensure_known(name, step)
    entry = _by_name[name]
    if (event_type, from_version) not in entry.targets:
        have = ", ".join(f"{t} v{v}" for t, v in sorted(entry.targets))
        raise UnknownUpcasterError(
            f"{step}: upcaster {name!r} is registered for {have}, not for this step ({HOW})"
        )
    return entry.fn


def _load_configured_sources() -> None:
    """Import the modules of $LEDGERX_UPCASTER_MODULES not imported yet, and (once) the
    `ledgerx.upcasters` entry points. Both are the operator's choice, not the data's."""
    with _lock:
        for mod in _configured_modules():
            if mod in _imported_modules:
                continue
            _imported_modules.add(mod)
            try:
                importlib.import_module(mod)
            except Exception as e:
                raise SchemaError(f"{MODULES_ENV}: cannot import {mod}: {e}") from e
        if not _entry_points_loaded[0]:
            _entry_points_loaded[0] = True
            from importlib.metadata import entry_points

            for ep in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    ep.load()  # the module's decorators register its upcasters
                except Exception as e:
                    raise SchemaError(
                        f"entry point {ENTRY_POINT_GROUP}:{ep.name} ({ep.value}): cannot load: {e}"
                    ) from e


def _configured_modules() -> list[str]:
    raw = os.environ.get(MODULES_ENV, "")
    mods = [m.strip() for m in raw.split(",") if m.strip()]
    for m in mods:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", m):
            raise SchemaError(f"{MODULES_ENV}: {m!r} is not a module name")
    return mods

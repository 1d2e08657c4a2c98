"""`recordclass`: the data classes of the indexing path (`IndexReport`, `IndexPaths`, …)
without `dataclasses`. Importing dataclasses (with inspect, ast, dis and tokenize) and generating
each class's methods (an `exec` per method) cost ~60 M instructions of a one-event `ledgerx
rebuild` process, about a tenth of it. A `recordclass` class gets what `@dataclass` gave these
classes: the constructor (fields in annotation order, defaults, `field(default_factory=...)`),
`==` between instances of the same class, `repr` and, with `frozen=True`, a hash and fields that
cannot be assigned. The methods are shared functions that read the class's field list: nothing
is compiled per class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ledgerx.errors import FrozenInstanceError

T = TypeVar("T")
C = TypeVar("C", bound=type)

if TYPE_CHECKING:  # typing has it from Python 3.11; type checkers know it from here
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_: Any) -> Callable[[T], T]:
        return lambda f: f


_MISSING: Any = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is made for each instance (`dataclasses.field(default_factory=)`)."""
    return _Factory(default_factory)  # type: ignore[return-value]


@overload
def recordclass(cls: type[T], /) -> type[T]: ...
@overload
def recordclass(*, frozen: bool = False) -> Callable[[type[T]], type[T]]: ...
@dataclass_transform(field_specifiers=(field,))  # type checkers: a dataclass
def recordclass(cls: C | None = None, /, *, frozen: bool = False) -> Any:
    """`@recordclass` or `@recordclass(frozen=True)` on a class whose fields are its annotations."""

    def wrap(c: C) -> C:
        return _make(c, frozen)

    return wrap if cls is None else wrap(cls)


def _make(c: C, frozen: bool) -> C:
    names = tuple(c.__dict__.get("__annotations__", {}))
    defaults: dict[str, Any] = {}
    for n in names:
        v = c.__dict__.get(n, _MISSING)
        if isinstance(v, _Factory):
            delattr(c, n)  # as dataclasses: no class attribute for a factory field
        elif v is _MISSING and any(d is not _MISSING for d in defaults.values()):
            raise TypeError(f"non-default field {n!r} follows a field with a default")
        defaults[n] = v
    c.__record_fields__ = names  # type: ignore[attr-defined]
    c.__record_defaults__ = defaults  # type: ignore[attr-defined]
    c.__match_args__ = names  # type: ignore[attr-defined, misc]
    methods: dict[str, Any] = {"__init__": _init, "__repr__": _repr, "__eq__": _eq}
    if frozen:
        methods.update(__setattr__=_frozen, __delattr__=_frozen, __hash__=_hash)
    for k, f in methods.items():
        if k not in c.__dict__:  # a method the class defines itself stays, as with dataclasses
            setattr(c, k, f)
    if not frozen and "__hash__" not in c.__dict__:
        c.__hash__ = None  # type: ignore[assignment]  # mutable and compared by value
    return c


def _init(self: Any, *args: Any, **kw: Any) -> None:
    cls = type(self)
    names: tuple[str, ...] = cls.__record_fields__
    if len(args) > len(names):
        raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, {len(args)} given")
    defaults = cls.__record_defaults__
    for i, n in enumerate(names):
        if i < len(args):
            if n in kw:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {n!r}")
            v = args[i]
        elif n in kw:
            v = kw.pop(n)
        else:
            v = defaults[n]
            if v is _MISSING:
                raise TypeError(f"{cls.__name__}() missing required argument: {n!r}")
            if type(v) is _Factory:
                v = v.make()
        object.__setattr__(self, n, v)
    if kw:
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {next(iter(kw))!r}")


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, n) for n in type(self).__record_fields__)


def _repr(self: Any) -> str:
    fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in type(self).__record_fields__)
    return f"{type(self).__qualname__}({fields})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _frozen(self: Any, name: str, *value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")

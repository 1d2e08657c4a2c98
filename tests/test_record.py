"""`ledgerx._record.recordclass` against `dataclasses.dataclass`: the same class written both
ways behaves the same (constructor, defaults, factories, errors, ==, repr, hash, frozen)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ledgerx._record import field, recordclass
from ledgerx.errors import FrozenInstanceError


def _pair(frozen: bool) -> tuple[type, type]:
    @dataclasses.dataclass(frozen=frozen)
    class D:
        a: int
        b: str = "x"
        c: list[int] = dataclasses.field(default_factory=list)

        def total(self) -> int:
            return self.a + len(self.c)

    @recordclass(frozen=frozen)
    class R:
        a: int
        b: str = "x"
        c: list[int] = field(default_factory=list)

        def total(self) -> int:
            return self.a + len(self.c)

    return D, R


def _outcome(f: Any, x: Any) -> Any:
    try:
        return f(x)
    except TypeError as e:
        return type(e)


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1,), {}),
    ((1, "y"), {}),
    ((1, "y", [2, 3]), {}),
    ((), {"a": 1}),
    ((1,), {"c": [4]}),
    ((), {"c": [4], "a": 2, "b": "z"}),
]
BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1, "y", [], 4), {}),
    ((1,), {"a": 2}),
    ((1,), {"d": 2}),
    ((), {"b": "y"}),
]


@pytest.mark.parametrize("frozen", [False, True])
def test_recordclass_behaves_as_dataclass(frozen: bool) -> None:
    D, R = _pair(frozen)
    for args, kw in CALLS:
        d, r = D(*args, **kw), R(*args, **kw)
        assert [d.a, d.b, d.c, d.total()] == [r.a, r.b, r.c, r.total()]
        assert repr(r) == repr(d).replace("D(", "R(", 1).replace(".D(", ".R(")
        assert vars(r) == vars(d)
        assert r == R(*args, **kw) and not (r != R(*args, **kw))
        assert r != R(a=r.a + 1, b=r.b, c=r.c)
        assert r != d  # another class: never equal
        assert _outcome(hash, d) == _outcome(hash, r)  # a frozen one with a list: TypeError
        if frozen:
            assert _outcome(hash, R(r.a, r.b, tuple(r.c))) == _outcome(
                hash, D(d.a, d.b, tuple(d.c))
            )
            with pytest.raises(FrozenInstanceError):
                r.a = 5
            with pytest.raises(AttributeError):
                del r.b
        else:
            r.a = 7
            assert r.a == 7
    assert R(1).c is not R(1).c  # a fresh default per instance
    assert "c" not in R.__dict__ and R.__dict__["b"] == "x"
    for args, kw in BAD_CALLS:
        with pytest.raises(TypeError):
            D(*args, **kw)
        with pytest.raises(TypeError):
            R(*args, **kw)


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError):

        @recordclass
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


def test_indexing_process_imports_no_dataclasses() -> None:
    from conftest import run_py

    r = run_py(
        "import sys\n"
        "import ledgerx.index.indexer, ledgerx.legacy, ledgerx.cli.index_cmds\n"
        "from ledgerx.schema import SchemaRegistry\n"
        "print([m for m in ('dataclasses', 'inspect') if m in sys.modules])\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"

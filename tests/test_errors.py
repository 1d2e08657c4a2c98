"""One error hierarchy (issue 14, item 3): every exception derives from `ledgerx.LedgerError`,
the Rust extension raises the classes of `ledgerx.errors` (tracebacks name `ledgerx.X`),
configuration mistakes are `ConfigError`, and `SchemaError` says where the event went wrong."""

from __future__ import annotations

import ast
import builtins
import errno
import importlib
import inspect
import json
import pickle
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ledgerx
from ledgerx import _core

from conftest import REPO, run_py

GOOD = {"trial_id": 1, "params": {}, "metrics": {"sharpe": 1.0}}
PKG = REPO / "python" / "ledgerx"

# Builtin exceptions the package may still raise, each for a reason that is not bad input.
RAISE_ALLOWED = {
    ("strictjson.py", "ValueError"): "json object_pairs_hook: callers turn it into their error",
    ("demo.py", "RuntimeError"): "the demo's simulated user failure inside a run",
    ("__init__.py", "AttributeError"): "module __getattr__ protocol",
    ("retention.py", "AttributeError"): "module __getattr__ protocol (ARCHIVE_SCHEMA, lazily)",
    # The constructor of the index's internal records answers a wrong call as Python's own
    # (a dataclass's) constructor does: a programming error inside ledgerx, never user input.
    ("_record.py", "TypeError"): "call protocol of recordclass constructors",
    # An unreachable line after a retry loop, for the type checker.
    ("reader.py", "AssertionError"): "unreachable",
    ("ship.py", "AssertionError"): "unreachable",
}


def _modules() -> list[str]:
    return ["ledgerx"] + [
        m.name
        for m in pkgutil.walk_packages([str(PKG)], prefix="ledgerx.")
        if m.name != "ledgerx.__main__"
    ]


def test_every_exception_class_derives_from_ledger_error() -> None:
    found = {}
    for name in _modules():
        mod = importlib.import_module(name)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("ledgerx"):
                found[cls.__qualname__] = cls
    assert {"SchemaError", "ConfigError", "CommitError", "CliError", "MigrationError"} <= set(found)
    strays = [n for n, c in found.items() if not issubclass(c, ledgerx.LedgerError)]
    assert strays == []


def test_no_bare_builtin_exceptions_are_raised() -> None:
    builtin = set(dir(builtins))
    strays = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = exc.id if isinstance(exc, ast.Name) else None
                if name in builtin and name.endswith(("Error", "Exception")):
                    if (path.name, name) not in RAISE_ALLOWED:
                        strays.append(f"{path.relative_to(PKG)}:{node.lineno} raise {name}")
    assert strays == []


def test_the_extension_raises_the_public_classes() -> None:
    # _core defines no exception classes of its own any more.
    assert not [n for n in dir(_core) if n.endswith("Error")]
    for cls in (ledgerx.SchemaError, ledgerx.ConfigError, ledgerx.LedgerIOError):
        assert cls.__module__ == "ledgerx"
        assert getattr(ledgerx, cls.__name__) is cls


def test_traceback_names_ledgerx_schema_error(root: Path) -> None:
    r = run_py(
        "import sys, ledgerx\nledgerx.open(sys.argv[1]).emit('trial.recorded', {'trial_id': 1})\n",
        str(root),
    )
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last == (
        "ledgerx.SchemaError: trial.recorded v1: data: missing required field 'params'"
    ), r.stderr


@pytest.mark.parametrize(
    "etype, data, kw, want",
    [
        (
            "trial.recorded",
            {**GOOD, "metrics": {"sharpe": "high"}},
            {},
            ("trial.recorded", 1, "data.metrics.sharpe"),
        ),
        (
            "trial.recorded",
            {**GOOD, "params": {"x": [1, float("nan")]}},
            {},
            ("trial.recorded", 1, "data.params.x[1]"),
        ),
        ("trial.recorded", [1], {}, ("trial.recorded", 1, "data")),
        ("trial.nope", GOOD, {}, ("trial.nope", None, None)),
        ("trial.recorded", GOOD, {"schema_version": 9}, ("trial.recorded", 9, None)),
        ("trial.recorded", {**GOOD, "b": "x" * 600}, {}, ("trial.recorded", 1, None)),
    ],
)
def test_schema_error_says_which_event_and_where(
    root: Path, etype: str, data: object, kw: dict, want: tuple
) -> None:
    with ledgerx.open(root, max_event_bytes=500) as ledger:
        with pytest.raises(ledgerx.SchemaError) as err:
            ledger.emit(etype, data, **kw)  # type: ignore[arg-type]
    e = err.value
    assert (e.event_type, e.version, e.path) == want
    assert isinstance(e, ledgerx.LedgerError) and isinstance(e, ValueError)
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), str(back), back.path) == (type(e), str(e), e.path)


def test_schema_validator_errors_carry_the_path() -> None:
    v = _core.SchemaValidator(json.dumps({"properties": {"a": {"items": {"type": "integer"}}}}))
    with pytest.raises(ledgerx.SchemaError) as err:
        v.validate({"a": [1, "x"]}, "doc")
    assert err.value.path == "doc.a[1]"
    assert str(err.value) == "doc.a[1]: expected integer, got string"


@pytest.mark.parametrize(
    "make",
    [
        lambda root: ledgerx.open(root, durability="sometimes"),
        lambda root: _core.Writer(str(root), durability="sometimes"),
        lambda root: ledgerx.open(root, max_part_bytes=0),
        lambda root: _core.Writer(str(root), max_event_bytes=0),
        lambda root: ledgerx.open(root, commit_interval_ms=-1),
        lambda root: ledgerx.open(root, commit_interval_ms=2.5),
        lambda root: ledgerx.open(root, max_event_bytes="16MiB"),
        lambda root: ledgerx.open(root, max_part_bytes=2**64),
    ],
    ids=[
        "python durability",
        "core durability",
        "max_part_bytes",
        "max_event_bytes",
        "negative interval",
        "float interval",
        "string size",
        "huge size",
    ],
)
def test_configuration_mistakes_are_config_errors(root: Path, make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ledgerx.ConfigError) as err:
        make(root)
    assert not isinstance(err.value, ledgerx.SchemaError)
    assert isinstance(err.value, ValueError) and isinstance(err.value, ledgerx.LedgerError)
    assert not (root / "events").exists() or not list((root / "events").glob("day=*"))


# The child emits 3 events, flushes (fdatasync #1 succeeds), emits 3 more and flushes again:
# fdatasync #2 fails, so exactly those 3 queued events are lost.
COMMIT_CHILD = """
import json, sys, ledgerx
led = ledgerx.open(sys.argv[1], durability="group", commit_interval_ms=10000)
for i in range(3):
    led.emit("run.heartbeat", {"i": i}, run_id="c")
led.flush()
for i in range(3, 6):
    led.emit("run.heartbeat", {"i": i}, run_id="c")
try:
    led.flush()
    out = None
except ledgerx.CommitError as e:
    out = [type(e).__name__, e.lost, e.errno, isinstance(e, ledgerx.LedgerIOError), str(e)]
json.dump(out, open(sys.argv[2], "w"))
"""


def test_a_failed_group_commit_says_how_many_events_were_lost(root: Path, tmp_path: Path) -> None:
    ledgerx.open(root).close()
    out = tmp_path / "out.json"
    r = subprocess.run(
        ["strace", "-qq", "-f", "-o", "/dev/null", "-e", "trace=fdatasync",
         "-e", "inject=fdatasync:error=EIO:when=2", sys.executable, "-c", COMMIT_CHILD,
         str(root), str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.exists(), r.stderr
    name, lost, errno_, is_io, msg = json.loads(out.read_text())
    assert (name, lost, errno_, is_io) == ("CommitError", 3, 5, True)
    assert "(3 queued events not made durable)" in msg and "/events/day=" in msg


# Two threads of one process emit into the same group commit, whose fdatasync (#2) fails. The
# first thread's flush() raises; the second thread's flush() afterwards must raise too (its event
# was in the failed batch), not return as if its event were durable.
THREADS_CHILD = """
import json, sys, threading, ledgerx
led = ledgerx.open(sys.argv[1], durability="group", commit_interval_ms=60000)
led.emit("run.heartbeat", {"i": 0}, run_id="c")
led.flush()
b_emitted, a_flushed, out = threading.Event(), threading.Event(), {}
def flush(name):
    try:
        led.flush()
        out[name] = None
    except ledgerx.CommitError as e:
        out[name] = [e.errno, e.lost]
def a():
    led.emit("run.heartbeat", {"i": 1}, run_id="c")
    b_emitted.wait(60)
    flush("a")
    a_flushed.set()
def b():
    led.emit("run.heartbeat", {"i": 2}, run_id="c")
    b_emitted.set()
    a_flushed.wait(60)
    flush("b")
ts = [threading.Thread(target=a), threading.Thread(target=b)]
for t in ts:
    t.start()
for t in ts:
    t.join()
json.dump(out, open(sys.argv[2], "w"))
"""


def test_a_failed_group_commit_is_raised_to_every_thread_whose_events_it_held(
    root: Path, tmp_path: Path
) -> None:
    ledgerx.open(root).close()
    out = tmp_path / "out.json"
    r = subprocess.run(
        ["strace", "-qq", "-f", "-o", "/dev/null", "-e", "trace=fdatasync",
         "-e", "inject=fdatasync:error=EIO:when=2", sys.executable, "-c", THREADS_CHILD,
         str(root), str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.exists(), r.stderr
    assert json.loads(out.read_text()) == {"a": [5, 2], "b": [5, 2]}


def test_an_fsync_line_is_not_reported_durable_after_its_part_was_abandoned(root: Path) -> None:
    """fsync mode, several threads: another thread's fdatasync of the part fails after this
    line's write() and before this emit's own fdatasync. That later fdatasync may succeed and
    still not cover bytes the failure dropped, so the emit must raise (EIO), not return. The
    hook abandons the part exactly there, as the other thread's failure does."""
    w = _core.Writer(str(root), durability="fsync")
    try:
        w.emit("run.heartbeat", {"i": 0}, run_id="c")
        w._abandon_after_write(True)
        with pytest.raises(ledgerx.LedgerIOError) as e:
            w.emit("run.heartbeat", {"i": 1}, run_id="c")
        assert e.value.errno == errno.EIO
        w._abandon_after_write(False)
        w.emit("run.heartbeat", {"i": 2}, run_id="c")  # a new part
    finally:
        w.close()
    parts = sorted((root / "events").glob("day=*/*.jsonl"))
    assert len(parts) == 2

"""The schema registry (docs/schema.md): `events/_schema.json`, versions, upcasters, atomic writes
under a lock, and the Rust writer picking up registrations from other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ledgerx import _core
from ledgerx.errors import SchemaError, UnknownUpcasterError
from ledgerx.schema import SchemaRegistry, ensure_registry, register_upcaster, upcaster_name

import schema_upcasters
from conftest import run_py

TESTS_DIR = str(Path(__file__).resolve().parent)

TRIAL_V2 = {
    "type": "object",
    "required": ["trial_id", "parameters", "metrics", "source"],
    "properties": {
        "trial_id": {"type": ["integer", "string"]},
        "parameters": {"type": "object"},
        "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
        "source": {"type": "string"},
    },
}
TRIAL_V3 = {
    **TRIAL_V2,
    "properties": {**TRIAL_V2["properties"], "trial_id": {"type": "string"}},
}


def events(root: Path) -> Path:
    return root / "events"


def stored(root: Path) -> dict[str, Any]:
    return json.loads((events(root) / "_schema.json").read_text())  # type: ignore[no-any-return]


def test_ensure_registry_seeds_builtins_once(root: Path) -> None:
    path = ensure_registry(events(root))
    assert path == events(root) / "_schema.json"
    doc = stored(root)
    builtin = json.loads(_core.BUILTIN_REGISTRY)
    assert doc["ledgerx_registry"] == 1
    assert doc["types"] == builtin["types"]
    st = path.stat()
    ensure_registry(events(root))  # nothing missing: the file is not rewritten
    st2 = path.stat()
    assert (st.st_ino, st.st_mtime_ns) == (st2.st_ino, st2.st_mtime_ns)
    assert not [p for p in events(root).iterdir() if p.name.endswith(".tmp")]


def test_ensure_registry_adds_missing_builtins_and_keeps_the_rest(root: Path) -> None:
    events(root).mkdir(parents=True)
    custom = {"type": "object", "properties": {"x": {"type": "integer"}}}
    doc = {"ledgerx_registry": 1, "types": {"trial.recorded": {"1": custom}, "my.thing": {"1": {}}}}
    (events(root) / "_schema.json").write_text(json.dumps(doc))
    ensure_registry(events(root))
    got = stored(root)
    assert got["types"]["trial.recorded"] == {"1": custom}, "an existing type is never touched"
    assert got["types"]["my.thing"] == {"1": {}}
    assert set(json.loads(_core.BUILTIN_REGISTRY)["types"]) <= set(got["types"])


def test_missing_file_reads_as_builtins_without_writing(root: Path) -> None:
    reg = SchemaRegistry(events(root))
    assert reg.list()["trial.recorded"] == [1]
    assert reg.get("run.failed")["required"] == ["error"]
    assert not events(root).exists()


def test_register_versions_get_list(root: Path) -> None:
    reg = SchemaRegistry(events(root))
    s1 = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    assert reg.register("my.event", s1) == 1
    st = (events(root) / "_schema.json").stat()
    assert reg.register("my.event", dict(reversed(list(s1.items())))) == 1, "same schema: no-op"
    st2 = (events(root) / "_schema.json").stat()
    assert (st.st_ino, st.st_mtime_ns) == (st2.st_ino, st2.st_mtime_ns), "no-op writes nothing"
    s2 = {**s1, "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    assert reg.register("my.event", s2) == 2
    assert reg.register("my.event", s1) == 3, "re-registering an older schema is a new version"
    assert reg.versions("my.event") == [1, 2, 3]
    assert reg.newest("my.event") == 3
    assert reg.get("my.event") == s1
    assert reg.get("my.event", 2) == s2
    assert reg.list()["my.event"] == [1, 2, 3]
    assert reg.list()["trial.recorded"] == [1]
    # get() hands out copies: mutating one changes nothing stored
    reg.get("my.event", 1)["properties"]["a"]["type"] = "string"
    assert reg.get("my.event", 1) == s1
    # a fresh instance (another process) sees the same, and the file holds it
    assert SchemaRegistry(events(root)).list()["my.event"] == [1, 2, 3]
    assert stored(root)["types"]["my.event"] == {"1": s1, "2": s2, "3": s1}
    assert reg.register("my.open", True) == 1
    assert reg.get("my.open") is True


def test_published_versions_never_change(root: Path) -> None:
    reg = SchemaRegistry(events(root))
    reg.register("my.event", {"type": "object", "title": "one"})
    before = (events(root) / "_schema.json").read_text()
    v1 = json.loads(before)["types"]["my.event"]["1"]
    for i in range(3):
        reg.register("my.event", {"type": "object", "title": f"next {i}"})
    after = stored(root)
    assert after["types"]["my.event"]["1"] == v1
    for t, versions in json.loads(before)["types"].items():
        for v, s in versions.items():
            assert after["types"][t][v] == s


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        (
            {"type": "object", "properties": {"a": {"pattern": "^x"}}},
            "unsupported keyword 'pattern'",
        ),
        ({"type": "object", "oneOf": [{}]}, "unsupported keyword 'oneOf'"),
        ({"$ref": "#/x"}, "unsupported keyword '$ref'"),
        ({"properties": {"a": {"items": {"minItems": 1}}}}, "unsupported keyword 'minItems'"),
        ({"properties": {"t": {"format": "email"}}}, "unsupported format 'email'"),
        ({"type": "object", "minimum": "3"}, "'minimum' must be a number"),
        ({"type": "objekt"}, "unknown type"),
        ({"type": "string"}, "must accept an object"),
        ({"type": ["array", "null"]}, "must accept an object"),
        (False, "must accept an object"),
        ([{"type": "object"}], "must be a JSON object"),
        ({"type": "object", "maximum": float("nan")}, "not JSON"),
    ],
)
def test_register_refuses_bad_schemas_naming_the_problem(
    root: Path, schema: Any, needle: str
) -> None:
    reg = SchemaRegistry(events(root))
    with pytest.raises(SchemaError) as ei:
        reg.register("my.event", schema)
    assert needle in str(ei.value)
    assert "my.event" in str(ei.value)
    assert "my.event" not in reg.list()


@pytest.mark.parametrize(
    "name",
    ["trial", "Trial.recorded", "trial..recorded", "trial.", ".x", "1a.b", "a.b-c", "a b.c", ""],
)
def test_register_refuses_bad_type_names(root: Path, name: str) -> None:
    with pytest.raises(SchemaError, match="invalid event type"):
        SchemaRegistry(events(root)).register(name, {"type": "object"})


def test_good_type_names(root: Path) -> None:
    reg = SchemaRegistry(events(root))
    for name in ["a.b", "my_app.order_filled", "x1.y2.z3"]:
        assert reg.register(name, {}) == 1


def test_validate_messages_name_type_version_path_and_rule(root: Path) -> None:
    reg = SchemaRegistry(events(root))
    bad = {"trial_id": 1, "params": {}, "metrics": {"sharpe": "high"}}
    with pytest.raises(SchemaError) as ei:
        reg.validate("trial.recorded", bad)
    assert str(ei.value) == "trial.recorded v1: data.metrics.sharpe: expected number, got string"
    reg.register("my.event", {"properties": {"xs": {"items": {"type": "integer"}}}})
    with pytest.raises(SchemaError) as ei:
        reg.validate("my.event", {"xs": [1, 2, 2.5]})
    assert str(ei.value) == "my.event v1: data.xs[2]: expected integer, got number"
    with pytest.raises(SchemaError, match="unknown event type 'no.such'"):
        reg.validate("no.such", {})
    assert reg.validate("my.event", {"xs": [1]}) == 1
    # the Rust writer says the same for the same event
    w = _core.Writer(str(root))
    try:
        with pytest.raises(SchemaError) as ei:
            w.emit("trial.recorded", bad, run_id="r1")
        assert (
            str(ei.value) == "trial.recorded v1: data.metrics.sharpe: expected number, got string"
        )
    finally:
        w.close()


def test_corrupt_registry_is_a_clear_error(root: Path) -> None:
    events(root).mkdir(parents=True)
    (events(root) / "_schema.json").write_text('{"types": ')
    with pytest.raises(SchemaError, match=r"_schema\.json: not valid JSON"):
        SchemaRegistry(events(root)).list()
    # One bad entry fails closed for its type only (docs/security.md): listed as broken.
    (events(root) / "_schema.json").write_text('{"types": {"a.b": {"one": {}}, "c.d": {"1": {}}}}')
    reg = SchemaRegistry(events(root))
    assert reg.list() == {"c.d": [1]}
    assert reg.broken() == {"a.b": "it must map version numbers to schemas"}
    with pytest.raises(SchemaError, match="a.b: its entry in events/_schema.json is invalid"):
        reg.versions("a.b")


def test_writes_leave_no_temp_files_and_use_the_lock_file(root: Path) -> None:
    reg = SchemaRegistry(events(root))
    for i in range(5):
        reg.register("my.event", {"title": str(i)})
    names = sorted(p.name for p in events(root).iterdir())
    assert names == ["_schema.json", "_schema.lock"]


def test_on_change_is_called_for_real_changes_only(root: Path) -> None:
    calls: list[int] = []
    reg = SchemaRegistry(events(root), on_change=lambda: calls.append(1))
    reg.register("my.event", {})
    reg.register("my.event", {})
    assert calls == [1]
    reg.register("my.event", {"title": "v2"})
    assert calls == [1, 1]


# -- the Rust writer sees registrations ----------------------------------------------------------

REGISTER_IN_CHILD = """
import json, sys
from ledgerx.schema import SchemaRegistry
reg = SchemaRegistry(sys.argv[1])
print(reg.register(sys.argv[2], json.loads(sys.argv[3])))
"""


def _emitted(root: Path) -> list[dict[str, Any]]:
    out = []
    for part in sorted(events(root).glob("day=*/part-*.jsonl")):
        out += [json.loads(line) for line in part.read_text().splitlines()]
    return out


def test_emit_after_another_process_registers_a_new_type(root: Path) -> None:
    ensure_registry(events(root))
    w = _core.Writer(str(root))
    try:
        with pytest.raises(SchemaError, match="unknown event type"):
            w.emit("orders.filled", {"qty": 3})
        schema = {"type": "object", "required": ["qty"], "properties": {"qty": {"type": "integer"}}}
        r = run_py(REGISTER_IN_CHILD, str(events(root)), "orders.filled", json.dumps(schema))
        assert r.returncode == 0, r.stderr
        w.emit("orders.filled", {"qty": 3})  # unknown type: the writer re-reads the file now
        with pytest.raises(SchemaError, match=r"orders.filled v1: data.qty: expected integer"):
            w.emit("orders.filled", {"qty": "3"})
        w.flush()
    finally:
        w.close()
    ev = [e for e in _emitted(root) if e["event_type"] == "orders.filled"]
    assert [(e["schema_version"], e["data"]) for e in ev] == [(1, {"qty": 3})]


def test_writer_picks_up_a_new_version_from_another_process(root: Path) -> None:
    ensure_registry(events(root))
    w = _core.Writer(str(root))
    try:
        w.emit("trial.recorded", {"trial_id": 1, "params": {}, "metrics": {}}, run_id="r1")
        r = run_py(REGISTER_IN_CHILD, str(events(root)), "trial.recorded", json.dumps(TRIAL_V2))
        assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr
        # The writer looks at the file's mtime at most once a second: wait for the condition
        # (a v2-only event is accepted), not for a guessed time. Rejected tries write nothing.
        deadline = time.monotonic() + 30
        while True:
            try:
                w.emit(
                    "trial.recorded",
                    {"trial_id": 3, "parameters": {}, "metrics": {}, "source": "x"},
                    run_id="r1",
                )
                break
            except SchemaError as e:
                assert "v1" in str(e) and time.monotonic() < deadline, e
                time.sleep(0.05)  # poll interval
        with pytest.raises(SchemaError, match="trial.recorded v2: data: missing required field"):
            w.emit("trial.recorded", {"trial_id": 2, "params": {}, "metrics": {}}, run_id="r1")
        # an old version is still accepted when named
        w.emit(
            "trial.recorded",
            {"trial_id": 4, "params": {}, "metrics": {}},
            schema_version=1,
            run_id="r1",
        )
        w.flush()
    finally:
        w.close()
    got = [(e["data"]["trial_id"], e["schema_version"]) for e in _emitted(root)]
    assert got == [(1, 1), (3, 2), (4, 1)]


def test_on_change_reloads_the_writer_at_once(root: Path) -> None:
    ensure_registry(events(root))
    w = _core.Writer(str(root))
    try:
        reg = SchemaRegistry(events(root), on_change=w.reload_schemas)
        w.emit("trial.recorded", {"trial_id": 1, "params": {}, "metrics": {}}, run_id="r1")
        assert reg.register("trial.recorded", TRIAL_V2) == 2
        with pytest.raises(SchemaError, match="trial.recorded v2"):
            w.emit("trial.recorded", {"trial_id": 2, "params": {}, "metrics": {}}, run_id="r1")
    finally:
        w.close()


# -- two processes registering at once -----------------------------------------------------------

REGISTER_MANY = """
import os, sys, time
from ledgerx.schema import SchemaRegistry
events, name, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
reg = SchemaRegistry(events)
open(go + "." + name, "w").close()  # ready
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(n):
    assert reg.register(f"{name}.t{i}", {"type": "object", "title": name}) == 1
    reg.register("shared.both", {"type": "object", "title": f"{name}-{i}"})
"""


def test_two_processes_registering_at_once_both_land(root: Path) -> None:
    ensure_registry(events(root))
    n = 40
    go = root / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER_MANY, str(events(root)), name, str(n), str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("alpha", "beta")
    ]
    # both children started and wait at the gate: then open it, so they really race
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{name}").exists() for name in ("alpha", "beta")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()
    reads = 0
    while any(p.poll() is None for p in procs):
        # a reader without the lock never sees a torn or half-written file
        doc = json.loads((events(root) / "_schema.json").read_text())
        assert "types" in doc
        reads += 1
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    doc = stored(root)
    for name in ("alpha", "beta"):
        for i in range(n):
            assert doc["types"][f"{name}.t{i}"] == {"1": {"type": "object", "title": name}}
    shared = doc["types"]["shared.both"]
    assert sorted(map(int, shared)) == list(range(1, 2 * n + 1)), "versions are 1..2n, no gaps"
    titles = sorted(s["title"] for s in shared.values())
    assert titles == sorted(f"{name}-{i}" for name in ("alpha", "beta") for i in range(n))
    assert reads > 0
    # the Rust side can load the result
    w = _core.Writer(str(root))
    try:
        w.emit("shared.both", {})
        w.emit("beta.t39", {})
    finally:
        w.close()


# -- upcasters -----------------------------------------------------------------------------------


def _trial_chain(root: Path, reg: SchemaRegistry | None = None) -> SchemaRegistry:
    reg = reg or SchemaRegistry(events(root))
    assert reg.register("trial.recorded", TRIAL_V2, upcaster=schema_upcasters.trial_v1_to_v2) == 2
    assert reg.register("trial.recorded", TRIAL_V3, upcaster="schema_upcasters:trial_v2_to_v3") == 3
    return reg


def test_upcaster_paths_are_recorded(root: Path) -> None:
    reg = _trial_chain(root)
    assert stored(root)["upcasters"] == {
        "trial.recorded": {
            "1": "schema_upcasters:trial_v1_to_v2",
            "2": "schema_upcasters:trial_v2_to_v3",
        }
    }
    assert reg.upcasters() == {
        "trial.recorded": {
            1: "schema_upcasters:trial_v1_to_v2",
            2: "schema_upcasters:trial_v2_to_v3",
        }
    }
    fns = reg.load_upcasters()
    assert fns == {
        ("trial.recorded", 1): schema_upcasters.trial_v1_to_v2,
        ("trial.recorded", 2): schema_upcasters.trial_v2_to_v3,
    }


def test_upcast_applies_the_chain_to_the_newest_version(root: Path) -> None:
    reg = _trial_chain(root)
    v1 = {"trial_id": 7, "params": {"w": 3}, "metrics": {"sharpe": 1.5}}
    data, v = reg.upcast("trial.recorded", 1, v1)
    assert v == 3
    assert data == {
        "trial_id": "7",
        "parameters": {"w": 3},
        "metrics": {"sharpe": 1.5},
        "source": "upcast",
    }
    v2 = {"trial_id": 8, "parameters": {}, "metrics": {}, "source": "s"}
    assert reg.upcast("trial.recorded", 2, v2) == ({**v2, "trial_id": "8"}, 3)
    v3 = {"trial_id": "9", "parameters": {}, "metrics": {}, "source": "s"}
    got, v = reg.upcast("trial.recorded", 3, v3)
    assert got is v3 and v == 3, "newest data passes through untouched"
    assert reg.needs_upcast("trial.recorded", 1) and not reg.needs_upcast("trial.recorded", 3)
    assert not reg.needs_upcast("no.such", 1)
    text, v = reg.upcast_json("trial.recorded", 1, json.dumps(v1))
    assert v == 3 and json.loads(text)["trial_id"] == "7"
    assert reg.upcast_json("trial.recorded", 3, b'{"a":1}') == ('{"a":1}', 3)
    rows = [("trial.recorded", 1, json.dumps(v1)), ("run.failed", 1, '{"error":"x"}')]
    out = reg.upcast_rows(rows)
    assert [v for _, v in out] == [3, 1]
    assert json.loads(out[0][0])["parameters"] == {"w": 3}
    assert out[1][0] == '{"error":"x"}'


def test_upcast_errors_are_clear(root: Path) -> None:
    reg = SchemaRegistry(events(root))
    reg.register("my.event", {"type": "object", "required": ["a"]})
    reg.register("my.event", {"type": "object", "required": ["b"]})  # no upcaster
    with pytest.raises(SchemaError, match="my.event: no upcaster from v1 to v2"):
        reg.upcast("my.event", 1, {"a": 1})
    with pytest.raises(SchemaError, match="cannot upcast unknown v5"):
        reg.upcast("my.event", 5, {})
    with pytest.raises(SchemaError, match="unknown event type"):
        reg.upcast("no.such", 1, {})
    reg.register_upcaster("my.event", 1, schema_upcasters.broken)
    with pytest.raises(SchemaError) as ei:
        reg.upcast("my.event", 1, {"a": 1})
    assert "my.event v2: data: missing required field 'b'" in str(ei.value)
    assert "upcaster from v1" in str(ei.value)
    with pytest.raises(SchemaError, match="already has upcaster schema_upcasters:broken"):
        reg.register_upcaster("my.event", 1, schema_upcasters.not_a_dict)
    reg.register_upcaster("my.event", 1, schema_upcasters.not_a_dict, replace=True)
    with pytest.raises(
        SchemaError, match=r"\(schema_upcasters:not_a_dict\) returned list, not dict"
    ):
        reg.upcast("my.event", 1, {"a": 1})
    with pytest.raises(SchemaError, match="no version 3 to attach"):
        reg.register_upcaster("my.event", 2, schema_upcasters.broken)
    with pytest.raises(SchemaError, match="version 1 has nothing to lift"):
        reg.register("new.event", {}, upcaster=schema_upcasters.broken)


def _closure() -> Any:
    def inner(data: dict[str, Any], v: int) -> dict[str, Any]:
        return data

    return inner


@pytest.mark.parametrize(
    ("upcaster", "needle"),
    [
        (lambda d, v: d, "is a lambda or closure; pass name="),
        (_closure(), "is a lambda or closure; pass name="),
        ("schema_upcasters", "unknown upcaster 'schema_upcasters'"),
        ("no_such_module_xyz:f", "unknown upcaster 'no_such_module_xyz:f'"),
        ("os:system", "unknown upcaster 'os:system'"),
        ("schema_upcasters:missing", "unknown upcaster 'schema_upcasters:missing'"),
        ("schema_upcasters:trial_v1_to_v2", "is registered for trial.recorded v1, not for"),
        (42, "must be a function"),
    ],
)
def test_unregistered_upcasters_are_refused(root: Path, upcaster: Any, needle: str) -> None:
    reg = SchemaRegistry(events(root))
    reg.register("my.event", {})
    with pytest.raises(SchemaError, match=needle):
        reg.register("my.event", {"title": "v2"}, upcaster=upcaster)
    assert reg.versions("my.event") == [1], "a refused upcaster registers nothing"


def test_named_lambdas_and_main_functions_register_in_process(root: Path) -> None:
    code = """
import sys
from ledgerx.schema import SchemaRegistry
def up(data, v):
    data["b"] = 1
    return data
reg = SchemaRegistry(sys.argv[1])
reg.register("my.event", {})
reg.register("my.event", {"required": ["b"]}, upcaster=up)
print(reg.upcasters()["my.event"][1], reg.upcast("my.event", 1, {})[0])
"""
    r = run_py(code, str(events(root)))
    assert r.stdout.split() == ["__main__:up", "{'b':", "1}"], r.stdout + r.stderr
    # another process does not have __main__:up: a clear error, no import
    with pytest.raises(UnknownUpcasterError, match="unknown upcaster '__main__:up'"):
        SchemaRegistry(events(root)).upcast("my.event", 1, {})
    name = register_upcaster("my.event", 1, lambda d, v: {**d, "b": 2}, name="my-lambda")
    assert name == "my-lambda"
    reg = SchemaRegistry(events(root))
    reg.register_upcaster("my.event", 1, "my-lambda", replace=True)
    assert reg.upcast("my.event", 1, {}) == ({"b": 2}, 2)


def test_static_method_upcasters_are_named_by_qualname(root: Path) -> None:
    assert upcaster_name(schema_upcasters.Holder.nested) == "schema_upcasters:Holder.nested"
    with pytest.raises(SchemaError, match="is not valid"):
        upcaster_name(schema_upcasters.Holder.nested, name="bad name; rm -rf")
    with pytest.raises(SchemaError, match="already registered for another function"):
        register_upcaster(
            "my.event", 1, schema_upcasters.broken, name="schema_upcasters:not_a_dict"
        )


def test_upcast_in_another_process(root: Path) -> None:
    _trial_chain(root)
    code = """
import json, sys
from ledgerx.schema import SchemaRegistry
reg = SchemaRegistry(sys.argv[1])
print(json.dumps(reg.upcast("trial.recorded", 1, {"trial_id": 1, "params": {}, "metrics": {}})))
"""
    r = run_py(code, str(events(root)), env={"PYTHONPATH": TESTS_DIR})
    assert "unknown upcaster 'schema_upcasters:trial_v1_to_v2'" in r.stderr, r.stderr
    env = {"PYTHONPATH": TESTS_DIR, "LEDGERX_UPCASTER_MODULES": "schema_upcasters"}
    r = run_py(code, str(events(root)), env=env)
    assert r.returncode == 0, r.stderr
    data, v = json.loads(r.stdout)
    assert v == 3 and data["trial_id"] == "1" and data["source"] == "upcast"


def test_upcast_arrow_batches_from_the_scanner(root: Path) -> None:
    ensure_registry(events(root))
    w = _core.Writer(str(root))
    try:
        w.emit(
            "trial.recorded",
            {"trial_id": 1, "params": {"a": 1}, "metrics": {"m": 0.5}},
            run_id="r1",
        )
        w.emit("run.failed", {"error": "boom"}, run_id="r1")
        reg = _trial_chain(root, SchemaRegistry(events(root), on_change=w.reload_schemas))
        w.emit(
            "trial.recorded",
            {"trial_id": "2", "parameters": {}, "metrics": {}, "source": "n"},
            run_id="r1",
        )
        w.flush()
    finally:
        w.close()
    parts = sorted(str(p.relative_to(events(root))) for p in events(root).glob("day=*/*.jsonl"))
    batches = _core.scan_files(str(events(root)), [(p, 0) for p in parts])
    table = pa.Table.from_batches([pa.record_batch(b) for b in batches])
    assert table.column("schema_version").to_pylist() == [1, 1, 3]
    out = reg.upcast_arrow(table)
    assert out.schema == table.schema
    assert out.column("schema_version").to_pylist() == [3, 1, 3]
    datas = [json.loads(d) for d in out.column("data").to_pylist()]
    assert datas[0] == {
        "trial_id": "1",
        "parameters": {"a": 1},
        "metrics": {"m": 0.5},
        "source": "upcast",
    }
    assert datas[1:] == [json.loads(d) for d in table.column("data").to_pylist()[1:]]
    one = reg.upcast_arrow(table.to_batches()[0])
    assert isinstance(one, pa.RecordBatch)
    assert one.column("schema_version").to_pylist()[0] == 3
    # nothing old: the same object comes back
    newest = out.to_batches()[0]
    assert reg.upcast_arrow(newest) is newest
    assert os.path.exists(events(root) / "_schema.lock")


def test_old_events_are_upcast_in_the_index(root: Path) -> None:
    """The indexer (another module) calls the registry: rows below the newest version get the
    upcast `data`, and the derived tables read that newest shape."""
    from ledgerx.index import IndexPaths, build_index
    from ledgerx.index.indexer import open_readonly

    ensure_registry(events(root))
    w = _core.Writer(str(root), durability="fsync")
    try:
        w.emit(
            "trial.recorded",
            {"trial_id": 7, "params": {"w": 1}, "metrics": {"m": 0.5}},
            run_id="r1",
        )
        reg = SchemaRegistry(events(root), on_change=w.reload_schemas)
        v2 = {
            "type": "object",
            "required": ["trial_id", "params", "metrics", "stage"],
            "properties": {
                "trial_id": {"type": "string", "minLength": 3},
                "params": {"type": "object"},
                "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
                "stage": {"type": "string"},
            },
        }
        assert reg.register("trial.recorded", v2, upcaster=schema_upcasters.trial_id_to_label) == 2
        w.emit(
            "trial.recorded",
            {"trial_id": "t-8", "params": {}, "metrics": {}, "stage": "new"},
            run_id="r1",
        )
    finally:
        w.close()
    rep = build_index(root)
    assert rep.published and not rep.warnings, rep.warnings
    con = open_readonly(IndexPaths.for_root(root).runs)
    try:
        ev = con.execute(
            "SELECT schema_version, data_upcast, upcast_version FROM events ORDER BY seq"
        ).fetchall()
        trials = con.execute("SELECT trial_id FROM trial_results ORDER BY trial_id").fetchall()
    finally:
        con.close()
    assert [(v, json.loads(u) if u else None, uv) for v, u, uv in ev] == [
        (1, {"trial_id": "t-7", "params": {"w": 1}, "metrics": {"m": 0.5}, "stage": "legacy"}, 2),
        (2, None, None),
    ]
    assert trials == [("t-7",), ("t-8",)]

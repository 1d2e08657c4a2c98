"""`ledgerx schema list|show|register|validate`: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledgerx import _core
from ledgerx.schema import SchemaRegistry, ensure_registry

from conftest import cli

TESTS_DIR = str(Path(__file__).resolve().parent)


def run(root: Path, *args: str, input: str | None = None) -> Any:
    env = {"PYTHONPATH": TESTS_DIR, "LEDGERX_UPCASTER_MODULES": "schema_upcasters"}
    return cli(*args, "--root", str(root), env=env, input=input)


def one_line_error(r: Any, *needles: str) -> None:
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ledgerx: error: "), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_list_and_show(root: Path) -> None:
    r = run(root, "schema", "list")
    assert r.returncode == 0, r.stderr
    assert "trial.recorded" in r.stdout and "v1" in r.stdout
    r = run(root, "schema", "list", "--json")
    listed = json.loads(r.stdout)
    assert listed["trial.recorded"] == [1] and len(listed) == 11
    r = run(root, "schema", "show", "trial.recorded")
    assert r.returncode == 0
    builtin = json.loads(_core.BUILTIN_REGISTRY)["types"]["trial.recorded"]["1"]
    assert json.loads(r.stdout) == builtin
    r = run(root, "schema", "show", "trial.recorded", "--version", "1", "--json")
    assert json.loads(r.stdout) == {
        "event_type": "trial.recorded",
        "version": 1,
        "schema": builtin,
        "upcaster": None,
    }
    assert not (root / "events").exists(), "read-only commands create nothing"


def test_register_then_list_show(root: Path, tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"type": "object", "required": ["qty"]}))
    r = run(root, "schema", "register", "orders.filled", str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "registered orders.filled v1"
    r = run(root, "schema", "register", "orders.filled", str(f), "--json")
    assert json.loads(r.stdout) == {"event_type": "orders.filled", "version": 1, "changed": False}
    f.write_text(json.dumps({"type": "object", "required": ["qty", "px"]}))
    r = run(
        root,
        "schema",
        "register",
        "orders.filled",
        str(f),
        "--upcaster",
        "schema_upcasters:trial_id_to_label",
    )
    assert r.stdout.strip() == "registered orders.filled v2", r.stderr
    r = run(root, "schema", "register", "orders.filled", "-", input='{"title": "v3"}')
    assert r.stdout.strip() == "registered orders.filled v3", r.stderr
    assert json.loads(run(root, "schema", "list", "--json").stdout)["orders.filled"] == [1, 2, 3]
    r = run(root, "schema", "list")
    assert "orders.filled" in r.stdout and "v1->v2" in r.stdout
    r = run(root, "schema", "show", "orders.filled", "--version", "2", "--json")
    assert json.loads(r.stdout)["upcaster"] == "schema_upcasters:trial_id_to_label"
    assert SchemaRegistry(root / "events").get("orders.filled", 2)["required"] == ["qty", "px"]


@pytest.mark.parametrize(
    ("args", "content", "needles"),
    [
        (["show", "no.such"], None, ["unknown event type 'no.such'"]),
        (["show", "trial.recorded", "--version", "9"], None, ["no version 9"]),
        (["register", "my.event", "FILE"], '{"type": "object",', ["not valid JSON"]),
        (
            ["register", "my.event", "FILE"],
            '{"properties": {"a": {"pattern": "^x"}}}',
            ["my.event", "unsupported keyword 'pattern'"],
        ),
        (["register", "My.Event", "FILE"], "{}", ["invalid event type 'My.Event'"]),
        (["register", "my.event", "FILE"], "[1]", ["must be a JSON object"]),
        (["register", "my.event", "/no/such/file.json"], None, ["/no/such/file.json"]),
        (
            ["register", "my.event", "FILE", "--upcaster", "nope_mod:f"],
            "{}",
            ["unknown upcaster 'nope_mod:f'"],
        ),
        (["validate", "/no/such/file.jsonl"], None, ["/no/such/file.jsonl"]),
        (["frobnicate"], None, ["invalid choice"]),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    root: Path, tmp_path: Path, args: list[str], content: str | None, needles: list[str]
) -> None:
    f = tmp_path / "schema.json"
    if content is not None:
        f.write_text(content)
    r = run(root, "schema", *[str(f) if a == "FILE" else a for a in args])
    one_line_error(r, *needles)


def _line(**over: Any) -> str:
    ev: dict[str, Any] = {
        "event_id": "01a2148f-767e-7816-83c2-37d1fb762c30",
        "event_type": "trial.recorded",
        "schema_version": 1,
        "ts": "2026-01-02T03:04:05.000006Z",
        "run_id": None,
        "writer": "w-x",
        "seq": 1,
        "data": {"trial_id": 1, "params": {}, "metrics": {"sharpe": 1.5}},
    }
    ev.update(over)
    return json.dumps({k: v for k, v in ev.items() if v is not ...}, separators=(",", ":"))


def test_validate_reports_every_bad_line(root: Path, tmp_path: Path) -> None:
    ensure_registry(root / "events")
    w = _core.Writer(str(root), durability="fsync")
    try:
        w.emit("trial.recorded", {"trial_id": 1, "params": {}, "metrics": {"a": 1.0}}, run_id="r1")
        w.emit("run.failed", {"error": "boom"}, run_id="r1")
    finally:
        w.close()
    (part,) = sorted((root / "events").glob("day=*/part-*.jsonl"))
    good = part.read_text().splitlines()
    r = run(root, "schema", "validate", str(part))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 lines checked, 0 invalid" in r.stdout

    tampered = good[0].replace('"a":1.0', '"a":2.0')
    bad_lines = {
        3: (
            _line(data={"trial_id": 1, "params": {}, "metrics": {"sharpe": "x"}}),
            "trial.recorded v1: data.metrics.sharpe: expected number, got string",
        ),
        4: (_line(event_type="no.such"), "unknown event type 'no.such'"),
        5: (_line(schema_version=2), "trial.recorded: no version 2"),
        6: ("{not json", "invalid JSON: expected string key at column 2"),
        7: (_line(seq=0), "seq is not an integer >= 1"),
        8: (_line(ts="2026-01-02 03:04:05"), "ts is not an RFC 3339 timestamp"),
        9: (tampered, "crc mismatch"),
        10: ("", "empty line"),
        11: (_line(data=...), 'not a v1 envelope: missing "data"'),
        12: (_line(event_id="not-a-uuid"), "event_id is not a UUID string"),
        13: ('{"a":1,"a":2}', 'invalid JSON: duplicate key "a" at column 11'),
        14: (_line(extra=1), 'not a v1 envelope: key 9 is "extra"'),
        15: (_line(data=[1]), "data is not an object"),
    }
    lines = good + [bad_lines[i][0] for i in sorted(bad_lines)] + [_line(seq=9)]
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join(lines) + "\n")
    r = run(root, "schema", "validate", str(f))
    assert r.returncode == 1
    out = r.stdout.strip().splitlines()
    assert len(out) == len(bad_lines), r.stdout
    for (n, (_, reason)), got in zip(sorted(bad_lines.items()), out, strict=True):
        assert got.startswith(f"{f}:{n}: "), got
        assert reason in got, (reason, got)
    assert f"{len(lines)} lines checked, {len(bad_lines)} invalid" in r.stderr

    r = run(root, "schema", "validate", "--json", str(f), str(part))
    assert r.returncode == 1
    rep = json.loads(r.stdout)
    assert rep["bad"] == len(bad_lines)
    assert [b["line"] for b in rep["files"][0]["bad"]] == sorted(bad_lines)
    assert rep["files"][1] == {"file": str(part), "lines": 2, "bad": []}


def test_validate_uses_registered_types_and_versions(root: Path, tmp_path: Path) -> None:
    reg = SchemaRegistry(root / "events")
    reg.register("my.event", {"type": "object", "required": ["a"]})
    reg.register("my.event", {"type": "object", "required": ["b"]})
    f = tmp_path / "e.jsonl"
    f.write_text(
        _line(event_type="my.event", schema_version=1, data={"a": 1})
        + "\n"
        + _line(event_type="my.event", schema_version=2, data={"a": 1})
        + "\n"
    )
    r = run(root, "schema", "validate", str(f))
    assert r.returncode == 1
    assert r.stdout.strip() == f"{f}:2: my.event v2: data: missing required field 'b'"


def test_validate_and_the_indexer_share_the_event_id_rule(root: Path, tmp_path: Path) -> None:
    """A third-party line with a uuid4 event_id validates, and the indexer indexes it; a
    non-UUID id is refused by both; keys out of order are refused by both."""
    from ledgerx.index import build_index

    ensure_registry(root / "events")
    uuid4 = "9f1c2d3e-4b5a-4c6d-8e7f-0123456789ab"
    lines = {
        uuid4: None,
        "not-a-uuid-at-all": "event_id is not a UUID string",
    }
    for eid, want in lines.items():
        f = tmp_path / "e.jsonl"
        f.write_text(_line(event_id=eid) + "\n")
        r = run(root, "schema", "validate", str(f))
        assert (r.returncode, want is None or want in r.stdout) == (int(want is not None), True)
    day = root / "events" / "day=2026-01-02"
    day.mkdir(parents=True, exist_ok=True)
    swapped = _line(event_id=uuid4).replace('"writer":"w-x","seq":1', '"seq":1,"writer":"w-x"')
    (day / "part-000009.jsonl").write_text(
        "\n".join([_line(event_id=uuid4), _line(event_id="not-a-uuid-at-all"), swapped]) + "\n"
    )
    rep = build_index(root)
    assert (rep.events, rep.bad_lines) == (1, 2)
    f = tmp_path / "swapped.jsonl"
    f.write_text(swapped + "\n")
    r = run(root, "schema", "validate", str(f))
    assert r.returncode == 1 and 'key 6 is "seq", expected "writer"' in r.stdout


def test_validate_and_verify_agree_line_by_line(root: Path, tmp_path: Path) -> None:
    """`schema validate` and the scanner behind `verify`/`rebuild` give one verdict per line:
    both are the core's `check_line`. The cases are those where the two used to disagree; the
    expected verdicts are docs/format.md's table (writer: any string; event_type: non-empty;
    schema_version: an INTEGER of the index; run_id: the run id syntax)."""
    from ledgerx.index import build_index

    ensure_registry(root / "events")
    ids = [f"01a2148f-767e-7816-83c2-37d1fb762c3{i}" for i in range(5)]
    cases = {
        "writer empty": (_line(event_id=ids[0], writer=""), None),
        "event_type empty": (
            _line(event_id=ids[1], event_type=""),
            "event_type is not a non-empty string",
        ),
        "run_id syntax": (_line(event_id=ids[2], run_id="bad id!"), 'invalid run_id "bad id!"'),
        "schema_version > INTEGER": (
            _line(event_id=ids[3], schema_version=2**31),
            "schema_version is not an integer in 1..=2147483647",
        ),
        "good": (_line(event_id=ids[4], seq=2), None),
    }
    day = root / "events" / "day=2026-01-02"
    day.mkdir(parents=True, exist_ok=True)
    (day / "part-000001.jsonl").write_text("".join(line + "\n" for line, _ in cases.values()))
    rep = build_index(root)
    want_bad = [(name, why) for name, (_, why) in cases.items() if why is not None]
    assert (rep.events, rep.bad_lines) == (len(cases) - len(want_bad), len(want_bad))
    for (_, why), got in zip(want_bad, [b[3] for b in rep.bad], strict=True):
        assert why in got, (why, got)
    for name, (line, why) in cases.items():
        f = tmp_path / "one.jsonl"
        f.write_text(line + "\n")
        r = run(root, "schema", "validate", str(f))
        if why is None:
            assert r.returncode == 0, (name, r.stdout, r.stderr)
        else:
            assert r.returncode == 1 and why in r.stdout, (name, r.stdout)

"""Security: the read side applies the writer's rules to hand-written lines, and a part file
with other hard links is neither read nor adopted (docs/security.md).

Before: a hand-written line with run id `../../../../etc` was indexed (its `artifact_dir`
became `artifacts/runs/../../../../etc`); an `artifact.created` with path `/etc/shadow` was
listed; a part file hard-linked to a file outside the root was read as the log, and a writer
adopting it cut its last line and appended events to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import ledgerx
from ledgerx.index import build_index

from conftest import cli

ENV = (
    '{{"event_id":"01940000-0000-7000-8000-{n:012d}","event_type":"{t}",'
    '"schema_version":1,"ts":"2026-01-01T00:00:00.000000Z","run_id":{run},"writer":"hand",'
    '"seq":{n},"data":{data}}}\n'
)


def _line(n: int, t: str, run: str | None, data: dict) -> str:
    return ENV.format(n=n, t=t, run=json.dumps(run), data=json.dumps(data, separators=(",", ":")))


def _base(root: Path) -> Path:
    led = ledgerx.open(root, durability="fsync")
    try:
        led.emit("alert.ingested", {"alert_id": "a", "source": "s", "severity": "x", "payload": {}})
    finally:
        led.close()
    return next((root / "events").glob("day=*"))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (_line(1, "run.heartbeat", "../../../../etc", {}), "invalid run_id"),
        (_line(2, "run.heartbeat", "/abs", {}), "invalid run_id"),
        (
            _line(
                3,
                "artifact.created",
                "r1",
                {
                    "name": "x",
                    "path": "/etc/shadow",
                    "format": "json",
                    "bytes": 1,
                    "sha256": "0" * 64,
                },
            ),  # fmt: skip
            'artifact path \\"/etc/shadow\\" must be relative',
        ),
        (
            _line(
                4,
                "run.completed",
                "r1",
                {
                    "summary": {},
                    "artifact_paths": ["artifacts/runs/r1/a.json", "artifacts/../../x"],
                },
            ),  # fmt: skip
            "must be relative to the ledger root, without '..'",
        ),
    ],
)
def test_hand_written_lines_get_the_writers_rules(root: Path, line: str, reason: str) -> None:
    day = _base(root)
    (day / "part-000900.jsonl").write_text(line)
    r = cli("rebuild", "--json", "--root", str(root))
    rep = json.loads(r.stdout)
    assert rep["events"] == 1 and rep["bad_lines"] == 1, rep
    assert reason in json.dumps(rep["bad"][0]["reason"]), rep["bad"]
    q = cli("query", "--json", "--root", str(root),
            "SELECT count(*) AS n FROM artifacts_catalog")  # fmt: skip
    assert json.loads(q.stdout) == [{"n": 0}]


def test_the_writer_refuses_artifact_paths_out_of_the_root(root: Path) -> None:
    led = ledgerx.open(root, durability="fsync")
    try:
        led.emit_run_created("r1", "k", {}, "fp")
        for bad in ["/etc/shadow", "artifacts/../../x", ".."]:
            with pytest.raises(ledgerx.SchemaError, match="must be relative"):
                data = {"name": "x", "path": bad, "format": "json", "bytes": 1, "sha256": "0" * 64}
                led.emit("artifact.created", data, run_id="r1")
        with pytest.raises(ledgerx.SchemaError, match="must be relative"):
            led.emit_run_completed("r1", {}, ["/etc/passwd"])
        led.emit_run_completed("r1", {}, ["artifacts/runs/r1/summary.json"])
    finally:
        led.close()


def test_a_hard_linked_part_is_neither_read_nor_adopted(root: Path, tmp_path: Path) -> None:
    day = _base(root)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"line one\nno newline at the end")
    before = outside.read_bytes()
    os.link(outside, day / "part-000005.jsonl")
    rep = build_index(root)
    assert rep.events == 1
    assert any("part-000005.jsonl" in w and "hard links" in w for w in rep.warnings), rep.warnings
    r = cli("verify", "--root", str(root))
    assert "part-000005.jsonl" in r.stdout + r.stderr
    # A writer adopting a part below the size limit: never this one.
    for _ in range(3):
        led = ledgerx.open(root, durability="fsync")
        try:
            led.emit("alert.ingested", {"alert_id": "b", "source": "s", "severity": "x",
                                        "payload": {}})  # fmt: skip
        finally:
            led.close()
    assert outside.read_bytes() == before, "the file outside the root was changed"
    assert (
        not list((root / "events" / "_quarantine").glob("*"))
        if (root / "events" / "_quarantine").exists()
        else True
    )


def test_terminal_output_escapes_control_characters(root: Path) -> None:
    """`runs`, `show`, `tail` print run data: an escape sequence in it is shown escaped."""
    evil = "k\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"
    led = ledgerx.open(root, durability="fsync")
    try:
        with led.run(run_id="r1", run_kind=evil, config={"c": evil}, data_fingerprint=evil) as run:
            run.summary["note"] = evil
    finally:
        led.close()
    build_index(root)
    outs = {
        "runs": cli("runs", "--root", str(root)),
        "show": cli("show", "r1", "--root", str(root)),
        "tail": cli("tail", "--root", str(root)),
    }
    for name, r in outs.items():
        assert r.returncode == 0, (name, r.stderr)
        raw = [c for c in r.stdout if ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) <= 0x9F]
        assert raw == [] and "\u202e" not in r.stdout, (name, r.stdout)
        assert "\\x9b31m\\u202e" in r.stdout, (name, r.stdout)  # C1 and bidi: escaped
    assert "k\\x1b]0;pwned\\x07\\x1b[2J" in outs["show"].stdout


@pytest.mark.parametrize(
    "entry",
    [
        {"1": {"type": "object", "pattern": "^x"}},  # a keyword outside the subset
        {"one": {"type": "object"}},  # not a version number
        ["not", "an", "object"],
    ],
)
def test_one_invalid_type_fails_closed_for_that_type_only(root: Path, entry: Any) -> None:
    _base(root)
    path = root / "events" / "_schema.json"
    doc = json.loads(path.read_text())
    doc["types"]["evil.type"] = entry
    path.write_text(json.dumps(doc))
    led = ledgerx.open(root, durability="fsync")
    try:
        with pytest.raises(ledgerx.SchemaError, match="evil.type: its entry in events/_schema"):
            led.emit("evil.type", {})
        led.emit("alert.ingested", {"alert_id": "b", "source": "s", "severity": "x",
                                    "payload": {}})  # fmt: skip
    finally:
        led.close()
    r = cli("schema", "list", "--json", "--root", str(root))
    assert r.returncode == 0 and "alert.ingested" in json.loads(r.stdout)
    assert "warning: evil.type: invalid entry in _schema.json" in r.stderr, r.stderr
    st = json.loads(cli("status", "--json", "--root", str(root)).stdout)
    assert list(st["schema_invalid"]) == ["evil.type"], st
    assert "schema invalid   evil.type" in cli("status", "--root", str(root)).stdout

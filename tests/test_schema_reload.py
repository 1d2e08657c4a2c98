"""A failed periodic reload of events/_schema.json is surfaced (the writer's `registry_error`, a
warning on stderr, `ledgerx status`) while emits keep being validated with the last good
registry; a repaired file clears it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import ledgerx
from ledgerx.errors import SchemaError

from conftest import cli


def _emit_until(led: ledgerx.Ledger, cond: object, what: str) -> int:
    """Emit (each emit is a chance for the once-a-second look at the file) until cond()."""
    deadline = time.monotonic() + 30
    n = 0
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        led.emit("my.event", {"a": n})
        n += 1
        time.sleep(0.01)
    return n


def test_a_broken_registry_is_reported_and_the_last_good_one_kept(
    root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    led = ledgerx.open(root, durability="os")
    led.schema.register("my.event", {"type": "object", "required": ["a"]})
    led.emit("my.event", {"a": 0})
    reg = root / "events" / "_schema.json"
    good = reg.read_bytes()
    reg.write_text("{broken")
    os.utime(reg, (1000, 1000))  # a new mtime whatever the file system's granularity
    _emit_until(led, lambda: led.registry_error is not None, "the failed reload")
    assert "_schema.json" in (led.registry_error or "")
    with pytest.raises(SchemaError):  # still validated, with the last good registry
        led.emit("my.event", {"b": 1})
    err = capfd.readouterr().err
    assert err.count("could not reload the schema registry") == 1, err
    st = cli("status", "--root", str(root), "--json")
    assert st.returncode == 0, st.stderr
    assert "_schema.json" in json.loads(st.stdout)["registry_error"]
    text = cli("status", "--root", str(root))
    assert "schema registry  UNREADABLE" in text.stdout
    reg.write_bytes(good)
    os.utime(reg, (2000, 2000))
    _emit_until(led, lambda: led.registry_error is None, "the repaired registry")
    assert json.loads(cli("status", "--root", str(root), "--json").stdout)["registry_error"] is None
    led.close()

"""Security: nothing is imported or called because `_schema.json` names it (docs/security.md).

The attack: whoever can write `events/` plants an upcaster `subprocess:Popen` in the registry
and emits an old-version event whose data keys are a command line. Before the fix, the indexer
(CLI `rebuild`, the daemon, `wait_indexed`) imported `subprocess` and ran `Popen(data, 1)`:
`touch MARKER` ran as the indexer's user. Now upcasters come only from the operator's code
(`ledgerx.register_upcaster`, `@ledgerx.upcaster`), the modules in `LEDGERX_UPCASTER_MODULES`
or the `ledgerx.upcasters` entry points; the file refers to them by name only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ledgerx
from ledgerx.errors import LedgerError, SchemaError, UnknownUpcasterError
from ledgerx.schema import SchemaRegistry

from conftest import cli, run_py

TESTS_DIR = str(Path(__file__).resolve().parent)


def plant_popen(root: Path, marker: Path) -> None:
    """The attacker's two steps: an old-version event, then a registry naming subprocess:Popen."""
    led = ledgerx.open(root, durability="fsync")
    try:
        led.schema.register("evil.event", {"type": "object"})
        # Popen(data, 1): iterating the dict gives the command line ["touch", MARKER].
        led.emit("evil.event", {"touch": 1, str(marker): 1})
    finally:
        led.close()
    path = root / "events" / "_schema.json"
    doc = json.loads(path.read_text())
    doc["types"]["evil.event"]["2"] = {"type": "object", "title": "v2"}
    doc["upcasters"] = {"evil.event": {"1": "subprocess:Popen"}}
    path.write_text(json.dumps(doc))


@pytest.fixture
def planted(root: Path, tmp_path: Path) -> Path:
    marker = tmp_path / "pwned"
    plant_popen(root, marker)
    return marker


def test_cli_rebuild_does_not_import_from_the_registry(root: Path, planted: Path) -> None:
    r = cli("rebuild", "--root", str(root))
    assert not planted.exists(), "subprocess.Popen ran: code named by _schema.json executed"
    assert r.returncode == 0, r.stderr
    assert "unknown upcaster 'subprocess:Popen'" in r.stderr + r.stdout


def test_daemon_cycle_does_not_import_from_the_registry(root: Path, planted: Path) -> None:
    r = cli("daemon", "--once", "--root", str(root))
    assert not planted.exists(), "subprocess.Popen ran in the daemon"
    assert r.returncode == 0, r.stderr
    assert "unknown upcaster 'subprocess:Popen'" in r.stderr


def test_wait_indexed_does_not_import_from_the_registry(root: Path, planted: Path) -> None:
    code = """
import sys, ledgerx
led = ledgerx.open(sys.argv[1])
pos = led.emit("alert.ingested", {"alert_id": "a", "source": "s", "severity": "low",
                                  "payload": {}})
led.wait_indexed(pos)
led.close()
"""
    r = run_py(code, str(root))
    assert not planted.exists(), "subprocess.Popen ran in wait_indexed"
    assert r.returncode == 0, r.stderr


def test_registry_naming_an_unknown_upcaster_is_a_typed_error(root: Path, planted: Path) -> None:
    reg = SchemaRegistry(root / "events")
    with pytest.raises(UnknownUpcasterError, match="unknown upcaster 'subprocess:Popen'") as ei:
        reg.upcast("evil.event", 1, {"touch": 1, str(planted): 1})
    assert isinstance(ei.value, SchemaError) and isinstance(ei.value, LedgerError)
    with pytest.raises(UnknownUpcasterError):
        reg.load_upcasters()
    assert not planted.exists()


def test_indexed_rows_keep_the_raw_data_and_the_report_names_the_upcaster(
    root: Path, planted: Path
) -> None:
    from ledgerx.index import build_index

    rep = build_index(root)
    assert not planted.exists()
    assert rep.events == 1
    assert any("unknown upcaster 'subprocess:Popen'" in w for w in rep.warnings), rep.warnings


def test_schema_register_cli_refuses_an_import_path(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned-cli"
    f = tmp_path / "s.json"
    f.write_text("{}")
    assert cli("schema", "register", "my.event", str(f), "--root", str(root)).returncode == 0
    f.write_text('{"title": "v2"}')
    r = cli("schema", "register", "my.event", str(f), "--upcaster", "os:system",
            "--root", str(root))  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "ledgerx: error: my.event: unknown upcaster 'os:system': no upcaster of that "
        "name is registered (see docs/security.md: register_upcaster, LEDGERX_UPCASTER_MODULES, "
        "the ledgerx.upcasters entry points)"
    ), r.stderr
    assert not marker.exists()
    assert SchemaRegistry(root / "events").versions("my.event") == [1]


def test_an_allowlisted_module_supplies_upcasters_by_name(root: Path) -> None:
    """The operator's configuration (not the data) names the module to load."""
    led = ledgerx.open(root, durability="fsync")
    try:
        led.schema.register("my.event", {"type": "object"})
        led.emit("my.event", {"params": {"a": 1}})
    finally:
        led.close()
    path = root / "events" / "_schema.json"
    doc = json.loads(path.read_text())
    doc["types"]["my.event"]["2"] = {"type": "object", "required": ["parameters"]}
    doc["upcasters"] = {"my.event": {"1": "schema_upcasters:rename_params"}}
    path.write_text(json.dumps(doc))
    env = {"PYTHONPATH": TESTS_DIR}
    r = cli("rebuild", "--root", str(root), env=env)
    assert "unknown upcaster 'schema_upcasters:rename_params'" in r.stderr + r.stdout
    env["LEDGERX_UPCASTER_MODULES"] = "schema_upcasters"
    r = cli("rebuild", "--full-rebuild", "--root", str(root), env=env)
    assert r.returncode == 0 and "upcaster" not in r.stderr + r.stdout, r.stderr
    r = cli("query", "SELECT data_upcast FROM events WHERE event_type = 'my.event'",
            "--json", "--root", str(root))  # fmt: skip
    # --json prints JSON columns as JSON values (never JSON text inside JSON)
    assert json.loads(r.stdout)[0]["data_upcast"] == {"parameters": {"a": 1}}

"""The CLI builds only the parser of the command its argv names (`ledgerx.cli.build_parser`):
the table of command modules matches what each module registers, a command's options, help and
errors are the same as with every command registered, and a `ledgerx rebuild` process imports
no other command module (nor hashlib, secrets, nor what DuckDB imports for a list parameter)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest

import ledgerx
from ledgerx.cli import COMMAND_MODULES, _Parser, build_parser
from ledgerx.index import build_index

from conftest import cli, run_py


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_table_matches_what_the_modules_register() -> None:
    every = list(_subparsers(build_parser()))
    listed = [c for commands in COMMAND_MODULES.values() for c in commands]
    assert listed == every  # in `--help` order, each command once
    for name, commands in COMMAND_MODULES.items():
        p = _Parser(prog="ledgerx")
        sub = p.add_subparsers(dest="command", parser_class=_Parser)
        importlib.import_module(f"ledgerx.cli.{name}").register(sub)
        assert tuple(_subparsers(p)) == commands, name


@pytest.mark.parametrize("command", [c for cs in COMMAND_MODULES.values() for c in cs])
def test_a_command_parses_as_with_every_command(command: str) -> None:
    whole = _subparsers(build_parser())[command]
    alone = build_parser([command, "--help"])
    assert _subparsers(alone)[command].format_help() == whole.format_help()
    assert set(_subparsers(alone)) == set(next(c for c in COMMAND_MODULES.values() if command in c))


def test_help_and_unknown_commands_list_every_command() -> None:
    for argv in ([], ["--help"], ["--version"], ["nosuch"], ["-h", "rebuild"]):
        assert list(_subparsers(build_parser(argv))) == list(_subparsers(build_parser()))
    r = cli("nosuch")
    assert r.returncode == 2
    assert all(f"'{c}'" in r.stderr for cs in COMMAND_MODULES.values() for c in cs), r.stderr
    r = cli("--help")
    assert r.returncode == 0
    assert all(c in r.stdout for cs in COMMAND_MODULES.values() for c in cs), r.stdout


def test_rebuild_process_imports_no_other_command_module(root: Path) -> None:
    with ledgerx.open(root) as led:
        led.emit_run_created("r1", "k", {}, "f")
    build_index(root)
    with ledgerx.open(root) as led:
        led.emit_run_started("r1")
    r = run_py(
        "import sys, json\n"
        "from ledgerx.cli import main\n"
        "rc = main(['rebuild', '--root', sys.argv[1]])\n"
        "cli = sorted(m for m in sys.modules if m.startswith('ledgerx.cli'))\n"
        "mods = ('hashlib', 'secrets', 'decimal', 'uuid', 'platform', 'ledgerx.retention',\n"
        "        'tempfile')\n"
        "print(json.dumps([rc, cli, [m for m in mods if m in sys.modules]]))\n",
        str(root),
    )
    assert r.returncode == 0, r.stderr
    assert "indexed 1 events" in r.stdout, r.stdout
    rc, mods, others = json.loads(r.stdout.strip().splitlines()[-1])
    assert rc == 0
    assert mods == ["ledgerx.cli", "ledgerx.cli.index_cmds", "ledgerx.cli.term"]
    # OpenSSL's load (retention's archive writer only); what DuckDB's Python layer imports to
    # test a list, datetime or bytes parameter (the round binds lists as JSON texts); retention
    # (a root without archive/); tempfile (atomic_write and DuckDB's private temp folder only)
    assert others == []


@pytest.mark.parametrize(
    ("argv", "early"),
    [
        (["rebuild"], True),
        (["rebuild", "--root", "x", "--json", "--stale-after", "5"], True),
        (["rebuild", "--full-rebuild"], False),
        (["rebuild", "--full"], False),  # argparse takes an unambiguous prefix
        (["rebuild", "--source", "s3://b/p"], False),
        (["rebuild", "--source=s3://b/p"], False),
        (["rebuild", "-h"], False),
        (["rebuild", "--help"], False),
        (["status"], False),
        ([], False),
        (["--root", "x", "rebuild"], False),
    ],
)
def test_console_script_starts_duckdb_only_for_an_incremental_rebuild(
    argv: list[str], early: bool
) -> None:
    from ledgerx._entry import incremental_rebuild

    assert incremental_rebuild(argv) is early


@pytest.mark.parametrize("work", ["copy", "alternate"])
def test_console_script_starts_duckdb_before_the_cli_and_the_round_takes_it(
    root: Path, work: str
) -> None:
    with ledgerx.open(root) as led:
        led.emit_run_created("r1", "k", {}, "f")
    build_index(root)
    with ledgerx.open(root) as led:
        led.emit_run_started("r1")
    if work == "alternate":  # a round on a copy of the full rebuild's file: the next round
        build_index(root)  # updates the file that one replaced (the alternate) in place
        with ledgerx.open(root) as led:
            led.emit("run.heartbeat", {}, run_id="r1")
    r = run_py(
        "import os, sys\n"
        "import ledgerx._prestart as p\n"
        "from ledgerx.index import dbfile\n"
        "made = []\n"
        "def prestart():\n"
        "    print('cli imported first:', 'ledgerx.cli' in sys.modules)\n"
        "    p.prestart.__wrapped__()\n"
        "    p.settle_prestarted()\n"
        "    made.extend(p._PRESTARTED[os.getpid()][1])\n"
        "prestart.__wrapped__ = p.prestart\n"
        "p.prestart = prestart\n"
        "import atexit\n"
        "took = lambda: print('round took it:', dbfile._WORK_DB[os.getpid()] is made[0])\n"
        "atexit.register(took)\n"
        "sys.argv = ['ledgerx', 'rebuild', '--root', sys.argv[1]]\n"
        "from ledgerx._entry import main\n"
        "main()\n",
        str(root),
    )
    assert r.returncode == 0, r.stderr
    assert "indexed 1 events" in r.stdout
    assert "cli imported first: False" in r.stdout
    assert "round took it: True" in r.stdout


def test_a_returning_cli_rebuild_waits_for_the_instance_it_did_not_take(root: Path) -> None:
    """`main(argv)` returns (a program embedding the CLI): a rebuild with nothing new never
    takes the DuckDB instance it started in a thread, and returns only once that thread is out
    of DuckDB (Python's teardown under it aborted the process about every second run)."""
    with ledgerx.open(root) as led:
        led.emit_run_created("r1", "k", {}, "f")
    build_index(root)
    r = run_py(
        "import sys, threading, time\n"
        "import ledgerx._prestart as p\n"
        "connect = p.duckdb.connect\n"
        "def slow(*a):\n"
        "    time.sleep(0.5)\n"
        "    return connect(*a)\n"
        "p.duckdb.connect = slow\n"
        "from ledgerx.cli import main\n"
        "rc = main(['rebuild', '--root', sys.argv[1]])\n"
        "alive = [t for t in threading.enumerate() if t.name == 'ledgerx-duckdb']\n"
        "print('returned', rc, 'thread alive:', bool(alive))\n",
        str(root),
    )
    assert r.returncode == 0, r.stderr
    assert "index up to date" in r.stdout
    assert "returned 0 thread alive: False" in r.stdout

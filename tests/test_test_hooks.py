"""Test hooks stay out of the product (issue 18): the writer's fake clock is compiled only with
the `test-hooks` cargo feature, which the dev build of `make setup` turns on and a wheel built
from pyproject.toml does not; the daemon has no stall hook at all (tests stall it through
their own entry point, tests/daemon_stalled.py), so no environment variable reaches either."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from index_support import write_sweep

from conftest import REPO


def test_the_fake_clock_is_a_cargo_feature_off_in_the_wheel() -> None:
    cargo = (REPO / "Cargo.toml").read_text()
    features = cargo[cargo.index("[features]") : cargo.index("[dependencies]")]
    assert "\ndefault = []\n" in features and "\ntest-hooks = []\n" in features
    # The wheel (`pip install .`, `maturin build`) is built with pyproject's features only.
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "[tool.maturin]" in pyproject and '\nfeatures = ["python"]\n' in pyproject
    assert "test-hooks" not in pyproject
    # Only the editable dev build that the tests run against turns the hooks on.
    built = [ln for ln in (REPO / "Makefile").read_text().splitlines() if "maturin develop" in ln]
    assert built == [
        "\t$(VENV)/bin/maturin develop --release --locked -q --features python,test-hooks"
    ]
    # The hook is compiled out of everything else: every use sits behind the feature.
    hooks = [
        ("src/py/writer.rs", "fn _set_fake_now"),
        ("src/core/writer.rs", "fn set_fake_now"),
        ("src/py/convert.rs", "fn _tape_matches_parse"),
        ("src/py/convert.rs", "fn _shape_matches_parse"),
        ("src/core/schema/shape.rs", "fn shape_of_text"),
        ("src/core/writer/batch.rs", "fn abandon_part_for_test"),
    ]
    for rs, fn in hooks:
        text = (REPO / rs).read_text()
        at = text.index(fn)
        assert 'feature = "test-hooks"' in text[text.rfind("\n\n", 0, at) : at], rs


def test_no_environment_variable_reaches_a_test_hook() -> None:
    pkg = REPO / "python" / "ledgerx"
    for p in pkg.rglob("*.py"):
        text = p.read_text()
        assert "TEST_STALL" not in text and "_set_fake_now" not in text, p


def test_the_daemon_ignores_the_old_stall_variable(root: Path) -> None:
    """With the variable the daemon used to read set to a minute, `daemon --once` indexes and
    exits at once (the 30 s limit is a deadline, far above a normal round)."""
    write_sweep(root, runs=1, trials=3)
    env = {"LEDGERX_DAEMON_TEST_STALL_S": "60", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sys.executable, "-m", "ledgerx", "daemon", "--root", str(root), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert (root / "index" / "runs.duckdb").exists()

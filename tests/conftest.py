from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fresh ledger root (not created yet)."""
    return tmp_path / "ledger"


def run_py(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter (a real separate process)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        **kw,
    )  # type: ignore[call-overload]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ledgerx", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        input=input,
    )

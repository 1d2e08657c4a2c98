from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `heavy` (tens of seconds each) go first: pytest-xdist hands tests out in
    collection order, so a long test started last would keep one worker busy while the others
    idle. A stable sort: the order is the same on every worker, as xdist requires."""
    items.sort(key=lambda it: it.get_closest_marker("heavy") is None)


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


def find_lib(name: str) -> str:
    """A shared library installed by a Debian package, wherever this machine keeps it (the
    multiarch folder, lib64, a package subfolder): ldconfig's cache first, then the usual
    folders. Fails the test with the name when it is missing."""
    try:
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        cache = ""
    for line in cache.splitlines():
        if line.strip().startswith(name + " ") and "=>" in line:
            return line.split("=>", 1)[1].strip()
    for base in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib"):
        for pattern in (name, f"*/{name}", f"*/*/{name}"):
            hits = sorted(Path(base).glob(pattern))
            if hits:
                return str(hits[0])
    pytest.fail(f"{name} not found (installed by `make setup`)")


def soak_progress(msg: str) -> None:
    """A soak's progress line: to stderr, and appended to $LEDGERX_SOAK_LOG when set."""
    print(msg, file=sys.stderr, flush=True)
    log = os.environ.get("LEDGERX_SOAK_LOG")
    if log:
        with open(log, "a") as f:
            f.write(msg + "\n")

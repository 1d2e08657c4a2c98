"""Security: no link followed out of the root, and files created with the umask's modes
(docs/security.md).

Before: lock files (`index/.lock`, the daemon's lock, `events/_schema.lock`) were opened
through symlinks and the indexer/daemon wrote their pid into whatever the link pointed at;
`_schema.json` was created 0600 and lock files 0644 whatever the umask, so a shared group could
not use the root.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import ledgerx

from conftest import cli, run_py


def _ledger(root: Path) -> None:
    led = ledgerx.open(root, durability="fsync")
    try:
        led.emit("alert.ingested", {"alert_id": "a", "source": "s", "severity": "x", "payload": {}})
    finally:
        led.close()


LOCKS = {
    "index/.lock": ["rebuild"],
    ".ledgerx/daemon.lock": ["daemon", "--once"],
    "events/_schema.lock": ["schema", "register", "my.event", "-"],
}


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_files_are_never_opened_through_links(
    root: Path, tmp_path: Path, lock: str, link: str
) -> None:
    _ledger(root)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    path = root / lock
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if link == "symlink":
        path.symlink_to(victim)
    else:
        os.link(victim, path)
    r = cli(*LOCKS[lock], "--root", str(root), input="{}")
    assert victim.read_text() == "precious\n", f"{lock}: the link's target was written"
    assert r.returncode == 1, r.stdout + r.stderr
    reason = "is a symlink" if link == "symlink" else "has other hard links"
    assert reason in r.stderr and r.stderr.count("\n") <= 2, r.stderr


def test_a_refused_lock_file_names_the_reason(tmp_path: Path) -> None:
    from ledgerx.errors import LedgerError
    from ledgerx.fsutil import open_lock_file

    fifo = tmp_path / "fifo.lock"
    os.mkfifo(fifo)
    with pytest.raises(LedgerError, match=r"fifo.lock: lock file not a regular file; refusing"):
        open_lock_file(fifo)
    (tmp_path / "a").write_text("")
    os.link(tmp_path / "a", tmp_path / "b.lock")
    with pytest.raises(LedgerError, match=r"b.lock: lock file has other hard links; refusing"):
        open_lock_file(tmp_path / "b.lock")
    os.close(open_lock_file(tmp_path / "c.lock"))  # a plain new file is accepted


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_created_files_honour_the_umask(root: Path, umask: int, mode: int) -> None:
    code = f"""
import os, sys
os.umask({umask})
import ledgerx
from ledgerx.index import build_index
led = ledgerx.open(sys.argv[1], durability="fsync")
led.schema.register("my.event", {{"type": "object"}})
led.emit("my.event", {{}})
led.close()
build_index(sys.argv[1])
"""
    r = run_py(code, str(root))
    assert r.returncode == 0, r.stderr
    for rel in ["events/_schema.json", "events/_schema.lock", "index/.lock"]:
        got = stat.S_IMODE((root / rel).stat().st_mode)
        assert got == mode, f"{rel}: {oct(got)} with umask {oct(umask)}, expected {oct(mode)}"


@pytest.mark.parametrize("where", ["artifacts", "artifacts/runs", "artifacts/runs/r1"])
def test_artifacts_are_never_written_through_a_symlink(
    root: Path, tmp_path: Path, where: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    led = ledgerx.open(root, durability="fsync")
    try:
        link = root / where
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside, target_is_directory=True)
        with led.run(run_id="r1", run_kind="k", config={}, data_fingerprint="fp") as run:
            with pytest.raises(ledgerx.LedgerIOError, match="symlink or not a folder"):
                run.artifacts.write_json("summary", {"x": 1})
            link.unlink()
            art = run.artifacts.write_json("summary", {"x": 2})  # a real folder: fine
    finally:
        led.close()
    assert list(outside.rglob("*")) == [], "something was written outside the root"
    assert art.path == "artifacts/runs/r1/summary.json"
    assert (root / art.path).read_text().strip().endswith("}")

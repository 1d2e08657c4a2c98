"""The repository stands alone: nothing in it reads or points to files outside it.

A fresh clone must pass `make test` with nothing beside it, so no source, test, doc or build file
may refer to a sibling folder of the repository or to a design document that is not in it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "target", "node_modules", "__pycache__", ".hypothesis", "data"}
# Spelled in pieces so this file does not match itself: a sibling folder, the team's design doc.
_SIBLING = re.escape("..") + "/" + "sha" + "red"
_DOC = "DES" + r"IGN(?:\.md| §)"
OUTSIDE = re.compile(f"{_SIBLING}|{_DOC}")


def _candidates() -> list[Path]:
    """What the repository holds: tracked files and new files git does not ignore (a build's
    venvs and caches are not the repository's); every file where git is not available."""
    try:
        r = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return list(REPO.rglob("*"))
    return [REPO / n for n in r.stdout.decode().split("\0") if n]


def _files() -> list[Path]:
    out = []
    for p in _candidates():
        rel = p.relative_to(REPO)
        if any(part in SKIP_DIRS for part in rel.parts) or not p.is_file():
            continue
        if p.suffix in {".so", ".node", ".parquet", ".duckdb", ".png", ".tgz", ".whl"}:
            continue
        out.append(p)
    return out


def test_no_reference_outside_the_repository() -> None:
    hits = []
    for p in _files():
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{p.relative_to(REPO)}:{n}: {line.strip()}")
    assert hits == []


def test_the_format_spec_and_the_conformance_suite_are_in_the_repository() -> None:
    assert (REPO / "docs" / "format.md").is_file()
    suite = REPO / "tests" / "conformance" / "json-schema-test-suite"
    assert (suite / "LICENSE").read_text().startswith("Copyright")
    assert len(list((suite / "draft2020-12").glob("*.json"))) == 10

"""Layering without cycles (issue 14, item 4), checked on the source's import graph (ast) and on
real interpreters: the write path loads nothing of the index or DuckDB, the reader knows
nothing of legacy, the indexer runs publish hooks that legacy registers."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import duckdb

import ledgerx
from ledgerx.index import build_index

from conftest import REPO, run_py

PKG = REPO / "python" / "ledgerx"


# A cycle left on purpose, with its reason. The command modules import the shared helpers
# (CliError, add_common, print_json) from the package lazily; moving those helpers to a module of
# their own is a file move, deferred with the file splits (issue 14, items 2 and 5). Only a
# cycle made of `ledgerx.cli` and its own command modules is allowed.
def _allowed(cycle: set[str]) -> bool:
    rest = cycle - {"ledgerx.cli"}
    return "ledgerx.cli" in cycle and all(m.startswith("ledgerx.cli.") for m in rest)


def _modules() -> dict[str, Path | None]:
    mods: dict[str, Path | None] = {"ledgerx._core": None}  # the extension: imports nothing
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = p
    return mods


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST, top_level_only: bool) -> list[str]:
    """Absolute names imported (`from a import b` gives `a.b`: module `a.b`, else `a`), skipping
    `if TYPE_CHECKING:` blocks and, with `top_level_only`, anything inside a function."""
    out: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.Import):
                out.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.extend(f"{child.module}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return out


def _graph(top_level_only: bool = False) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """({module: ledgerx modules it imports}, {module: outside top-level packages it imports})."""
    mods = _modules()
    inner: dict[str, set[str]] = {}
    outer: dict[str, set[str]] = {}
    for m, p in mods.items():
        inner[m], outer[m] = set(), set()
        if p is None:
            continue
        for name in _imports(ast.parse(p.read_text()), top_level_only):
            if not name.startswith("ledgerx"):
                outer[m].add(name.split(".")[0])
                continue
            while name not in mods:  # `from ledgerx.x import func` -> ledgerx.x
                name = name.rpartition(".")[0]
            if name != m:
                inner[m].add(name)
    return inner, outer


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            connect(v)
    return out


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_the_import_graph_has_no_cycles() -> None:
    inner, _ = _graph()
    assert [c for c in _cycles(inner) if not _allowed(c)] == []


def test_the_cycle_check_finds_a_cycle() -> None:
    # The oracle itself: a planted cycle is reported.
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(g) == [{"a", "b", "c"}]


def test_layers_point_one_way() -> None:
    inner, _ = _graph()
    bad = []
    for m, deps in inner.items():
        for d in deps:
            if m == "ledgerx.reader" and d.startswith("ledgerx.legacy"):
                bad.append(f"{m} -> {d}: the reader knows nothing of legacy")
            if m.startswith("ledgerx.index") and d.startswith("ledgerx.legacy"):
                bad.append(f"{m} -> {d}: the index runs publish hooks, it imports no legacy")
            if m == "ledgerx.writer" and d.startswith(("ledgerx.index", "ledgerx.legacy")):
                bad.append(f"{m} -> {d}: the write path imports nothing of the index")
    assert bad == []


def test_the_write_path_imports_no_index_or_duckdb_at_import_time() -> None:
    inner, outer = _graph(top_level_only=True)
    loaded = _closure(inner, "ledgerx") | _closure(inner, "ledgerx.writer")
    assert not [m for m in loaded if m.startswith(("ledgerx.index", "ledgerx.legacy"))]
    assert "ledgerx.reader" not in loaded
    third_party = set().union(*(outer[m] for m in loaded))
    assert not third_party & {"duckdb", "pyarrow"}, third_party


def test_emitting_loads_neither_duckdb_nor_the_index(root: Path) -> None:
    r = run_py(
        "import sys, ledgerx\n"
        "with ledgerx.open(sys.argv[1]) as led:\n"
        "    led.emit('run.heartbeat', {}, run_id='r')\n"
        "    with led.run(run_kind='k', config={}, data_fingerprint='f') as run:\n"
        "        run.trial(trial_id=1, params={}, metrics={'x': 1.0})\n"
        "bad = [m for m in sys.modules if m.startswith(('duckdb', 'pyarrow', 'ledgerx.index',\n"
        "       'ledgerx.reader', 'ledgerx.legacy'))]\n"
        "assert not bad, bad\n",
        str(root),
    )
    assert r.returncode == 0, r.stderr


def _projection_runs(root: Path) -> list[str]:
    con = duckdb.connect(str(root / "index" / "legacy.duckdb"), read_only=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT run_id FROM optimizer.runs_d").fetchall())
    finally:
        con.close()


def test_the_projection_follows_the_index_through_a_hook(root: Path) -> None:
    import ledgerx.legacy  # noqa: F401 - registers the hook in this process

    with ledgerx.open(root) as led:
        led.emit_run_created("r1", "k", {}, "f")
    build_index(root, durable=False, hook_options={"legacy_projection": True})
    assert _projection_runs(root) == ["r1"]
    # A process that never loads ledgerx.legacy indexes a new run: no hook runs there.
    r = run_py(
        "import sys, ledgerx\n"
        "from ledgerx.index import build_index\n"
        "with ledgerx.open(sys.argv[1]) as led:\n"
        "    led.emit_run_created('r2', 'k', {}, 'f')\n"
        "print(build_index(sys.argv[1], durable=False).mode)\n"
        "print(sorted(m for m in sys.modules if m.startswith('ledgerx.legacy')))\n",
        str(root),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["incremental", "[]"]
    assert _projection_runs(root) == ["r1"]
    # The next round here has nothing to index, but sees the projection is older: rewrites it.
    assert build_index(root, durable=False).mode == "noop"
    assert _projection_runs(root) == ["r1", "r2"]


def test_cli_rebuild_loads_the_hook(root: Path) -> None:
    with ledgerx.open(root) as led:
        led.emit_run_created("r1", "k", {}, "f")
    r = run_py(
        "import sys, json\n"
        "from ledgerx.cli import main\n"
        "rc = main(['rebuild', '--root', sys.argv[1], '--legacy-projection'])\n"
        "from ledgerx.index.hooks import publish_hooks\n"
        "print(json.dumps([rc, publish_hooks()]))\n",
        str(root),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [0, ["legacy_projection"]]
    assert _projection_runs(root) == ["r1"]

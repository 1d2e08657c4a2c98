"""`make mutants`, Python side: cosmic-ray over the modules that carry guarantees, a random sample
of mutants per module (the whole set takes hours on two cores), each run against the tests that
guard that module. Mutations are applied to the file in place and restored after each run.

    python tests/mutants_py.py [--per-module N] [--seconds S] [--seed K] [--out DIR]

Prints one line per module (killed / survived / timeout / incompetent of the sample) and every
survivor with its diff; docs/testing.md lists the survivors with the reason they stay. Mutants
inside annotations (never evaluated here) are not sampled."""

from __future__ import annotations

import argparse
import ast
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

# module → the tests that must kill its mutants (pytest -x: the first failure is enough).
MODULES = {
    "python/ledgerx/index/publish.py": "tests/test_reliability_fsync_audit.py "
    "tests/test_index_concurrency.py",
    "python/ledgerx/index/indexer.py": "tests/test_index_exactly_once.py tests/test_index_build.py",
    "python/ledgerx/artifacts.py": "tests/test_reliability_fsync_audit.py "
    "tests/test_ops_artifacts.py",
    "python/ledgerx/fsutil.py": "tests/test_reliability_fsync_audit.py "
    "tests/test_schema_registry.py tests/test_ops_artifacts.py tests/test_security_files.py",
    "python/ledgerx/writer.py": "tests/test_writer_format.py tests/test_writer_bad_input.py "
    "tests/test_writer_processes.py",
}

CONFIG = """[cosmic-ray]
module-path = "{module}"
timeout = {timeout}
excluded-modules = []
test-command = "{py} -m pytest -q -x -p no:cacheprovider {tests}"

[cosmic-ray.distributor]
name = "local"
"""


def annotation_spans(module: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where `module`'s annotations are, as ((line, col), (end line, end col)). With
    `from __future__ import annotations` they are never evaluated: a mutant there is equivalent
    by construction, so it is not sampled (it took most of a sample's survivors)."""
    text = module.read_text()
    if "from __future__ import annotations" not in text:
        return []
    spans = []
    for node in ast.walk(ast.parse(text)):
        anns: list[ast.expr | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            every = (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg)
            anns = [x.annotation for x in every if x is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            anns = [node.annotation]
        for n in anns:
            if n is not None and n.end_lineno is not None and n.end_col_offset is not None:
                spans.append(((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)))
    return spans


def sample(session: Path, keep: int, rng: random.Random, module: Path) -> tuple[int, int]:
    """Mark all but `keep` random pending work items as skipped, never sampling a mutant inside
    an annotation; returns how many are kept and how many annotation mutants were left out."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_spans(module)

    def in_annotation(pos: tuple[int, int]) -> bool:
        return any(a <= tuple(pos) < b for a, b in spans)

    with use_db(str(session), WorkDB.Mode.open) as db:
        items = list(db.pending_work_items)
        annotated = [w.job_id for w in items if in_annotation(w.mutations[0].start_pos)]
        pending = [w.job_id for w in items if w.job_id not in set(annotated)]
        rng.shuffle(pending)
        skip = annotated + pending[keep:]
        if skip:
            db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        return min(keep, len(pending)), len(annotated)


def report(session: Path) -> tuple[dict[str, int], list[str]]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    counts = {"killed": 0, "survived": 0, "timeout": 0, "incompetent": 0, "not run": 0}
    survivors: list[str] = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        counts["not run"] = sum(1 for _ in db.pending_work_items)
        for item, res in db.completed_work_items:
            if res.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if res.worker_outcome == WorkerOutcome.ABNORMAL:
                counts["timeout"] += 1
            elif res.test_outcome == TestOutcome.KILLED:
                counts["killed"] += 1
            elif res.test_outcome == TestOutcome.INCOMPETENT:
                counts["incompetent"] += 1
            else:
                counts["survived"] += 1
                m = item.mutations[0]
                survivors.append(
                    f"{m.module_path}:{m.start_pos[0]} {m.operator_name} #{m.occurrence}\n"
                    f"{res.diff or ''}"
                )
    return counts, survivors


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-module", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=600, help="time box per module")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default="", help="modules whose path contains this")
    ap.add_argument("--out", default=str(REPO / "target" / "mutants-py"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    all_survivors: list[str] = []
    for module, tests in MODULES.items():
        if args.only not in module:
            continue
        name = Path(module).stem
        cfg, session = out / f"{name}.toml", out / f"{name}.sqlite"
        session.unlink(missing_ok=True)
        cfg.write_text(CONFIG.format(module=module, timeout=300.0, py=PY, tests=tests))
        cr = [PY, "-m", "cosmic_ray.cli"]
        subprocess.run([*cr, "init", str(cfg), str(session)], cwd=REPO, check=True)
        kept, annotated = sample(session, args.per_module, rng, REPO / module)
        t0 = time.monotonic()
        try:
            subprocess.run(
                [*cr, "exec", str(cfg), str(session)], cwd=REPO, timeout=args.seconds, check=False
            )
        except subprocess.TimeoutExpired:
            # cosmic-ray restores the file after each mutant; make sure of it.
            subprocess.run(["git", "checkout", "--", module], cwd=REPO, check=True)
        counts, survivors = report(session)
        all_survivors.extend(survivors)
        print(
            f"{module}: sample {kept} ({annotated} annotation mutants left out) — "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f" ({time.monotonic() - t0:.0f} s)",
            flush=True,
        )
    for s in all_survivors:
        print("SURVIVED " + s)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", *MODULES], cwd=REPO, capture_output=True, text=True
    ).stdout
    assert not dirty, f"a module was left mutated:\n{dirty}"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

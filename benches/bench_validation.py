"""Validation cost for the built-in `trial.recorded` document (README "Benchmarks": ≤ 1 µs), beside
`fastjsonschema` and `jsonschema` on the same documents in the same run.

    .venv/bin/pytest benches/bench_validation.py -s -p no:cacheprovider
    # or: make bench
"""

from __future__ import annotations

import json
import os
from typing import Any

import fastjsonschema
import jsonschema
import pytest

from ledgerx import _core

from conftest import find, record, sample

N = int(os.environ.get("LEDGERX_BENCH_N", "200000"))
N_SLOW = max(1000, N // 20)  # jsonschema is ~100x slower: fewer calls, same percentiles

SCHEMA: dict[str, Any] = json.loads(_core.BUILTIN_REGISTRY)["types"]["trial.recorded"]["1"]
# trial_id, params with 5 entries, metrics with 5 floats: a typical optimizer trial
DOC: dict[str, Any] = {
    "trial_id": 1234,
    "params": {"fast": 12, "slow": 48, "stop": 0.02, "mode": "long", "filter": True},
    "metrics": {"sharpe": 1.2345, "pnl": 0.0567, "max_dd": 0.1234, "win": 0.55, "cagr": 0.081},
}
BAD: dict[str, Any] = {**DOC, "metrics": {**DOC["metrics"], "sharpe": "high"}}


def _ours() -> _core.SchemaValidator:
    return _core.SchemaValidator(json.dumps(SCHEMA))


def test_all_validators_agree_on_the_documents() -> None:
    ours = _ours()
    fast = fastjsonschema.compile(SCHEMA)
    ref = jsonschema.Draft202012Validator(SCHEMA)
    assert ours.is_valid(DOC) and ref.is_valid(DOC) and fast(DOC) == DOC
    assert not ours.is_valid(BAD) and not ref.is_valid(BAD)
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        fast(BAD)


def test_ledgerx_validate(benchmark: Any) -> None:
    ours = _ours()
    s = sample(lambda: ours.validate(DOC), N)
    record("validate", "ledgerx SchemaValidator.validate (trial.recorded)", s)
    benchmark.pedantic(ours.validate, args=(DOC,), rounds=2000, iterations=10)


def test_ledgerx_is_valid(benchmark: Any) -> None:
    ours = _ours()
    s = sample(lambda: ours.is_valid(DOC), N)
    record("validate", "ledgerx SchemaValidator.is_valid", s)
    benchmark.pedantic(ours.is_valid, args=(DOC,), rounds=2000, iterations=10)


def test_ledgerx_is_valid_json(benchmark: Any) -> None:
    ours = _ours()
    text = json.dumps(DOC).encode()
    s = sample(lambda: ours.is_valid_json(text), N)
    record("validate", "ledgerx SchemaValidator.is_valid_json (bytes)", s)
    benchmark.pedantic(ours.is_valid_json, args=(text,), rounds=2000, iterations=10)


def test_ledgerx_overheads() -> None:
    """Where the time goes: the same calls with the schema `true` (no rule to check) cost the
    binding's fixed work, chiefly the I-JSON check that serializes the whole document first."""
    ours, empty = _ours(), _core.SchemaValidator("true")
    full_v = sample(lambda: ours.is_valid(DOC), N)
    true_v = sample(lambda: empty.is_valid(DOC), N)
    record("validate", "ledgerx is_valid with schema true (fixed cost)", true_v)
    record(
        "validate",
        "=> ledgerx rule checking alone (is_valid full - true)",
        {
            "p50_us": full_v["p50_us"] - true_v["p50_us"],
            "p99_us": full_v["p99_us"] - true_v["p99_us"],
        },
    )
    s = sample(lambda: _core.to_json(DOC), N)
    record("validate", "ledgerx to_json(DOC) (the I-JSON check's serialization)", s)


def test_ledgerx_validation_inside_emit(tmp_path: Any) -> None:
    """emit() validates the serialized bytes (a token tape), not the dict: its validation cost
    is emit(trial.recorded) minus emit of the same data under a schema with no rules."""
    from ledgerx.schema import SchemaRegistry

    root = tmp_path / "ledger"
    SchemaRegistry(root / "events").register("bench.open", True)
    w = _core.Writer(str(root), durability="os")
    try:
        full = sample(lambda: w.emit("trial.recorded", DOC, run_id="bench"), N)
        open_ = sample(lambda: w.emit("bench.open", DOC), N)
    finally:
        w.close()
    record("validate", "emit os-mode, trial.recorded (validated)", full)
    record("validate", "emit os-mode, same data, schema true", open_)
    record(
        "validate",
        "=> validation inside emit (difference)",
        {"p50_us": full["p50_us"] - open_["p50_us"], "p99_us": full["p99_us"] - open_["p99_us"]},
    )


def test_fastjsonschema(benchmark: Any) -> None:
    fast = fastjsonschema.compile(SCHEMA)
    s = sample(lambda: fast(DOC), N)
    record("validate", "fastjsonschema (compiled)", s)
    benchmark.pedantic(fast, args=(DOC,), rounds=2000, iterations=10)


def test_jsonschema(benchmark: Any) -> None:
    ref = jsonschema.Draft202012Validator(SCHEMA)
    s = sample(lambda: ref.validate(DOC), N_SLOW, warmup=200)
    record("validate", "jsonschema Draft202012Validator.validate", s)
    s = sample(lambda: ref.is_valid(DOC), N_SLOW, warmup=200)
    record("validate", "jsonschema Draft202012Validator.is_valid", s)
    benchmark.pedantic(ref.is_valid, args=(DOC,), rounds=200, iterations=10)


def test_ratios_and_target() -> None:
    ours = find("validate", "ledgerx SchemaValidator.validate (trial.recorded)")
    fast = find("validate", "fastjsonschema (compiled)")
    ref = find("validate", "jsonschema Draft202012Validator.validate")
    assert ours and fast and ref, "run the whole module"
    for other, label in ((fast, "fastjsonschema"), (ref, "jsonschema")):
        record(
            "validate",
            f"ratio ledgerx / {label}",
            {},
            note=f"p50 {ours['p50_us'] / other['p50_us']:.3f}  p99 "
            f"{ours['p99_us'] / other['p99_us']:.3f}",
        )
    # README "Benchmarks", "validation per emit": the cost validation adds inside emit(). The
    # standalone SchemaValidator.validate also serializes the Python object first (as emit does).
    inside = find("validate", "=> validation inside emit (difference)")
    if inside is not None:
        ok = "met" if inside["p50_us"] <= 1.0 else "MISSED"
        record(
            "validate",
            "target: validation per emit p50 <= 1 us",
            {},
            note=f"{inside['p50_us']:.3f} us {ok}",
        )

"""The values quant code passes to emit(): numpy scalars and arrays, datetimes, pandas
Timestamps, UUID, Path, Enum, Decimal, `default=` and `nonfinite=`; and run-scoped types that
need a run id. Every line is read back with the independent checker (logcheck), and the
expected JSON is written out by hand here."""

from __future__ import annotations

import enum
import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

import ledgerx

from conftest import cli
from logcheck import check_log

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


def _open(root: Path, **opts: Any) -> ledgerx.Ledger:
    led = ledgerx.open(root, **opts)
    led.schema.register("custom.value", {"type": "object"})
    return led


def _data(root: Path, value: Any, **opts: Any) -> Any:
    with _open(root, **opts) as led:
        led.emit("custom.value", {"v": value})
    return check_log(root).events[-1]["data"]["v"]


@pytest.mark.parametrize(
    "value, want",
    [
        (2**64 - 1, 2**64 - 1),
        (2**63, 2**63),
        (-(2**63), -(2**63)),
        (-1, -1),
        (True, True),
        (np.int8(-8), -8),
        (np.int16(-16), -16),
        (np.int32(-32), -32),
        (np.int64(-(2**62)), -(2**62)),
        (np.uint8(8), 8),
        (np.uint16(16), 16),
        (np.uint32(2**32 - 1), 2**32 - 1),
        (np.uint64(2**64 - 1), 2**64 - 1),
        (np.float16(0.5), 0.5),
        (np.float32(0.25), 0.25),
        (np.float64(1.5), 1.5),
        (np.bool_(True), True),
        (np.bool_(False), False),
        (np.array([1, 2, 3]), [1, 2, 3]),
        (np.array([0.5, 1.5]), [0.5, 1.5]),
        (np.array([], dtype=float), []),
        (
            datetime(2024, 3, 1, 12, 30, 5, 123456, tzinfo=timezone.utc),
            "2024-03-01T12:30:05.123456Z",
        ),
        (
            datetime(2024, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
            "2024-03-01T12:30:00.000000Z",
        ),
        (datetime(2024, 3, 1, 9, 0), "2024-03-01T09:00:00.000000Z"),  # naive: taken as UTC
        (date(2024, 3, 1), "2024-03-01"),
        (pd.Timestamp("2024-03-01 09:00", tz="America/New_York"), "2024-03-01T14:00:00.000000Z"),
        (pd.Timestamp("2024-03-01 09:00:00.5"), "2024-03-01T09:00:00.500000Z"),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        (PurePosixPath("/data/x.parquet"), "/data/x.parquet"),
        (Color.RED, "red"),
        (Color.BLUE, 2),
        (Decimal("0.1"), 0.1),
        (Decimal("12.50"), 12.5),
        ({"nested": [np.int32(1), {"t": date(2020, 1, 2)}]}, {"nested": [1, {"t": "2020-01-02"}]}),
    ],
    ids=repr,
)
def test_value_becomes_json(root: Path, value: Any, want: Any) -> None:
    got = _data(root, value)
    assert got == want and type(got) is type(want)


def test_values_inside_a_trial(root: Path) -> None:
    with ledgerx.open(root) as led:
        with led.run(run_kind="k", config={"start": date(2020, 1, 1)}, data_fingerprint="f") as r:
            r.trial(np.int64(3), {"w": np.float32(0.5)}, {"sharpe": np.float64(1.25)})
    ev = [e for e in check_log(root).events if e["event_type"] == "trial.recorded"][0]
    assert ev["data"] == {"trial_id": 3, "params": {"w": 0.5}, "metrics": {"sharpe": 1.25}}


@pytest.mark.parametrize(
    "value, needle",
    [
        (Decimal("0.1000000000000000000001"), "not exactly representable"),
        (np.array([[1, 2], [3, 4]]), "2-D numpy array"),
        (np.complex128(1j), "numpy.complex128"),
        (object(), "type object is not JSON-serializable"),
        ({1, 2}, "type set"),
    ],
    ids=["decimal", "ndarray-2d", "complex", "object", "set"],
)
def test_refused_values_name_the_problem(root: Path, value: Any, needle: str) -> None:
    with _open(root) as led:
        with pytest.raises(ledgerx.SchemaError, match="data.v") as ei:
            led.emit("custom.value", {"v": value})
    assert needle in str(ei.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_nonfinite_refused_by_default_and_the_error_says_how_to_opt_in(
    root: Path, bad: Any
) -> None:
    with _open(root) as led:
        with pytest.raises(ledgerx.SchemaError, match='nonfinite="null"'):
            led.emit("custom.value", {"v": bad})


def test_nonfinite_null_records_null(root: Path) -> None:
    with _open(root, nonfinite="null") as led:
        led.emit("custom.value", {"v": [float("nan"), np.float32("inf"), Decimal("NaN"), 1.0]})
    assert check_log(root).events[-1]["data"]["v"] == [None, None, None, 1.0]


def test_nonfinite_option_is_checked(root: Path) -> None:
    with pytest.raises(ledgerx.ConfigError, match="nonfinite"):
        ledgerx.open(root, nonfinite="zero")


def test_default_callable_handles_the_rest(root: Path) -> None:
    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

    def default(o: Any) -> Any:
        if isinstance(o, Money):
            return {"cents": o.cents}
        if isinstance(o, set):
            return sorted(o)
        raise TypeError(f"no rule for {type(o).__name__}")

    assert _data(root, [Money(5), {3, 1}], default=default) == [{"cents": 5}, [1, 3]]
    with _open(root, default=default) as led:
        with pytest.raises(ledgerx.SchemaError, match="no rule for object"):
            led.emit("custom.value", {"v": object()})


def test_default_changing_the_dict_being_written_is_refused(root: Path) -> None:
    """emit() reads a dict's members in place (borrowed references): a `default=` callable
    that changes the dict being written is refused and nothing is written, never a freed
    value read, a member skipped or a key written twice."""

    class Marker:
        pass

    data: dict[str, Any] = {}

    def drop_later(o: Any) -> Any:  # a member not written yet goes away
        data.pop("c")
        return 1

    def readd_current(o: Any) -> Any:  # the same size, "a" moved to the end (twice in the text)
        data.pop("a")
        data["a"] = 2
        return 1

    def clear_all(o: Any) -> Any:  # frees every other key and value
        data.clear()
        return 1

    for default, msg in [
        (drop_later, "changed size"),
        (readd_current, "keys changed"),
        (clear_all, "changed size"),
    ]:
        data.clear()
        data.update({"a": Marker(), "b": 1.5, "c": "x"})
        with _open(root, default=default) as led:
            with pytest.raises(ledgerx.SchemaError, match=msg):
                led.emit("custom.value", data)
            led.emit("custom.value", {"v": 1})  # the writer goes on
    assert [e["data"] for e in check_log(root).events] == [{"v": 1}] * 3


def test_numpy_and_pandas_are_not_imported_by_emit(root: Path) -> None:
    from conftest import run_py

    code = (
        "import sys, ledgerx, datetime, decimal\n"
        f"led = ledgerx.open({str(root)!r})\n"
        "led.schema.register('custom.value', {'type': 'object'})\n"
        "v = [1, 2.5, 'x', datetime.date(2020, 1, 1), decimal.Decimal('1.5')]\n"
        "led.emit('custom.value', {'v': v})\n"
        "led.close()\n"
        "print('numpy' in sys.modules, 'pandas' in sys.modules)\n"
    )
    p = run_py(code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "False"]


VALID = {
    "run.created": {"run_kind": "k", "config": {}, "data_fingerprint": "f"},
    "run.heartbeat": {},
    "run.completed": {"summary": {}, "artifact_paths": []},
    "phase.started": {"phase": "p", "phase_index": 0},
    "trial.recorded": {"trial_id": 1, "params": {}, "metrics": {}},
    "baseline.completed": {"baseline": "b", "metrics": {}},
    "artifact.created": {
        "name": "n",
        "path": "p",
        "format": "json",
        "bytes": 1,
        "sha256": "0" * 64,
    },
}


@pytest.mark.parametrize("event_type", list(VALID))
def test_run_scoped_types_need_a_run_id(root: Path, event_type: str) -> None:
    with ledgerx.open(root) as led:
        with pytest.raises(ledgerx.SchemaError, match="belongs to a run"):
            led.emit(event_type, VALID[event_type])
        led.emit(event_type, VALID[event_type], run_id="r1")
        led.emit(
            "alert.ingested", {"alert_id": "a", "source": "s", "severity": "low", "payload": {}}
        )
    assert [e["event_type"] for e in check_log(root).events] == [event_type, "alert.ingested"]


def test_cli_emit_of_run_scoped_type_without_run_id_is_one_line(root: Path) -> None:
    p = cli(
        "emit",
        "--root",
        str(root),
        "trial.recorded",
        "--data",
        '{"trial_id":1,"params":{},"metrics":{}}',
    )
    assert p.returncode != 0
    assert p.stderr.count("\n") == 1 and "belongs to a run" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert sys.executable  # the CLI ran in a real separate process

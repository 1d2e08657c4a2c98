"""emit() records the token tape of `data` while serializing it (no second tokenizing pass
before validation). Oracle: the tokenizer run on the written JSON text; the two tapes must be
equal token for token, for any JSON-able Python value, including the types converted by
other means (numpy, Decimal, datetime, UUID, Enum, paths, `default`)."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import pathlib
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerx import SchemaError, _core


class Color(enum.Enum):
    RED = "r\u00e9d"
    BLUE = 2


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", 'a"b', "\\", "\n\t\u0001", "\u00e9\u2028", "x" * 40])
    | st.sampled_from(
        [
            decimal.Decimal("1.5"),
            dt.datetime(2026, 12, 2, 19, 30, tzinfo=dt.timezone.utc),
            dt.date(2026, 1, 2),
            uuid.UUID(int=7),
            Color.RED,
            Color.BLUE,
            pathlib.PurePosixPath('a/"b"'),
            np.float64(0.25),
            np.int32(-3),
            np.bool_(True),
            np.array([1.5, 2.0]),
        ]
    )
)

values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=600, deadline=None)
@given(values)
def test_the_tape_recorded_while_serializing_is_the_parsed_tape(v: Any) -> None:
    assert _core._tape_matches_parse({"v": v})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats() | st.integers(-5, 5), max_size=6))
def test_nonfinite_floats_written_as_null_are_null_tokens(xs: list[Any]) -> None:
    assert _core._tape_matches_parse({"xs": xs, "x": float("nan")}, nonfinite_null=True)


def test_examples_with_escapes_empty_containers_and_default() -> None:
    for v in [{}, [], {"": []}, {'k"': {"\u00e9": [[], {}]}}, [None, True, False, 0, -1.0]]:
        assert _core._tape_matches_parse(v)

    # A value no rule covers is refused, as by emit().
    class Odd:
        pass

    with pytest.raises(ValueError, match="not JSON-serializable"):
        _core._tape_matches_parse({"x": Odd()})


def test_emit_still_validates_with_the_recorded_tape(tmp_path: Any) -> None:
    """The validator reads the recorded tape: an invalid value is refused, a valid one written."""
    w = _core.Writer(str(tmp_path), durability="os")
    data = {"trial_id": 1, "params": {'a"': 1.5}, "metrics": {"m": [1, 2]}}
    with pytest.raises(SchemaError, match="metrics"):
        w.emit("trial.recorded", data, run_id="r1")
    data["metrics"] = {"m\n": 0.5, "n": -2}
    w.emit("trial.recorded", data, run_id="r1")
    w.close()

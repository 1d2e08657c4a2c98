"""write_table takes what quant code holds: a pandas Series (an equity curve), 1-D and 2-D numpy
arrays; anything else is a SchemaError naming the type. Read back with pyarrow.parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import ledgerx

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")


def _write(root: Path, data: Any) -> Path:
    with ledgerx.open(root) as led:
        with led.run(run_id="r1", run_kind="k", config={}, data_fingerprint="f") as run:
            art = run.artifacts.write_table("equity_curve", data)
    assert art.rows == len(data)
    return root / "artifacts/runs/r1/equity_curve.parquet"


def test_series_with_a_datetime_index(root: Path) -> None:
    idx = pd.date_range("2024-01-01", periods=3, freq="D", name="date")
    t = pq.read_table(_write(root, pd.Series([100.0, 101.5, 99.25], index=idx, name="equity")))
    assert t.column_names == ["date", "equity"]
    assert t["equity"].to_pylist() == [100.0, 101.5, 99.25]
    assert [d.day for d in t["date"].to_pylist()] == [1, 2, 3]


def test_unnamed_series_with_default_index(root: Path) -> None:
    t = pq.read_table(_write(root, pd.Series([1, 2, 3])))
    assert t.column_names == ["value"] and t["value"].to_pylist() == [1, 2, 3]


def test_numpy_1d_and_2d(root: Path, tmp_path: Path) -> None:
    t = pq.read_table(_write(root, np.array([0.5, 1.5])))
    assert t.column_names == ["value"] and t["value"].to_pylist() == [0.5, 1.5]
    t2 = pq.read_table(_write(tmp_path / "b", np.array([[1, 2], [3, 4], [5, 6]])))
    assert t2.column_names == ["0", "1"]
    assert t2["0"].to_pylist() == [1, 3, 5] and t2["1"].to_pylist() == [2, 4, 6]


@pytest.mark.parametrize(
    "data, needle",
    [
        (np.zeros((2, 2, 2)), "3-D numpy array"),
        ([1, 2, 3], "builtins.list"),
        ({"a": [1]}, "builtins.dict"),
    ],
    ids=["3d", "list", "dict"],
)
def test_anything_else_is_a_schema_error_naming_the_type(
    root: Path, data: Any, needle: str
) -> None:
    with ledgerx.open(root) as led:
        with led.run(run_id="r1", run_kind="k", config={}, data_fingerprint="f") as run:
            with pytest.raises(ledgerx.SchemaError, match=needle):
                run.artifacts.write_table("t", data)

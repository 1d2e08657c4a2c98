"""Defects found by reading (issue 14, item 6), each pinned by the outcome it broke."""

from __future__ import annotations

from pathlib import Path

import pytest

import ledgerx
from ledgerx import _core

from logcheck import check_log


def test_emit_reentered_from_a_list_subclass_iter(root: Path) -> None:
    """A list subclass whose __iter__ emits: the inner emit runs while the outer one is
    serializing (it held the thread's scratch buffer: PanicException before)."""
    ledger = ledgerx.open(root, durability="fsync")

    class Chatty(list):
        def __iter__(self):  # type: ignore[no-untyped-def]
            ledger.emit("run.heartbeat", {"inner": True}, run_id="inner")
            return super().__iter__()

    ledger.emit("run.heartbeat", {"xs": Chatty([1, 2])}, run_id="outer")
    ledger.close()
    events = check_log(root).events
    assert [(e["run_id"], e["data"]) for e in events] == [
        ("inner", {"inner": True}),
        ("outer", {"xs": [1, 2]}),
    ]
    assert [e["seq"] for e in events] == [1, 2]


@pytest.mark.parametrize(
    "event_id, ts_us, message",
    [
        ("-" * 36, 1_700_000_000_000_000, "is not a UUID"),
        ("0190c1f0-0000-7000-8000-00000000000g", 1_700_000_000_000_000, "is not a UUID"),
        ("0190c1f00000-7000-8000-00000000000aa", 1_700_000_000_000_000, "is not a UUID"),
        ("0190c1f0-0000-7000-8000-00000000000a", 0, "outside 1970-01-01"),
        ("0190c1f0-0000-7000-8000-00000000000a", -1, "outside 1970-01-01"),
        ("0190c1f0-0000-7000-8000-00000000000a", 253_402_300_800_000_000, "outside"),
    ],
)
def test_migration_overrides_are_checked(
    root: Path, event_id: str, ts_us: int, message: str
) -> None:
    """legacy migrate writes through `_core.Writer.emit(event_id=, ts_us=)`: an id of 36
    dashes (or a 1970 timestamp) was written as is before."""
    w = _core.Writer(str(root), durability="fsync")
    data = {"i": 1}
    with pytest.raises(ledgerx.SchemaError, match=message) as err:
        w.emit("run.heartbeat", data, "r", 1, event_id=event_id, ts_us=ts_us)
    assert err.value.event_type == "run.heartbeat"
    w.emit("run.heartbeat", data, "r", 1, event_id="0190c1f0-0000-7000-8000-00000000000a",
           ts_us=1_700_000_000_000_000)  # fmt: skip
    w.close()
    (e,) = check_log(root).events
    assert (e["event_id"], e["ts"], e["seq"]) == (
        "0190c1f0-0000-7000-8000-00000000000a",
        "2023-11-14T22:13:20.000000Z",
        1,
    )

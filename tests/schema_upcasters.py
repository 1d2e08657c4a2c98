"""Upcasters for the schema tests, registered in code by the decorator. Other processes get them
through `LEDGERX_UPCASTER_MODULES=schema_upcasters` (the operator's configuration), never
because `_schema.json` names them."""

from __future__ import annotations

from typing import Any

from ledgerx import upcaster


@upcaster("trial.recorded", 1)
def trial_v1_to_v2(data: dict[str, Any], from_version: int) -> dict[str, Any]:
    """v2 renamed `params` to `parameters` and added `source`."""
    assert from_version == 1
    out = dict(data)
    out["parameters"] = out.pop("params")
    out["source"] = "upcast"
    return out


@upcaster("trial.recorded", 2)
def trial_v2_to_v3(data: dict[str, Any], from_version: int) -> dict[str, Any]:
    """v3 turned `trial_id` into a string."""
    assert from_version == 2
    data["trial_id"] = str(data["trial_id"])
    return data


@upcaster("my.event", 1)
def broken(data: dict[str, Any], from_version: int) -> dict[str, Any]:
    """Returns data that does not satisfy the next version's schema."""
    return {"nothing": True}


@upcaster("my.event", 1)
def not_a_dict(data: dict[str, Any], from_version: int) -> Any:
    return [data]


class Holder:
    @staticmethod
    def nested(data: dict[str, Any], from_version: int) -> dict[str, Any]:
        return data


@upcaster("trial.recorded", 1)
@upcaster("orders.filled", 1)
def trial_id_to_label(data: dict[str, Any], from_version: int) -> dict[str, Any]:
    """trial.recorded v2 (index test): `trial_id` is a label 't-<n>' and `stage` is required."""
    data["trial_id"] = f"t-{data['trial_id']}"
    data.setdefault("stage", "legacy")
    return data


@upcaster("my.event", 1)
def rename_params(data: dict[str, Any], from_version: int) -> dict[str, Any]:
    """my.event v2 (security test): `params` became `parameters`."""
    data["parameters"] = data.pop("params")
    return data

"""Module-level upcasters for the schema tests: importable by name from any process."""

from __future__ import annotations

from typing import Any


def trial_v1_to_v2(data: dict[str, Any], from_version: int) -> dict[str, Any]:
    """v2 renamed `params` to `parameters` and added `source`."""
    assert from_version == 1
    out = dict(data)
    out["parameters"] = out.pop("params")
    out["source"] = "upcast"
    return out


def trial_v2_to_v3(data: dict[str, Any], from_version: int) -> dict[str, Any]:
    """v3 turned `trial_id` into a string."""
    assert from_version == 2
    data["trial_id"] = str(data["trial_id"])
    return data


def broken(data: dict[str, Any], from_version: int) -> dict[str, Any]:
    """Returns data that does not satisfy the next version's schema."""
    return {"nothing": True}


def not_a_dict(data: dict[str, Any], from_version: int) -> Any:
    return [data]


class Holder:
    @staticmethod
    def nested(data: dict[str, Any], from_version: int) -> dict[str, Any]:
        return data


def trial_id_to_label(data: dict[str, Any], from_version: int) -> dict[str, Any]:
    """trial.recorded v2 (index test): `trial_id` is a label 't-<n>' and `stage` is required."""
    data["trial_id"] = f"t-{data['trial_id']}"
    data.setdefault("stage", "legacy")
    return data

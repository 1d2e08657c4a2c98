"""Event type names: the one rule for what a type may be called (`area.thing`, lowercase)."""

from __future__ import annotations

import re

from ledgerx.errors import SchemaError

_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_MAX_TYPE_LEN = 200


def validate_event_type(event_type: object) -> str:
    """Return `event_type` if it is a valid name (`area.thing`, lowercase), else raise."""
    if not isinstance(event_type, str):
        raise SchemaError(f"event type must be a string, not {type(event_type).__name__}")
    if len(event_type) > _MAX_TYPE_LEN or not _TYPE_RE.match(event_type):
        raise SchemaError(
            f"invalid event type {event_type!r}: use dotted lowercase names like 'trial.recorded' "
            "(letters, digits, '_'; each part starts with a letter)"
        )
    return event_type

"""The schema registry (DESIGN §3): versioned JSON Schemas for event `data` in
`events/_schema.json`, custom event types, and upcasters that bring old events to the newest
version when the index is built."""

from __future__ import annotations

from ledgerx.schema.registry import (
    LOCK_FILE,
    REGISTRY_FILE,
    SchemaRegistry,
    Upcaster,
    builtin_registry,
    ensure_registry,
    upcaster_path,
    validate_event_type,
)

__all__ = [
    "LOCK_FILE",
    "REGISTRY_FILE",
    "SchemaRegistry",
    "Upcaster",
    "builtin_registry",
    "ensure_registry",
    "upcaster_path",
    "validate_event_type",
]

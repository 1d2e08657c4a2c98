"""The schema registry (docs/schema.md): versioned JSON Schemas for event `data` in
`events/_schema.json`, custom event types, and upcasters that bring old events to the newest
version when the index is built."""

from __future__ import annotations

# The public names are registry.py's and upcasters.py's `__all__`, kept in one place each.
from ledgerx.schema import registry as _registry
from ledgerx.schema import upcasters as _upcasters
from ledgerx.schema.registry import *  # noqa: F403
from ledgerx.schema.upcasters import *  # noqa: F403

__all__ = [*_registry.__all__, *_upcasters.__all__]

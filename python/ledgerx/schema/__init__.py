"""The schema registry (docs/schema.md): versioned JSON Schemas for event `data` in
`events/_schema.json`, custom event types, and upcasters that bring old events to the newest
version when the index is built."""

from __future__ import annotations

# The public names are registry.py's `__all__`, kept in one place.
from ledgerx.schema.registry import *  # noqa: F403
from ledgerx.schema.registry import __all__  # noqa: F401

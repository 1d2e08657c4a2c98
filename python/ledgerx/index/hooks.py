"""Publish hooks: derived files that follow the index, registered by the layers above it.

The indexer calls every registered hook after each round, while it still holds the index lock,
and imports none of them: `ledgerx.legacy` registers the legacy-shaped projection when it is
imported (the CLI and the daemon import it), so the index layer never depends on legacy.

A hook gets the round: the index paths, whether this round published a new index (`changed`),
whether publishing fsyncs (`durable`), and the `hook_options` given to `build_index`, from which
each hook reads its own keys (the projection: `legacy_projection`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ledgerx._record import field, recordclass
from ledgerx.index.publish import IndexPaths


@recordclass(frozen=True)
class PublishRound:
    paths: IndexPaths
    changed: bool
    durable: bool
    options: Mapping[str, Any] = field(default_factory=dict)


PublishHook = Callable[[PublishRound], Any]

_HOOKS: dict[str, PublishHook] = {}


def register_publish_hook(name: str, hook: PublishHook) -> None:
    """Run `hook` after every index round in this process (registering a name again replaces
    its hook)."""
    _HOOKS[name] = hook


def unregister_publish_hook(name: str) -> None:
    _HOOKS.pop(name, None)


def publish_hooks() -> list[str]:
    """Names of the registered hooks, in registration order."""
    return list(_HOOKS)


def run_publish_hooks(rnd: PublishRound) -> None:
    for hook in list(_HOOKS.values()):
        hook(rnd)

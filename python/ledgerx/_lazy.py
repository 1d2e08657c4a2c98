"""`LazyModule`: a module imported on first attribute access. pyarrow (with numpy) costs about
0.3 s to import, most of a one-event `ledgerx rebuild` process; the modules that need it only on
some paths (archives, full rebuilds, tables) name it through this."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._mod: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        mod = self._mod
        if mod is None:
            mod = self._mod = importlib.import_module(self._name)
        return getattr(mod, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{' (loaded)' if self._mod else ''}>"

"""`ledgerx ui`: a read-only local dashboard over the index (docs/ui.md).

Needs the optional extra `ledgerx[ui]` (Starlette, uvicorn, Jinja2, Plotly); importing this
package does not, so the CLI can say which extra is missing in one line.
"""

from __future__ import annotations

import importlib

from ledgerx.errors import LedgerError

EXTRA_MODULES = ("starlette", "uvicorn", "jinja2", "plotly")


class UiMissingError(LedgerError):
    """The `ui` extra is not installed."""


def require_extra() -> None:
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise UiMissingError(
                f"the dashboard needs the optional extra 'ui' ({name} is not installed): "
                "pip install 'ledgerx[ui]'"
            ) from None


__all__ = ["EXTRA_MODULES", "UiMissingError", "require_extra"]

"""Test-only entry point: `ledgerx daemon ARGS...` whose indexing rounds stall STALL seconds in
the middle of the scan (after the first progress report with bytes done), so a test can signal
or kill it mid-cycle. The stall is a wrapper around `build_index` installed here, in the test
process; the product has no hook for it (no environment variable, no option).

    python tests/daemon_stalled.py STALL daemon --root R ...
"""

from __future__ import annotations

import sys
import time
from typing import Any

import ledgerx.index
from ledgerx.cli import main

_real_build_index = ledgerx.index.build_index


def _stalled_build_index(*args: Any, stall: float, **kwargs: Any) -> Any:
    stalled = False
    outer = kwargs.get("progress")

    def progress(done: int, total: int) -> None:
        nonlocal stalled
        if not stalled and done > 0:
            stalled = True
            time.sleep(stall)
        if outer is not None:
            outer(done, total)

    kwargs["progress"] = progress
    return _real_build_index(*args, **kwargs)


if __name__ == "__main__":
    seconds = float(sys.argv[1])
    # The daemon imports build_index from ledgerx.index at the start of every cycle.
    ledgerx.index.build_index = lambda *a, **k: _stalled_build_index(*a, stall=seconds, **k)  # type: ignore[assignment]
    sys.exit(main(sys.argv[2:]))

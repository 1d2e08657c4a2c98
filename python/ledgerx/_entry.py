"""The `ledgerx` console script (and `python -m ledgerx`): `ledgerx.cli.main`, with the
indexer's DuckDB instance started first, in a thread, when argv asks for an incremental
`ledgerx rebuild`. DuckDB releases the GIL while it starts an instance (~150 M instructions),
so that overlaps the CLI's own imports and parse too, not only the indexer's; a one-event
rebuild otherwise waited for it."""

from __future__ import annotations

import sys
from collections.abc import Sequence

# A full rebuild (it scans ahead instead), a remote source, help: no instance started here.
# Prefixes, as argparse accepts an unambiguous prefix of an option.
_NOT_INCREMENTAL = ("--f", "--so", "-h", "--h")


def main() -> int:
    if incremental_rebuild(sys.argv[1:]):
        from ledgerx._prestart import prestart

        prestart()
    from ledgerx.cli import main as cli_main

    return cli_main()  # which waits for the started instance before it returns or raises


def incremental_rebuild(argv: Sequence[str]) -> bool:
    """Whether `argv` (without the program name) runs `ledgerx rebuild` on the local log
    without a full rebuild; when unsure, False (the command then starts the instance itself,
    later)."""
    if list(argv[:1]) != ["rebuild"]:
        return False
    return not any(a.startswith(_NOT_INCREMENTAL) for a in argv[1:])

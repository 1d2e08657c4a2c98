"""`ledgerx …` / `python -m ledgerx …`. Each command module adds its subcommands; errors become
one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from ledgerx.cli import (
    index_cmds,
    legacy_cmds,
    ops_cmds,
    remote_cmds,
    schema_cmds,
    ui_cmds,
    write_cmds,
)

COMMAND_MODULES = [
    write_cmds,
    schema_cmds,
    index_cmds,
    ops_cmds,
    legacy_cmds,
    ui_cmds,
    remote_cmds,
]

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other failure
        raise CliError(
            f"{self.prog.removeprefix('ledgerx').strip() or 'usage'}: {message}", EXIT_USAGE
        )


def add_common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """`--root` (default $LEDGERX_ROOT, else ./data/ledger) and `--json` on every command."""
    p.add_argument(
        "--root", default=None, help="ledger root (default $LEDGERX_ROOT or ./data/ledger)"
    )
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output")


def print_json(obj: object) -> None:
    print(json.dumps(obj, default=str, ensure_ascii=False))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ledgerx", description="Append-only event ledger with a DuckDB index.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for mod in COMMAND_MODULES:
        mod.register(sub)
    return parser


def COMMAND_NAMES() -> list[str]:  # noqa: N802 - reads like the constant it stands for
    """The subcommands this build has (the demo adapts to what is installed)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def main(argv: Sequence[str] | None = None) -> int:
    from ledgerx.errors import LedgerError, LedgerIOError, SchemaError

    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int | None] = args.handler
        return handler(args) or 0
    except CliError as e:
        print(f"ledgerx: error: {e}", file=sys.stderr)
        return e.code
    except (SchemaError, LedgerIOError, LedgerError, OSError, ValueError) as e:
        print(f"ledgerx: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ledgerx: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # last resort: still one line, never a traceback dump
        print(f"ledgerx: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
        msg = f"{e.filename}: {msg}"
    return " ".join(msg.split())

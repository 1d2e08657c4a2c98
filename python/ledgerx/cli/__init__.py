"""`ledgerx …` / `python -m ledgerx …`. Each command module adds its subcommands; errors become
one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from ledgerx.errors import LedgerError

# The command modules (`ledgerx.cli.<name>`), in the order `--help` lists their commands, and the
# commands each one registers. A process builds the parser of the command its argv names only
# (`build_parser`): importing every module and building every subparser cost a one-event
# `ledgerx rebuild` ~10 % of its instructions. tests/test_cli_lazy.py checks this table against
# what the modules register.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "write_cmds": ("emit", "tail"),
    "schema_cmds": ("schema",),
    "index_cmds": ("rebuild", "query", "status", "verify"),
    "results_cmds": ("runs", "show", "trials"),
    "ops_cmds": ("daemon", "retention"),
    "legacy_cmds": ("legacy",),
    "ui_cmds": ("ui",),
    "remote_cmds": ("ship",),
}

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(LedgerError):
    """A user-facing failure: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other failure
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


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with `argv` that starts with a command's name, a parser
    with only the commands of that command's module, which parses that argv exactly as the
    whole one does (a subcommand's parse, help and errors never read its siblings)."""
    from ledgerx import __version__

    parser = _Parser(prog="ledgerx", description="Append-only event ledger with a DuckDB index.")
    parser.add_argument("--version", action="version", version=f"ledgerx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    import importlib

    for name in _modules_for(argv):
        importlib.import_module(f"ledgerx.cli.{name}").register(sub)
    return parser


def _modules_for(argv: Sequence[str] | None) -> list[str]:
    """The command modules a parse of `argv` needs: the one that registers its first word when
    that is a command (the top-level parser has only options before the command), else all
    (no command, an option first such as `--help`, or an unknown command: the message lists
    every command)."""
    if argv:
        for name, commands in COMMAND_MODULES.items():
            if argv[0] in commands:
                return [name]
    return list(COMMAND_MODULES)


def COMMAND_NAMES() -> list[str]:  # noqa: N802 - reads like the constant it stands for
    """The subcommands this build has (the demo adapts to what is installed)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. As the process's entry point (`argv` None: the `ledgerx` script,
    `python -m ledgerx`), a command marked `quick_exit` (rebuild) ends the process itself once
    done: see `_quick_exit`."""
    try:
        rc = _main(argv)
        if argv is None and _QUICK_EXIT:
            _quick_exit(rc)
        return rc
    finally:  # also after a usage error or --help (SystemExit)
        _settle_prestart()


def _settle_prestart() -> None:
    """Wait for a DuckDB instance that `rebuild` started in a thread and its round did not take
    (nothing new to index): Python's teardown must not run while that thread is in DuckDB
    (it ends such a thread when it asks for the GIL back, and the process aborts)."""
    pre = sys.modules.get("ledgerx._prestart")
    if pre is not None:
        pre.settle_prestarted()


_QUICK_EXIT: list[bool] = []


def _quick_exit(rc: int) -> None:
    """Flush stdout and stderr, run the `atexit` handlers, and end the process without
    Python's own teardown: unloading DuckDB and the modules costs 40-50 ms, a sixth of a
    one-event `ledgerx rebuild` process. Nothing is left to write by then: the index files
    were checkpointed, fsynced, closed and published, and the DuckDB instance holds no file."""
    import atexit

    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    os._exit(rc)


def _main(argv: Sequence[str] | None) -> int:
    from ledgerx.errors import LedgerIOError, SchemaError

    try:
        args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
        if getattr(args, "quick_exit", False):
            _QUICK_EXIT.append(True)
        handler: Callable[[argparse.Namespace], int | None] = args.handler
        return handler(args) or 0
    except BrokenPipeError:
        # The reader of our output went away (`ledgerx show ... | head -2`): end quietly, and
        # keep Python from complaining when it flushes stdout at exit.
        _silence_stdout()
        return 0
    except CliError as e:
        print(f"ledgerx: error: {e}", file=sys.stderr)
        return e.code
    except (SchemaError, LedgerIOError, LedgerError, OSError, ValueError) as e:
        print(f"ledgerx: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ledgerx: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # last resort: still one line, never a traceback dump
        print(f"ledgerx: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR


def _silence_stdout() -> None:
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def existing_root(root: str | None) -> Path:
    """The ledger root a read command works on; a root that does not exist (a typo in --root
    or $LEDGERX_ROOT) is an error, never an empty "OK"."""
    from ledgerx.config import events_dir, resolve_root

    p = resolve_root(root)
    if not p.is_dir():
        raise CliError(
            f"no ledger at {p}: the directory does not exist (check --root or $LEDGERX_ROOT)"
        )
    if not events_dir(p).is_dir():
        raise CliError(
            f"no ledger at {p}: it has no events/ directory (check --root or $LEDGERX_ROOT)"
        )
    return p


def seconds_arg(text: str) -> float:
    """argparse type for durations in seconds: a finite number >= 0."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text!r}")
    return v


def _one_line(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
        msg = f"{e.filename}: {msg}"
    from ledgerx.cli.term import printable

    return printable(" ".join(msg.split()))

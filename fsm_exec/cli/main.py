"""``fsm-exec`` (also ``python -m fsm_exec``): a thin shell over the library.

Exit codes: 0 ok, 1 a failure was found (a journal that breaks the lifecycle, stale
diagrams, a run with failed blocks), 2 a usage error (bad arguments, unreadable input),
141 the reader of the output went away (``| head``): the command stopped quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import IO

from fsm_exec._version import __version__
from fsm_exec.cli._common import (
    CLOSED_PIPE,
    EXIT_CODES,
    USAGE,
    ShownText,
    UsageError,
    complain,
)
from fsm_exec.cli.commands import (
    cancel,
    check,
    demo,
    diagram,
    lifecycle,
    report,
    run,
    runs,
    status,
    trigger,
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the ``fsm-exec`` parser with every command's subparser (the
    CLI reference is generated from it)."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="fsm-exec", formatter_class=fmt,
        description="Run trading instruction blocks through fsm_exec's ExecutionManager, "
                    "draw the block lifecycle, and check journals.",
        epilog="examples:\n  fsm-exec demo\n  fsm-exec demo --mode live --out /tmp/demo\n"
               "  fsm-exec run blocks.jsonl --config system.toml\n"
               "  fsm-exec diagram --events logs/events --block hedge-20251001T18\n"
               "  fsm-exec check logs/events\n"
               "  fsm-exec lifecycle check examples/lifecycles/four_eyes.yaml\n"
               "  fsm-exec runs runs/\n"
               "  fsm-exec status logs/events\n"
               "  fsm-exec cancel logs/events --all --reason 'positions reconciled by hand'\n"
               "  fsm-exec trigger logs/events hedge-1 approve --reason 'second pair of eyes'\n\n"
               + EXIT_CODES)
    p.add_argument("--version", action="version", version=f"fsm-exec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (demo, run, diagram, lifecycle, report, status, cancel, trigger, check,
                    runs):
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    stream = sys.stdout if out is None else out
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            sys.stdout.flush()  # some argparse versions ignore a failed write: flush sees it
            return int(exc.code) if isinstance(exc.code, int) else USAGE
        try:
            code = int(args.func(args, ShownText(stream)))
        except UsageError as exc:
            complain(f"fsm-exec {args.command}: {exc}")
            code = USAGE
        stream.flush()  # a reader that went away is noticed here, not at exit
        return code
    except BrokenPipeError:  # `fsm-exec ... | head -1`: stop quietly, as Unix tools do
        _drop_closed_pipes()
        return CLOSED_PIPE


def _drop_closed_pipes() -> None:
    """Point stdout and stderr at /dev/null, so that flushing them at exit cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                os.dup2(devnull, s.fileno())
    finally:
        os.close(devnull)

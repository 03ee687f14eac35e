"""``fsm-exec check``: check journals against the lifecycle."""

from __future__ import annotations

import argparse
from typing import IO, Any

from fsm_exec.cli._common import (
    EXIT_CODES,
    FOUND,
    OK,
    UsageError,
    journal_paths,
)


def cmd_check(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.tools.check import check_journal

    sources = journal_paths(args.logs)  # what every command reading a journal refuses
    try:
        report = check_journal(sources[0] if len(sources) == 1 else sources)
    except OSError as exc:  # e.g. a directory among several files
        raise UsageError(f"cannot read: {exc}") from None
    print(report.summary(), file=out)
    return OK if report.ok else FOUND


def add_parser(sub: Any) -> None:
    """The ``check`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    c = sub.add_parser(
        "check", formatter_class=fmt, help="check journals against the lifecycle",
        description="Replay journals against the block lifecycle: every transition an edge "
                    "of the table from the block's current state, blocks started in order "
                    "and one at a time, nothing moving after a terminal state, counters "
                    "agreeing. A block left in flight (a crash) is reported in doubt.",
        epilog="exit code 1: the journal breaks a rule; the first offending file:line is "
               "printed.\n\n" + EXIT_CODES)
    c.add_argument("logs", nargs="+", metavar="LOG",
                   help="a log directory, or journal files in order")
    c.set_defaults(func=cmd_check)

"""``fsm-exec check``: check journals against the lifecycle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import IO, Any

from fsm_exec.cli._common import (
    EXIT_CODES,
    FOUND,
    OK,
    UsageError,
)


def cmd_check(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.journal.files import journal_files
    from fsm_exec.tools.check import check_journal

    sources = [Path(p) for p in args.logs]
    for p in sources:
        if not p.exists():
            raise UsageError(f"{p}: no such file or directory")
        if p.is_dir() and not journal_files(p):
            raise UsageError(f"{p}: holds no ExecutionManager journal")
        if p.is_file() and not looks_like_a_journal(p):
            raise UsageError(f"{p}: not a journal (its first line is not a journal record); "
                             "pass a log directory or its *_events.jsonl files")
    try:
        report = check_journal(sources[0] if len(sources) == 1 else sources)
    except OSError as exc:  # e.g. a directory among several files
        raise UsageError(f"cannot read: {exc}") from None
    print(report.summary(), file=out)
    return OK if report.ok else FOUND


def looks_like_a_journal(path: Path) -> bool:
    """The reader's own test (``journal.reader.looks_like_a_journal``), as a usage error
    when the file cannot be read."""
    from fsm_exec.journal.files import JournalCorruptError
    from fsm_exec.journal.reader import looks_like_a_journal as sniff

    try:
        return sniff(path)
    except JournalCorruptError as exc:
        raise UsageError(exc.message) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


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

"""``fsm-exec cancel``: cancel queued blocks of a stopped manager."""

from __future__ import annotations

import argparse
from typing import IO, Any

from fsm_exec.cli._common import (
    OK,
    UsageError,
    parse_time,
    plural,
)


def cmd_cancel(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.tools.cancel import CancelRefused, cancel_offline

    if args.all == bool(args.ids):
        raise UsageError("name the blocks to cancel, or --all (not both)")
    try:
        result = cancel_offline(args.log_dir, None if args.all else args.ids,
                                reason=args.reason, now=parse_time("--at", args.at))
    except CancelRefused as exc:
        raise UsageError(str(exc)) from None
    if not result.cancelled:
        print(f"{args.log_dir}: nothing queued, nothing cancelled", file=out)
    else:
        print(f"{args.log_dir}: cancelled {plural(len(result.cancelled), 'block', 'blocks')} "
              f"(reason: {args.reason}): {', '.join(result.cancelled)}", file=out)
    left = result.queued
    print(f"  still queued: {', '.join(left) if left else 'none'}", file=out)
    if result.in_flight is not None:
        print(f"  in flight: {result.in_flight} (settled by recover() when the strategy "
              "process starts; a block in flight cannot be cancelled)", file=out)
    if result.halted:
        print(f"  the manager stays halted ({result.halt_reason}): resume it from the strategy "
              "process with update_state(ts, 'manual')", file=out)
    return OK


def add_parser(sub: Any) -> None:
    """The ``cancel`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    ca = sub.add_parser(
        "cancel", formatter_class=fmt, help="cancel queued blocks of a stopped manager",
        description="Cancel queued blocks in the journal of a manager that is not running: "
                    "they end cancelled and are never routed. The journal's lock is taken "
                    "first, so this is refused while a manager holds the directory (cancel "
                    "from inside it with em.cancel(ts, ids, reason=...) instead). Only "
                    "queued blocks can be cancelled: an id that is unknown, in flight or "
                    "finished refuses the whole call, and nothing is changed. A halted "
                    "manager stays halted; resuming is the strategy process's decision "
                    "(update_state(ts, 'manual')): there is no resume command. It is "
                    "journaled as an operator's action (who, with which tool, the wall "
                    "clock), not as a start of the manager. It never imports or runs "
                    "the code the journal's lifecycle names (hooks, call guards): a "
                    "journal is data. Run as root, the files it "
                    "creates take the owner, group and mode of the journal's; run as "
                    "another user than the journal's, it is refused.",
        epilog="exit codes:\n"
               "    0  cancelled (or nothing was queued)\n"
               "    2  refused, nothing changed: the directory is in use (the holder's pid "
               "is named), no readable journal, an id that is not queued, no --reason, a "
               "bad --at, another user's journal\n"
               "  141  the reader of the output went away (| head): stopped quietly")
    ca.add_argument("log_dir", metavar="LOG_DIR", help="the manager's log directory")
    ca.add_argument("ids", nargs="*", metavar="ID", help="the queued blocks to cancel")
    ca.add_argument("--all", action="store_true", help="cancel every queued block")
    ca.add_argument("--reason", required=True, metavar="TEXT",
                    help="why (journaled with each cancelled block)")
    ca.add_argument("--at", metavar="TIME",
                    help="the time the cancel's records carry: an ISO 8601 time with an "
                         "offset (replaying an incident, or in a backtest journal's own "
                         "time; default: the wall clock)")
    ca.set_defaults(func=cmd_cancel)

"""``fsm-exec trigger``: fire an external trigger of a user lifecycle on a stopped manager."""

from __future__ import annotations

import argparse
from typing import IO, Any

from fsm_exec.cli._common import OK, UsageError


def cmd_trigger(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.boundary.canonical import parse_timestamp
    from fsm_exec.tools.trigger import TriggerRefused, trigger_offline

    at = None
    if args.at is not None:
        at = parse_timestamp(args.at)
        if at is None:
            raise UsageError(f"--at {args.at!r}: not an ISO 8601 time with an offset "
                             "(2026-01-05T14:00:00Z)")
    try:
        result = trigger_offline(args.log_dir, args.block_id, args.event, reason=args.reason,
                                 now=at)
    except TriggerRefused as exc:
        raise UsageError(str(exc)) from None
    print(f"{args.log_dir}: {result.block_id} {result.source} --{result.event}--> "
          f"{result.dest} (reason: {args.reason})", file=out)
    left = result.queued
    print(f"  still queued: {', '.join(left) if left else 'none'}", file=out)
    print("  the strategy process carries on from there when it starts (recover())",
          file=out)
    if result.halted:
        print(f"  the manager stays halted ({result.halt_reason}): resume it from the strategy "
              "process with update_state(ts, 'manual')", file=out)
    return OK


def add_parser(sub: Any) -> None:
    """The ``trigger`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    tr = sub.add_parser(
        "trigger", formatter_class=fmt,
        help="fire an external trigger (an approval...) on a stopped manager's block",
        description="Fire an external trigger of the journal's lifecycle (a transition "
                    "marked external: true, such as four-eyes' approve or reject) on the "
                    "block in flight of a manager that is not running. The journal's lock "
                    "is taken first, so this is refused while a manager holds the directory "
                    "(trigger from inside it with em.trigger(block_id, event, ts, "
                    "reason=...) instead). A trigger that is not external or not allowed in "
                    "the block's state, or a block that is not the one in flight, is refused "
                    "and nothing is changed. The move is journaled with the reason, fsynced "
                    "before the command returns; the strategy process carries on from the "
                    "new state when it starts. The hooks of the state entered run here.",
        epilog="exit codes:\n"
               "    0  fired\n"
               "    2  refused, nothing changed: the directory is in use (the holder's pid "
               "is named), no readable journal, the block not in flight, a trigger not "
               "external or not allowed in its state, no --reason\n"
               "  141  the reader of the output went away (| head): stopped quietly")
    tr.add_argument("log_dir", metavar="LOG_DIR", help="the manager's log directory")
    tr.add_argument("block_id", metavar="BLOCK_ID", help="the block in flight")
    tr.add_argument("event", metavar="EVENT", help="the external trigger to fire")
    tr.add_argument("--reason", required=True, metavar="TEXT",
                    help="why (journaled with the move)")
    tr.add_argument("--at", metavar="TS", default=None,
                    help="the move's timestamp (ISO 8601 with an offset; default: now, UTC)")
    tr.set_defaults(func=cmd_trigger)

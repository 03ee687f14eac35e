"""``fsm-exec status``: what a journal says about its manager, now."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import IO, Any

from fsm_exec.cli._common import (
    USAGE,
    UsageError,
    parse_time,
    read_config,
)


def cmd_status(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.boundary.config import ExecutionConfig
    from fsm_exec.core.errors import ComponentError
    from fsm_exec.tools.status import STATUS_FORMAT, StatusUnreadable, format_status, read_status

    now = parse_time("--now", args.now)
    config, source = None, "the default config"
    if args.config:
        try:
            config = ExecutionConfig.from_dict(read_config(Path(args.config)))
        except ComponentError as exc:
            raise UsageError(str(exc)) from None
        source = args.config
    try:
        report = read_status(args.log_dir, now=now, config=config, config_source=source)
    except (StatusUnreadable, OSError) as exc:
        if args.json:
            print(json.dumps({
                "format": STATUS_FORMAT, "readable": False, "log_dir": args.log_dir,
                "error": str(exc), "path": getattr(exc, "path", None),
                "line": getattr(exc, "line", None), "exit_code": USAGE}, indent=2), file=out)
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        out.write(format_status(report))
    return int(report["exit_code"])


def add_parser(sub: Any) -> None:
    """The ``status`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    st = sub.add_parser(
        "status", formatter_class=fmt, help="what a journal says about its manager, now",
        description="Read a manager's journal, without taking its lock or writing anything "
                    "(safe while the manager runs), and print what the person on call "
                    "needs: whether a process holds the journal (its pid), whether the "
                    "manager halted and why (code, block, time), the block in flight (state, "
                    "attempt, time in that state against its deadline, whether it is in "
                    "doubt and what recovery would do with it), the queue (count, first ids, "
                    "age of the oldest), the counters, the last record, and the next step, "
                    "with a link into the README's runbook. Deadlines come from --config "
                    "(the manager's own config file), else the defaults.",
        epilog="exit codes:\n"
               "    0  healthy: running or not, nothing halted, in doubt or stuck\n"
               "    1  needs attention: halted, a block in doubt, or a block stuck past its "
               "deadline\n"
               "    2  unreadable: no journal, or a corrupt one (the file:line is named)\n"
               "  141  the reader of the output went away (| head): stopped quietly")
    st.add_argument("log_dir", metavar="LOG_DIR", help="the manager's log directory")
    st.add_argument("--json", action="store_true",
                    help="print one JSON object (keys in the README) instead of text")
    st.add_argument("--config", metavar="FILE",
                    help="the system-wide config the manager runs with (.toml or .json), for "
                         "its deadlines (default: the default config)")
    st.add_argument("--now", metavar="TIME",
                    help="measure ages as of this ISO 8601 time with an offset (default: now)")
    st.set_defaults(func=cmd_status)

"""``fsm-exec runs``: the backtest runs under a base directory, with their outcomes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import IO, Any

from fsm_exec.cli._common import FOUND, OK, UsageError


def _count(v: int | None) -> str:
    return "-" if v is None else str(v)


def cmd_runs(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.boundary.escape import terminal_text
    from fsm_exec.tools.runs import list_runs

    base = Path(args.base_dir)
    if not base.is_dir():
        raise UsageError(f"{base}: no such directory")
    runs = list_runs(base)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2), file=out)
    elif not runs:
        print(f"{terminal_text(base)}: no runs (directories made by fsm_exec.backtest_run)",
              file=out)
    else:
        head = ("run_id", "started", "check", "accepted", "executed", "failed", "cancelled",
                "queued", "params")
        rows: list[tuple[str, ...]] = [head, *((
            r.run_id, r.started or "-",
            "-" if r.ok is None else ("OK" if r.ok else "FAILED"),
            _count(r.accepted), _count(r.executed), _count(r.failed), _count(r.cancelled),
            _count(r.queued), json.dumps(r.params, sort_keys=True, default=str))
            for r in runs)]
        rows = [tuple(terminal_text(c) for c in row) for row in rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                  + "  " + row[-1], file=out)
        for r in runs:
            if r.ok is False and r.problem:
                print(terminal_text(f"{r.run_id}: {r.problem}"), file=out)
    return OK if all(r.ok is not False for r in runs) else FOUND


def add_parser(sub: Any) -> None:
    """The ``runs`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "runs", formatter_class=fmt, help="list the backtest runs under a directory",
        description="List the runs under BASE_DIR (each a directory made by "
                    "fsm_exec.backtest_run), in the order they started: the run id, when it "
                    "started, whether its journal passes the check, its block counts "
                    "(accepted, executed, failed, cancelled, still queued) and its "
                    "parameters. Read-only.",
        epilog="exit codes:\n"
               "    0  every run's journal passes the check\n"
               "    1  a run's journal fails it (the problem is printed)\n"
               "    2  BASE_DIR is not a directory\n"
               "  141  the reader of the output went away (| head): stopped quietly")
    p.add_argument("base_dir", metavar="BASE_DIR", help="the directory holding the runs")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    p.set_defaults(func=cmd_runs)

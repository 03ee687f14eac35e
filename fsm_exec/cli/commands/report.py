"""``fsm-exec report``: a run report of a journal (HTML or Markdown)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import IO, Any

from fsm_exec.cli._common import (
    EXIT_CODES,
    FOUND,
    OK,
    UsageError,
    complain,
    journal_paths,
)


def _output(args: argparse.Namespace, out: IO[str], text: str) -> None:
    from fsm_exec.journal.export import replace_file

    if args.output:
        try:
            replace_file(args.output, text)
        except OSError as exc:
            raise UsageError(f"--output: cannot write: {exc}") from None
        print(f"wrote {args.output}", file=out)
    else:
        out.write(text)


def _format(args: argparse.Namespace) -> str:
    return str(args.format or ("markdown" if (args.output or "").endswith(".md") else "html"))


def cmd_compare(args: argparse.Namespace, out: IO[str], dirs: list[Path],
                sources: list[Path] | None = None) -> int:
    """Several runs side by side: the log directories given, or the runs under one."""
    from fsm_exec.tools.report.compare import (
        build_comparison,
        comparison_html,
        comparison_markdown,
        problems,
    )

    comp = build_comparison(dirs, title=args.title, sources=sources)
    _output(args, out, comparison_html(comp) if _format(args) == "html"
            else comparison_markdown(comp))
    for run, problem in problems(comp):
        complain(f"fsm-exec report: run {run}: the journal breaks the lifecycle: {problem}")
    return OK if comp.ok else FOUND


def cmd_report(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.tools.report import ReportDependencyError, build_report, to_html, to_markdown
    from fsm_exec.tools.report.compare import holds_runs, run_dirs

    paths = [Path(p) for p in args.logs]
    if len(paths) == 1 and holds_runs(paths[0]):  # a base directory of runs
        return cmd_compare(args, out, run_dirs(paths[0]), sources=paths)
    if len(paths) > 1 and all(p.is_dir() for p in paths):  # log directories side by side
        if any(holds_runs(p) for p in paths):
            raise UsageError("give several log directories, or one directory of runs, "
                             "not both")
        journal_paths(args.logs)  # each holds a journal
        return cmd_compare(args, out, paths)
    files = journal_paths(args.logs)
    try:
        report = build_report(files[0] if len(files) == 1 else files, title=args.title)
    except OSError as exc:  # e.g. a directory among several journal files
        raise UsageError(str(exc)) from None
    if not report.records and not report.problem:
        raise UsageError(f"{', '.join(args.logs)}: no journal records")
    try:
        text = to_html(report) if _format(args) == "html" else to_markdown(report)
    except ReportDependencyError as exc:
        raise UsageError(str(exc)) from None
    _output(args, out, text)
    if report.problem:
        complain(f"fsm-exec report: the journal breaks the lifecycle: {report.problem}; the "
              "report shows the records before it")
        return FOUND
    return OK


def add_parser(sub: Any) -> None:
    """The ``report`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    rp = sub.add_parser(
        "report", formatter_class=fmt, help="a run report of a journal (HTML or Markdown)",
        description="Write a run report of a journal for a reviewer or an operator: the "
                    "totals, the lifecycle overlay, a per-block timeline of the time spent "
                    "in each state (failed and slowest blocks first), histograms of attempts "
                    "and reconciliation waits, the failures with their codes' resolutions, "
                    "and the halts and resumes on the time axis.\n\n"
                    "HTML (the default): one self-contained file, no script, nothing fetched "
                    "when viewed; its plots need matplotlib (pip install 'fsm-exec[report]') "
                    "and its diagram Graphviz's dot. --format markdown: the same with Mermaid "
                    "(a gantt timeline), for a pull-request comment.\n\n"
                    "Several runs side by side: give several log directories, or one "
                    "directory of runs (each made by fsm_exec.backtest_run, as fsm-exec runs "
                    "lists them): one table, a row per run with its id, its parameters (a "
                    "column each), its check verdict and its block counts (accepted, "
                    "executed, failed, cancelled, queued).",
        epilog="exit code 1: the journal breaks the lifecycle; the report is still written, "
               "from the records before the first offending file:line, and says so (runs "
               "side by side: a run's journal breaks it; each is named on stderr).\n\n"
               + EXIT_CODES)
    rp.add_argument("logs", nargs="+", metavar="LOG",
                    help="a log directory, or journal files in order; or several log "
                         "directories, or a directory of runs, side by side")
    rp.add_argument("--output", "-o", metavar="FILE",
                    help="write here (default: stdout); a .md name implies --format markdown")
    rp.add_argument("--format", choices=("html", "markdown"),
                    help="html (default) or markdown")
    rp.add_argument("--title", help="the report's title (default: names the journal)")
    rp.set_defaults(func=cmd_report)

"""Runs side by side: one row per run (a parameter grid, an optimizer: the runs under a base
directory made by :func:`~fsm_exec.backtest_run`, or any log directories), with its id, its
parameters (one column each) and its outcome counts, as ``fsm-exec report`` draws it when
given several log directories or a directory of runs. Every value is escaped for its medium,
as in the one-run report."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import attrs

from fsm_exec.boundary.escape import markdown_text, terminal_text
from fsm_exec.journal.files import journal_files
from fsm_exec.journal.runs import RUN_COMPONENT
from fsm_exec.tools.runs import RunSummary, summarize

#: The outcome columns, in order: (heading, the RunSummary field).
COUNTS: tuple[tuple[str, str], ...] = (
    ("accepted", "accepted"), ("executed", "executed"), ("failed", "failed"),
    ("cancelled", "cancelled"), ("queued", "queued"))

#: What the comparison's columns mean, said once under its table.
NOTE = ("run: the run's id (its directory's name when it has none); params: the parameters "
        "it journaled first (backtest_run); check: whether its journal obeys the block "
        "lifecycle (fsm-exec check); accepted, executed, failed, cancelled: its blocks by "
        "outcome; queued: accepted and never started; -: no manager journal.")


@attrs.frozen
class Comparison:
    """Runs side by side, as data: ``params`` are the parameter names any run has, in
    order; each run's summary is a :class:`~fsm_exec.tools.runs.RunSummary`."""

    title: str
    sources: tuple[str, ...]
    params: tuple[str, ...]
    runs: tuple[RunSummary, ...]

    @property
    def ok(self) -> bool:
        """No run's journal breaks the lifecycle."""
        return all(r.ok is not False for r in self.runs)


def holds_runs(path: Path) -> bool:
    """True if ``path`` is a directory of runs: no manager journal of its own, and at
    least one directory directly under it with a ``BacktestRun`` or manager journal."""
    if not path.is_dir() or journal_files(path):
        return False
    return any(d.is_dir() and (journal_files(d, RUN_COMPONENT) or journal_files(d))
               for d in path.iterdir())


def run_dirs(path: Path) -> list[Path]:
    """The run directories directly under ``path``, by name."""
    return sorted(d for d in path.iterdir() if d.is_dir() and (
        journal_files(d, RUN_COMPONENT) or journal_files(d)))


def build_comparison(dirs: Sequence[Path | str], *, title: str | None = None,
                     sources: Sequence[Path | str] | None = None) -> Comparison:
    """Each log directory summarized (its id and parameters, its check verdict and block
    counts), in the order the runs started, then by id. ``sources``: what to say the runs
    came from (default: the directories)."""
    runs = sorted((summarize(Path(d)) for d in dirs),
                  key=lambda r: (r.started or "", r.run_id))
    names: list[str] = []
    for r in runs:
        if isinstance(r.params, dict):
            names += [k for k in r.params if k not in names]
    return Comparison(title or f"Runs compared: {len(runs)} run{'s' * (len(runs) != 1)}",
                      tuple(str(d) for d in (dirs if sources is None else sources)),
                      tuple(names), tuple(runs))


def _param(run: RunSummary, name: str) -> str:
    if not isinstance(run.params, dict) or name not in run.params:
        return "-"
    value = run.params[name]
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _check(run: RunSummary) -> str:
    return "-" if run.ok is None else ("OK" if run.ok else "FAILED")


def rows(comp: Comparison) -> tuple[list[str], list[list[str]]]:
    """The table: its headings, and one row of plain text per run."""
    head = ["run", *comp.params, "check", *(h for h, _ in COUNTS)]
    body = [[r.run_id, *(_param(r, p) for p in comp.params), _check(r),
             *("-" if getattr(r, f) is None else str(getattr(r, f)) for _, f in COUNTS)]
            for r in comp.runs]
    return head, body


def problems(comp: Comparison) -> list[tuple[str, str]]:
    """``(run, problem)`` for each run whose journal breaks the lifecycle."""
    return [(r.run_id, r.problem or "") for r in comp.runs if r.ok is False]


def comparison_markdown(comp: Comparison) -> str:
    """The comparison as Markdown: every cell one inert run of text."""
    md = markdown_text
    head, body = rows(comp)
    out = [f"# {md(comp.title)}", "", f"From {md(', '.join(comp.sources))}.", "",
           "| " + " | ".join(md(h) for h in head) + " |", "|" + " --- |" * len(head)]
    out += ["| " + " | ".join(md(c) for c in row) + " |" for row in body]
    out += ["", md(NOTE), ""]
    broken = problems(comp)
    if broken:
        out += ["## Journals that break the lifecycle", ""]
        out += [f"- {md(run, code=True)}: {md(problem)}" for run, problem in broken]
        out.append("")
    return "\n".join(out)


def _e(x: object) -> str:
    return html.escape(terminal_text(x), quote=True)


_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #222; margin: 0 auto; max-width: 1100px; padding: 1.2em 1.6em 3em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
.sources, .defn { color: #555; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left;
         overflow-wrap: anywhere; }
th { background: #f4f6fb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.bad { color: #c62828; font-weight: bold; }
"""


def comparison_html(comp: Comparison) -> str:
    """The comparison as one self-contained HTML page (no script, nothing fetched)."""
    from fsm_exec._version import __version__

    head, body = rows(comp)
    first_count = len(head) - len(COUNTS)
    cells = []
    for row in body:
        tds = []
        for i, c in enumerate(row):
            cls = ("bad" if i == first_count - 1 and c == "FAILED"
                   else "num" if i >= first_count else "")
            tds.append(f'<td class="{cls}">{_e(c)}</td>' if cls else f"<td>{_e(c)}</td>")
        cells.append("<tr>" + "".join(tds) + "</tr>")
    broken = problems(comp)
    parts = [f"<h1>{_e(comp.title)}</h1>",
             f'<p class="sources">from {_e(", ".join(comp.sources))}</p>',
             "<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head)
             + "</tr></thead><tbody>" + "".join(cells) + "</tbody></table>",
             f'<p class="defn">{_e(NOTE)}</p>']
    if broken:
        parts.append("<h2>Journals that break the lifecycle</h2><ul>" + "".join(
            f"<li><code>{_e(run)}</code>: {_e(problem)}</li>" for run, problem in broken)
            + "</ul>")
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(comp.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        *parts, f'<footer><p class="defn">fsm-exec {_e(__version__)} report</p></footer>',
        "</body>", "</html>", ""])

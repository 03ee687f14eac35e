"""A run report: what a journal says happened, for a reviewer or an operator.

:func:`build_report` reads a journal into a :class:`RunReport` (plain data); two thin
renderers draw it: :func:`to_html`, one self-contained page whose plots matplotlib draws as
inline SVG (the optional ``report`` extra, imported only here and only when called), and
:func:`to_markdown`, the same with Mermaid (a ``gantt`` timeline, ``xychart-beta`` bars) for
a pull-request comment.

Durations come from the records: the time between a block's records (the caller's
timestamps), except where the manager measured a wait itself (``waited_s`` on the move out of
``pending_reconciliation``), which is used instead. Within one ``update_state`` call every
record carries the same timestamp, so a backtest shows no time in any state.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from fsm_exec.boundary.canonical import parse_timestamp
from fsm_exec.journal.files import JournalCorruptError
from fsm_exec.journal.reader import JournalRecord, read_journal
from fsm_exec.tools.diagram import (
    DiagramModel,
    GraphvizMissingError,
    LifecycleTable,
    current_table,
    overlay_events,
    render_graphviz,
    to_dot,
    to_markdown_table,
    to_mermaid,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: How many blocks the timeline shows (failed and in-flight ones always come first).
TIMELINE_ROWS = 25
#: The sections of a report, in order: (id, heading). Both renderers use them.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("totals", "Totals"),
    ("lifecycle", "What the run did"),
    ("timeline", "Time in each state"),
    ("attempts", "Attempts per block"),
    ("waits", "Reconciliation waits"),
    ("failures", "Failures"),
    ("halts", "Halts and resumes"),
    ("blocks", "Every block"),
)

#: Records a manager writes when it starts (stamped with the wall clock, not with the
#: caller's time): left out of the run's time span.
_WALL_CLOCK = frozenset({"component_initialization", "checkpoint", "recovered"})


class ReportDependencyError(RuntimeError):
    """The HTML report needs matplotlib (the ``report`` extra)."""


# ------------------------------------------------------------------------ the data


@attrs.frozen
class Visit:
    """A stay of a block in a state: ``start`` is seconds since the block was queued."""

    state: str
    start: float
    seconds: float
    open: bool = False  # the journal ends while the block is still here


@attrs.frozen
class BlockSummary:
    """One block's life as the journal tells it."""

    block_id: str
    visits: tuple[Visit, ...]
    final: str
    terminal: bool
    attempts: int
    failed: bool
    started: str | None

    @property
    def seconds(self) -> float:
        return sum(v.seconds for v in self.visits)


@attrs.frozen
class Failure:
    """A failed block or an error, with what its code says to do."""

    block_id: str | None
    timestamp: str
    error_code: str
    message: str
    resolution: str
    attempts: int | None


@attrs.frozen
class Halt:
    """The manager halted at ``start`` and was resumed at ``end`` (``None``: never)."""

    start: str
    reason: str
    block_id: str | None
    end: str | None

    def seconds(self) -> float | None:
        a, b = parse_ts(self.start), parse_ts(self.end) if self.end else None
        return (b - a).total_seconds() if a and b else None


@attrs.frozen
class RunReport:
    """Everything a report shows, as data."""

    title: str
    sources: tuple[str, ...]
    records: int
    problem: str | None  # the journal breaks the lifecycle here; drawn from records before
    in_doubt: str | None
    overlay: DiagramModel
    blocks: tuple[BlockSummary, ...]  # failed first, then in flight, then slowest
    waits: tuple[tuple[float, str], ...]  # (seconds waited, the trigger that ended the wait)
    failures: tuple[Failure, ...]
    halts: tuple[Halt, ...]
    finished: tuple[tuple[str, str], ...]  # (timestamp, terminal state), in order
    totals: tuple[tuple[str, str], ...]
    states: tuple[str, ...]  # the table's states, in order (colours follow it)


def parse_ts(text: str | None) -> dt.datetime | None:
    """An ISO 8601 timestamp as an aware datetime (naive ones are UTC), or ``None``."""
    return parse_timestamp(text, naive_is_utc=True)  # the package's one parser


def read_checked(source: Path | str | Sequence[Path | str], component: str = "ExecutionManager"
                 ) -> tuple[list[JournalRecord], str | None]:
    """The records of a journal that obey the lifecycle, and the problem that stopped the
    reading (``None`` when every record does): a corrupt line, or the first record that
    breaks the lifecycle (:func:`fsm_exec.check_journal`), named by ``file:line``."""
    from fsm_exec.tools.check import check_journal

    records: list[JournalRecord] = []
    problem: str | None = None
    src: Path | str | list[Path | str] = (source if isinstance(source, str | Path)
                                          else list(source))
    try:
        for r in read_journal(src, component):
            records.append(r)
    except JournalCorruptError as exc:
        problem = exc.message
    report = check_journal(records, component)
    if not report.ok and report.problem:
        problem = report.problem
        cut = next((i for i, r in enumerate(records)
                    if report.problem.startswith(f"{r.path}:{r.line}:")), len(records))
        records = records[:cut]
    return records, problem


def _seconds(a: dt.datetime | None, b: dt.datetime | None) -> float:
    return max((b - a).total_seconds(), 0.0) if a and b else 0.0


def _blocks(records: Sequence[JournalRecord], table: LifecycleTable,
            failed: set[str]) -> list[BlockSummary]:
    terminal = {s.name for s in table.states if s.kind == "terminal"}
    initial = next((s.name for s in table.states if s.kind == "initial"), "")
    accepted: dict[str, str] = {}
    moves: dict[str, list[JournalRecord]] = {}
    last_ts: dt.datetime | None = None
    for r in records:
        if r.event_type not in _WALL_CLOCK:
            last_ts = parse_ts(r.timestamp) or last_ts
        bid = r.data.get("block_id")
        if not isinstance(bid, str):
            continue
        if r.event_type == "block_accepted":
            accepted.setdefault(bid, r.timestamp)
        elif r.event_type == "block_transition":
            moves.setdefault(bid, []).append(r)
    out = []
    for bid, ms in moves.items():
        enter = parse_ts(accepted.get(bid, ms[0].timestamp))
        state, start, visits, attempts = initial, 0.0, [], 1
        for r in ms:
            d = r.data
            at = parse_ts(r.timestamp)
            waited = d.get("waited_s")
            secs = (float(waited) if isinstance(waited, int | float)
                    and not isinstance(waited, bool) else _seconds(enter, at))
            visits.append(Visit(str(d.get("source", state)), start, secs))
            start += secs
            state, enter = str(d["dest"]), at or enter
            if isinstance(d.get("attempt"), int):
                attempts = max(attempts, d["attempt"])
        if state not in terminal:
            secs = _seconds(enter, last_ts)
            visits.append(Visit(state, start, secs, open=True))
        out.append(BlockSummary(bid, tuple(visits), state, state in terminal, attempts,
                                bid in failed, ms[0].timestamp))
    order = {b.block_id: i for i, b in enumerate(out)}
    return sorted(out, key=lambda b: (not b.failed, b.terminal, -b.seconds, order[b.block_id]))


def build_report(source: Path | str | Sequence[Path | str], *, title: str | None = None,
                 component: str = "ExecutionManager",
                 table: LifecycleTable | None = None) -> RunReport:
    """Read a journal (a log directory, a file, or files in order) into a report."""
    from fsm_exec.core.errors import ERROR_CODES

    table = table or current_table()
    records, problem = read_checked(source, component)
    records = [r for r in records if r.component == component]
    sources = ((str(source),) if isinstance(source, str | Path)
               else tuple(str(s) for s in source))
    failed_records = [r for r in records if r.event_type == "block_failed"]
    failed = {str(r.data.get("block_id")) for r in failed_records}
    blocks = _blocks(records, table, failed)
    terminal = [s.name for s in table.states if s.kind == "terminal"]

    errors: dict[str | None, JournalRecord] = {}
    for r in records:
        if r.event_type == "error":
            errors[r.data.get("block_id")] = r

    def failure(code: str, block_id: str | None, ts: str, attempts: int | None,
                err: JournalRecord | None) -> Failure:
        entry = ERROR_CODES.get(code)
        message = str(err.data.get("error_message")) if err and err.data.get(
            "error_message") else (entry.message if entry else "")
        return Failure(block_id, ts, code, message, entry.resolution if entry else "", attempts)

    failures = []
    for r in failed_records:
        bid = r.data.get("block_id")
        attempts = r.data.get("attempts")
        failures.append(failure(str(r.data.get("error_code", "")), str(bid), r.timestamp,
                                attempts if isinstance(attempts, int) else None,
                                errors.pop(bid, None)))
    for bid, err in errors.items():  # errors that failed no block (a journal write, say)
        failures.append(failure(str(err.data.get("error_code", "")),
                                bid if isinstance(bid, str) else None, err.timestamp, None, err))
    failures.sort(key=lambda f: (parse_ts(f.timestamp) or dt.datetime.min.replace(
        tzinfo=dt.UTC)))

    halts: list[Halt] = []
    for r in records:
        if r.event_type == "manager_halted":
            bid = r.data.get("block_id")
            halts.append(Halt(r.timestamp, str(r.data.get("reason", "")),
                              bid if isinstance(bid, str) else None, None))
        elif r.event_type == "manager_resumed" and halts and halts[-1].end is None:
            halts[-1] = attrs.evolve(halts[-1], end=r.timestamp)

    waits = tuple((float(r.data["waited_s"]), str(r.data.get("trigger")))
                  for r in records if r.event_type == "block_transition"
                  and isinstance(r.data.get("waited_s"), int | float)
                  and not isinstance(r.data.get("waited_s"), bool))
    finished = tuple((r.timestamp, str(r.data["dest"])) for r in records
                     if r.event_type == "block_transition" and r.data.get("dest") in terminal)

    mode = next((str(r.data.get("execution_mode")) for r in reversed(records)
                 if r.event_type == "component_initialization"), None)
    title = title or f"Run report: {', '.join(sources)}"
    overlay = overlay_events(records, component=component, table=table,
                             title="Block lifecycle: what the run did")
    in_flight = [b for b in blocks if not b.terminal]
    stamps = [t for r in records if r.event_type not in _WALL_CLOCK
              for t in [parse_ts(r.timestamp)] if t]
    count = Counter(b.final for b in blocks)
    accepted = {r.data.get("block_id") for r in records if r.event_type == "block_accepted"}
    totals: list[tuple[str, str]] = [
        ("journal", "breaks the lifecycle: " + problem if problem else "obeys the lifecycle"),
        ("execution mode", mode or "unknown"),
        ("records", str(len(records))),
        ("first timestamp", min(stamps).isoformat() if stamps else "none"),
        ("last timestamp", max(stamps).isoformat() if stamps else "none"),
        ("blocks accepted", str(len(accepted))),
        ("blocks that moved", str(len(blocks))),
        *((f"ended in {s}", str(count[s])) for s in terminal),
        ("still in flight", str(len(in_flight))),
        ("queued, never started", str(len(accepted - {b.block_id for b in blocks}))),
        ("blocks retried", str(sum(1 for b in blocks if b.attempts > 1))),
        ("transitions", str(sum(1 for r in records if r.event_type == "block_transition"))),
        ("reconciliation timeouts",
         str(sum(1 for r in records if r.event_type == "reconciliation_timeout"))),
        ("halts", str(len(halts))),
        ("resumes", str(sum(1 for r in records if r.event_type == "manager_resumed"))),
        ("restarts", str(max(sum(1 for r in records
                                 if r.event_type == "component_initialization") - 1, 0))),
        ("recoveries", str(sum(1 for r in records if r.event_type == "recovered"))),
    ]
    return RunReport(
        title=title, sources=sources, records=len(records), problem=problem,
        in_doubt=in_flight[0].block_id if in_flight else None, overlay=overlay,
        blocks=tuple(blocks), waits=waits, failures=tuple(failures), halts=tuple(halts),
        finished=finished, totals=tuple(totals), states=tuple(s.name for s in table.states))


# ------------------------------------------------------------------------ plots (HTML)


def _require_matplotlib() -> None:
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ReportDependencyError(
            "the HTML report draws its plots with matplotlib: pip install "
            "'fsm-exec[report]' (or use --format markdown)") from None


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _svg(fig: Figure) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "fsm-exec"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _colours(states: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(states)}


def _timeline_svg(report: RunReport) -> str | None:
    rows = [b for b in report.blocks if b.seconds > 0 or b.failed or not b.terminal]
    if not any(b.seconds > 0 for b in rows):
        return None
    rows = rows[:TIMELINE_ROWS]
    colours = _colours(report.states)
    fig = _figure(9.5, 0.8 + 0.32 * len(rows))
    ax = fig.add_subplot()
    used: dict[str, Any] = {}
    for y, b in enumerate(rows):
        for v in b.visits:
            if v.seconds <= 0:
                continue
            bar = ax.barh(y, v.seconds, left=v.start, color=colours.get(v.state, "grey"),
                          hatch="//" if v.open else None, edgecolor="white", linewidth=0.5)
            used.setdefault(v.state, bar)
    ax.set_yticks(range(len(rows)),
                  [b.block_id + (" (failed)" if b.failed else "" if b.terminal
                                 else " (in flight)") for b in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the block was queued")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(used.values(), used.keys(), loc="lower right", fontsize=8, frameon=False)
    return _svg(fig)


def _attempts_svg(report: RunReport) -> str | None:
    if not report.blocks:
        return None
    counts = Counter(b.attempts for b in report.blocks)
    xs = range(1, max(counts) + 1)
    fig = _figure(4.6, 2.8)
    ax = fig.add_subplot()
    bars = ax.bar(list(xs), [counts[x] for x in xs], color="#4292c6")
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xlabel("attempts")
    ax.set_ylabel("blocks")
    ax.margins(y=0.15)
    return _svg(fig)


def _waits_svg(report: RunReport) -> str | None:
    if not report.waits:
        return None
    fig = _figure(4.6, 2.8)
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(what for _, what in report.waits))
    palette = ["#4292c6", "#e6550d", "#756bb1", "#31a354"]
    data = [[s for s, what in report.waits if what == g] for g in groups]
    ax.hist(data, bins=20, stacked=True, color=[palette[i % 4] for i in range(len(groups))],
            label=[f"ended by {g}" for g in groups])
    ax.set_xlabel("seconds waited for reconciliation")
    ax.set_ylabel("waits")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def _halts_svg(report: RunReport) -> str | None:
    done = [(t, s) for ts, s in report.finished for t in [parse_ts(ts)] if t]
    if not done:
        return None
    import matplotlib.dates as mdates

    def x(t: dt.datetime) -> float:
        return float(mdates.date2num(t))  # type: ignore[no-untyped-call]

    fig = _figure(9.5, 3.0)
    ax = fig.add_subplot()
    colours = _colours(report.states)
    for state in dict.fromkeys(s for _, s in done):
        times = [x(t) for t, s in done if s == state]
        ax.step(times, range(1, len(times) + 1), where="post", color=colours[state],
                label=f"ended in {state}")
    for n, h in enumerate(report.halts):
        a = parse_ts(h.start)
        if a is None:
            continue
        b = parse_ts(h.end) if h.end else done[-1][0]
        ax.axvline(x(a), color="#c62828", linewidth=1.2, label="halted" if n == 0 else None)
        if b and b > a:
            ax.axvspan(x(a), x(b), color="#c62828", alpha=0.12)
        if h.end and b:
            ax.axvline(x(b), color="#2e7d32", linewidth=1.2, linestyle="--",
                       label="resumed" if n == 0 else None)
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_ylabel("blocks finished")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return _svg(fig)


# ------------------------------------------------------------------------ HTML

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #222; margin: 0 auto; max-width: 1100px; padding: 1.2em 1.6em 3em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.sources { color: #666; margin-top: 0; }
.banner { background: #fdecea; border-left: 5px solid #c62828; padding: .6em 1em; }
.ok { color: #2e7d32; }
.note { color: #555; font-style: italic; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f6fb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
svg { max-width: 100%; height: auto; }
.pair { display: flex; gap: 2em; flex-wrap: wrap; }
.pair > div { flex: 1 1 420px; }
code { font-size: .95em; }
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[object]],
           numeric: Sequence[int] = ()) -> str:
    out = ["<table>"]
    if any(head):
        out += ["<thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead>"]
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(
            f"<td class=\"num\">{_e(c)}</td>" if i in numeric else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _section(sid: str, body: Sequence[str]) -> str:
    heading = dict(SECTIONS)[sid]
    return f'<section id="{sid}">\n<h2>{_e(heading)}</h2>\n' + "\n".join(body) + "\n</section>"


def _overlay_svg(model: DiagramModel) -> str | None:
    try:
        svg = render_graphviz(to_dot(model), "svg").decode()
    except GraphvizMissingError:
        return None
    return svg[svg.index("<svg"):]


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _halt_rows(report: RunReport) -> list[tuple[object, ...]]:
    from fsm_exec.core.errors import ERROR_CODES

    rows: list[tuple[object, ...]] = []
    for h in report.halts:
        entry = ERROR_CODES.get(h.reason)
        secs = h.seconds()
        rows.append((h.start, h.reason + (f": {entry.message}" if entry else ""),
                     h.block_id or "", h.end or "not resumed",
                     "" if secs is None else f"{secs:g} s"))
    return rows


def _block_rows(report: RunReport) -> list[tuple[object, ...]]:
    return [(b.block_id, b.final + ("" if b.terminal else " (in flight)"), b.attempts,
             f"{b.seconds:g}", " \u2192 ".join(v.state for v in b.visits if not v.open)
             + f" \u2192 {b.final}") for b in report.blocks]


def to_html(report: RunReport) -> str:
    """One self-contained HTML page: no script, nothing fetched at view time.

    Raises :class:`ReportDependencyError` without matplotlib.
    """
    from fsm_exec._version import __version__

    _require_matplotlib()
    head = [f"<h1>{_e(report.title)}</h1>",
            f'<p class="sources">from {_e(", ".join(report.sources))}</p>']
    if report.problem:
        head.append(f'<p class="banner" id="problem"><strong>This journal breaks the '
                    f"lifecycle:</strong> {_e(report.problem)}. Everything below is drawn "
                    "from the records before that line.</p>")
    if report.in_doubt:
        head.append(f'<p class="banner">Block <code>{_e(report.in_doubt)}</code> is still in '
                    "flight when the journal ends: after a crash it is in doubt until "
                    "recovery settles it.</p>")
    parts = []
    parts.append(_section("totals", [_table(("", ""), report.totals, numeric=(1,))]))
    overlay = _overlay_svg(report.overlay)
    body = [f"<p>{_e(report.overlay.caption or '')}.</p>"]
    body.append(overlay if overlay else _note(
        "Graphviz's dot is not installed, so the diagram is left out; the table says the "
        "same."))
    body.append(_table(("source", "trigger", "dest", "count", "meaning"),
                       [(e.source, e.trigger, e.dest, e.count, e.meaning)
                        for e in report.overlay.edges], numeric=(3,)))
    parts.append(_section("lifecycle", body))
    timeline = _timeline_svg(report)
    shown = min(len([b for b in report.blocks if b.seconds > 0 or b.failed
                     or not b.terminal]), TIMELINE_ROWS)
    parts.append(_section("timeline", [
        _note(f"The {shown} slowest blocks, failed and in-flight ones first (hatched: still "
              "there when the journal ends). Time between records by their timestamps, or "
              "the manager's own measure of a reconciliation wait.") if timeline else
        _note("No time passed in any state between records (in a backtest every record of a "
              "block carries the same timestamp)."),
        timeline or ""]))
    attempts = _attempts_svg(report)
    parts.append(_section("attempts", [attempts or _note("No block moved.")]))
    waits = _waits_svg(report)
    parts.append(_section("waits", [waits or _note(
        "No reconciliation wait was measured (backtest reconciliation is instant).")]))
    parts.append(_section("failures", [_table(
        ("block", "timestamp", "code", "message", "resolution", "attempts"),
        [(f.block_id or "", f.timestamp, f.error_code, f.message, f.resolution,
          "" if f.attempts is None else f.attempts) for f in report.failures])
        if report.failures else _note("No block failed and no error was logged.")]))
    halts = _halts_svg(report)
    parts.append(_section("halts", [
        halts or _note("No block finished at a readable timestamp."),
        _table(("halted at", "reason", "block", "resumed at", "halted for"),
               _halt_rows(report)) if report.halts else _note("The manager never halted.")]))
    parts.append(_section("blocks", [
        f"<details><summary>{len(report.blocks)} blocks, in the order above</summary>",
        _table(("block", "where it is", "attempts", "seconds", "path"), _block_rows(report),
               numeric=(2, 3)), "</details>"]))
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'; img-src data:">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(report.title)}</title>", f"<style>{_CSS}</style>", "</head>",
        "<body>", "<header>", *head, "</header>", "<main>", *parts, "</main>",
        f"<footer><p class=\"note\">fsm-exec {_e(__version__)} report</p></footer>",
        "</body>", "</html>", ""])


# ------------------------------------------------------------------------ Markdown


def _mermaid_name(text: str) -> str:
    # Gantt and xychart text: no colon, hash, semicolon or quote (syntax there).
    return re.sub(r"[:#;\"\n]", "-", text)


def _md(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _gantt_config(sections: Sequence[str]) -> list[str]:
    # Room on the left for the longest section name (Mermaid's default is 75 px).
    width = 40 + 8 * max((len(s) for s in sections), default=8)
    return ["---", "config:", "  gantt:", f"    leftPadding: {width}", "---"]


def _gantt_timeline(report: RunReport) -> list[str]:
    rows = [b for b in report.blocks if b.seconds > 0][:TIMELINE_ROWS]
    out = ["```mermaid", *_gantt_config([b.block_id for b in rows]), "gantt",
           "    title Time in each state, slowest and failed first",
           "    dateFormat x", "    axisFormat %M:%S", "    todayMarker off"]
    for b in rows:
        out.append(f"    section {_mermaid_name(b.block_id)}")
        for v in b.visits:
            if v.seconds <= 0:
                continue
            tag = "crit, " if b.failed else "active, " if v.open else ""
            start = round(v.start * 1000)
            out.append(f"    {_mermaid_name(v.state)} :{tag}{start}, "
                       f"{max(start + 1, round((v.start + v.seconds) * 1000))}")
    return [*out, "```", ""]


def _gantt_halts(report: RunReport) -> list[str]:
    done = [t for ts, _ in report.finished for t in [parse_ts(ts)] if t]
    out = ["```mermaid", *_gantt_config(["run", "manager"]), "gantt",
           "    title Halts and resumes", "    dateFormat x",
           "    axisFormat %m-%d %H:%M", "    todayMarker off", "    section run"]
    if done:
        first, last = min(done), max(done)
        out.append(f"    blocks finishing :{_ms(first)}, {max(_ms(last), _ms(first) + 1)}")
    out.append("    section manager")
    for h in report.halts:
        a = parse_ts(h.start)
        if a is None:
            continue
        end = parse_ts(h.end) if h.end else (max(done) if done else a)
        name = _mermaid_name(f"halted {h.reason}")
        if end is None or end <= a:
            out.append(f"    {name} :milestone, crit, {_ms(a)}, 0ms")
        else:
            out.append(f"    {name} :crit, {_ms(a)}, {_ms(end)}")
    return [*out, "```", ""]


def _ms(t: dt.datetime) -> int:
    return round(t.timestamp() * 1000)


def _bars(title: str, xlabel: str, ylabel: str, xs: Sequence[str],
          ys: Sequence[int]) -> list[str]:
    return ["```mermaid", "xychart-beta", f'    title "{_mermaid_name(title)}"',
            f'    x-axis "{xlabel}" [{", ".join(xs)}]', f'    y-axis "{ylabel}"',
            f"    bar [{', '.join(str(y) for y in ys)}]", "```", ""]


def _wait_bins(waits: Sequence[float], n: int = 8) -> tuple[list[str], list[int]]:
    top = max(waits)
    width = top / n if top > 0 else 1.0
    counts = [0] * n
    for w in waits:
        counts[min(int(w / width), n - 1)] += 1
    return [f'"{i * width:.3g}-{(i + 1) * width:.3g}"' for i in range(n)], counts


def to_markdown(report: RunReport) -> str:
    """The report as Markdown with Mermaid, for a pull-request comment."""
    h = dict(SECTIONS)
    out = [f"# {report.title}", "", f"From {_md(', '.join(report.sources))}.", ""]
    if report.problem:
        out += [f"> **This journal breaks the lifecycle:** {_md(report.problem)}. Everything "
                "below is drawn from the records before that line.", ""]
    if report.in_doubt:
        out += [f"> Block `{report.in_doubt}` is still in flight when the journal ends.", ""]
    out += [f"## {h['totals']}", "", *_md_table(("", ""), report.totals)]
    out += [f"## {h['lifecycle']}", "", f"{report.overlay.caption}.", "", "```mermaid",
            to_mermaid(report.overlay).rstrip("\n"), "```", "",
            to_markdown_table(report.overlay)]
    out += [f"## {h['timeline']}", ""]
    if any(b.seconds > 0 for b in report.blocks):
        out += _gantt_timeline(report)
    else:
        out += ["No time passed in any state between records (in a backtest every record of "
                "a block carries the same timestamp).", ""]
    out += [f"## {h['attempts']}", ""]
    counts = Counter(b.attempts for b in report.blocks)
    if counts:
        xs = list(range(1, max(counts) + 1))
        out += _bars("Attempts per block", "attempts", "blocks", [str(x) for x in xs],
                     [counts[x] for x in xs])
        out += _md_table(("attempts", "blocks"), [(x, counts[x]) for x in xs])
    else:
        out += ["No block moved.", ""]
    out += [f"## {h['waits']}", ""]
    if report.waits:
        xs_w, ys_w = _wait_bins([w for w, _ in report.waits])
        out += _bars("Reconciliation waits", "seconds", "waits", xs_w, ys_w)
        outcome = Counter(what for _, what in report.waits)
        out += _md_table(("ended by", "waits", "longest (s)"), [
            (what, n, f"{max(w for w, x in report.waits if x == what):g}")
            for what, n in sorted(outcome.items())])
    else:
        out += ["No reconciliation wait was measured (backtest reconciliation is instant).", ""]
    out += [f"## {h['failures']}", ""]
    if report.failures:
        out += _md_table(("block", "timestamp", "code", "message", "resolution", "attempts"),
                         [(f"`{f.block_id}`" if f.block_id else "", f.timestamp, f.error_code,
                           f.message, f.resolution, "" if f.attempts is None else f.attempts)
                          for f in report.failures])
    else:
        out += ["No block failed and no error was logged.", ""]
    out += [f"## {h['halts']}", ""]
    if report.halts:
        out += _gantt_halts(report)
        out += _md_table(("halted at", "reason", "block", "resumed at", "halted for"),
                         _halt_rows(report))
    else:
        out += ["The manager never halted.", ""]
    out += [f"## {h['blocks']}", "", "<details><summary>"
            f"{len(report.blocks)} blocks, failed and slowest first</summary>", "",
            *_md_table(("block", "where it is", "attempts", "seconds", "path"),
                       _block_rows(report)), "</details>", ""]
    return "\n".join(out)

"""The report's plots, drawn by matplotlib as inline SVG (imported only when called)."""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure
from fsm_exec.boundary.escape import terminal_text
from fsm_exec.tools.report.build import (
    PLOT_YEARS,
    TIMELINE_ROWS,
    ReportDependencyError,
    RunReport,
    attempt_buckets,
    odd_waits_note,
    parse_ts,
    plottable,
)

# ------------------------------------------------------------------------ plots (HTML)


def require_matplotlib() -> None:
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ReportDependencyError(
            "the HTML report draws its plots with matplotlib: pip install "
            "'fsm-exec[report]' (or use --format markdown)") from None


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _drawn(chart: Callable[[RunReport], str | None]) -> Callable[[RunReport], str | None]:
    """``chart`` drawn with text from a journal as text: never as mathtext (``$...$``) or
    through TeX (texts read the settings when they are created)."""
    @functools.wraps(chart)
    def draw(report: RunReport) -> str | None:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False,
                                    "svg.fonttype": "none", "svg.hashsalt": "fsm-exec"}):
            return chart(report)
    return draw


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _left_out(ax: Any, text: str) -> None:
    """Say on the chart what it leaves out (and why)."""
    ax.set_title(text, fontsize=8, color="#c62828", loc="left")


def _colours(states: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(states)}


@_drawn
def timeline_svg(report: RunReport) -> str | None:
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
                  [terminal_text(b.block_id) + (" (failed)" if b.failed else "" if b.terminal
                                 else " (in flight)") for b in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the block was queued")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(used.values(), used.keys(), loc="lower right", fontsize=8, frameon=False)
    return _svg(fig)


@_drawn
def attempts_svg(report: RunReport) -> str | None:
    bars_of, ranges = attempt_buckets(report.blocks)
    if not bars_of:
        return None
    fig = _figure(4.6, 2.8)
    ax = fig.add_subplot()
    xs = range(len(bars_of))
    bars = ax.bar(list(xs), [n for _, n in bars_of], color="#4292c6")
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(list(xs), [label for label, _ in bars_of],
                  fontsize=8 if ranges else None, rotation=30 if ranges else 0)
    if ranges:
        _left_out(ax, "attempts over 5 grouped in ranges")
    ax.set_xlabel("attempts")
    ax.set_ylabel("blocks")
    ax.margins(y=0.15)
    return _svg(fig)


@_drawn
def waits_svg(report: RunReport) -> str | None:
    if not report.waits:
        return None
    fig = _figure(4.6, 2.8)
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(what for _, what in report.waits))
    palette = ["#4292c6", "#e6550d", "#756bb1", "#31a354"]
    data = [[s for s, what in report.waits if what == g] for g in groups]
    ax.hist(data, bins=20, stacked=True, color=[palette[i % 4] for i in range(len(groups))],
            label=[f"ended by {terminal_text(g)}" for g in groups])
    odd = odd_waits_note(report)
    if odd:
        _left_out(ax, odd)
    ax.set_xlabel("seconds waited for reconciliation")
    ax.set_ylabel("waits")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


@_drawn
def halts_svg(report: RunReport) -> str | None:
    stamped = [(t, s) for ts, s in report.finished for t in [parse_ts(ts)] if t]
    done = [(t, s) for t, s in stamped if plottable(t)]
    halts = [h for h in report.halts if plottable(parse_ts(h.start))]
    left_out = len(stamped) - len(done) + len(report.halts) - len(halts)
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
                label=f"ended in {terminal_text(state)}")
    for n, h in enumerate(halts):
        a = parse_ts(h.start)
        if a is None:  # pragma: no cover - plottable above
            continue
        b = plottable(parse_ts(h.end)) if h.end else done[-1][0]
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
    if left_out:
        _left_out(ax, f"{left_out} not drawn: timestamps outside the years "
                      f"{PLOT_YEARS[0]}-{PLOT_YEARS[1]}")
    ax.set_ylabel("blocks finished")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return _svg(fig)

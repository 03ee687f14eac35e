"""What the report's charts show and how their axes are laid out, as plain data: both
renderers (matplotlib's SVG, Mermaid) draw from here, and tests check it without a browser.

- Counts have integer ticks from 0 with room above the highest bar, never a window around a
  single value (matplotlib's default for one value is that value ±0.4 or ±4%).
- Times are drawn in the run's own range: one instant gets a minute around it, not years.
- Long block ids are shortened in the middle to :data:`LABEL_CHARS` on a chart, each label
  unique; the report lists every shortened label with its full id.
- Every block can be on the timeline: failed, cancelled and in-flight blocks come first,
  whatever time they took (no time at all is drawn as a mark).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from fsm_exec.tools.report.build import BlockSummary

#: The longest block id a chart prints whole; longer ones are shortened in the middle.
LABEL_CHARS = 28
#: The ends a block's timeline row can say (in this order of precedence on the timeline).
OUTCOMES = ("failed", "cancelled")


def short_label(text: str, width: int = LABEL_CHARS) -> str:
    """``text`` if it fits in ``width`` characters, else its start and end around an
    ellipsis (the end of an id often tells blocks apart: ``...-20251001T18``)."""
    if len(text) <= width:
        return text
    tail = max((width - 1) // 3, 1)
    return text[:width - 1 - tail] + "\u2026" + text[-tail:]


def short_labels(texts: Sequence[str], width: int = LABEL_CHARS) -> list[str]:
    """A label per text, each at most ``width`` characters and all different: two texts
    that shorten alike are numbered (``#2``, ``#3``, ... in place of their tails)."""
    out = [short_label(t, width) for t in texts]
    seen: dict[str, int] = {}
    for i, label in enumerate(out):
        if label == texts[i]:
            continue
        n = seen.get(label, 0) + 1
        seen[label] = n
        if n > 1:
            mark = f"\u2026#{n}"
            out[i] = texts[i][:width - len(mark)] + mark
    return out


def shortened(texts: Sequence[str], width: int = LABEL_CHARS) -> list[tuple[str, str]]:
    """``(label, full text)`` for every text a chart shows shortened, in order."""
    return [(label, text) for label, text in zip(short_labels(texts, width), texts,
                                                 strict=True) if label != text]


def count_axis(top: int, most_ticks: int = 6) -> tuple[int, list[int]]:
    """The upper limit and the ticks of a count axis that starts at 0 and holds ``top``
    with room above it: whole numbers in steps of 1, 2 or 5 times a power of ten."""
    top = max(int(top), 1)
    step = 1
    for power in range(0, 19):
        step = next((m * 10 ** power for m in (1, 2, 5)
                     if top // (m * 10 ** power) + 2 <= most_ticks), 0)
        if step:
            break
    high = (top // step + 1) * step
    return high, list(range(0, high + 1, step))


def nice_step(span: float, most: int) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that cuts ``span`` into at most
    ``most`` steps (1.0 for an empty span)."""
    if not (span > 0 and math.isfinite(span)):
        return 1.0
    raw = span / most
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))


def wait_buckets(waits: Sequence[float], most: int = 8) -> tuple[list[str], list[int]]:
    """Waits counted in buckets of a round width from 0 (for a bar chart whose labels are
    short: each bucket's start, ``0``, ``0.5``, ``1``...): labels and counts."""
    top = max(waits, default=0.0)
    width = nice_step(top, most)
    n = int(top / width) + 1
    counts = [0] * n
    for w in waits:
        counts[min(int(w / width), n - 1)] += 1
    return [f"{i * width:.6g}" for i in range(n)], counts


def mermaid_count_axis(top: int) -> int:
    """The upper limit of a Mermaid bar chart's count axis: Mermaid draws about ten ticks,
    so a multiple of ten keeps every tick a whole number."""
    high, _ = count_axis(top)
    return max(10, -(-high // 10) * 10)


def bar_limits(bars: int) -> tuple[float, float]:
    """x limits for ``bars`` bars at 0, 1, ...: at least three bars' room, centred, so one
    bar is a bar and not a wall."""
    pad = max(0.0, (3 - bars) / 2)
    return -0.6 - pad, bars - 0.4 + pad


def wait_bins(waits: Sequence[float], bins: int = 20) -> list[float]:
    """Bin edges for seconds waited: from 0 (a wait is never negative) to just past the
    longest, so that waits all alike are drawn where they are, not in a window around them."""
    top = max(waits, default=0.0)
    high = top * 1.05 if top > 0 else 1.0
    return [high * i / bins for i in range(bins + 1)]


def time_limits(times: Sequence[dt.datetime]) -> tuple[dt.datetime, dt.datetime]:
    """The run's own time range with a little room at each end; one instant (every block
    finished at the same timestamp, as in a backtest) gets half a minute each side."""
    first, last = min(times), max(times)
    span = (last - first).total_seconds()
    pad = dt.timedelta(seconds=30 if span == 0 else max(span * 0.03, 0.001))
    return first - pad, last + pad


def clock_ticks(span_seconds: float) -> tuple[str, int]:
    """``(strftime format, characters to drop from its end)`` for the tick labels of times
    spanning ``span_seconds``: milliseconds under 10 s (``%f`` less its last 3 digits),
    seconds under 2 hours, then minutes, then days. Every label is a whole time of day
    (the date is in the axis label), so no two ticks of a short run read alike."""
    if span_seconds < 10:
        return "%H:%M:%S.%f", 3
    if span_seconds < 2 * 3600:
        return "%H:%M:%S", 0
    if span_seconds < 2 * 86400:
        return "%m-%d %H:%M", 0
    return "%Y-%m-%d", 0


def clock_label(first: dt.datetime, last: dt.datetime) -> str:
    """The time axis's label: UTC, and the date(s) its ticks leave out."""
    a, b = first.astimezone(dt.UTC), last.astimezone(dt.UTC)
    day = a.date().isoformat() + ("" if a.date() == b.date() else f" to {b.date().isoformat()}")
    return f"time (UTC), {day}"


def gantt_axis_format(span_seconds: float) -> str:
    """A Mermaid gantt ``axisFormat`` (d3) for offsets from 0 spanning ``span_seconds``:
    milliseconds under 10 s, minutes and seconds under an hour, then hours."""
    if not math.isfinite(span_seconds) or span_seconds < 10:
        return "%S.%L s"
    if span_seconds < 3600:
        return "%M:%S"
    return "%H:%M:%S"


def clock_axis_format(span_seconds: float) -> str:
    """A Mermaid gantt ``axisFormat`` for times of day spanning ``span_seconds``."""
    if not math.isfinite(span_seconds) or span_seconds < 10:
        return "%H:%M:%S.%L"
    if span_seconds < 2 * 3600:
        return "%H:%M:%S"
    if span_seconds < 2 * 86400:
        return "%m-%d %H:%M"
    return "%Y-%m-%d"


def outcome(block: BlockSummary) -> str | None:
    """How the timeline tags a block: ``failed``, ``cancelled``, ``in flight``, or ``None``."""
    if block.failed or block.final == "failed":
        return "failed"
    if block.final == "cancelled":
        return "cancelled"
    return None if block.terminal else "in flight"


def timeline_rows(blocks: Sequence[BlockSummary], limit: int) -> list[BlockSummary]:
    """The blocks the per-state timeline shows, at most ``limit``, failed, cancelled and
    in-flight ones first however little time they took: all of them when they fit, else up
    to a third of the rows for failed ones, a sixth for cancelled ones (the longest of each
    first) and every in-flight one, leaving the rest to the slowest others. (The overview
    chart, :func:`block_points`, draws every block.)"""
    by_tag: dict[str | None, list[BlockSummary]] = {}
    for b in blocks:
        by_tag.setdefault(outcome(b), []).append(b)
    tagged = [b for tag in ("failed", "cancelled", "in flight") for b in by_tag.get(tag, [])]
    if len(tagged) > limit // 2:
        room = {"failed": max(limit // 3, 1), "cancelled": max(limit // 6, 1),
                "in flight": limit}
        tagged = [b for tag in ("failed", "cancelled", "in flight")
                  for b in sorted(by_tag.get(tag, []), key=lambda b: -b.seconds)[:room[tag]]]
    rest = sorted(by_tag.get(None, []), key=lambda b: -b.seconds)
    return (tagged + rest)[:limit]


def block_points(blocks: Sequence[BlockSummary]
                 ) -> dict[str, list[tuple[dt.datetime, float]]]:
    """Every block with a readable start, as ``(when it started, seconds it took)`` by how
    it ended (``success``, ``failed``, ``cancelled``, ``in flight``, or its state)."""
    from fsm_exec.tools.report.build import parse_ts, plottable

    out: dict[str, list[tuple[dt.datetime, float]]] = {}
    for b in blocks:
        when = plottable(parse_ts(b.started))
        if when is not None:
            out.setdefault(outcome(b) or b.final, []).append((when, b.seconds))
    return out

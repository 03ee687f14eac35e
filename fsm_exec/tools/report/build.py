"""A run report as plain data: :func:`build_report` reads a journal into a :class:`RunReport`."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

import attrs

from fsm_exec.boundary.timestamps import journal_time
from fsm_exec.journal.files import JournalCorruptError
from fsm_exec.journal.reader import JournalRecord, read_journal
from fsm_exec.tools.diagram import (
    DiagramModel,
    LifecycleTable,
    overlay_events,
)
from fsm_exec.tools.diagram.journal_table import journal_table

if TYPE_CHECKING:  # pragma: no cover
    pass


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


def on_the_wall_clock(r: JournalRecord) -> bool:
    """The record's timestamp is the wall clock, not the caller's: it says so
    (``clock: wall``, since issue 25), or, in a journal written before, it is one of the
    kinds that were always stamped so (start, checkpoint and recovery records)."""
    if r.data.get("clock") == "wall":
        return True
    if "wall_clock" in r.data:  # the wall clock beside the caller's time
        return False
    return r.event_type in _WALL_CLOCK


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
    odd_waits: int  # measured waits no chart can draw (negative, not finite, huge)
    failures: tuple[Failure, ...]
    halts: tuple[Halt, ...]
    finished: tuple[tuple[str, str], ...]  # (timestamp, terminal state), in order
    totals: tuple[tuple[str, str], ...]
    states: tuple[str, ...]  # the table's states, in order (colours follow it)


def parse_ts(text: str | None) -> dt.datetime | None:
    """An ISO 8601 timestamp as an aware datetime (naive ones are UTC), or ``None``."""
    return journal_time(text)  # the journal's one rule


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


#: What the charts can draw: dates in these years (matplotlib's date axis and Mermaid's
#: milliseconds fail far short of datetime's years 1-9999), waits up to MAX_WAIT seconds.
#: What falls outside is left out of the chart, and the chart says how much.
PLOT_YEARS = (1900, 2199)
MAX_WAIT = 1e9


def plottable(t: dt.datetime | None) -> dt.datetime | None:
    """``t`` if a chart can draw it (within :data:`PLOT_YEARS` in UTC), else ``None``."""
    if t is None:
        return None
    low = dt.datetime(PLOT_YEARS[0], 1, 1, tzinfo=dt.UTC)
    high = dt.datetime(PLOT_YEARS[1] + 1, 1, 1, tzinfo=dt.UTC)
    return t if low <= t < high else None


def _a_wait(v: object) -> TypeGuard[float]:
    """A measured wait a chart can draw: a number of seconds in [0, MAX_WAIT]."""
    return (isinstance(v, int | float) and not isinstance(v, bool)
            and 0 <= v <= MAX_WAIT)  # NaN compares false: refused too


def odd_waits_note(report: RunReport) -> str | None:
    """What the waits chart leaves out, in words (``None``: nothing)."""
    n = report.odd_waits
    return (f"{n} measured wait{'s' * (n != 1)} not drawn: negative, not a number or over "
            f"{MAX_WAIT:g} s." if n else None)


def attempt_buckets(blocks: Sequence[BlockSummary]) -> tuple[list[tuple[str, int]], bool]:
    """How many blocks took how many attempts, as ``(label, blocks)`` bars: one per count
    up to 10, then ranges growing tenfold (11-100, 101-1000, ...), so that a block with a
    billion attempts adds one bar, not a billion. The flag says whether ranges were used."""
    counts = Counter(b.attempts for b in blocks)
    if not counts:
        return [], False
    top = max(counts)
    if top <= 10:
        return [(str(n), counts[n]) for n in range(1, top + 1)], False
    bars = [(str(n), counts[n]) for n in range(1, 6)]
    low, high = 6, 10
    while low <= top:
        bars.append((f"{low}-{high}", sum(c for n, c in counts.items() if low <= n <= high)))
        low, high = high + 1, high * 10
    return bars, True


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
        if not on_the_wall_clock(r):
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
            secs = (float(waited) if _a_wait(waited) else _seconds(enter, at))
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

    records, problem = read_checked(source, component)
    records = [r for r in records if r.component == component]
    # the lifecycle the journal was written under (the code's own for the default one)
    table = table or journal_table(records, component)
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

    measured = [r for r in records if r.event_type == "block_transition"
                and isinstance(r.data.get("waited_s"), int | float)
                and not isinstance(r.data.get("waited_s"), bool)]
    waits = tuple((float(r.data["waited_s"]), str(r.data.get("trigger")))
                  for r in measured if _a_wait(r.data["waited_s"]))
    finished = tuple((r.timestamp, str(r.data["dest"])) for r in records
                     if r.event_type == "block_transition" and r.data.get("dest") in terminal)

    mode = next((str(r.data["execution_mode"]) for r in reversed(records)
                 if r.event_type in ("component_initialization", "checkpoint")
                 and isinstance(r.data.get("execution_mode"), str)), None)
    title = title or f"Run report: {', '.join(sources)}"
    overlay = overlay_events(records, component=component, table=table,
                             title="Block lifecycle: what the run did")
    in_flight = [b for b in blocks if not b.terminal]
    stamps = [t for r in records if not on_the_wall_clock(r)
              for t in [parse_ts(r.timestamp)] if t]
    count = Counter(b.final for b in blocks)
    accepted = {r.data.get("block_id") for r in records if r.event_type == "block_accepted"}
    totals: list[tuple[str, str]] = [
        ("journal", "breaks the lifecycle: " + problem if problem else "obeys the lifecycle"),
        ("execution mode", mode or "unknown"),
        ("history", _history(records)),
        ("records", str(len(records))),
        ("first timestamp", min(stamps).isoformat() if stamps else "none"),
        ("last timestamp", max(stamps).isoformat() if stamps else "none"),
        ("blocks accepted", str(len(accepted))),
        ("blocks that moved", str(len(blocks))),
        *((f"ended in {s}", str(count[s])) for s in terminal),
        ("still in flight", str(len(in_flight))),
        ("queued, never started", str(len(accepted - {b.block_id for b in blocks}))),
        ("blocks with several attempts", str(sum(1 for b in blocks if b.attempts > 1))),
        ("retries", str(sum(1 for r in records if r.event_type == "block_transition"
                            and r.data.get("dest") == "retrying"))),
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
        blocks=tuple(blocks), waits=waits, odd_waits=len(measured) - len(waits),
        failures=tuple(failures), halts=tuple(halts),
        finished=finished, totals=tuple(totals), states=tuple(s.name for s in table.states))


#: What each counter of the totals counts: one meaning each, said in one line (the
#: ``ended in <state>`` rows are defined by :func:`total_definition`).
TOTAL_DEFINITIONS: dict[str, str] = {
    "journal": "whether every record obeys the block lifecycle (fsm-exec check)",
    "execution mode": "the mode the manager last started in (its newest start record or "
                      "checkpoint)",
    "history": "whether the journal holds every record from seq 1, or retention removed "
               "its oldest files: then every count is of the records left, from that day",
    "records": "journal records of this component that obey the lifecycle",
    "first timestamp": "the earliest record timestamp (the caller's clock; start-up "
                       "records, stamped by the wall clock, left out)",
    "last timestamp": "the latest record timestamp, likewise",
    "blocks accepted": "distinct blocks the manager accepted into its queue",
    "blocks that moved": "blocks with at least one lifecycle transition",
    "still in flight": "blocks in a non-terminal state when the journal ends",
    "queued, never started": "accepted blocks that never left the queue",
    "blocks with several attempts": "blocks whose highest attempt number is 2 or more "
                                    "(they went through retrying)",
    "retries": "moves into retrying, all blocks together (the manager's blocks_retried)",
    "transitions": "lifecycle transitions of all blocks",
    "reconciliation timeouts": "waits for reconciliation that ran out "
                               "(reconciliation_timeout records)",
    "halts": "times the manager halted",
    "resumes": "times an operator resumed a halted manager",
    "restarts": "manager starts after the first (component_initialization records - 1)",
    "recoveries": "recoveries from the journal after a restart",
}


def _history(records: Sequence[JournalRecord]) -> str:
    """Whether the journal starts at seq 1, or retention pruned it: from which day (the day
    its oldest file left was started) and which seq it counts."""
    if not records or records[0].seq <= 1:
        return "complete (from seq 1)"
    first = records[0]
    day = first.data.get("written_on") if first.event_type == "checkpoint" else None
    if not isinstance(day, str):
        stamp = parse_ts(first.timestamp)
        day = stamp.date().isoformat() if stamp is not None else "an unknown day"
    return (f"pruned by retention: counts from {day} (seq {first.seq} on; seq "
            f"1-{first.seq - 1} removed)")


def total_definition(name: str) -> str:
    """What the totals row ``name`` counts, in one line."""
    if name.startswith("ended in "):
        return f"blocks whose last transition was into {name.removeprefix('ended in ')}"
    return TOTAL_DEFINITIONS.get(name, "")


#: One line under each table of the report, saying what its numbers mean.
TABLE_NOTES: dict[str, str] = {
    "lifecycle": "count: how many times the run took that edge, all blocks together.",
    "attempts": "attempts: a block's highest attempt number (1, and one more each time it "
                "left retrying: routed again, or its outcome found by asking the venue); "
                "blocks: how many blocks reached that number.",
    "waits": "waits: reconciliation waits the manager measured itself, by the trigger "
             "that ended each; longest: the longest of them, in seconds.",
    "failures": "attempts: the block's highest attempt number (as in Attempts per block); "
                "resolution: what its error code says to do.",
    "halts": "halted for: from the halt to the resume, by the records' timestamps.",
    "blocks": "attempts: highest attempt number; seconds: from accepted to where it is "
              "now, by its records' timestamps (the manager's own measure for a reconciliation "
              "wait); path: the states it went through.",
    "labels": "Block ids longer than the charts print are shortened in the middle; "
              "here in full.",
}


def halt_rows(report: RunReport) -> list[tuple[object, ...]]:
    from fsm_exec.core.errors import ERROR_CODES

    rows: list[tuple[object, ...]] = []
    for h in report.halts:
        entry = ERROR_CODES.get(h.reason)
        secs = h.seconds()
        rows.append((h.start, h.reason + (f": {entry.message}" if entry else ""),
                     h.block_id or "", h.end or "not resumed",
                     "" if secs is None else f"{secs:g} s"))
    return rows


def block_rows(report: RunReport) -> list[tuple[object, ...]]:
    return [(b.block_id, b.final + ("" if b.terminal else " (in flight)"), b.attempts,
             f"{b.seconds:g}", " \u2192 ".join(v.state for v in b.visits if not v.open)
             + f" \u2192 {b.final}") for b in report.blocks]

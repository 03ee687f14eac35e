"""What :func:`~fsm_exec.testing.crash_points` reports: the crash points, the failures
told as stories, the at-least-once windows a run can meet."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import attrs

#: A venue adapter without ``query_execution``: a block whose outcome was lost (to an
#: error, a timeout or a crash) is routed again under the same ``block_id``.
NO_QUERY = "no_query_at_least_once"
#: A crash after the position handler returned and before the journal recorded the
#: hand-off (``positions_updated`` durable, live; the next record, backtest): the deltas
#: are handed off again.
HAND_OFF = "position_hand_off"
#: The at-least-once windows the README's "Guarantees" documents, and what each means.
WINDOWS: Mapping[str, str] = {
    NO_QUERY: "the venue adapter has no query_execution: a block whose outcome was lost is "
              "routed again under the same block_id (at-least-once at the venue: it must "
              "deduplicate by block_id)",
    HAND_OFF: "the crash came after the position handler returned and before the journal "
              "held the hand-off: the deltas are handed off again (at-least-once: the "
              "handler must deduplicate)",
}

_SHOWN = 12  # records shown before a crash point in a story


@attrs.frozen(order=True)
class CrashPoint:
    """Where a run is killed: right ``before`` record ``record`` (1-based, in the journal of
    the uncrashed run) is written, or right ``after`` it became durable. ``event`` says
    what that record is (``b1 routing->pending_reconciliation``, ``block_accepted b2``)."""

    record: int
    when: Literal["before", "after"]
    event: str = attrs.field(default="", order=False)

    def __str__(self) -> str:
        return f"{self.when} record {self.record}" + (f" ({self.event})" if self.event else "")

    @property
    def id(self) -> str:
        """A short id for a parametrized test: ``before-9-positions_updated-b1``."""
        return re.sub(r"[^A-Za-z0-9_.>-]+", "-", f"{self.when}-{self.record}-{self.event}"
                      ).strip("-")


@attrs.frozen
class CrashFailure:
    """One crash point where a promise broke.

    ``point`` (``None``: the scenario fails without any crash), ``records`` (what the
    journal had been asked to write before the kill, one short line each), ``durable``
    (how many of them survived: the rest were lost with the crash), ``problem`` (what went
    wrong), ``windows`` (the at-least-once windows of :data:`WINDOWS` the run met, empty
    when none), ``in_doubt``, ``in_doubt_state`` and ``resolution`` (how ``recover()``
    settled the block left in flight), ``after_restart`` (what the restarted run did),
    ``mode``, and ``journal`` (the run's log directory, kept when ``workdir`` was given).
    """

    point: CrashPoint | None
    records: tuple[str, ...]
    durable: int
    problem: str
    windows: tuple[str, ...] = ()
    in_doubt: str | None = None
    in_doubt_state: str | None = None
    resolution: str | None = None
    after_restart: tuple[str, ...] = ()
    mode: str = "live"
    journal: str | None = None

    def story(self) -> str:
        """The failing point as a few readable lines: the crash, what the disk kept, the
        restart, what went wrong, and the window it falls in."""
        if self.point is None:
            head = [f"without any crash ({self.mode} mode), the scenario breaks a promise:"]
        else:
            lost = len(self.records) - self.durable
            moment = ("just before writing that record" if self.point.when == "before"
                      else "just after that record became durable")
            head = [f"crash {self.point}, {self.mode} mode: the process dies {moment}.",
                    f"Of the {len(self.records)} records written, {self.durable} were "
                    f"durable" + (f"; the last {lost} were lost with the crash (written, "
                                  "not yet fsynced):" if lost else ":")]
            first = max(0, len(self.records) - _SHOWN)
            if first:
                head.append(f"  ... {first} earlier records")
            for i in range(first, len(self.records)):
                mark = "  (lost)" if i >= self.durable else ""
                head.append(f"  {i + 1:4d}  {self.records[i]}{mark}")
            if self.in_doubt is not None:
                head.append(f"The restarted manager recovered {self.in_doubt} in doubt "
                            f"({self.in_doubt_state}), settled by {self.resolution}.")
            else:
                head.append("The restarted manager recovered no block in flight.")
        if self.after_restart:
            head.append("Then: " + "; ".join(self.after_restart) + ".")
        head.append("What went wrong: " + self.problem.replace("\n", "\n    "))
        for w in self.windows:
            head.append(f"At-least-once window {w}: {WINDOWS[w]} (README, Guarantees).")
        if self.journal is not None:
            head.append(f"Journal kept in {self.journal} (fsm-exec check {self.journal}).")
        return "\n".join(head)


@attrs.frozen
class CrashReport:
    """What :func:`crash_points` found.

    ``ok`` (no failure), ``points`` (crash points tried), ``records`` (records the
    uncrashed run wrote), ``failures`` (:class:`CrashFailure`, in point order),
    ``at_least_once`` (points where your check failed inside an at-least-once window you
    declared with ``at_least_once=``: what that window allows, so not a failure), and
    ``windows_met`` (per window, how many points met it, whether your check held there
    or not), ``mode``, and ``total_points`` (the scenario's crash points: more than
    ``points`` when :func:`assert_crash_safe` stopped at the first failure).
    """

    ok: bool
    points: int
    records: int
    failures: tuple[CrashFailure, ...] = ()
    at_least_once: tuple[CrashFailure, ...] = ()
    windows_met: tuple[tuple[str, int], ...] = ()
    mode: str = "live"
    total_points: int | None = None

    def summary(self) -> str:
        """One line: points tried, failures, windows met."""
        total = self.total_points if self.total_points is not None else self.points
        tried = f"{self.points} of {total}" if total != self.points else f"{self.points}"
        text = (f"{tried} crash points over {self.records} journal records "
                f"({self.mode}): " + ("ok" if self.ok else f"{len(self.failures)} failed"))
        if total != self.points:
            text += " (stopped at the first)"
        if self.at_least_once:
            text += (f"; {len(self.at_least_once)} broke your check inside a declared "
                     f"at-least-once window")
        if self.windows_met:
            text += "; windows met: " + ", ".join(f"{w} at {n}" for w, n in self.windows_met)
        return text

    def story(self) -> str:
        """The summary, then the first failure's story (or the first declared
        at-least-once point's, when nothing failed)."""
        shown = self.failures or self.at_least_once
        if not shown:
            return self.summary()
        what = "first failing point" if self.failures else "first at-least-once point"
        return f"{self.summary()}\n\n{what}:\n{shown[0].story()}"



"""What :func:`~fsm_exec.testing.crash_points` reports: the crash points, the failures
told as stories, the at-least-once windows a run can meet."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import attrs

from fsm_exec.boundary.escape import shell_word

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

#: What a crash-points run can exercise, and what it means when it did not. A report
#: counts each in ``exercised``; one it did not exercise is in ``not_covered``.
COVERAGE: Mapping[str, str] = {
    "fills": "no fill: the venue executed no block (each was refused, or failed before "
             "it was routed), so no crash point met an executed block",
    "hand_offs": "no hand-off: the position handler took no deltas, so no crash point met "
                 "the hand-off",
    "retries": "no retry: no block was retried (inject venue faults to cover retries)",
    "in_doubt": "no block in doubt: no restart found a block in flight",
}
#: Without these a run exercised nothing a crash could break: it is not ``ok``.
REQUIRED_COVERAGE: tuple[str, ...] = ("fills", "hand_offs")
_SHORT = {"fills": "no fill", "hand_offs": "no hand-off", "retries": "no retry",
          "in_doubt": "no block in doubt"}
_SHOWN = 12  # records shown before a crash point in a story


def not_covered(exercised: Mapping[str, int]) -> tuple[str, ...]:
    """The names of :data:`COVERAGE` that ``exercised`` counts no instance of, in order."""
    return tuple(k for k in COVERAGE if not exercised.get(k))


def nothing_exercised(missing: tuple[str, ...]) -> tuple[str, ...]:
    """The names of :data:`REQUIRED_COVERAGE` among ``missing``: a run missing any of them
    exercised nothing a crash could break."""
    return tuple(k for k in REQUIRED_COVERAGE if k in missing)


def faults_line(faults: tuple[str, ...]) -> str:
    """The faults the kit injected, in order, as one line of a story."""
    if not faults:
        return "The kit injected no fault."
    return "Faults the kit injected, in order: " + "; ".join(
        f"({i}) {f}" for i, f in enumerate(faults, 1)) + "."


def uncovered_lines(missing: tuple[str, ...]) -> list[str]:
    """What was not covered, a line each, from :data:`COVERAGE`."""
    return [f"  - {COVERAGE[k]}" for k in missing]


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
    ``mode``, ``journal`` (the run's log directory, kept when ``workdir`` was given), and
    ``faults`` (every fault the kit injected into the run, the kill included, in the order
    they happened, one line of prose each).
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
    faults: tuple[str, ...] = ()

    def story(self) -> str:
        """The failing point as a few readable lines: the crash, what the disk kept, the
        restart, what went wrong, the faults the kit injected (in order) and the window it
        falls in."""
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
        head.append(faults_line(self.faults))
        for w in self.windows:
            head.append(f"At-least-once window {w}: {WINDOWS[w]} (README, Guarantees).")
        if self.journal is not None:
            head.append(f"Journal kept in {self.journal} "
                        f"(fsm-exec check {shell_word(str(self.journal))}).")
        return "\n".join(head)


@attrs.frozen
class CrashReport:
    """What :func:`crash_points` found.

    ``ok``: no failure, *and* the run exercised something a crash could break: at least
    one fill and one hand-off (:data:`REQUIRED_COVERAGE`). A scenario whose blocks the
    adapter refuses all is not ``ok``: it proved nothing. ``exercised`` counts, per name
    of :data:`COVERAGE`, what the runs exercised (``fills``: blocks the venue executed in
    the uncrashed run; ``hand_offs``: deltas the position handler took there;
    ``retries``: retries there; ``in_doubt``: restarts that found a block in flight);
    ``not_covered`` names those it did not, and ``faults`` the faults the kit injected
    into the uncrashed run, in order.

    ``points`` (crash points tried), ``records`` (records the
    uncrashed run wrote), ``failures`` (:class:`CrashFailure`, in point order),
    ``at_least_once`` (points where your check failed inside an at-least-once window you
    declared with ``at_least_once=``: what that window allows, so not a failure), and
    ``windows_met`` (per window, how many points met it, whether your check held there
    or not), ``mode``, and ``total_points`` (the scenario's crash points: more than
    ``points`` when :func:`assert_crash_safe` stopped at the first failure).

    ``doubled_hand_offs``: per crash point, the blocks whose deltas the position handler
    took before the kill and again after the restart (the hard-kill window of the
    hand-off: :data:`HAND_OFF`). A handler that deduplicates passes them; one that does
    not would apply each of them twice. Deduplicate by the hand-off key (a handler whose
    ``update_state`` takes ``hand_off_key`` is given it, through the kit's wrappers too: the
    same key for the hand-off made again after the restart), or by the ``block_id`` your
    venue puts in the deltas.
    """

    ok: bool
    points: int
    records: int
    failures: tuple[CrashFailure, ...] = ()
    at_least_once: tuple[CrashFailure, ...] = ()
    windows_met: tuple[tuple[str, int], ...] = ()
    mode: str = "live"
    total_points: int | None = None
    exercised: tuple[tuple[str, int], ...] = ()
    not_covered: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()
    doubled_hand_offs: tuple[tuple[CrashPoint, str], ...] = ()

    @property
    def nothing_exercised(self) -> tuple[str, ...]:
        """What the run lacked of :data:`REQUIRED_COVERAGE` (empty: it exercised enough)."""
        return nothing_exercised(self.not_covered)

    def summary(self) -> str:
        """One line: points tried, failures (or what was not exercised), windows met."""
        total = self.total_points if self.total_points is not None else self.points
        tried = f"{self.points} of {total}" if total != self.points else f"{self.points}"
        if self.failures:
            verdict = f"{len(self.failures)} failed"
        elif self.nothing_exercised:
            verdict = "NOT ok, it exercised nothing: " + ", ".join(
                _SHORT[k] for k in self.nothing_exercised)
        else:
            verdict = "ok"
        text = f"{tried} crash points over {self.records} journal records ({self.mode}): "
        text += verdict
        if total != self.points:
            text += " (stopped at the first)"
        if self.at_least_once:
            text += (f"; {len(self.at_least_once)} broke your check inside a declared "
                     f"at-least-once window")
        if self.windows_met:
            text += "; windows met: " + ", ".join(f"{w} at {n}" for w, n in self.windows_met)
        return text

    def coverage(self) -> str:
        """One line: what the run exercised, and what it did not cover."""
        counts = dict(self.exercised)
        text = "exercised: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in COVERAGE)
        if self.not_covered:
            text += "; not covered: " + ", ".join(_SHORT[k] for k in self.not_covered)
        return text

    def hand_offs(self) -> str:
        """One line per crash point after which the position handler took a block's deltas
        a second time (what a handler without deduplication would double), under a line
        saying how many; ``no hand-off was handed over twice`` when none."""
        if not self.doubled_hand_offs:
            return "no hand-off was handed over twice"
        n = len(self.doubled_hand_offs)
        return "\n".join([
            f"{n} hand-off{'s' * (n != 1)} handed over twice (a position handler without "
            f"deduplication applies {'them' if n != 1 else 'it'} twice):",
            *(f"  - {b}, crash {p}" for p, b in self.doubled_hand_offs)])

    def story(self) -> str:
        """The summary, then what the run did not exercise (with the faults the kit
        injected) when that is why it is not ``ok``; then the first failure's story (or
        the first declared at-least-once point's, when nothing failed)."""
        parts = [self.summary()]
        if not self.failures and self.nothing_exercised:
            parts += ["", "The run exercised nothing a crash could break:",
                      *uncovered_lines(self.nothing_exercised), faults_line(self.faults),
                      "A run that exercises nothing proves nothing: give the scenario "
                      "blocks your adapters execute."]
        shown = self.failures or self.at_least_once
        if shown:
            what = "first failing point" if self.failures else "first at-least-once point"
            parts += ["", f"{what}:", shown[0].story()]
        return "\n".join(parts)



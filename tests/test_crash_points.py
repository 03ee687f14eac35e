"""fsm_exec.testing.crash_points: the manager killed at every journal record of a scripted
scenario, restarted on what the disk kept, and checked against the collaborators: the kit's
own pass at every point; the documented at-least-once windows show exactly where they are
documented, named; an adapter whose query forgets across its restart is caught."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    ExecutionManager,
    ExecutionRejected,
    HandOffKey,
    InstructionBlock,
    check_journal,
)
from fsm_exec.journal.files import JournalCorruptError
from fsm_exec.journal.reader import read_journal
from fsm_exec.testing import (
    WINDOWS,
    CrashFailure,
    CrashPoint,
    CrashReport,
    FaultPlan,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
    assert_crash_safe,
    block_deltas,
    crash_point_tests,
    crash_points,
)

from kit import DEDUP, NO_DEDUP

NO_QUERY, HAND_OFF = "no_query_at_least_once", "position_hand_off"


def blk(block_id: str, amount: float = 1.0) -> dict[str, Any]:
    return {"block_id": block_id, "action": "open", "priority": 1,
            "instructions": [{"venue": "spot", "token": "ETH", "side": "buy",
                              "amount": amount}]}


#: Three blocks: one alone, then two in one batch (a batch cut short is submitted again).
BATCHES = [[blk("b1")], [blk("b2", 2.0), blk("b3", 0.5)]]
TOTAL = {"ETH": 3.5}


class Ledger:
    """A venue adapter in front of an exchange: ``fills`` is what the exchange really
    executed (outside the process); ``orders`` is the adapter's own memory of the orders
    it placed (inside the process). ``dedupe``: it places each block_id once."""

    def __init__(self, *, dedupe: bool = True) -> None:
        self.dedupe = dedupe
        self.fills: Counter[str] = Counter()
        self.orders: dict[str, dict[str, Any]] = {}

    def route_instruction(self, ts: Any, block: InstructionBlock) -> dict[str, Any]:
        if not (self.dedupe and block.block_id in self.orders):
            self.fills[block.block_id] += 1
            self.orders[block.block_id] = block_deltas(block)
        return self.orders[block.block_id]


class QueryableLedger(Ledger):
    """The same adapter, answering query_execution from its memory of orders."""

    def query_execution(self, ts: Any, block: InstructionBlock) -> dict[str, Any] | None:
        return self.orders.get(block.block_id)


def world(venue: Any = None, *, idempotent: bool = True) -> Any:
    """make_collaborators for a venue class (default SimVenue) and the kit's book."""

    def make() -> dict[str, Any]:
        rc = SimReconciliation()
        return {"data_provider": StaticDataProvider(),
                "position_update_handler": SimPositionHandler(rc, idempotent=idempotent),
                "execution_interface_manager": venue() if venue else SimVenue(),
                "reconciliation_component": rc}

    return make


def once(c: Mapping[str, Any]) -> None:
    """The user's promise: each block filled once at the venue, applied once to the book."""
    venue, book = c["execution_interface_manager"], c["position_update_handler"]
    fills = venue.fills if isinstance(venue, Ledger) else Counter(venue.execution_order)
    twice = {b: n for b, n in fills.items() if n > 1}
    assert not twice, f"the venue filled {twice} more than once"
    again = {b: n for b, n in book.applied.items() if n > 1}
    assert not again, f"the book applied {again} more than once"


def once_and_whole(c: Mapping[str, Any]) -> None:
    """``once``, and the book holds the sum of every block's deltas."""
    once(c)
    assert c["position_update_handler"].positions == TOTAL


def points_of(report: CrashReport, *, excused: bool = False) -> list[str]:
    return [str(f.point) for f in (report.at_least_once if excused else report.failures)]


def forget_orders(c: Mapping[str, Any]) -> None:
    c["execution_interface_manager"].orders.clear()


# ------------------------------------------------------------------------ the kit's own


@pytest.mark.parametrize(("mode", "records", "points"), [("live", 19, 31), ("backtest", 16, 32)])
def test_the_kits_simulated_collaborators_pass_at_every_point(
        mode: str, records: int, points: int) -> None:
    """SimVenue, SimPositionHandler (deduplicating) and SimReconciliation keep every promise
    at every crash point: live 19 records, one point before each and one after each of
    its 12 fsyncs; backtest 16 records, before and after each."""
    report = assert_crash_safe(world(), BATCHES, check=once_and_whole, mode=mode)
    assert (report.ok, report.records, report.points) == (True, records, points)
    assert not report.failures and not report.at_least_once
    assert dict(report.windows_met) == {HAND_OFF: 3}  # met, and harmless: it deduplicates
    assert report.summary().startswith(f"{points} crash points over {records} journal")


@pytest.mark.parametrize("plan", [
    FaultPlan(venue=("lost_response",)),
    FaultPlan(venue=("eventually_consistent", "hang_after")),
    FaultPlan(venue=("hang_before", "error"), reconciliation=(("ok", 2.5),)),
    FaultPlan(reconciliation=(("fail", 0.0),)),
    FaultPlan(positions=(True,)),
], ids=repr)
def test_the_kits_collaborators_pass_when_a_crash_meets_a_fault(plan: FaultPlan) -> None:
    """With a fault plan in every run (lost replies, hangs past the timeout, a lagging
    query, failed reconciliation and a refused hand-off, both halting) every crash point
    still keeps every promise; the faults change the journal (19 records without)."""
    report = assert_crash_safe(world(), BATCHES, check=once, faults=plan)
    assert report.ok and report.records != 19


# ------------------------------------------------------------------------ the windows


@pytest.fixture(scope="module")
def no_query_report() -> CrashReport:
    """crash_points on a venue with no query_execution that does not deduplicate (live)."""
    return crash_points(world(lambda: Ledger(dedupe=False)), BATCHES, check=once)


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_a_venue_without_query_is_at_least_once_where_documented(
        mode: str, no_query_report: CrashReport) -> None:
    """A venue with no query_execution that does not deduplicate fills a block twice at
    exactly the points where it executed and the deltas were not durable; each failure
    names the no-query window."""
    report = no_query_report if mode == "live" else crash_points(
        world(lambda: Ledger(dedupe=False)), BATCHES, check=once, mode=mode)
    assert not report.ok
    deltas = {"live": (5, 12, 16), "backtest": (5, 11, 14)}[mode]
    assert points_of(report) == [
        f"before record {k} ({b} routing->pending_reconciliation)"
        for k, b in zip(deltas, ("b1", "b2", "b3"), strict=True)]
    assert {f.windows for f in report.failures} == {(NO_QUERY,)}
    assert {f.resolution for f in report.failures} == {"reroute_at_least_once"}
    story = report.failures[0].story()
    assert "filled {'b1': 2} more than once" in story and f"window {NO_QUERY}" in story


def test_declared_at_least_once_reports_those_points_and_is_ok(
        no_query_report: CrashReport) -> None:
    """at_least_once=True: the same points are reported in at_least_once, not failures."""
    failing = no_query_report
    report = assert_crash_safe(world(lambda: Ledger(dedupe=False)), BATCHES, check=once,
                               at_least_once=True)
    assert report.ok and not report.failures
    assert points_of(report, excused=True) == points_of(failing)
    assert "3 broke your check inside a declared at-least-once window" in report.summary()
    assert report.story().splitlines()[2] == "first at-least-once point:"


def test_declaring_another_window_does_not_excuse_this_one() -> None:
    """Declaring only the hand-off window leaves the no-query points failing."""
    report = crash_points(world(lambda: Ledger(dedupe=False)), BATCHES, check=once,
                          at_least_once=[HAND_OFF])
    assert len(report.failures) == 3 and not report.at_least_once


def test_a_venue_without_query_that_deduplicates_passes() -> None:
    """The same venue deduplicating by block_id passes; the report counts the points that
    routed a block again under its block_id."""
    report = assert_crash_safe(world(Ledger), BATCHES, check=once)
    assert report.ok and dict(report.windows_met)[NO_QUERY] == 6


@pytest.mark.parametrize(("mode", "records"), [("live", (6, 13, 17)), ("backtest", (6, 12, 15))])
def test_a_book_that_is_not_idempotent_fails_at_the_hand_off_window(
        mode: str, records: tuple[int, ...]) -> None:
    """SimPositionHandler (not idempotent) applies a block twice exactly when the crash
    came after it returned and before the journal held the hand-off; the report names the
    hand-off window, and declaring it makes the report ok."""
    report = crash_points(world(idempotent=False), BATCHES, check=once, mode=mode)
    held = "positions_updated {}" if mode == "live" else "{} pending_reconciliation->success"
    assert points_of(report) == [f"before record {k} ({held.format(b)})"
                                 for k, b in zip(records, ("b1", "b2", "b3"), strict=True)]
    assert {(f.windows, f.resolution) for f in report.failures} == {
        ((HAND_OFF,), "hand_off_then_reconcile")}
    assert f"window {HAND_OFF}: {WINDOWS[HAND_OFF]}" in report.failures[0].story()
    assert crash_points(world(idempotent=False), BATCHES, check=once, mode=mode,
                        at_least_once=[HAND_OFF]).ok


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_a_query_that_forgets_orders_across_its_restart_is_caught(mode: str) -> None:
    """An adapter answering query_execution from its own memory, wiped when its process
    dies (on_restart), says "not found" for a block the exchange filled: the block is
    routed again and filled twice. No window excuses it: it has query_execution."""
    make = world(QueryableLedger)
    assert crash_points(make, BATCHES, check=once, mode=mode).ok  # memory kept: fine
    report = crash_points(make, BATCHES, check=once, mode=mode, on_restart=forget_orders)
    assert not report.ok and len(report.failures) == 3
    first = report.failures[0]
    assert (first.windows, first.resolution, first.in_doubt) == ((), "query_execution", "b1")
    assert first.problem.startswith(
        "your check failed: the venue filled {'b1': 2} more than once")
    with pytest.raises(AssertionError, match="settled by query_execution"):  # no window
        assert_crash_safe(make, BATCHES, check=once, mode=mode, on_restart=forget_orders,
                          at_least_once=True)


# ------------------------------------------------------------------------ the kill


def test_the_kill_truncates_the_journal_to_its_last_fsync(tmp_path: Path) -> None:
    """Live: a kill before record k leaves the records up to the last fsync before it
    (written but unsynced ones are lost); a kill after record k's fsync leaves k. Seen
    from on_restart, which runs on the surviving journal."""
    survived: dict[str, int] = {}

    def count(c: Mapping[str, Any]) -> None:
        latest = max(p for p in tmp_path.iterdir() if p.is_dir())
        survived[latest.name.split("-", 2)[2]] = len(list(read_journal(latest)))

    report = crash_points(world(), BATCHES, check=once, on_restart=count, workdir=tmp_path)
    assert report.ok and len(survived) == report.points
    fsyncs = sorted(int(k.split("-")[1]) for k in survived if k.startswith("after"))
    for key, n in survived.items():
        when, k = key.split("-")[0], int(key.split("-")[1])
        expected = k if when == "after" else max((m for m in fsyncs if m < k), default=0)
        assert n == expected, (key, n, expected)
    # b1's success and the state_update (7, 8) and the acceptances (9, 10) ride on b2's
    # start (11): killed before it, all four are lost
    assert survived["before-11-b2-queued->routing"] == 6
    # killed before the first checkpoint: an empty journal, from which the restarted
    # manager starts afresh (and runs every batch: the check held)
    assert survived["before-1-checkpoint"] == 0


def test_a_batch_cut_short_is_submitted_again_and_taken_once(tmp_path: Path) -> None:
    """A batch whose call was killed is submitted again after the restart: taken when its
    acceptance was lost, refused whole when it was durable; accepted once either way."""
    report = crash_points(world(), BATCHES, check=once, workdir=tmp_path)
    assert report.ok
    for run in (p for p in tmp_path.iterdir() if p.is_dir()):
        accepted = Counter(r.data["block_id"] for r in read_journal(run)
                           if r.event_type == "block_accepted")
        # a batch never fully accepted may appear once before the crash, dropped
        assert set(accepted) <= {"b1", "b2", "b3"}


def test_backtest_counts_every_record_as_durable(tmp_path: Path) -> None:
    """Backtest: a kill before record k leaves exactly k-1 records, after it k."""
    report = crash_points(world(), BATCHES, check=once, mode="backtest", workdir=tmp_path)
    assert report.ok and report.points == 2 * report.records
    assert not list(tmp_path.glob("run-*/*.torn"))


# ------------------------------------------------------------------------ what is checked


def test_a_lost_halt_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A recovered manager that forgot the halt its journal held fails the point, saying so
    (a broken recover() simulated)."""
    real = ExecutionManager.recover

    def forgetful(self: ExecutionManager, *args: Any, **kw: Any) -> Any:
        report = real(self, *args, **kw)
        self._state.resume()  # the bug: the halt is not restored
        return report

    monkeypatch.setattr(ExecutionManager, "recover", forgetful)
    report = crash_points(world(), BATCHES, check=once,
                          faults=FaultPlan(reconciliation=(("fail", 0.0),)))
    assert not report.ok
    assert all(f.problem == "the surviving journal holds halt, but the recovered manager "
               "is not halted" for f in report.failures)


def test_finished_blocks_forgotten_by_recovery_are_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A recover() that forgets the finished blocks takes part of a resubmitted batch
    again and no longer holds its blocks finished: each is named (a broken recover()
    simulated). The ids of queued and in-flight blocks cannot be forgotten apart from the
    blocks themselves: they are taken because the state holds them."""
    real = ExecutionManager.recover

    def amnesiac(self: ExecutionManager, *args: Any, **kw: Any) -> Any:
        report = real(self, *args, **kw)
        self._state.finished.clear()  # and so no longer taken
        return report

    monkeypatch.setattr(ExecutionManager, "recover", amnesiac)
    report = crash_points(world(), BATCHES, check=None)
    problems = {f.problem for f in report.failures}
    assert "batch 1 was partly taken before the crash: ['b3'] of ['b2', 'b3']" in problems
    assert "the manager does not hold ['b1', 'b2', 'b3'] as finished" in problems


def test_a_refused_recovery_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A recover() that refuses the surviving journal fails the point, quoting it (a broken
    recover() simulated)."""
    def refuse(self: ExecutionManager, *args: Any, **kw: Any) -> Any:
        raise JournalCorruptError("logs/x.jsonl", 3, "simulated")

    monkeypatch.setattr(ExecutionManager, "recover", refuse)
    report = crash_points(world(), BATCHES[:1])
    assert report.failures and {f.problem for f in report.failures} == {
        "recover() refused the surviving journal: JournalCorruptError: "
        "[EXEC-013] logs/x.jsonl:3: simulated"}


def test_what_a_collaborator_raises_is_a_failure_of_the_point() -> None:
    """An exception out of the user's code (here on_restart) fails the point, naming it."""
    def broken(c: Mapping[str, Any]) -> None:
        raise KeyError("orders")

    report = crash_points(world(), BATCHES[:1], on_restart=broken)
    assert {f.problem for f in report.failures} == {"KeyError: 'orders' was raised"}


def test_a_scenario_refused_by_the_manager_fails_without_a_crash() -> None:
    """A batch the manager refuses (a queue too small for it) fails the scenario before
    any crash point, naming the batch."""
    report = crash_points(world(), BATCHES, config={"max_queue_size": 1})
    (failure,) = report.failures
    assert failure.point is None and failure.problem.startswith(
        "batch 1 was refused: [EXEC-003] batch of 2 blocks refused")


def test_a_scenario_that_fails_without_a_crash_is_reported_alone() -> None:
    """When the check fails without any crash, the report holds that one failure (point
    None) and tries no crash point."""
    report = crash_points(world(), BATCHES, check=lambda c: False or 1 / 0)
    assert (report.ok, report.points, len(report.failures)) == (False, 0, 1)
    (failure,) = report.failures
    assert failure.point is None and failure.problem.startswith("your check raised ZeroDiv")
    assert failure.story().startswith("without any crash (live mode)")


def test_a_scenario_that_does_not_replay_the_same_way_is_named() -> None:
    """A make_collaborators that builds a different world each time makes the crash points
    meaningless: each run says which record differed."""
    made = Counter[str]()

    class Moody(SimVenue):
        def __init__(self) -> None:
            super().__init__()
            made["venue"] += 1
            self.refuse = made["venue"] > 1

        def route_instruction(self, ts: Any, block: InstructionBlock) -> dict[str, Any]:
            if self.refuse:
                raise ValueError("closed today")
            return super().route_instruction(ts, block)

    report = crash_points(world(Moody), BATCHES[:1])
    assert not report.ok
    late = [f for f in report.failures if "did not replay the same way" in f.problem]
    assert late and "record 5 was 'b1 routing->pending_reconciliation' in the first run" in (
        late[0].problem)


def test_batches_are_checked_before_any_run() -> None:
    """Invalid or empty batches, ids used twice, bad modes, faults, windows and
    collaborators are refused up front, naming the problem."""
    make = world()
    with pytest.raises(ValueError, match="batch 1 would be refused before any crash"):
        crash_points(make, [[blk("a")], [blk("a")]])
    with pytest.raises(ValueError, match="batch 0 is empty"):
        crash_points(make, [[]])
    with pytest.raises(ValueError, match="at least one batch"):
        crash_points(make, [])
    with pytest.raises(ValueError, match="mode must be"):
        crash_points(make, BATCHES, mode="paper")
    with pytest.raises(TypeError, match="faults must be a FaultPlan"):
        crash_points(make, BATCHES, faults=("lost_response",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown: \['nope'\]"):
        crash_points(make, BATCHES, at_least_once=["nope"])
    with pytest.raises(ValueError, match="unknown"):
        crash_points(make, BATCHES, at_least_once="position_hand_off")
    with pytest.raises(TypeError, match="must return a mapping"):
        crash_points(lambda: [], BATCHES)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="missing reconciliation_component"):
        crash_points(lambda: {k: None for k in ("data_provider", "position_update_handler",
                                                 "execution_interface_manager")}, BATCHES)


def test_a_failing_points_journal_is_kept_in_workdir(tmp_path: Path) -> None:
    """With workdir, each failing point's journal stays there and reads as whole; a second
    call on the same workdir starts each run afresh."""
    crash_points(world(idempotent=False), BATCHES, check=once, workdir=tmp_path)
    report = crash_points(world(idempotent=False), BATCHES, check=once, workdir=tmp_path)
    kept = [f.journal for f in report.failures]
    assert len(kept) == 3 and sorted(str(p) for p in tmp_path.iterdir()) == sorted(
        str(p) for p in kept)
    for failure in report.failures:
        assert failure.journal is not None and check_journal(failure.journal).ok
        assert failure.story().endswith(f"(fsm-exec check {failure.journal}).")


# ------------------------------------------------------------------------ the report


def test_a_story_marks_the_records_lost_with_the_crash() -> None:
    """A story numbers the records before the point, marks the unsynced ones lost, shows
    at most twelve of them and says how recovery settled the block in doubt."""
    records = tuple(f"r{i}" for i in range(1, 16))
    failure = CrashFailure(CrashPoint(16, "before", "b9 queued->routing"), records, 13,
                           "b9 ended 2 times", (NO_QUERY,), "b8", "routing",
                           "reroute_at_least_once", ("submitted batch 2",))
    lines = failure.story().splitlines()
    assert lines[:4] == [
        "crash before record 16 (b9 queued->routing), live mode: the process dies just "
        "before writing that record.",
        "Of the 15 records written, 13 were durable; the last 2 were lost with the crash "
        "(written, not yet fsynced):",
        "  ... 3 earlier records",
        "     4  r4"]
    assert lines[12:] == [
        "    13  r13",
        "    14  r14  (lost)",
        "    15  r15  (lost)",
        "The restarted manager recovered b8 in doubt (routing), settled by "
        "reroute_at_least_once.",
        "Then: submitted batch 2.",
        "What went wrong: b9 ended 2 times",
        "The kit injected no fault.",
        f"At-least-once window {NO_QUERY}: {WINDOWS[NO_QUERY]} (README, Guarantees)."]
    after = CrashFailure(CrashPoint(3, "after", "x"), ("a", "b", "c"), 3, "p\nq").story()
    assert after.splitlines()[:2] == [
        "crash after record 3 (x), live mode: the process dies just after that record "
        "became durable.", "Of the 3 records written, 3 were durable:"]
    assert after.endswith("no block in flight.\nWhat went wrong: p\n    q\n"
                          "The kit injected no fault.")
    assert CrashPoint(3, "after", "block_accepted b1").id == "after-3-block_accepted-b1"
    assert CrashReport(ok=True, points=2, records=1).story() == (
        "2 crash points over 1 journal records (live): ok")


def test_assert_crash_safe_tells_the_first_failing_points_story() -> None:
    """assert_crash_safe raises AssertionError whose message is the first failing point's
    story; it stops there."""
    with pytest.raises(AssertionError) as info:
        assert_crash_safe(world(idempotent=False), BATCHES, check=once)
    text = str(info.value)
    assert text.startswith("10 of 31 crash points over 19 journal records (live): 1 failed "
                           "(stopped at the first)")
    assert "crash before record 6 (positions_updated b1), live mode: the process" in text
    assert "the book applied {'b1': 2} more than once" in text


def test_crash_point_tests_makes_one_test_per_point() -> None:
    """crash_point_tests gives a test parametrized by every point (and no crash); a point
    in the hand-off window fails with its story, the others pass."""
    test = crash_point_tests(world(idempotent=False), BATCHES, check=once)
    (mark,) = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
    points = list(mark.args[1])
    assert points[0] is None and len(points) == 32
    assert mark.kwargs["ids"][0] == "no-crash"
    assert "before-6-positions_updated-b1" in mark.kwargs["ids"]
    outcomes = {}
    for point in points:
        try:
            test(point)
        except AssertionError as exc:
            outcomes[str(point)] = str(exc).splitlines()[0]
    assert sorted(outcomes) == ["before record 13 (positions_updated b2)",
                                "before record 17 (positions_updated b3)",
                                "before record 6 (positions_updated b1)"]


# ------------------------------------------------------------------------ README

ROOT = Path(__file__).resolve().parent.parent


def readme_section() -> str:
    """The fuzzing guide and the crash points guide that continues it (docs/how-to/)."""
    guides = ROOT / "docs" / "how-to"
    return (guides / "fuzz.md").read_text() + (guides / "crash-points.md").read_text()


def readme_namespace(*, broken: bool = False) -> dict[str, Any]:
    """Every python block of the docs' fuzzing guides, run in one namespace (the
    crash example continues the stateful one); ``broken`` deletes the dedup check."""
    code = "\n".join(re.findall(r"```python\n(.*?)```", readme_section(), re.S))
    assert DEDUP in code, "the fuzzing guide's example no longer has its dedup check"
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code.replace(DEDUP, NO_DEDUP) if broken else code, "docs/how-to", "exec"),
         namespace)
    return namespace


def test_readme_crash_points_example_runs_and_prints_what_it_says(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The README's crash_points example runs as written, on the stateful example's toy
    adapter, and prints the summary the README quotes."""
    namespace = readme_namespace()
    namespace["test_my_adapter_survives_a_crash_at_every_point"]()
    printed = capsys.readouterr().out.strip()
    quoted = re.search(r"It prints `(.*?)`", readme_section(), re.S)
    assert quoted is not None and printed == " ".join(quoted.group(1).split())


def test_readme_crash_points_failure_is_the_story_it_shows() -> None:
    """Without the dedup check the README's test fails with exactly the story it shows,
    which names the one fault the kit injected: the kill (the README may not show that
    line yet: the rest of the story is the README's word for word)."""
    namespace = readme_namespace(broken=True)
    with pytest.raises(AssertionError) as info:
        namespace["test_my_adapter_survives_a_crash_at_every_point"]()
    after = readme_section().split("Delete the\n`if block.block_id not in self.orders:`", 1)[1]
    shown = re.search(r"```text\n(.*?)```", after, re.S)
    faults = ("Faults the kit injected, in order: (1) the kill before record 5 "
              "(b1 routing->pending_reconciliation).")
    told = str(info.value).splitlines()
    assert faults in told
    assert shown is not None
    readme = [line for line in shown.group(1).rstrip("\n").splitlines() if line != faults]
    assert [line for line in told if line != faults] == readme


#: crash_point_tests as a user writes it: pytest collects one test per crash point.
test_each_crash_point_of_one_block = crash_point_tests(world(), BATCHES[:1], check=once)


# ------------------------------------------------------------------------ no false confidence


class RefusesEverything(SimVenue):
    """A venue adapter that rejects every block: nothing is ever executed."""

    def route_instruction(self, ts: Any, block: InstructionBlock) -> dict[str, Any]:
        raise ExecutionRejected("the adapter under test refuses everything", retryable=False)


def test_an_adapter_that_rejects_every_block_is_not_ok() -> None:
    """crash_points refuses to call a run ok when the venue filled nothing: no failure,
    but ok is false, and the report says no fill and no hand-off was covered."""
    report = crash_points(world(RefusesEverything), BATCHES, check=once)
    assert not report.ok and report.failures == ()
    assert dict(report.exercised)["fills"] == 0 and dict(report.exercised)["hand_offs"] == 0
    assert report.not_covered[:2] == ("fills", "hand_offs")
    assert report.nothing_exercised == ("fills", "hand_offs")
    assert report.summary().endswith("NOT ok, it exercised nothing: no fill, no hand-off")
    assert "no fill: the venue executed no block" in report.story()
    with pytest.raises(AssertionError, match="exercised nothing: no fill, no hand-off"):
        assert_crash_safe(world(RefusesEverything), BATCHES, check=once)


def test_a_fault_plan_that_rejects_every_block_is_not_ok_and_says_so() -> None:
    """Faults that reject every route leave nothing exercised: not ok, and the story names
    the faults the kit injected, in order."""
    report = crash_points(world(), BATCHES, faults=FaultPlan(venue=("reject_final",) * 3))
    assert not report.ok and report.failures == ()
    assert report.faults == ("venue reject_final on route call 1 of b1",
                             "venue reject_final on route call 1 of b2",
                             "venue reject_final on route call 1 of b3")
    assert ("Faults the kit injected, in order: (1) venue reject_final on route call 1 of b1; "
            "(2) venue reject_final on route call 1 of b2; (3) venue reject_final on route "
            "call 1 of b3.") in report.story().splitlines()


def test_a_run_reports_what_it_exercised_and_what_it_did_not_cover() -> None:
    """An ok run counts its fills, hand-offs, retries and restarts with a block in doubt,
    and names what it did not cover (here: no retry, without faults)."""
    report = crash_points(world(), BATCHES, check=once)
    counts = dict(report.exercised)
    assert report.ok and counts["fills"] == 3 and counts["hand_offs"] == 3
    assert counts["retries"] == 0 and counts["in_doubt"] > 0
    assert report.not_covered == ("retries",) and report.nothing_exercised == ()
    assert report.coverage().endswith("; not covered: no retry")
    faulty = crash_points(world(), BATCHES, check=once, faults=FaultPlan(venue=("reject",)))
    assert faulty.ok and dict(faulty.exercised)["retries"] == 1 and faulty.not_covered == ()


def test_crash_point_tests_fail_the_no_crash_test_when_nothing_is_exercised() -> None:
    """crash_point_tests: the test without a crash fails, saying what was not covered, when
    the adapter refuses every block; the crash points themselves keep their promises."""
    test = crash_point_tests(world(RefusesEverything), BATCHES[:1])
    with pytest.raises(AssertionError, match="no fill: the venue executed no block"):
        test(None)
    test(CrashPoint(1, "before"))


def test_every_failure_story_names_the_faults_injected_in_order() -> None:
    """A failure's story lists every fault the kit injected, the kill included, in the
    order they happened."""
    plan = FaultPlan(venue=("lost_response",), reconciliation=(("never", 0.0),))
    report = crash_points(world(lambda: Ledger(dedupe=False)), BATCHES, check=once,
                          faults=plan)
    first = report.failures[0]
    assert first.point is None and first.faults == (
        "venue lost_response on route call 1 of b1",
        "reconciliation of b1's hand-off never reconciles")
    assert ("Faults the kit injected, in order: (1) venue lost_response on route call 1 of "
            "b1; (2) reconciliation of b1's hand-off never reconciles.") in (
        first.story().splitlines())
    crashed = crash_points(world(lambda: Ledger(dedupe=False)), BATCHES, check=once)
    assert crashed.failures
    for failure in crashed.failures:
        assert failure.point is not None and failure.faults == (f"the kill {failure.point}",)
        assert f"(1) the kill {failure.point}." in failure.story()


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_crash_points_reports_the_hand_offs_a_handler_without_dedup_would_double(
        mode: str) -> None:
    """Over a deduplicating book the run is ok and names each crash point after which the
    handler was given a block's deltas again: exactly the points where a book without
    deduplication applies them twice."""
    report = crash_points(world(), BATCHES, check=once, mode=mode)
    assert report.ok
    assert [b for _, b in report.doubled_hand_offs] == ["b1", "b2", "b3"]
    naive = crash_points(world(idempotent=False), BATCHES, check=once, mode=mode)
    assert [p for p, _ in report.doubled_hand_offs] == [f.point for f in naive.failures]
    assert all("applied {'" in f.problem for f in naive.failures)
    assert report.hand_offs().splitlines()[0] == (
        "3 hand-offs handed over twice (a position handler without deduplication applies "
        "them twice):")
    nothing = CrashReport(ok=True, points=0, records=0)
    assert nothing.hand_offs() == "no hand-off was handed over twice"


def test_a_story_says_what_was_not_exercised_even_beside_an_at_least_once_point() -> None:
    """A report that exercised nothing says so in its story, before any declared
    at-least-once point it also tells."""
    point = CrashFailure(CrashPoint(2, "before", "x"), ("a",), 1, "p")
    report = CrashReport(ok=False, points=2, records=1, at_least_once=(point,),
                         not_covered=("fills", "hand_offs", "retries"))
    story = report.story()
    assert story.index("exercised nothing a crash could break") < story.index(
        "first at-least-once point:")
    assert "no fill, no hand-off" in story.splitlines()[0]


class KeyedBook(SimPositionHandler):
    """A book that deduplicates by the hand-off key alone (not by the deltas)."""

    def __init__(self, rc: SimReconciliation) -> None:
        super().__init__(rc)
        self.keys: set[HandOffKey] = set()

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any,
                     hand_off_key: HandOffKey | None = None) -> None:
        assert hand_off_key is not None, "the hand-off key did not reach the handler"
        if hand_off_key in self.keys:
            if self.reconciliation is not None:
                self.reconciliation.notify(hand_off_key.block_id)
            return
        self.keys.add(hand_off_key)
        super().update_state(timestamp, trigger_source, deltas)


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_a_book_deduplicating_by_the_hand_off_key_passes_every_crash_point(mode: str) -> None:
    """The hand-off key reaches a handler through the kit's wrappers (crash points, fault
    plans), the same after the restart: a book deduplicating by it alone applies each
    block once at every point, where the kit reports the hand-offs it was given again."""
    def make() -> dict[str, Any]:
        rc = SimReconciliation()
        return {"data_provider": StaticDataProvider(), "position_update_handler": KeyedBook(rc),
                "execution_interface_manager": SimVenue(), "reconciliation_component": rc}

    report = crash_points(make, BATCHES, check=once_and_whole, mode=mode,
                          faults=FaultPlan(positions=(False,)))
    assert report.ok, report.summary()
    assert [b for _, b in report.doubled_hand_offs] == ["b1", "b2", "b3"]

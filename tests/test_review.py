"""Defects a hostile review found, each pinned by the test that shows it: the fix holds."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    BlockState,
    EventLogger,
    ExecutionManager,
    InvalidArgumentError,
    InvalidBlockError,
    check_journal,
    read_journal,
)
from fsm_exec.observe import Observer
from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider

from kit import Interrupting, T, block, blocks, in_thread, losing_fsync


class Reconciled:
    reconciliation_status = "success"


class FailsOnFsync(Observer):
    """An observer whose client raises on every journal fsync (a StatsD socket error)."""

    def on_call(self, event: Any) -> None:
        if event.kind == "journal_fsync":
            raise ConnectionError("statsd down")


def live(log: Any, venue: Any = None, **kw: Any) -> ExecutionManager:
    clock = FakeClock()
    return ExecutionManager({"not_found_confirmations": 1, "not_found_min_age_seconds": 0},
                            StaticDataProvider(), "live", SimPositionHandler(),
                            venue or SimVenue(), Reconciled(), event_logger=log, clock=clock,
                            sleep=clock.sleep, **kw)


def test_an_observer_failing_on_fsync_never_breaks_the_journal(tmp_path: Path) -> None:
    """An observer raising on every journal fsync: seqs stay 1, 2, 3 ..., the journal
    checks clean and recovers, and the failure is reported (EXEC-016) after the call."""
    with EventLogger(tmp_path, "live") as log:
        em = live(log, observers=[FailsOnFsync()])
        em.update_state(T(0), "strategy_manager", blocks("a", "b"))
        em.update_state(T(1), "strategy_manager", blocks("c"))
    seqs = [r.seq for r in read_journal(tmp_path)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert check_journal(tmp_path).ok
    codes = [r.data.get("error_code") for r in read_journal(tmp_path)
             if r.event_type == "error"]
    assert codes and set(codes) == {"EXEC-016"}
    with EventLogger(tmp_path, "live") as log:
        assert live(log).recover().blocks_executed == 3


def test_another_writer_and_a_failing_observer_do_not_deadlock(tmp_path: Path) -> None:
    """Another component writing to the shared journal from its own thread while an
    observer fails on fsync: both finish (no lock taken in two orders)."""
    log = EventLogger(tmp_path, "live")
    em = live(log, observers=[FailsOnFsync()])
    stop = threading.Event()

    def other_component() -> None:
        while not stop.is_set():
            log.log_event(T(0), "tick", "OtherComponent", {"n": 1})

    writer = threading.Thread(target=other_component, daemon=True)
    writer.start()
    done = threading.Event()

    def run() -> None:
        for i in range(30):
            em.update_state(T(i), "strategy_manager", blocks(f"b{i}"))
        done.set()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(30)
    stop.set()
    writer.join(10)
    assert done.is_set(), "the manager deadlocked with the other writer"
    log.close()
    assert check_journal(tmp_path).ok


def test_a_payload_that_looks_like_a_checkpoint_is_not_one(tmp_path: Path) -> None:
    """A block whose instruction holds ``{"event_type": "checkpoint"}`` journals those exact
    bytes; recovery, status and check still start from the real checkpoint."""
    from fsm_exec.tools.status import read_status

    with EventLogger(tmp_path, "live", checkpoint_every=None) as log:
        em = live(log)
        em.update_state(T(0), "strategy_manager", blocks("a", "b", "d"))
        lookalike = block("c")
        lookalike["instructions"][0]["meta"] = {"event_type": "checkpoint",
                                                 "component": "ExecutionManager"}
        em.update_state(T(1), "strategy_manager", [lookalike])
    raw = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*.jsonl")))
    assert b'{"event_type":"checkpoint","component":"ExecutionManager"}' in raw
    assert check_journal(tmp_path).ok
    with EventLogger(tmp_path, "live") as log:
        assert live(log).recover().blocks_executed == 4
    report = read_status(tmp_path)
    assert report["counters"]["executed"] == 4 and report["health"] == "healthy"
    assert report["checkpoint_seq"] is not None


# ------------------------------------------------------------------------ foreign objects


class BadInt(int):
    """An Integral whose conversion raises (a broken third-party number)."""

    def __int__(self) -> int:
        raise OverflowError("cannot convert")

    def __index__(self) -> int:
        raise OverflowError("cannot convert")


class BadMapping(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("lazy mapping lost its connection")


def refused(em: ExecutionManager, batch: list[Any]) -> InvalidBlockError:
    with pytest.raises(InvalidBlockError) as info:
        em.execute_instruction_blocks(T(0), batch)
    assert em.execution_queue == []  # nothing queued
    return info.value


@pytest.mark.parametrize(("value", "path", "words"), [
    ("timedelta64", "instructions[0].hold", "timedelta"),
    ("mapping", "instructions[0].hold", "could not be converted"),
    ("duplicated_series", "instructions[0].hold", "repeats a label"),
    ("duplicated_columns", "instructions[0].hold", "repeats a label"),
])
def test_foreign_objects_that_cannot_convert_are_refused_at_their_path(
        tmp_path: Path, value: str, path: str, words: str) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    made: dict[str, Callable[[], object]] = {
            "timedelta64": lambda: np.timedelta64(5, "ns"),
            "mapping": lambda: BadMapping(a=1),
            "duplicated_series": lambda: pd.Series([1, 2], index=["x", "x"]),
            "duplicated_columns": lambda: pd.DataFrame([[1, 2]], columns=["c", "c"])}
    with EventLogger(tmp_path, "live") as log:
        em = live(log)
        b = block("a")
        b["instructions"][0]["hold"] = made[value]()
        err = refused(em, [b])
    (problem,) = err.problems
    assert (problem.block_id, problem.field) == ("a", path)
    assert words in problem.reason


def test_a_priority_whose_int_raises_is_refused(tmp_path: Path) -> None:
    with EventLogger(tmp_path, "live") as log:
        em = live(log)
        err = refused(em, [{**block("a"), "priority": BadInt(3)}])
    (problem,) = err.problems
    assert problem.field == "priority" and "OverflowError" in problem.reason


def test_a_reply_whose_conversion_raises_fails_its_block_not_the_manager(
        tmp_path: Path) -> None:
    class Venue(SimVenue):
        def route_instruction(self, ts: Any, b: Any) -> Any:
            return {**super().route_instruction(ts, b), "raw": BadMapping(x=1)}

    with EventLogger(tmp_path, "live") as log:
        em = live(log, venue=Venue())
        em.update_state(T(0), "strategy_manager", blocks("a"))
        status = em.get_execution_status()
        assert status["halted"] and status["halt_reason"] == "EXEC-015"
        assert em.block_state("a") is BlockState.FAILED
    errors = [r.data for r in read_journal(tmp_path) if r.event_type == "error"]
    assert [e["error_code"] for e in errors] == ["EXEC-015"]
    assert "$.raw" in errors[0]["error_message"]
    assert "BadMapping could not be converted: RuntimeError" in errors[0]["error_message"]


# ------------------------------------------------------------------------ secrets in blocks

SECRET = "sk-Live-9f8e7d6c5b4a"


def test_a_block_holding_a_secret_is_refused_not_rewritten(tmp_path: Path) -> None:
    """Redacting a block would change what the venue is told; the block is refused, the
    problem names where, and neither it nor the journal holds the secret."""
    clock = FakeClock()
    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager({"api_key": SECRET}, StaticDataProvider(), "live",
                              SimPositionHandler(), SimVenue(), Reconciled(),
                              event_logger=log, clock=clock, sleep=clock.sleep)
        note = block("a")
        note["instructions"][0]["memo"] = f"signed with {SECRET}"
        keyed = block("b")
        keyed["instructions"][0][SECRET] = 1
        err = refused(em, [note, keyed, block(SECRET), {**block("d"), "action": SECRET}])
    where = {(p.index, p.block_id, p.field) for p in err.problems}
    assert where == {(0, "a", "instructions[0].memo"), (1, "b", "instructions[0]['<key>']"),
                     (2, None, "block_id"), (3, "d", "action")}
    assert all("secret" in p.reason for p in err.problems)
    assert SECRET not in str(err) and SECRET not in repr(err.problems)
    assert SECRET.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("*.jsonl"))


def test_an_ordinary_value_that_shares_a_word_with_secrets_reaches_the_venue(
        tmp_path: Path) -> None:
    """``base_token: "USDC.e-bridged"`` is data, not a secret: a block trading it runs, and
    the venue receives it unchanged."""
    seen: list[Any] = []

    class Venue(SimVenue):
        def route_instruction(self, ts: Any, b: Any) -> Any:
            seen.append(b.instructions[0]["token"])
            return super().route_instruction(ts, b)

    clock = FakeClock()
    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager({"base_token": "USDC.e-bridged", "api_key": SECRET},
                              StaticDataProvider({"USDC.e-bridged": 1.0}), "live",
                              SimPositionHandler(), Venue(),
                              Reconciled(), event_logger=log, clock=clock,
                              sleep=clock.sleep)
        em.update_state(T(0), "strategy_manager", [block("a", token="USDC.e-bridged")])
    assert seen == ["USDC.e-bridged"]


# ------------------------------------------------------------------------ integers beyond 64 bits


def test_integers_beyond_64_bits_survive_a_restart_as_keys_and_priorities(
        tmp_path: Path) -> None:
    """A queued block with a 70-bit priority and a 70-bit integer key recovers as the
    same block (the key used to make the journal write fail, the priority came back as
    a tag dict)."""
    big = 2 ** 70
    b = {**block("a"), "priority": big}
    b["instructions"][0]["levels"] = {big: "far", 1: "near"}
    with EventLogger(tmp_path, "live") as log:
        em = live(log)
        em.execute_instruction_blocks(T(0), [b])
        before = em.execution_queue
    with EventLogger(tmp_path, "live") as log:
        again = live(log)
        report = again.recover()
        assert report.queued == ("a",)
        assert again.execution_queue == before
        (queued,) = again.execution_queue
        assert type(queued["priority"]) is int and queued["priority"] == big
        assert queued["instructions"][0]["levels"] == {big: "far", 1: "near"}
    assert check_journal(tmp_path).ok


# ------------------------------------------------------------------------ one journal, one manager


class Gate(SimVenue):
    """A venue whose route waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def route_instruction(self, ts: Any, b: Any) -> Any:
        self.entered.set()
        assert self.release.wait(10)
        return super().route_instruction(ts, b)


def test_reopen_is_refused_while_update_state_runs_in_another_thread(tmp_path: Path) -> None:
    """Two managers on one journal would both write (and could both route): reopen()
    waits for its turn, refused with a clear reason until the running call returns."""
    from fsm_exec import ReentrantCallError

    venue = Gate()
    with EventLogger(tmp_path, "live") as log:
        em = live(log, venue=venue)
        t, errors = in_thread(lambda: em.update_state(T(0), "strategy_manager",
                                                       blocks("a")))
        assert venue.entered.wait(10)
        with pytest.raises(ReentrantCallError, match="in another thread"):
            em.reopen()
        assert not em.interrupted  # the refusal changed nothing
        venue.release.set()
        t.join(10)
        assert errors == [] and em.block_state("a") is BlockState.SUCCESS
        again = em.reopen()
        assert again.get_execution_status()["blocks_executed"] == 1
    assert check_journal(tmp_path).ok


def test_a_manager_retired_by_another_thread_writes_nothing_more(tmp_path: Path) -> None:
    """Thread A routes block a (b queued behind it); an interrupt on thread B retires the
    manager meanwhile. A retirement is a crash at that instant, on every thread: when the
    venue returns, A's next write is refused (ManagerInterruptedError), and reopen()
    settles a as recovery settles any crash (the venue is asked: it executed a once)."""
    from fsm_exec import ManagerInterruptedError

    venue = Gate()
    with EventLogger(tmp_path, "backtest") as log:
        em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                              venue, Reconciled(), event_logger=log)
        t, errors = in_thread(lambda: em.update_state(T(0), "strategy_manager",
                                                       blocks("a", "b")))
        assert venue.entered.wait(10)
        with pytest.raises(KeyboardInterrupt):
            em.execute_instruction_blocks(T(0), [{**block("c"), "priority": Interrupting(1)}])
        assert em.interrupted
        log.sync()
        written = list(read_journal(tmp_path))
        venue.release.set()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        log.sync()
        assert list(read_journal(tmp_path)) == written
        again = em.reopen()
        assert again.get_execution_status()["current_block"] == "a"
        again.update_state(T(1), "strategy_manager")
        assert venue.execution_order == ["a", "b"]
    assert check_journal(tmp_path).ok


class GatedPositions(SimPositionHandler):
    """A position handler whose first hand-off waits until the test lets it go."""

    def __init__(self, *, idempotent: bool = False) -> None:
        super().__init__(idempotent=idempotent)
        self.calls: list[Any] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def update_state(self, ts: Any, source: str, deltas: Any) -> Any:
        self.calls.append(deltas)
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        return super().update_state(ts, source, deltas)


@pytest.mark.parametrize("how", ["fsync fails", "interrupt"])
def test_a_retirement_during_a_hand_off_leaves_what_a_crash_there_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The position handler is taking block a's deltas on thread A when thread B's
    acceptance retires the manager (its fsync fails, or an interrupt). As after a crash
    there (the README's hand-off window), the replacement hands the deltas again, with the
    same block_id: a handler that deduplicates by block_id applies them once, the venue
    executed a once, and the journal checks."""
    from fsm_exec import EventLogError, ManagerInterruptedError

    positions = GatedPositions(idempotent=True)
    with EventLogger(tmp_path, "live") as log:
        clock = FakeClock()
        em = ExecutionManager({}, StaticDataProvider(), "live", positions, SimVenue(),
                              Reconciled(), event_logger=log, clock=clock, sleep=clock.sleep)
        t, errors = in_thread(lambda: em.update_state(T(0), "strategy_manager",
                                                       blocks("a")))
        assert positions.entered.wait(10)
        here, real = threading.current_thread(), os.fsync

        def fsync(fd: int) -> None:
            if threading.current_thread() is here:
                raise OSError(errno.EIO, "Input/output error")
            real(fd)

        bad: Any = {**block("b"), "priority": Interrupting(1)}
        with monkeypatch.context() as mp:
            if how == "fsync fails":
                mp.setattr("fsm_exec.journal.writer.os.fsync", fsync)
            with pytest.raises(EventLogError if how == "fsync fails" else KeyboardInterrupt):
                em.execute_instruction_blocks(T(1), blocks("b") if how == "fsync fails"
                                              else [bad])
        assert em.interrupted
        positions.release.set()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        again = em.reopen()
        again.update_state(T(2), "strategy_manager")
    assert [d["block_id"] for d in positions.calls].count("a") == 2  # handed again
    distinct = {d["block_id"] for d in positions.calls}  # a, and b where its acceptance held
    assert positions.positions == {"ETH": float(len(distinct))}  # each applied once
    assert check_journal(tmp_path).ok


def test_a_retirement_during_a_venue_call_is_settled_by_asking_the_venue(
        tmp_path: Path) -> None:
    """Retired while the venue executes block a: the reply is not journaled (a crash
    there), so the replacement asks the venue, finds the fill, and never routes a again."""
    gate = Gate()
    with EventLogger(tmp_path, "live") as log:
        clock = FakeClock()
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              gate, Reconciled(), event_logger=log,
                              clock=clock, sleep=clock.sleep)
        t, _ = in_thread(lambda: em.update_state(T(0), "strategy_manager", blocks("a")))
        assert gate.entered.wait(10)
        with pytest.raises(KeyboardInterrupt):
            em.execute_instruction_blocks(T(1), [{**block("b"), "priority": Interrupting(1)}])
        gate.release.set()
        t.join(10)
        again = em.reopen()
        again.update_state(T(2), "strategy_manager")
        assert again.block_state("a") is BlockState.SUCCESS
    assert gate.route_calls["a"] == 1
    assert check_journal(tmp_path).ok


def test_a_second_manager_on_one_event_logger_is_refused(tmp_path: Path) -> None:
    """Two managers of one process on one EventLogger would recover the same queue and both
    run it: the second is refused (EXEC-018, the directory lock's code) before it reads or
    writes anything, and the first goes on undisturbed."""
    from fsm_exec import JournalLockedError

    with EventLogger(tmp_path, "live") as log:
        first = live(log)
        first.execute_instruction_blocks(T(0), blocks("a"))
        before = [p.read_bytes() for p in sorted(tmp_path.glob("*.jsonl"))]
        with pytest.raises(JournalLockedError) as info:
            live(log)
        assert info.value.error_code == "EXEC-018"
        assert "reopen()" in str(info.value)
        assert [p.read_bytes() for p in sorted(tmp_path.glob("*.jsonl"))] == before
        first.update_state(T(1), "strategy_manager")
        assert first.block_state("a") is BlockState.SUCCESS
    assert check_journal(tmp_path).ok


def test_a_dropped_or_replaced_manager_hands_its_journal_over(tmp_path: Path) -> None:
    """Once the first manager is gone (dropped, even inside a reference cycle) or retired
    by reopen(), a new one may take the journal; it recovers what the first left."""
    with EventLogger(tmp_path, "live") as log:
        first = live(log)
        first.execute_instruction_blocks(T(0), blocks("a"))
        cycle: list[Any] = [first]
        cycle.append(cycle)  # kept alive only by a cycle: the claim collects it
        del first, cycle
        second = live(log)
        second.recover()
        assert second.queued_block_ids == ("a",)
        third = second.reopen()  # the replacement takes over; the replaced one refuses
        assert third.queued_block_ids == ("a",)
        assert second.interrupted
        third.update_state(T(1), "strategy_manager")
        assert third.block_state("a") is BlockState.SUCCESS
    assert check_journal(tmp_path).ok


def test_a_live_manager_refuses_a_backtest_journal(tmp_path: Path) -> None:
    """A backtest EventLogger buffers and never fsyncs: under a live manager an accepted or
    routed block could vanish in a crash. Refused at construction, naming the fix."""
    with EventLogger(tmp_path, "backtest") as log:
        with pytest.raises(InvalidArgumentError, match="EventLogger\\(log_dir, 'live'\\)"):
            live(log)
        em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=log)
        em.update_state(T(0), "strategy_manager", blocks("a"))  # backtest on it: fine
        assert em.block_state("a") is BlockState.SUCCESS


def _no_fsync(fd: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


@pytest.mark.parametrize("step", ["accept", "cancel"])
def test_a_barrier_that_cannot_make_records_durable_retires_the_manager(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Accepting a batch (or cancelling) writes its records, then fsyncs them once. If that
    fsync fails, the records may or may not survive, yet memory has acted on them: the
    manager halts (EXEC-009) and retires, so nothing runs from memory the journal may not
    hold; reopen() reads back what the journal holds."""
    from fsm_exec import EventLogError, ManagerInterruptedError

    with EventLogger(tmp_path, "live") as log:
        em = live(log)
        em.execute_instruction_blocks(T(0), blocks("a"))
        with monkeypatch.context() as mp:
            mp.setattr("fsm_exec.journal.writer.os.fsync", _no_fsync)
            act: Callable[[], object] = (
                (lambda: em.execute_instruction_blocks(T(1), blocks("b"))) if step == "accept"
                else (lambda: em.cancel(T(1), ["a"], reason="operator")))
            with pytest.raises(EventLogError):
                act()
        assert em.interrupted and em.halted
        assert em.get_execution_status()["halt_reason"] == "EXEC-009"
        with pytest.raises(ManagerInterruptedError, match="could not make its records durable"):
            em.update_state(T(2), "strategy_manager")
        again = em.reopen()
        expected = ("a", "b") if step == "accept" else ()  # the page cache kept them here
        assert again.queued_block_ids == expected
    assert check_journal(tmp_path).ok


def test_a_journal_an_earlier_version_wrote_with_a_replaced_halt_reason_reads_back() -> None:
    """Before the first halt reason stood, a journal failure after an EXEC-008 halt
    replaced the reason and journaled manager_halted EXEC-009 and a checkpoint saying so
    (tests/golden/earlier_halt_then_disk_error.jsonl, written by that version): it checks
    clean and recovers with the reason its checkpoint holds."""
    from pathlib import Path as P

    path = P(__file__).with_name("golden") / "earlier_halt_then_disk_error.jsonl"
    report = check_journal(path)
    assert report.ok, report.problems
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                          Reconciled())
    assert em.recover(path).halt_reason == "EXEC-009"


def test_a_second_manager_built_while_the_first_writes_is_refused_not_deadlocked(
        tmp_path: Path) -> None:
    """Building a second manager on an EventLogger while the first accepts batches on
    another thread: every attempt is refused (EXEC-018), neither thread hangs."""
    from fsm_exec import JournalLockedError

    log = EventLogger(tmp_path, "backtest")

    def make() -> ExecutionManager:
        return ExecutionManager({"max_queue_size": 10 ** 6}, StaticDataProvider(), "backtest",
                                SimPositionHandler(), SimVenue(), Reconciled(),
                                event_logger=log)

    first = make()
    stop = threading.Event()
    counts = {"accepted": 0, "refused": 0}

    def accept() -> None:
        while not stop.is_set():
            first.execute_instruction_blocks(T(0), [block(f"b{counts['accepted']}")])
            counts["accepted"] += 1

    def build() -> None:
        while not stop.is_set():
            with pytest.raises(JournalLockedError):
                make()
            counts["refused"] += 1

    a, a_errors = in_thread(accept)
    b, b_errors = in_thread(build)
    a.join(1.5)
    stop.set()
    a.join(10)
    b.join(10)
    assert not (a.is_alive() or b.is_alive()), counts
    assert a_errors == b_errors == []
    assert counts["accepted"] > 0 and counts["refused"] > 0
    log.close()


class FollowUp:
    """A position handler that queues a hedge for each block it takes (allowed)."""

    em: Any = None

    def update_state(self, ts: Any, source: str, deltas: Any) -> None:
        self.em.execute_instruction_blocks(ts, [block("hedge-" + deltas["block_id"])])


def test_a_halt_the_journal_never_took_gives_way_to_one_it_did(tmp_path: Path) -> None:
    """The handler's follow-up acceptance cannot be journaled (EXEC-009, a halt the journal
    never took); the hand-off then fails the block EXEC-008, and that record is journaled.
    The manager says EXEC-008 (positions in doubt), as recovery and check read it."""
    from fsm_exec import EventLogError

    clock = FakeClock()
    handler = FollowUp()
    log = EventLogger(tmp_path, "live", checkpoint_every=2)
    em = ExecutionManager({}, StaticDataProvider(), "live", handler, SimVenue(), Reconciled(),
                          event_logger=log, clock=clock, sleep=clock.sleep)
    handler.em = em
    real = log.log_event

    def flaky(ts: Any, kind: str, component: str, data: dict[str, Any], **kw: Any) -> None:
        if kind == "block_accepted" and data["block_id"].startswith("hedge-"):
            raise EventLogError("No space left on device")
        real(ts, kind, component, data, **kw)

    em._log_event = flaky  # refuses only the follow-up
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert em.get_execution_status()["halt_reason"] == "EXEC-008"
    em.update_state(T(1), "strategy_manager")  # halted; a due checkpoint is written
    log.close()
    report = check_journal(tmp_path)
    assert report.ok, report.problems
    with EventLogger(tmp_path, "live") as again_log:
        again = ExecutionManager({}, StaticDataProvider(), "live", handler, SimVenue(),
                                 Reconciled(), event_logger=again_log, clock=clock,
                                 sleep=clock.sleep)
        assert again.recover().halt_reason == "EXEC-008"


def test_a_batch_given_to_update_state_whose_fsync_fails_retires_the_manager(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """update_state's batch is made durable by the first block's start record; if that
    fsync fails (and the kernel drops the acceptance), the manager retires instead of
    halting on a memory the journal no longer holds: a manual resume is refused, and the
    journal it leaves checks clean and recovers with nothing queued."""
    from fsm_exec import EventLogError, ManagerInterruptedError

    armed = losing_fsync(monkeypatch)
    venue = SimVenue()
    with EventLogger(tmp_path, "live") as log:
        em = live(log, venue=venue)
        armed[0] = True
        with pytest.raises(EventLogError):
            em.update_state(T(0), "strategy_manager", blocks("a"))
        assert em.interrupted and em.halted
        with pytest.raises(ManagerInterruptedError):
            em.update_state(T(1), "manual")
        again = em.reopen()
        assert again.queued_block_ids == () and again.block_state("a") is None
        assert venue.execution_order == []
    assert check_journal(tmp_path).ok


def test_a_retired_manager_writes_no_checkpoint(tmp_path: Path) -> None:
    """A checkpoint is state from memory, and retirement says memory may disagree with
    the journal: a retired manager refuses to write one (wherever it would be due: a
    block boundary, a new day), and the journal is unchanged."""
    from fsm_exec import ManagerInterruptedError

    with EventLogger(tmp_path, "backtest", checkpoint_every=1) as log:
        em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=log)
        em.update_state(T(0), "strategy_manager", blocks("a"))
        with pytest.raises(KeyboardInterrupt):
            em.execute_instruction_blocks(T(1), [{**block("c"), "priority": Interrupting(1)}])
        log.sync()
        before = list(read_journal(tmp_path))
        with pytest.raises(ManagerInterruptedError):
            em._write_checkpoint(new_file=True)
        log.sync()
        assert list(read_journal(tmp_path)) == before


@pytest.mark.parametrize("step", ["accept", "cancel"])
def test_a_call_that_passed_its_entry_check_before_a_reopen_is_refused_under_the_lock(
        tmp_path: Path, step: str) -> None:
    """Thread B's call passed the check at its entry; a reopen() on another thread retires
    the manager before B takes the lock: B is refused there (ManagerInterruptedError) and
    writes nothing to the journal the replacement now owns."""
    from fsm_exec import ManagerInterruptedError

    with EventLogger(tmp_path, "live") as log:
        em = live(log)
        em.execute_instruction_blocks(T(0), blocks("a"))
        passed = threading.Event()
        check = em._check_usable

        def signalling_check(**kw: Any) -> None:
            check(**kw)
            passed.set()

        em._check_usable = signalling_check  # type: ignore[method-assign]
        act: Callable[[], object] = (
            (lambda: em.execute_instruction_blocks(T(1), blocks("b"))) if step == "accept"
            else (lambda: em.cancel(T(1), ["a"], reason="operator")))
        with em._mutex:  # B will wait here, after its entry check
            t, errors = in_thread(act)
            assert passed.wait(10)
            again = em.reopen()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        assert again.queued_block_ids == ("a",)
        log.sync()
        assert [r.data["block_id"] for r in read_journal(tmp_path)
                if r.event_type == "block_accepted"] == ["a"]
    assert check_journal(tmp_path).ok


def test_a_synced_write_that_fails_retires_and_reopen_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block's start record cannot be made durable (the fsync fails, the kernel drops
    what it did not cover): whatever rode along unsynced may be gone, so the manager halts
    (EXEC-009) and retires; reopen() reads back what the journal holds and runs the block,
    once."""
    from fsm_exec import EventLogError, ManagerInterruptedError

    armed = losing_fsync(monkeypatch)
    venue = SimVenue()
    with EventLogger(tmp_path, "live") as log:
        em = live(log, venue=venue)
        em.execute_instruction_blocks(T(0), blocks("a"))  # durable when the call returns
        armed[0] = True
        with pytest.raises(EventLogError):
            em.update_state(T(1), "strategy_manager")
        assert em.halted and em.interrupted
        with pytest.raises(ManagerInterruptedError):
            em.update_state(T(2), "manual")
        again = em.reopen()
        again.update_state(T(3), "strategy_manager")
        assert again.block_state("a") is BlockState.SUCCESS and venue.execution_order == ["a"]
    assert check_journal(tmp_path).ok


def test_a_batch_accepted_while_halted_whose_fsync_fails_retires_the_manager(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Halted, update_state still takes a batch; its acceptance is made durable by the
    call's state_update. If that fsync fails, the manager retires: the batch may be gone."""
    from fsm_exec import EventLogError

    armed = losing_fsync(monkeypatch)
    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager({"not_found_confirmations": 1, "not_found_min_age_seconds": 0},
                              StaticDataProvider(), "live", SimPositionHandler(failures=[True]),
                              SimVenue(), Reconciled(), event_logger=log)
        em.update_state(T(0), "strategy_manager", blocks("a"))  # the hand-off fails: halt
        assert em.get_execution_status()["halt_reason"] == "EXEC-008"
        armed[0] = True
        with pytest.raises(EventLogError):
            em.update_state(T(1), "strategy_manager", blocks("b"))
        assert em.interrupted
        again = em.reopen()
        assert again.halted and again.queued_block_ids == ()
    assert check_journal(tmp_path).ok


class FailsUnsyncedMoves(EventLogger):
    """A journal that cannot write a move the manager writes unsynced (it rides along)."""

    def log_event(self, timestamp: Any, event_type: str, component: str,
                  data: dict[str, Any], *, sync: bool = True,
                  checked: bool = False) -> None:
        if event_type == "block_transition" and not sync:
            from fsm_exec import EventLogError
            raise EventLogError("cannot write journal: No space left on device")
        super().log_event(timestamp, event_type, component, data, sync=sync,
                          checked=checked)


def test_an_unsynced_move_that_cannot_be_written_halts_without_retiring(
        tmp_path: Path) -> None:
    """Nothing was acted on that the journal may lack (the move was not made): EXEC-009,
    the block stays where the journal says, and the manager is not retired."""
    from fsm_exec import ComponentError

    with FailsUnsyncedMoves(tmp_path, "backtest") as log:
        em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=log)
        with pytest.raises(ComponentError, match="EXEC-009"):
            em.update_state(T(0), "strategy_manager", blocks("a"))
        assert em.halted and not em.interrupted
        assert em.get_execution_status()["halt_reason"] == "EXEC-009"
        assert em.block_state("a") is BlockState.PENDING_RECONCILIATION


@pytest.mark.parametrize(("halted", "journaled", "expected"), [
    (False, False, ("EXEC-002", True)),  # not halted: the failure is the halt
    (True, False, ("EXEC-002", True)),  # a halt the journal never took gives way
    (True, True, ("EXEC-009", True)),  # a halt the journal holds stands
])
def test_a_recorded_halting_failure_replaces_only_an_unrecorded_halt(
        halted: bool, journaled: bool, expected: tuple[str, bool]) -> None:
    """The manager's rule, as recovery reads the journal: the first recorded reason
    stands; an unrecorded one (EXEC-009) gives way to the first recorded failure."""
    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), Reconciled())
    if halted and journaled:
        em._state.halted_for("EXEC-009")  # a manager_halted record
    elif halted:
        em._halt("EXEC-009")  # the journal could not take it
    em._state.halt("EXEC-002")  # the failure's record (halts: true), as _move applies it
    em._halt_for("EXEC-002")
    assert em.halted
    reason = em.get_execution_status()["halt_reason"]
    assert (reason, em._pending_halt is None) == expected

"""The runtime's money edges (a hostile review's findings): what reaches the venue, what a
venue's or a component's odd answer does, and what a refused or failed batch tells its
caller. Each test failed before its fix."""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_exec import (
    AlreadyAcceptedError,
    ComponentError,
    EventLogError,
    EventLogger,
    ExecutionManager,
    ExecutionRejected,
    InvalidArgumentError,
    InvalidBlockError,
    JournalCorruptError,
    check_journal,
    journal_files,
    read_journal,
)
from fsm_exec.boundary.canonical import canonical
from fsm_exec.journal.codec import decode, encode
from fsm_exec.sim.venues import (
    FakeClock,
    RecordingEventLogger,
    SimPositionHandler,
    StaticDataProvider,
)

from kit import T, block


class Reconciled:
    reconciliation_status = "success"


class Venue:
    """Fills every block (idempotent by block_id), recording what it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def route_instruction(self, ts: Any, b: Any) -> dict[str, float]:
        self.sent.append((b.block_id, copy.deepcopy(list(b.instructions))))
        return {"ETH": 1.0}


def manager(mode: str = "live", venue: Any = None, *, log: Any = None,
            rc: Any = None, positions: Any = None, **config: Any) -> ExecutionManager:
    clock = FakeClock()
    cfg = {"not_found_confirmations": 1, "not_found_min_age_seconds": 0,
           "not_found_interval_seconds": 0, **config}
    return ExecutionManager(cfg, StaticDataProvider(), mode,
                            positions or SimPositionHandler(), venue or Venue(),
                            rc or Reconciled(), event_logger=log, clock=clock,
                            sleep=clock.sleep)


# ------------------------------------------------------------------ 15d: the keywords


@pytest.mark.parametrize(("keyword", "value", "says"), [
    ("event_logger", "logs/events", "event_logger: a str has no log_event method"),
    ("health_manager", "x", "health_manager: a str has no register_component method"),
    ("clock", 5, "clock: a int is not callable"),
    ("sleep", 5, "sleep: a int is not callable"),
    ("clock", None, "clock: a NoneType is not callable"),
])
def test_a_keyword_collaborator_of_the_wrong_kind_is_refused_naming_it(
        keyword: str, value: Any, says: str) -> None:
    """event_logger='logs/events', health_manager='x', clock=5, sleep=5: refused at
    construction with InvalidArgumentError naming the parameter (not a raw AttributeError,
    not a TypeError later that retires the manager)."""
    clock = FakeClock()
    kwargs: dict[str, Any] = {"clock": clock, "sleep": clock.sleep, keyword: value}
    with pytest.raises(InvalidArgumentError, match=f"^\\[EXEC-011\\] {says}"):
        ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                         Venue(), Reconciled(), **kwargs)


def test_a_keyword_collaborator_refused_claims_nothing(tmp_path: Path) -> None:
    """A bad health_manager is refused before the journal is claimed: the same
    EventLogger serves the next manager."""
    log = EventLogger(tmp_path, "live")
    with pytest.raises(InvalidArgumentError, match="health_manager"):
        ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), Venue(),
                         Reconciled(), event_logger=log, health_manager=cast(Any, object()))
    em = manager(log=log)
    em.update_state(T(), "strategy_manager", [block("b1")])
    assert em.blocks_executed == 1
    em.close()


# --------------------------------------------- 9: an unrecognised reconciliation status


class Colour(enum.Enum):
    SUCCESS = "success"


class Shouting:
    def __repr__(self) -> str:
        return "\x1b[2J" + "S" * 500


@pytest.mark.parametrize(("status", "shown"), [
    ("SUCCESS", "'SUCCESS' (a str)"),
    (True, "True (a bool)"),
    (Colour.SUCCESS, "<Colour.SUCCESS: 'success'> (a Colour)"),
    ("success ", "'success ' (a str)"),
    (None, "None (a NoneType)"),
    ("\x1b[2Jsuccess", "'\\x1b[2Jsuccess' (a str)"),
    (Shouting(), "\\x1b[2JSSS"),
])
def test_an_unrecognised_reconciliation_status_fails_naming_it(
        status: Any, shown: str) -> None:
    """A reconciliation_status that is none of pending/success/failed is not taken for
    pending: the block fails at once (EXEC-014, halting), the error and the journal name
    the value seen (repr, control characters escaped, shortened), never 'timed out'."""
    class Component:
        reconciliation_status = status

    log = RecordingEventLogger()
    em = manager(rc=Component(), log=log, max_retries=2, reconciliation_timeout=1)
    st = em.update_state(T(), "strategy_manager", [block("b1")])
    assert (st["halted"], st["halt_reason"], st["blocks_failed"]) == (True, "EXEC-014", 1)
    [failed] = [e.data for e in log.of_type("block_transition") if e.data["dest"] == "failed"]
    assert shown in failed["reason"]
    assert "timed out" not in failed["reason"] and "\x1b" not in failed["reason"]
    assert len(failed["reason"]) < 300
    [error] = [e.data for e in log.of_type("error")]
    assert error["error_code"] == "EXEC-014" and shown in error["error_message"]
    assert not log.of_type("reconciliation_timeout")


def test_an_unrecognised_status_holding_a_secret_is_named_redacted() -> None:
    """The status seen is redacted before it is shortened and journaled."""
    secret = "sk-LIVE-0123456789abcdef"

    class Component:
        reconciliation_status = "ok " + secret

    log = RecordingEventLogger()
    em = manager(rc=Component(), log=log, api_key=secret)
    em.update_state(T(), "strategy_manager", [block("b1")])
    [error] = [e.data for e in log.of_type("error")]
    assert "reconciliation_status is 'ok " in error["error_message"]
    assert secret not in str([e.data for e in log.events])


# --------------------------------------- 8: an answer of query_execution that is not deltas


class LosesFirstReply(Venue):
    """The first route call's reply is lost (an unknown outcome); ``query_execution``
    answers ``answer``."""

    def __init__(self, answer: Any, lost: type[BaseException] = TimeoutError) -> None:
        super().__init__()
        self.answer, self.lost = answer, lost

    def route_instruction(self, ts: Any, b: Any) -> dict[str, float]:
        reply = super().route_instruction(ts, b)
        if len(self.sent) == 1:
            raise self.lost("lost reply")
        return reply

    def query_execution(self, ts: Any, b: Any) -> Any:
        return self.answer


@dataclasses.dataclass
class Fill:
    ETH: float


class Book:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def update_state(self, ts: Any, source: str, deltas: Any) -> None:
        self.got.append(deltas)


NOT_DELTAS = [({}, "{} (a dict)"), (False, "False (a bool)"), ([], "[] (a list)"),
              (0, "0 (a int)"), ("", "'' (a str)"), ([{"ETH": 1.0}], "[{'ETH': 1.0}] (a list)"),
              ("\x1b]52;c;" + "A" * 200, "'\\x1b]52;c;AAAA")]


@pytest.mark.parametrize(("answer", "shown"), NOT_DELTAS)
def test_a_query_answer_that_is_not_deltas_is_refused_never_executed(
        answer: Any, shown: str) -> None:
    """After a lost reply, query_execution answering {}, False, [], 0 or "" (neither
    deltas nor None) is refused loudly: the block fails with EXEC-015 naming the answer
    and the manager halts, positions in doubt; it is never counted executed, its deltas
    never reach the position handler, and it is not routed again."""
    venue, book, log = LosesFirstReply(answer), Book(), RecordingEventLogger()
    em = manager(venue=venue, positions=book, log=log)
    st = em.update_state(T(), "strategy_manager", [block("b1")])
    assert (st["blocks_executed"], st["blocks_failed"]) == (0, 1)
    assert (st["halted"], st["halt_reason"]) == (True, "EXEC-015")
    assert book.got == [] and len(venue.sent) == 1
    [error] = [e.data for e in log.of_type("error")]
    assert error["error_code"] == "EXEC-015"
    assert f"query_execution answered {shown}" in error["error_message"]
    assert "\x1b" not in error["error_message"] and len(error["error_message"]) < 400
    assert not [e for e in log.of_type("block_transition") if e.data.get("deltas") is not None]


def test_a_query_answer_that_is_not_deltas_is_refused_in_backtest_too(
        tmp_path: Path) -> None:
    """The backtest's one query (after an interrupted route) refuses it the same way."""
    venue, book = LosesFirstReply(False, KeyboardInterrupt), Book()
    em = manager("backtest", venue=venue, positions=book,
                 log=EventLogger(tmp_path, "backtest"))
    with pytest.raises(KeyboardInterrupt):
        em.update_state(T(), "strategy_manager", [block("b1")])
    em = em.reopen()
    with pytest.raises(ComponentError, match=r"EXEC-015.*query_execution answered False"):
        em.update_state(T(1), "strategy_manager")
    assert (em.blocks_executed, em.halted, book.got) == (0, True, [])
    em.close()


class NoLength(Mapping[str, float]):
    """A mapping whose len() raises (an SDK's lazy result, say), empty when iterated."""

    def __getitem__(self, key: str) -> float:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        raise RuntimeError("not loaded")


@pytest.mark.parametrize(("answer", "shown"), [
    (MappingProxyType({}), "mappingproxy({}) (a mappingproxy)"),
    (NoLength(), "(a NoLength)"),
    ((), "() (a tuple)"),
])
def test_an_empty_mapping_of_any_kind_is_not_deltas(answer: Any, shown: str) -> None:
    """A mapping of another type that is empty (or whose length cannot even be read) is no
    more deltas than {}: EXEC-015, halting, never executed."""
    venue, book, log = LosesFirstReply(answer), Book(), RecordingEventLogger()
    em = manager(venue=venue, positions=book, log=log)
    st = em.update_state(T(), "strategy_manager", [block("b1")])
    assert (st["blocks_executed"], st["halt_reason"], book.got) == (0, "EXEC-015", [])
    [error] = [e.data for e in log.of_type("error")]
    assert shown in error["error_message"]


def test_an_answer_with_no_faithful_form_is_exec_015_cannot_be_recorded() -> None:
    """An answer that is no canonical data at all is refused as a reply that cannot be
    recorded (EXEC-015 naming its path), never executed."""
    venue, book, log = LosesFirstReply(object()), Book(), RecordingEventLogger()
    em = manager(venue=venue, positions=book, log=log)
    st = em.update_state(T(), "strategy_manager", [block("b1")])
    assert (st["blocks_executed"], st["halt_reason"], book.got) == (0, "EXEC-015", [])
    [error] = [e.data for e in log.of_type("error")]
    assert "cannot be recorded faithfully: $: object has no faithful JSON form" in error[
        "error_message"]


@pytest.mark.parametrize("answer", [{"ETH": 1.0}, Fill(1.0),
                                    MappingProxyType({"ETH": 1.0})])
def test_deltas_from_query_execution_still_resume_reconciliation(answer: Any) -> None:
    """A non-empty mapping (or a record whose canonical form is one) is the venue saying
    it executed: the deltas are handed off once and the block succeeds."""
    venue, book = LosesFirstReply(answer), Book()
    em = manager(venue=venue, positions=book)
    st = em.update_state(T(), "strategy_manager", [block("b1")])
    assert (st["blocks_executed"], st["halted"], book.got) == (1, False, [{"ETH": 1.0}])
    assert len(venue.sent) == 1


# ------------------------------------------- 10: integers beyond Python's 4,300-digit limit

HUGE = 10**5000


@pytest.mark.parametrize(("given", "path"), [
    ({"amount": HUGE}, "instructions[0].amount"),
    ({"amount": 1, "legs": [{"qty": -HUGE}]}, "instructions[0].legs[0].qty"),
    ({"amount": 1, "by_id": {HUGE: 1}}, "instructions[0].by_id['<key>']"),
])
@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_a_block_with_an_integer_of_more_than_4300_digits_is_refused(
        mode: str, given: dict[str, Any], path: str, tmp_path: Path) -> None:
    """An integer over Python's int-to-text limit anywhere in a block is refused with
    EXEC-004 naming the block and the field: never a raw ValueError retiring the manager."""
    b = block("b1")
    b["instructions"][0].update(given)
    em = manager(mode, log=EventLogger(tmp_path, mode))
    with pytest.raises(InvalidBlockError) as caught:
        em.update_state(T(), "strategy_manager", [b])
    [problem] = caught.value.problems
    assert (problem.block_id, problem.field) == ("b1", path)
    assert "more than 4300 digits" in problem.reason
    assert not em.interrupted and em.queued_block_ids == ()
    em.update_state(T(1), "strategy_manager", [block("b2")])
    assert em.blocks_executed == 1
    em.close()


def test_a_priority_of_more_than_4300_digits_is_refused(tmp_path: Path) -> None:
    """The priority too (it is journaled as its digits)."""
    em = manager("backtest", log=EventLogger(tmp_path, "backtest"))
    with pytest.raises(InvalidBlockError, match=r"priority: an integer of more than 4300"):
        em.update_state(T(), "strategy_manager", [{**block("b1"), "priority": HUGE}])
    assert not em.interrupted
    em.close()


class HugeReply(Venue):
    def __init__(self, *, lose_first: bool = False) -> None:
        super().__init__()
        self.lose_first = lose_first

    def route_instruction(self, ts: Any, b: Any) -> Any:
        super().route_instruction(ts, b)
        if self.lose_first and len(self.sent) == 1:
            raise TimeoutError("lost reply")
        return {"ETH": HUGE}

    def query_execution(self, ts: Any, b: Any) -> Any:
        return {"ETH": HUGE} if self.sent else None


@pytest.mark.parametrize("lose_first", [False, True])
def test_a_venue_reply_with_an_integer_of_more_than_4300_digits_is_exec_015(
        lose_first: bool, tmp_path: Path) -> None:
    """A reply (from route_instruction, or from query_execution after a lost reply) holding
    such an integer fails its block with EXEC-015 naming the path, halting: the manager is
    not retired, and a restart reads the journal back (no crash loop on reopen())."""
    venue, book = HugeReply(lose_first=lose_first), Book()
    log = EventLogger(tmp_path, "live")
    em = manager(venue=venue, positions=book, log=log)
    st = em.update_state(T(), "strategy_manager", [block("b1")])
    assert (st["halted"], st["halt_reason"], st["blocks_failed"]) == (True, "EXEC-015", 1)
    assert not em.interrupted and book.got == [] and len(venue.sent) == 1
    assert "$.ETH: an integer of more than 4300 digits" in em.health_check()["errors"][-1][
        "error_message"]
    em.close()
    again = manager(venue=venue, positions=book, log=EventLogger(tmp_path, "live"))
    report = again.recover()
    assert (report.halted, report.halt_reason, report.blocks_failed) == (True, "EXEC-015", 1)
    again.close()


class NonFiniteReply(Venue):
    """Replies ``reply`` (after losing the first reply, with ``lose_first``)."""

    def __init__(self, reply: Any, *, lose_first: bool = False) -> None:
        super().__init__()
        self.reply, self.lose_first = reply, lose_first

    def route_instruction(self, ts: Any, b: Any) -> Any:
        super().route_instruction(ts, b)
        if self.lose_first and len(self.sent) == 1:
            raise TimeoutError("lost reply")
        return self.reply

    def query_execution(self, ts: Any, b: Any) -> Any:
        return self.reply if self.sent else None


NON_FINITE = [({"ETH": float("nan")}, "$.ETH"), ({"amount": float("inf")}, "$.amount"),
              ({"changes": {"ETH": -float("inf")}}, "$.changes.ETH"),
              ({"fills": [{"filled_amount": Decimal("NaN")}]}, "$.fills[0].filled_amount"),
              ({"ETH": Decimal("-Infinity")}, "$.ETH")]


@pytest.mark.parametrize(("reply", "path"), NON_FINITE)
@pytest.mark.parametrize("way", ["backtest", "live", "live, reply lost"])
def test_a_venue_reply_holding_nan_or_an_infinity_never_reaches_the_book(
        reply: Any, path: str, way: str, tmp_path: Path) -> None:
    """A reply (from route_instruction, or from query_execution after a lost reply) with a
    NaN or an infinity anywhere, under any name, is no quantity: the block fails with
    EXEC-015 naming its path and the manager halts; the position handler is never called
    (before: the NaN was journaled tagged and handed over, the block a success)."""
    mode = way.split(",")[0]
    venue, book = NonFiniteReply(reply, lose_first=way.endswith("lost")), Book()
    em = manager(mode, venue=venue, positions=book, log=EventLogger(tmp_path, mode))
    if mode == "backtest":
        with pytest.raises(ComponentError) as caught:
            em.update_state(T(), "strategy_manager", [block("b1")])
        assert caught.value.error_code == "EXEC-015"
        message = caught.value.message
    else:
        st = em.update_state(T(), "strategy_manager", [block("b1")])
        assert (st["halted"], st["halt_reason"], st["blocks_failed"]) == (True, "EXEC-015", 1)
        message = em.health_check()["errors"][-1]["error_message"]
    assert book.got == [] and len(venue.sent) == 1
    assert f"{path}: must be a finite number (no NaN or infinity anywhere in a venue's " \
           "reply)" in message
    em.close()


@given(st.integers(), st.integers(4290, 4310), st.integers(-10**3, 10**3), st.booleans(),
       st.sampled_from(["small", "power", "bits"]))
def test_an_integer_has_a_journal_form_or_is_refused(
        small: int, k: int, d: int, negative: bool, kind: str) -> None:
    """Every integer either converts and reads back from the journal exactly, or is refused
    (more than 4300 digits), never a raw exception. (Drawn as its parts: hypothesis itself
    cannot show an integer that long.)"""
    n = {"small": small, "power": 10**k + d, "bits": 1 << (14_280 + (k - 4290) // 2)}[kind]
    n = -n if negative else n
    conv = canonical({"q": n, n: 1})
    if abs(n) >= 10**4300:
        assert conv.problems and all("more than 4300 digits" in p for p in conv.problems)
        return
    assert not conv.problems
    assert decode(orjson.loads(encode({"v": conv.wire})))["v"] == {"q": n, n: 1}


# ------------------------------------------ 4: an adapter that edits the block in place


class Normalising(Venue):
    """Edits the block it is handed (units normalised in place), failing ``fails`` times
    first; its query edits the block too and finds nothing."""

    def __init__(self, fails: int, error: type[BaseException] = ConnectionError) -> None:
        super().__init__()
        self.fails, self.error = fails, error
        self.queried: list[Any] = []

    def route_instruction(self, ts: Any, b: Any) -> dict[str, float]:
        reply = super().route_instruction(ts, b)
        b.instructions[0]["amount"] *= 10
        b.instructions[0]["legs"][0]["qty"] += 1
        b.instructions[0]["legs"].append({"qty": 0})
        if len(self.sent) <= self.fails:
            raise self.error("refused")
        return reply

    def query_execution(self, ts: Any, b: Any) -> None:
        self.queried.append(b.instructions[0]["amount"])
        b.instructions[0]["amount"] = -1
        return None


def nested(block_id: str) -> dict[str, Any]:
    b = block(block_id)
    b["instructions"][0]["legs"] = [{"qty": 1}]
    return b


def test_every_attempt_routes_the_journaled_amounts(tmp_path: Path) -> None:
    """A venue that edits the block in place (and its query_execution too) changes nothing
    a later attempt sends: each call gets its own deep copy, so every attempt routes the
    amounts the journal holds, and the manager's own copy stays as accepted."""
    venue = Normalising(fails=2)
    log = EventLogger(tmp_path, "live")
    em = manager(venue=venue, log=log)
    em.update_state(T(), "strategy_manager", [nested("a")])
    assert em.blocks_executed == 1
    sent = [instrs for _, instrs in venue.sent]
    assert len(sent) == 3 and venue.queried == [1.0, 1.0]
    assert all(s == [nested("a")["instructions"][0]] for s in sent)
    em.close()
    [accepted] = [r.data for r in read_journal(tmp_path) if r.event_type == "block_accepted"]
    assert accepted["instructions"] == nested("a")["instructions"]


def test_a_block_in_flight_keeps_its_amounts_in_checkpoints_and_views(
        tmp_path: Path) -> None:
    """While a block edited by its venue is still in flight, the manager's view of it and
    the checkpoint a restart reads hold the amounts accepted, not the venue's edits."""
    venue = Normalising(fails=99, error=KeyboardInterrupt)
    em = manager("backtest", venue=venue, log=EventLogger(tmp_path, "backtest"))
    with pytest.raises(KeyboardInterrupt):
        em.update_state(T(), "strategy_manager", [nested("a"), nested("b")])
    em = em.reopen()
    assert em.current_instruction_block == nested("a")
    venue.fails = 0
    em.update_state(T(1), "strategy_manager")
    assert em.blocks_executed == 2
    assert [s for i, s in venue.sent if i == "a"] == [nested("a")["instructions"]] * 2
    assert venue.queried == [1.0]
    em.close()


def test_a_risk_check_that_edits_the_block_changes_nothing_routed() -> None:
    """A desk's risk check is given its own copy too."""
    def doubles(b: Any, market: Any) -> None:
        b.instructions[0]["amount"] *= 2

    venue = Venue()
    clock = FakeClock()
    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(), venue,
                          Reconciled(), clock=clock, sleep=clock.sleep,
                          risk_checks=[doubles, doubles])
    em.update_state(T(), "strategy_manager", [block("a")])
    assert venue.sent == [("a", block("a")["instructions"])]


# ------------------------------------ 15a: reconciliation_status after a restart, idle


class FailsB2(Venue):
    def route_instruction(self, ts: Any, b: Any) -> dict[str, float]:
        reply = super().route_instruction(ts, b)
        if b.block_id == "b2":
            raise ExecutionRejected("no such market", retryable=False)
        return reply


@pytest.mark.parametrize(("run", "expected"), [
    ([["b1"]], "success"),
    ([["b1"], ["b2"]], "failed"),
    ([["b2"], ["b1"]], "success"),
    ([["b1"], ["b2"], "cancel b3"], "failed"),
    ([], "pending"),
])
def test_reconciliation_status_after_recover_is_the_last_blocks_when_idle(
        run: list[Any], expected: str, tmp_path: Path) -> None:
    """With nothing in flight, a recovered manager's reconciliation_status is the last
    reconciled block's outcome (success or failed), as the manager that wrote the journal
    said it; never 'pending' (that is for a block in flight), unless no block finished."""
    em = manager(venue=FailsB2(), log=EventLogger(tmp_path, "live"))
    for i, step in enumerate(run):
        if step == "cancel b3":
            em.execute_instruction_blocks(T(i), [block("b3")])
            em.cancel(T(i), ["b3"], reason="test")
        else:
            em.update_state(T(i), "strategy_manager", [block(x) for x in step])
    before = em.get_execution_status()["reconciliation_status"]
    em.close()
    again = manager(venue=FailsB2(), log=EventLogger(tmp_path, "live"))
    again.recover()
    assert again.get_execution_status()["reconciliation_status"] == before == expected
    again.close()


def test_reconciliation_status_after_recover_is_pending_with_a_block_in_flight(
        tmp_path: Path) -> None:
    """A block restored in flight: pending until it is settled."""
    class InterruptsB(Venue):
        def route_instruction(self, ts: Any, b: Any) -> dict[str, float]:
            reply = super().route_instruction(ts, b)
            if b.block_id == "b" and len(self.sent) == 2:
                raise KeyboardInterrupt
            return reply

    em = manager("backtest", venue=InterruptsB(), log=EventLogger(tmp_path, "backtest"))
    em.update_state(T(), "strategy_manager", [block("a")])
    with pytest.raises(KeyboardInterrupt):
        em.update_state(T(1), "strategy_manager", [block("b")])
    em = em.reopen()
    assert em.get_execution_status()["reconciliation_status"] == "pending"
    em.update_state(T(2), "strategy_manager")
    assert em.get_execution_status()["reconciliation_status"] == "success"
    em.close()


# ------------------------------------------ 11: a journal failure while accepting a batch


def failing_on(monkeypatch: pytest.MonkeyPatch, log: EventLogger, block_id: str) -> None:
    """The journal fails (disk full) writing ``block_id``'s acceptance, once."""
    real, armed = log.log_event, [True]

    def log_event(ts: Any, kind: str, component: str, data: dict[str, Any],
                  **kw: Any) -> None:
        if armed[0] and kind == "block_accepted" and data["block_id"] == block_id:
            armed[0] = False
            raise OSError(28, "No space left on device")
        real(ts, kind, component, data, **kw)

    monkeypatch.setattr(log, "log_event", log_event)


def test_a_batch_the_journal_could_not_accept_is_named_for_resubmission(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EXEC-009 while accepting a batch carries a note naming the batch's blocks, none of
    them accepted, and saying to submit them again after the resume; submitted again, they
    run once, and a restart reads the journal back with each block executed once."""
    log = EventLogger(tmp_path, "live")
    venue = Venue()
    failing_on(monkeypatch, log, "c")
    em = manager(venue=venue, log=log)
    em.update_state(T(), "strategy_manager", [block("a")])
    with pytest.raises(EventLogError) as caught:
        em.update_state(T(1), "strategy_manager", [block("b"), block("c"), block("d")])
    [note] = caught.value.__notes__
    assert "NOT accepted" in note and "('b', 'c', 'd')" in note
    assert "Submit them again" in note and "update_state(ts, 'manual')" in note
    assert em.queued_block_ids == () and em.halted
    em.update_state(T(2), "manual", [block("b"), block("c"), block("d")])
    assert [i for i, _ in venue.sent] == ["a", "b", "c", "d"]
    em.close()
    again = manager(venue=venue, log=EventLogger(tmp_path, "live"))
    report = again.recover()
    assert (report.blocks_executed, report.queued, report.halted) == (4, (), False)
    again.close()


def test_the_note_on_a_large_refused_batch_is_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It names the first 20 blocks and counts the rest."""
    log = EventLogger(tmp_path, "live")
    failing_on(monkeypatch, log, "k24")
    em = manager(log=log)
    with pytest.raises(EventLogError) as caught:
        em.execute_instruction_blocks(T(), [block(f"k{i}") for i in range(25)])
    [note] = caught.value.__notes__
    assert "none of its 25 block(s)" in note and "'k19' and 5 more" in note
    assert "'k20'" not in note
    em.close()


# ------------------------------- 15f: a different block reusing a finished block's id


def sell(block_id: str, amount: float = 1.0) -> dict[str, Any]:
    return {"block_id": block_id, "action": "sell", "priority": 1,
            "instructions": [{"token": "ETH", "amount": amount}]}


def buy(block_id: str, amount: float = 500.0) -> dict[str, Any]:
    return {**sell(block_id, amount), "action": "buy"}


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_a_different_block_reusing_a_finished_id_is_refused_not_already_accepted(
        mode: str) -> None:
    """A finished block's id reused by a block asking for something else (sell 1 then buy
    500 under one id) is a conflicting duplicate: a plain InvalidBlockError (EXEC-004)
    saying so, never AlreadyAcceptedError, which the exactly-once recipe swallows; the
    same block submitted again is still AlreadyAcceptedError."""
    venue = Venue()
    em = manager(mode, venue=venue)
    em.update_state(T(), "strategy_manager", [sell("hedge-1")])
    for other in (buy("hedge-1"), sell("hedge-1", 2.0), {**sell("hedge-1"), "priority": 2}):
        with pytest.raises(InvalidBlockError) as caught:
            em.update_state(T(1), "strategy_manager", [other])
        assert not isinstance(caught.value, AlreadyAcceptedError)
        assert caught.value.error_code == "EXEC-004"
        [problem] = caught.value.problems
        assert problem.reason.startswith("already used by another block, which finished "
                                         "(success)")
    with pytest.raises(AlreadyAcceptedError, match=r"same content; it finished: success"):
        em.update_state(T(2), "strategy_manager", [sell("hedge-1")])
    assert [i for i, _ in venue.sent] == ["hedge-1"] and em.queued_block_ids == ()


def test_a_batch_with_one_conflicting_duplicate_is_refused_whole() -> None:
    """One block the same as a finished one, one reusing an id for something else: the
    batch is not 'already accepted'; it is refused whole, naming the conflicting one."""
    em = manager("backtest")
    em.update_state(T(), "strategy_manager", [sell("a"), sell("b")])
    with pytest.raises(InvalidBlockError) as caught:
        em.update_state(T(1), "strategy_manager", [sell("a"), buy("b")])
    assert not isinstance(caught.value, AlreadyAcceptedError)
    reasons = {p.block_id: p.reason for p in caught.value.problems}
    assert reasons["a"] == "already queued, in flight or recently finished"
    assert reasons["b"].startswith("already used by another block")


def test_a_cancelled_blocks_id_reused_for_another_block_is_refused() -> None:
    """A cancelled block keeps its content digest too."""
    em = manager("backtest")
    em.execute_instruction_blocks(T(), [sell("a")])
    em.cancel(T(), ["a"], reason="test")
    with pytest.raises(InvalidBlockError, match=r"finished \(cancelled\)"):
        em.update_state(T(1), "strategy_manager", [buy("a")])
    with pytest.raises(AlreadyAcceptedError):
        em.update_state(T(1), "strategy_manager", [sell("a")])


def test_finished_blocks_content_survives_restarts_in_checkpoints(tmp_path: Path) -> None:
    """After a restart (a block finished in the records replayed; then one only in the
    checkpoint recovery wrote), a conflicting duplicate is still told apart, and check
    verifies the digests the checkpoint carries against the records before it."""
    em = manager(log=EventLogger(tmp_path, "live"))
    em.update_state(T(), "strategy_manager", [sell("a"), {**sell("b"), "instructions": [
        {"token": "ETH", "amount": Decimal("1.5"), "by_id": {7: 1 << 70}}]}])
    em.close()
    for _ in range(2):  # the second restart reads the digests from a checkpoint
        em = manager(log=EventLogger(tmp_path, "live"))
        em.recover()
        with pytest.raises(InvalidBlockError, match="already used by another block"):
            em.execute_instruction_blocks(T(1), [buy("a")])
        with pytest.raises(AlreadyAcceptedError, match="same content"):
            em.execute_instruction_blocks(T(1), [{**sell("b"), "instructions": [
                {"token": "ETH", "amount": Decimal("1.5"), "by_id": {7: 1 << 70}}]}])
        em.close()
    checkpoints = [r.data for r in read_journal(tmp_path) if r.event_type == "checkpoint"]
    assert set(checkpoints[-1]["finished_digests"]) == {"a", "b"}
    assert check_journal(tmp_path).ok


def test_a_checkpoint_whose_digests_disagree_with_the_records_is_refused(
        tmp_path: Path) -> None:
    """A digest edited in a checkpoint disagrees with the records before it: check and
    recovery refuse it (EXEC-013)."""
    em = manager(log=EventLogger(tmp_path, "live"))
    em.update_state(T(), "strategy_manager", [sell("a")])
    em.close()
    em = manager(log=EventLogger(tmp_path, "live"))
    em.recover()  # its checkpoint holds a's digest
    em.close()
    newest = max(journal_files(tmp_path, "ExecutionManager"),
                 key=lambda p: p.stat().st_mtime_ns)
    lines = newest.read_text().splitlines()
    first = json.loads(lines[0])
    first["data"]["finished_digests"]["a"] = "0" * 16
    lines[0] = json.dumps(first, separators=(",", ":"))
    newest.write_text("\n".join(lines) + "\n")
    report = check_journal(tmp_path)
    assert not report.ok and "finished_digests" in str(report.problem)
    with pytest.raises(JournalCorruptError, match="finished_digests"):
        manager(log=EventLogger(tmp_path, "live")).recover()


def test_a_journal_written_before_digests_were_kept_still_reads(tmp_path: Path) -> None:
    """A checkpoint without finished_digests (fsm_exec before them) reads and recovers;
    the blocks it carries as finished are compared by id alone, as they were."""
    em = manager(log=EventLogger(tmp_path, "live"))
    em.update_state(T(), "strategy_manager", [sell("a")])
    em.close()
    em = manager(log=EventLogger(tmp_path, "live"))
    em.recover()
    em.close()
    for path in journal_files(tmp_path, "ExecutionManager"):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for r in records:
            if r["event_type"] == "checkpoint":
                r["data"].pop("finished_digests", None)
        path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    assert check_journal(tmp_path).ok
    em = manager(log=EventLogger(tmp_path, "live"))
    report = em.recover()
    assert report.blocks_executed == 1
    with pytest.raises(AlreadyAcceptedError, match=r"same id; it finished: success \(its "
                                                   r"content is not known\)"):
        em.execute_instruction_blocks(T(1), [buy("a")])
    em.update_state(T(2), "strategy_manager", [sell("c")])
    with pytest.raises(InvalidBlockError, match="already used by another block"):
        em.execute_instruction_blocks(T(3), [buy("c")])
    em.close()

"""One canonical form at the boundary: what pandas/numpy code hands the manager, what the
venue and the position handler receive (crash or no crash), hostile objects, collaborator
faults and secrets."""

from __future__ import annotations

import datetime as dt
import enum
import math
import pickle
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_exec import (
    BlockState,
    ComponentError,
    EventLogger,
    ExecutionConfig,
    ExecutionManager,
    InstructionBlock,
    InvalidArgumentError,
    InvalidBlockError,
    read_journal,
)
from fsm_exec.boundary.canonical import MAX_DEPTH, canonical, to_wire
from fsm_exec.journal.codec import decode
from fsm_exec.sim.venues import FakeClock, StaticDataProvider

from kit import CANARY, T, block, rig


class Asset(enum.Enum):
    ETH = "ETH"
    USDT = "USDT"


class Recorder:
    """A venue returning what it is told to, and a handler keeping what it gets."""

    def __init__(self, reply: Any = None) -> None:
        self.reply = reply
        self.blocks: list[InstructionBlock] = []
        self.done: dict[str, Any] = {}

    def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
        self.blocks.append(b)
        self.done[b.block_id] = self.reply if self.reply is not None else {"ok": b.block_id}
        return self.done[b.block_id]

    def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
        return self.done.get(b.block_id)


class Handler:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def update_state(self, ts: Any, source: str, deltas: Any) -> None:
        self.got.append(deltas)


class Reconciled:
    reconciliation_status = "success"


def manager(venue: Any, handler: Any, *, mode: str = "live", log: Any = None,
            config: dict[str, Any] | None = None, rc: Any = None) -> ExecutionManager:
    clock = FakeClock()
    cfg = {"not_found_confirmations": 1, "not_found_min_age_seconds": 0, **(config or {})}
    return ExecutionManager(cfg, StaticDataProvider(), mode, handler, venue,
                            rc if rc is not None else Reconciled(), event_logger=log,
                            clock=clock, sleep=clock.sleep)


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and tells 1 from 1.0 from True."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ------------------------------------------------------------------------ numbers


def test_numpy_priority_and_amounts_are_accepted_as_plain_numbers() -> None:
    """np.int64 priority (what df.to_dict('records') yields) and np.int64 / np.float32
    amounts are accepted; the venue receives plain int and float."""
    venue, handler = Recorder(), Handler()
    em = manager(venue, handler)
    em.update_state(T(0), "strategy_manager", [{
        "block_id": "a", "action": "buy", "priority": np.int64(1),
        "instructions": [{"token": "ETH", "amount": np.float32(1.5),
                          "fee_amount": np.int64(2)}]}])
    b = venue.blocks[0]
    assert type(b.priority) is int and b.priority == 1
    assert type(b.instructions[0]["amount"]) is float and b.instructions[0]["amount"] == 1.5
    assert type(b.instructions[0]["fee_amount"]) is int


@pytest.mark.parametrize("priority", [True, np.bool_(True)])
def test_a_bool_is_never_an_int(priority: Any) -> None:
    """bool and numpy.bool_ are refused as a priority."""
    r = rig()
    with pytest.raises(InvalidBlockError, match=r"priority: must be an int, got (bool|bool_)"):
        r.em.execute_instruction_blocks(T(0), [{**block("a"), "priority": priority}])


def test_numpy_numbers_in_the_config_are_accepted_as_plain_ones() -> None:
    """Config fields take numpy numbers and store plain ones."""
    cfg = ExecutionConfig.from_dict({"max_retries": np.int64(4),
                                     "execution_timeout": np.float64(2.5),
                                     "max_queue_size": np.int32(7)})
    assert (cfg.max_retries, cfg.execution_timeout, cfg.max_queue_size) == (4, 2.5, 7)
    assert type(cfg.max_retries) is int and type(cfg.execution_timeout) is float


def test_an_amount_one_level_down_is_validated() -> None:
    """amount / *_amount keys are checked at every depth: a nested NaN is refused."""
    r = rig()
    bad = {**block("a"), "instructions": [{"token": "ETH", "amount": 1.0,
                                           "legs": [{"fee_amount": float("nan")}]}]}
    with pytest.raises(InvalidBlockError, match=r"instructions\[0\]\.legs\[0\]\.fee_amount: "
                                                r"must be a finite number"):
        r.em.execute_instruction_blocks(T(0), [bad])


# ------------------------------------------------------------------------ deltas


def test_a_pandas_series_reply_reaches_the_handler_as_a_dict() -> None:
    """A venue returning a pandas Series does not wedge the manager: the handler receives
    the canonical dict, the journal holds it, nothing halts."""
    reply = pd.Series({"ETH": 1.5, "USDT": -3000.0})
    venue, handler = Recorder(reply), Handler()
    em = manager(venue, handler)
    status = em.update_state(T(0), "strategy_manager", [block("a")])
    assert not status["halted"] and status["blocks_executed"] == 1
    assert handler.got == [{"ETH": 1.5, "USDT": -3000.0}]


def test_deltas_holding_an_ndarray_reach_the_handler_as_a_list() -> None:
    """An ndarray inside the deltas becomes a list of plain numbers."""
    venue, handler = Recorder({"fills": np.array([1, 2, 3]), "px": np.float64(3000.5)}),\
        Handler()
    manager(venue, handler).update_state(T(0), "strategy_manager", [block("a")])
    assert same(handler.got[0], {"fills": [1, 2, 3], "px": 3000.5})


def test_a_dataframe_reply_becomes_columns_of_index_to_value() -> None:
    """A DataFrame becomes {column: {index: value}} (what to_dict() gives)."""
    df = pd.DataFrame({"qty": [1.0, 2.0]}, index=[10, 11])
    venue, handler = Recorder(df), Handler()
    manager(venue, handler).update_state(T(0), "strategy_manager", [block("a")])
    assert handler.got == [{"qty": {10: 1.0, 11: 2.0}}]


def test_a_reply_with_no_faithful_form_fails_the_block_and_halts_once() -> None:
    """A reply holding an object with no faithful form fails the block with EXEC-015
    (positions in doubt: the venue executed), names the path, halts once; the handler
    never gets it, and a resume carries on with the next block."""
    class Fill:
        pass

    venue, handler = Recorder({"fills": [{"obj": Fill()}]}), Handler()
    em = manager(venue, handler)
    status = em.update_state(T(0), "strategy_manager", [block("a"), block("b")])
    assert status["halted"] and status["halt_reason"] == "EXEC-015"
    assert em.block_state("a") is BlockState.FAILED and handler.got == []
    errors = [e for e in em.health_check()["errors"] if e["error_code"] == "EXEC-015"]
    assert len(errors) == 1 and "$.fills[0].obj: Fill has no faithful JSON form" in \
        errors[0]["error_message"]
    venue.reply = None
    em.update_state(T(1), "manual")
    assert em.block_state("b") is BlockState.SUCCESS


_NESTED_REPLY: Any = {101: 1.0, Asset.ETH: ("a", 2), "big": 2 ** 70, "dec": Decimal("1.10"),
                      "when": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
                      "ts": pd.Timestamp("2025-01-02", tz="UTC"),
                      "__decimal__": "not a tag"}


@pytest.mark.parametrize("crash", [False, True], ids=["no crash", "crash and recover"])
def test_the_handler_receives_the_same_deltas_crash_or_no_crash(tmp_path: Path,
                                                               crash: bool) -> None:
    """Int keys, Enum keys, tuples, big ints, Decimals, timestamps and a key that looks
    like a journal tag reach the handler in one canonical form, whether or not the process
    crashed between the venue call and the hand-off. (A NaN or an infinity never reaches
    it: test_money_edges.py.)"""
    expected = canonical(_NESTED_REPLY).value
    assert expected == {101: 1.0, "ETH": ["a", 2], "big": 2 ** 70,
                        "dec": Decimal("1.10"), "when": "2025-01-01T00:00:00+00:00",
                        "ts": "2025-01-02T00:00:00+00:00", "__decimal__": "not a tag"}
    venue, handler = Recorder(_NESTED_REPLY), Handler()

    class Crashing(Handler):
        def update_state(self, ts: Any, source: str, deltas: Any) -> None:
            raise SystemExit("the process dies before the hand-off")

    with EventLogger(tmp_path, mode="live") as log:
        em = manager(venue, Crashing() if crash else handler, log=log)
        if crash:
            with pytest.raises(SystemExit):
                em.update_state(T(0), "strategy_manager", [block("a")])
        else:
            em.update_state(T(0), "strategy_manager", [block("a")])
    if crash:
        with EventLogger(tmp_path, mode="live") as log:
            em = manager(venue, handler, log=log)
            em.recover(tmp_path)
            em.update_state(T(1), "strategy_manager")
    assert len(handler.got) == 1 and same(handler.got[0], expected)


def test_a_queued_block_reaches_the_venue_the_same_after_a_restart(tmp_path: Path) -> None:
    """The venue receives the same canonical block before and after a restart: datetimes
    as the same ISO text, a 2**70 amount as the same int, tuples as lists."""
    payload = {**block("a"), "instructions": [{
        "token": "ETH", "amount": 2 ** 70, "when": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        "legs": ({"venue": "spot"},), "px": np.float64(1.25)}]}
    direct = Recorder()
    manager(direct, Handler()).update_state(T(0), "strategy_manager", [payload])
    with EventLogger(tmp_path, mode="live") as log:
        manager(Recorder(), Handler(), log=log).execute_instruction_blocks(T(0), [payload])
    restarted = Recorder()
    with EventLogger(tmp_path, mode="live") as log:
        em = manager(restarted, Handler(), log=log)
        em.recover(tmp_path)
        em.update_state(T(1), "strategy_manager")
    assert restarted.blocks == direct.blocks
    instr = restarted.blocks[0].instructions[0]
    assert instr["amount"] == 2 ** 70 and instr["when"] == "2025-01-01T00:00:00+00:00"
    assert instr["legs"] == [{"venue": "spot"}] and type(instr["px"]) is float


def test_instructions_are_deep_copied_at_acceptance() -> None:
    """A caller reusing a nested dict after submitting changes nothing the venue gets."""
    legs = [{"venue": "spot", "qty": 1}]
    payload = {**block("a"), "instructions": [{"token": "ETH", "amount": 1.0, "legs": legs}]}
    venue = Recorder()
    em = manager(venue, Handler())
    em.execute_instruction_blocks(T(0), [payload])
    legs[0]["qty"] = 999
    legs.append({"venue": "perp"})
    payload["instructions"][0]["amount"] = 50.0
    em.update_state(T(1), "strategy_manager")
    assert venue.blocks[0].instructions[0] == {"token": "ETH", "amount": 1.0,
                                               "legs": [{"venue": "spot", "qty": 1}]}


# ------------------------------------------------------------------------ refusals


def _cycle() -> dict[str, Any]:
    d: dict[str, Any] = {"token": "ETH", "amount": 1.0}
    d["self"] = d
    return d


def _deep() -> dict[str, Any]:
    d: dict[str, Any] = {"x": 1}
    for _ in range(MAX_DEPTH + 2):
        d = {"x": d}
    return {"token": "ETH", "amount": 1.0, "nest": d}


@pytest.mark.parametrize(("instruction", "path", "why"), [
    (_cycle(), r"instructions\[0\]\.self", "a cycle"),
    (_deep(), r"instructions\[0\]\.nest", f"nested deeper than {MAX_DEPTH}"),
    ({"token": "ETH", "amount": 1.0, "\udc80": 1}, r"instructions\[0\]", "lone surrogate"),
    ({"token": "ETH", "amount": 1.0, "note": "a\ud800b"}, r"instructions\[0\]\.note",
     "lone surrogate"),
    ({"token": "ETH", "amount": 1.0, "raw": b"\x00"}, r"instructions\[0\]\.raw", "bytes"),
    ({"token": "ETH", "amount": 1.0, "tags": {"a"}}, r"instructions\[0\]\.tags", "a set"),
    ({"token": "ETH", "amount": 1.0, "at": pd.NaT}, r"instructions\[0\]\.at", "NaT"),
    ({"token": "ETH", "amount": 1.0, "obj": object()}, r"instructions\[0\]\.obj",
     "no faithful JSON form"),
    ({"token": "ETH", "amount": 1.0, "m": {1.5: "x"}}, r"instructions\[0\]\.m",
     "a key must be a string or an integer"),
])
def test_values_the_journal_cannot_hold_refuse_the_batch(instruction: dict[str, Any],
                                                         path: str, why: str) -> None:
    """What the journal could not hold exactly is refused in the batch's InvalidBlockError,
    with block, path and reason, never later as a journal failure; nothing is queued."""
    r = rig()
    with pytest.raises(InvalidBlockError, match=rf"block 'a' @ \$\[0\]\.{path}.*{why}"):
        r.em.execute_instruction_blocks(T(0), [{**block("a"), "instructions": [instruction]}])
    assert r.em.queued_block_ids == () and not r.em.halted
    assert r.log.of_type("block_accepted") == []


@pytest.mark.parametrize(("ts", "why"), [
    (pd.NaT, "NaT"),
    ("=1+1", "not an ISO 8601 time with an offset"),
    ("2025-10-01T00:00:00", "an ISO 8601 time without an offset"),
    (dt.datetime(2025, 10, 1), "naive datetime"),
    (pd.Timestamp("2025-10-01"), "naive datetime"),
    (1_759_276_800_000, "milliseconds or nanoseconds"),
    (1_759_276_800_000_000_000, "milliseconds or nanoseconds"),
    (float("nan"), "epoch seconds outside"),
    (None, "NoneType"),
    (np.datetime64("2025-10-01"), "datetime64"),
])
def test_timestamps_that_are_not_times_are_refused_before_anything_changes(ts: Any,
                                                                          why: str) -> None:
    """NaT, arbitrary strings, naive datetimes, epoch ms/ns and other objects are refused
    with a clear error; nothing is queued or journaled."""
    r = rig()
    before = len(r.log.events)
    for call in (lambda: r.em.update_state(ts, "strategy_manager", [block("a")]),
                 lambda: r.em.execute_instruction_blocks(ts, [block("a")]),
                 lambda: r.em.cancel(ts, reason="x")):
        with pytest.raises(InvalidArgumentError, match=f"timestamp: .*{why}"):
            call()
    assert len(r.log.events) == before and r.em.queued_block_ids == ()


@pytest.mark.parametrize("ts", [
    dt.datetime(2025, 10, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    pd.Timestamp("2025-10-01T00:00", tz="UTC"), "2025-10-01T00:00Z",
    "2025-10-01T02:00:00+02:00", 1_759_276_800, np.int64(1_759_276_800), 1_759_276_800.0])
def test_accepted_timestamps_are_journaled_in_one_canonical_form(ts: Any) -> None:
    """Aware datetimes, pandas Timestamps, ISO strings with an offset and epoch seconds all
    land in the journal as the same UTC ISO 8601 text."""
    from fsm_exec.boundary.canonical import canonical_timestamp
    assert canonical_timestamp(ts) == "2025-10-01T00:00:00+00:00"


# ------------------------------------------------------------------------ hostile objects


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    __str__ = __repr__


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str exploded")


def test_a_value_whose_repr_raises_is_described_by_its_type() -> None:
    """A bad value whose __repr__ raises still gets a clear refusal naming the field."""
    r = rig()
    with pytest.raises(InvalidBlockError, match=r"priority: must be an int, got Hostile "
                                                r"<Hostile: repr\(\) raised RuntimeError>"):
        r.em.execute_instruction_blocks(T(0), [{**block("a"), "priority": Hostile()}])


@pytest.mark.parametrize("where", ["route", "handler", "query", "risk", "data"])
def test_an_exception_whose_str_raises_never_escapes_raw(where: str) -> None:
    """A collaborator raising an exception whose __str__ raises is mapped to its code
    like any other failure; nothing escapes raw and the handler is called at most once."""
    calls: list[str] = []

    class Venue(Recorder):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            if where in ("route", "query") and not calls:
                calls.append("route")
                raise BadStr
            return super().route_instruction(ts, b)

        def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
            if where == "query":
                raise BadStr
            return super().query_execution(ts, b)

    class BadHandler(Handler):
        def update_state(self, ts: Any, source: str, deltas: Any) -> None:
            calls.append("handoff")
            raise BadStr

    class Data(StaticDataProvider):
        def get_data(self, timestamp: Any) -> dict[str, Any]:
            raise BadStr

    def risk(b: InstructionBlock, market: Any) -> None:
        raise BadStr

    clock = FakeClock()
    em = ExecutionManager({"max_retries": 2, "not_found_confirmations": 1,
                           "not_found_min_age_seconds": 0},
                          Data() if where == "data" else StaticDataProvider(), "live",
                          BadHandler() if where == "handler" else Handler(), Venue(),
                          Reconciled(), clock=clock, sleep=clock.sleep,
                          risk_checks=[risk] if where == "risk" else [])
    status = em.update_state(T(0), "strategy_manager", [block("a")])
    codes = {e["error_code"] for e in em.health_check()["errors"]}
    expected = {"route": None, "handler": "EXEC-008", "query": "EXEC-007", "risk": "EXEC-006",
                "data": "EXEC-005"}[where]
    if expected is None:
        assert em.block_state("a") is BlockState.SUCCESS
    else:
        assert expected in codes and em.block_state("a") is BlockState.FAILED
    assert calls.count("handoff") <= 1 and not em.interrupted
    assert status["halted"] == (expected in ("EXEC-007", "EXEC-008"))


def test_a_reconciliation_component_that_raises_is_its_own_failure() -> None:
    """reconciliation_status raising is EXEC-014: the block fails, the manager halts, an
    error is journaled and health says unhealthy; no raw exception."""
    class Broken:
        @property
        def reconciliation_status(self) -> str:
            raise ConnectionError("recon service down")

    r = rig()
    em = manager(Recorder(), Handler(), rc=Broken(), log=r.log)
    status = em.update_state(T(0), "strategy_manager", [block("a")])
    assert status["halted"] and status["halt_reason"] == "EXEC-014"
    assert status["status"] == "unhealthy" and em.block_state("a") is BlockState.FAILED
    assert [e.data["error_code"] for e in r.log.of_type("error")] == ["EXEC-014"]


# ------------------------------------------------------------------------ secrets


def test_a_long_secret_is_redacted_before_the_value_is_shortened() -> None:
    """A secret inside a refused value never shows, not even its first characters."""
    secret = "sk-" + "A" * 60
    clock = FakeClock()
    em = ExecutionManager({"api_key": secret}, StaticDataProvider(), "live", Handler(),
                          Recorder(), Reconciled(), clock=clock, sleep=clock.sleep)
    with pytest.raises(InvalidBlockError) as info:
        em.execute_instruction_blocks(T(0), [{**block("a"), "priority": secret + "-x"}])
    assert "sk-AAA" not in str(info.value) and "[REDACTED]" in str(info.value)


def test_deltas_echoing_a_secret_are_redacted_for_the_handler_and_the_journal() -> None:
    """A raw exchange response echoing the API key (in its request headers, even
    JSON-escaped) is redacted before it is journaled or handed off: both see the same."""
    reply = {"fill": 1.0, "request": {"headers": {"X-API-KEY": CANARY}},
             "raw": f'{{"key": "{CANARY}"}}'}
    r = rig()
    handler = Handler()
    clock = FakeClock()
    em = ExecutionManager({"api_key": CANARY, "not_found_confirmations": 1}, StaticDataProvider(),
                          "live", handler, Recorder(reply), Reconciled(), event_logger=r.log,
                          clock=clock, sleep=clock.sleep)
    em.update_state(T(0), "strategy_manager", [block("a")])
    assert CANARY not in repr(handler.got) and CANARY not in repr(r.log.events)
    journaled = [e.data["deltas"] for e in r.log.of_type("block_transition")
                 if "deltas" in e.data]
    assert journaled == handler.got
    assert handler.got[0]["request"]["headers"]["X-API-KEY"] == "[REDACTED]"


def test_a_component_error_pickles_and_reprs_without_the_secret() -> None:
    """The original exception is kept scrubbed: pickling or printing the error carries
    neither the secret nor the collaborator's exception object."""
    class Leaky(Recorder):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            raise ConnectionError(f"401 for {CANARY}", {"token": CANARY})

    clock = FakeClock()
    em = ExecutionManager({"api_key": CANARY}, StaticDataProvider(), "backtest", Handler(),
                          Leaky(), Reconciled(), clock=clock, sleep=clock.sleep)
    with pytest.raises(ComponentError) as info:
        em.update_state(T(0), "strategy_manager", [block("a")])
    err = info.value
    for text in (str(err), repr(err), repr(err.original_exception)):
        assert CANARY not in text
    assert CANARY.encode() not in pickle.dumps(err)
    again = pickle.loads(pickle.dumps(err))
    assert again.original_exception.type_name == "ConnectionError"
    assert "[REDACTED]" in again.original_exception.message


def test_ordinary_config_values_stay_readable() -> None:
    """Only secret-named keys are secrets: venue=binance reads venue=binance."""
    em = ExecutionManager({"venue": "binance-main", "api_key": CANARY},
                          StaticDataProvider({}), "live", Handler(), Recorder(), Reconciled())
    with pytest.raises(InvalidBlockError) as info:
        em.execute_instruction_blocks(T(0), [{**block("a"), "action": ["binance-main"]}])
    assert "binance-main" in str(info.value)


# ------------------------------------------------------------------------ properties

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 80), max_value=2 ** 80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.integers(-1000, 1000).map(np.int64), st.floats(-1e6, 1e6).map(np.float64),
    st.booleans().map(np.bool_), st.sampled_from(list(Asset)),
    st.datetimes(timezones=st.just(dt.UTC)),
)
_keys = st.one_of(st.text(max_size=4), st.integers(-5, 5), st.sampled_from(list(Asset)))
_payloads = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner, inner),
        st.dictionaries(_keys, inner, max_size=3),
        st.lists(st.floats(-1e3, 1e3), max_size=3).map(np.array),
        st.dictionaries(st.text(min_size=1, max_size=3), st.floats(-1e3, 1e3),
                        max_size=3).map(pd.Series)),
    max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(_payloads)
def test_canonical_form_round_trips_the_journal_exactly(payload: Any) -> None:
    """Whatever converts, the journal's form reads back to exactly the canonical form."""
    conv = canonical(payload)
    if conv.problems:
        return
    import orjson
    back = decode(orjson.loads(orjson.dumps(to_wire(conv.value))))
    assert same(back, conv.value)
    assert same(canonical(conv.value).value, conv.value)  # canonical is a fixed point


@settings(max_examples=25, deadline=None)
@given(reply=_payloads)
def test_handler_and_venue_see_identical_data_with_and_without_a_crash(
        tmp_path_factory: pytest.TempPathFactory, reply: Any) -> None:
    """For generated nested replies (numpy and pandas values included), the position
    handler receives identical canonical data whether or not a crash-and-recover happened
    between the venue call and the hand-off."""
    if canonical(reply).problems or canonical(reply).value is None:
        return
    reply = {"r": reply}  # a venue reply of None means "no deltas"
    direct = Handler()
    manager(Recorder(reply), direct).update_state(T(0), "strategy_manager", [block("a")])

    class Dies(Handler):
        def update_state(self, ts: Any, source: str, deltas: Any) -> None:
            raise SystemExit

    path = tmp_path_factory.mktemp("j")
    venue = Recorder(reply)
    with EventLogger(path, mode="live") as log, pytest.raises(SystemExit):
        manager(venue, Dies(), log=log).update_state(T(0), "strategy_manager",
                                                     [block("a")])
    after = Handler()
    with EventLogger(path, mode="live") as log:
        em = manager(venue, after, log=log)
        em.recover(path)
        em.update_state(T(1), "strategy_manager")
    assert len(after.got) == 1 and same(after.got[0], direct.got[0])
    assert len(venue.blocks) == 1


@settings(max_examples=25, deadline=None)
@given(payload=_payloads)
def test_the_venue_sees_the_same_block_with_and_without_restarts(
        tmp_path_factory: pytest.TempPathFactory, payload: Any) -> None:
    """For generated instruction payloads (numpy and pandas values included), the venue
    receives the identical block whether it runs at once, or after the process stopped
    once the block was accepted and two restarts read it back (the second from the
    checkpoint that carries the queue)."""
    b = block("a")
    b["instructions"][0]["extra"] = payload
    if canonical(b, amounts=True).problems:
        return
    direct = Recorder()
    manager(direct, Handler()).update_state(T(0), "strategy_manager", [b])
    path = tmp_path_factory.mktemp("j")
    with EventLogger(path, mode="live") as log:
        manager(Recorder(), Handler(), log=log).execute_instruction_blocks(T(0), [b])
    for _ in range(2):  # stopped after acceptance; restarted, stopped again
        with EventLogger(path, mode="live") as log:
            manager(Recorder(), Handler(), log=log).recover(path)
    venue = Recorder()
    with EventLogger(path, mode="live") as log:
        em = manager(venue, Handler(), log=log)
        em.recover(path)
        em.update_state(T(1), "strategy_manager")
    assert len(venue.blocks) == len(direct.blocks) == 1
    got, want = venue.blocks[0], direct.blocks[0]
    assert (got.block_id, got.action, got.priority) == (want.block_id, want.action,
                                                         want.priority)
    assert same(list(got.instructions), list(want.instructions))


def test_a_refused_batch_changes_nothing_in_the_journal(tmp_path: Path) -> None:
    """A refused batch writes only its error record; the journal replays to the same
    queue as before."""
    with EventLogger(tmp_path, mode="live") as log:
        em = manager(Recorder(), Handler(), log=log)
        em.execute_instruction_blocks(T(0), [block("a")])
        with pytest.raises(InvalidBlockError):
            em.execute_instruction_blocks(T(1), [block("b"), {**block("c"), "priority": "x"}])
        assert em.queued_block_ids == ("a",)
    kinds = [r.event_type for r in read_journal(tmp_path)]
    assert kinds.count("block_accepted") == 1 and kinds[-1] == "error"


_EDGE = dt.timezone(dt.timedelta(hours=-1))
_EAST = dt.timezone(dt.timedelta(hours=1))


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                dt.datetime.max.replace(tzinfo=_EDGE),
                                dt.datetime.min.replace(tzinfo=_EAST)])
@pytest.mark.parametrize("mode", ["backtest", "live"])
@pytest.mark.parametrize("call", ["update_state", "execute_instruction_blocks", "cancel"])
def test_timestamps_past_the_range_of_utc_are_invalid_arguments(
        ts: Any, mode: str, call: str) -> None:
    """A timestamp whose offset takes it past the years a datetime holds in UTC is refused
    by every entry point with InvalidArgumentError (EXEC-011) naming why, never a bare
    OverflowError; nothing is journaled."""
    r = rig(mode)
    before = list(r.log.events)
    calls: dict[str, Callable[[], object]] = {
        "update_state": lambda: r.em.update_state(ts, "strategy_manager", [block("a")]),
        "execute_instruction_blocks": lambda: r.em.execute_instruction_blocks(
            ts, [block("a")]),
        "cancel": lambda: r.em.cancel(ts, ["a"], reason="edge")}
    entry = calls[call]
    with pytest.raises(InvalidArgumentError, match="outside the years 1-9999") as refused:
        entry()
    assert refused.value.error_code == "EXEC-011"
    assert r.log.events == before

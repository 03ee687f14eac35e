"""Issue 26 item 7: a backtest run's fixed cost. No timings here (benchmarks/setup_close.py
measures them): these pin what makes a run cheap, and that the shortcuts change nothing a
user can see: no fsync in a backtest run, no file read to start a new run's journal, a
config mapping validated once, a closed manager's Machine reused as good as new, naive
times in UTC written as the general path writes them."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import os
import zoneinfo
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_exec import (
    BlockState,
    ComponentError,
    ConfigError,
    EventLogger,
    ExecutionManager,
    IllegalTransitionError,
    backtest_run,
    check_journal,
    read_journal,
)
from fsm_exec.boundary import protocols
from fsm_exec.boundary.canonical import assume_zone, canonical_timestamp
from fsm_exec.boundary.config import _RESOLVED, resolve_config
from fsm_exec.journal import files
from fsm_exec.manager import wiring
from fsm_exec.sim.venues import (
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, blocks


def manager(log: Any = None, config: Any = None, **kwargs: Any) -> ExecutionManager:
    rc = SimReconciliation(None)
    return ExecutionManager({} if config is None else config, StaticDataProvider(),
                            "backtest", SimPositionHandler(rc), SimVenue(), rc,
                            event_logger=log, **kwargs)


def test_a_backtest_run_never_fsyncs(tmp_path: Path, monkeypatch: Any) -> None:
    """backtest_run, a manager, blocks and close: no fsync or fdatasync at all."""
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(fd))
    for i in range(3):
        with manager(backtest_run(tmp_path, run_id=f"r{i}")) as em:
            em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert calls == []
    assert check_journal(tmp_path / "r2").blocks_executed == 2


def test_a_new_runs_journal_starts_without_reading_a_file(tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    """A run's directory is new: its journals are opened, written and closed without a
    file being read back (no first line, no last seq, no day, no pruning pass), and
    no journal file is made before close (the checkpoint is buffered, the file made at
    the first flush)."""
    reads: list[Path] = []
    real = files.open_regular

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(files, "open_regular", counting)
    log = backtest_run(tmp_path, run_id="r")
    em = manager(log)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [".lock"]
    em.update_state(T(0), "strategy_manager", blocks("a"))
    em.close()
    assert reads == []
    kinds = [r.event_type for r in read_journal(tmp_path / "r")]
    assert kinds[:2] == ["checkpoint", "component_initialization"]
    assert check_journal(tmp_path / "r").blocks_executed == 1


def test_a_journal_with_history_is_still_read_and_recovered(tmp_path: Path) -> None:
    """The shortcuts are for new files only: a directory holding a run is read as before
    (a new manager must recover it), and a rotated-to checkpoint still starts a new file."""
    with manager(EventLogger(tmp_path)) as em:
        em.update_state(T(0), "strategy_manager", blocks("a"))
    log = EventLogger(tmp_path)
    assert log.has_history("ExecutionManager")
    em = manager(log)
    report = em.recover()
    assert report.blocks_executed == 1
    em.update_state(T(1), "strategy_manager", blocks("b"))
    em.close()
    assert len(files.journal_files(tmp_path)) == 2  # recovery's checkpoint: a new file
    assert check_journal(tmp_path).blocks_executed == 2


def test_has_history_on_a_fresh_journal_counts_what_was_written(tmp_path: Path) -> None:
    """A journal opened on no file has history once something is written to it (buffered
    or not), and a closed logger still answers from the files."""
    log = EventLogger(tmp_path)
    assert not log.has_history("Other")
    log.log_event(T(0), "x", "Other", {})
    assert log.has_history("Other")
    log.close()
    assert log.has_history("Other")
    assert not log.has_history("Third")


def test_a_config_mapping_is_validated_once_and_secrets_are_not_kept() -> None:
    """The same mapping of plain values gives the same (frozen) config; a value of
    another type is validated anew (True and 2.0 are not 2); other keys' values, secrets among
    them, are not part of what is kept; a typo is refused every time."""
    first = resolve_config({"max_retries": 2, "api_key": "s3cret-value-1"})
    assert resolve_config({"max_retries": 2, "api_key": "another-secret"}) is first
    for other_type in (True, 2.0):  # equal to 2, and refused: never the cached config
        with pytest.raises(ConfigError, match="max_retries: must be an int"):
            resolve_config({"max_retries": other_type})
    for _ in range(2):
        with pytest.raises(ConfigError, match="max_retries"):
            resolve_config({"max_retires": 2})
    assert all("s3cret" not in repr(k) for k in _RESOLVED)
    assert first.digest() == resolve_config({"max_retries": 2}).digest()


def test_a_closed_managers_machine_is_reused_as_good_as_new(tmp_path: Path) -> None:
    """A closed manager with nothing queued or in flight leaves its Machine to the next;
    the next runs blocks through it and journals them, and the closed one's views are
    unchanged."""
    first = manager(EventLogger(tmp_path / "a"))
    first.update_state(T(0), "strategy_manager", blocks("x", "y"))
    machine = first._lc
    first.close()
    assert machine._machine.on_move is None  # idle, it holds on to no manager
    second = manager(EventLogger(tmp_path / "b"))
    assert second._lc is machine and second._lc.block_id is None
    assert second._lc.state is BlockState.SUCCESS
    second.update_state(T(0), "strategy_manager", blocks("x"))
    second.close()
    assert first.block_state("y") is BlockState.SUCCESS
    assert first.get_execution_status()["blocks_executed"] == 2
    assert check_journal(tmp_path / "b").blocks_executed == 1
    assert [r.data["dest"] for r in read_journal(tmp_path / "b")
            if r.event_type == "block_transition"] == ["routing", "pending_reconciliation",
                                                       "success"]


def test_a_machine_with_work_left_is_not_given_away(tmp_path: Path) -> None:
    """A manager closed with blocks queued keeps its Machine (its views read it)."""
    rc = SimReconciliation(None)
    em = ExecutionManager({}, StaticDataProvider(), "backtest",
                          SimPositionHandler(rc, [True]), SimVenue(), rc)
    with pytest.raises(ComponentError):
        em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    idle = list(wiring._IDLE)
    em.close()
    assert idle == wiring._IDLE
    assert em.block_state("b") is BlockState.QUEUED
    busy = manager()._lc
    busy.load("z")
    with pytest.raises(IllegalTransitionError):
        busy.rebind(None)


_UTC = [dt.UTC, zoneinfo.ZoneInfo("UTC"), zoneinfo.ZoneInfo("Etc/UTC")]


@given(st.datetimes(min_value=dt.datetime(1678, 1, 1), max_value=dt.datetime(2261, 12, 31)),
       st.integers(0, 999), st.sampled_from(_UTC), st.booleans())
def test_a_naive_time_read_in_utc_is_written_as_the_general_path_writes_it(
        t: dt.datetime, nanos: int, zone: dt.tzinfo, as_pandas: bool) -> None:
    """For naive datetimes and pandas Timestamps (nanoseconds too), the manager's UTC
    shortcut gives exactly the general path's stamp."""
    ts: Any = pd.Timestamp(t) + pd.Timedelta(nanos, "ns") if as_pandas else t
    em = manager(assume_timezone=zone)
    assert em._stamp(ts) == canonical_timestamp(assume_zone(ts, zone))


class _Handler:
    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any,
                     hand_off_key: Any = None) -> None:
        pass


class _Plain:
    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
        pass


class _FirstNamed:
    # Bound, its first parameter is the instance: no keyword; unbound, it names it.
    def update_state(hand_off_key, timestamp: Any, trigger_source: str,
                     deltas: Any) -> None:
        pass


def _keyword_only(timestamp: Any, trigger_source: str, deltas: Any, *,
                  hand_off_key: Any = None) -> None:
    pass


def _kwargs(timestamp: Any, trigger_source: str, deltas: Any, **kw: Any) -> None:
    pass


def _wrapped(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)
    return wrapper


def _callables() -> list[Any]:
    class Callable_:
        def __call__(self, timestamp: Any, trigger_source: str, deltas: Any,
                     hand_off_key: Any = None) -> None:
            pass

    return [_Handler().update_state, _Plain().update_state, _FirstNamed().update_state,
            _FirstNamed.update_state, _Handler.update_state, _keyword_only, _kwargs,
            _wrapped(_keyword_only), _wrapped(_Plain().update_state), Callable_(),
            functools.partial(_keyword_only, 0), print, lambda t, s, d, hand_off_key: None]


@given(st.permutations(range(13)))
def test_whether_a_handler_takes_the_key_is_its_signatures_answer(order: list[int]) -> None:
    """takes_hand_off_key answers once per function's code, bound or not: the same as
    inspect.signature for every kind of callable, asked in any order (a function bound and
    unbound, wrappers, callables, builtins); a function given a __signature__ later is
    asked anew."""
    protocols._KEYED.clear()
    callables = _callables()
    for i in order:
        fn = callables[i]
        assert protocols.takes_hand_off_key(fn) is protocols._names_hand_off_key(fn), fn
    assert protocols.takes_hand_off_key(_FirstNamed.update_state)
    assert not protocols.takes_hand_off_key(_FirstNamed().update_state)

    def later(timestamp: Any, trigger_source: str, deltas: Any) -> None:
        pass

    assert not protocols.takes_hand_off_key(later)
    later.__signature__ = inspect.signature(_keyword_only)  # type: ignore[attr-defined]
    assert protocols.takes_hand_off_key(later)


def test_the_cache_of_hand_off_signatures_is_bounded() -> None:
    """Functions made at run time (their own code each) never grow it past its bound."""
    for i in range(protocols._KEYED_KEPT + 10):
        space: dict[str, Any] = {}
        exec(f"def f{i}(t, s, d, hand_off_key=None): pass", space)
        assert protocols.takes_hand_off_key(space[f"f{i}"])
        assert len(protocols._KEYED) <= protocols._KEYED_KEPT


def test_a_reconciliation_status_property_is_found_without_being_read() -> None:
    """On the class (a property that would raise if read, an attribute) or on the instance:
    the status is found at construction, never read."""
    class Raising:
        @property
        def reconciliation_status(self) -> str:
            raise AssertionError("read at construction")

    class Inherited(Raising):
        pass

    class OnInstance:
        def __init__(self) -> None:
            self.reconciliation_status = "success"

    for rc in (Raising(), Inherited(), OnInstance()):
        ExecutionManager({}, StaticDataProvider(), "backtest",
                         SimPositionHandler(SimReconciliation(None)), SimVenue(), rc)

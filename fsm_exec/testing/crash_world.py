"""The outside world of a crash-points run and the kill: the journal that traces its
records and their durability and kills the process at a crash point, and the user's
collaborators wrapped with the kit's faults (they outlive the crash)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from fsm_exec.boundary.protocols import HandOffKey, takes_hand_off_key
from fsm_exec.core.errors import COMPONENT
from fsm_exec.journal.handles import Journal
from fsm_exec.journal.writer import EventLogger
from fsm_exec.manager.manager import ExecutionManager
from fsm_exec.sim.venues import (
    FAKE_EPOCH,
    FakeClock,
    FaultPlan,
    FaultyPositionHandler,
    FaultyReconciliation,
    FaultyVenue,
    _Delegating,
)
from fsm_exec.testing.crash_report import CrashPoint

_REQUIRED = ("data_provider", "position_update_handler", "execution_interface_manager",
             "reconciliation_component")

Collaborators = Mapping[str, Any]
MakeCollaborators = Callable[[], Collaborators]
Check = Callable[[Collaborators], object]
Batches = Sequence[Sequence[Mapping[str, Any]]]

if TYPE_CHECKING:
    from fsm_exec.core.lifecycles import Lifecycle


class _Crash(BaseException):
    """The simulated kill: a BaseException, so nothing in the manager takes it for an error
    of its own (it retires the manager, as any interrupt does)."""


@attrs.frozen
class _Rec:
    label: str
    block_id: str | None = None
    deltas: bool = False

    @classmethod
    def of(cls, event_type: str, data: Mapping[str, Any]) -> _Rec:
        b = data.get("block_id")
        block_id = b if isinstance(b, str) else None
        if event_type == "block_transition":
            return cls(f"{block_id} {data.get('source')}->{data.get('dest')}", block_id,
                       "deltas" in data)
        return cls(f"{event_type} {block_id}" if block_id else event_type, block_id)


class _Trace:
    """The records one life of the manager wrote, and how many of them are durable; kills
    the process at its crash point."""

    def __init__(self, *, live: bool, kill: CrashPoint | None = None,
                 expected: Sequence[str] | None = None) -> None:
        self.live, self.kill, self.expected = live, kill, expected
        self.records: list[_Rec] = []
        self.ends: list[int] = []  # the file offset after each record written
        self.pending = False  # a record being written
        self.durable = 0
        self.durable_bytes = 0
        self.marks: list[int] = []  # the durable count after each durability event
        self.diverged: str | None = None
        self.killed = False

    def writing(self, rec: _Rec) -> None:
        k = len(self.records) + 1
        if self.expected is not None and self.diverged is None:
            was = self.expected[k - 1] if k <= len(self.expected) else "nothing"
            if was != rec.label:
                self.diverged = (f"record {k} was {was!r} in the first run and {rec.label!r} "
                                 f"in this one")
        if self._due(k, "before"):
            raise _Crash
        self.records.append(rec)
        self.pending = True

    def written(self, size: int) -> None:
        self.ends.append(size)
        self.pending = False
        if not self.live:  # backtest: every record counts as durable once written
            self._durable_to(len(self.ends), size)

    def synced(self, size: int) -> None:
        last = self.ends[-1] if self.ends else 0
        self._durable_to(len(self.ends) + (self.pending and size > last), size)

    def _durable_to(self, n: int, size: int) -> None:
        if n <= self.durable:
            return
        before, self.durable, self.durable_bytes = self.durable, n, size
        self.marks.append(n)
        kill = self.kill
        if (kill is not None and kill.when == "after" and before < kill.record <= n
                and self.diverged is None):
            self.killed = True
            raise _Crash

    def _due(self, k: int, when: str) -> bool:
        kill = self.kill
        due = (kill is not None and kill.when == when and kill.record == k
               and self.diverged is None)
        self.killed = self.killed or due
        return due


def _today() -> dt.date:
    return FAKE_EPOCH.date()  # one day for the whole run: no rotation at midnight


class _CrashJournal(EventLogger):
    """An EventLogger that traces its records and their durability and kills the process at
    the trace's crash point. Unbuffered (every record reaches the file when written), and
    its fsync is the durability point without the disk's cost: the crash itself truncates
    the file to the last fsync, as a power cut would."""

    def __init__(self, log_dir: Path, mode: str, trace: _Trace) -> None:
        super().__init__(log_dir, mode, today=_today, buffer_bytes=0, retention_days=None)
        self.trace = trace

    def _size(self) -> int:
        return os.path.getsize(self.path_for(COMPONENT))

    # Its one writer is the manager, and it writes one component's journal only.
    def log_event(self, timestamp: Any, event_type: str, component: str,
                  data: dict[str, Any], *, sync: bool = True,
                  checked: bool = False) -> None:
        self.trace.writing(_Rec.of(event_type, data))
        super().log_event(timestamp, event_type, component, data, sync=sync,
                          checked=checked)
        self.trace.written(self._size())

    def checkpoint(self, component: str, data: dict[str, Any], *, timestamp: Any = None,
                   new_file: bool = True) -> int:
        self.trace.writing(_Rec("checkpoint"))
        seq = super().checkpoint(component, data, timestamp=timestamp, new_file=new_file)
        self.trace.written(self._size())
        return seq

    def _fsync(self, j: Journal) -> None:
        j.unsynced = False  # durable from here on: a crash keeps every byte written so far
        if self.mode == "live":
            self.trace.synced(os.path.getsize(j.path))


class _HandOffs(_Delegating):
    """Notes each hand-off the position handler took: (life, block, its deltas record in
    that life's trace; -1 when it has none there, as for a block recovered in doubt)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.trace: _Trace | None = None
        self.life = 1
        self.taken: list[tuple[int, str | None, int]] = []
        self._keyed = takes_hand_off_key(inner.update_state)

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any,
                     hand_off_key: HandOffKey | None = None) -> Any:
        if self._keyed:  # the hand-off key reaches a handler that takes it
            result = self.inner.update_state(timestamp, trigger_source, deltas,
                                             hand_off_key=hand_off_key)
        else:
            result = self.inner.update_state(timestamp, trigger_source, deltas)
        trace = self.trace
        if trace is not None:
            at = next((i for i in range(len(trace.records) - 1, -1, -1)
                       if trace.records[i].deltas), -1)
            self.taken.append((self.life, trace.records[at].block_id if at >= 0 else None,
                               at))
        return result

    def doubled(self, in_doubt: str | None) -> tuple[str, ...]:
        """The blocks whose deltas the handler took before the kill and again after the
        restart, in the order of the first hand-off. A hand-off after the restart without
        a deltas record of its own there is the recovered block's, ``in_doubt``."""
        again = {in_doubt if b is None else b for life, b, _ in self.taken if life == 2}
        out: list[str] = []
        for life, b, _ in self.taken:
            if life == 1 and b is not None and b in again and b not in out:
                out.append(b)
        return tuple(out)


class _World:
    """One run's outside world: your collaborators, the kit's fault wrappers around them
    and the fake clock. It outlives the crash."""

    def __init__(self, make: MakeCollaborators, faults: FaultPlan | None,
                 hang_seconds: float) -> None:
        given = make()
        if not isinstance(given, Mapping):
            raise TypeError(f"make_collaborators() must return a mapping with "
                            f"{', '.join(_REQUIRED)}; got {type(given).__name__}")
        missing = [k for k in _REQUIRED if k not in given]
        if missing:
            raise TypeError(f"make_collaborators() is missing {', '.join(missing)}")
        self.given: Collaborators = given
        self.clock = FakeClock()
        #: Every fault injected, the kill included, in order (one line of prose each).
        self.injections: list[str] = []
        self.venue = FaultyVenue(given["execution_interface_manager"], clock=self.clock,
                                 hang_seconds=hang_seconds, injections=self.injections)
        self.reconciliation = FaultyReconciliation(given["reconciliation_component"],
                                                   self.clock, injections=self.injections)
        self.positions = _HandOffs(FaultyPositionHandler(
            given["position_update_handler"], reconciliation=self.reconciliation,
            injections=self.injections))
        if faults is not None:
            self.venue.faults.extend(faults.venue)
            self.reconciliation.script.extend(faults.reconciliation)
            self.positions.inner.failures.extend(faults.positions)

    def manager(self, config: Mapping[str, Any], mode: str, journal: EventLogger,
                lifecycle: Lifecycle | None = None) -> ExecutionManager:
        return ExecutionManager(dict(config), self.given["data_provider"], mode,
                                self.positions, self.venue, self.reconciliation,
                                event_logger=journal, clock=self.clock, sleep=self.clock.sleep,
                                lifecycle=lifecycle)


"""What differs between the two modes, named once: a policy object per mode.

The manager and its driver ask the policy (``policy.fail_fast``, ``policy.journal_hand_offs``
...) instead of testing the mode; a new mode is a new policy, not a new branch everywhere.
"""

from __future__ import annotations

import attrs

from fsm_exec.drivers.backtest import BacktestDriver
from fsm_exec.drivers.base import Driver
from fsm_exec.drivers.live import LiveDriver


@attrs.frozen
class ModePolicy:
    """How one execution mode runs a block."""

    #: ``backtest`` or ``live``.
    mode: str
    #: The driver of the block in flight.
    driver: type[Driver]
    #: A block's failure raises from ``update_state`` and leaves the queue waiting (fail
    #: fast); otherwise the manager records it and goes on (halting when positions are in
    #: doubt).
    fail_fast: bool
    #: Write ``positions_updated`` once the position handler took the deltas: what crash
    #: recovery needs to never hand them over twice. A backtest is rerun instead.
    journal_hand_offs: bool
    #: The journal must make each record durable before the manager acts on it (an
    #: ``EventLogger`` in live mode: fsynced).
    durable_journal: bool
    #: Every call on a halted manager raises ``ManagerHaltedError`` naming the halt (but
    #: ``update_state(ts, 'manual')``, the resume, and ``cancel``, the operator's levers):
    #: a halt caught once cannot be ignored. Otherwise a halted manager still queues
    #: batches and reports ``halted: True`` in its status.
    halt_raises: bool
    #: Each record carries the time of the step it records: the call's timestamp advanced
    #: by the injected clock's time since the call began (routing, retries and
    #: reconciliation show how long they took). Otherwise every record of a call carries
    #: the call's timestamp (a backtest's: the strategy's own time).
    step_times: bool


BACKTEST = ModePolicy("backtest", BacktestDriver, fail_fast=True, journal_hand_offs=False,
                      durable_journal=False, halt_raises=True, step_times=False)
LIVE = ModePolicy("live", LiveDriver, fail_fast=False, journal_hand_offs=True,
                  durable_journal=True, halt_raises=False, step_times=True)
#: The policy of each mode, by name.
POLICIES: dict[str, ModePolicy] = {p.mode: p for p in (BACKTEST, LIVE)}

"""Property-test fuzzing for ExecutionManager and for *your own* adapters, with hypothesis.

Subclass :class:`ExecutionManagerMachine`, return your collaborators from
``collaborators()``, add your own ``@invariant()`` methods, and run it with pytest::

    class MyVenueMachine(ExecutionManagerMachine):
        def collaborators(self):
            self.venue = MyVenueAdapter(sandbox=True)   # your names are yours
            return {"data_provider": MyPrices(), "position_update_handler": MyPositions(),
                    "execution_interface_manager": self.venue,
                    "reconciliation_component": MyReconciliation()}

        @invariant()
        def each_block_fills_at_most_once(self):
            assert all(n <= 1 for n in self.venue.fills_per_block().values())

    TestMyVenue = MyVenueMachine.TestCase

The machine drives a live manager on a fake clock, wraps your collaborators with fault
injection (lost replies, refusals, hangs past the timeout, a venue whose query lags behind
its executions, slow or failing reconciliation, position updates that raise), submits
random valid and invalid batches, pokes the resume triggers, cancels queued blocks, and
checks the manager's own invariants after every step. The kit's own handles are under
``self.kit`` (:class:`Kit`); every other name on the machine is yours.

:func:`crash_points` (and :func:`assert_crash_safe`, :func:`crash_point_tests`) crashes a
scripted scenario at every record of its journal, restarts the manager on what the disk
kept with the same collaborators, and checks the manager's promises and yours::

    report = assert_crash_safe(make_collaborators, [[block("b1")], [block("b2")]],
                               check=my_venue_filled_each_block_at_most_once)

The kit never calls a run that exercised nothing a pass: a crash-points run, a machine's
``TestCase`` or a nightly round in which the venue filled no block, or the position handler
took no deltas, is not ``ok`` and says what was not covered (:attr:`CrashReport.exercised`,
:attr:`CrashReport.not_covered`). Every failure it reports names the faults it injected,
in order.

``python -m fsm_exec.testing nightly yourmodule:NIGHTLY`` (a :class:`Nightly`) runs seeded
rounds of both over random scenarios and prints every failure with the seed that replays
it. Needs the ``testing`` extra (``pip install fsm-exec[testing]``) for hypothesis.
"""

from __future__ import annotations

from fsm_exec.core.lifecycle import Edge, lifecycle_paths
from fsm_exec.sim.venues import (
    RECONCILIATION_FAULTS,
    VENUE_FAULTS,
    Event,
    FakeClock,
    FaultPlan,
    FaultyPositionHandler,
    FaultyReconciliation,
    FaultyVenue,
    NaiveVenue,
    RecordingEventLogger,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
    block_deltas,
)
from fsm_exec.testing.crash import (
    DEFAULT_CONFIG,
    WINDOWS,
    CrashFailure,
    CrashPoint,
    CrashReport,
    assert_crash_safe,
    crash_point_tests,
    crash_points,
)
from fsm_exec.testing.lifecycle_machine import LifecycleMachine
from fsm_exec.testing.lifecycles import BrokenLifecycle, broken_lifecycles, lifecycles
from fsm_exec.testing.machine import ExecutionManagerMachine, Kit
from fsm_exec.testing.nightly import (
    CrashScenario,
    Nightly,
    NightlyFailure,
    NightlyResult,
    crash_scenarios,
)
from fsm_exec.testing.profiles import PROFILES, register_profiles
from fsm_exec.testing.simulated import SIMULATED
from fsm_exec.testing.strategies import (
    InvalidBlock,
    block_batches,
    block_ids,
    fault_plans,
    instruction_blocks,
    invalid_blocks,
)

__all__ = [
    "DEFAULT_CONFIG",
    "PROFILES",
    "RECONCILIATION_FAULTS",
    "SIMULATED",
    "VENUE_FAULTS",
    "WINDOWS",
    "CrashFailure",
    "CrashPoint",
    "CrashReport",
    "CrashScenario",
    "Edge",
    "BrokenLifecycle",
    "Event",
    "ExecutionManagerMachine",
    "FakeClock",
    "FaultPlan",
    "FaultyPositionHandler",
    "FaultyReconciliation",
    "FaultyVenue",
    "InvalidBlock",
    "Kit",
    "LifecycleMachine",
    "NaiveVenue",
    "Nightly",
    "NightlyFailure",
    "NightlyResult",
    "RecordingEventLogger",
    "SimPositionHandler",
    "SimReconciliation",
    "SimVenue",
    "StaticDataProvider",
    "assert_crash_safe",
    "block_batches",
    "block_deltas",
    "block_ids",
    "broken_lifecycles",
    "crash_point_tests",
    "crash_points",
    "crash_scenarios",
    "fault_plans",
    "instruction_blocks",
    "invalid_blocks",
    "lifecycle_paths",
    "lifecycles",
    "register_profiles",
]

"""fsm_exec's benchmarks: ``python -m benchmarks`` prints one table of every performance
target (issue 23), each a figure measured side by side in one run, with its target and
whether it is met; ``--quick`` is the same on small sizes (seconds, for the tests).

The modules: :mod:`benchmarks.bench` (the contenders: fsm_exec, the hand-written limit,
the alternatives), :mod:`benchmarks.suite` (the one table), :mod:`benchmarks.scale` (journal
length: CSV export, ``recover()``, ``fsm-exec status``, memory), :mod:`benchmarks.compare`
(this tree against an earlier commit) and :mod:`benchmarks.shrink` (the fuzzing guide's
report). Nothing here asserts: these are measurements, not tests.
"""

"""Instructions a block and an empty call cost, counted by valgrind (not timed).

    python benchmarks/instructions.py              # fsm_exec and the limit (a few minutes)
    python benchmarks/instructions.py --calls 500  # fewer calls, quicker, as exact

``valgrind --tool=callgrind`` counts the instructions the interpreter executes, so the count
does not move with the machine's load (the same count twice, measured, with the other core
busy): the figure to compare a change by on a shared machine, where the timed ratios of
``python -m benchmarks`` move by a few hundredths from one run to the next. Each workload of
``bench.py`` (``fsm_exec``, one block a call or no block at all, the journal on disk; the
hand-written ``limit``, the same work without the framework) runs in a child process under
callgrind twice, ``N`` and ``3N`` calls after the same warm-up, with ``PYTHONHASHSEED=0``;
the difference over ``2N`` calls is what one call costs, without the start-up, the imports
and the warm-up. Needs ``valgrind`` (Debian's package of that name). This is a benchmark,
not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: What each row runs: ``bench.py``'s factory, and a block on every call (1) or on none (0).
ROWS = (("fsm_exec", "a block a call", 1), ("fsm_exec", "an empty call", 0),
        ("limit", "a block a call", 1), ("limit", "an empty call", 0))
_COLLECTED = re.compile(rb"Collected : (\d+)")


def collected(stderr: bytes) -> int:
    """The instruction count in callgrind's summary (``==pid== Collected : N``)."""
    found = _COLLECTED.search(stderr)
    if found is None:
        raise RuntimeError("callgrind printed no 'Collected' line:\n"
                           + stderr.decode(errors="replace")[-2000:])
    return int(found.group(1))


def workload(factory: str, every: int, calls: int) -> None:
    """``calls`` calls of ``bench.py``'s ``factory`` (after 200 of warm-up), journals in a
    temporary directory: what a child process runs under callgrind."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench

    make = getattr(bench, factory)
    with tempfile.TemporaryDirectory() as tmp:
        make(every=every)(200, "warm", Path(tmp))()
        make(every=every)(calls, "run", Path(tmp))()


def count(factory: str, every: int, calls: int) -> int:
    """The instructions a child process running :func:`workload` executes in all."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--child", factory, str(every), str(calls)]
    done = subprocess.run(command, capture_output=True, check=True,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    return collected(done.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000,
                        help="N: the calls of the shorter run (the longer has 3N)")
    parser.add_argument("--child", nargs=3, metavar=("FACTORY", "EVERY", "CALLS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        factory, every, calls = args.child
        workload(factory, int(every), int(calls))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    n = args.calls
    per_call: dict[tuple[str, int], float] = {}
    print(f"{'workload':<32}{'instructions a call':>22}")
    for factory, what, every in ROWS:
        short, long = count(factory, every, n), count(factory, every, 3 * n)
        per_call[factory, every] = (long - short) / (2 * n)
        print(f"{factory + ', ' + what:<32}{per_call[factory, every]:>22,.0f}", flush=True)
    for what, every in (("a block a call", 1), ("an empty call", 0)):
        ratio = per_call["fsm_exec", every] / per_call["limit", every]
        print(f"{'fsm_exec / limit, ' + what:<32}{ratio:>21.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Instructions a block and an empty call cost, counted by valgrind (not timed).

    python benchmarks/instructions.py              # fsm_exec and the limit (a few minutes)
    python benchmarks/instructions.py --calls 500  # fewer calls, quicker, as exact
    python benchmarks/instructions.py --against 85eb9b4   # this tree against a commit
    python benchmarks/instructions.py --cache      # cache misses and mispredicted branches

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

``--against REV`` counts instead the workloads of ``benchmarks/compare.py`` (one block a
call, an empty call, 100 blocks a call) for the package at commit ``REV`` (exported and
imported as ``compare.py`` does) and for this tree: the side-by-side figures of
``compare.py`` without its noise (its CPU-time ratios move by several hundredths from one
run to the next; these do not). Per block, or per call for the empty call.

``--cache`` runs the same four workloads under ``valgrind --tool=cachegrind`` with its cache
and branch simulation on, and prints per call the instructions, first-level instruction and
data cache misses and mispredicted branches, fsm_exec's and the limit's, and their ratios:
why the CPU-time ratio of ``python -m benchmarks`` is higher than the instruction ratio (a
simulation of a generic cache and predictor, not this machine's: its counts compare the two
workloads, they are not a model of cycles).
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
#: ``--against``: compare.py's workloads, as (label, blocks a call, calls of the shorter
#: run as a share of ``--calls``: 1,000 calls, and 10 of 100 blocks).
AGAINST_ROWS = (("a block, 1 a call", 1, 1.0), ("an empty call", 0, 1.0),
                ("a block, 100 a call", 100, 0.01))
_COLLECTED = re.compile(rb"Collected : (\d+)")
#: ``--cache``: cachegrind's summary lines, and the first count on each (per call, below).
CACHE_EVENTS = (("instructions", rb"I\s+refs:"), ("I1 misses", rb"I1\s+misses:"),
                ("D1 misses", rb"D1\s+misses:"), ("mispredicted branches", rb"Mispredicts:"))


def collected(stderr: bytes) -> int:
    """The instruction count in callgrind's summary (``==pid== Collected : N``)."""
    found = _COLLECTED.search(stderr)
    if found is None:
        raise RuntimeError("callgrind printed no 'Collected' line:\n"
                           + stderr.decode(errors="replace")[-2000:])
    return int(found.group(1))


def cache_counts(stderr: bytes) -> dict[str, int]:
    """The counts of cachegrind's summary (:data:`CACHE_EVENTS`), by event."""
    out = {}
    for name, label in CACHE_EVENTS:
        found = re.search(label + rb"\s+([\d,]+)", stderr)
        if found is None:
            raise RuntimeError(f"cachegrind printed no {name!r} line:\n"
                               + stderr.decode(errors="replace")[-2000:])
        out[name] = int(found.group(1).replace(b",", b""))
    return out


def workload(factory: str, every: int, calls: int) -> None:
    """``calls`` calls of ``bench.py``'s ``factory`` (after 200 of warm-up), journals in a
    temporary directory: what a child process runs under callgrind."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import bench

    make = getattr(bench, factory)
    with tempfile.TemporaryDirectory() as tmp:
        make(every=every)(200, "warm", Path(tmp))()
        make(every=every)(calls, "run", Path(tmp))()


def compare_workload(package_dir: str, per_call: int, calls: int, made: int) -> None:
    """The first ``calls`` of ``made`` calls of ``compare.py``'s workload with ``per_call``
    blocks each (after a warm-up; both runs of a row make the same ``made`` calls, so that
    making them cancels out as compare.py does not time it), for the package exported into
    ``package_dir`` (``fsm_exec_base``), or for this tree's ``fsm_exec`` when it is empty:
    what a child process runs for ``--against``."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import compare

    if package_dir:
        pkg = compare.import_exported(package_dir)
    else:
        import fsm_exec as pkg
    with tempfile.TemporaryDirectory() as tmp:
        compare.workload(pkg, Path(tmp) / "warm", 20, per_call)()
        compare.workload(pkg, Path(tmp) / "run", made, per_call, runs=calls)()


def count(*child: str) -> int:
    """The instructions a child process (``--child`` or ``--child-compare`` with ``child``
    as its arguments) executes in all."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, *child]
    done = subprocess.run(command, capture_output=True, check=True,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    return collected(done.stderr)


def cache_count(*child: str) -> dict[str, int]:
    """:data:`CACHE_EVENTS` of a ``--child`` process, in all, under cachegrind."""
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--branch-sim=yes",
               "--cachegrind-out-file=/dev/null", sys.executable, __file__, *child]
    done = subprocess.run(command, capture_output=True, check=True,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    return cache_counts(done.stderr)


def cache(calls: int) -> int:
    """``--cache``: per call, each event of :data:`CACHE_EVENTS`, fsm_exec's and the
    limit's, for a block a call and an empty call, and their ratios."""
    names = [name for name, _ in CACHE_EVENTS]
    per: dict[tuple[str, int], dict[str, float]] = {}
    print(f"{'per call':<34}" + "".join(f"{name:>24}" for name in names))
    for factory, what, every in ROWS:
        short = cache_count("--child", factory, str(every), str(calls))
        long = cache_count("--child", factory, str(every), str(3 * calls))
        row = per[factory, every] = {n: (long[n] - short[n]) / (2 * calls) for n in names}
        print(f"{factory + ', ' + what:<34}" + "".join(f"{row[n]:>24,.0f}" for n in names),
              flush=True)
    for what, every in (("a block a call", 1), ("an empty call", 0)):
        mine, limit = per["fsm_exec", every], per["limit", every]
        print(f"{'fsm_exec / limit, ' + what:<34}"
              + "".join(f"{mine[n] / limit[n]:>23.2f}x" if limit[n] else f"{'-':>24}"
                        for n in names))
    return 0


def against(rev: str, calls: int) -> int:
    """``--against REV``: compare.py's workloads, ``REV``'s package against this tree's."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.compare import export_package

    with tempfile.TemporaryDirectory(prefix="fsm-exec-instructions-") as tmp:
        try:
            export_package(rev, Path(tmp))  # and imports it: any error of that commit's
        except Exception as exc:  # said in one line, as a refusal
            print(f"cannot export and import commit {rev} (needs git and a clone): "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        print(f"{rev} (old) against this tree (new): instructions per block (per call for "
              "the empty call)")
        print(f"  {'workload':<24}{'old':>12}{'new':>12}{'new/old':>10}")
        for label, per_call, share in AGAINST_ROWS:
            n = max(round(calls * share), 2)
            got = []
            for package_dir in (tmp, ""):
                short, long = (count("--child-compare", package_dir, str(per_call),
                                     str(k), str(3 * n)) for k in (n, 3 * n))
                got.append((long - short) / (2 * n * max(per_call, 1)))
            old, new = got
            print(f"  {label:<24}{old:>12,.0f}{new:>12,.0f}{new / old:>9.3f}x", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000,
                        help="N: the calls of the shorter run (the longer has 3N)")
    parser.add_argument("--against", metavar="REV",
                        help="count compare.py's workloads, commit REV against this tree")
    parser.add_argument("--cache", action="store_true",
                        help="cache misses and mispredicted branches too (cachegrind)")
    parser.add_argument("--child", nargs=3, metavar=("FACTORY", "EVERY", "CALLS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--child-compare", nargs=4, help=argparse.SUPPRESS,
                        metavar=("PACKAGE_DIR", "PER_CALL", "CALLS", "MADE"))
    args = parser.parse_args(argv)
    if args.child:
        factory, every, calls = args.child
        workload(factory, int(every), int(calls))
        return 0
    if args.child_compare:
        package_dir, blocks, calls, made = args.child_compare
        compare_workload(package_dir, int(blocks), int(calls), int(made))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    if args.against:
        return against(args.against, args.calls)
    if args.cache:
        return cache(args.calls)
    n = args.calls
    per_call: dict[tuple[str, int], float] = {}
    print(f"{'workload':<32}{'instructions a call':>22}")
    for factory, what, every in ROWS:
        short = count("--child", factory, str(every), str(n))
        long = count("--child", factory, str(every), str(3 * n))
        per_call[factory, every] = (long - short) / (2 * n)
        print(f"{factory + ', ' + what:<32}{per_call[factory, every]:>22,.0f}", flush=True)
    for what, every in (("a block a call", 1), ("an empty call", 0)):
        ratio = per_call["fsm_exec", every] / per_call["limit", every]
        print(f"{'fsm_exec / limit, ' + what:<32}{ratio:>21.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

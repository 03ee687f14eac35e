"""This tree against an earlier commit, side by side: the same benchmark, interleaved.

    python benchmarks/compare.py                 # against the default base (BASE below)
    python benchmarks/compare.py REV --rounds 6  # against any commit

The earlier commit is exported with ``git archive`` into a temporary folder. Then
``benchmarks/bench.py --quick`` runs alternately from each tree, each time in a fresh
process, ``--rounds`` times each, with ``PYTHONPATH`` pointing at that tree's package.
Each run measures fsm_exec and the hand-written limit in the same process, so the ratio
``fsm_exec / limit`` is comparable across runs even on a shared machine. The table shows,
for each figure, the median over the runs of each tree, and the ratio new/old of those
medians (below 1.00 means the new tree is cheaper).

This is a benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The last commit before the package was reorganised into sub-packages.
BASE = "85eb9b4"
#: The figures compared: a label, and the line of bench.py's output holding it.
FIGURES = {
    "per block, fsm_exec (µs)": r"^  per block, one block per update_state call.*?\n(?:.*\n)*?"
                                r"\s+fsm_exec\s+([\d.]+)",
    "per block, limit (µs)": r"^  per block, one block per update_state call.*?\n(?:.*\n)*?"
                             r"\s+limit \(hand-written\)\s+([\d.]+)",
    "per block: fsm_exec / limit": r"fsm_exec / hand-written limit\s+([\d.]+)x",
    "empty call: fsm_exec / limit": r"empty call: fsm_exec / its limit\s+([\d.]+)x",
    "100 a call: fsm_exec / limit": r"100 a call: fsm_exec / limit\s+([\d.]+)x",
    "demo-like mix: fsm_exec / limit": r"demo-like mix: fsm_exec / limit\s+([\d.]+)x",
}


def export(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (from this repository), unpacked into ``into``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar",
                           "--end-of-options", rev], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def run(tree: Path) -> dict[str, float]:
    """One ``bench.py --quick`` run from ``tree``: its figures."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, str(tree / "benchmarks" / "bench.py"), "--quick"],
                         capture_output=True, text=True, env=env, cwd=tree, check=True).stdout
    got = {}
    for label, pattern in FIGURES.items():
        m = re.search(pattern, out, re.MULTILINE)
        if m:
            got[label] = float(m.group(1))
    return got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rev", nargs="?", default=BASE, help=f"the earlier commit (default {BASE})")
    p.add_argument("--rounds", type=int, default=4, help="runs of each tree (default 4)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fsm-exec-base-") as tmp:
        old_tree = export(args.rev, Path(tmp))
        runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for i in range(args.rounds):
            order = [("old", old_tree), ("new", ROOT)]
            if i % 2:
                order.reverse()
            for name, tree in order:
                print(f"round {i + 1}/{args.rounds}: {name}", file=sys.stderr)
                runs[name].append(run(tree))
    print(f"{args.rev} (old) against this tree (new): median of {args.rounds} interleaved "
          f"runs of bench.py --quick each, CPU time")
    print(f"  {'figure':<36}{'old':>10}{'new':>10}{'new/old':>10}")
    for label in FIGURES:
        old = [r[label] for r in runs["old"] if label in r]
        new = [r[label] for r in runs["new"] if label in r]
        if not old or not new:
            continue
        a, b = statistics.median(old), statistics.median(new)
        print(f"  {label:<36}{a:>10.2f}{b:>10.2f}{b / a:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

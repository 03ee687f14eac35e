"""How long the fuzzing guide's example failure takes to report, and its printed program's length.

    python benchmarks/shrink.py                 # 5 runs, hypothesis seeds 1..5
    python benchmarks/shrink.py --runs 9 --seed 100

Each run writes the docs' "Fuzz your own adapters" example, with the adapter's dedup check
removed (the bug the guide describes), to a fresh temporary directory and runs it there with
``python -m pytest --hypothesis-seed=N`` in a new process, as a user would: hypothesis's
default profile, the kit's own settings, no example database from an earlier run. Per run it
reports the wall time of the pytest process (start-up included), the time pytest reports for
the test (find + shrink + report), and the printed program's length in lines, from
``state = ...`` to ``state.teardown()``; then the medians, and the last printed program.

This is a measurement, not a test: nothing here asserts (the suite pins the printed length
in ``tests/test_testing.py``).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "tests"))
from kit import DEDUP, NO_DEDUP  # noqa: E402 - the suite's edit of the guide, the same one


def broken_example() -> str:
    """The fuzzing guide's example (docs/how-to/fuzz.md) with the dedup check removed."""
    section = (ROOT / "docs" / "how-to" / "fuzz.md").read_text()
    found = re.search(r"```python\n(.*?)```", section, re.S)
    if found is None or DEDUP not in found.group(1):
        raise SystemExit("docs/how-to/fuzz.md: the fuzzing example or its dedup check is gone")
    return found.group(1).replace(DEDUP, NO_DEDUP)


def run_once(code: str, seed: int) -> tuple[float, float, list[str]]:
    """(wall seconds, pytest's seconds, printed program lines) of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "test_my_adapter.py").write_text(code)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--hypothesis-seed={seed}", "test_my_adapter.py"],
            cwd=tmp, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    out = proc.stdout
    took = re.search(r"1 failed in ([0-9.]+)s", out)
    if proc.returncode != 1 or took is None:
        raise SystemExit(f"seed {seed}: expected one failing test, got:\n{out}{proc.stderr}")
    lines = [re.sub(r"^E\s{3,}", "", line) for line in out.splitlines()
             if line.startswith("E ")]
    first = next(i for i, line in enumerate(lines) if line.startswith("state = "))
    last = lines.index("state.teardown()", first)
    return wall, float(took.group(1)), lines[first:last + 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="first hypothesis seed")
    args = parser.parse_args(argv)
    code = broken_example()
    walls, tooks, sizes = [], [], []
    program: list[str] = []
    print("seed   wall s   pytest s   printed lines")
    for seed in range(args.seed, args.seed + args.runs):
        wall, took, program = run_once(code, seed)
        walls.append(wall)
        tooks.append(took)
        sizes.append(len(program))
        print(f"{seed:>4} {wall:>8.2f} {took:>10.2f} {len(program):>15}")
    print(f"median {statistics.median(walls):>6.2f} {statistics.median(tooks):>10.2f} "
          f"{statistics.median(sizes):>15g}   (max: {max(walls):.2f} s, {max(sizes)} lines)")
    print("\nthe last printed program:\n" + "\n".join(program))
    return 0


if __name__ == "__main__":
    sys.exit(main())

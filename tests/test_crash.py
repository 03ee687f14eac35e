"""Real crashes: a live manager is killed with SIGKILL at random moments, restarted with
recover(), and run to the end, many times. Every block must execute exactly once at the
venue, in submission order, and none may be lost. The child's day moves on every two
batches, with a checkpoint every 7 records and retention at 2 days, so kills also land in
rotations, checkpoints and pruning; and a second process started on the same directory
while the first runs is refused (nothing runs twice)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from fsm_exec import check_journal

CHILD = Path(__file__).with_name("crash_child.py")
SCENARIOS = 8  # independent runs, each killed until it finishes
BLOCKS = 24  # blocks per run
MIN_KILLS = 2 * SCENARIOS  # the test must really have crashed the manager this often
MAX_STARTS = 60  # per run: a run that never finishes fails the test


def _child(workdir: Path, rng: random.Random, hold: Path | None = None
           ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    if hold is not None:
        env["CRASH_CHILD_HOLD"] = str(hold)  # the child waits, holding the directory
    return subprocess.Popen([sys.executable, str(CHILD), str(workdir), str(BLOCKS),
                             str(rng.randrange(1 << 30))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def run_until_done(workdir: Path, rng: random.Random, *, rival: bool = False) -> int:
    """Start the child, kill it at a random moment, repeat until it finishes; kills. With
    ``rival``, a second child is started on the same directory while the first runs: it
    must be refused, naming the first one's pid."""
    kills = 0
    for start in range(MAX_STARTS):
        hold = workdir / "go" if rival and start == 0 else None
        child = _child(workdir, rng, hold)
        assert child.stdout is not None
        ready = child.stdout.readline()
        if ready != b"ready\n":
            _, err = child.communicate()
            raise AssertionError(f"child failed to start (start {start}): {err.decode()}")
        if rival and start == 0:
            second = _child(workdir, rng)
            out, err = second.communicate(timeout=60)
            assert second.returncode == 3, (out, err)
            assert out.decode().split() == ["locked", str(child.pid)]
            assert hold is not None
            hold.touch()
        # The first two kills land early (a run takes well over 0.15 s), the rest anywhere.
        time.sleep(rng.uniform(0.01, 0.15) if start < 2 else rng.uniform(0.0, 0.35))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills += 1
            continue
        _, err = child.communicate()
        assert child.returncode == 0, err.decode()
        return kills
    raise AssertionError(f"the run did not finish in {MAX_STARTS} starts")


def test_sigkill_at_random_moments_loses_nothing_and_runs_nothing_twice(
        tmp_path: Path) -> None:
    """SCENARIOS runs of BLOCKS blocks, each killed with SIGKILL until it finishes: every
    block succeeds exactly once at the venue, in submission order; the journal obeys the
    lifecycle across all the restarts."""
    rng = random.Random(20251125)
    kills = 0
    expected = [f"b{i:03d}" for i in range(BLOCKS)]
    for n in range(SCENARIOS):
        workdir = tmp_path / f"run{n}"
        workdir.mkdir()
        kills += run_until_done(workdir, rng, rival=n == 0)
        executions = [json.loads(line)["block_id"]
                      for line in (workdir / "venue.jsonl").read_text().splitlines()]
        assert executions == expected, f"run {n}: venue executed {executions}"
        status = json.loads((workdir / "done.json").read_text())
        assert (status["blocks_executed"], status["blocks_failed"], status["halted"]) == (
            BLOCKS, 0, False)
        report = check_journal(workdir / "logs")
        assert report.ok, report.problem
        assert (report.blocks_executed, report.in_doubt, report.queued) == (BLOCKS, None, ())
    print(f"{kills} kills over {SCENARIOS} runs")
    assert kills >= MIN_KILLS, f"only {kills} kills: the test did not crash enough"

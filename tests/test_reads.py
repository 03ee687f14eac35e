"""Reads from any thread: health endpoints and metric scrapes read the manager from other
threads while blocks run; every read API gives a consistent snapshot."""

from __future__ import annotations

import random
import sys
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from fsm_exec import TERMINAL_STATES, BlockState
from fsm_exec.observe import PrometheusObserver

from kit import T, blocks, rig

N_BLOCKS = 400
IN_FLIGHT = {BlockState.ROUTING, BlockState.PENDING_RECONCILIATION, BlockState.RETRYING}


def _rank(state: BlockState | str | None) -> int:
    if state is None:
        return 0
    if state is BlockState.QUEUED:
        return 1
    return 2 if state in IN_FLIGHT else 3


def test_reads_from_another_thread_are_consistent_snapshots() -> None:
    """A reader thread hammering get_execution_status(), block_state(), health_check(),
    queued_block_ids and a metrics scrape while a live manager runs several hundred blocks
    (retries, halts, manual resumes, cancellations) on a fake clock never sees a block
    counted nowhere or twice, a block move backwards, or a finished block change its end."""
    ids = [f"b{i:03d}" for i in range(N_BLOCKS)]
    faults = [("error" if i % 7 == 3 else "lost_response" if i % 11 == 5 else
               "reject" if i % 13 == 8 else None) for i in range(N_BLOCKS)]
    recon = [("fail", 0.0) if i % 50 == 17 else ("ok", 2.0 if i % 9 == 4 else 0.0)
             for i in range(N_BLOCKS)]
    registry = CollectorRegistry()
    r = rig(faults=faults, recon=recon, max_retries=5, observers=[PrometheusObserver(registry)])
    em = r.em
    done = threading.Event()
    problems: list[str] = []
    stats = {"reads": 0, "in_flight": 0}

    def reader() -> None:
        rnd = random.Random(12)
        last: dict[str, BlockState | str | None] = {}
        while not done.is_set() and len(problems) < 20:
            s = em.get_execution_status()
            stats["reads"] += 1
            flying = 1 if s["current_block"] is not None else 0
            stats["in_flight"] += flying
            counted = (s["blocks_executed"] + s["blocks_failed"] + s["blocks_cancelled"]
                       + s["queue_length"] + flying)
            if counted != s["blocks_accepted"]:
                problems.append(f"accepted {s['blocks_accepted']} != counted {counted}: {s}")
            finished = s["blocks_executed"] + s["blocks_failed"] + s["blocks_cancelled"]
            if finished != s["current_block_index"]:
                problems.append(f"finished {finished} != index: {s}")
            # the block in flight: loaded (still queued, about to start) or under way
            if flying and s["current_block_state"] not in IN_FLIGHT | {BlockState.QUEUED}:
                problems.append(f"in flight in state {s['current_block_state']!r}: {s}")
            h = em.health_check()["metrics"]
            if h["blocks_executed"] + h["blocks_failed"] + h["queue_size"] > N_BLOCKS:
                problems.append(f"health counts more blocks than there are: {h}")
            queued = em.queued_block_ids
            if list(queued) != sorted(queued) or len(set(queued)) != len(queued):
                problems.append(f"queue out of order: {queued}")
            for block_id in rnd.sample(ids, 8):
                state = em.block_state(block_id)
                before = last.get(block_id)
                if _rank(state) < _rank(before):
                    problems.append(f"{block_id}: {before} then {state}")
                if before in TERMINAL_STATES and state != before:
                    problems.append(f"{block_id}: finished {before}, then {state}")
                last[block_id] = state
            registry.get_sample_value("fsm_exec_queue_blocks")  # a scrape, from this thread

    thread = threading.Thread(target=reader, name="monitor")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    thread.start()
    try:
        for n, start in enumerate(range(0, N_BLOCKS, 10)):
            batch = ids[start:start + 10]
            em.execute_instruction_blocks(T(n), blocks(*batch))
            if n % 5 == 2:
                em.cancel(T(n), [batch[-1]], reason="operator")
            em.update_state(T(n), "strategy_manager")
            while em.halted:
                em.update_state(T(n), "manual")
    finally:
        done.set()
        thread.join(60)
        sys.setswitchinterval(interval)
    assert not problems, "\n".join(problems[:5])
    status = em.get_execution_status()
    assert status["blocks_accepted"] == N_BLOCKS
    assert (status["blocks_executed"] + status["blocks_failed"] + status["blocks_cancelled"]
            == N_BLOCKS)
    assert status["blocks_failed"] > 0 and status["blocks_retried"] > 0
    # the reader really ran alongside the blocks, not only before or after them
    assert stats["reads"] > 10 and stats["in_flight"] > 0, stats
    ends: dict[str, Any] = {i: em.block_state(i) for i in ids}
    assert set(ends.values()) <= set(TERMINAL_STATES)

"""``fsm_exec.journal_frame``: a journal's blocks and transitions as typed pandas DataFrames."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

import fsm_exec
from fsm_exec import JournalCorruptError, journal_frame, read_journal
from fsm_exec.cli.demo import run_demo
from fsm_exec.tools.frames import BLOCK_COLUMNS, TRANSITION_COLUMNS

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log directory of a live demo run (lost replies, a timeout, a failed block)."""
    out = tmp_path_factory.mktemp("live")
    run_demo("live", out=out, report=False)
    return out / "logs" / "events"


def test_the_columns_have_their_types(live: Path) -> None:
    """Every column has the dtype the module documents: tz-aware timestamps, int attempts."""
    frames = journal_frame(live)
    assert {c: str(t) for c, t in frames.transitions.dtypes.items()} == TRANSITION_COLUMNS
    assert {c: str(t) for c, t in frames.blocks.dtypes.items()} == BLOCK_COLUMNS
    assert str(frames.transitions["timestamp"].dt.tz) == "UTC"


def test_transitions_are_the_journal_s_transition_records(live: Path) -> None:
    """One row per block_transition record, in order, with its fields."""
    records = [r for r in read_journal(live) if r.event_type == "block_transition"]
    t = journal_frame(live).transitions
    assert len(t) == len(records) > 100
    assert t["seq"].tolist() == [r.seq for r in records]
    assert t["dest"].tolist() == [r.data["dest"] for r in records]
    assert t["attempt"].tolist() == [r.data["attempt"] for r in records]
    first = records[0]
    assert t["timestamp"].iloc[0] == pd.Timestamp(first.timestamp)
    waited = [r.data.get("waited_s") for r in records]
    assert t["waited_s"].notna().sum() == sum(w is not None for w in waited) > 0


def test_blocks_say_where_each_block_ended(live: Path) -> None:
    """One row per block; the counts of final states, the failed block's code and attempts
    agree with the journal."""
    records = list(read_journal(live))
    b = journal_frame(live).blocks
    accepted = [r.data["block_id"] for r in records if r.event_type == "block_accepted"]
    assert b["block_id"].tolist() == accepted
    failed = [r for r in records if r.event_type == "block_failed"]
    assert len(failed) == 1
    row = b.set_index("block_id").loc[failed[0].data["block_id"]]
    assert row["state"] == "failed" and row["error_code"] == failed[0].data["error_code"]
    assert row["attempts"] == failed[0].data["attempts"]
    assert b["terminal"].all() and b["seconds"].notna().all()
    assert (b["finished_at"] >= b["accepted_at"]).all()
    assert set(b["state"]) == {"success", "failed"}
    assert (b["state"] == "success").sum() == len(accepted) - 1
    assert b["attempts"].max() > 1  # the lost replies were retried


def test_a_queued_block_and_odd_values(tmp_path: Path) -> None:
    """A block that never moved is queued with 0 attempts and NaT/NaN where nothing
    happened; a time without an offset is UTC; year 9999 fits. (A block record missing its
    action, or with a bool priority, or a timestamp that is no time, is corrupt for every
    reader now: tests/test_journal_blocks_read.py, test_journal_corpus.py.)"""
    lines = [
        {"seq": 1, "timestamp": "9999-12-31T00:00:00+00:00", "event_type": "block_accepted",
         "component": "ExecutionManager",
         "data": {"block_id": "q", "action": "a", "priority": 2, "instructions": [{}, {}]}},
        {"seq": 2, "timestamp": "2024-12-31T23:00:00", "event_type": "block_accepted",
         "component": "ExecutionManager",
         "data": {"block_id": "r", "action": "b", "priority": -1, "instructions": [{}]}},
        {"seq": 3, "timestamp": "2025-01-01T01:00:00+01:00", "event_type": "block_transition",
         "component": "ExecutionManager",
         "data": {"block_id": "r", "source": "queued", "dest": "routing", "trigger": "start",
                  "attempt": 1}},
        {"seq": 4, "timestamp": "2025-01-01T00:00:00", "event_type": "note",
         "component": "Other", "data": {"block_id": "other"}},
    ]
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    f = journal_frame(path)
    q, r = f.blocks.to_dict("records")
    assert (q["state"], q["attempts"], q["transitions"], q["priority"], q["instructions"]) == (
        "queued", 0, 0, 2, 2)
    assert q["accepted_at"] == pd.Timestamp("9999-12-31", tz="UTC")
    assert pd.isna(q["started_at"]) and pd.isna(q["seconds"]) and not q["terminal"]
    assert r["accepted_at"] == pd.Timestamp("2024-12-31T23:00:00", tz="UTC")
    assert r["priority"] == -1 and r["action"] == "b"
    assert r["started_at"] == pd.Timestamp("2025-01-01T00:00:00", tz="UTC")
    assert r["state"] == "routing" and r["attempts"] == 1
    assert len(f.blocks) == 2  # the other component's record is not read


def test_an_empty_journal_gives_empty_typed_frames(tmp_path: Path) -> None:
    """No records: empty frames that still have every column and dtype."""
    path = tmp_path / "j.jsonl"
    path.write_text("")
    f = journal_frame(path)
    assert f.blocks.empty and f.transitions.empty
    assert {c: str(t) for c, t in f.blocks.dtypes.items()} == BLOCK_COLUMNS


def test_a_corrupt_journal_raises_the_reader_s_error(tmp_path: Path) -> None:
    """journal_frame reads through read_journal: a corrupt line raises as it does."""
    path = tmp_path / "j.jsonl"
    path.write_text("{not json}\n")
    with pytest.raises(JournalCorruptError, match="not valid JSON"):
        journal_frame(path)


def test_without_pandas_the_error_names_the_extra(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """pandas missing: an ImportError naming fsm-exec[pandas]."""
    real = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"pip install 'fsm-exec\[pandas\]'"):
        journal_frame(tmp_path)


def test_journal_frame_is_public() -> None:
    """journal_frame and JournalFrames are in fsm_exec.__all__."""
    assert {"journal_frame", "JournalFrames"} <= set(fsm_exec.__all__)

"""The CSV export in several processes (``export_csv(..., workers=N)``): the same bytes and
the same errors as in one, without running the caller's script again, and nothing left
behind when a worker fails."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_csv import HOSTILE

import fsm_exec
from fsm_exec import export_csv
from fsm_exec.journal.codec import encode

ROOT = str(Path(fsm_exec.__file__).resolve().parents[1])


def record(seq: int, i: int) -> dict[str, Any]:
    """A record of one of a few shapes, with hostile text and numbers of every kind."""
    text = HOSTILE[i % len(HOSTILE)]
    kind = i % 3
    if kind == 0:
        return {"seq": seq, "timestamp": f"2025-10-0{1 + i % 9}T00:00:00+00:00",
                "event_type": "block_transition", "component": "StrategyLog",
                "data": {"block_id": f"b{i}", "source": "routing", "dest": "pending",
                         "trigger": "executed", "attempt": 1,
                         "deltas": {"changes": {"ETH": i * 0.5, "a/b~c": [i, Decimal("2.5")]}}}}
    if kind == 1:
        return {"seq": seq, "timestamp": "2025-10-01T00:00:00+00:00", "event_type": "note",
                "component": "StrategyLog",
                "data": {"block_id": text, "source": text, "attempt": i, "n": float("nan")}}
    return {"seq": seq, "timestamp": text, "event_type": text, "component": 'Strategy,"x"',
            "data": {"deltas": {"changes": {text or "k": i}}, "error_code": text}}


def journal(logs: Path) -> list[Path]:
    """Two components' journals, one of them in three files (two rotated, the current
    one): the files in the order the export reads them."""
    logs.mkdir()
    files = [logs / "strategy_log_events.2025-10-01.1.jsonl",
             logs / "strategy_log_events.2025-10-02.1.jsonl",
             logs / "strategy_log_events.jsonl", logs / "zz_log_events.jsonl"]
    seq = 0
    for n, path in enumerate(files):
        lines = []
        for i in range(40 + 7 * n):
            seq += 1
            lines.append(encode(record(seq if n < 3 else i + 1, seq)))
        path.write_bytes(b"".join(lines))
    return files


def outcome(logs: Path, out: Path, name: str, workers: int) -> Any:
    try:
        events = export_csv(logs, out, name, workers=workers)
    except Exception as exc:
        return type(exc), str(exc)
    return events.read_bytes(), events.with_name("deltas.csv").read_bytes()


def leftovers(out: Path) -> list[str]:
    """Anything in the results but the finished CSVs (temporaries, worker parts)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if (p.is_file() and p.name not in ("events.csv", "deltas.csv"))
                  or (p.is_dir() and p.name.startswith(".")))


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_the_same_bytes_as_in_one_process(tmp_path: Path, workers: int) -> None:
    logs, out = tmp_path / "logs", tmp_path / "results"
    journal(logs)
    one = outcome(logs, out, "one", 1)
    assert isinstance(one[0], bytes) and one[0].count(b"\r\n") > 150
    assert outcome(logs, out, "many", workers) == one
    assert leftovers(out) == []


@pytest.mark.parametrize("spoiled", [[1], [1, 2], [0, 3]])
def test_the_same_error_as_in_one_process(tmp_path: Path, spoiled: list[int]) -> None:
    """A line no writer writes in one or more files: the error of the first such file in
    the export's order, naming its line, as the export in one process raises it; and no
    CSV, no temporary and no worker's part left."""
    logs, out = tmp_path / "logs", tmp_path / "results"
    files = journal(logs)
    for n in spoiled:
        lines = files[n].read_bytes().splitlines(keepends=True)
        lines[5] = b"[1, 2]\n"
        files[n].write_bytes(b"".join(lines))
    one = outcome(logs, out, "one", 1)
    assert one[0] is fsm_exec.JournalCorruptError and f"{files[spoiled[0]]}:6" in one[1]
    assert outcome(logs, out, "many", 2) == one
    assert leftovers(out) == [] and not (out / "many" / "events.csv").exists()


def test_a_script_is_not_run_again_in_the_workers(tmp_path: Path) -> None:
    """Workers are processes of their own, not multiprocessing's: a script without a
    ``__main__`` guard runs once (multiprocessing's spawn would import it in each)."""
    logs, marker = tmp_path / "logs", tmp_path / "ran"
    journal(logs)
    script = tmp_path / "export_it.py"
    script.write_text("import sys\n"
                      "with open(sys.argv[3], 'a') as f:\n"
                      "    f.write('ran\\n')\n"
                      "from fsm_exec import export_csv\n"
                      "export_csv(sys.argv[1], sys.argv[2], 'x', workers=2)\n")
    subprocess.run([sys.executable, str(script), str(logs), str(tmp_path / "out"),
                    str(marker)], check=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": ROOT})
    assert marker.read_text() == "ran\n"
    assert (tmp_path / "out" / "x" / "events.csv").read_bytes() == outcome(
        logs, tmp_path / "results", "one", 1)[0]


def test_a_worker_that_dies_is_named_and_leaves_nothing(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """A worker process that ends without its part or an error of its own (killed, out of
    memory): the export raises naming the journal file, the exit status and what the
    process said, and leaves no CSV, temporary or part."""
    logs, out = tmp_path / "logs", tmp_path / "results"
    files = journal(logs)
    dying = tmp_path / "python"
    dying.write_text("#!/bin/sh\nprintf 'MemoryError: no memory left\\033[2J' >&2\n"
                     "exit 3\n")
    dying.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(dying))
    with pytest.raises(RuntimeError, match="exit status 3") as failed:
        export_csv(logs, out, "many", workers=2)
    assert str(files[0]) in str(failed.value) and "no memory left" in str(failed.value)
    assert "\x1b" not in str(failed.value)  # what it printed, its escapes shown, not run
    assert leftovers(out) == [] and not (out / "many" / "events.csv").exists()


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2", True, None])
def test_workers_must_be_a_positive_int(tmp_path: Path, workers: Any) -> None:
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        export_csv(tmp_path, tmp_path / "results", "x", workers=workers)
    assert not (tmp_path / "results").exists()

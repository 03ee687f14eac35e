"""A process of a parallel CSV export (:func:`~fsm_exec.export_csv` with ``workers``): some
of a journal's files, each into two files of its own, which the exporting process appends
to ``events.csv`` and ``deltas.csv`` in the files' order.

    python -m fsm_exec.journal.export_worker TASKS

``TASKS`` is a JSON file: a list of ``[journal file, events part, deltas part, error
file]``, done in that order; the worker prints each one's index (a line) once its parts are
written. Run as a module of its own, never by ``multiprocessing``: that would import the
caller's main module again in every worker (``spawn``), running a script's top-level code
there. A failure is pickled into the task's error file (exit status 1), so that the
exporting process raises the error the export in one process would have raised (the same
type and text, naming the same line).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
from pathlib import Path

from fsm_exec.journal.export import Export


def export_part(path: str, events_part: str, deltas_part: str) -> None:
    """``path``'s rows of ``events.csv`` and ``deltas.csv`` into two new files."""
    with contextlib.ExitStack() as stack:
        events, deltas = (stack.enter_context(open(
            os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", newline="",
            encoding="utf-8")) for part in (events_part, deltas_part))
        Export(events, deltas).file(Path(path))


def main(argv: list[str]) -> int:
    """The worker's command line (see the module); 0 when every part is written."""
    (tasks_file,) = argv
    with open(tasks_file, "rb") as f:
        tasks = json.load(f)
    said, sys.stdout = sys.stdout, sys.stderr  # stdout is the index lines' alone
    for i, (path, events_part, deltas_part, error_file) in enumerate(tasks):
        try:
            export_part(path, events_part, deltas_part)
        except Exception as exc:
            with open(error_file, "wb") as f:
                pickle.dump(exc, f)  # one that cannot be pickled: its traceback on stderr
            return 1
        print(i, file=said, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

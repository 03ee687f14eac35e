"""The human-readable operational log, through loguru: off by default, as a library's should be.

The structured journal is the record of truth (loguru neither fsyncs nor keeps records when a
sink fails); this log only mirrors the events an operator wants to see.
"""

from __future__ import annotations

import sys
from typing import Any

from loguru import logger

from fsm_exec.boundary.escape import terminal_text

logger.disable("fsm_exec")

#: Event types mirrored to the operational log, with their loguru level.
MIRRORED: dict[str, str] = {
    "component_initialization": "INFO",
    "manager_resumed": "WARNING",
    "reconciliation_timeout": "WARNING",
    "execution_unresolved": "WARNING",
    "execution_queue_overflow": "WARNING",
    "error": "ERROR",
    "block_failed": "ERROR",
    "manager_halted": "CRITICAL",
    "recovered": "WARNING",
}
_FIELDS = ("block_id", "error_code", "error_message", "reason", "attempt", "execution_mode",
           "queued", "in_doubt")


def enable_logging(sink: Any = sys.stderr, level: str = "INFO") -> int:
    """Turn on fsm_exec's operational log to ``sink``; returns the loguru handler id.

    ``diagnose=False``: loguru's variable dumps in tracebacks could show secrets.
    Remove it again with ``loguru.logger.remove(handler_id)`` and :func:`disable_logging`.
    """
    logger.enable("fsm_exec")
    return logger.add(sink, level=level, diagnose=False, backtrace=False,
                      filter="fsm_exec",
                      format="{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {message}")


def disable_logging() -> None:
    """Turn fsm_exec's operational log off again (the default)."""
    logger.disable("fsm_exec")


def mirror(event_type: str, component: str, data: dict[str, Any]) -> None:
    """Send a notable event to the operational log (a cheap no-op for routine events)."""
    level = MIRRORED.get(event_type)
    if level is None:
        return
    detail = " ".join(f"{k}={data[k]}" for k in _FIELDS if data.get(k) is not None)
    # One line a record, every control character shown: a venue's error text is in it.
    logger.log(level, "{} {} {}", terminal_text(component), event_type, terminal_text(detail))

"""How long a block may stay in one state before it counts as stuck.

One reading, shared by the manager's health report and ``fsm-exec status``. Each deadline
is derived from the config: what the manager itself may spend in that state, plus
:data:`GRACE_SECONDS` for its own steps (a journal fsync, the hand-off to the position
handler before reconciliation is polled).

- ``routing``: ``execution_timeout`` (the venue call), plus the backoff of every attempt of
  the retry budget (``max_retries``) and the time to confirm a "not found".
- ``pending_reconciliation``: ``reconciliation_timeout`` (one wait).
- ``retrying``: this attempt's backoff, the time to confirm a "not found", and one
  ``execution_timeout`` (waiting for an abandoned call, or a query).

Confirming a "not found" takes at most ``not_found_min_age_seconds`` plus
``not_found_confirmations`` times ``not_found_interval_seconds``. ``queued`` (a block
loaded, not yet started) has no deadline.
"""

from __future__ import annotations

from fsm_exec.boundary.config import ExecutionConfig

#: Time allowed beyond the config's own budget for the manager's bookkeeping.
GRACE_SECONDS = 1.0


def backoff(cfg: ExecutionConfig, attempt: int) -> float:
    """The backoff before attempt ``attempt + 1``: doubling from ``retry_delay_seconds``,
    capped at ``max_retry_delay_seconds``."""
    exponent = min(max(attempt - 1, 0), 64)
    return float(min(cfg.retry_delay_seconds * 2.0 ** exponent, cfg.max_retry_delay_seconds))


def confirmation_time(cfg: ExecutionConfig) -> float:
    """The longest it takes to believe a "not found" (see the module docstring)."""
    return float(cfg.not_found_min_age_seconds
                 + cfg.not_found_confirmations * cfg.not_found_interval_seconds)


def state_deadline(cfg: ExecutionConfig, state: str, attempt: int = 1) -> float | None:
    """Seconds a block may stay in ``state`` (at ``attempt``); ``None``: no deadline."""
    if state == "routing":
        budget = sum(backoff(cfg, a) for a in range(1, cfg.max_retries + 1))
        return cfg.execution_timeout + budget + confirmation_time(cfg) + GRACE_SECONDS
    if state == "pending_reconciliation":
        return cfg.reconciliation_timeout + GRACE_SECONDS
    if state == "retrying":
        return (backoff(cfg, attempt) + confirmation_time(cfg) + cfg.execution_timeout
                + GRACE_SECONDS)
    return None

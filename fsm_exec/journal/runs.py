"""One journal directory per backtest run, for research loops (a parameter grid, an
optimizer): :func:`backtest_run` makes the run's own directory under a base directory and
journals the run's id and parameters first, so that every run can be told apart and
listed afterwards (``fsm-exec runs BASE_DIR``)."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fsm_exec.boundary.canonical import canonical
from fsm_exec.boundary.config import Redactor, is_secret_key, listed_secret_words
from fsm_exec.core.errors import (
    ConfigError,
    EventLogError,
    InvalidArgumentError,
    safe_repr,
    shorten,
)
from fsm_exec.journal.writer import EventLogger

#: The component whose journal (``backtest_run_events.jsonl``) holds a run's own records.
RUN_COMPONENT = "BacktestRun"
#: The record a run's journal starts with: ``run_id``, ``params``.
RUN_STARTED = "run_started"
_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def new_run_id() -> str:
    """A fresh run id: the UTC time and six random hex digits (``20251001T120000-3fa9c1``)."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


REDACTED = "[REDACTED]"


def without_secrets(params: Mapping[str, Any]
                    ) -> tuple[dict[str, Any], list[str], Redactor]:
    """``params`` with the value of every secret key (the config's rule, at any depth)
    replaced by ``"[REDACTED]"``; the paths of those keys (``venues.binance.secret``); and
    the :class:`~fsm_exec.boundary.config.Redactor` of the secrets, for the text that
    quotes one elsewhere. :class:`~fsm_exec.core.errors.ConfigError` for a malformed
    ``secret_keys``."""
    extra = listed_secret_words(params)
    redact = Redactor(params)
    hidden: list[str] = []

    def walk(v: Any, path: str) -> Any:
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                where = f"{path}.{k}" if path else str(k)
                if is_secret_key(k, extra):
                    out[k] = REDACTED
                    hidden.append(redact(where))
                else:
                    out[k] = walk(x, where)
            return out
        if isinstance(v, list | tuple):
            return [walk(x, f"{path}[{i}]") for i, x in enumerate(v)]
        return v

    return walk(params, ""), hidden, redact


def backtest_run(base_dir: Path | str, *, run_id: str | None = None,
                 params: Mapping[str, Any] | None = None, **options: Any) -> EventLogger:
    """A backtest :class:`EventLogger` for one run, in its own new directory
    ``<base_dir>/<run_id>``, whose first record (component ``BacktestRun``,
    ``run_started``) holds the run id and its ``params``. Give it to the manager and run
    in a ``with`` block::

        with ExecutionManager(..., "backtest", ..., event_logger=backtest_run(
                "runs", run_id=f"sma-{fast}-{slow}", params={"fast": fast, "slow": slow})):
            ...

    ``run_id`` (default: :func:`new_run_id`) is 1-64 letters, digits and ``._-``, and names
    one run: a directory already there is refused, never reused. ``params`` is plain data
    (numbers finite). The config's secret-key rule applies to it (a run's params are often
    the config itself): the value of a key that names a secret (``binance_api_key``, see
    :func:`~fsm_exec.boundary.config.is_secret_key`; ``secret_keys`` adds names) is
    journaled as ``"[REDACTED]"``, the record's ``redacted`` lists those keys (paths), and
    such a secret is redacted wherever else the params quote it. ``options`` go to
    :class:`EventLogger` (``buffer_bytes``, ``fsync`` ...). Raises
    :class:`~fsm_exec.InvalidArgumentError` for a bad id or params, and
    :class:`~fsm_exec.EventLogError` when the directory cannot be made.
    """
    if run_id is None:
        run_id = new_run_id()
    if not (isinstance(run_id, str) and _RUN_ID.fullmatch(run_id) and run_id.strip(".")):
        raise InvalidArgumentError(
            f"run_id: must be 1-64 letters, digits and ._- (and not only dots: it names a "
            f"directory), got {type(run_id).__name__} {shorten(safe_repr(run_id))}")
    if params is not None and not isinstance(params, Mapping):
        raise InvalidArgumentError(f"params: must be a mapping of the run's parameters, got "
                                   f"{type(params).__name__}")
    try:
        shown, hidden, redact = without_secrets(params or {})
    except ConfigError as exc:
        raise InvalidArgumentError(f"params: {'; '.join(exc.problems)}") from None
    conv = canonical(shown, path="params", redact=redact, finite="a run's parameters")
    if conv.problems:
        raise InvalidArgumentError("params: " + "; ".join(conv.problems))
    if "mode" in options or "new_dir" in options:
        raise InvalidArgumentError("options: a backtest run's journal is in backtest mode, "
                                   "in a new directory")
    run_dir = Path(base_dir) / run_id
    try:
        log = EventLogger(run_dir, "backtest", new_dir=True, **options)  # made here
    except EventLogError as exc:
        if not isinstance(exc.original_exception, FileExistsError):
            raise
        raise InvalidArgumentError(
            f"run_id: {run_dir} already exists; a run id names one run: give another (or "
            "leave run_id out for a fresh one)") from None
    log.run_id = run_id  # the manager's name: ExecutionManager[<run_id>] for health, metrics
    try:
        log.log_event(dt.datetime.now(dt.UTC), RUN_STARTED, RUN_COMPONENT,
                      {"run_id": run_id, "params": conv.wire,
                       **({"redacted": hidden} if hidden else {})})
    except BaseException:
        log.close()
        raise
    return log

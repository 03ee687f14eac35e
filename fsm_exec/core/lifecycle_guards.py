"""Guards of a user lifecycle: the conditions a transition may carry, checked and evaluated.

A guard is one condition on a transition (``transitions`` runs it as one of the transition's
``conditions``); all of a transition's guards must hold. The kinds:

- ``notional_above`` / ``notional_at_most`` ``{value}``: the block's notional, the sum over
  its instructions of ``|amount| x price`` (each instruction's own ``amount`` and ``price``
  fields), is above / at most ``value`` (a decimal string, e.g. ``"100000"``);
- ``venue_in`` ``{venues}``: some instruction's ``venue`` is one of ``venues``;
- ``action_in`` ``{actions}``: the block's ``action`` is one of ``actions``;
- ``clock_in_window`` / ``clock_outside_window`` ``{start, end, tz}``: the clock, read in the
  time zone ``tz`` (an IANA name, default ``UTC``), is / is not in ``[start, end)``
  (``"HH:MM"``; a window whose end is before its start runs over midnight);
- ``call`` ``{path}``: ``pkg.mod:func`` called with the :class:`GuardContext`; it returns a bool.

Every kind but ``call`` is pure. This module also resolves import paths (hooks and ``call``
guards): the one place a lifecycle imports code.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib
import math
import re
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from fsm_exec.core.errors import type_name

#: The guard kinds, with the argument names each takes (required; ``tz`` is optional).
GUARD_ARGS: Mapping[str, tuple[str, ...]] = {
    "notional_above": ("value",),
    "notional_at_most": ("value",),
    "venue_in": ("venues",),
    "action_in": ("actions",),
    "clock_in_window": ("start", "end"),
    "clock_outside_window": ("start", "end"),
    "call": ("path",),
}
_OPTIONAL_ARGS: Mapping[str, tuple[str, ...]] = {
    "clock_in_window": ("tz",), "clock_outside_window": ("tz",)}

#: An import path: ``package.module:attribute`` (the attribute may be dotted).
IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
#: A decimal written as a string (as the JSON Schema has it): digits, a point, an exponent.
_DECIMAL = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


class GuardInputError(ValueError):
    """A guard cannot be evaluated on this block (a notional guard over an instruction
    without ``amount`` or ``price``, a ``call`` guard that does not return a bool)."""


@attrs.frozen
class GuardContext:
    """What a guard (and a hook) sees: the canonical block, the clock, and where the block is.

    ``block``: the block as plain data (``block_id``, ``action``, ``priority``,
    ``instructions``); ``now``: the injected clock or the strategy's timestamp (aware, UTC);
    ``entered_at``: when the block entered its current state; ``state``: that state.
    """

    block: Mapping[str, Any]
    now: dt.datetime
    entered_at: dt.datetime
    state: str


def _as_decimal(value: object) -> decimal.Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str | decimal.Decimal):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        return None
    d = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value).strip())
    return d if d.is_finite() else None


def notional(block: Mapping[str, Any]) -> decimal.Decimal:
    """The block's notional: the sum over its instructions of ``|amount| x price``.

    Raises :class:`GuardInputError` naming the block and instruction that lacks a number.
    """
    total = decimal.Decimal(0)
    for i, instr in enumerate(block.get("instructions") or ()):
        values = []
        for key in ("amount", "price"):
            got = _as_decimal(instr.get(key) if isinstance(instr, Mapping) else None)
            if got is None:
                raise GuardInputError(
                    f"block {block.get('block_id')!r}: instruction {i} has no finite number "
                    f"{key!r}: a notional guard needs amount and price on every instruction")
            values.append(got)
        total += abs(values[0]) * values[1]
    return total


def _minutes(hhmm: str) -> int:
    m = _HHMM.fullmatch(hhmm)
    assert m is not None  # checked by guard_problems before any evaluation
    return int(m.group(1)) * 60 + int(m.group(2))


def in_window(now: dt.datetime, start: str, end: str, tz: str = "UTC") -> bool:
    """``now`` (aware), read in ``tz``, is in ``[start, end)`` (``HH:MM``; over midnight
    when ``end`` is before ``start``)."""
    local = now.astimezone(zoneinfo.ZoneInfo(tz))
    t, a, b = local.hour * 60 + local.minute, _minutes(start), _minutes(end)
    return a <= t < b if a < b else (t >= a or t < b)


def resolve(path: str) -> Callable[..., Any]:
    """The callable an import path ``pkg.mod:func`` names; ``LookupError`` says why not."""
    if not IMPORT_PATH.fullmatch(path):
        raise LookupError(f"{path!r} is not an import path 'package.module:function'")
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # an import error, or the module's own code failing
        raise LookupError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") \
            from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LookupError(f"module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise LookupError(f"{path!r} is not callable")
    return obj  # type: ignore[no-any-return]


def guard_holds(kind: str, args: Mapping[str, Any], ctx: GuardContext) -> bool:
    """Evaluate one guard (its arguments already checked by :func:`guard_problems`)."""
    if kind in ("notional_above", "notional_at_most"):
        limit = _as_decimal(args["value"])
        assert limit is not None
        total = notional(ctx.block)
        return total > limit if kind == "notional_above" else total <= limit
    if kind == "venue_in":
        venues = set(args["venues"])
        return any(isinstance(i, Mapping) and i.get("venue") in venues
                   for i in ctx.block.get("instructions") or ())
    if kind == "action_in":
        return ctx.block.get("action") in set(args["actions"])
    if kind in ("clock_in_window", "clock_outside_window"):
        inside = in_window(ctx.now, args["start"], args["end"], args.get("tz", "UTC"))
        return inside if kind == "clock_in_window" else not inside
    result = resolve(args["path"])(ctx)  # "call"
    if not isinstance(result, bool):
        raise GuardInputError(f"guard {args['path']} returned {type_name(result)}, "
                              "not a bool")
    return result


def _strings(value: object) -> bool:
    return (isinstance(value, list | tuple) and bool(value)
            and all(isinstance(v, str) and v for v in value))


def guard_problems(kind: str, args: Mapping[str, Any]) -> list[str]:
    """What is wrong with a guard's kind and arguments (empty: nothing). The ``call`` path
    is checked for its form here; whether it imports is :func:`resolve`'s business."""
    if kind not in GUARD_ARGS:
        return [f"unknown guard kind {kind!r} (known: {', '.join(GUARD_ARGS)})"]
    if not isinstance(args, Mapping):
        return [f"{kind}: the arguments must be a mapping"]
    need, optional = GUARD_ARGS[kind], _OPTIONAL_ARGS.get(kind, ())
    out = [f"{kind}: missing argument {a!r}" for a in need if a not in args]
    out += [f"{kind}: unknown argument {a!r} (takes {', '.join(need + optional)})"
            for a in args if a not in need + optional]
    if out:
        return out
    if kind.startswith("notional_"):
        value = args["value"]
        d = _as_decimal(value)
        if d is None or d < 0:
            out.append(f"{kind}: value must be a non-negative decimal number (a string such "
                       f"as \"100000\"), got {value!r}")
    elif kind in ("venue_in", "action_in"):
        name = "venues" if kind == "venue_in" else "actions"
        if not _strings(args[name]):
            out.append(f"{kind}: {name} must be a non-empty list of non-empty strings")
    elif kind.startswith("clock_"):
        for a in ("start", "end"):
            if not (isinstance(args[a], str) and _HHMM.fullmatch(args[a])):
                out.append(f"{kind}: {a} must be a time \"HH:MM\" (quote it in YAML, which "
                           f"reads 02:00 as a number), got {args[a]!r}")
        if not out and args["start"] == args["end"]:
            out.append(f"{kind}: start and end are both {args['start']}: the window is empty")
        tz = args.get("tz", "UTC")
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            out.append(f"{kind}: tz {tz!r} is not a known IANA time zone")
    elif not (isinstance(args["path"], str) and IMPORT_PATH.fullmatch(args["path"])):
        out.append(f"call: path must be an import path 'package.module:function', "
                   f"got {args['path']!r}")
    return out

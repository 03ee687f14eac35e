"""Plain data's two edges: how long an integer the journal holds, and deep copies.

Split out of :mod:`fsm_exec.boundary.canonical` (which uses both and re-exports them).
"""

from __future__ import annotations

from typing import Any

#: The most digits an integer may have: the journal writes one beyond 64 bits as its digits,
#: and Python converts at most this many (its default ``sys.get_int_max_str_digits()``).
MAX_INT_DIGITS = 4300
_MAX_INT_BITS = 14_286  # any integer of more bits has more than MAX_INT_DIGITS digits
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def int_problem(v: int) -> str | None:
    """Why the integer ``v`` has no journal form (more than :data:`MAX_INT_DIGITS` digits,
    or more than this interpreter converts to text), or ``None``."""
    if _I64_MIN <= v <= _I64_MAX:
        return None
    try:
        too_long = v.bit_length() > _MAX_INT_BITS or len(str(abs(v))) > MAX_INT_DIGITS
    except ValueError:  # beyond sys.get_int_max_str_digits()
        too_long = True
    if too_long:
        return (f"an integer of more than {MAX_INT_DIGITS} digits has no journal form "
                "(Python converts no more to text): give a Decimal or a float")
    return None


#: The mutable types of canonical data (what :func:`copy_data` copies at every depth).
_CONTAINERS = frozenset((dict, list))


def copy_data(v: Any) -> Any:
    """A deep copy of canonical data: its dicts and lists copied at every depth (the rest,
    ``str``, numbers, ``Decimal``, ``bool`` and ``None``, is immutable and shared)."""
    t = type(v)
    if t is dict:
        out = v.copy()
        try:
            if _CONTAINERS.isdisjoint(map(type, out.values())):
                return out  # flat (an instruction, mostly): its values are immutable
        except TypeError:  # a type that cannot be hashed (not canonical): looked at below
            pass
        for k, x in out.items():
            tx = type(x)
            if tx is dict or tx is list:
                out[k] = copy_data(x)
        return out
    if t is list:
        return [copy_data(x) if type(x) is dict or type(x) is list else x for x in v]
    return v

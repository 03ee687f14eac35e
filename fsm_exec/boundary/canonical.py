"""One canonical form at the boundary (the model: Temporal's data converter).

Blocks and the venue's replies cross into the manager once, through :func:`canonical`, into
plain, deep-copied Python data that the journal round-trips *exactly*; the venue, the
position handler and a recovered manager all see that form, crash or no crash.

Canonical data holds only ``None``, ``bool``, ``int``, ``float``, ``str``,
``decimal.Decimal``, ``list`` and ``dict`` (keys ``str`` or ``int``). On the way in:

- numpy scalars become ``int``/``float``/``bool``/``str``; numpy arrays become lists;
  a pandas ``Series`` becomes ``{index: value}``, a ``DataFrame`` ``{column: {index:
  value}}`` (what their ``to_dict()`` gives);
- datetimes (``pandas.Timestamp`` included) and dates become ISO 8601 strings; enums
  their value; tuples lists; attrs classes and dataclasses a dict of their fields;
  ``Path`` and ``UUID`` their text;
- every string (and key) holding a config secret is redacted (a venue's reply), or
  refused (a block: what a venue is told to do is never rewritten).

Refused, with the path and the reason: cycles, nesting deeper than :data:`MAX_DEPTH`,
strings with lone surrogates, ``bytes``, sets, ``NaT``/``NA``, timedeltas, numbers with no
exact JSON form (complex, fractions, long doubles), a ``Series`` or ``DataFrame`` whose index
(or columns) repeat a label, keys that are neither strings nor integers, any other object,
and any object whose own conversion (``int()``, ``to_dict()``, ``items()``...) raises.

In the journal (the *wire* form), what JSON cannot hold as such is tagged: integers beyond 64
bits ``{"__int__": "..."}``, non-finite floats ``{"__float__": "NaN"}``, decimals
``{"__decimal__": "1.5"}``, and a dict with integer keys (or one that would read as a tag)
``{"__dict__": [[key, value], ...]}``. :func:`fsm_exec.journal.codec.decode` undoes exactly
that (and refuses what :func:`to_wire` never writes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import numbers
import sys
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import attrs

from fsm_exec.boundary.plain import int_problem

# The timestamps' one parser and canonical form (boundary/timestamps.py), importable from here.
from fsm_exec.boundary.timestamps import EPOCH_RANGE as EPOCH_RANGE
from fsm_exec.boundary.timestamps import assume_zone as assume_zone
from fsm_exec.boundary.timestamps import canonical_timestamp as canonical_timestamp
from fsm_exec.boundary.timestamps import parse_timestamp as parse_timestamp
from fsm_exec.boundary.timestamps import timestamp_problem as timestamp_problem
from fsm_exec.core.errors import safe_repr, shorten, type_name
from fsm_exec.core.limits import MAX_DECIMAL_TEXT

#: How deep canonical data may nest (containers within containers).
MAX_DEPTH = 32

#: The journal's four tags (its one tag scheme; :mod:`fsm_exec.journal.codec` decodes them).
INT_TAG, FLOAT_TAG, DECIMAL_TAG, DICT_TAG = "__int__", "__float__", "__decimal__", "__dict__"
TAGS: frozenset[str] = frozenset({INT_TAG, FLOAT_TAG, DECIMAL_TAG, DICT_TAG})
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_PLAIN_SCALARS = (str, int, float, bool, type(None))


@attrs.frozen(slots=True)
class Converted:
    """A value that crossed the boundary: ``value`` (canonical), ``wire`` (its journal form;
    the same object when nothing needed a tag) and ``problems`` (``path: reason`` lines;
    when any, the value has no faithful form and must be refused)."""

    value: Any
    wire: Any
    problems: tuple[str, ...] = ()


def _key_path(path: str, key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def _is_timedelta64(v: object) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(v, numpy.timedelta64)


def _describe(v: object) -> str:
    return type_name(v)


def _exact_real(v: numbers.Real) -> float | Decimal | None:
    """``v`` exactly, as a ``Decimal`` (a fraction whose denominator divides a power of
    ten: ``Fraction(3, 10)`` is ``Decimal("0.3")``) or a float (a wide float that holds a
    float's value); ``None`` if neither holds it exactly (``Fraction(1, 3)``)."""
    try:
        if isinstance(v, numbers.Rational):
            n, d = int(v.numerator), int(v.denominator)
            twos = fives = 0
            rest = d
            while rest % 2 == 0:
                rest, twos = rest // 2, twos + 1
            while rest % 5 == 0:
                rest, fives = rest // 5, fives + 1
            if rest != 1:
                return None
            k = max(twos, fives)
            if k > 1000:  # a thousand decimal places: no amount, and no cheap one
                return None
            digits = Decimal(n * (10 ** k // d)).as_tuple()  # exact: no context rounds it
            return Decimal((digits.sign, digits.digits, -k))
        f = float(v)
        return f if math.isfinite(f) and v == f else None
    except (ArithmeticError, ValueError, TypeError):
        return None


class _Walk:
    """One conversion: collects problems, knows whether a tag is needed."""

    __slots__ = ("problems", "special", "redact", "refuse", "amounts", "finite", "seen")

    def __init__(self, redact: Callable[[str], str] | None, amounts: bool,
                 refuse: Callable[[str], bool] | None = None, finite: str = "") -> None:
        self.problems: list[tuple[str, str]] = []
        self.special = False  # some value needs a tag in the journal
        self.redact = redact
        self.refuse = refuse  # strings it finds are refused, not redacted
        self.amounts = amounts  # check amount / *_amount keys at every depth
        self.finite = finite  # no NaN or infinity anywhere in what it names ("a block")
        self.seen: set[int] = set()  # containers on the current path (cycles)

    def fail(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))

    def got(self, v: object) -> str:
        """``got <type> <repr>``: redacted before it is shortened."""
        text = safe_repr(v)
        if self.redact is not None:
            text = self.redact(text)
        return f"got {_describe(v)} {shorten(text)}"

    # -------------------------------------------------------------- scalars
    def text(self, s: str, path: str) -> str | None:
        if not s.isascii():
            try:
                s.encode()
            except UnicodeEncodeError:
                self.fail(path, "holds a lone surrogate (not valid Unicode text)")
                return None
        if self.refuse is not None:
            if self.refuse(s):
                self.fail(path, "holds a secret from the config (a block is never rewritten "
                                "and a secret never journaled: take it out)")
                return None
        elif self.redact is not None:
            s = self.redact(s)
        return str(s) if type(s) is not str else s

    def value(self, v: Any, path: str, depth: int) -> Any:
        t = type(v)
        if t is str:
            return self.text(v, path)
        if t is float:
            if not math.isfinite(v):
                if self.finite:
                    self.fail(path, f"must be a finite number (no NaN or infinity anywhere "
                                    f"in {self.finite}), {self.got(v)}")
                    return None
                self.special = True
            return v
        if t is int:
            if not _I64_MIN <= v <= _I64_MAX:
                problem = int_problem(v)
                if problem is not None:
                    self.fail(path, problem)
                    return None
                self.special = True
            return v
        if v is None or t is bool:
            return v
        if t is dict or t is list:
            return self.container(v, path, depth)
        return self.other(v, path, depth)

    def other(self, v: Any, path: str, depth: int) -> Any:
        """Everything but the exact plain types; an object whose own conversion raises is
        refused at its path, never let through as an exception."""
        try:
            return self._other(v, path, depth)
        except Exception as exc:  # a foreign object's int(), to_dict(), items() ...
            reason = safe_repr(exc)
            if self.redact is not None:
                reason = self.redact(reason)
            self.fail(path, f"{_describe(v)} could not be converted: {shorten(reason)}")
            return None

    def _other(self, v: Any, path: str, depth: int) -> Any:
        if _is_timedelta64(v):  # before the numbers: numpy counts it an Integral
            self.fail(path, "a timedelta has no JSON form: give seconds as a number")
            return None
        if isinstance(v, str):  # str subclasses: numpy.str_, StrEnum members
            if isinstance(v, enum.Enum):
                return self.value(v.value, path, depth)
            return self.text(str.__str__(v), path)
        if isinstance(v, enum.Enum):
            return self.value(v.value, path, depth)
        if isinstance(v, Decimal):
            if self.finite and not v.is_finite():
                self.fail(path, f"must be a finite number (no NaN or infinity anywhere in "
                                f"{self.finite}), {self.got(v)}")
                return None
            return self.decimal(v, path)
        if isinstance(v, numbers.Integral):  # numpy integers (numpy.bool_ is no Integral)
            return self.value(int(v), path, depth)
        if isinstance(v, float):  # float subclasses (numpy.float64)
            return self.value(float(v), path, depth)
        if isinstance(v, numbers.Real):
            itemsize = getattr(v, "itemsize", None)  # numpy.float16/32 (exact as a float)
            if itemsize is not None and itemsize <= 8 and hasattr(v, "dtype"):
                return self.value(float(v), path, depth)
            exact = _exact_real(v)  # a Fraction, a numpy.longdouble, a Real of its own
            if exact is not None:
                return self.value(exact, path, depth)
            self.fail(path, "no float or Decimal holds this number exactly, so it has no "
                            f"exact JSON form: give a float or a Decimal, {self.got(v)}")
            return None
        if isinstance(v, Mapping | list | tuple):
            return self.container(v, path, depth)
        return self.foreign(v, path, depth)

    def foreign(self, v: Any, path: str, depth: int) -> Any:
        """Objects from outside the standard types: dates, numpy, pandas, records."""
        if isinstance(v, dt.datetime | dt.date | dt.time):
            if v != v:  # pandas.NaT is a datetime that is not equal to itself
                self.fail(path, "NaT (a missing timestamp) has no value: use None")
                return None
            return v.isoformat()
        if isinstance(v, PurePath | uuid.UUID):
            return self.text(str(v), path)
        if isinstance(v, bytes | bytearray | memoryview):
            self.fail(path, "bytes have no JSON form: encode them (hex or base64) first")
            return None
        if isinstance(v, set | frozenset):
            self.fail(path, "a set has no order (and no JSON form): give a sorted list")
            return None
        if isinstance(v, complex | numbers.Complex):
            self.fail(path, f"{_describe(v)} has no JSON form")
            return None
        if isinstance(v, dt.timedelta):
            self.fail(path, "a timedelta has no JSON form: give seconds as a number")
            return None
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            if isinstance(v, numpy.ndarray):
                return self.array(v, path, depth)
            if isinstance(v, numpy.datetime64):
                if numpy.isnat(v):
                    self.fail(path, "NaT (a missing timestamp) has no value: use None")
                    return None
                return str(numpy.datetime_as_string(v))
            if isinstance(v, numpy.generic):
                return self.value(v.item(), path, depth)
        pandas = sys.modules.get("pandas")
        if pandas is not None:
            if isinstance(v, pandas.Series | pandas.DataFrame):
                labels = [("index", v.index)] + ([("columns", v.columns)]
                                                 if isinstance(v, pandas.DataFrame) else [])
                for name, index in labels:
                    if not index.is_unique:
                        self.fail(path, f"a {_describe(v)} whose {name} repeats a label "
                                        "(to_dict() would keep one value): make it unique")
                        return None
                return self.value(v.to_dict(), path, depth)
            if v is pandas.NA:
                self.fail(path, "pandas.NA (a missing value) has no value: use None")
                return None
            if isinstance(v, pandas.Index):
                return self.value(v.tolist(), path, depth)
        if attrs.has(type(v)):
            return self.container(attrs.asdict(v, recurse=False), path, depth)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return self.container({f.name: getattr(v, f.name)
                                   for f in dataclasses.fields(v)}, path, depth)
        self.fail(path, f"{_describe(v)} has no faithful JSON form: give plain data "
                        "(dict, list, str, int, float, bool, None, Decimal)")
        return None

    def array(self, a: Any, path: str, depth: int) -> Any:
        kind = a.dtype.kind
        if kind in "biuf":
            if a.dtype.itemsize > 8 and kind == "f":
                self.fail(path, f"{a.dtype} has no exact JSON form: give float64")
                return None
            return self.value(a.tolist(), path, depth)
        if kind in "MOU":  # datetimes, objects, text: element by element
            return self.value([self.value(x, f"{path}[{i}]", depth + 1)
                               for i, x in enumerate(a.tolist() if kind != "M" else list(a))],
                              path, depth)
        self.fail(path, f"a numpy array of {a.dtype} has no JSON form")
        return None

    # -------------------------------------------------------------- containers
    def container(self, v: Any, path: str, depth: int) -> Any:
        if depth >= MAX_DEPTH:
            self.fail(path, f"nested deeper than {MAX_DEPTH} levels")
            return None
        ident = id(v)
        if ident in self.seen:
            self.fail(path, "a cycle: this container holds itself")
            return None
        self.seen.add(ident)
        try:
            if isinstance(v, Mapping):
                return self.mapping(v, path, depth + 1)
            return [self.value(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v)]
        finally:
            self.seen.discard(ident)

    def mapping(self, m: Mapping[Any, Any], path: str, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for k, x in m.items():
            key = self.key(k, path)
            if key is None:
                continue
            sub = _key_path(path, key)
            if key in out:
                self.fail(sub, f"two keys become {key!r} (keys must stay distinct)")
                continue
            if self.amounts and isinstance(key, str) and (
                    key == "amount" or key.endswith("_amount")):
                out[key] = self.amount(x, sub)
            else:
                out[key] = self.value(x, sub, depth)
        if len(out) == 1 and next(iter(out)) in TAGS:
            self.special = True  # would read back as a tag: the journal wraps it
        return out

    def key(self, k: Any, path: str) -> str | int | None:
        t = type(k)
        if t is str:
            return self.text(k, _key_path(path, "<key>"))
        if t is int:
            problem = int_problem(k)
            if problem is not None:
                self.fail(_key_path(path, "<key>"), problem)
                return None
            self.special = True
            return int(k)
        if isinstance(k, enum.Enum):
            return self.key(k.value, path)
        if isinstance(k, str):
            return self.text(str.__str__(k), path)
        if isinstance(k, numbers.Integral) and not isinstance(k, bool) and \
                type_name(k) != "bool_" and not _is_timedelta64(k):
            return self.key(int(k), path)
        if isinstance(k, dt.datetime | dt.date) and k == k:
            return k.isoformat()
        self.fail(_key_path(path, "<key>"), f"a key must be a string or an integer, got "
                                           f"{_describe(k)}")
        return None

    def decimal(self, v: Decimal, path: str) -> Decimal | None:
        """A ``Decimal`` whose text the journal holds (at most ``MAX_DECIMAL_TEXT``
        characters: its reader reads no longer one)."""
        n = len(str(v))
        if n > MAX_DECIMAL_TEXT:
            self.fail(path, f"a Decimal of {n} characters: the journal holds at most "
                            f"{MAX_DECIMAL_TEXT} (round it, or give a float)")
            return None
        self.special = True
        return v

    def amount(self, x: Any, path: str) -> Any:
        """``amount`` and ``*_amount``: a finite number (numpy's included), never a bool."""
        if isinstance(x, bool) or type_name(x) == "bool_":
            self.fail(path, f"must be a finite number, {self.got(x)}")
            return None
        if isinstance(x, Decimal):
            if not x.is_finite():
                self.fail(path, f"must be a finite number, {self.got(x)}")
                return None
            return self.decimal(x, path)
        if isinstance(x, numbers.Real):
            v = self.value(x, path, 0)
            if isinstance(v, float) and not math.isfinite(v):
                self.fail(path, f"must be a finite number, {self.got(x)}")
                return None
            return v
        self.fail(path, f"must be a finite number, {self.got(x)}")
        return None


def canonical(value: Any, *, path: str = "$", redact: Callable[[str], str] | None = None,
              amounts: bool = False, refuse: Callable[[str], bool] | None = None,
              finite: str = "") -> Converted:
    """Convert ``value`` to its canonical form (see the module's doc for the rules).

    ``redact`` is applied to every string and key (and to the values quoted in problems);
    with ``refuse``, a string or key it finds (a secret) is a problem instead, and nothing
    is redacted; ``amounts`` checks ``amount`` and ``*_amount`` keys at every depth
    (blocks); ``finite`` (what ``value`` is, for the problem's text: ``"a block"``) refuses
    NaN and infinities (float or Decimal) at every depth."""
    walk = _Walk(redact, amounts, refuse, finite)
    out = walk.value(value, path, 0)
    problems = tuple(f"{p}: {r}" for p, r in walk.problems)
    if problems:
        return Converted(None, None, problems)
    return Converted(out, to_wire(out) if walk.special else out)


def plain_copy(v: Any, finds: Callable[[str], bool] | None = None, depth: int = 0) -> Any:
    """A deep copy of ``v`` if it is already canonical data that the journal holds as it
    is (dicts with ASCII string keys, lists, finite floats, 64-bit ints, ASCII text,
    bools, ``None``; nothing ``finds`` calls a secret); else :data:`NOT_PLAIN` (then
    :func:`canonical` decides). The hot path for a venue's reply."""
    t = type(v)
    if t is str:
        if not v.isascii() or (finds is not None and finds(v)):
            return NOT_PLAIN
        return v
    if t is float:
        return v if v - v == 0 else NOT_PLAIN  # inf - inf and nan - nan are nan
    if t is int:
        return v if _I64_MIN <= v <= _I64_MAX else NOT_PLAIN
    if v is None or t is bool:
        return v
    if depth >= MAX_DEPTH:
        return NOT_PLAIN
    if t is dict:
        if len(v) == 1 and next(iter(v)) in TAGS:
            return NOT_PLAIN
        out = {}
        for k, x in v.items():
            if type(k) is not str or not k.isascii() or (finds is not None and finds(k)):
                return NOT_PLAIN
            tx = type(x)  # plain scalars checked here, without a call
            if tx is float:
                if x - x != 0:
                    return NOT_PLAIN
            elif tx is str:
                if not x.isascii() or (finds is not None and finds(x)):
                    return NOT_PLAIN
            elif not (tx is bool or x is None or (tx is int and _I64_MIN <= x <= _I64_MAX)):
                x = plain_copy(x, finds, depth + 1)
                if x is NOT_PLAIN:
                    return NOT_PLAIN
            out[k] = x
        return out
    if t is list:
        copied = []
        for x in v:
            c = plain_copy(x, finds, depth + 1)
            if c is NOT_PLAIN:
                return NOT_PLAIN
            copied.append(c)
        return copied
    return NOT_PLAIN


#: What :func:`plain_copy` returns for a value that needs the careful conversion.
NOT_PLAIN: Any = object()


def is_plain(v: Any) -> bool:
    """True if ``v`` is a plain scalar the journal holds as is (the hot path's test)."""
    t = type(v)
    if t is float:
        return math.isfinite(v)
    if t is int:
        return bool(_I64_MIN <= v <= _I64_MAX)
    return t is str or t is bool or v is None


# ------------------------------------------------------------------------ the wire form


def to_wire(v: Any) -> Any:
    """Canonical data as JSON data: tags where JSON cannot hold a value as such."""
    t = type(v)
    if t is float:
        if math.isfinite(v):
            return v
        return {FLOAT_TAG: "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")}
    if t is int:
        return v if _I64_MIN <= v <= _I64_MAX else {INT_TAG: str(v)}
    if t is dict:
        if any(type(k) is not str for k in v) or (len(v) == 1 and next(iter(v)) in TAGS):
            return {DICT_TAG: [[to_wire(k), to_wire(x)] for k, x in v.items()]}
        return {k: to_wire(x) for k, x in v.items()}
    if t is list:
        return [to_wire(x) for x in v]
    if isinstance(v, Decimal):
        return {DECIMAL_TAG: str(v)}
    return v


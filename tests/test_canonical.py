"""The canonical converter, rule by rule: what each kind of value becomes, and what is
refused with which reason."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import fractions
import uuid
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

import attrs
import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_exec.boundary.canonical import (
    MAX_DEPTH,
    NOT_PLAIN,
    TAGS,
    canonical,
    canonical_timestamp,
    plain_copy,
    timestamp_problem,
    to_wire,
)
from fsm_exec.boundary.timestamps import utc_iso
from fsm_exec.journal.codec import decode


class Color(enum.Enum):
    RED = 1


class Side(enum.StrEnum):
    BUY = "buy"


class Asset(enum.Enum):
    ETH = "ETH"


@dataclasses.dataclass
class Fill:
    qty: float
    side: str


@attrs.define
class Order:
    order_id: int
    tags: tuple[str, ...]


@pytest.mark.parametrize(("given", "expected"), [
    (np.int32(7), 7), (np.float16(0.5), 0.5), (np.bool_(False), False),
    (np.str_("eth"), "eth"), (Side.BUY, "buy"), (Color.RED, 1),
    (dt.date(2025, 1, 2), "2025-01-02"), (dt.time(1, 2), "01:02:00"),
    (np.datetime64("2025-01-02T03:04"), "2025-01-02T03:04"),
    (PurePosixPath("/a/b"), "/a/b"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (Fill(1.0, "buy"), {"qty": 1.0, "side": "buy"}),
    (Order(3, ("x",)), {"order_id": 3, "tags": ["x"]}),
    (pd.Index([1, 2]), [1, 2]),
    (np.array(["a", "b"]), ["a", "b"]),
    (np.array([np.datetime64("2025-01-01")]), ["2025-01-01"]),
    (np.array([{"a": 1}], dtype=object), [{"a": 1}]),
    ({Side.BUY: 1, np.int64(2): "x", dt.date(2025, 1, 1): 3},
     {"buy": 1, 2: "x", "2025-01-01": 3}),
    ((1, (2, 3)), [1, [2, 3]]),
    (fractions.Fraction(3, 10), Decimal("0.3")), (fractions.Fraction(-7, 8), Decimal("-0.875")),
    (fractions.Fraction(1, 2 ** 70),
     Decimal("8.470329472543003390683225006796419620513916015625E-22")),
    (np.longdouble(1.5), 1.5),
])
def test_values_become_their_canonical_form(given: Any, expected: Any) -> None:
    """Each kind of value converts as the module documents."""
    conv = canonical(given)
    assert conv.problems == ()
    assert conv.value == expected and type(conv.value) is type(expected)


@pytest.mark.parametrize(("given", "why"), [
    (fractions.Fraction(1, 3), "no float or Decimal holds this number exactly"),
    (fractions.Fraction(1, 2 ** 4000), "no float or Decimal holds this number exactly"),
    (np.longdouble(1) / 3, "no float or Decimal holds this number exactly"),
    (np.array([1.5], dtype=np.longdouble), "no exact JSON form: give float64"),
    (np.array([1 + 2j]), "a numpy array of complex128 has no JSON form"),
    (1 + 2j, "complex has no JSON form"),
    (dt.timedelta(seconds=1), "a timedelta has no JSON form"),
    (np.datetime64("NaT"), "NaT"),
    (pd.NA, "pandas.NA"),
    (bytearray(b"x"), "bytes have no JSON form"),
    (frozenset({1}), "a set has no order"),
    ({(1, 2): "x"}, "a key must be a string or an integer, got tuple"),
    ({"ETH": 1, Asset.ETH: 2}, "two keys become 'ETH'"),
    ({"\udc80": 1}, "lone surrogate"),
])
def test_values_without_a_faithful_form_are_refused_with_the_reason(given: Any,
                                                                    why: str) -> None:
    """What cannot be held exactly is refused, naming the path and why."""
    conv = canonical(given)
    assert conv.value is None and any(why in p for p in conv.problems), conv.problems
    assert all(p.startswith("$") for p in conv.problems)


def test_nesting_is_bounded() -> None:
    """Nesting up to MAX_DEPTH converts; one level more is refused at its path."""
    ok: Any = 1
    for _ in range(MAX_DEPTH):
        ok = [ok]
    assert canonical(ok).problems == ()
    assert "nested deeper" in canonical([ok]).problems[0]


def test_a_list_holding_itself_is_a_cycle() -> None:
    """A list that holds itself is refused as a cycle, not a recursion error."""
    loop: list[Any] = [1]
    loop.append(loop)
    assert canonical(loop).problems == ("$[1]: a cycle: this container holds itself",)


def test_a_container_seen_twice_is_no_cycle() -> None:
    """The same object at two places (not inside itself) converts, as two copies."""
    shared = {"a": 1}
    conv = canonical({"x": shared, "y": shared})
    assert conv.problems == () and conv.value == {"x": {"a": 1}, "y": {"a": 1}}
    assert conv.value["x"] is not conv.value["y"] and conv.value["x"] is not shared


def test_amounts_are_checked_only_when_asked() -> None:
    """amount keys must be finite numbers in blocks; a venue reply may hold a NaN amount."""
    assert canonical({"amount": "1"}, amounts=True).problems
    assert canonical({"amount": True}, amounts=True).problems
    assert canonical({"amount": Decimal("NaN")}, amounts=True).problems
    assert canonical({"amount": Decimal("1.5")}, amounts=True).value == {
        "amount": Decimal("1.5")}
    nan = canonical({"amount": float("nan")})
    assert nan.problems == () and nan.wire == {"amount": {"__float__": "NaN"}}


@pytest.mark.parametrize("value", [
    {"plain": [1, 2.5, "x", None, True]},
    {1: "int key", "s": {"__decimal__": "1"}},
    {"big": -(2 ** 70), "inf": float("-inf"), "d": Decimal("-0.00")},
    [{"__dict__": []}, {"__int__": 5}],
])
def test_the_wire_form_round_trips_through_json(value: Any) -> None:
    """to_wire then JSON then decode gives back exactly the canonical value."""
    back = decode(orjson.loads(orjson.dumps(to_wire(value))))
    assert repr(back) == repr(value)


def test_a_dict_that_reads_as_a_tag_is_wrapped_in_the_journal() -> None:
    """A caller's {"__decimal__": "x"} stays that dict: the journal wraps it, so it never
    reads back as a Decimal."""
    conv = canonical({"__decimal__": "x"})
    assert conv.value == {"__decimal__": "x"}
    assert conv.wire == {"__dict__": [["__decimal__", "x"]]}
    assert decode(conv.wire) == conv.value


def test_plain_data_is_its_own_wire_form() -> None:
    """When nothing needs a tag, the journal form is the canonical object itself."""
    conv = canonical({"a": [1, "b"]})
    assert conv.wire is conv.value


def test_redaction_applies_to_values_and_keys() -> None:
    """Every string and key passes through the redactor."""
    conv = canonical({"tok-SECRET": ["x tok-SECRET"]},
                     redact=lambda s: s.replace("tok-SECRET", "[REDACTED]"))
    assert conv.value == {"[REDACTED]": ["x [REDACTED]"]}


@pytest.mark.parametrize(("ts", "problem"), [
    ("x" * 65, "not an ISO 8601 time"),
    (True, "a bool"),
    (dt.date(2025, 1, 1), "a date"),
])
def test_other_timestamps_are_refused(ts: Any, problem: str) -> None:
    """Too-long strings, bools and dates are not timestamps; the reason says what is."""
    assert canonical_timestamp(ts) is None
    assert problem in timestamp_problem(ts)


@given(st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5,
                                                                                minutes=30)),
                                                dt.timezone(-dt.timedelta(seconds=3601))])))
def test_canonical_timestamp_is_isoformat_in_utc(ts: dt.datetime) -> None:
    """The journal's form of an aware datetime is its UTC instant's ``isoformat()``,
    whichever way it is made (orjson for a datetime in UTC: the same text)."""
    try:
        expected: str | None = ts.astimezone(dt.UTC).isoformat()
    except OverflowError:  # no UTC instant in a datetime's range
        expected = None
    assert canonical_timestamp(ts) == expected
    if ts.tzinfo is dt.UTC:
        assert utc_iso(ts) == ts.isoformat()


def test_a_pandas_timestamp_keeps_its_nanoseconds() -> None:
    """A datetime subclass is not written by orjson (which would drop nanoseconds)."""
    ts = pd.Timestamp("2025-01-01T00:00:00.000000001", tz="UTC")
    assert canonical_timestamp(ts) == "2025-01-01T00:00:00.000000001+00:00"


# ------------------------------------------------------------- plain_copy (the hot path)
_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["sk-CANARY", "é", "__int__"]), st.decimals(allow_nan=False).map(Decimal))
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.sampled_from(sorted(TAGS)),
                                  st.just("sk-CANARY"), st.integers(0, 3)),
                        inner, max_size=3)),
    max_leaves=12)


def _secret(s: str) -> bool:
    return "CANARY" in s


@given(_values)
@settings(max_examples=300)
def test_plain_copy_is_the_canonical_value_or_declines(value: Any) -> None:
    """The hot path never disagrees with the careful conversion: what it copies is exactly
    the canonical (and wire) form, a fresh object the caller's later edits cannot reach;
    anything it cannot hold as it is (tags, secrets, tuples, big ints, non-finite floats,
    non-ASCII text) it declines."""
    copied = plain_copy(value, _secret)
    conv = canonical(value, refuse=_secret)
    if copied is NOT_PLAIN:
        return
    assert not conv.problems
    assert repr(copied) == repr(conv.value) == repr(conv.wire)
    if isinstance(value, (dict, list)):
        assert copied is not value
        before = repr(copied)
        if isinstance(value, dict):
            value["added later"] = 1
        else:
            value.append(1)
        assert repr(copied) == before


@pytest.mark.parametrize("value", [
    {"__int__": "5"}, [{"__decimal__": "1"}], {"a": {"__dict__": []}},
    "sk-CANARY", {"sk-CANARY": 1}, {"a": "sk-CANARY"}, [1.0, float("nan")], {"x": float("inf")},
    2 ** 64, {"n": 2 ** 64}, "é", {"é": 1}, {"a": "é"}, (1,), {1: "a"}, Decimal("1"),
])
def test_plain_copy_declines_what_needs_the_careful_path(value: Any) -> None:
    """Each way a value can need a tag, a refusal or a conversion, at the top and nested."""
    assert plain_copy(value, _secret) is NOT_PLAIN


@given(st.integers(-10 ** 30, 10 ** 30), st.integers(0, 80), st.integers(0, 80),
       st.sampled_from([1, 3, 7, 11]))
@settings(max_examples=200)
def test_a_fraction_is_its_exact_decimal_or_refused(n: int, twos: int, fives: int,
                                                    other: int) -> None:
    """A Fraction whose denominator divides a power of ten becomes the Decimal equal to it
    to the last digit (no context rounds it); any other has no exact form and is refused."""
    value = fractions.Fraction(n, 2 ** twos * 5 ** fives * other)
    conv = canonical(value)
    if value.denominator % 3 and value.denominator % 7 and value.denominator % 11:
        assert isinstance(conv.value, Decimal)
        assert fractions.Fraction(conv.value) == value
        assert decode(orjson.loads(orjson.dumps(conv.wire))) == conv.value
    else:
        assert conv.problems and "exactly" in conv.problems[0]

"""The manager's own configuration, the environment it reads once, and secret redaction."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import cattrs

from fsm_exec.boundary.encodings import base64_runs, secret_pattern
from fsm_exec.core.errors import ConfigError, type_name

EXECUTION_MODES: tuple[str, ...] = ("backtest", "live")
ENVIRONMENTS: tuple[str, ...] = ("dev", "staging", "production")
DEPLOYMENT_MODES: tuple[str, ...] = ("local", "docker")
SHARE_CLASSES: tuple[str, ...] = ("usdt_stable", "eth_directional")


def _is_bool(v: object) -> bool:
    return isinstance(v, bool) or type_name(v) == "bool_"  # numpy.bool_ is no int


def _is_int(v: object) -> bool:
    """An integer: ``int`` or any ``numbers.Integral`` (numpy's included), never a bool."""
    return isinstance(v, numbers.Integral) and not _is_bool(v)


def _is_number(v: object) -> bool:
    """A real number: any ``numbers.Real`` (numpy's included), never a bool."""
    return isinstance(v, numbers.Real) and not _is_bool(v)


def _describe(v: object) -> str:
    return type_name(v)


# (field, kind, low, high, low inclusive) for the numeric fields; the high bound is exclusive.
def _range_text(kind: type, low: float, high: float, closed: bool) -> str:
    """A field's range as its error states it: ``from 1 to 10,000,000`` for an int (the
    values it takes), ``> 0 and < 60`` for a number."""
    if kind is int:
        first = int(low) if closed else int(low) + 1
        return (f"an int from {first:,} to {int(high) - 1:,}" if high != math.inf
                else f"an int of at least {first:,}")
    bound = f"< {high:g}" if high != math.inf else "finite"
    return f"{'>=' if closed else '>'} {low:g} and {bound}"


_NUMERIC: tuple[tuple[str, type, float, float, bool], ...] = (
    ("execution_timeout", float, 0, 300, False),
    ("reconciliation_timeout", float, 0, 60, False),
    ("max_retries", int, 0, 10, False),
    ("retry_delay_seconds", float, 0, 60, False),
    ("max_retry_delay_seconds", float, 0, 300, False),
    ("max_queue_size", int, 0, math.inf, False),
    ("duplicate_window", int, 0, 1_000_001, False),  # a full window fits a checkpoint
    ("not_found_confirmations", int, 0, 101, False),
    ("not_found_interval_seconds", float, 0, 300, True),
    ("not_found_min_age_seconds", float, 0, 3600, True),
)
#: Alternative names the system-wide config may use for a field.
ALIASES: Mapping[str, str] = {"max_retry_attempts": "max_retries"}


@attrs.frozen(kw_only=True)
class ExecutionConfig:
    """The fields of the system-wide config the ExecutionManager uses.

    Build it from the system-wide mapping with :meth:`from_dict` (keys it does not use are
    ignored, except one typo away from a field of its own, refused naming that field;
    ``max_retry_attempts`` is accepted for ``max_retries``), or directly with
    keyword arguments. Every field is checked at construction; every problem is reported
    at once in a :class:`ConfigError` (a ``ValueError``) naming the fields. No value is coerced:
    ``"30"`` is not a timeout.
    """

    strategy_mode: str | None = None
    share_class: str | None = None
    initial_capital: float | None = None
    execution_timeout: float = 30
    reconciliation_timeout: float = 10
    max_retries: int = 3
    retry_delay_seconds: float = 0.1
    max_retry_delay_seconds: float = 5.0
    max_queue_size: int = 10_000
    duplicate_window: int = 10_000
    not_found_confirmations: int = 3
    not_found_interval_seconds: float = 1.0
    not_found_min_age_seconds: float = 5.0
    asset_field: str = "token"

    def __attrs_post_init__(self) -> None:
        problems: list[str] = []
        field = self.asset_field
        if not (isinstance(field, str) and field.isascii() and field.isprintable()
                and field.strip() == field and field):
            problems.append(f"asset_field: must be the name of an instruction field (a "
                            f"non-empty printable ASCII string with no surrounding spaces), "
                            f"got {_describe(field)}")
        elif field == "amount" or field.endswith("_amount"):
            problems.append("asset_field: an amount field holds a number, never the asset's "
                            "name: name the field that holds it (token, symbol ...)")
        if self.strategy_mode is not None and (
                not isinstance(self.strategy_mode, str) or not self.strategy_mode.strip()):
            problems.append(f"strategy_mode: must be a non-empty string, got "
                            f"{_describe(self.strategy_mode)}")
        if self.share_class is not None and self.share_class not in SHARE_CLASSES:
            problems.append(f"share_class: must be one of {', '.join(SHARE_CLASSES)}")
        if self.initial_capital is not None:
            if not (_is_number(self.initial_capital)
                    and 0 < self.initial_capital < math.inf):
                problems.append("initial_capital: must be a finite number > 0")
            else:  # numpy numbers become plain ones
                v = self.initial_capital
                object.__setattr__(self, "initial_capital",
                                   int(v) if _is_int(v) else float(v))
        for name, kind, low, high, closed in _NUMERIC:
            v = getattr(self, name)
            ok_type = _is_int(v) if kind is int else _is_number(v)
            if not ok_type:
                problems.append(f"{name}: must be {'an int' if kind is int else 'a number'}, "
                                f"got {_describe(v)}")
                continue
            plain = int(v) if _is_int(v) else float(v)  # numpy numbers become plain ones
            if not ((low <= plain if closed else low < plain) and plain < high):
                problems.append(f"{name}: must be {_range_text(kind, low, high, closed)}, "
                                f"got {plain!r}")
            elif type(v) is not type(plain):
                object.__setattr__(self, name, plain)
        delays = {"retry_delay_seconds", "max_retry_delay_seconds"}
        if (not delays & {p.partition(":")[0] for p in problems}
                and self.max_retry_delay_seconds < self.retry_delay_seconds):
            problems.append("max_retry_delay_seconds: must be >= retry_delay_seconds")
        if problems:
            raise ConfigError(problems)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> ExecutionConfig:
        """Build the config from the system-wide config mapping; unused keys are ignored,
        a near miss of an own field is refused (:func:`near_misses`)."""
        if not isinstance(mapping, Mapping):
            raise ConfigError([f"config: must be a mapping, got {_describe(mapping)}"])
        data = dict(mapping)
        # Every problem at once: the near misses, an alias given twice, and what the fields
        # themselves refuse (a wrong type, a NaN), in one ConfigError.
        problems = near_misses(data)
        written: dict[str, str] = {}  # field -> the key the user wrote for it
        for alias, name in ALIASES.items():
            if alias in data:
                value = data.pop(alias)
                if name in data and data[name] != value:
                    problems.append(f"{name}: given twice (as {name} and {alias}) with "
                                    "different values")
                    continue
                data[name] = value
                written[name] = alias
        try:
            config = _converter.structure(data, cls)
        except cattrs.BaseValidationError as group:
            # cattrs wraps what __init__ raised; hand back our own error, naming the keys
            # the user wrote.
            own = [e for e in group.exceptions if isinstance(e, ConfigError)]
            if own:
                problems += [_as_written(p, written) for p in own[0].problems]
            else:
                problems += cattrs.transform_error(group)
        if problems:
            raise ConfigError(problems) from None
        return config

    def digest(self) -> str:
        """A short stable hash of the fields (for logs: never the values themselves)."""
        hit = _DIGESTS.get(id(self))
        if hit is not None and hit[0] is self:  # a config shared by many managers
            return hit[1]
        # Equal configs hash alike: 30 and 30.0 are the same timeout.
        fields = {k: int(v) if isinstance(v, float) and v.is_integer() else v
                  for k, v in attrs.asdict(self).items()
                  if not (k in _HASHED_IF_CHANGED and v == _HASHED_IF_CHANGED[k])}
        raw = json.dumps(fields, sort_keys=True, default=str)
        digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
        if len(_DIGESTS) >= _CACHED:
            _DIGESTS.clear()
        _DIGESTS[id(self)] = (self, digest)
        return digest


#: Fields added after journals began to carry the config's digest: hashed only when they
#: differ from their default, so a config that leaves them alone keeps the digest earlier
#: versions wrote.
_HASHED_IF_CHANGED: Mapping[str, object] = {"asset_field": "token"}


def _one_edit(a: str, b: str) -> bool:
    """True if ``a`` becomes ``b`` by one insertion, deletion, substitution, or swap of two
    neighbouring characters."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return (a[i + 1:] == b[i + 1:] or a[i + 1:] == b[i:] or a[i:] == b[i + 1:]
            or (a[i + 2:] == b[i + 2:] and a[i:i + 2] == b[i:i + 2][::-1]))


def near_misses(keys: Iterable[object]) -> list[str]:
    """The keys one typo away from a field of the manager's own (``max_retires``): the
    config is shared by every component, so unknown keys are allowed, but a near miss of
    an own field would silently leave that field at its default. Each names the field it
    probably meant (closest first, by :func:`difflib.get_close_matches`)."""
    own = [*attrs.fields_dict(ExecutionConfig), *ALIASES]
    problems = []
    for key in keys:
        if not isinstance(key, str) or key in own:
            continue
        meant = [m for m in difflib.get_close_matches(key, own, n=3, cutoff=0.6)
                 if _one_edit(key, m)]
        if meant:
            problems.append(f"{key!r}: not a field of the execution manager; did you mean "
                            f"{meant[0]}? (a near miss would leave {meant[0]} at its "
                            "default)")
    return problems


def _as_written(problem: str, written: Mapping[str, str]) -> str:
    name, sep, rest = problem.partition(":")
    return f"{written[name]}{sep}{rest}" if name in written else problem


# cattrs builds the instance (unused keys ignored, defaults filled); scalars pass through
# untouched so that ExecutionConfig's own checks see, and refuse, wrongly typed values.
_converter = cattrs.Converter()
for _t in (str, int, float):
    _converter.register_structure_hook(_t, lambda v, _t: v)


@attrs.frozen
class Environment:
    """The system-level environment variables, read once at initialization."""

    execution_mode: str
    environment: str
    deployment_mode: str

    @classmethod
    def read(cls, execution_mode: str | None,
             environ: Mapping[str, str] | None = None) -> Environment:
        """Read ``BASIS_*`` variables (``execution_mode`` wins over the variable if given)."""
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def pick(value: object, var: str, default: str, allowed: tuple[str, ...]) -> str:
            if value is None:
                value, where = env.get(var) or default, var  # empty counts as unset
            else:
                where = "execution_mode"
            if value not in allowed:
                # Never echo the value: only the mode names may reach logs and messages.
                problems.append(f"{where}: must be one of {', '.join(allowed)} "
                                f"(got an unrecognised {_describe(value)})")
                return default
            return str(value)

        mode = pick(execution_mode, "BASIS_EXECUTION_MODE", "backtest", EXECUTION_MODES)
        environment = pick(None, "BASIS_ENVIRONMENT", "dev", ENVIRONMENTS)
        deployment = pick(None, "BASIS_DEPLOYMENT_MODE", "local", DEPLOYMENT_MODES)
        if problems:
            raise ConfigError(problems)
        return cls(mode, environment, deployment)


#: Words that make a config key's value a secret on their own (matched against the words
#: of the key: ``apiSecret``, ``API-PASSWORD`` and ``binance.secret`` all qualify).
SECRET_WORDS: frozenset[str] = frozenset({
    "apikey", "keys", "secret", "password", "passwd", "passphrase", "privkey", "credential",
    "credentials", "mnemonic", "auth", "signature", "jwt", "bearer", "authorization",
    "authorisation", "cookie", "sessionid", "csrf", "xsrf", "otp", "totp"})
#: Words that make a key secret even run together with others (``APISECRET``,
#: ``clientsecret``, ``dbpassword``, ``setcookie``): none of them is part of a data word.
SECRET_PARTS: tuple[str, ...] = (
    "secret", "password", "passwd", "passphrase", "privkey", "credential", "mnemonic",
    "apikey", "bearer", "cookie", "jwt")
#: What ``key``, ``token`` or ``seed`` run together after one of these names: a secret
#: (``accesstoken``, ``authkey``, ``sessiontoken``, ``walletseed``).
SECRET_PREFIXES: frozenset[str] = frozenset({
    "api", "auth", "oauth", "access", "refresh", "session", "private", "signing", "client",
    "bot", "id", "app", "master", "user", "wallet", "secret"})
#: Words that name a secret (``binance_key``, ``telegram_token``, ``walletSeed``,
#: ``private_key``) unless another word of the key says what data it is: the words here
#: (``base_token: "USDC.e"``, ``sort_key``, ``token_id``, ``seed_capital``). Secret by
#: default: a key a strategy names after its exchange is protected without a list.
DATA_BESIDE: Mapping[str, frozenset[str]] = {
    "key": frozenset({"sort", "primary", "partition", "foreign", "idempotency", "cache",
                      "asset", "lookup", "hash", "map", "group", "dedup", "row", "column"}),
    "token": frozenset({"base", "quote", "collateral", "debt", "reward", "underlying", "pool",
                        "lp", "stake", "staked", "borrow", "supply", "gas", "native", "fee",
                        "target", "source", "input", "output", "in", "out", "pair", "wrapped",
                        "id", "address", "symbol", "name", "decimal", "list", "hedge", "yield",
                        "margin", "settlement", "payment", "deposit", "withdraw", "receipt"}),
    "seed": frozenset({"capital", "random", "rng", "initial", "funding", "fund"}),
    "private": frozenset({"rpc", "pool", "mempool", "network", "subnet", "relay"}),
    # an HTTP session (its id or token) is a credential; a trading session is data
    "session": frozenset({"trading", "market", "name", "start", "end", "open", "close",
                          "hour", "time", "timezone", "tz", "length", "duration", "count",
                          "number", "type", "day", "calendar", "schedule", "label"}),
}
#: The words that name a secret unless :data:`DATA_BESIDE` says otherwise.
WEAK_SECRET_WORDS: frozenset[str] = frozenset(DATA_BESIDE)
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def key_words(key: object) -> frozenset[str]:
    """The lower-case words of a config key: ``apiKey`` -> {api, key}."""
    if not isinstance(key, str):
        return frozenset()
    words = {w.lower() for w in _WORDS.findall(key)}
    return frozenset(words | {w[:-1] for w in words if w.endswith("s") and len(w) > 3})


def is_secret_key(key: object, extra: frozenset[str] = frozenset()) -> bool:
    """True if a config key's value is a secret: the key is a secret word itself, holds a
    word of :data:`SECRET_WORDS` (or of ``extra``, the config's ``secret_keys``), or holds
    ``key``, ``token``, ``seed``, ``private`` or ``session`` with no word beside it that
    names data (:data:`DATA_BESIDE`: ``binance_key`` is a secret, ``base_token`` is not).
    Run-together names count too: a word holding one of :data:`SECRET_PARTS`
    (``APISECRET``), or ``key``/``token``/``seed`` after one of :data:`SECRET_PREFIXES`
    (``accesstoken``). A plural (``tokens``, a list of them) is data."""
    if not isinstance(key, str):
        return False
    name = key.lower()
    if name in SECRET_WORDS or name in WEAK_SECRET_WORDS or name in extra:
        return True
    words = key_words(key)
    if words & SECRET_WORDS or words & extra:
        return True
    for w in words:
        if any(part in w for part in SECRET_PARTS):
            return True
        for end in ("key", "token", "seed"):
            if w.endswith(end) and w[:-len(end)] in SECRET_PREFIXES:
                return True
    said = {w.lower() for w in _WORDS.findall(key)}  # as written: a plural is not the word
    others = words - WEAK_SECRET_WORDS
    return any(not others & DATA_BESIDE[w] for w in said & WEAK_SECRET_WORDS)


def listed_secret_words(config: object) -> frozenset[str]:
    """The names and words a config lists under ``secret_keys`` (lower case, each name
    with its words), for :func:`is_secret_key`'s ``extra``; :class:`ConfigError` when
    ``secret_keys`` is not a list of names."""
    words: set[str] = set()
    if isinstance(config, Mapping) and "secret_keys" in config:
        listed = config["secret_keys"]
        if not (isinstance(listed, list | tuple)
                and all(isinstance(w, str) and w.strip() for w in listed)):
            raise ConfigError(["secret_keys: must be a list of key names or words"])
        for w in listed:
            words |= {w.lower(), *key_words(w)}
    return frozenset(words)


class Redactor:
    """Replaces secret values from the system-wide config in text bound for logs.

    A value is a secret when its key names one (see :func:`is_secret_key`; the config adds
    words or names under ``secret_keys``), however deeply nested; every string under such a
    key that is at least ``min_length`` characters long is redacted (a number is data: an
    RNG seed, a timeout), in its plain form and in every form it takes in an error an HTTP
    client, an SDK or Python writes: each character percent-encoded or not (any
    ``quote``/``quote_plus`` safe set, twice encoded), JSON-, ``repr()``- or HTML-escaped,
    and the base64 that holds it (a Basic ``Authorization`` header); see
    :mod:`fsm_exec.boundary.encodings`. The token of an ``Authorization``-style value
    (``Bearer <token>``) and the values of a cookie string (``sid=<value>; ...``) are
    secrets of their own. Ordinary values (a venue name, a strategy mode) stay readable.
    Overlapping secrets are masked as one span, so no part of either survives. Redact before
    shortening text: a cut secret is not recognised.
    """

    __slots__ = ("_anchors", "_patterns", "_search")

    def __init__(self, config: object, own_fields: Iterable[str] = (), min_length: int = 6
                 ) -> None:
        own = set(own_fields)
        extra = listed_secret_words(config)
        found: set[str] = set()

        def collect(v: object) -> None:
            if isinstance(v, str):
                for part in (v, *_credential_parts(v)):
                    if len(part) >= min_length:
                        found.add(part)
            elif isinstance(v, Mapping):
                for x in v.values():
                    collect(x)
            elif isinstance(v, list | tuple | set | frozenset):
                for x in v:
                    collect(x)

        def walk(m: Mapping[Any, Any], top: bool) -> None:
            for k, v in m.items():
                if top and k in own:
                    continue
                if is_secret_key(k, extra):
                    collect(v)
                elif isinstance(v, Mapping):
                    walk(v, False)
                elif isinstance(v, list | tuple):
                    for x in v:
                        if isinstance(x, Mapping):
                            walk(x, False)

        if isinstance(config, Mapping):
            walk(config, True)
        patterns: set[str] = set()
        # Every form of a secret holds its longest run of ASCII letters and digits as it is
        # (no encoder escapes them): text without any such run holds no secret, and is let
        # through without the search. None: a secret with no run long enough to tell.
        anchors: set[str] | None = set()
        for secret in found:
            patterns.add(secret_pattern(secret))
            runs = base64_runs(secret, max(min_length, 8))
            patterns |= {re.escape(run) for run in runs}
            plain = max(_ALNUM_RUN.findall(secret), key=len, default="")
            if anchors is not None and len(plain) >= 4:
                anchors |= {plain, *runs}
            else:
                anchors = None
        # The longest first: one search finds the longest of overlapping forms.
        self._patterns = tuple(re.compile(p) for p in sorted(patterns, key=len, reverse=True))
        self._anchors = None if anchors is None else tuple(anchors)
        self._search = (re.compile("|".join(p.pattern for p in self._patterns)).search
                        if self._patterns else None)

    def __bool__(self) -> bool:
        """True when there is anything to redact."""
        return self._search is not None

    def finds(self, text: str) -> bool:
        """True if ``text`` holds a secret (in any of its forms)."""
        search = self._search
        if search is None:
            return False
        anchors = self._anchors
        if anchors is not None and not any(a in text for a in anchors):
            return False
        return search(text) is not None

    def __call__(self, text: str) -> str:
        if not self.finds(text):
            return text
        spans: list[tuple[int, int]] = []
        for pattern in self._patterns:
            m = pattern.search(text)
            while m is not None:  # overlapping occurrences too
                spans.append(m.span())
                m = pattern.search(text, m.start() + 1)
        spans.sort()
        out, pos = [], 0
        for start, end in spans:
            if end <= pos:
                continue
            if start > pos:
                out.append(text[pos:start])
                out.append("[REDACTED]")
            elif not out or out[-1] != "[REDACTED]":
                out.append("[REDACTED]")
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def __repr__(self) -> str:
        return f"Redactor({len(self._patterns)} forms)"

    def __reduce__(self) -> Any:
        raise TypeError("a Redactor holds secrets: it is not pickled")


#: How many configs (and their digests) are kept: a research loop builds a manager per
#: run from one config mapping, which is then validated once.
_CACHED = 64
_DIGESTS: dict[int, tuple[ExecutionConfig, str]] = {}
_RESOLVED: dict[tuple[Any, ...], ExecutionConfig] = {}

_ALNUM_RUN = re.compile("[A-Za-z0-9]+")
#: ``Bearer <token>``, ``Basic <credentials>``, ``token <value>``: an Authorization header.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\s+(\S+)")
#: ``name=value; name=value``: a cookie string.
_COOKIE = re.compile(r"\s*[^=;\s]+=([^;]*)(?:;|$)")


def _credential_parts(value: str) -> list[str]:
    """The secrets inside a credential string: the token after an auth scheme, the values
    of a cookie string (each a secret of its own: an error may quote it alone)."""
    m = _SCHEME.fullmatch(value.strip())
    if m is not None:
        return [m.group(1)]
    if "=" in value:
        parts, pos = [], 0
        while pos < len(value):
            c = _COOKIE.match(value, pos)
            if c is None or c.end() == pos:
                return []
            parts.append(c.group(1).strip())
            pos = c.end()
        return parts
    return []


def resolve_config(config: ExecutionConfig | Mapping[str, Any]) -> ExecutionConfig:
    """Accept an :class:`ExecutionConfig` or the system-wide mapping. A mapping of plain
    scalars seen before (same keys, values and types) gives the config built then (it is
    frozen): a loop of managers validates its config once."""
    if isinstance(config, ExecutionConfig):
        return config
    key: tuple[Any, ...] | None = None
    if type(config) is dict and all(type(k) is str for k in config) and all(
            type(config[k]) in _SCALARS for k in OWN_FIELDS.intersection(config)):
        # Own fields by value and type, other keys by name only (they may hold secrets,
        # never kept here; their names still decide the typo check).
        key = (tuple(sorted((k, type(v), v) for k, v in config.items() if k in OWN_FIELDS)),
               frozenset(k for k in config if k not in OWN_FIELDS))
        hit = _RESOLVED.get(key)
        if hit is not None:
            return hit
    resolved = ExecutionConfig.from_dict(config)
    if key is not None:
        if len(_RESOLVED) >= _CACHED:
            _RESOLVED.clear()
        _RESOLVED[key] = resolved
    return resolved


#: Values a cached config mapping may hold (immutable, compared by value).
_SCALARS = frozenset({str, int, float, bool, type(None)})


OWN_FIELDS: frozenset[str] = frozenset(
    [f.name for f in attrs.fields(ExecutionConfig)] + list(ALIASES) + ["secret_keys"])

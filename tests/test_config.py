"""Tests for the manager's config, the environment it reads and redaction (``_config``)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_exec import ComponentError, ConfigError, Environment, ExecutionConfig
from fsm_exec.boundary.config import OWN_FIELDS, Redactor, is_secret_key, resolve_config

CANARY = "sk-CANARY-1234567"

Build = Callable[[dict[str, Any]], ExecutionConfig]


def from_kwargs(fields: dict[str, Any]) -> ExecutionConfig:
    return ExecutionConfig(**fields)


# Every rule is checked through both ways of building a config.
BUILDERS = pytest.mark.parametrize("build", [from_kwargs, ExecutionConfig.from_dict],
                                   ids=["kwargs", "from_dict"])


def refused(build: Build, fields: dict[str, Any]) -> ConfigError:
    """The error building a config from these fields raises."""
    with pytest.raises(ConfigError) as info:
        build(fields)
    return info.value


def named(err: ConfigError) -> set[str]:
    """The fields the error's problems name (each problem starts with its field)."""
    names = set()
    for p in err.problems:
        match = re.match(r"\w+", p)
        assert match is not None
        names.add(match.group())
    return names


# --- defaults and shape -----------------------------------------------------------------------


def test_defaults() -> None:
    """A config built with no fields has the documented defaults."""
    cfg = ExecutionConfig()

    assert (cfg.execution_timeout, cfg.reconciliation_timeout, cfg.max_retries) == (30, 10, 3)
    assert cfg.retry_delay_seconds == 0.1
    assert cfg.max_retry_delay_seconds == 5.0
    assert cfg.max_queue_size == 10_000
    assert (cfg.strategy_mode, cfg.share_class, cfg.initial_capital) == (None, None, None)
    assert ExecutionConfig.from_dict({}) == cfg


def test_config_is_frozen() -> None:
    """Assigning to a config field raises and leaves the value unchanged."""
    cfg = ExecutionConfig()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.max_retries = 5  # type: ignore[misc]
    assert cfg.max_retries == 3


def test_config_error_kind_and_code() -> None:
    """A bad config raises ConfigError: a ComponentError and a ValueError with code EXEC-010."""
    with pytest.raises(ConfigError) as info:
        ExecutionConfig(max_retries=0)

    assert isinstance(info.value, ComponentError)
    assert isinstance(info.value, ValueError)
    assert info.value.error_code == "EXEC-010"
    assert named(info.value) == {"max_retries"}
    assert "max_retries" in str(info.value)


@BUILDERS
def test_values_kept_as_given(build: Build) -> None:
    """Accepted values are stored unchanged, ints in float fields included."""
    fields: dict[str, Any] = {
        "strategy_mode": "pure_lending", "share_class": "eth_directional",
        "initial_capital": 250_000, "execution_timeout": 12.5, "reconciliation_timeout": 1,
        "max_retries": 9, "retry_delay_seconds": 2, "max_retry_delay_seconds": 2.0,
        "max_queue_size": 1, "duplicate_window": 5, "not_found_confirmations": 1,
        "not_found_interval_seconds": 0, "not_found_min_age_seconds": 0.5,
        "asset_field": "symbol",
    }

    cfg = build(fields)

    assert attrs.asdict(cfg) == fields
    assert type(cfg.reconciliation_timeout) is int


# --- ranges -----------------------------------------------------------------------------------

# (field, refused boundary values, accepted values); all bounds are exclusive.
RANGES: list[tuple[str, list[Any], list[Any]]] = [
    ("execution_timeout", [0, 300, -1, 300.0001, math.nan, math.inf, -math.inf],
     [0.001, 1, 299.999, 299]),
    ("reconciliation_timeout", [0, 60, -0.5, 60.0, math.nan, math.inf], [1e-9, 59.9, 59, 10]),
    ("max_retries", [0, 10, -1, 100], [1, 9]),
    ("retry_delay_seconds", [0, 60, 0.0, -1, math.nan, math.inf], [1e-6, 4.99, 5]),
    ("max_queue_size", [0, -1], [1, 10**12]),
    ("duplicate_window", [0, -1, 1_000_001, 10_000_000], [1, 1_000_000]),
    ("not_found_confirmations", [0, 101], [1, 100]),
    ("not_found_interval_seconds", [-0.1, 300, math.nan], [0, 299.9]),
    ("not_found_min_age_seconds", [-1, 3600, math.inf], [0, 3599]),
]


@pytest.mark.parametrize(("field", "value", "says"), [
    ("duplicate_window", 1_000_001, "an int from 1 to 1,000,000"),
    ("max_retries", 10, "an int from 1 to 9"),
    ("max_queue_size", 0, "an int of at least 1"),
    ("retry_delay_seconds", 60, "> 0 and < 60"),
    ("not_found_interval_seconds", -1, ">= 0 and < 300"),
])
def test_a_range_error_states_the_values_the_field_takes(field: str, value: Any,
                                                         says: str) -> None:
    """The bounds in the message are the ones enforced (an int field says which ints)."""
    with pytest.raises(ConfigError, match=f"{field}: must be {re.escape(says)}, got"):
        resolve_config({field: value})


@BUILDERS
@pytest.mark.parametrize(("field", "value"),
                         [(f, v) for f, bad, _ in RANGES for v in bad])
def test_out_of_range_refused(build: Build, field: str, value: Any) -> None:
    """A numeric field outside its exclusive range is refused, naming the field."""
    err = refused(build, {field: value})

    assert named(err) == {field}
    assert field in str(err)


@BUILDERS
@pytest.mark.parametrize(("field", "value"),
                         [(f, v) for f, _, good in RANGES for v in good])
def test_in_range_accepted(build: Build, field: str, value: Any) -> None:
    """A numeric field just inside its exclusive range is accepted."""
    assert getattr(build({field: value}), field) == value


@BUILDERS
@pytest.mark.parametrize(("retry", "max_retry", "ok"), [
    (0.5, 0.5, True), (0.5, 0.6, True), (0.1, 5, True), (2, 1.999, False), (59, 1, False),
])
def test_max_retry_delay_not_below_retry_delay(
        build: Build, retry: float, max_retry: float, ok: bool) -> None:
    """max_retry_delay_seconds must be >= retry_delay_seconds (equal is fine)."""
    fields = {"retry_delay_seconds": retry, "max_retry_delay_seconds": max_retry}
    if ok:
        assert build(fields).max_retry_delay_seconds == max_retry
    else:
        assert named(refused(build, fields)) == {"max_retry_delay_seconds"}


@BUILDERS
def test_default_max_retry_delay_binds_retry_delay(build: Build) -> None:
    """A retry_delay_seconds above the default max_retry_delay_seconds (5.0) is refused."""
    assert named(refused(build, {"retry_delay_seconds": 6})) == {"max_retry_delay_seconds"}


@BUILDERS
@pytest.mark.parametrize("value", ["usdt_stable", "eth_directional", None])
def test_share_class_accepted(build: Build, value: str | None) -> None:
    """share_class is one of usdt_stable and eth_directional (or unset)."""
    assert build({"share_class": value}).share_class == value


@BUILDERS
@pytest.mark.parametrize("value", ["", "USDT_STABLE", "btc_directional", " usdt_stable", 1,
                                   ["usdt_stable"]])
def test_share_class_refused(build: Build, value: Any) -> None:
    """Any other share_class is refused, naming the field."""
    assert named(refused(build, {"share_class": value})) == {"share_class"}


@BUILDERS
@pytest.mark.parametrize("value", [0.01, 1, pytest.param(10**400, id="10**400"), 1e300])
def test_initial_capital_accepted(build: Build, value: float) -> None:
    """initial_capital is any finite number > 0, however large an int."""
    assert build({"initial_capital": value}).initial_capital == value


@BUILDERS
@pytest.mark.parametrize("value", [0, 0.0, -1, pytest.param(-(10**400), id="-10**400"),
                                   math.nan, math.inf, "100", True, [100]])
def test_initial_capital_refused(build: Build, value: Any) -> None:
    """initial_capital that is not a finite number > 0 is refused, naming the field."""
    assert named(refused(build, {"initial_capital": value})) == {"initial_capital"}


@BUILDERS
@pytest.mark.parametrize("value", ["", "   ", 5, b"pure_lending", ["pure_lending"]])
def test_strategy_mode_refused(build: Build, value: Any) -> None:
    """strategy_mode, when set, must be a non-empty string."""
    assert named(refused(build, {"strategy_mode": value})) == {"strategy_mode"}


# --- no coercion ------------------------------------------------------------------------------

NUMERIC_FIELDS = ["execution_timeout", "reconciliation_timeout", "max_retries",
                  "retry_delay_seconds", "max_retry_delay_seconds", "max_queue_size"]


@BUILDERS
@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("value", [True, False, "30", "3", None, [3], b"3"])
def test_wrong_numeric_type_refused(build: Build, field: str, value: Any) -> None:
    """Bools, strings, None and containers are not numbers: refused, never coerced."""
    assert named(refused(build, {field: value})) == {field}


@BUILDERS
@pytest.mark.parametrize("field", ["max_retries", "max_queue_size"])
@pytest.mark.parametrize("value", [3.0, 5.5])
def test_float_not_an_int(build: Build, field: str, value: float) -> None:
    """The int fields refuse floats, even integral ones."""
    assert named(refused(build, {field: value})) == {field}


@BUILDERS
def test_every_problem_reported_at_once(build: Build) -> None:
    """Several bad fields are all reported in one ConfigError, each naming its field."""
    fields = {"execution_timeout": "30", "max_retries": True, "max_queue_size": 0,
              "share_class": "x", "initial_capital": -1, "strategy_mode": "",
              "retry_delay_seconds": 2, "max_retry_delay_seconds": 1}

    err = refused(build, fields)

    assert named(err) == set(fields) - {"retry_delay_seconds"}
    for field in fields.keys() - {"retry_delay_seconds"}:
        assert field in str(err)


def test_from_dict_reports_a_near_miss_and_bad_values_at_once() -> None:
    """A near-miss key, a wrong type and a NaN are reported together, each named (the
    near miss used to hide the others until it was fixed)."""
    with pytest.raises(ConfigError) as info:
        ExecutionConfig.from_dict({"max_retires": 3, "max_retries": "x",
                                   "execution_timeout": math.nan})
    text = str(info.value)
    assert "'max_retires'" in text and "did you mean max_retries" in text
    assert "max_retries: must be an int, got str" in text
    assert "execution_timeout: must be > 0" in text and "nan" in text
    assert len(info.value.problems) == 3


def test_from_dict_reports_an_alias_conflict_with_the_rest() -> None:
    """An alias given twice with different values is one problem among the others."""
    with pytest.raises(ConfigError) as info:
        ExecutionConfig.from_dict({"max_retries": 2, "max_retry_attempts": 3,
                                   "execution_timeout": "30"})
    assert [p.partition(":")[0] for p in info.value.problems] == [
        "max_retries", "execution_timeout"]


@given(st.dictionaries(
    st.sampled_from([f.name for f in attrs.fields(ExecutionConfig)]),
    st.one_of(st.none(), st.booleans(), st.integers(-5, 400), st.floats(-1, 400),
              st.sampled_from(["", "30", "usdt_stable", "pure_lending", math.nan, math.inf])),
))
def test_kwargs_and_from_dict_agree(fields: dict[str, Any]) -> None:
    """ExecutionConfig(**fields) and from_dict(fields) give equal configs or the same problems."""
    outcomes: list[ExecutionConfig | tuple[str, ...]] = []
    for build in (from_kwargs, ExecutionConfig.from_dict):
        try:
            outcomes.append(build(fields))
        except ConfigError as err:
            outcomes.append(err.problems)

    assert outcomes[0] == outcomes[1]


# --- from_dict --------------------------------------------------------------------------------


def test_from_dict_ignores_other_keys() -> None:
    """Keys of the system-wide config the manager does not use are ignored."""
    system: dict[Any, Any] = {"execution_timeout": 60, "venues": {"binance": {"api_key": CANARY}},
              "data_dir": "/data", 7: "non-string key", "mode": "pure_lending"}

    assert ExecutionConfig.from_dict(system) == ExecutionConfig(execution_timeout=60)


def test_from_dict_accepts_any_mapping() -> None:
    """from_dict takes any mapping, not only a dict."""
    cfg = ExecutionConfig.from_dict(MappingProxyType({"max_queue_size": 5}))

    assert cfg.max_queue_size == 5


def test_from_dict_does_not_change_its_input() -> None:
    """from_dict leaves the mapping it was given unchanged (the alias is not popped from it)."""
    system = {"max_retry_attempts": 4, "other": 1}

    ExecutionConfig.from_dict(system)

    assert system == {"max_retry_attempts": 4, "other": 1}


@pytest.mark.parametrize(("given_fields", "retries"), [
    ({"max_retry_attempts": 5}, 5),
    ({"max_retry_attempts": 5, "max_retries": 5}, 5),
    ({"max_retries": 7}, 7),
])
def test_max_retry_attempts_alias(given_fields: dict[str, Any], retries: int) -> None:
    """max_retry_attempts is read as max_retries; giving both with one value is fine."""
    assert ExecutionConfig.from_dict(given_fields).max_retries == retries


@pytest.mark.parametrize("alias", [0, 10, "5", 5.0, True])
def test_alias_value_checked_under_the_name_written(alias: Any) -> None:
    """A bad max_retry_attempts is refused like max_retries, naming the key the user wrote
    (not max_retries, a key they never wrote)."""
    assert named(refused(ExecutionConfig.from_dict, {"max_retry_attempts": alias})) == {
        "max_retry_attempts"}


@pytest.mark.parametrize(("retries", "attempts"), [(3, 5), (5, "5"), (2, True)])
def test_alias_conflict_refused(retries: Any, attempts: Any) -> None:
    """max_retries and max_retry_attempts given with different values is refused."""
    err = refused(ExecutionConfig.from_dict,
                  {"max_retries": retries, "max_retry_attempts": attempts})

    assert named(err) == {"max_retries"}
    assert "max_retry_attempts" in str(err)


@pytest.mark.parametrize("value", [None, [("execution_timeout", 30)], "execution_timeout=30",
                                   42, {"execution_timeout"}])
def test_from_dict_refuses_non_mapping(value: Any) -> None:
    """from_dict refuses anything that is not a mapping with a ConfigError."""
    err = refused(ExecutionConfig.from_dict, value)

    assert named(err) == {"config"}
    assert "mapping" in str(err)


def test_from_dict_wraps_unexpected_failures() -> None:
    """A value that breaks the checks themselves still comes out of from_dict as ConfigError."""

    class Unequal:
        __hash__ = None  # type: ignore[assignment]

        def __eq__(self, other: object) -> bool:
            raise ValueError(CANARY)

    with pytest.raises(ConfigError) as info:
        ExecutionConfig.from_dict({"share_class": Unequal()})

    assert CANARY not in str(info.value)


# --- no secrets in errors ---------------------------------------------------------------------


@BUILDERS
@pytest.mark.parametrize("field", [f.name for f in attrs.fields(ExecutionConfig)
                                   if f.name not in ("strategy_mode", "asset_field")])
def test_bad_value_not_echoed(build: Build, field: str) -> None:
    """A secret put by mistake in an own field is not repeated in the error."""
    err = refused(build, {field: CANARY})

    assert CANARY not in str(err)
    assert all(CANARY not in p for p in err.problems)
    assert field in str(err)


@pytest.mark.parametrize("bad", [{"execution_timeout": "bad"}, {"max_retries": 0},
                                 {"max_retries": 1, "max_retry_attempts": 2}])
def test_other_secrets_not_in_error(bad: dict[str, Any]) -> None:
    """Secrets elsewhere in the system-wide config never reach the error message."""
    system = {"api_key": CANARY, "venues": {"x": {"secret": CANARY}}, **bad}

    with pytest.raises(ConfigError) as info:
        ExecutionConfig.from_dict(system)

    assert CANARY not in str(info.value)
    assert CANARY not in repr(info.value)


# --- digest -----------------------------------------------------------------------------------


def test_digest_shape_and_no_values() -> None:
    """digest() is a short hex string that does not contain the field values."""
    cfg = ExecutionConfig(strategy_mode="abcdef", initial_capital=123456789)

    d = cfg.digest()

    assert re.fullmatch(r"[0-9a-f]{16}", d)
    assert "abcdef" not in d
    assert "123456789" not in d


finite_fields = st.fixed_dictionaries({}, optional={
    "strategy_mode": st.text(min_size=1).filter(str.strip),
    "share_class": st.sampled_from(["usdt_stable", "eth_directional"]),
    "initial_capital": st.one_of(st.integers(1), st.floats(1e-6, 1e12)),
    "execution_timeout": st.one_of(st.integers(1, 299), st.floats(0.5, 299)),
    "reconciliation_timeout": st.integers(1, 59),
    "max_retries": st.integers(1, 9),
    "max_queue_size": st.integers(1, 10**6),
})


FLOAT_FIELDS = {"initial_capital", "execution_timeout", "reconciliation_timeout"}


def _as_float(field: str, v: Any) -> Any:
    return float(v) if field in FLOAT_FIELDS and type(v) is int and v < 2**53 else v


@given(finite_fields)
def test_equal_configs_equal_digests(fields: dict[str, Any]) -> None:
    """Equal configs have equal digests, whether a number is given as int or float."""
    cfg = ExecutionConfig(**fields)
    same = ExecutionConfig(**{k: _as_float(k, v) for k, v in fields.items()})

    assert same == cfg
    assert same.digest() == cfg.digest()
    assert ExecutionConfig.from_dict(fields).digest() == cfg.digest()


@given(finite_fields, finite_fields)
def test_different_configs_different_digests(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Configs that differ in any field have different digests."""
    one, other = ExecutionConfig(**a), ExecutionConfig(**b)

    assert (one.digest() == other.digest()) == (one == other)


@pytest.mark.parametrize(("field", "value"), [
    ("execution_timeout", 31), ("reconciliation_timeout", 10.5), ("max_retries", 4),
    ("retry_delay_seconds", 0.2), ("max_retry_delay_seconds", 5.5), ("max_queue_size", 9_999),
    ("strategy_mode", "x"), ("share_class", "usdt_stable"), ("initial_capital", 1),
])
def test_one_field_changes_digest(field: str, value: Any) -> None:
    """Changing any single field from its default changes the digest."""
    assert ExecutionConfig(**{field: value}).digest() != ExecutionConfig().digest()


# --- Environment ------------------------------------------------------------------------------


def test_environment_defaults() -> None:
    """With no variables set, the environment is backtest, dev, local."""
    assert Environment.read(None, {}) == Environment("backtest", "dev", "local")


@pytest.mark.parametrize(("environ", "expected"), [
    ({"BASIS_EXECUTION_MODE": "live"}, ("live", "dev", "local")),
    ({"BASIS_ENVIRONMENT": "staging"}, ("backtest", "staging", "local")),
    ({"BASIS_DEPLOYMENT_MODE": "docker"}, ("backtest", "dev", "docker")),
    ({"BASIS_EXECUTION_MODE": "backtest", "BASIS_ENVIRONMENT": "production",
      "BASIS_DEPLOYMENT_MODE": "local", "OTHER": "ignored"}, ("backtest", "production", "local")),
])
def test_environment_reads_variables(environ: dict[str, str],
                                     expected: tuple[str, str, str]) -> None:
    """The BASIS_* variables of the given mapping set the three modes."""
    env = Environment.read(None, environ)

    assert (env.execution_mode, env.environment, env.deployment_mode) == expected


@pytest.mark.parametrize(("explicit", "variable"), [
    ("live", "backtest"), ("backtest", "live"), ("live", CANARY),
])
def test_explicit_execution_mode_wins(explicit: str, variable: str) -> None:
    """An explicit execution_mode is used, and BASIS_EXECUTION_MODE is then not consulted."""
    assert Environment.read(explicit, {"BASIS_EXECUTION_MODE": variable}).execution_mode == (
        explicit)


@pytest.mark.parametrize("variable", ["BASIS_EXECUTION_MODE", "BASIS_ENVIRONMENT",
                                      "BASIS_DEPLOYMENT_MODE"])
@pytest.mark.parametrize("value", [CANARY, "LIVE", "prd"])
def test_environment_invalid_variable(variable: str, value: str) -> None:
    """An invalid variable raises ConfigError naming the variable, never echoing the value."""
    with pytest.raises(ConfigError) as info:
        Environment.read(None, {variable: value})

    assert [p.split(":")[0] for p in info.value.problems] == [variable]
    assert variable in str(info.value)
    if value:
        assert value not in str(info.value)


@pytest.mark.parametrize("value", [CANARY, "", "Live", 1])
def test_environment_invalid_explicit_mode(value: Any) -> None:
    """An invalid explicit execution_mode raises ConfigError naming the argument, not the value."""
    with pytest.raises(ConfigError) as info:
        Environment.read(value, {})

    assert "execution_mode" in str(info.value)
    assert "BASIS_EXECUTION_MODE" not in str(info.value)
    assert CANARY not in str(info.value)


def test_environment_all_problems_at_once() -> None:
    """Invalid values in all three variables are reported together."""
    environ = dict.fromkeys(
        ["BASIS_EXECUTION_MODE", "BASIS_ENVIRONMENT", "BASIS_DEPLOYMENT_MODE"], CANARY)

    with pytest.raises(ConfigError) as info:
        Environment.read(None, environ)

    assert len(info.value.problems) == 3
    assert CANARY not in str(info.value)


def test_environment_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a mapping, the process environment is read."""
    monkeypatch.setenv("BASIS_ENVIRONMENT", "staging")
    monkeypatch.setenv("BASIS_DEPLOYMENT_MODE", "docker")
    monkeypatch.delenv("BASIS_EXECUTION_MODE", raising=False)

    assert Environment.read(None) == Environment("backtest", "staging", "docker")


# --- Redactor ---------------------------------------------------------------------------------


def test_redactor_replaces_secret_values() -> None:
    """String values of keys that are not own fields are replaced with [REDACTED]."""
    redact = Redactor({"api_key": "sk-abcdef", "strategy_mode": "pure_lending_eth",
                       "share_class": "usdt_stable", "execution_timeout": 30}, OWN_FIELDS)

    out = redact("key sk-abcdef, mode pure_lending_eth, class usdt_stable, again sk-abcdef")

    assert out == ("key [REDACTED], mode pure_lending_eth, class usdt_stable, "
                   "again [REDACTED]")


@pytest.mark.parametrize("key", ["api_key", "apiKey", "API-KEY", "binance.secret", "key",
                                 "keys", "token", "seed", "walletSeed", "access_token",
                                 "refreshToken", "private_key", "privateKey", "passphrase",
                                 "mnemonic", "credentials", "auth", "signature"])
def test_keys_that_name_a_secret(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", [
    "binance_key", "alchemy_key", "infura_key", "binance.key", "telegram_token", "bot_token",
    "github_token", "rpc_token", "signer_key", "jwt", "walletSeed", "private_key"])
def test_a_key_named_after_its_service_is_a_secret(key: str) -> None:
    """key/token/seed/private are secret unless a word beside them names data: a strategy
    that calls its key binance_key is protected without listing it."""
    assert is_secret_key(key)
    redact = Redactor({key: "sk_live_ABCDEF123456"}, OWN_FIELDS)
    assert redact("auth failed for sk_live_ABCDEF123456") == "auth failed for [REDACTED]"


@pytest.mark.parametrize("key", ["base_token", "quote_token", "tokens", "token_id",
                                 "sort_key", "key_asset", "seed_capital", "private_rpc",
                                 "debt_token", "token_address", "strategy_mode", "venue",
                                 "name"])
def test_keys_that_hold_ordinary_data(key: str) -> None:
    """A weak word (``key``, ``token``, ``seed``, ``private``) alone in a longer name is
    data: ``base_token: "USDC.e"`` must not make every USDC.e block a secret."""
    assert not is_secret_key(key)
    redact = Redactor({key: "USDC.e-bridged"}, OWN_FIELDS)
    assert not redact and redact("USDC.e-bridged") == "USDC.e-bridged"


def test_secret_keys_adds_names_and_words() -> None:
    redact = Redactor({"secret_keys": ["rpc_url", "pin"], "rpc_url": "https://x/v2/abc123",
                       "wallet": {"pin": "998877"}, "base_token": "USDC.e"}, OWN_FIELDS)
    assert redact("https://x/v2/abc123 998877 USDC.e") == "[REDACTED] [REDACTED] USDC.e"


def test_redactor_finds_nested_secrets() -> None:
    """Secrets under secret-named keys, nested in mappings, lists, tuples and sets, are
    found; an ordinary value under an ordinary key is not a secret."""
    config = {"venues": {"binance": {"secret": "binance-secret", "port": 443,
                                     "name": "binance-main"}},
              "api_keys": ["list-secret-1", ("tuple-secret",)], "auth_tokens": {"set-secret"},
              "private": frozenset({"frozen-secret"}), "none": None}
    redact = Redactor(config, OWN_FIELDS)

    text = "binance-secret list-secret-1 tuple-secret set-secret frozen-secret 443 " \
           "binance-main"

    assert redact(text) == " ".join(["[REDACTED]"] * 5) + " 443 binance-main"


@pytest.mark.parametrize("key", ["api_key", "apiKey", "API-KEY", "secret", "clientSecret",
                                 "token", "auth_token", "password", "db_passwd",
                                 "passphrase", "private_key", "privkey", "credentials",
                                 "mnemonic", "wallet_seed", "signature", "secret_keys_x"])
def test_redactor_decides_by_key_name(key: str) -> None:
    """A value is a secret when a word of its key says so (any case or separator)."""
    assert Redactor({key: "s3cr3t-value"}, ())("x s3cr3t-value y") == "x [REDACTED] y"


@pytest.mark.parametrize("key", ["venue", "strategy", "keystore_path", "monkey", "seeded",
                                 "name", "url"])
def test_redactor_leaves_ordinary_values_readable(key: str) -> None:
    """Values of ordinary keys stay readable (venue=binance reads venue=binance)."""
    assert Redactor({key: "binance"}, ())("venue=binance") == "venue=binance"


def test_redactor_takes_extra_secret_keys_from_the_config() -> None:
    """secret_keys adds key names (or words) whose values are secrets."""
    config = {"secret_keys": ["webhook", "dsn"], "webhook": "https://hooks/abc123",
              "sentry_dsn": "https://key@sentry/1", "venue": "binance"}
    redact = Redactor(config, OWN_FIELDS)
    assert redact("https://hooks/abc123 https://key@sentry/1 binance") == (
        "[REDACTED] [REDACTED] binance")


@pytest.mark.parametrize("bad", ["webhook", [1], [""]])
def test_redactor_refuses_a_malformed_secret_keys(bad: object) -> None:
    """secret_keys must be a list of names: anything else is a config error."""
    with pytest.raises(ConfigError, match="secret_keys"):
        Redactor({"secret_keys": bad}, OWN_FIELDS)


def test_redactor_matches_escaped_forms_of_a_secret() -> None:
    """A secret shown through repr(), JSON text or a URL is still recognised."""
    secret = 'ab"c\\d\nef-secret ü'
    redact = Redactor({"api_secret": secret}, ())
    import json
    import urllib.parse
    for text in (repr(secret), json.dumps(secret), json.dumps(secret, ensure_ascii=False),
                 urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)):
        assert "[REDACTED]" in redact(text) and "ef-secret" not in redact(text), text


def test_redactor_ignores_short_strings() -> None:
    """Strings shorter than six characters are left alone; six characters are redacted."""
    redact = Redactor({"api_key_a": "abcde", "api_key_b": "uvwxyz"}, ())

    assert redact("abcde uvwxyz") == "abcde [REDACTED]"


def test_redactor_min_length() -> None:
    """min_length sets the shortest string counted as a secret."""
    redact = Redactor({"api_key_a": "abc", "api_key_b": "ab"}, (), min_length=3)

    assert redact("abc ab") == "[REDACTED] ab"


def test_redactor_longer_secret_replaced_whole() -> None:
    """A secret containing a shorter secret is replaced whole, not partly."""
    redact = Redactor({"secret": {"short": "abcdef", "long": "xx-abcdef-yy",
                                  "mid": "abcdef-yy"}}, ())

    assert redact("xx-abcdef-yy | abcdef-yy | abcdef") == (
        "[REDACTED] | [REDACTED] | [REDACTED]")


def test_redactor_own_fields_nested_key() -> None:
    """Own fields are recognised by key: their values stay visible, secrets do not."""
    redact = Redactor({"strategy_mode": "visible-mode", "other": {"token": "hidden-value"}},
                      ["strategy_mode"])

    assert redact("visible-mode hidden-value") == "visible-mode [REDACTED]"


@pytest.mark.parametrize("config", [None, ["secret-value"], "secret-value", 42])
def test_redactor_non_mapping_config(config: object) -> None:
    """A config that is not a mapping holds no secrets: text passes unchanged."""
    assert Redactor(config, OWN_FIELDS)("secret-value") == "secret-value"


def test_redactor_repr_and_pickle_hide_secrets() -> None:
    """The redactor's repr counts the forms without showing them; it refuses to pickle."""
    import pickle
    redact = Redactor({"api_key_a": CANARY, "api_key_b": "another-secret"}, ())

    assert CANARY not in repr(redact)
    assert "forms" in repr(redact) and bool(redact)
    with pytest.raises(TypeError, match="secrets"):
        pickle.dumps(redact)


@given(
    # secret_keys is the config's own list of secret names, not a secret: never drawn here
    st.dictionaries(st.text(max_size=5).filter(lambda k: k != "keys").map(
                        lambda k: f"secret_{k}"),
                    st.text(alphabet="0123456789abcdef", min_size=6, max_size=20), max_size=5),
    st.lists(st.text(alphabet=" ,.:xyz=", max_size=5), min_size=1, max_size=6),
)
def test_redacted_text_holds_no_secret(secrets: dict[str, str], filler: list[str]) -> None:
    """After redaction no secret remains, and only the secrets were changed."""
    values = list(secrets.values()) or [""]
    pieces = [x for i, f in enumerate(filler) for x in (f, values[i % len(values)])]

    out = Redactor(secrets, ())("".join(pieces))

    assert not any(v and v in out for v in values)
    assert out.replace("[REDACTED]", "") == "".join(filler)


def test_own_fields() -> None:
    """OWN_FIELDS holds every config field, the max_retry_attempts alias and secret_keys."""
    assert {f.name for f in attrs.fields(ExecutionConfig)} | {"max_retry_attempts",
                                                             "secret_keys"} == OWN_FIELDS


# --- resolve_config ---------------------------------------------------------------------------


def test_resolve_config_passes_config_through() -> None:
    """An ExecutionConfig is returned as it is."""
    cfg = ExecutionConfig(max_retries=5)

    assert resolve_config(cfg) is cfg


def test_resolve_config_builds_from_mapping() -> None:
    """A mapping is read like from_dict: alias honoured, other keys ignored."""
    cfg = resolve_config({"max_retry_attempts": 2, "api_key": CANARY})

    assert cfg == ExecutionConfig(max_retries=2)


def test_resolve_config_refuses_bad_mapping() -> None:
    """A bad mapping raises ConfigError naming the field."""
    with pytest.raises(ConfigError) as info:
        resolve_config({"max_queue_size": -1})

    assert named(info.value) == {"max_queue_size"}


def test_environment_empty_variable_counts_as_unset() -> None:
    """An empty BASIS_* variable (as env files often leave them) takes the default."""
    env = Environment.read(None, {"BASIS_EXECUTION_MODE": "", "BASIS_ENVIRONMENT": "",
                                  "BASIS_DEPLOYMENT_MODE": ""})
    assert (env.execution_mode, env.environment, env.deployment_mode) == (
        "backtest", "dev", "local")


def test_redactor_masks_overlapping_secrets_whole() -> None:
    """Two secrets that overlap in a text are masked as one span: no part of either leaks."""
    r = Redactor({"api_key_a": "abcdef", "api_key_b": "defghi"}, set())
    assert r("x abcdefghi y") == "x [REDACTED] y"
    assert r("abcdef and defghi") == "[REDACTED] and [REDACTED]"


def test_redactor_exempts_only_top_level_own_fields() -> None:
    """Own fields are exempt only at the top: a nested secret-named key is a secret even
    next to a nested key spelled like an own field."""
    r = Redactor({"strategy_mode": "eth_basis",
                  "venue": {"strategy_mode": "nested-mode", "api_key": "sk-nested-1"}},
                 OWN_FIELDS)
    assert r("eth_basis nested-mode sk-nested-1") == "eth_basis nested-mode [REDACTED]"


@pytest.mark.parametrize(("key", "meant"), [
    ("max_retires", "max_retries"), ("execution_timout", "execution_timeout"),
    ("max_retry_attempt", "max_retry_attempts"), ("reconciliation_timeouts",
                                                  "reconciliation_timeout"),
    ("Xot_found_confirmations", "not_found_confirmations")])
def test_a_key_one_typo_from_an_own_field_is_refused_naming_it(key: str, meant: str) -> None:
    """A key one typo (insertion, deletion, substitution, swap) away from one of the
    manager's own fields is refused, naming the field it probably meant, instead of being
    ignored while that field keeps its default."""
    with pytest.raises(ConfigError, match=f"did you mean {meant}"):
        ExecutionConfig.from_dict({key: 5})


@pytest.mark.parametrize("key", ["max_retry", "timeout", "api_key", "risk_limits",
                                 "execution_timeout_ms", 7])
def test_other_components_keys_are_still_allowed(key: object) -> None:
    """The config is shared: keys further than one typo from an own field stay allowed."""
    assert ExecutionConfig.from_dict({key: 5}) == ExecutionConfig()  # type: ignore[dict-item]


def test_a_full_duplicate_window_fits_in_a_checkpoint() -> None:
    """The largest window, full of the longest block ids each with the longest state name
    and its digest, encodes to a checkpoint line well under the bytes a journal line may
    hold (a window of 10,000,000 made a checkpoint of up to 2 GB: the writer refused it,
    the manager halted, and no restart could write its first checkpoint). Measured on a
    slice and scaled: the entries are all alike."""
    from fsm_exec.boundary.config import ExecutionConfig
    from fsm_exec.journal.codec import MAX_LINE_BYTES
    from fsm_exec.journal.flight import checkpoint_payload
    from fsm_exec.journal.idle import encode_line

    window = 1_000_000
    with pytest.raises(ConfigError, match="1,000,000"):
        ExecutionConfig.from_dict({"duplicate_window": window + 1})
    n = 1_000
    ids = [f"{i:0>64}" for i in range(n)]
    state = "s" * 64  # a lifecycle's state name is at most 64 characters (rule "names")

    def size(k: int) -> int:
        data = checkpoint_payload(window=window, counters={}, halted=False, halt_reason=None,
                                  queue=(), flight=None, finished=[(i, state) for i in ids[:k]],
                                  digests={i: "0" * 16 for i in ids[:k]})
        return len(encode_line({"seq": 1, "timestamp": "2025-10-01T00:00:00+00:00",
                                "event_type": "checkpoint", "component": "ExecutionManager",
                                "data": data}))

    per_entry = (size(n) - size(0)) / n
    assert size(0) + per_entry * window < 0.9 * MAX_LINE_BYTES, (per_entry, MAX_LINE_BYTES)
    # What the manager leaves the queue counts each such entry at least at its size, and
    # still leaves room for thousands of blocks beside a full window (16 MiB and more).
    from fsm_exec.core.running import DEFAULT_TABLE
    from fsm_exec.journal.flight import FINISHED_ENTRY_BYTES, queue_room

    assert (size(n) - size(1)) / (n - 1) == FINISHED_ENTRY_BYTES  # (size(0): no digests key)
    # ... counted from the bounds it restates: raise one, and this fails (not a checkpoint)
    from fsm_exec.boundary.blocks import _BLOCK_ID, InstructionBlock, content_digest
    from fsm_exec.core.lifecycle_rules import _NAME

    assert _BLOCK_ID.fullmatch("a" * 64) and not _BLOCK_ID.fullmatch("a" * 65)
    assert _NAME.fullmatch("s" * 64) and not _NAME.fullmatch("s" * 65)
    assert len(content_digest(InstructionBlock("a", "x", 1, ({"v": 1},)))) == 16
    assert queue_room(window, DEFAULT_TABLE, MAX_LINE_BYTES) > 16 << 20

"""No secret from the config ever reaches the journal, the CSV, the operational log or an
exception message, even when an adapter puts one in its own error."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from fsm_exec import (
    ComponentError,
    EventLogger,
    ExecutionManager,
    InstructionBlock,
    disable_logging,
    enable_logging,
)
from fsm_exec.sim.venues import (
    FakeClock,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, block

TOP = "sk-live-TOPSECRET-11111"
NESTED = "nested-VENUE-SECRET-22222"
LISTED = "listed-KEY-33333"
ENV = "env-SECRET-44444"
CANARIES = (TOP, NESTED, LISTED, ENV)

CONFIG = {
    "strategy_mode": "eth_basis",
    "api_key": TOP,
    "venues": {"binance": {"secret": NESTED, "passphrase": NESTED + "-x"}},
    "backup_keys": [LISTED],
    "max_retries": 2,
    "retry_delay_seconds": 0.01,
}


@pytest.fixture
def oplog() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    handler = enable_logging(sink, level="DEBUG")
    yield sink
    logger.remove(handler)
    disable_logging()


class LeakyVenue(SimVenue):
    """Puts secrets in its errors, as careless adapters do."""

    def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
        if b.block_id == "leak-route":
            raise ConnectionError(f"401 for key {TOP} / {NESTED}")
        return super().route_instruction(ts, b)

    def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
        if b.block_id == "leak-route":
            raise TimeoutError(f"query with {LISTED} timed out")
        return super().query_execution(ts, b)


class LeakyPositions:
    def update_state(self, ts: Any, source: str, deltas: Any) -> None:
        if deltas["block_id"] == "leak-positions":
            raise RuntimeError(f"position db refused {NESTED}")


class LeakyData(StaticDataProvider):
    def get_data(self, ts: Any) -> Any:
        if ts == T(3):
            raise KeyError(f"price feed auth {TOP}")
        return super().get_data(ts)


def leaky_check(b: InstructionBlock, market: Any) -> str | None:
    if b.block_id == "leak-check":
        raise ValueError(f"risk service {LISTED}")
    return None


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_canaries_reach_no_output(tmp_path: Path, mode: str, oplog: io.StringIO,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every failure path with secrets in config, environment and adapter errors, then
    grep every output for them."""
    monkeypatch.setenv("VENUE_API_SECRET", ENV)
    clock = FakeClock()
    messages: list[str] = []
    journal = EventLogger(tmp_path / "logs", "live" if mode == "live" else "backtest")
    em = ExecutionManager(CONFIG, LeakyData(), mode, LeakyPositions(), LeakyVenue(),
                          SimReconciliation(), event_logger=journal, clock=clock,
                          sleep=clock.sleep, risk_checks=[leaky_check])

    def step(ts: int, trigger: str, batch: list[Any] | None = None) -> None:
        try:
            em.update_state(T(ts), trigger, batch)
        except ComponentError as exc:
            messages.append(str(exc))
            messages.extend(getattr(exc, "__notes__", []))

    step(1, "strategy_manager", [block("leak-route"), block("leak-check")])
    step(2, "retry")
    step(3, "strategy_manager", [block("leak-data")])
    step(4, "strategy_manager", [block("leak-positions")])
    step(5, "manual", [{"block_id": TOP}])  # a bad batch echoing a secret-shaped id
    messages.append(repr(em.health_check()) + repr(em.get_execution_status()))
    csv_path = journal.export_csv(tmp_path / "results", "run-1")
    journal.close()

    outputs = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    outputs[Path("<loguru>")] = oplog.getvalue()
    outputs[Path("<exceptions>")] = "\n".join(messages)
    assert csv_path in outputs and oplog.getvalue()  # the outputs were really produced
    assert any("[REDACTED]" in text for text in outputs.values())
    for where, text in outputs.items():
        for canary in CANARIES:
            assert canary not in text, f"{canary} leaked into {where}"


# ------------------------------------------------------------------------ the canary property

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_secret_keys = st.sampled_from(["api_key", "apiSecret", "passphrase", "private_key",
                                "auth_token", "walletSeed", "Authorization", "Cookie",
                                "sessionToken"])


@settings(max_examples=30, deadline=None)
@given(secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_/+=",
                      min_size=12, max_size=40),
       key=_secret_keys, nested=st.booleans(), mode=st.sampled_from(["backtest", "live"]),
       where=st.lists(st.sampled_from(["batch", "reply", "route_error", "handler_error",
                                       "query_error", "data_error", "quoted", "encoded"]),
                      min_size=1, max_size=4, unique=True),
       encoder=st.sampled_from(["quote", "quote_plus", "json_slash", "repr_of_json", "html",
                                "basic_auth", "quote_twice"]))
def test_a_config_secret_never_reaches_any_output(tmp_path_factory: pytest.TempPathFactory,
                                                  secret: str, key: str, nested: bool,
                                                  mode: str, where: list[str],
                                                  encoder: str) -> None:
    """Whatever path a config secret takes (a refused value, a venue reply echoing it,
    collaborators' exceptions, repr/JSON-escaped), it reaches no journal line, CSV cell,
    operational log line, exception text, repr or pickle."""
    import json
    import pickle

    from hypothesis import assume
    # shaped like a real key (it must not be a word the journal holds anyway, such as
    # "execution_mo"): letters of both cases and digits
    assume(secret.strip("-_/+=") == secret and len(set(secret)) > 4
           and any(c.isdigit() for c in secret) and any(c.isupper() for c in secret)
           and any(c.islower() for c in secret))
    base = tmp_path_factory.mktemp("canary")
    config: dict[str, Any] = {"strategy_mode": "eth_basis", "max_retries": 2,
                              "retry_delay_seconds": 0.01, "not_found_confirmations": 1,
                              "not_found_min_age_seconds": 0}
    if nested:
        config["venues"] = {"binance": {key: secret, "name": "binance"}}
    else:
        config[key] = secret
    shown = repr(secret) if "quoted" in where else secret
    if "encoded" in where:  # the forms an HTTP client or SDK writes (review finding 5)
        shown = ENCODERS[encoder](secret)

    class Venue(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            if "route_error" in where and b.block_id == "r1" and not self.route_calls["r1"]:
                self.route_calls["r1"] += 1
                raise ConnectionError(f"401 for {shown}")
            deltas = super().route_instruction(ts, b)
            if "reply" in where:
                deltas = {**deltas, "echo": {"headers": {"X-KEY": shown}, "raw": shown}}
            return deltas

        def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
            if "query_error" in where:
                raise TimeoutError(f"query failed {json.dumps(secret)}")
            return super().query_execution(ts, b)

    class Positions:
        def update_state(self, ts: Any, source: str, deltas: Any) -> None:
            if "handler_error" in where and deltas["block_id"] == "r2":
                raise RuntimeError(f"db refused {shown}")

    class Data(StaticDataProvider):
        def get_data(self, ts: Any) -> Any:
            if "data_error" in where and ts == T(3):
                raise KeyError(f"feed {shown}")
            return super().get_data(ts)

    sink = io.StringIO()
    handler = enable_logging(sink, level="DEBUG")
    texts: list[str] = []
    blobs: list[bytes] = []
    try:
        clock = FakeClock()
        journal = EventLogger(base / "logs", mode)
        em = ExecutionManager(config, Data(), mode, Positions(), Venue(), SimReconciliation(),
                              event_logger=journal, clock=clock, sleep=clock.sleep)
        steps: list[tuple[int, str, list[Any] | None]] = [
            (1, "strategy_manager", [block("r1"), block("r2")]),
            (2, "manual", None), (3, "strategy_manager", [block("r3")]), (4, "manual", None)]
        if "batch" in where:
            steps.append((5, "strategy_manager", [{**block("bad"), "priority": shown},
                                                  {**block("bad2"), "action": [shown]}]))
        for t, trigger, batch in steps:
            try:
                em.update_state(T(t), trigger, batch)
            except ComponentError as exc:
                texts += [str(exc), repr(exc), *getattr(exc, "__notes__", [])]
                blobs.append(pickle.dumps(exc))
        texts += [repr(em.health_check()), repr(em.get_execution_status()),
                  repr(em.execution_queue)]
        journal.export_csv(base / "results", "run")
        journal.close()
    finally:
        logger.remove(handler)
        disable_logging()
    files = [p for p in base.rglob("*") if p.is_file()]
    assert any(p.name == "events.csv" for p in files)
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], ENCODERS[encoder](secret)}
    for p in files:
        data = p.read_bytes()
        for form in forms:
            assert form.encode() not in data, f"{form!r} leaked into {p.name}"
    for text in [*texts, sink.getvalue()]:
        for form in forms:
            assert form not in text, f"{form!r} leaked: {text[:200]}"
    for blob in blobs:
        assert secret.encode() not in blob


# ------------------------------------------------------- encoded forms (review finding 5)

import base64  # noqa: E402
import html  # noqa: E402
import re  # noqa: E402
import urllib.parse  # noqa: E402

from fsm_exec import ExecutionRejected  # noqa: E402
from fsm_exec.boundary.config import Redactor, is_secret_key  # noqa: E402

#: The forms an HTTP client, an SDK or Python writes a secret into an error's text.
ENCODERS: dict[str, Any] = {
    "plain": lambda s: s,
    "quote": urllib.parse.quote,  # safe="/": a base64 secret keeps its slashes
    "quote_nothing_safe": lambda s: urllib.parse.quote(s, safe=""),
    "quote_requests": lambda s: urllib.parse.quote(s, safe="!#$%&'()*+,/:;=?@[]~"),
    "quote_plus": urllib.parse.quote_plus,
    "quote_plus_slash": lambda s: urllib.parse.quote_plus(s, safe="/"),
    "quote_lower_hex": lambda s: re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(),
                                        urllib.parse.quote(s, safe="")),
    "quote_twice": lambda s: urllib.parse.quote(urllib.parse.quote(s, safe="")),
    "urlencode": lambda s: urllib.parse.urlencode({"signature": s}),
    "json": lambda s: json.dumps(s),
    "json_ascii_off": lambda s: json.dumps(s, ensure_ascii=False),
    "json_slash": lambda s: json.dumps(s).replace("/", "\\/"),
    "repr": repr,
    "repr_of_json": lambda s: repr(json.dumps(s)),
    "json_of_repr": lambda s: json.dumps(repr(s)),
    "json_of_json": lambda s: json.dumps(json.dumps({"k": s})),
    "html": html.escape,
    "basic_auth": lambda s: "Basic " + base64.b64encode(b"user:" + s.encode()).decode(),
    "basic_auth_2": lambda s: "Basic " + base64.b64encode(b"me:" + s.encode()).decode(),
    "basic_auth_3": lambda s: "Basic " + base64.b64encode(b"alice:" + s.encode()).decode(),
    "base64url": lambda s: base64.urlsafe_b64encode(s.encode()).decode(),
}
_SECRET_KEYS_ALL = ["api_secret", "Authorization", "Proxy-Authorization", "Cookie",
                    "session_token", "sessionid", "APISECRET", "clientSecret", "x-api-key"]
import json  # noqa: E402

_secrets = st.text(alphabet="abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
                            "/+=-_.~!*'() ü€\\\"", min_size=8, max_size=40)


def _shaped(secret: str) -> bool:
    """A secret with enough letters and digits not to be a word the outputs hold anyway."""
    return (secret.strip() == secret and sum(c.isascii() and c.isalnum() for c in secret) >= 6
            and any(c.isdigit() for c in secret) and any(c.isupper() for c in secret))


@pytest.mark.parametrize("key", ["Authorization", "authorization", "Proxy-Authorization",
                                 "Cookie", "Set-Cookie", "cookies", "session", "session_id",
                                 "sessionToken", "sessionid", "APISECRET", "clientsecret",
                                 "accesstoken", "authkey", "X-Auth-Token", "x-api-key",
                                 "csrf_token", "bearer"])
def test_http_credential_keys_are_secret(key: str) -> None:
    """The names HTTP clients give credentials (headers, cookies, sessions, run-together
    names) are secret keys."""
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["trading_session", "session_start", "market_session",
                                 "author", "authorized_venues", "base_token", "monkey",
                                 "turkey_count", "token_symbol"])
def test_session_and_author_data_keys_stay_data(key: str) -> None:
    """A trading session, an author or a token's symbol are data, not credentials."""
    assert not is_secret_key(key)


def test_an_authorization_header_value_redacts_its_token_alone() -> None:
    """``Bearer <token>`` and a cookie string: the token and each cookie value are secrets
    of their own (an error often quotes the token without its scheme)."""
    redact = Redactor({"headers": {"Authorization": "Bearer eyJhbGciOi.J9xYz",
                                   "Cookie": "sid=S3ss10n-abc-123; theme=dark"}}, ())
    assert redact("token eyJhbGciOi.J9xYz expired") == "token [REDACTED] expired"
    assert redact("bad sid S3ss10n-abc-123") == "bad sid [REDACTED]"
    assert redact("theme=dark") == "theme=dark"


@settings(max_examples=200, deadline=None)
@given(secret=_secrets, encoder=st.sampled_from(sorted(ENCODERS)),
       key=st.sampled_from(_SECRET_KEYS_ALL), before=st.sampled_from(["", "x", "/v1/", "a=", " "]),
       after=st.sampled_from(["", "/order", "&b=1", '"', "\\"]))
def test_redactor_finds_every_encoded_form(secret: str, encoder: str, key: str, before: str,
                                           after: str) -> None:
    """For any secret and any form an HTTP client or SDK writes it in, the redacted text
    holds no trace of that form."""
    from hypothesis import assume
    assume(_shaped(secret))
    form = ENCODERS[encoder](secret)
    out = Redactor({"venue": {key: secret}}, ())(f"error {before}{form}{after} at venue")
    assert "[REDACTED]" in out
    assert form not in out and secret not in out


def test_the_reviews_url_quoted_secret_reaches_no_output(tmp_path: Path) -> None:
    """Review 5: a venue puts urllib.parse.quote(secret) (slashes kept) in its error: the
    journal, health_check()'s errors, the CSV, status and the report hold no form of it."""
    from fsm_exec.cli.main import main

    sec = "Zk9x/4Qa+PLm8w=="
    auth = "Bearer tok-ABCdef-987654"

    class Venue(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            raise ExecutionRejected(
                "403 for https://api.example.com/v1/sign/" + urllib.parse.quote(sec)
                + "/order; sent Authorization: " + json.dumps(auth)
                + " token=" + urllib.parse.quote_plus(auth.split()[1]), retryable=False)

    config = {"kraken": {"api_secret": sec}, "headers": {"Authorization": auth}}
    journal = EventLogger(tmp_path / "logs", "live")
    em = ExecutionManager(config, StaticDataProvider({"ETH": 3000.0}), "live",
                          LeakyPositions(), Venue(), SimReconciliation(), event_logger=journal)
    em.update_state(T(1), "strategy_manager", [block("b1")])
    texts = [repr(em.health_check()), repr(em.get_execution_status())]
    journal.export_csv(tmp_path / "results", "run")
    em.close()
    for argv in (["status", str(tmp_path / "logs")], ["status", "--json", str(tmp_path / "logs")],
                 ["report", str(tmp_path / "logs"), "-o", str(tmp_path / "report.md"),
                  "--format", "markdown"]):
        sink = io.StringIO()
        main(argv, out=sink)
        texts.append(sink.getvalue())
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "report.md" for p in files)
    texts += [p.read_text() for p in files]
    assert any("[REDACTED]" in t for t in texts)
    forms = {urllib.parse.quote(sec), sec, "tok-ABCdef-987654", "Zk9x", "PLm8w"}
    for text in texts:
        for form in forms:
            assert form not in text, f"{form!r} leaked: {text[:300]}"

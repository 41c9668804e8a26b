"""Webhook signatures (hmac-sha256, GitHub, Slack), delivery ids, bodies, payloads and config checks
(dataworkflows.webhooks, a pure module)."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.datastructures import Headers

from dataworkflows import webhooks
from dataworkflows.webhooks import HookConfig

SECRET = "s3cr3t-s3cr3t-s3cr3t"
NOW = 1_700_000_000.0


def headers(**values: str) -> Headers:
    """Case-insensitive request headers, as the API hands them over (X_DW_Timestamp -> X-DW-Timestamp)."""
    return Headers({name.replace("_", "-"): value for name, value in values.items()})


def dw_signed(body: bytes, timestamp: float = NOW, secret: str = SECRET) -> Headers:
    ts = str(int(timestamp))
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return headers(X_DW_Timestamp=ts, X_DW_Signature=f"sha256={digest}")


HMAC = HookConfig()
GITHUB = HookConfig(signature="github")
SLACK = HookConfig(signature="slack")
UNSIGNED = HookConfig(signature="none")


# -- hmac-sha256 ---------------------------------------------------------------------------------


def test_hmac_sha256_valid_signature_is_accepted() -> None:
    body = b'{"order": 42}'
    assert webhooks.verify(HMAC, SECRET, dw_signed(body), body, NOW) is None
    # Within the window either way, and header names in any case.
    assert webhooks.verify(HMAC, SECRET, dw_signed(body, NOW - 299), body, NOW) is None
    assert webhooks.verify(HMAC, SECRET, dw_signed(body, NOW + 299), body, NOW) is None
    lower = {k.lower(): v for k, v in dw_signed(body).items()}
    assert webhooks.verify(HMAC, SECRET, lower, body, NOW) is None


def test_hmac_sha256_signature_matches_an_independent_computation() -> None:
    body = b"hello"
    expected = "sha256=" + hmac.new(b"key", b"1700000000.hello", hashlib.sha256).hexdigest()
    signed = webhooks.signed_content(HMAC, headers(X_DW_Timestamp="1700000000"), body)
    assert signed == b"1700000000.hello"
    assert webhooks.expected_signature(HMAC, "key", signed) == expected


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ({}, "timestamp_missing"),
        ({"X_DW_Signature": "sha256=00"}, "timestamp_missing"),
        ({"X_DW_Timestamp": str(int(NOW))}, "signature_missing"),
        ({"X_DW_Timestamp": str(int(NOW)), "X_DW_Signature": ""}, "signature_missing"),
        ({"X_DW_Timestamp": "yesterday", "X_DW_Signature": "sha256=00"}, "timestamp_invalid"),
        ({"X_DW_Timestamp": "-5", "X_DW_Signature": "sha256=00"}, "timestamp_invalid"),
        ({"X_DW_Timestamp": str(int(NOW)), "X_DW_Signature": "sha256=" + "0" * 64}, "signature_invalid"),
        ({"X_DW_Timestamp": str(int(NOW)), "X_DW_Signature": "nonsense é"}, "signature_invalid"),
    ],
)
def test_hmac_sha256_missing_or_wrong_headers_are_refused(sent: dict[str, str], code: str) -> None:
    refusal = webhooks.verify(HMAC, SECRET, headers(**sent), b"{}", NOW)
    assert refusal is not None and refusal.code == code


def test_hmac_sha256_refuses_another_secret_body_or_timestamp() -> None:
    body = b'{"a": 1}'
    for sent, content in (
        (dw_signed(body, secret="another-secret-xxxx"), body),
        (dw_signed(body), b'{"a": 2}'),
    ):
        refusal = webhooks.verify(HMAC, SECRET, sent, content, NOW)
        assert refusal is not None and refusal.code == "signature_invalid"
    # The timestamp is signed: moving it (still within the window) breaks the signature.
    moved = dict(dw_signed(body))
    moved["X-DW-Timestamp"] = str(int(NOW) + 1)
    refusal = webhooks.verify(HMAC, SECRET, Headers(moved), body, NOW)
    assert refusal is not None and refusal.code == "signature_invalid"


@pytest.mark.parametrize("offset", [-301, 301, -86400, 10**6])
def test_hmac_sha256_stale_or_future_timestamps_are_refused(offset: int) -> None:
    body = b"{}"
    refusal = webhooks.verify(HMAC, SECRET, dw_signed(body, NOW + offset), body, NOW)
    assert refusal is not None and refusal.code == "timestamp_out_of_range"


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    body = b"{}"
    assert webhooks.verify(HMAC, SECRET, dw_signed(body), body, NOW) is None
    assert len(calls) == 1


# -- GitHub ----------------------------------------------------------------------------------------


def test_github_documented_vector() -> None:
    # docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody",
    # payload "Hello, World!".
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert webhooks.expected_signature(GITHUB, secret, webhooks.signed_content(GITHUB, {}, body)) == expected
    sent = headers(X_Hub_Signature_256=expected)
    assert webhooks.verify(GITHUB, secret, sent, body, time.time()) is None
    # Upper-case hex is the same signature.
    assert webhooks.verify(GITHUB, secret, headers(X_Hub_Signature_256=expected.upper()), body, NOW) is None


def test_github_missing_or_wrong_signature_is_refused() -> None:
    body = b"Hello, World!"
    missing = webhooks.verify(GITHUB, SECRET, headers(), body, NOW)
    assert missing is not None and missing.code == "signature_missing"
    wrong = webhooks.verify(GITHUB, SECRET, headers(X_Hub_Signature_256="sha256=" + "ab" * 32), body, NOW)
    assert wrong is not None and wrong.code == "signature_invalid"
    # The old SHA-1 header alone does not do.
    sha1 = headers(X_Hub_Signature="sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest())
    refusal = webhooks.verify(GITHUB, SECRET, sha1, body, NOW)
    assert refusal is not None and refusal.code == "signature_missing"


# -- Slack -----------------------------------------------------------------------------------------

# api.slack.com/authentication/verifying-requests-from-slack: the documented example.
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_slack_documented_vector() -> None:
    sent = headers(X_Slack_Request_Timestamp=SLACK_TS, X_Slack_Signature=SLACK_SIGNATURE)
    assert webhooks.signed_content(SLACK, sent, SLACK_BODY).startswith(b"v0:1531420618:token=")
    # Verified at the example's own time (its timestamp is from 2018).
    assert webhooks.verify(SLACK, SLACK_SECRET, sent, SLACK_BODY, float(SLACK_TS) + 10) is None


def test_slack_stale_missing_or_wrong_is_refused() -> None:
    sent = headers(X_Slack_Request_Timestamp=SLACK_TS, X_Slack_Signature=SLACK_SIGNATURE)
    stale = webhooks.verify(SLACK, SLACK_SECRET, sent, SLACK_BODY, float(SLACK_TS) + 301)
    assert stale is not None and stale.code == "timestamp_out_of_range"
    missing = webhooks.verify(SLACK, SLACK_SECRET, headers(X_Slack_Signature=SLACK_SIGNATURE), SLACK_BODY, NOW)
    assert missing is not None and missing.code == "timestamp_missing"
    at_time = float(SLACK_TS)
    no_signature = webhooks.verify(
        SLACK, SLACK_SECRET, headers(X_Slack_Request_Timestamp=SLACK_TS), SLACK_BODY, at_time
    )
    assert no_signature is not None and no_signature.code == "signature_missing"
    wrong = webhooks.verify(SLACK, SLACK_SECRET, sent, SLACK_BODY + b"x", at_time)
    assert wrong is not None and wrong.code == "signature_invalid"
    # A sha256= prefix is not Slack's.
    renamed = headers(X_Slack_Request_Timestamp=SLACK_TS, X_Slack_Signature="sha256=" + SLACK_SIGNATURE[3:])
    refusal = webhooks.verify(SLACK, SLACK_SECRET, renamed, SLACK_BODY, at_time)
    assert refusal is not None and refusal.code == "signature_invalid"


def test_unsigned_hooks_check_nothing() -> None:
    assert webhooks.verify(UNSIGNED, None, headers(), b"anything", NOW) is None


# -- delivery ids ----------------------------------------------------------------------------------


def test_delivery_id_comes_from_the_configured_header_first() -> None:
    config = HookConfig(delivery_id_header="X-Request-Id")
    sent = headers(X_Request_Id="req-1", X_Delivery_Id="del-1")
    assert webhooks.delivery_id(config, sent, b"{}") == "req-1"
    # Without the configured header: X-Delivery-Id.
    assert webhooks.delivery_id(config, headers(X_Delivery_Id="del-1"), b"{}") == "del-1"
    assert webhooks.delivery_id(HMAC, headers(X_Delivery_Id=" del-2 "), b"{}") == "del-2"
    # UTF-8 as the server hands it over (decoded as latin-1): the id the sender wrote (it was
    # stored as `ordÃ©r-1`, where a copied header with the same bytes read `ordér-1`).
    sent_utf8 = headers(X_Delivery_Id="ordér-1".encode().decode("latin-1"))
    assert webhooks.delivery_id(HMAC, sent_utf8, b"{}") == "ordér-1"


def test_github_delivery_id_header() -> None:
    sent = headers(X_GitHub_Delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958", X_Delivery_Id="other")
    assert webhooks.delivery_id(GITHUB, sent, b"{}") == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    # Other schemes do not read X-GitHub-Delivery.
    assert webhooks.delivery_id(HMAC, headers(X_GitHub_Delivery="x"), b"{}").startswith("sha256:")


def test_delivery_id_without_a_header_hashes_the_signed_content() -> None:
    body = b'{"a": 1}'
    signed = dw_signed(body)
    derived = webhooks.delivery_id(HMAC, signed, body)
    expected = hashlib.sha256(f"{int(NOW)}.".encode() + body).hexdigest()
    assert derived == f"sha256:{expected}"
    # The same signed request again (a replay) has the same id; re-signed later, another.
    assert webhooks.delivery_id(HMAC, dw_signed(body), body) == derived
    assert webhooks.delivery_id(HMAC, dw_signed(body, NOW + 1), body) != derived
    assert webhooks.delivery_id(HMAC, signed, b'{"a": 2}') != derived
    # Slack re-signs its retries with a new timestamp: the body alone (or its event_id) names them;
    # github and unsigned hooks sign (or send) the body alone.
    slack = headers(X_Slack_Request_Timestamp=SLACK_TS)
    assert webhooks.delivery_id(SLACK, slack, b"x") == "sha256:" + hashlib.sha256(b"x").hexdigest()
    assert webhooks.delivery_id(SLACK, slack, b'{"event_id": "Ev1"}') == "slack:Ev1"
    assert webhooks.delivery_id(UNSIGNED, headers(), b"x") == "sha256:" + hashlib.sha256(b"x").hexdigest()
    assert webhooks.delivery_id(GITHUB, headers(), b"x") == "sha256:" + hashlib.sha256(b"x").hexdigest()


def test_delivery_ids_are_bounded() -> None:
    assert webhooks.delivery_id_refusal("a" * 200) is None
    refusal = webhooks.delivery_id_refusal("a" * 201)
    assert refusal is not None and refusal.code == "invalid_delivery_id"


def test_delivery_ids_with_what_a_request_id_must_not_hold_are_refused_and_recorded_escaped() -> None:
    """A terminal escape sequence, a bidi override, a NUL, a lone surrogate (Slack's event_id is read
    with json.loads, which takes `\\ud800`): refused as the execute route refuses them in a requestId,
    and the row stores them escaped (they reached psql's terminal, or PostgreSQL refused them: a 500)."""
    for sent, recorded in (
        ("\x1b]0;pwned\x07\x1b[2J", "\\u001b]0;pwned\\u0007\\u001b[2J"),
        ("order-\u202e42", "order-\\u202e42"),
        ("a\x00b", "a\\u0000b"),
        ("slack:a\ud800b", "slack:a\\ud800b"),
        ("tag\U000e0041", "tag\\U000e0041"),
    ):
        refusal = webhooks.delivery_id_refusal(sent)
        assert refusal is not None and refusal.code == "invalid_delivery_id", sent
        assert webhooks.recorded_delivery_id(sent) == recorded
    for fine in ("order-42", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "ordér-1", "\u0646\u0627\u0645\u200c\u0647\u0627"):
        assert webhooks.delivery_id_refusal(fine) is None
        assert webhooks.recorded_delivery_id(fine) == fine
    assert webhooks.delivery_id(SLACK, headers(), b'{"event_id": "a\\ud800b"}') == "slack:a\ud800b"


# -- bodies and payloads ---------------------------------------------------------------------------


def test_bodies_by_content_type() -> None:
    assert webhooks.parse_body("application/json", b'{"a": [1, 2]}', 32) == {"a": [1, 2]}
    assert webhooks.parse_body("application/vnd.github+json; charset=utf-8", b"[1]", 32) == [1]
    assert webhooks.parse_body("", b'"text"', 32) == "text"
    assert webhooks.parse_body("application/json", b"", 32) is None
    assert webhooks.parse_body("text/plain", b"hello \xc3\xa9", 32) == "hello é"
    assert webhooks.parse_body("application/xml", b"<a/>", 32) == "<a/>"
    form = webhooks.parse_body("application/x-www-form-urlencoded", b"a=1&b=&a=2&c=%2Fx", 32)
    assert form == {"a": ["1", "2"], "b": "", "c": "/x"}


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b"{not json", "not valid JSON"),
        ("", b"plain words", "not valid JSON"),
        ("text/plain", b"\xff\xfe", "not valid UTF-8"),
        # Percent-escaped bytes that are not UTF-8 were taken as U+FFFD.
        ("application/x-www-form-urlencoded", b"a=%FF%FE", "percent-escapes are not UTF-8"),
        ("application/json", b"[" * 40 + b"]" * 40, "nested deeper than 32"),
    ],
)
def test_malformed_bodies_are_refused(content_type: str, body: bytes, message: str) -> None:
    with pytest.raises(webhooks.BodyError, match=message):
        webhooks.parse_body(content_type, body, 32)


def test_query_pairs_and_copied_headers() -> None:
    assert webhooks.pairs_object([("a", "1"), ("b", "2"), ("a", "3"), ("a", "4")]) == {"a": ["1", "3", "4"], "b": "2"}
    config = webhooks.parse_config({"headers": ["X-GitHub-Event", "X-Missing", "x-github-event"]})
    assert config.headers == ("x-github-event", "x-missing")
    sent = headers(X_GitHub_Event="push", Authorization="Bearer nope")
    assert webhooks.copied_headers(config, sent) == {"x-github-event": "push"}


def test_payload_with_and_without_template() -> None:
    trigger_id = uuid.uuid4()
    received = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    fired = webhooks.fired_by(trigger_id, "orders", "d-1", received)
    assert fired == {
        "kind": "webhook",
        "triggerId": str(trigger_id),
        "name": "orders",
        "deliveryId": "d-1",
        "receivedAt": "2024-05-01T12:00:00+00:00",
    }
    plain = webhooks.payload({"a": 1}, {"x-h": "v"}, {"q": "1"}, fired)
    assert plain == {"body": {"a": 1}, "headers": {"x-h": "v"}, "query": {"q": "1"}, "firedBy": fired}
    # A template's object replaces body/headers/query; firedBy always wins.
    shaped = webhooks.payload({"a": 1}, {}, {}, fired, {"order": 1, "firedBy": "spoofed"})
    assert shaped == {"order": 1, "firedBy": fired}


def test_activation_expression_binds_body_headers_and_query() -> None:
    assert webhooks.activation_expression({}) is None
    assert webhooks.activation_expression({"activationCondition": "   "}) is None
    expression = webhooks.activation_expression({"activationCondition": "body.action === 'opened' // why"})
    assert expression is not None
    # A trailing line comment cannot swallow the closing parenthesis.
    assert "body.action === 'opened' // why\n)" in expression
    assert expression.endswith("(trigger.body, trigger.headers, trigger.query)")
    assert webhooks.condition_scope(1, {"h": "v"}, {"q": "1"}) == {
        "trigger": {"body": 1, "headers": {"h": "v"}, "query": {"q": "1"}}
    }


async def test_check_condition_uses_the_given_checker() -> None:
    seen: list[str] = []

    async def check(expression: str) -> str | None:
        seen.append(expression)
        return "SyntaxError: unexpected token" if "((" in expression else None

    assert await webhooks.check_condition({}, check) == []
    assert await webhooks.check_condition({"activationCondition": "body.ok"}, check) == []
    problems = await webhooks.check_condition({"activationCondition": "(("}, check)
    assert problems == [("/activationCondition", "condition_syntax", "SyntaxError: unexpected token")]
    assert len(seen) == 2 and all("trigger.body" in s for s in seen)


# -- config ----------------------------------------------------------------------------------------


def test_valid_configs_have_no_problems() -> None:
    assert webhooks.check_config({}) == []
    assert (
        webhooks.check_config(
            {
                "signature": "github",
                "payloadTemplate": {"repo": "{{ body.repository.full_name }}", "n": 1, "list": ["{{ query.x }}"]},
                "headers": ["X-GitHub-Event", "X-GitHub-Delivery"],
                "activationCondition": "headers['x-github-event'] === 'push'",
                "deliveryIdHeader": "X-GitHub-Delivery",
            }
        )
        == []
    )
    for scheme in webhooks.SCHEMES:
        assert webhooks.check_config({"signature": scheme, "payloadTemplate": None, "activationCondition": None}) == []


@pytest.mark.parametrize(
    ("config", "pointer", "code"),
    [
        ([], "", "type"),
        ({"signature": "md5"}, "/signature", "enum"),
        ({"signature": None}, "/signature", "enum"),
        ({"payloadTemplate": "{{ body }}"}, "/payloadTemplate", "type"),
        ({"payloadTemplate": {"a": "{{ body. }}"}}, "/payloadTemplate", "template_syntax"),
        ({"headers": "X-A"}, "/headers", "type"),
        ({"headers": ["X-A", "bad header"]}, "/headers/1", "format"),
        ({"headers": ["X-A", 3]}, "/headers/1", "format"),
        ({"headers": ["X-A", "x-a"]}, "/headers/1", "duplicate"),
        ({"headers": [f"X-{i}" for i in range(51)]}, "/headers", "too_long"),
        ({"activationCondition": 1}, "/activationCondition", "type"),
        ({"activationCondition": ""}, "/activationCondition", "type"),
        ({"activationCondition": "x" * 10_001}, "/activationCondition", "too_long"),
        ({"deliveryIdHeader": "X Id"}, "/deliveryIdHeader", "format"),
        ({"deliveryIdHeader": ""}, "/deliveryIdHeader", "format"),
        ({"signature": "none", "duplicateWindowSeconds": 0}, "/duplicateWindowSeconds", "range"),
        ({"signature": "none", "duplicateWindowSeconds": 604_801}, "/duplicateWindowSeconds", "range"),
        ({"signature": "none", "duplicateWindowSeconds": 1.5}, "/duplicateWindowSeconds", "range"),
        ({"signature": "none", "duplicateWindowSeconds": True}, "/duplicateWindowSeconds", "range"),
        ({"duplicateWindowSeconds": 60}, "/duplicateWindowSeconds", "unsigned_only"),
        ({"signature": "github", "duplicateWindowSeconds": 60}, "/duplicateWindowSeconds", "unsigned_only"),
        ({"signatur": "none"}, "/signatur", "unknown_field"),
        ({"a/b": 1}, "/a~1b", "unknown_field"),
    ],
)
def test_config_problems(config: Any, pointer: str, code: str) -> None:
    problems = webhooks.check_config(config)
    assert (pointer, code) in [(p, c) for p, c, _ in problems], problems


def test_parse_config_applies_defaults() -> None:
    config = webhooks.parse_config({})
    assert config == HookConfig()
    assert config.signed and config.signature == "hmac-sha256"
    assert config.timestamp_header == "X-DW-Timestamp" and config.signature_header == "X-DW-Signature"
    assert config.delivery_id_headers == ("X-Delivery-Id",)
    github = webhooks.parse_config({"signature": "github", "deliveryIdHeader": "X-Request-Id"})
    assert github.timestamp_header is None
    assert github.delivery_id_headers == ("X-Request-Id", "X-GitHub-Delivery", "X-Delivery-Id")
    # An unusable stored value falls back to the safe default: signed.
    assert webhooks.parse_config({"signature": "bogus"}).signature == "hmac-sha256"


def test_only_an_unsigned_hooks_body_hash_ids_lapse() -> None:
    """A delivery known by its body's hash alone, on an unsigned hook, is a duplicate for the hook's
    window; one that names its id, or a signed one, for as long as it is kept."""
    unsigned = webhooks.parse_config({"signature": "none"})
    assert webhooks.check_config({"signature": "none", "duplicateWindowSeconds": 3600}) == []
    assert webhooks.lapse_seconds(unsigned, {}) == webhooks.DUPLICATE_WINDOW_SECONDS == 300
    assert webhooks.lapse_seconds(unsigned, {"x-delivery-id": "e-1"}) is None
    hourly = webhooks.parse_config({"signature": "none", "duplicateWindowSeconds": 3600})
    assert webhooks.lapse_seconds(hourly, {"x-delivery-id": " "}) == 3600  # an empty id names nothing
    named = webhooks.parse_config({"signature": "none", "deliveryIdHeader": "X-Request-Id"})
    assert webhooks.lapse_seconds(named, {"x-request-id": "r-1"}) is None
    assert webhooks.lapse_seconds(webhooks.parse_config({}), {}) is None
    assert webhooks.lapse_seconds(webhooks.parse_config({"signature": "github"}), {}) is None
    assert not webhooks.parse_config({"signature": "none"}).signed


def test_a_query_string_is_read_as_strict_utf_8() -> None:
    assert webhooks.query_fields(b"a=%C3%A9&b=1&b=2&c=&d+e=f+g") == [
        ("a", "é"),
        ("b", "1"),
        ("b", "2"),
        ("c", ""),
        ("d e", "f g"),
    ]
    assert webhooks.query_fields("q=é".encode()) == [("q", "é")]  # unescaped UTF-8, as clients send it
    for raw in (b"a=%FF", b"a=\xff"):
        with pytest.raises(webhooks.BodyError, match="UTF-8"):
            webhooks.query_fields(raw)

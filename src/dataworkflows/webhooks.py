"""Webhooks: a trigger's config, signature verification, delivery ids and the run's payload. Pure
module (api/hooks.py reads the request, the database and the sandboxes).

Config (dw.triggers.config of a webhook trigger):
    {"signature": "hmac-sha256" (default) | "github" | "slack" | "none",
     "payloadTemplate": object | null  ({{ }} templates over body, headers, query),
     "headers": [header names copied into the payload, lower-cased] (default []),
     "activationCondition": JavaScript | null  (sandboxed, over body, headers, query),
     "deliveryIdHeader": header name | null,
     "duplicateWindowSeconds": 1-604800 (default 300; an unsigned hook's only)}

Signature schemes (the secret is the trigger's, UTF-8; hex digests in lower case):
    hmac-sha256  X-DW-Timestamp: unix seconds; X-DW-Signature: "sha256=" + hex(HMAC-SHA256(secret,
                 "<timestamp>." + body)); the timestamp within TOLERANCE_SECONDS of now, either way.
    github       X-Hub-Signature-256: "sha256=" + hex(HMAC-SHA256(secret, body)) (no timestamp:
                 replays are caught by the delivery id, X-GitHub-Delivery).
    slack        X-Slack-Request-Timestamp and X-Slack-Signature: "v0=" + hex(HMAC-SHA256(secret,
                 "v0:<timestamp>:" + body)), the same window.
    none         no check (a trigger created explicitly as unsigned).
Every comparison of a signature is constant-time (hmac.compare_digest).

Delivery id: the configured header, else X-GitHub-Delivery (github), else X-Delivery-Id, else
"sha256:" + hex(SHA-256 of the signed content) (timestamp and body as signed), so that a replay of
the same signed request is a duplicate while a re-signed retry with a new timestamp is not. An
unsigned hook's such id (its body's hash) is a duplicate for duplicateWindowSeconds only: past
that, the same body is a new delivery (lapse_seconds).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from dataworkflows import templating
from dataworkflows.json_depth import json_depth
from dataworkflows.json_text import LONE_SURROGATE, lone_surrogate
from dataworkflows.validation import has_unprintable_character, sent_text, unknown_fields

HMAC_SHA256, GITHUB, SLACK, NONE = "hmac-sha256", "github", "slack", "none"
SCHEMES = (HMAC_SHA256, GITHUB, SLACK, NONE)
# How far a signed timestamp may be from the server's clock, in either direction.
TOLERANCE_SECONDS = 300

DW_TIMESTAMP, DW_SIGNATURE = "X-DW-Timestamp", "X-DW-Signature"
GITHUB_SIGNATURE, GITHUB_DELIVERY = "X-Hub-Signature-256", "X-GitHub-Delivery"
SLACK_TIMESTAMP, SLACK_SIGNATURE = "X-Slack-Request-Timestamp", "X-Slack-Signature"
DELIVERY_ID_HEADER = "X-Delivery-Id"
# Longer delivery ids are refused (they become part of the run's request id).
MAX_DELIVERY_ID = 200
MAX_COPIED_HEADERS = 50
MAX_CONDITION_CHARS = 10_000
# How long an unsigned hook's delivery without an id (known by its body's hash) makes the same body
# a duplicate, by default and at most.
DUPLICATE_WINDOW_SECONDS = TOLERANCE_SECONDS
MAX_DUPLICATE_WINDOW_SECONDS = 7 * 24 * 3600

CONFIG_KEYS = (
    "signature",
    "payloadTemplate",
    "headers",
    "activationCondition",
    "deliveryIdHeader",
    "duplicateWindowSeconds",
)
# An HTTP field name (RFC 9110 token), at most 100 characters.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")

Problem = tuple[str, str, str]


@dataclass(frozen=True)
class HookConfig:
    """A webhook trigger's config with its defaults applied."""

    signature: str = HMAC_SHA256
    payload_template: dict[str, Any] | None = None
    # Lower-case names.
    headers: tuple[str, ...] = ()
    activation_condition: str | None = None
    delivery_id_header: str | None = None
    duplicate_window_seconds: int = DUPLICATE_WINDOW_SECONDS

    @property
    def signed(self) -> bool:
        return self.signature != NONE

    @property
    def timestamp_header(self) -> str | None:
        return {HMAC_SHA256: DW_TIMESTAMP, SLACK: SLACK_TIMESTAMP}.get(self.signature)

    @property
    def signature_header(self) -> str | None:
        return {HMAC_SHA256: DW_SIGNATURE, GITHUB: GITHUB_SIGNATURE, SLACK: SLACK_SIGNATURE}.get(self.signature)

    @property
    def delivery_id_headers(self) -> tuple[str, ...]:
        """The headers read for the delivery id, first found wins."""
        names = [self.delivery_id_header] if self.delivery_id_header else []
        if self.signature == GITHUB:
            names.append(GITHUB_DELIVERY)
        names.append(DELIVERY_ID_HEADER)
        return tuple(dict.fromkeys(names))


# -- config --------------------------------------------------------------------------------------


def check_config(config: Any) -> list[Problem]:
    """Every problem with a webhook trigger's config: (JSON pointer relative to the config, code,
    message). The activation condition's syntax is checked in the sandbox apart (check_condition)."""
    if not isinstance(config, dict):
        return [("", "type", "must be a JSON object")]
    problems: list[Problem] = unknown_fields(config, CONFIG_KEYS)
    signature = config.get("signature", HMAC_SHA256)
    if signature not in SCHEMES:
        problems.append(("/signature", "enum", f"must be one of {', '.join(SCHEMES)}"))
    problems.extend(_template_problems(config.get("payloadTemplate")))
    problems.extend(_headers_problems(config.get("headers", [])))
    condition = config.get("activationCondition")
    if condition is not None and not (isinstance(condition, str) and condition.strip()):
        problems.append(("/activationCondition", "type", "must be a non-empty string (JavaScript) or null"))
    elif isinstance(condition, str) and len(condition) > MAX_CONDITION_CHARS:
        problems.append(("/activationCondition", "too_long", f"must be at most {MAX_CONDITION_CHARS} characters"))
    header = config.get("deliveryIdHeader")
    if header is not None and not (isinstance(header, str) and _HEADER_NAME.match(header)):
        problems.append(("/deliveryIdHeader", "format", "must be an HTTP header name (letters, digits, -) or null"))
    problems.extend(_window_problems(config.get("duplicateWindowSeconds"), signature))
    return problems


def _window_problems(window: Any, signature: Any) -> list[Problem]:
    if window is None:
        return []
    if not (isinstance(window, int) and not isinstance(window, bool)) or not (
        1 <= window <= MAX_DUPLICATE_WINDOW_SECONDS
    ):
        return [("/duplicateWindowSeconds", "range", f"must be whole seconds, 1 to {MAX_DUPLICATE_WINDOW_SECONDS}")]
    if signature != NONE:
        # A signed delivery's hash covers its timestamp (or, for github, the sender's id header
        # names it): the same signed request again is a replay, whenever it comes.
        return [("/duplicateWindowSeconds", "unsigned_only", 'applies to an unsigned hook ("signature": "none") only')]
    return []


def _template_problems(template: Any) -> list[Problem]:
    if template is None:
        return []
    if not isinstance(template, dict):
        return [("/payloadTemplate", "type", "must be a JSON object or null")]
    # Bounded before it is compiled: 20,000 lookups (600 kB) took 11 s to compile (a review).
    too_large = templating.too_much_template_text(templating.template_chars(template), "a payloadTemplate's strings")
    if too_large is not None:
        return [("/payloadTemplate", "too_large", too_large)]
    error = templating.check_template(template)
    return [] if error is None else [("/payloadTemplate", "template_syntax", error)]


def _headers_problems(headers: Any) -> list[Problem]:
    if not isinstance(headers, list):
        return [("/headers", "type", "must be a list of header names")]
    if len(headers) > MAX_COPIED_HEADERS:
        return [("/headers", "too_long", f"at most {MAX_COPIED_HEADERS} headers")]
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, name in enumerate(headers):
        if not (isinstance(name, str) and _HEADER_NAME.match(name)):
            problems.append((f"/headers/{index}", "format", "must be an HTTP header name (letters, digits, -)"))
        elif name.lower() in seen:
            problems.append((f"/headers/{index}", "duplicate", f"header {name!r} is listed twice"))
        else:
            seen.add(name.lower())
    return problems


def parse_config(config: Mapping[str, Any]) -> HookConfig:
    """The config with defaults applied (a stored config was checked when it was written; anything
    unusable still falls back to the safe default: signed with hmac-sha256)."""
    signature = config.get("signature")
    template = config.get("payloadTemplate")
    headers = config.get("headers")
    condition = config.get("activationCondition")
    delivery_header = config.get("deliveryIdHeader")
    window = config.get("duplicateWindowSeconds")
    return HookConfig(
        signature=signature if signature in SCHEMES else HMAC_SHA256,
        payload_template=template if isinstance(template, dict) else None,
        headers=tuple(dict.fromkeys(h.lower() for h in headers if isinstance(h, str)))
        if isinstance(headers, list)
        else (),
        activation_condition=condition if isinstance(condition, str) and condition.strip() else None,
        delivery_id_header=delivery_header if isinstance(delivery_header, str) and delivery_header else None,
        duplicate_window_seconds=window
        if isinstance(window, int) and not isinstance(window, bool) and 1 <= window <= MAX_DUPLICATE_WINDOW_SECONDS
        else DUPLICATE_WINDOW_SECONDS,
    )


# -- the activation condition ----------------------------------------------------------------------

# The condition sandbox binds trigger, nodes and execution; the condition reads body, headers and
# query, bound here from the scope's trigger ({"body", "headers", "query"}).
_CONDITION = (
    "(function (body, headers, query) {{ 'use strict'; return (\n{expr}\n); }})"
    "(trigger.body, trigger.headers, trigger.query)"
)


def activation_expression(config: Mapping[str, Any]) -> str | None:
    """The JavaScript the condition sandbox evaluates (or checks) for the trigger's
    activationCondition, or None without one."""
    condition = parse_config(config).activation_condition
    return None if condition is None else _CONDITION.format(expr=condition)


def condition_scope(body: Any, headers: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    """The scope for ConditionPool.evaluate(activation_expression(config), scope)."""
    return {"trigger": {"body": body, "headers": headers, "query": query}}


async def check_condition(config: Mapping[str, Any], check: Callable[[str], Awaitable[str | None]]) -> list[Problem]:
    """The activation condition's syntax, checked with the sandbox (`check` is ConditionPool.check)."""
    expression = activation_expression(config)
    if expression is None:
        return []
    error = await check(expression)
    return [] if error is None else [("/activationCondition", "condition_syntax", error)]


# -- signatures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a delivery is not accepted: a code for the problem detail, and the detail."""

    code: str
    message: str


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value (the mapping's names are lower-case); an empty value counts as missing."""
    value = headers.get(name.lower())
    if value is None:
        return None
    return value.strip() or None


def signed_content(config: HookConfig, headers: Mapping[str, str], body: bytes) -> bytes:
    """What the scheme signs: the body, after its timestamp for hmac-sha256 and slack."""
    timestamp = (_header(headers, config.timestamp_header) if config.timestamp_header else None) or ""
    if config.signature == HMAC_SHA256:
        return timestamp.encode() + b"." + body
    if config.signature == SLACK:
        return b"v0:" + timestamp.encode() + b":" + body
    return body


def expected_signature(config: HookConfig, secret: str, content: bytes) -> str:
    """The signature header's value for this content: "sha256=<hex>" ("v0=<hex>" for slack)."""
    digest = hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()
    return ("v0=" if config.signature == SLACK else "sha256=") + digest


def verify(
    config: HookConfig, secret: str | None, headers: Mapping[str, str], body: bytes, now: float
) -> Refusal | None:
    """None when the request is signed as the trigger's scheme says (or the scheme is none), else
    why not. `now` is the server's clock in unix seconds."""
    if not config.signed:
        return None
    assert secret is not None, "a signed trigger has a secret"
    stale = _timestamp_refusal(config, headers, now)
    if stale is not None:
        return stale
    assert config.signature_header is not None
    sent = _header(headers, config.signature_header)
    if sent is None:
        return Refusal("signature_missing", f"the {config.signature_header} header is required ({config.signature})")
    expected = expected_signature(config, secret, signed_content(config, headers, body))
    if not hmac.compare_digest(expected.encode(), sent.lower().encode("utf-8", "replace")):
        return Refusal("signature_invalid", f"the {config.signature_header} header does not match the request")
    return None


def _timestamp_refusal(config: HookConfig, headers: Mapping[str, str], now: float) -> Refusal | None:
    name = config.timestamp_header
    if name is None:
        return None
    timestamp = _header(headers, name)
    if timestamp is None:
        return Refusal("timestamp_missing", f"the {name} header is required ({config.signature})")
    if not _TIMESTAMP.match(timestamp):
        return Refusal("timestamp_invalid", f"the {name} header must be unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return Refusal(
            "timestamp_out_of_range",
            f"the {name} header is more than {TOLERANCE_SECONDS} seconds from the server's clock "
            "(a stale or replayed request, or a clock out of sync)",
        )
    return None


# -- delivery ids --------------------------------------------------------------------------------


def delivery_id(config: HookConfig, headers: Mapping[str, str], body: bytes) -> str:
    """The delivery's id: from the first of its delivery id headers present; for Slack, the Events
    API's event_id (Slack re-signs each retry with a new timestamp, the event id stays); else a hash
    of the signed content (of the body alone for Slack)."""
    for name in config.delivery_id_headers:
        value = _header(headers, name)
        if value is not None:
            # As the sender wrote it (UTF-8, handed over decoded as latin-1), as copied headers are:
            # `ordér-1` was stored as `ordÃ©r-1`.
            return sent_text(value) or value
    if config.signature == SLACK:
        event_id = slack_field(body, "event_id")
        if event_id is not None:
            return f"slack:{event_id}"
    return "sha256:" + _deduplicated_hash(config, headers, body)


def lapse_seconds(config: HookConfig, headers: Mapping[str, str]) -> int | None:
    """How long a delivery's claim of its id makes a later one with that id a duplicate (None: as
    long as the delivery's row, then its run, is kept). An unsigned hook's delivery that names no id
    is known by its body's hash alone, and two events of a sender can be alike (an alert, a ping):
    for those, the hook's duplicateWindowSeconds, which covers a sender's retries."""
    if config.signed or any(_header(headers, name) is not None for name in config.delivery_id_headers):
        return None
    return config.duplicate_window_seconds


def content_hash(config: HookConfig, headers: Mapping[str, str], body: bytes) -> str | None:
    """A signed delivery's SHA-256 of what its signature covers (None when unsigned): the same
    signed request sent again under another delivery id is a replay, and answered as a duplicate.
    For Slack, of the body alone: its retries are the same event, re-signed."""
    if not config.signed:
        return None
    return _deduplicated_hash(config, headers, body)


def _deduplicated_hash(config: HookConfig, headers: Mapping[str, str], body: bytes) -> str:
    content = body if config.signature == SLACK else signed_content(config, headers, body)
    return hashlib.sha256(content).hexdigest()


def slack_field(body: bytes, name: str) -> str | None:
    """A top-level string field of a Slack JSON body (event_id, type, challenge), if there is one."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    found = value.get(name) if isinstance(value, dict) else None
    return found if isinstance(found, str) and 0 < len(found) <= MAX_DELIVERY_ID else None


def _unstorable(char: str) -> bool:
    """A character no delivery id may hold: the execute route's rule for request ids (a delivery id
    becomes the run's request id, hook:<trigger>:<id>), and a lone surrogate, which Slack's event_id
    can carry (JSON's \\ud800 escape) and no UTF-8 text can."""
    return unicodedata.category(char) == "Cs" or has_unprintable_character(char)


def delivery_id_refusal(value: str) -> Refusal | None:
    if len(value) > MAX_DELIVERY_ID:
        return Refusal("invalid_delivery_id", f"a delivery id is at most {MAX_DELIVERY_ID} characters")
    if any(_unstorable(c) for c in value):
        return Refusal(
            "invalid_delivery_id",
            "a delivery id must not contain control, invisible or line-separator characters or lone surrogates"
            " (as a requestId must not)",
        )
    return None


# Said in a row's reason when its delivery id is stored escaped (recorded_delivery_id).
ESCAPED_ID_NOTE = (
    "the delivery id is recorded with its control, invisible, separator and surrogate characters escaped as \\uXXXX"
)


def recorded_delivery_id(value: str) -> str:
    """The delivery id as its row stores it: as sent, but each character no delivery id may hold
    written as \\uXXXX (\\UXXXXXXXX past U+FFFF). A refused delivery's id is recorded whatever it
    holds, and sent as is it would be a terminal's escape sequence in psql, a NUL or a lone surrogate
    that PostgreSQL refuses (the refusal then went unrecorded, answered 422 or 500)."""
    return "".join(
        (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}") if _unstorable(c) else c for c in value
    )


# -- the body and the payload --------------------------------------------------------------------


class BodyError(ValueError):
    """The body cannot be read as its content type says (a 400)."""


_decoder = msgspec.json.Decoder()


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


def parse_body(content_type: str, body: bytes, max_depth: int) -> Any:
    """The body as the payload holds it: JSON for a JSON content type (or none; an empty body is
    null), the fields of a form (application/x-www-form-urlencoded, as query), else UTF-8 text."""
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        if media == "application/x-www-form-urlencoded":
            value: Any = pairs_object(_strict_fields(body.decode(), "a form field's"))
        elif is_json(media):
            value = _decoder.decode(body) if body.strip() else None
        else:
            return body.decode()
    except UnicodeDecodeError:
        raise BodyError("the request body is not valid UTF-8") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        if lone_surrogate(body):
            raise BodyError(f"the request body is not valid JSON: {LONE_SURROGATE}") from None
        raise BodyError(f"the request body is not valid JSON: {exc}") from None
    if json_depth(value, max_depth) > max_depth:
        raise BodyError(f"the request body is nested deeper than {max_depth} levels")
    return value


def _strict_fields(text: str, what: str) -> list[tuple[str, str]]:
    """A form's (or a query's) fields, their percent-escapes read as UTF-8 strictly, as the raw body
    is: `a=%FF%FE` was taken as two U+FFFD, the sender's data changed without a word. `what` names
    them in the error."""
    try:
        return urllib.parse.parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BodyError(f"{what} percent-escapes are not UTF-8") from None


def query_fields(raw: bytes) -> list[tuple[str, str]]:
    """The query string's fields, read as a form's are (strict UTF-8): `?a=%FF` was taken as U+FFFD,
    the sender's value changed without a word, as forms' were until they were read strictly."""
    try:
        # Unescaped UTF-8 is taken as it is (clients send it, though RFC 3986 says to escape it).
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the query string is not UTF-8") from None
    return _strict_fields(text, "a query parameter's")


def pairs_object(pairs: Iterable[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Query (or form) pairs as an object: a name given once is a string, given more often a list."""
    result: dict[str, str | list[str]] = {}
    for name, value in pairs:
        found = result.get(name)
        if found is None:
            result[name] = value
        elif isinstance(found, list):
            found.append(value)
        else:
            result[name] = [found, value]
    return result


def copied_headers(config: HookConfig, headers: Mapping[str, str]) -> dict[str, str]:
    """The configured headers the request has, by lower-case name, as the sender wrote them (UTF-8,
    which the server hands over decoded as latin-1: validation.sent_text; bytes that are not UTF-8
    as they came)."""
    return {name: sent_text(headers[name]) or headers[name] for name in config.headers if name in headers}


# Headers that carry credentials: the activation condition does not see them (they are the sender's
# secret, or the signature made with the hook's).
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        DW_SIGNATURE.lower(),
        GITHUB_SIGNATURE.lower(),
        "x-hub-signature",
        SLACK_SIGNATURE.lower(),
    }
)


def condition_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """What the activation condition sees as `headers`: every request header by lower-case name, as
    the sender wrote it (copied_headers' decoding), but those that carry credentials. It saw only the
    headers the config copies into the run, so `headers['x-github-event'] === 'push'` was false for
    every delivery unless X-GitHub-Event was also listed; its answer is a boolean, stored nowhere."""
    return {
        name.lower(): sent_text(value) or value
        for name, value in headers.items()
        if name.lower() not in CREDENTIAL_HEADERS
    }


def fired_by(trigger_id: UUID, name: str, delivery: str, received_at: datetime) -> dict[str, Any]:
    return {
        "kind": "webhook",
        "triggerId": str(trigger_id),
        "name": name,
        "deliveryId": delivery,
        "receivedAt": received_at.isoformat(),
    }


def payload(
    body: Any, headers: dict[str, str], query: dict[str, Any], fired: dict[str, Any], rendered: Any = None
) -> dict[str, Any]:
    """The run's trigger: body, headers and query (or the rendered payloadTemplate), plus firedBy."""
    base = rendered if isinstance(rendered, dict) else {"body": body, "headers": headers, "query": query}
    return {**base, "firedBy": fired}


def template_scope(body: Any, headers: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    """What payloadTemplate's templates read."""
    return {"body": body, "headers": headers, "query": query}

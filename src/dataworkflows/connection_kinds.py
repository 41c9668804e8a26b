"""A stored connection's kind, and the secret each kind's actions can use: checked when the
connection is stored (PUT /api/v1/connections/{name}), not first when a run needs it.

A connection's kind is the connector of the actions that use it (GET /api/v1/actions lists each
action's connector): `http` (http.request), `slack` (slack.post-message), `monday` (monday.*), or
the connector of an installed action package. What each built-in kind's actions do with the secret:

- http: JSON naming where it may be sent and what to send there (dataworkflows.actions.http):
  {"hosts": ["api.example.com", "api.example.com:8443"], "bearer": "…"} or
  {"hosts": [...], "headers": {"X-Api-Key": "…"}}.
- slack, monday: the token itself, sent as a header value: one line of visible ASCII.

A problem never quotes the secret, nor any part of it (not even a header's name): its pointer says
where, under /secret, and its message what is wrong.

A node may use a stored connection only of its action's connector's kind: publishing refuses
another (data.connections.check_uses), and so does the worker when the node runs (the connection
may have been stored again with another kind since). Environment connections have no kind."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from dataworkflows.scrubbing import MIN_LENGTH
from dataworkflows.validation import Problem, has_control_character

HTTP = "http"
SLACK = "slack"
MONDAY = "monday"
BUILT_IN_KINDS = frozenset({HTTP, SLACK, MONDAY})
# Kinds whose secret is a token the action sends as a header value, as it is.
TOKEN_KINDS = frozenset({SLACK, MONDAY})
# Actions of this connector take no connection (core.echo, core.template.render).
NO_CONNECTION = "core"
HTTP_FIELDS = ("hosts", "bearer", "headers")
MAX_HOSTS = 100

UNKNOWN_KIND = "unknown_connection_kind"
BAD_SHAPE = "invalid_secret"
TOO_SHORT = "secret_too_short"
# Why a value the scrubber cannot mask is refused (dataworkflows.scrubbing: a shorter one would
# blank out ordinary words, so it is never looked for in logs, errors and outputs).
_TOO_SHORT_WHY = f"shorter than {MIN_LENGTH} characters, which could not be kept out of logs, errors and outputs"

# DNS labels; an underscore too, as internal names use it (svc_a.internal) and the action matches it as it is.
_HOST = re.compile(
    r"\A[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*(:[0-9]{1,5})?\Z", re.IGNORECASE
)
# RFC 9110 §5.1: a field name is a token.
_FIELD_NAME = re.compile(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HTTP_SHAPE = '{"hosts": ["api.example.com"], "bearer": "…"} or {"hosts": [...], "headers": {"X-Api-Key": "…"}}'
# What a header's value may hold as the action sends it: visible ASCII, spaces and tabs (RFC 9110
# §5.5 without obs-text, which HTTP clients encode as ASCII and refuse).
_FIELD_VALUE = re.compile(r"\A[\t\x20-\x7e]*\Z")


def connection_kinds(connectors: Iterable[str]) -> list[str]:
    """The kinds a connection may have: the built-in ones and the connector of every installed
    action that may take a connection."""
    return sorted(BUILT_IN_KINDS | {c for c in connectors if c and c != NO_CONNECTION})


def connection_problems(kind: str, secret: str, kinds: Iterable[str]) -> list[Problem]:
    """What is wrong with storing `secret` as a connection of `kind` (none: it may be stored).
    `secret` is as it will be stored (stripped of surrounding whitespace)."""
    known = list(kinds)
    problems: list[Problem] = []
    if kind not in known:
        shown = kind if len(kind) <= 50 else f"{kind[:50]}…"
        problems.append(Problem("/kind", UNKNOWN_KIND, f"kind must be one of {', '.join(known)}, not {shown!r}"))
    if not secret:
        problems.append(Problem("/secret", BAD_SHAPE, "secret must not be empty"))
    elif len(secret) < MIN_LENGTH:
        problems.append(Problem("/secret", TOO_SHORT, f"secret is {_TOO_SHORT_WHY}"))
    elif kind == HTTP:
        problems.extend(_http_problems(secret))
    elif kind in TOKEN_KINDS:
        problems.extend(_token_problems(kind, secret))
    elif has_control_character(secret) and not _json_object(secret):
        # A token with a line break would be cut into a header; JSON connections may be pretty.
        problems.append(
            Problem("/secret", BAD_SHAPE, "secret must not contain line breaks or other control characters")
        )
    return problems


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _token_problems(kind: str, secret: str) -> list[Problem]:
    if secret.startswith("{") and _json_object(secret) is not None:
        return [Problem("/secret", BAD_SHAPE, f"a {kind} connection's secret is the token itself, not JSON")]
    if not all("!" <= c <= "~" for c in secret):
        return [
            Problem(
                "/secret",
                BAD_SHAPE,
                f"a {kind} connection's secret is one token: visible ASCII characters, without spaces, "
                "line breaks or other control characters",
            )
        ]
    return []


def _http_problems(secret: str) -> list[Problem]:
    parsed = _json_object(secret)
    if parsed is None:
        return [Problem("/secret", BAD_SHAPE, f"an http connection's secret is a JSON object: {_HTTP_SHAPE}")]
    problems: list[Problem] = []
    if set(parsed) - set(HTTP_FIELDS):
        # Not named: a field's name may be part of a pasted secret.
        message = f"an http connection's secret takes only {', '.join(HTTP_FIELDS)}; it has other fields"
        problems.append(Problem("/secret", BAD_SHAPE, message))
    problems.extend(_hosts_problems(parsed.get("hosts")))
    bearer, headers = parsed.get("bearer"), parsed.get("headers")
    if bearer is not None and (not isinstance(bearer, str) or not sendable_header_value(bearer)):
        message = "bearer must be a non-empty string of visible ASCII characters (no line breaks, no other text)"
        problems.append(Problem("/secret/bearer", BAD_SHAPE, message))
    elif isinstance(bearer, str) and len(bearer) < MIN_LENGTH:
        problems.append(Problem("/secret/bearer", TOO_SHORT, f"bearer is {_TOO_SHORT_WHY}"))
    if headers is not None:
        problems.extend(_headers_problems(headers, with_bearer=bearer is not None))
    if bearer is None and not headers:
        message = "an http connection's secret needs a bearer token or headers to send"
        problems.append(Problem("/secret", BAD_SHAPE, message))
    return problems


def _hosts_problems(hosts: Any) -> list[Problem]:
    if not isinstance(hosts, list) or not hosts or len(hosts) > MAX_HOSTS:
        message = (
            f"hosts must be a list of 1 to {MAX_HOSTS} host names (host or host:port) the credential may be sent to"
        )
        return [Problem("/secret/hosts", BAD_SHAPE, message)]
    problems = []
    for index, host in enumerate(hosts):
        if not isinstance(host, str) or not _valid_host(host):
            message = "a host is a DNS name or an IPv4 address with an optional :port (1-65535), not a URL"
            problems.append(Problem(f"/secret/hosts/{index}", BAD_SHAPE, message))
    return problems


def _valid_host(host: str) -> bool:
    if not _HOST.match(host):
        return False
    _, _, port = host.partition(":")
    return not port or 1 <= int(port) <= 65535


def _headers_problems(headers: Any, *, with_bearer: bool) -> list[Problem]:
    if not isinstance(headers, dict):
        return [Problem("/secret/headers", BAD_SHAPE, "headers must be an object of header names to strings")]
    problems = []
    if not all(isinstance(name, str) and _FIELD_NAME.match(name) for name in headers):
        problems.append(Problem("/secret/headers", BAD_SHAPE, "a header's name is not an HTTP field name"))
    if not all(isinstance(value, str) and sendable_header_value(value) for value in headers.values()):
        message = (
            "each header's value must be a non-empty string of visible ASCII characters (no line breaks, no other text)"
        )
        problems.append(Problem("/secret/headers", BAD_SHAPE, message))
    elif any(len(value) < MIN_LENGTH for value in headers.values()):
        # Every header a connection sends is taken for a credential, and scrubbed as one. A
        # header that is not secret (an API version) belongs in the node's own headers.
        message = f"a header's value is {_TOO_SHORT_WHY}; send a header that is not secret from the node's headers"
        problems.append(Problem("/secret/headers", TOO_SHORT, message))
    if with_bearer and any(str(name).lower() == "authorization" for name in headers):
        message = "give the Authorization header once: bearer or headers.Authorization, not both"
        problems.append(Problem("/secret/headers", BAD_SHAPE, message))
    elif names_repeated(headers):
        message = "a header is named twice (names are case-insensitive: X-Key and x-key are one header)"
        problems.append(Problem("/secret/headers", BAD_SHAPE, message))
    return problems


def is_field_value(value: str) -> bool:
    """Whether `value` can be sent as a header's value as http.request sends it: visible ASCII,
    spaces and tabs (empty too)."""
    return _FIELD_VALUE.match(value) is not None


def sendable_header_value(value: str) -> bool:
    """Whether a connection may send `value` as a header's value: not blank, and is_field_value."""
    return bool(value.strip()) and is_field_value(value)


def names_repeated(headers: Iterable[Any]) -> bool:
    """Whether two header names are one header (HTTP's names are case-insensitive): both would be sent."""
    names = [str(name).lower() for name in headers]
    return len(set(names)) < len(names)

"""A stored connection's kind and the shape of its secret, checked when it is stored: each kind's
secret is one its actions can use, and no problem quotes any part of the secret."""

from __future__ import annotations

import json

import httpx
import pytest

from dataworkflows.actions import default_registry
from dataworkflows.actions.http import InvalidConnection, _connection
from dataworkflows.connection_kinds import connection_kinds, connection_problems
from dataworkflows.credentials import Secret

KINDS = connection_kinds(["core", "http", "slack", "monday", "acme"])
SECRET_PART = "s3cr3t-Part"


def problems(kind: str, secret: str) -> list[tuple[str, str]]:
    return [(p.pointer, p.code) for p in connection_problems(kind, secret, KINDS)]


def test_the_kinds_are_the_installed_connectors_that_take_a_connection() -> None:
    registry = default_registry()
    connectors = {registry.get(name).connector for name in registry.types()}
    assert connection_kinds(connectors) == ["http", "monday", "slack"]
    assert KINDS == ["acme", "http", "monday", "slack"], "an installed package's connector is a kind"


@pytest.mark.parametrize("kind", ["ftp", "HTTP", "Slack", "", "core", "x" * 500])
def test_an_unknown_kind_is_refused_naming_the_field(kind: str) -> None:
    [problem] = connection_problems(kind, "token", KINDS)
    assert (problem.pointer, problem.code) == ("/kind", "unknown_connection_kind")
    assert "http, monday, slack" in problem.message and len(problem.message) < 200


GOOD_HTTP = [
    {"hosts": ["api.example.com"], "bearer": "tok1"},
    {"hosts": ["API.example.com", "api.example.com:8443", "10.0.0.1:80"], "headers": {"X-Api-Key": "key1"}},
    {"hosts": ["a.example"], "bearer": "tok1", "headers": {"X-Tenant": "acme"}},
    {"hosts": ["svc_a.internal:8080"], "bearer": "tok1"},
]


@pytest.mark.parametrize("secret", GOOD_HTTP, ids=str)
def test_a_good_http_secret_is_stored_and_the_action_can_use_it(secret: dict[str, object]) -> None:
    text = json.dumps(secret, indent=2)  # pretty JSON, line breaks and all, is fine
    assert problems("http", text) == []
    headers, hosts = _connection(Secret(text))
    assert headers and hosts


BAD_HTTP = [
    ("s3cr3t-Part", [("/secret", "invalid_secret")]),  # a bare token: the action needs JSON
    ('["s3cr3t-Part"]', [("/secret", "invalid_secret")]),
    ('{"bearer": "s3cr3t-Part"}', [("/secret/hosts", "invalid_secret")]),
    ('{"hosts": [], "bearer": "s3cr3t-Part"}', [("/secret/hosts", "invalid_secret")]),
    ('{"hosts": "api.example.com", "bearer": "s3cr3t-Part"}', [("/secret/hosts", "invalid_secret")]),
    (
        '{"hosts": ["https://api.example.com", "api.example.com:99999", "ok.example", 7, "a b"], "bearer": "tok1"}',
        [
            ("/secret/hosts/0", "invalid_secret"),
            ("/secret/hosts/1", "invalid_secret"),
            ("/secret/hosts/3", "invalid_secret"),
            ("/secret/hosts/4", "invalid_secret"),
        ],
    ),
    ('{"hosts": ["a.example"]}', [("/secret", "invalid_secret")]),  # nothing to send
    ('{"hosts": ["a.example"], "headers": {}}', [("/secret", "invalid_secret")]),
    ('{"hosts": ["a.example"], "bearer": 5}', [("/secret/bearer", "invalid_secret")]),
    ('{"hosts": ["a.example"], "bearer": "s3cr3t\\nPart"}', [("/secret/bearer", "invalid_secret")]),
    ('{"hosts": ["a.example"], "headers": {"X-Key": 5}}', [("/secret/headers", "invalid_secret")]),
    ('{"hosts": ["a.example"], "headers": {"s3cr3t Part": "value"}}', [("/secret/headers", "invalid_secret")]),
    ('{"hosts": ["a.example"], "headers": {"X-Key": "a\\r\\nb"}}', [("/secret/headers", "invalid_secret")]),
    ('{"hosts": ["a.example"], "headers": ["X-Key"]}', [("/secret/headers", "invalid_secret")]),
    (
        '{"hosts": ["a.example"], "bearer": "tok1", "headers": {"authorization": "Basic x"}}',
        [("/secret/headers", "invalid_secret")],
    ),
    ('{"hosts": ["a.example"], "bearerToken": "s3cr3t-Part"}', [("/secret", "invalid_secret")] * 2),  # a typo
    # Text the action could not send (httpx encodes header values as ASCII): every run would fail.
    ('{"hosts": ["a.example"], "bearer": "s3cr3t-P\u00e4rt"}', [("/secret/bearer", "invalid_secret")]),
    ('{"hosts": ["a.example"], "bearer": "s3cr3t-Part\ud800"}', [("/secret/bearer", "invalid_secret")]),
    ('{"hosts": ["a.example"], "headers": {"X-Key": "s3cr3t-P\u00e4rt"}}', [("/secret/headers", "invalid_secret")]),
    # One header twice (names are case-insensitive): both would be sent.
    (
        '{"hosts": ["a.example"], "headers": {"Authorization": "s3cr3t-Part", "authorization": "bbbb"}}',
        [("/secret/headers", "invalid_secret")],
    ),
    (
        '{"hosts": ["a.example"], "headers": {"X-Key": "s3cr3t-Part", "x-KEY": "bbbb"}}',
        [("/secret/headers", "invalid_secret")],
    ),
]


@pytest.mark.parametrize(
    "secret",
    [
        '{"hosts": ["a.example"], "bearer": "s3cr3t-P\u00e4rt"}',
        '{"hosts": ["a.example"], "headers": {"X-Key": "s3cr3t-Part", "x-key": "b"}}',
        '{"hosts": ["a.example"], "headers": {"X-Key": "s3cr3t\u2028Part"}}',
    ],
    ids=["not-ascii", "named-twice", "line-separator"],
)
def test_an_http_secret_stored_before_the_checks_is_refused_when_used_without_quoting_it(secret: str) -> None:
    with pytest.raises(InvalidConnection) as refused:
        _connection(Secret(secret))
    assert "s3cr3t" not in str(refused.value) and "\u00e4" not in str(refused.value)


@pytest.mark.parametrize(("secret", "expected"), BAD_HTTP, ids=lambda v: str(v)[:50])
def test_an_http_secret_the_action_could_not_use_is_refused_without_quoting_it(
    secret: str, expected: list[tuple[str, str]]
) -> None:
    found = connection_problems("http", secret, KINDS)
    assert [(p.pointer, p.code) for p in found] == expected
    for problem in found:
        assert SECRET_PART not in problem.message and "s3cr3t" not in problem.message
        assert "bearerToken" not in problem.message


@pytest.mark.parametrize("kind", ["slack", "monday"])
def test_a_token_kinds_secret_is_one_token(kind: str) -> None:
    assert problems(kind, "xoxb-123-abc") == []
    for bad in ('{"token": "s3cr3t-Part"}', "s3cr3t Part", "s3cr3t\nPart", "s3cr3t-Pärt", "s3cr3t\x7f"):
        [problem] = connection_problems(kind, bad, KINDS)
        assert (problem.pointer, problem.code) == ("/secret", "invalid_secret"), bad
        assert "s3cr3t" not in problem.message


@pytest.mark.parametrize(
    ("kind", "short", "pointer"),
    [
        ("slack", "abc", "/secret"),
        ("monday", "abc", "/secret"),
        ("acme", "abc", "/secret"),
        ("http", '{"hosts": ["a.example"], "bearer": "abc"}', "/secret/bearer"),
        ("http", '{"hosts": ["a.example"], "headers": {"X-Key": "s3cr3t-Part", "X-Pin": "abc"}}', "/secret/headers"),
    ],
)
def test_a_secret_too_short_to_scrub_is_refused(kind: str, short: str, pointer: str) -> None:
    """The run's scrubber does not look for values under 4 characters (they would blank out ordinary
    words), so such a secret could reach logs, errors and outputs: it is refused when stored."""
    [problem] = connection_problems(kind, short, KINDS)
    assert (problem.pointer, problem.code) == (pointer, "secret_too_short")
    assert "shorter than 4 characters" in problem.message
    assert "s3cr3t" not in problem.message and "abc" not in problem.message
    assert problems(kind, short.replace("abc", "abcd")) == [], "4 characters are enough"


def test_an_installed_kinds_secret_keeps_the_old_rules() -> None:
    assert problems("acme", "any-token") == []
    assert problems("acme", '{\n  "pretty": "json"\n}') == []
    assert problems("acme", "two\nlines") == [("/secret", "invalid_secret")]


def test_an_empty_secret_and_an_unknown_kind_are_both_reported() -> None:
    assert problems("ftp", "") == [("/kind", "unknown_connection_kind"), ("/secret", "invalid_secret")]


def test_a_host_named_without_a_port_admits_https_on_its_standard_port_only() -> None:
    """A connection's `hosts` entry without a port means the service at https's port. It admitted
    https on any port: a workflow could send the bearer to another service of the same host (a debug
    port, `api.example.com:8443`). A port the service uses must be named (`host:port`)."""
    from dataworkflows.actions.http import _host_allowed

    hosts: list[tuple[str, int | None]] = [("api.example.com", None), ("internal.example.com", 8443)]
    allowed = {
        url: _host_allowed(httpx.URL(url), hosts)
        for url in (
            "https://api.example.com/v1",
            "https://api.example.com:443/v1",
            "https://API.example.com./v1",
            "https://api.example.com:8443/v1",
            "https://api.example.com:22/",
            "http://api.example.com/v1",
            "https://internal.example.com:8443/",
            "https://internal.example.com/",
        )
    }
    assert allowed == {
        "https://api.example.com/v1": True,
        "https://api.example.com:443/v1": True,
        "https://API.example.com./v1": True,
        "https://api.example.com:8443/v1": False,
        "https://api.example.com:22/": False,
        "http://api.example.com/v1": False,
        "https://internal.example.com:8443/": True,
        "https://internal.example.com/": False,
    }


def test_a_refused_host_is_named_with_its_scheme_and_port() -> None:
    """The refusal named the host alone ("may not be sent to api.example.com"), which the hosts list
    did name: it was the port, or the scheme, that did not match (sandbox review)."""
    from dataworkflows.actions.http import _where

    assert _where(httpx.URL("https://api.example.com:8443/x")) == "https://api.example.com:8443"
    assert _where(httpx.URL("http://api.example.com/x")) == "http://api.example.com:80"
    assert _where(httpx.URL("https://api.example.com/x")) == "https://api.example.com:443"

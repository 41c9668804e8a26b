"""Requests a page of another site makes through a browser are refused on /api/v1 (api/cross_site.py):
writes from another Origin (403), writes whose body is not JSON (415), and with allowed hosts set (as
`up` and `api` set them in loose mode) requests for another Host (403)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.api.cross_site import allowed_hosts, host_name
from dataworkflows.cli import _serving_settings
from dataworkflows.config import Settings
from dataworkflows.db import Database
from tests.integration.test_api import assert_problem as problem_of
from tests.integration.test_api import raw_client
from tests.integration.test_runtime import echo, wf
from tests.integration.test_webhooks import make_hook

BODY = b'{"trigger": {"from": "a page"}}'


def assert_problem(response: Any, status: int, code: str) -> None:
    assert problem_of(response, status)["code"] == code


@pytest.fixture
async def client(dsn: str, db: Database) -> AsyncIterator[AsyncTestClient[Any]]:
    from tests.conftest import publish

    await publish(db, wf("hooked", echo("a")))
    app = create_app(Settings(database_url=dsn, api_rate_per_minute=0))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def runs(client: AsyncTestClient[Any]) -> int:
    response = await client.get("/api/v1/executions", params={"workflowId": "hooked"})
    assert response.status_code == 200
    return len(response.json()["items"])


@pytest.mark.parametrize(
    "headers",
    [
        # A form post, a text/plain fetch and a body-less fetch of a page at another origin.
        {"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
        {"Origin": "http://evil.example", "Content-Type": "text/plain;charset=UTF-8"},
        {"Origin": "http://evil.example"},
        # JSON from another origin (only possible after a preflight this API never answers), and
        # the origins of a sandboxed frame or a file, and of the same host on another port.
        {"Origin": "http://evil.example", "Content-Type": "application/json"},
        {"Origin": "null", "Content-Type": "application/json"},
        {"Origin": "http://testserver.local:8080", "Content-Type": "application/json"},
        # A proxy's name, with no proxy declared (DW_API_TRUSTED_PROXIES): the sender names it.
        {"Origin": "https://dw.example.com", "Content-Type": "application/json", "X-Forwarded-Host": "dw.example.com"},
    ],
)
async def test_a_write_from_another_origin_is_refused(client: AsyncTestClient[Any], headers: dict[str, str]) -> None:
    response = await client.post("/api/v1/workflows/hooked/execute", content=BODY, headers=headers)
    assert_problem(response, 403, "cross_site_request")
    assert await runs(client) == 0


@pytest.mark.parametrize(
    "headers",
    [
        # The first copy was checked, the second may be what counts downstream (a review).
        [("Origin", "http://testserver.local"), ("Origin", "http://evil.example")],
        [("Host", "testserver.local"), ("Host", "evil.example")],
        [("Content-Type", "application/json"), ("Content-Type", "text/plain")],
    ],
)
async def test_a_header_these_checks_read_given_twice_is_refused(
    client: AsyncTestClient[Any], headers: list[tuple[str, str]]
) -> None:
    sent = [("Content-Type", "application/json"), *headers] if headers[0][0] != "Content-Type" else headers
    # As a server hands them over: two headers, not one of two values joined (the test client's).
    async with raw_client(client) as raw:
        response = await raw.post("/api/v1/workflows/hooked/execute", content=BODY, headers=sent)
    problem = problem_of(response, 400)
    assert problem["detail"] == f"give the header {headers[0][0]} once", problem
    assert await runs(client) == 0


@pytest.mark.parametrize(
    "content_type",
    ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_write_whose_body_is_not_json_is_refused(
    client: AsyncTestClient[Any], content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.post("/api/v1/workflows/hooked/execute", content=BODY, headers=headers)
    assert_problem(response, 415, "unsupported_media_type")
    assert await runs(client) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json; charset=utf-8"},
        {"Content-Type": "application/merge-patch+json"},
        # The page's own origin (the console).
        {"Content-Type": "application/json", "Origin": "http://testserver.local"},
    ],
)
async def test_json_from_a_client_or_the_same_origin_is_taken(
    client: AsyncTestClient[Any], headers: dict[str, str]
) -> None:
    response = await client.post("/api/v1/workflows/hooked/execute", content=BODY, headers=headers)
    assert response.status_code == 202, response.text
    # A write without a body needs no content type (a cancel, as the CLI sends it).
    execution = response.json()["executionId"]
    cancelled = await client.post(f"/api/v1/executions/{execution}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text


async def test_behind_a_declared_proxy_its_public_name_is_the_origin(dsn: str, db: Database) -> None:
    from tests.conftest import publish

    await publish(db, wf("hooked", echo("a")))
    settings = Settings(database_url=dsn, api_rate_per_minute=0, api_trusted_proxies="127.0.0.1")
    headers = {"Content-Type": "application/json", "Origin": "https://dw.example.com"}
    async with AsyncTestClient(create_app(settings)) as proxied:
        taken = await proxied.post(
            "/api/v1/workflows/hooked/execute", content=BODY, headers={**headers, "X-Forwarded-Host": "dw.example.com"}
        )
        assert taken.status_code == 202, taken.text
        other = await proxied.post(
            "/api/v1/workflows/hooked/execute", content=BODY, headers={**headers, "X-Forwarded-Host": "elsewhere"}
        )
        assert_problem(other, 403, "cross_site_request")


async def test_the_webhook_receiver_takes_any_body_from_anywhere(client: AsyncTestClient[Any], db: Database) -> None:
    """Its signatures authenticate (an unsigned hook is open by design): senders are servers, whose
    content types vary."""
    hook = await make_hook(db, signature="none")
    headers = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    response = await client.post(f"/api/v1/hooks/{hook}", content=b"plain text", headers=headers)
    assert response.status_code == 202, response.text


async def test_with_allowed_hosts_another_host_is_refused(dsn: str, db: Database) -> None:
    from tests.conftest import publish

    await publish(db, wf("hooked", echo("a")))
    settings = Settings(database_url=dsn, api_rate_per_minute=0, api_allowed_hosts="localhost,127.0.0.1,::1")
    async with AsyncTestClient(create_app(settings)) as client:
        # A page whose name was rebound to 127.0.0.1: it may neither read nor write.
        for host in ("evil.example:5131", "testserver.local", "127.0.0.1.evil.example"):
            assert_problem(await client.get("/api/v1/workflows", headers={"Host": host}), 403, "host_not_allowed")
            execute = await client.post(
                "/api/v1/workflows/hooked/execute",
                content=BODY,
                headers={"Host": host, "Origin": f"http://{host}", "Content-Type": "application/json"},
            )
            assert_problem(execute, 403, "host_not_allowed")
        for host in ("127.0.0.1:5131", "localhost:5131", "LOCALHOST", "[::1]:5131"):
            assert (await client.get("/api/v1/workflows", headers={"Host": host})).status_code == 200, host
        # What is not /api/v1 answers whatever the host (probes name the pod's address).
        assert (await client.get("/health/live", headers={"Host": "10.0.0.7:5131"})).status_code == 200


def test_up_and_api_answer_the_loopback_names_in_loose_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    args = argparse.Namespace(host=None, port=None)
    monkeypatch.delenv("DW_API_ALLOWED_HOSTS", raising=False)
    monkeypatch.setenv("DW_AUTH_MODE", "loose")
    assert allowed_hosts(_serving_settings(args).api_allowed_hosts) == {"localhost", "127.0.0.1", "::1"}
    monkeypatch.setenv("DW_API_ALLOWED_HOSTS", "dw.internal, api:5131")
    assert allowed_hosts(_serving_settings(args).api_allowed_hosts) == {"dw.internal", "api"}
    monkeypatch.setenv("DW_API_ALLOWED_HOSTS", "*")
    assert allowed_hosts(_serving_settings(args).api_allowed_hosts) is None
    # A value that names no host is not "any host" (a review: "," answered every Host).
    for nothing in (",", " , ,", ""):
        monkeypatch.setenv("DW_API_ALLOWED_HOSTS", nothing)
        assert allowed_hosts(_serving_settings(args).api_allowed_hosts) == {"localhost", "127.0.0.1", "::1"}
    # However loose is spelled, as the API reads it (a review: "LOOSE" ran loose with any host).
    monkeypatch.delenv("DW_API_ALLOWED_HOSTS")
    for spelling in ("LOOSE", " Loose ", "loose\t"):
        monkeypatch.setenv("DW_AUTH_MODE", spelling)
        assert allowed_hosts(_serving_settings(args).api_allowed_hosts) == {"localhost", "127.0.0.1", "::1"}
    # Strict mode: a bearer token cannot be sent cross-site; any host unless named.
    monkeypatch.setenv("DW_AUTH_MODE", "strict")
    assert _serving_settings(args).api_allowed_hosts == ""


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("LocalHost:5131", "localhost"),
        ("[::1]:5131", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("10.0.0.7", "10.0.0.7"),
    ],
)
def test_host_names(host: str, name: str) -> None:
    assert host_name(host) == name


async def test_options_answers_the_allowed_methods_in_every_mode(dsn: str) -> None:
    """Litestar's own OPTIONS answer (204, `Allow`) is open like the schema: it was refused as a route
    that declares no role (403 in loose mode, and 403 rather than 401 in strict mode)."""
    loose = Settings(database_url=dsn, api_rate_per_minute=0)
    strict = Settings(database_url=dsn, api_rate_per_minute=0, auth_mode="strict", jwt_secret="s" * 40)
    for settings in (loose, strict):
        async with AsyncTestClient(create_app(settings)) as client:
            response = await client.options("/api/v1/workflows/simple-echo")
            assert response.status_code == 204, response.text
            assert {"GET", "OPTIONS"} <= {m.strip() for m in response.headers["allow"].split(",")}
            # Anything else still needs its role (strict: a token).
            read = await client.get("/api/v1/workflows/simple-echo")
            assert read.status_code == (404 if settings is loose else 401), read.text

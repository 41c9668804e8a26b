"""Strict auth mode over HTTP against a real database: 401s with their challenge, each role's allowed
and refused routes (one table covering every /api/v1 route), ownership of workflows, what stays open
(health, schema, metrics, webhook deliveries), and loose mode as it was."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import jwt
import pytest
from litestar.connection import ASGIConnection
from litestar.exceptions import ClientException
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.api.auth import PUBLIC, ROLE_OPT, api_handlers, required_roles
from dataworkflows.api.principals import build_resolver
from dataworkflows.api.services import REQUIRES_PRINCIPAL
from dataworkflows.config import Settings
from dataworkflows.errors import ConfigurationError
from dataworkflows.tokens import TokenVerifier, mint_token
from tests.conftest import load_fixture
from tests.integration.test_api import assert_problem, raw_client

SECRET = "integration-secret-" + "x" * 32


def strict_settings(dsn: str, **more: Any) -> Settings:
    return Settings(
        database_url=dsn,
        auth_mode="strict",
        jwt_secret=SECRET,
        jwt_issuer="https://issuer.test",
        jwt_audience="dataworkflows",
        **more,
    )


def bearer(settings: Settings, sub: str, *roles: str, tenant: str = "default") -> dict[str, str]:
    token = mint_token(settings, subject=sub, tenant=tenant, roles=roles, ttl_seconds=300)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def strict(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(strict_settings(dsn))) as client:
        yield client


async def test_missing_and_bad_tokens_get_401_with_a_bearer_challenge(dsn: str, strict: AsyncTestClient[Any]) -> None:
    settings = strict_settings(dsn)
    missing = await strict.get("/api/v1/workflows")
    assert assert_problem(missing, 401)["code"] == "invalid_token"
    assert missing.headers["www-authenticate"] == 'Bearer realm="dataworkflows"'

    loose_headers = await strict.get("/api/v1/workflows", headers={"X-Principal-Id": "admin", "X-Tenant-Id": "t"})
    assert_problem(loose_headers, 401)

    forged = mint_token(replace(settings, jwt_secret="f" * 40), subject="eve", tenant="default", roles=["admin"],
                        ttl_seconds=60)  # fmt: skip
    for header, reason in [
        (f"Bearer {forged}", "signature"),
        ("Basic YWxpY2U6cHc=", "must be 'Bearer <JWT>'"),
        ("Bearer ", "must be 'Bearer <JWT>'"),
        ("Bearer a.b.c", "malformed"),
    ]:
        answer = await strict.get("/api/v1/workflows", headers={"Authorization": header})
        body = assert_problem(answer, 401)
        assert reason in body["detail"], body
        challenge = answer.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="dataworkflows", error="invalid_token", error_description="')

    expired = jwt.encode(
        {"sub": "a", "tenant": "default", "roles": ["admin"], "exp": 1, "iss": "https://issuer.test",
         "aud": "dataworkflows"},
        SECRET,
        algorithm="HS256",
    )  # fmt: skip
    answer = await strict.get("/api/v1/workflows", headers={"Authorization": f"Bearer {expired}"})
    assert "expired" in assert_problem(answer, 401)["detail"]

    ok = await strict.get("/api/v1/workflows", headers=bearer(settings, "ana", "viewer"))
    assert ok.status_code == 200, ok.text


async def test_two_authorization_headers_are_refused(dsn: str) -> None:
    # The first was taken: behind a proxy that adds its own, the client's copy could win. Refused
    # whichever comes first, as a repeated parameter is (RFC 6750 3.1). On the resolver itself: the
    # test client joins repeated headers into one ("Bearer a, Bearer b": a malformed token, a 401).
    settings = strict_settings(dsn)
    resolver = build_resolver(settings)
    viewer, admin = bearer(settings, "ana", "viewer"), bearer(settings, "root", "admin")

    def connection(*headers: dict[str, str]) -> ASGIConnection[Any, Any, Any, Any]:
        raw = [(b"authorization", h["Authorization"].encode()) for h in headers]
        return ASGIConnection({"type": "http", "headers": raw, "path": "/", "query_string": b""})  # type: ignore[arg-type]

    for pair in ([viewer, admin], [admin, viewer]):
        with pytest.raises(ClientException, match="give the Authorization header once"):
            await resolver.resolve(connection(*pair))
    assert (await resolver.resolve(connection(viewer))).id == "ana"


async def test_health_schema_metrics_and_webhook_deliveries_stay_open(dsn: str, strict: AsyncTestClient[Any]) -> None:
    settings = strict_settings(dsn)
    assert (await strict.get("/health/live")).status_code == 200
    assert (await strict.get("/health/ready")).status_code == 200
    for path in ("/health/live", "/health/ready"):
        probed = await strict.head(path)
        assert (probed.status_code, probed.content) == (200, b""), path
    assert (await strict.get("/metrics")).status_code == 200
    assert (await strict.get("/schema/openapi.json")).status_code == 200
    assert (await strict.get("/health/live", headers={"Authorization": "Bearer junk"})).status_code == 200

    admin = bearer(settings, "root", "admin")
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    created = await strict.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw, headers=admin)
    assert created.status_code == 201, created.text
    hook = await strict.post(
        "/api/v1/workflows/simple-echo/triggers",
        json={"kind": "webhook", "name": "open", "config": {"signature": "none"}},
        headers=admin,
    )
    assert hook.status_code == 201, hook.text
    url = hook.json()["hookUrl"]
    assert (await strict.get(url)).status_code == 200
    delivered = await strict.post(url, json={"n": 1})
    assert delivered.status_code == 202, delivered.text

    async with AsyncTestClient(create_app(strict_settings(dsn, metrics_require_auth=True))) as guarded:
        answer = await guarded.get("/metrics")
        assert_problem(answer, 401)
        assert (await guarded.get("/metrics", headers=bearer(settings, "prom", "viewer"))).status_code == 200
        assert (await guarded.get("/health/ready")).status_code == 200


# Every /api/v1 route, the role it needs (stated here, independently of the decorators) and a request
# for it. The ids below exist (set up by the test) or not: an allowed request may answer anything but
# 401 or 403.
EXECUTION = "{execution}"
ROUTES: list[tuple[str, str, str, str, Any]] = [
    ("GET", "/api/v1/workflows", "/api/v1/workflows", "viewer", None),
    ("GET", "/api/v1/workflows/{workflow_id:str}", "/api/v1/workflows/wf", "viewer", None),
    ("GET", "/api/v1/workflows/{workflow_id:str}/versions", "/api/v1/workflows/wf/versions", "viewer", None),
    (
        "GET",
        "/api/v1/workflows/{workflow_id:str}/versions/{version:int}",
        "/api/v1/workflows/wf/versions/1",
        "viewer",
        None,
    ),
    ("POST", "/api/v1/workflows", "/api/v1/workflows", "author", "new-workflow"),
    ("PUT", "/api/v1/workflows/{workflow_id:str}", "/api/v1/workflows/wf", "author", "definition"),
    ("POST", "/api/v1/workflows/{workflow_id:str}/publish", "/api/v1/workflows/wf/publish", "author", None),
    ("POST", "/api/v1/workflows/{workflow_id:str}/execute", "/api/v1/workflows/wf/execute", "operator", {}),
    ("GET", "/api/v1/workflow-templates", "/api/v1/workflow-templates", "viewer", None),
    ("GET", "/api/v1/workflow-templates/{template_id:str}", "/api/v1/workflow-templates/nope", "viewer", None),
    ("POST", "/api/v1/workflow-templates", "/api/v1/workflow-templates", "author", {}),
    (
        "POST",
        "/api/v1/workflow-templates/{template_id:str}/instantiate",
        "/api/v1/workflow-templates/nope/instantiate",
        "author",
        {"workflowId": "x", "config": {}},
    ),
    ("GET", "/api/v1/template-sets", "/api/v1/template-sets", "viewer", None),
    ("POST", "/api/v1/template-sets", "/api/v1/template-sets", "author", {"id": "s"}),
    ("GET", "/api/v1/template-sets/{set_id:str}", "/api/v1/template-sets/s", "viewer", None),
    ("DELETE", "/api/v1/template-sets/{set_id:str}", "/api/v1/template-sets/nope", "author", None),
    ("GET", "/api/v1/templates", "/api/v1/templates", "viewer", None),
    (
        "POST",
        "/api/v1/templates",
        "/api/v1/templates",
        "author",
        {"set": "s", "name": "t", "format": "text", "body": "hi"},
    ),
    ("GET", "/api/v1/templates/{set_id:str}/{name:str}", "/api/v1/templates/s/t", "viewer", None),
    (
        "PUT",
        "/api/v1/templates/{set_id:str}/{name:str}",
        "/api/v1/templates/s/t",
        "author",
        {"format": "text", "body": "x"},
    ),
    ("DELETE", "/api/v1/templates/{set_id:str}/{name:str}", "/api/v1/templates/s/nope", "author", None),
    (
        "GET",
        "/api/v1/documents/{document_id:str}",
        "/api/v1/documents/00000000-0000-0000-0000-000000000000",
        "viewer",
        None,
    ),
    ("GET", "/api/v1/templates/{set_id:str}/{name:str}/versions", "/api/v1/templates/s/t/versions", "viewer", None),
    (
        "GET",
        "/api/v1/templates/{set_id:str}/{name:str}/versions/{version:int}",
        "/api/v1/templates/s/t/versions/1",
        "viewer",
        None,
    ),
    ("POST", "/api/v1/templates/{set_id:str}/{name:str}/render", "/api/v1/templates/s/t/render", "viewer", {}),
    ("GET", "/api/v1/executions", "/api/v1/executions", "viewer", None),
    ("GET", "/api/v1/executions/{execution_id:str}", f"/api/v1/executions/{EXECUTION}", "viewer", None),
    ("GET", "/api/v1/executions/{execution_id:str}/tree", f"/api/v1/executions/{EXECUTION}/tree", "viewer", None),
    (
        "GET",
        "/api/v1/executions/{execution_id:str}/children",
        f"/api/v1/executions/{EXECUTION}/children",
        "viewer",
        None,
    ),
    (
        "GET",
        "/api/v1/executions/{execution_id:str}/nodes/{node_id:str}/items",
        f"/api/v1/executions/{EXECUTION}/nodes/echo1/items",
        "viewer",
        None,
    ),
    (
        "GET",
        "/api/v1/executions/{execution_id:str}/actions",
        f"/api/v1/executions/{EXECUTION}/actions",
        "viewer",
        None,
    ),
    ("GET", "/api/v1/executions/{execution_id:str}/events", f"/api/v1/executions/{EXECUTION}/events", "viewer", None),
    ("GET", "/api/v1/executions/{execution_id:str}/waits", f"/api/v1/executions/{EXECUTION}/waits", "viewer", None),
    ("GET", "/api/v1/waits", f"/api/v1/waits?executionId={EXECUTION}", "viewer", None),
    (
        "POST",
        "/api/v1/executions/{execution_id:str}/signals/{name:str}",
        f"/api/v1/executions/{EXECUTION}/signals/go",
        "operator",
        {},
    ),
    ("POST", "/api/v1/signals/{name:str}", "/api/v1/signals/go", "operator", {}),
    (
        "POST",
        "/api/v1/events",
        "/api/v1/events",
        "operator",
        {"specversion": "1.0", "id": "e", "source": "/s", "type": "t"},
    ),
    (
        "POST",
        "/api/v1/executions/{execution_id:str}/suspend",
        f"/api/v1/executions/{EXECUTION}/suspend",
        "operator",
        {},
    ),
    ("POST", "/api/v1/executions/{execution_id:str}/resume", f"/api/v1/executions/{EXECUTION}/resume", "operator", {}),
    (
        "PUT",
        "/api/v1/executions/{execution_id:str}/priority",
        f"/api/v1/executions/{EXECUTION}/priority",
        "operator",
        {"priority": 5},
    ),
    ("POST", "/api/v1/executions/{execution_id:str}/cancel", f"/api/v1/executions/{EXECUTION}/cancel", "operator", {}),
    ("GET", "/api/v1/approvals", "/api/v1/approvals", "viewer", None),
    ("GET", "/api/v1/approvals/{approval_id:str}", f"/api/v1/approvals/{uuid.UUID(int=1)}", "viewer", None),
    (
        "POST",
        "/api/v1/approvals/{approval_id:str}/decision",
        f"/api/v1/approvals/{uuid.UUID(int=1)}/decision",
        "operator",
        {"decision": "approve"},
    ),
    ("GET", "/api/v1/dead-letters", "/api/v1/dead-letters", "viewer", None),
    ("GET", "/api/v1/workers", "/api/v1/workers", "viewer", None),
    ("GET", "/api/v1/whoami", "/api/v1/whoami", "viewer", None),
    ("GET", "/api/v1/dead-letters/{dead_letter_id:int}", "/api/v1/dead-letters/1", "viewer", None),
    ("POST", "/api/v1/dead-letters/{dead_letter_id:int}/redrive", "/api/v1/dead-letters/1/redrive", "operator", None),
    ("POST", "/api/v1/dead-letters/bulk/redrive", "/api/v1/dead-letters/bulk/redrive", "operator", {"limit": 1}),
    ("GET", "/api/v1/audit-log", "/api/v1/audit-log", "viewer", None),
    (
        "POST",
        "/api/v1/executions/bulk/cancel",
        "/api/v1/executions/bulk/cancel",
        "operator",
        {"workflowId": "none-such", "limit": 1},
    ),
    (
        "POST",
        "/api/v1/dead-letters/{dead_letter_id:int}/acknowledge",
        "/api/v1/dead-letters/1/acknowledge",
        "operator",
        {},
    ),
    ("GET", "/api/v1/actions", "/api/v1/actions", "viewer", None),
    ("GET", "/api/v1/connections", "/api/v1/connections", "viewer", None),
    ("PUT", "/api/v1/connections/{name:str}", "/api/v1/connections/c1", "admin", {"kind": "slack", "secret": "s3cr"}),
    ("DELETE", "/api/v1/connections/{name:str}", "/api/v1/connections/c1", "admin", None),
    ("GET", "/api/v1/connections/{name:str}", "/api/v1/connections/c1", "viewer", None),
    ("PATCH", "/api/v1/connections/{name:str}", "/api/v1/connections/c1", "admin", {"allowedWorkflows": ["wf"]}),
    ("GET", "/api/v1/resource-links", "/api/v1/resource-links", "viewer", None),
    ("GET", "/api/v1/workflows/{workflow_id:str}/triggers", "/api/v1/workflows/wf/triggers", "viewer", None),
    (
        "POST",
        "/api/v1/workflows/{workflow_id:str}/triggers",
        "/api/v1/workflows/wf/triggers",
        "author+operator",
        {"kind": "webhook", "name": "h", "config": {"signature": "none"}},
    ),
    ("GET", "/api/v1/triggers", "/api/v1/triggers", "viewer", None),
    ("GET", "/api/v1/triggers/{trigger_id:str}", f"/api/v1/triggers/{uuid.UUID(int=2)}", "viewer", None),
    ("GET", "/api/v1/triggers/{trigger_id:str}/deliveries", "/api/v1/triggers/{trigger}/deliveries", "viewer", None),
    ("GET", "/api/v1/triggers/{trigger_id:str}/ticks", f"/api/v1/triggers/{uuid.UUID(int=2)}/ticks", "viewer", None),
    ("PATCH", "/api/v1/triggers/{trigger_id:str}", "/api/v1/triggers/{trigger}", "author+operator", {"enabled": True}),
    ("DELETE", "/api/v1/triggers/{trigger_id:str}", f"/api/v1/triggers/{uuid.UUID(int=2)}", "author", None),
    (
        "POST",
        "/api/v1/triggers/{trigger_id:str}/secret",
        f"/api/v1/triggers/{uuid.UUID(int=2)}/secret",
        "author+operator",
        None,
    ),
    ("DELETE", "/api/v1/workflows/{workflow_id:str}", "/api/v1/workflows/wf", "author", None),
    ("POST", "/api/v1/workflows/{workflow_id:str}/archive", "/api/v1/workflows/wf/archive", "author", None),
    ("POST", "/api/v1/workflows/{workflow_id:str}/disable", "/api/v1/workflows/wf/disable", "author", None),
    ("POST", "/api/v1/workflows/{workflow_id:str}/enable", "/api/v1/workflows/wf/enable", "author", None),
    (
        "PATCH",
        "/api/v1/workflows/{workflow_id:str}/limits",
        "/api/v1/workflows/wf/limits",
        "author",
        {"rateLimitPerMinute": 60},
    ),
    (
        "PATCH",
        "/api/v1/workflows/{workflow_id:str}/retention",
        "/api/v1/workflows/wf/retention",
        "admin",
        {"retentionDays": 90},
    ),
    ("GET", "/api/v1/hooks/{trigger_id:str}", f"/api/v1/hooks/{uuid.UUID(int=3)}", "public", None),
    ("POST", "/api/v1/hooks/{trigger_id:str}", f"/api/v1/hooks/{uuid.UUID(int=3)}", "public", {}),
]
ALLOWED = {
    "viewer": {"viewer"},
    "operator": {"viewer", "operator"},
    "author": {"viewer", "author"},
    "admin": {"viewer", "operator", "author", "admin"},
}


def echo(workflow_id: str) -> dict[str, Any]:
    return load_fixture("bundle1/simple-echo-workflow.json") | {"id": workflow_id}


def test_the_table_covers_every_api_route(dsn: str) -> None:
    app = create_app(strict_settings(dsn))
    declared = {(method, path): required_roles(handler) for path, method, handler in api_handlers(app)}
    tabled = {(method, template): needed for method, template, _, needed, _ in ROUTES}
    assert tabled == declared


def test_every_write_needs_a_principal_when_one_is_required(dsn: str) -> None:
    """DW_REQUIRE_PRINCIPAL covers each route that changes something (a write method, a role above
    viewer): until this release it covered starts and control only, and anonymous workflow creates,
    publishes and archives passed. The viewer's POST (a document template's render) and the webhook
    receiver (public) write nothing a principal is recorded for."""
    app = create_app(strict_settings(dsn))
    uncovered = [
        (method, path)
        for path, method, handler in api_handlers(app)
        if method in {"POST", "PUT", "PATCH", "DELETE"}
        and handler.opt.get(ROLE_OPT) not in {"viewer", PUBLIC}
        and not handler.opt.get(REQUIRES_PRINCIPAL)
    ]
    assert uncovered == []


@pytest.mark.parametrize("held", ["viewer", "operator", "author", "admin"])
async def test_each_role_may_call_its_routes_and_no_others(dsn: str, held: str) -> None:
    settings = strict_settings(dsn)
    async with AsyncTestClient(create_app(settings)) as client:
        owner = bearer(settings, "pat", "admin")
        assert (await client.post("/api/v1/workflows", json=echo("wf"), headers=owner)).status_code == 201
        assert (await client.post("/api/v1/workflows/wf/publish", headers=owner)).status_code == 200
        started = await client.post("/api/v1/workflows/wf/execute", json={"trigger": {}}, headers=owner)
        execution = started.json()["executionId"]
        hook = await client.post(
            "/api/v1/workflows/wf/triggers",
            json={"kind": "webhook", "name": "t", "config": {"signature": "none"}},
            headers=owner,
        )
        trigger = hook.json()["id"]
        # The same principal as the workflow's creator, holding one role only: roles alone decide.
        caller = bearer(settings, "pat", held)
        for method, template, path, needed, body in ROUTES:
            if body == "new-workflow":
                body = echo(f"new-{held}")
            elif body == "definition":
                body = echo("wf")
            url = path.replace(EXECUTION, execution).replace("{trigger}", trigger)
            answer = await client.request(method, url, json=body, headers=caller)
            missing = [r for r in needed.split("+") if r not in ALLOWED[held]]
            if needed == "public" or not missing:
                assert answer.status_code not in (401, 403), (held, method, template, answer.text)
            else:
                problem = assert_problem(answer, 403)
                assert (problem["code"], problem["requiredRole"]) == ("role_required", missing[0]), problem
                assert f"needs the {needed} role" in problem["detail"]
                assert answer.headers["www-authenticate"].endswith('error="insufficient_scope"')


async def test_a_token_without_known_roles_may_read_nothing(dsn: str, strict: AsyncTestClient[Any]) -> None:
    settings = strict_settings(dsn)
    token = jwt.encode(
        {"sub": "x", "tenant": "default", "roles": ["superuser"], "exp": time.time() + 300, "iss": "https://issuer.test",
         "aud": "dataworkflows"},
        SECRET,
        algorithm="HS256",
    )  # fmt: skip
    answer = await strict.get("/api/v1/workflows", headers={"Authorization": f"Bearer {token}"})
    assert "the caller's roles: none" in assert_problem(answer, 403)["detail"]
    assert (await strict.get("/api/v1/workflows", headers=bearer(settings, "x", "viewer"))).status_code == 200


async def test_authors_change_only_their_own_workflows(dsn: str, strict: AsyncTestClient[Any]) -> None:
    settings = strict_settings(dsn)
    alice, bob, root = (
        bearer(settings, "alice", "author", "operator"),
        bearer(settings, "bob", "author", "operator"),
        bearer(settings, "root", "admin"),
    )
    created = await strict.post("/api/v1/workflows", params={"autoActivate": "true"}, json=echo("wf"), headers=alice)
    assert created.status_code == 201 and created.json()["createdBy"] == "alice"
    # A trigger runs its workflow: an author who may not run workflows may not make one either.
    author_only = bearer(settings, "alice", "author")
    refused = await strict.post(
        "/api/v1/workflows/wf/triggers",
        json={"kind": "webhook", "name": "sneaky", "config": {"signature": "none"}},
        headers=author_only,
    )
    assert assert_problem(refused, 403)["requiredRole"] == "operator"
    trigger = await strict.post(
        "/api/v1/workflows/wf/triggers",
        json={"kind": "schedule", "name": "nightly", "config": {"cron": "0 2 * * *"}},
        headers=alice,
    )
    assert trigger.status_code == 201, trigger.text
    trigger_url = f"/api/v1/triggers/{trigger.json()['id']}"
    changed = echo("wf") | {"description": "bob was here"}

    for method, url, body in [
        ("PUT", "/api/v1/workflows/wf", changed),
        ("POST", "/api/v1/workflows/wf/publish", None),
        ("POST", "/api/v1/workflows/wf/archive", None),
        ("DELETE", "/api/v1/workflows/wf", None),
        ("POST", "/api/v1/workflows/wf/disable", None),
        ("POST", "/api/v1/workflows/wf/enable", None),
        ("POST", "/api/v1/workflows/wf/triggers", {"kind": "webhook", "name": "b", "config": {"signature": "none"}}),
        ("PATCH", trigger_url, {"enabled": False}),
        ("DELETE", trigger_url, None),
    ]:
        problem = assert_problem(await strict.request(method, url, json=body, headers=bob), 403)
        assert problem["code"] == "not_owner" and "created by alice" in problem["detail"], (method, url)
    # Reading and running someone else's workflow is fine.
    assert (await strict.get("/api/v1/workflows/wf", headers=bob)).status_code == 200
    assert (await strict.post("/api/v1/workflows/wf/execute", json={"trigger": {}}, headers=bob)).status_code == 202
    # An unknown workflow is a 404, as without the ownership check.
    missing = await strict.put("/api/v1/workflows/nope", json=echo("nope"), headers=bob)
    assert assert_problem(missing, 404)["code"] == "workflow_not_found"
    missing_trigger = await strict.patch(f"/api/v1/triggers/{uuid.UUID(int=9)}", json={}, headers=bob)
    assert_problem(missing_trigger, 404)

    assert (await strict.put("/api/v1/workflows/wf", json=changed, headers=alice)).status_code == 200
    assert (await strict.patch(trigger_url, json={"enabled": False}, headers=alice)).status_code == 200
    # Admins change any workflow.
    assert (await strict.post("/api/v1/workflows/wf/publish", headers=root)).status_code == 200
    versions = (await strict.get("/api/v1/workflows/wf/versions", headers=root)).json()
    latest = max(versions, key=lambda v: v["version"])
    assert (latest["version"], latest["createdBy"], latest["publishedBy"]) == (2, "alice", "root")


async def test_authors_change_only_their_own_document_template_sets(dsn: str, strict: AsyncTestClient[Any]) -> None:
    """A review: any author could rewrite (or delete) another author's document template, and every
    workflow that rendered it unpinned sent the new text (an invoice with someone else's IBAN)."""
    settings = strict_settings(dsn)
    alice, bob, root, viewer = (
        bearer(settings, "alice", "author"),
        bearer(settings, "bob", "author"),
        bearer(settings, "root", "admin"),
        bearer(settings, "vic", "viewer"),
    )
    made = await strict.post("/api/v1/template-sets", json={"id": "docs"}, headers=alice)
    assert made.status_code == 201 and made.json()["createdBy"] == "alice", made.text
    body = {"format": "text", "body": "Pay to {{ iban }}"}
    assert (
        await strict.post("/api/v1/templates", json={"set": "docs", "name": "invoice", **body}, headers=alice)
    ).status_code == 201
    for method, url, sent in [
        ("PUT", "/api/v1/templates/docs/invoice", {"format": "text", "body": "Pay to MALLORY"}),
        ("POST", "/api/v1/templates", {"set": "docs", "name": "receipt", **body}),
        ("DELETE", "/api/v1/templates/docs/invoice", None),
        ("DELETE", "/api/v1/template-sets/docs", None),
    ]:
        problem = assert_problem(await strict.request(method, url, json=sent, headers=bob), 403)
        assert problem["code"] == "not_owner" and "created by alice" in problem["detail"], (method, url)
    latest = (await strict.get("/api/v1/templates/docs/invoice", headers=viewer)).json()
    assert (latest["version"], latest["body"]) == (1, "Pay to {{ iban }}")
    # Reading and previewing someone else's template is fine; an unknown set is a 404 as before.
    rendered = await strict.post("/api/v1/templates/docs/invoice/render", json={"data": {"iban": "X"}}, headers=bob)
    assert rendered.status_code == 200, rendered.text
    missing = await strict.put("/api/v1/templates/nope/invoice", json=body, headers=bob)
    assert_problem(missing, 404)
    missing = await strict.post("/api/v1/templates", json={"set": "nope", "name": "x", **body}, headers=bob)
    assert_problem(missing, 404)
    # Its creator and admins change it.
    saved = await strict.put("/api/v1/templates/docs/invoice", json={"format": "text", "body": "v2"}, headers=alice)
    assert saved.status_code == 200 and saved.json()["version"] == 2, saved.text
    saved = await strict.put("/api/v1/templates/docs/invoice", json={"format": "text", "body": "v3"}, headers=root)
    assert saved.status_code == 200 and saved.json()["createdBy"] == "root", saved.text
    assert (await strict.delete("/api/v1/template-sets/docs", headers=root)).status_code == 204


async def test_the_token_names_the_caller_and_is_verified_once_per_request(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = strict_settings(dsn)
    calls: list[str] = []
    original = TokenVerifier.verify

    async def counting(self: TokenVerifier, token: str) -> Any:
        calls.append(token)
        return await original(self, token)

    monkeypatch.setattr(TokenVerifier, "verify", counting)
    async with AsyncTestClient(create_app(settings)) as client:
        admin = bearer(settings, "svc-billing", "admin", tenant="acme")
        # Principal headers do not change who the caller is in strict mode.
        admin_with_claims = admin | {"X-Principal-Id": "mallory", "X-Tenant-Id": "other"}
        created = await client.post(
            "/api/v1/workflows", params={"autoActivate": "true"}, json=echo("wf"), headers=admin_with_claims
        )
        assert created.json()["createdBy"] == "svc-billing"
        calls.clear()
        started = await client.post("/api/v1/workflows/wf/execute", json={"trigger": {}}, headers=admin)
        assert started.status_code == 202
        assert len(calls) == 1, "the guard, the principal dependency and the log context share one verification"
        execution = (await client.get(started.json()["statusUrl"], headers=admin)).json()
        assert (execution["principalId"], execution["principalType"]) == ("svc-billing", "user")


async def test_loose_mode_is_unchanged(dsn: str) -> None:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as loose:
        created = await loose.post("/api/v1/workflows", json=echo("wf"), headers={"X-Principal-Id": "ana"})
        assert created.status_code == 201 and created.json()["createdBy"] == "ana"
        # Anyone may change anyone's workflow, anonymously, with or without a tenant header; no token is read.
        token = {"Authorization": "Bearer not-even-a-jwt"}
        assert (await loose.post("/api/v1/workflows/wf/publish", headers=token)).status_code == 200
        assert (await loose.put("/api/v1/connections/c", json={"kind": "slack", "secret": "s3cr"})).status_code == 409
        tenant = await loose.get("/api/v1/workflows", headers={"X-Tenant-Id": "acme"})
        assert tenant.status_code == 200
        bad = await loose.get("/api/v1/workflows", headers={"X-Tenant-Id": "no/slashes"})
        assert "X-Tenant-Id" in assert_problem(bad, 400)["detail"]
        assert (await loose.get("/health/live", headers={"X-Tenant-Id": "no/slashes"})).status_code == 200


async def test_a_loose_principal_header_is_refused_rather_than_cut(dsn: str) -> None:
    """A principal over 200 characters (a type over 50) or with a control character is a 400 naming
    the header: the caller is never recorded as a principal it did not send (it was cut to 200)."""
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as loose:
        longest = "p" * 200
        created = await loose.post("/api/v1/workflows", json=echo("wf"), headers={"X-Principal-Id": longest})
        assert created.status_code == 201 and created.json()["createdBy"] == longest
        for header, value, says in [
            ("X-Principal-Id", "p" * 201, "at most 200 characters (this one has 201)"),
            ("X-Principal-Id", "ana\x01", "control"),
            ("X-Principal-Id", "ana\tbob", "control"),
            ("X-Principal-Type", "t" * 51, "at most 50 characters"),
            ("X-Principal-Type", "user\x7f", "control"),
        ]:
            refused = await loose.post("/api/v1/workflows", json=echo("wf2"), headers={header: value})
            body = assert_problem(refused, 400)
            assert body["code"] == "bad_request" and header in body["detail"] and says in body["detail"], body
            assert value not in body["detail"]
        assert (await loose.get("/api/v1/workflows/wf2")).status_code == 404, "nothing was stored"
        # Routes without the guard (health, webhook deliveries) do not read the headers.
        assert (await loose.get("/health/live", headers={"X-Principal-Id": "p" * 201})).status_code == 200


async def test_a_loose_principal_header_is_utf8_text(dsn: str) -> None:
    """Header bytes reach the app decoded as latin-1: the principal headers are read as the UTF-8
    the client sent. `Łukasz` and `田中` were refused (their continuation bytes looked like C1 control
    characters), `José` was recorded as `JosÃ©`, and the limit counted bytes."""
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as loose:
        raw = raw_client(loose)
        created = await loose.post("/api/v1/workflows?autoActivate=true", json=echo("wf"))
        assert created.status_code == 201, created.text
        # "Voilà" ends in 0xA0, which str.strip() takes for a no-break space before decoding.
        # UTF-8 as UTF-8; other bytes as latin-1, which browsers' fetch and http.client send for
        # characters up to U+00FF (José as the one byte 0xE9), as every release read them.
        names = [
            "Łukasz",
            "田中",
            "José",
            "Ödön Ő",
            "Voilà",
            "é" * 200,
            "\u0639\u0644\u06cc\u200c\u0631\u0636\u0627",
        ]  # Persian, a ZWNJ inside
        sent_as = [(name, name.encode()) for name in names]
        for name, sent_bytes in [*sent_as, ("José", b"Jos\xe9"), ("anaÿ", b"ana\xff")]:
            sent = {"X-Principal-Id": sent_bytes, "X-Principal-Type": "größe".encode()}
            started = await raw.post("/api/v1/workflows/wf/execute", json={"trigger": {}}, headers=sent)
            assert started.status_code == 202, (name, started.text)
            execution = (await loose.get(started.json()["statusUrl"])).json()
            assert (execution["principalId"], execution["principalType"]) == (name, "größe")
        for header, value, says in [
            ("X-Principal-Id", ("é" * 201).encode(), "at most 200 characters (this one has 201)"),
            ("X-Principal-Type", ("ü" * 51).encode(), "at most 50 characters (this one has 51)"),
            ("X-Principal-Id", "ana\u0085bob".encode(), "control"),
            # Invisible, or a line break in a log line: refused, though none is a C0 or C1 control.
            ("X-Principal-Id", "ops\u2028level=error".encode(), "line-separator"),
            ("X-Principal-Id", "ops\u200b".encode(), "invisible"),
            ("X-Principal-Id", "\u202eevil".encode(), "invisible"),
        ]:
            refused = await raw.post("/api/v1/workflows", json=echo("wf2"), headers={header: value})
            body = assert_problem(refused, 400)
            assert body["code"] == "bad_request" and header in body["detail"] and says in body["detail"], body
        assert (await loose.get("/api/v1/workflows/wf2")).status_code == 404, "nothing was stored"


async def test_a_token_whose_sub_holds_a_control_character_is_refused(dsn: str, strict: AsyncTestClient[Any]) -> None:
    settings = strict_settings(dsn)
    now = int(time.time())
    claims = {"sub": "ana\nadmin", "tenant": "default", "roles": ["admin"], "iss": settings.jwt_issuer,
              "aud": settings.jwt_audience}  # fmt: skip
    token = jwt.encode({**claims, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")
    body = assert_problem(await strict.get("/api/v1/workflows", headers={"Authorization": f"Bearer {token}"}), 401)
    assert "control, invisible or line-separator characters" in body["detail"], body
    for subject in ["ana\nadmin", "ana\u2028admin", "ana\u200b"]:
        with pytest.raises(ConfigurationError, match="control, invisible or line-separator characters"):
            mint_token(settings, subject=subject, tenant="default", roles=["admin"], ttl_seconds=60)


async def test_openapi_documents_each_routes_role(strict: AsyncTestClient[Any]) -> None:
    document = (await strict.get("/schema/openapi.json")).json()
    create = document["paths"]["/api/v1/workflows"]["post"]
    assert create["x-required-role"] == "author"
    assert "Required role: `author`" in create["description"]
    assert {"401", "403"} <= set(create["responses"]) and create["security"] == [{"bearerAuth": []}]
    publish = document["paths"]["/api/v1/workflows/{workflow_id}/publish"]["post"]
    assert "only the workflows it created" in publish["description"]
    decide = document["paths"]["/api/v1/approvals/{approval_id}/decision"]["post"]
    assert "not one of the approval's approvers" in decide["responses"]["403"]["description"]
    listing = document["paths"]["/api/v1/approvals"]["get"]
    assert listing["x-required-role"] == "viewer"
    assert any(p["name"] == "principal" for p in listing["parameters"]), "the custom operation class still applies"
    hook = document["paths"]["/api/v1/hooks/{trigger_id}"]["post"]
    assert hook["x-required-role"] == "public" and "security" not in hook
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_a_hostile_token_gets_a_plain_401(strict: AsyncTestClient[Any]) -> None:
    """A token header that quotes non-ASCII or line breaks (an algorithm, a `crit` entry) gets a 401
    whose WWW-Authenticate is plain ASCII, never a 500 or a header split."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    for header in ({"alg": "€Ā", "typ": "JWT"}, {"alg": "HS256", "typ": "JWT", "crit": ["x\r\nSet-Cookie: a=1"]}):
        token = f"{part(header)}.{part({'sub': 'x'})}.c2ln"
        answer = await strict.get("/api/v1/workflows", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, answer.text
        challenge = answer.headers["www-authenticate"]
        assert challenge.isascii() and "\r" not in challenge and "\n" not in challenge, challenge


async def test_an_event_stream_ends_when_its_token_does(dsn: str) -> None:
    """A stream checked its token once and then ran as long as the run waited (days): an expired or
    revoked credential kept reading the tenant's events. It now ends when the token stops being
    accepted (exp and the leeway), saying so; the client's reconnect is checked again, and refused."""
    settings = strict_settings(dsn, jwt_leeway_seconds=0.0)
    async with AsyncTestClient(create_app(settings)) as client:
        admin = bearer(settings, "ops", "admin")
        raw = load_fixture("bundle1/simple-echo-workflow.json")
        assert (await client.post("/api/v1/workflows?autoActivate=true", json=raw, headers=admin)).status_code == 201
        started = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}, headers=admin)
        url = f"{started.json()['statusUrl']}/events"
        token = mint_token(settings, subject="viewer-1", tenant="default", roles=["viewer"], ttl_seconds=2)
        short = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        # No worker runs it: the run stays Pending, and the stream would wait for it.
        stream = await asyncio.wait_for(client.get(url, headers=short, timeout=30), 30)
        assert stream.status_code == 200
        assert "event: execution_requested" in stream.text, "the events so far came first"
        assert stream.text.rstrip().endswith(": reconnect: the stream's time is up"), stream.text[-200:]
        assert assert_problem(await client.get(url, headers=short), 401)["code"] == "invalid_token"

"""What the console needs from the API, in-process against a real database: its files at /ui with a
strict Content-Security-Policy (and / sending there), the executions list's filters (trigger kind,
trigger, time range), and GET /api/v1/workers, tenant-scoped, from the leases and Procrastinate's
heartbeats."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.api.console import ASSETS
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.tenancy import tenant_scope
from tests.conftest import load_fixture, publish, start
from tests.integration.test_api import assert_problem
from tests.integration.test_auth_api import bearer, strict_settings


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as test_client:
        yield test_client


async def test_the_console_is_served_offline_with_a_strict_policy(client: AsyncTestClient[Any]) -> None:
    root = await client.get("/", follow_redirects=False)
    assert root.status_code in (301, 302, 307, 308) and root.headers["location"] == "/ui"
    page = await client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    # Every script and stylesheet comes from the package: nothing from another origin, no inline script.
    assert "http://" not in page.text and "https://" not in page.text
    assert '<script type="module" src="/ui/js/app.js"></script>' in page.text
    # boot.js, a classic script, runs first: it sees a module that failed to load (browser tests).
    assert page.text.index('<script src="/ui/js/boot.js"></script>') < page.text.index('<script type="module"')
    for name in ("js/app.js", "js/views/execution.js", "console.css"):
        asset = await client.get(f"/ui/{name}")
        assert asset.status_code == 200 and asset.headers["content-security-policy"] == policy
    assert (await client.get("/ui/js/app.js")).headers["content-type"] == "text/javascript; charset=utf-8"
    assert page.headers["content-type"] == "text/html; charset=utf-8", "one charset, not two"
    # No module writes markup from strings: the console only ever sets text.
    for name, (content, _) in ASSETS.items():
        if name.endswith(".js"):
            text = content.decode()
            assert "innerHTML" not in text and "outerHTML" not in text and "insertAdjacentHTML" not in text, name
            assert "eval(" not in text and "new Function" not in text, name
    missing = assert_problem(await client.get("/ui/../app.py"), 404)
    assert missing["code"] == "not_found"
    assert_problem(await client.get("/ui/js/nope.js"), 404)


async def test_the_console_files_answer_a_conditional_get_by_their_etag(client: AsyncTestClient[Any]) -> None:
    """`Cache-Control: no-cache` had the browser revalidate every file on every load, but with no
    validator to revalidate with it fetched each one in full: each has an ETag (its content's hash)
    now, and a copy still good is a 304 without a body."""
    for path in ("/ui", "/ui/js/app.js", "/ui/console.css"):
        first = await client.get(path)
        etag = first.headers["etag"]
        assert first.status_code == 200 and etag.startswith('"') and etag.endswith('"'), path
        assert first.headers["cache-control"] == "no-cache"
        for asked in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = await client.get(path, headers={"If-None-Match": asked})
            assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag), (path, asked)
            assert again.headers["cache-control"] == "no-cache"
        changed = await client.get(path, headers={"If-None-Match": '"something-else"'})
        assert (changed.status_code, changed.content) == (200, first.content), path
    # Another file, another tag.
    assert (await client.get("/ui/js/api.js")).headers["etag"] != (await client.get("/ui/js/app.js")).headers["etag"]


async def test_api_answers_opened_in_a_tab_run_nothing_and_have_an_origin_of_their_own(
    client: AsyncTestClient[Any],
) -> None:
    """An API answer holds stored values (a display name, a trigger's data, a rendered document):
    opened in the console's tab it must not become a page of the console's origin, which would reach
    the console's token and the API as same-origin."""
    for path in ("/api/v1/workflows", "/api/v1/nope", "/api/v1/executions/not-a-uuid"):
        answer = await client.get(path)
        assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'; sandbox"
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["referrer-policy"] == "no-referrer"
    # The console's own pages keep their policy; every other answer is not sniffed or framed either.
    assert "script-src 'self'" in (await client.get("/ui")).headers["content-security-policy"]
    for path in ("/health/live", "/schema/openapi.json", "/nope"):
        answer = await client.get(path)
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["x-frame-options"] == "DENY", path


async def test_the_console_is_open_in_strict_mode_and_its_data_is_not(dsn: str) -> None:
    settings = strict_settings(dsn)
    async with AsyncTestClient(create_app(settings)) as strict:
        assert (await strict.get("/ui")).status_code == 200
        assert_problem(await strict.get("/api/v1/workers"), 401)
        assert (await strict.get("/api/v1/workers", headers=bearer(settings, "ana", "viewer"))).status_code == 200


async def test_whoami_says_who_the_caller_is_in_either_mode(client: AsyncTestClient[Any], dsn: str) -> None:
    """The console's header shows who it calls as: with a token (strict mode) its subject, tenant
    and roles were nowhere to be seen."""
    settings = strict_settings(dsn)
    async with AsyncTestClient(create_app(settings)) as strict:
        assert_problem(await strict.get("/api/v1/whoami"), 401)
        me = await strict.get("/api/v1/whoami", headers=bearer(settings, "ana", "operator", "viewer", tenant="acme"))
        assert me.status_code == 200, me.text
        body = me.json()
        valid_until = datetime.fromisoformat(body.pop("validUntil"))
        assert timedelta(0) < valid_until - datetime.now(UTC) <= timedelta(seconds=300 + settings.jwt_leeway_seconds)
        assert body == {
            "principalId": "ana",
            "principalType": "user",
            "tenant": "acme",
            "roles": ["viewer", "operator"],
            "authMode": "strict",
        }
    named = await client.get("/api/v1/whoami", headers={"X-Principal-Id": "ops", "X-Tenant-Id": "acme"})
    assert named.json() == {
        "principalId": "ops",
        "principalType": "user",
        "tenant": "acme",
        "roles": ["viewer", "operator", "author", "admin"],
        "authMode": "loose",
        "validUntil": None,
    }
    anonymous = (await client.get("/api/v1/whoami")).json()
    assert (anonymous["principalId"], anonymous["principalType"], anonymous["tenant"]) == (None, None, "default")


async def test_executions_filter_by_trigger_kind_trigger_and_time(
    client: AsyncTestClient[Any], db: Database, dsn: str
) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    manual = await start(db, "simple-echo")
    created = await client.post(
        "/api/v1/workflows/simple-echo/triggers",
        json={"kind": "webhook", "name": "in", "config": {"signature": "none"}},
    )
    assert created.status_code == 201, created.text
    trigger_id = created.json()["id"]
    hooked = (await client.post(f"/api/v1/hooks/{trigger_id}", json={"n": 1})).json()["executionId"]
    listing = (await client.get("/api/v1/executions")).json()["items"]
    kinds = {item["id"]: (item["triggerKind"], item["triggerId"]) for item in listing}
    assert kinds == {str(manual): ("manual", None), hooked: ("webhook", trigger_id)}

    async def ids(**params: Any) -> list[str]:
        answer = await client.get("/api/v1/executions", params=params)
        assert answer.status_code == 200, answer.text
        return [item["id"] for item in answer.json()["items"]]

    assert await ids(triggerKind="webhook") == [hooked]
    assert await ids(triggerKind="manual") == [str(manual)]
    assert await ids(triggerKind="schedule") == await ids(triggerKind="subworkflow") == []
    assert await ids(triggerId=trigger_id) == [hooked]
    # The time range: createdFrom inclusive, createdTo exclusive; no offset means UTC.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE dw.executions SET created_at = '2026-01-01T10:00:00Z' WHERE id = %s", (manual,))
    assert await ids(createdFrom="2026-01-01T10:00:00Z", createdTo="2026-01-01T10:00:01Z") == [str(manual)]
    assert await ids(createdFrom="2026-01-01T10:00:00", createdTo="2026-01-01T10:00:01") == [str(manual)]
    # RFC 3339's lowercase z is UTC too (it was a 400).
    assert await ids(createdFrom="2026-01-01t10:00:00z", createdTo="2026-01-01t10:00:01z") == [str(manual)]
    assert await ids(createdTo="2026-01-01T10:00:00Z") == []
    recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert await ids(createdFrom=recent) == [hooked]
    problem = assert_problem(await client.get("/api/v1/executions", params={"triggerKind": "cron"}), 400)
    assert "triggerKind must be one of" in problem["detail"]
    assert_problem(await client.get("/api/v1/executions", params={"createdFrom": "yesterday"}), 400)
    # A date alone is ISO 8601 too (its midnight, UTC); a number of seconds is not (it was taken).
    assert await ids(createdFrom="2026-01-01", createdTo="2026-01-02") == [str(manual)]
    assert await ids(createdTo="2026-01-01") == []
    for epoch in ("1700000000", "1e10"):
        refused = assert_problem(await client.get("/api/v1/executions", params={"createdFrom": epoch}), 400)
        assert [e["parameter"] for e in refused["errors"]] == ["createdFrom"], refused
    assert_problem(await client.get("/api/v1/executions", params={"triggerId": "not-a-uuid"}), 400)
    # A window that holds nothing (the two swapped, or equal) is said to be that; it listed nothing.
    for window in (("2026-01-02", "2026-01-01"), ("2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z")):
        empty = await client.get("/api/v1/executions", params={"createdFrom": window[0], "createdTo": window[1]})
        refused = assert_problem(empty, 400)
        assert [e["parameter"] for e in refused["errors"]] == ["createdTo"], refused
        assert "is not after createdFrom" in refused["detail"], refused


async def test_workers_shows_leases_of_the_callers_tenant_and_fetch_loops(
    client: AsyncTestClient[Any], db: Database, dsn: str
) -> None:
    assert (await client.get("/api/v1/workers")).json() == {"leases": [], "fetchLoops": []}
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution = await start(db, "simple-echo")
    await db.runs.acquire(execution, owner="host/1/abc", lease_seconds=30)
    with psycopg.connect(dsn, autocommit=True) as conn:
        live = conn.execute("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id").fetchone()[0]
        stale = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE args ->> 'execution_id' = %s",
            (live, str(execution)),
        )
    body = (await client.get("/api/v1/workers")).json()
    assert [(lease["workerId"], lease["runsHeld"]) for lease in body["leases"]] == [("host/1/abc", 1)]
    assert body["leases"][0]["leaseExpiresAt"] is not None
    assert [(f["id"], f["alive"], f["jobsDoing"]) for f in body["fetchLoops"]] == [(live, True, 1), (stale, False, 0)]
    # Another tenant sees the fetch loops (processes, no tenant's data) but none of these leases or jobs.
    other = (await client.get("/api/v1/workers", headers={"X-Tenant-Id": "other"})).json()
    assert other["leases"] == [] and [f["jobsDoing"] for f in other["fetchLoops"]] == [0, 0]
    with tenant_scope("other"):
        assert await db.operations.worker_leases() == []


async def test_dead_letters_filter_by_execution(client: AsyncTestClient[Any], db: Database, dsn: str) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    runs = [await start(db, "simple-echo") for _ in range(2)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('dw.tenant_id', 'default', false)")
        for run in runs:
            conn.execute(
                "INSERT INTO dw.dead_letters (tenant_id, kind, execution_id, node_id)"
                " VALUES ('default', 'node_failed', %s, 'echo1')",
                (run,),
            )
    every = (await client.get("/api/v1/dead-letters")).json()["items"]
    assert {d["executionId"] for d in every} == {str(run) for run in runs}
    mine = (await client.get("/api/v1/dead-letters", params={"executionId": str(runs[0]), "open": "true"})).json()
    assert [d["executionId"] for d in mine["items"]] == [str(runs[0])]
    assert (await client.get("/api/v1/dead-letters", params={"executionId": str(uuid.uuid4())})).json()["items"] == []
    assert_problem(await client.get("/api/v1/dead-letters", params={"executionId": "nope"}), 400)

"""Tenant isolation (migration 0018): through the API, where another tenant's objects answer 404,
and in SQL, connected as the application role with a tenant set and with none."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import APP_ROLE, Database, make_pool
from dataworkflows.tenancy import all_tenants, no_tenant, tenant_scope
from dataworkflows.workers.app import run_worker
from tests.conftest import load_fixture, publish, start
from tests.integration.test_api import assert_problem

A = {"X-Tenant-Id": "acme", "X-Principal-Id": "ana"}
B = {"X-Tenant-Id": "globex", "X-Principal-Id": "bo"}


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    key = base64.b64encode(b"k" * 32).decode()
    app = create_app(Settings(database_url=dsn, pool_max_size=10, credentials_key=key))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def create_active(client: AsyncTestClient[Any], headers: dict[str, str], raw: dict[str, Any]) -> None:
    created = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw, headers=headers)
    assert created.status_code == 201, created.text


async def execute(client: AsyncTestClient[Any], headers: dict[str, str], workflow_id: str, **body: Any) -> str:
    started = await client.post(
        f"/api/v1/workflows/{workflow_id}/execute", json={"trigger": {}, **body}, headers=headers
    )
    assert started.status_code == 202, started.text
    return str(started.json()["executionId"])


async def test_disabling_a_workflow_from_psql_acts_in_the_sessions_tenant_only(
    client: AsyncTestClient[Any], dsn: str
) -> None:
    """dw.set_workflow_enabled_v1 found the workflow by id alone: row-level security narrows the API's
    role to its tenant, but a superuser's psql session disabled every tenant's workflow of that id."""
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await create_active(client, A, raw)
    await create_active(client, B, raw)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        assert (await (await conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).fetchone())[0]
        await conn.execute("SET dw.tenant_id = 'acme'")
        await conn.execute("SELECT * FROM dw.set_workflow_enabled_v1('simple-echo', false, 'ops')")
        rows = await (
            await conn.execute("SELECT tenant_id, is_enabled FROM dw.workflows WHERE id = 'simple-echo' ORDER BY 1")
        ).fetchall()
        assert rows == [("acme", False), ("globex", True)]
        await conn.execute("SET dw.tenant_id = 'globex'")
        await conn.execute("SELECT * FROM dw.set_workflow_enabled_v1('simple-echo', true, 'ops')")
        rows = await (
            await conn.execute("SELECT tenant_id, is_enabled FROM dw.workflows WHERE id = 'simple-echo' ORDER BY 1")
        ).fetchall()
        assert rows == [("acme", False), ("globex", True)]
    assert (await client.get("/api/v1/workflows/simple-echo", headers=A)).json()["isEnabled"] is False
    assert (await client.get("/api/v1/workflows/simple-echo", headers=B)).json()["isEnabled"] is True
    # Over the API, each tenant's own.
    assert (await client.post("/api/v1/workflows/simple-echo/enable", headers=A)).json()["isEnabled"] is True
    assert (await client.post("/api/v1/workflows/simple-echo/disable", headers=B)).json()["isEnabled"] is False
    assert (await client.get("/api/v1/workflows/simple-echo", headers=A)).json()["isEnabled"] is True


async def test_ids_are_unique_per_tenant(client: AsyncTestClient[Any]) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await create_active(client, A, raw)
    await create_active(client, B, raw | {"description": "globex's own"})
    again = await client.post("/api/v1/workflows", json=raw, headers=A)
    assert assert_problem(again, 409)["code"] == "workflow_exists"

    a_run = await execute(client, A, "simple-echo", requestId="same")
    b_run = await execute(client, B, "simple-echo", requestId="same")
    assert a_run != b_run, "request ids are idempotency keys per tenant"
    assert (await client.get("/api/v1/workflows/simple-echo", headers=B)).json()["description"] == "globex's own"


async def test_another_tenants_objects_answer_404(client: AsyncTestClient[Any], db: Database) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await create_active(client, A, raw)
    run = await execute(client, A, "simple-echo")
    connection = await client.put(
        "/api/v1/connections/acme-slack", json={"kind": "slack", "secret": "xoxb-1"}, headers=A
    )
    assert connection.status_code in (200, 201), connection.text
    assert (await client.get(f"/api/v1/executions/{run}", headers=A)).status_code == 200

    for method, path, body in [
        ("GET", f"/api/v1/executions/{run}", None),
        ("GET", f"/api/v1/executions/{run}/events", None),
        ("GET", f"/api/v1/executions/{run}/tree", None),
        ("GET", f"/api/v1/executions/{run}/children", None),
        ("POST", f"/api/v1/executions/{run}/cancel", {}),
        ("POST", f"/api/v1/executions/{run}/suspend", {}),
        ("PUT", f"/api/v1/executions/{run}/priority", {"priority": 9}),
        ("POST", f"/api/v1/executions/{run}/signals/go", {"signalId": "s1", "payload": {}}),
        ("GET", "/api/v1/workflows/simple-echo", None),
        ("GET", "/api/v1/workflows/simple-echo/versions", None),
        ("POST", "/api/v1/workflows/simple-echo/execute", {"trigger": {}}),
        ("POST", "/api/v1/workflows/simple-echo/publish", None),
        ("DELETE", "/api/v1/workflows/simple-echo", None),
        ("DELETE", "/api/v1/connections/acme-slack", None),
    ]:
        response = await client.request(method, path, json=body, headers=B)
        assert response.status_code == 404, (method, path, response.status_code, response.text)

    listing = (await client.get("/api/v1/executions", headers=B)).json()
    assert listing["items"] == []
    assert (await client.get("/api/v1/workflows", headers=B)).json()["items"] == []
    assert [c["name"] for c in (await client.get("/api/v1/connections", headers=B)).json()] == []
    # A's run is untouched by B's attempts.
    assert (await client.get(f"/api/v1/executions/{run}", headers=A)).json()["cancelRequestedAt"] is None


async def test_a_dead_letter_is_redriven_by_its_tenant_only(client: AsyncTestClient[Any], dsn: str) -> None:
    failing = load_fixture("bundle1/simple-echo-workflow.json") | {"id": "fails", "startNode": "boom"}
    failing["nodes"] = [
        {"id": "boom", "actionType": "core.echo", "parameters": {"message": "no", "simulateFailure": "permanent"}}
    ]
    await create_active(client, A, failing)
    run = await execute(client, A, "fails")
    async with worker(dsn):
        await until_ended(client, A, run)
    letters = (await client.get("/api/v1/dead-letters", headers=A)).json()["items"]
    assert letters, "the failed run left a dead letter"
    letter = letters[0]["id"]
    assert (await client.get("/api/v1/dead-letters", headers=B)).json()["items"] == []
    assert (await client.get(f"/api/v1/dead-letters/{letter}", headers=B)).status_code == 404
    assert (await client.post(f"/api/v1/dead-letters/{letter}/redrive", headers=B)).status_code == 404


@contextlib.asynccontextmanager
async def worker(dsn: str) -> AsyncIterator[None]:
    stop = asyncio.Event()
    settings = Settings(database_url=dsn, worker_poll_seconds=0.2, recovery_interval_seconds=0.5)
    task = asyncio.create_task(run_worker(settings, concurrency=4, install_signal_handlers=False, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until_ended(client: AsyncTestClient[Any], headers: dict[str, str], run: str) -> dict[str, Any]:
    for _ in range(200):
        body = (await client.get(f"/api/v1/executions/{run}", headers=headers)).json()
        if body["status"] in ("Succeeded", "Failed", "Cancelled", "TimedOut"):
            return dict(body)
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run} did not end")


def with_message(raw: dict[str, Any], message: str) -> dict[str, Any]:
    nodes = [{**node, "parameters": {**node["parameters"], "message": message}} for node in raw["nodes"]]
    return {**raw, "nodes": nodes}


async def test_workers_run_each_execution_as_its_tenant(client: AsyncTestClient[Any], dsn: str) -> None:
    # Same workflow id and version in both tenants, different nodes: one worker runs each tenant's
    # own plan (its plan cache is per tenant).
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await create_active(client, A, with_message(raw, "acme's"))
    await create_active(client, B, with_message(raw, "globex's"))
    runs = {"acme": await execute(client, A, "simple-echo"), "globex": await execute(client, B, "simple-echo")}
    async with worker(dsn):
        for tenant, headers in (("acme", A), ("globex", B)):
            body = await until_ended(client, headers, runs[tenant])
            assert body["status"] == "Succeeded", body
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT e.tenant_id, count(DISTINCT n.tenant_id), count(DISTINCT a.tenant_id), "
                "count(DISTINCT v.tenant_id), bool_and(v.tenant_id = e.tenant_id) "
                "FROM dw.executions e JOIN dw.node_states n ON n.execution_id = e.id "
                "JOIN dw.action_executions a ON a.execution_id = e.id "
                "JOIN dw.execution_events v ON v.execution_id = e.id GROUP BY e.tenant_id ORDER BY 1"
            )
        ).fetchall()
        assert rows == [("acme", 1, 1, 1, True), ("globex", 1, 1, 1, True)]
        messages = await (
            await conn.execute(
                "SELECT DISTINCT tenant_id, parameters ->> 'message' FROM dw.action_executions ORDER BY 1"
            )
        ).fetchall()
    assert messages == [("acme", "acme's"), ("globex", "globex's")]


async def test_a_schedule_fires_in_its_own_tenant(client: AsyncTestClient[Any], dsn: str) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await create_active(client, B, raw)
    created = await client.post(
        "/api/v1/workflows/simple-echo/triggers",
        json={"kind": "schedule", "name": "every-second", "config": {"cron": "* * * * * *"}},
        headers=B,
    )
    assert created.status_code == 201, created.text
    async with worker(dsn):
        for _ in range(100):
            items = (await client.get("/api/v1/executions", headers=B)).json()["items"]
            if items:
                break
            await asyncio.sleep(0.1)
    assert items, "the schedule started a run in its tenant"
    assert (await client.get("/api/v1/executions", headers={"X-Tenant-Id": "default"})).json()["items"] == []


# In SQL, as the application role.


async def as_app(conn: psycopg.AsyncConnection[Any], tenant: str | None) -> None:
    await conn.execute(f'SET ROLE "{APP_ROLE}"')
    if tenant is not None:
        await conn.execute("SELECT set_config('dw.tenant_id', %s, false)", (tenant,))


async def count(conn: psycopg.AsyncConnection[Any], table: str) -> int:
    row = await (await conn.execute(f"SELECT count(*) FROM dw.{table}")).fetchone()
    assert row is not None
    return int(row[0])


async def test_sql_sees_the_tenant_set_and_nothing_without_one(client: AsyncTestClient[Any], dsn: str) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await create_active(client, A, raw)
    await create_active(client, B, raw)
    await execute(client, A, "simple-echo")
    await execute(client, B, "simple-echo")
    tables = ("workflows", "workflow_versions", "executions", "node_states", "execution_events")

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await as_app(conn, None)
        assert [await count(conn, t) for t in tables] == [0, 0, 0, 0, 0], "no tenant: nothing at all"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute(
                "INSERT INTO dw.connections (tenant_id, name, kind, secret, key_id) VALUES "
                "('acme', 'x', 'http', '\\x00', 'k')"
            )

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await as_app(conn, "acme")
        assert await count(conn, "executions") == 1
        row = await (await conn.execute("SELECT DISTINCT tenant_id FROM dw.node_states")).fetchall()
        assert row == [("acme",)]
        # Writing another tenant's row is refused (WITH CHECK), as is reading it.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute(
                "INSERT INTO dw.connections (tenant_id, name, kind, secret, key_id) VALUES "
                "('globex', 'x', 'http', '\\x00', 'k')"
            )
        updated = await conn.execute("UPDATE dw.workflows SET description = 'hijacked' WHERE tenant_id = 'globex'")
        assert updated.rowcount == 0
        # The app role owns nothing: it cannot switch row-level security off.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("ALTER TABLE dw.executions NO FORCE ROW LEVEL SECURITY")

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await as_app(conn, "*")
        assert await count(conn, "executions") == 0, "'*' is not the application role's"
        # The maintenance loops take the maintenance role (SET LOCAL ROLE, per transaction).
        await conn.execute("SET ROLE dataworkflows_maintenance")
        assert await count(conn, "executions") == 2, "the workers' maintenance scope sees every tenant"


async def one_run_each(client: AsyncTestClient[Any]) -> str:
    """A simple-echo run in each tenant; the name of a reporting role to create."""
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await create_active(client, A, raw)
    await create_active(client, B, raw)
    await execute(client, A, "simple-echo")
    await execute(client, B, "simple-echo")
    return f"reporter_{uuid.uuid4().hex[:8]}"


async def test_the_reporting_role_sees_the_tenants_it_is_granted(client: AsyncTestClient[Any], dsn: str) -> None:
    reporter = await one_run_each(client)

    async def visible(tenant: str) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"SET ROLE {reporter}")
            await conn.execute("SELECT set_config('dw.tenant_id', %s, false)", (tenant,))
            cur = await conn.execute("SELECT tenant_id, workflow_id FROM dw.v_executions ORDER BY 1")
            return await cur.fetchall()

    async def grant(tenant: str) -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute(
                "INSERT INTO dw.reporting_tenants (role_name, tenant_id) VALUES (%s, %s)", (reporter, tenant)
            )

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {reporter} NOLOGIN IN ROLE dw_reporting")
    try:
        assert await visible("acme") == [], "no grant: nothing, whatever tenant it names"
        await grant("acme")
        assert await visible("acme") == [("acme", "simple-echo")]
        assert await visible("globex") == [], "a tenant it was not granted"
        assert await visible("*") == [("acme", "simple-echo")], "'*' shows only what it was granted"
        await grant("*")
        assert await visible("*") == [("acme", "simple-echo"), ("globex", "simple-echo")]
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"SET ROLE {reporter}")
            for statement in (
                "SELECT * FROM dw.executions",
                "SELECT * FROM dw.connections",
                "SELECT * FROM dw.reporting_tenants",
                "INSERT INTO dw.reporting_tenants VALUES (current_user, 'globex')",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await conn.execute(statement)
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute("DELETE FROM dw.reporting_tenants WHERE role_name = %s", (reporter,))
            await admin.execute(f"DROP ROLE {reporter}")


async def test_a_reporting_logins_own_function_sees_no_row_the_view_hides(
    client: AsyncTestClient[Any], dsn: str
) -> None:
    """The views were plain views: a cheap function the caller's query named (a pg_temp one that
    raises a NOTICE with its argument) ran on every tenant's rows before the views' filter dropped
    them (auth review). As security barriers, the caller's function sees the rows the view shows
    only. v_queue_depth counts per tenant and is filtered like the rest."""
    reporter = await one_run_each(client)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {reporter} NOLOGIN IN ROLE dw_reporting")
        await admin.execute("INSERT INTO dw.reporting_tenants (role_name, tenant_id) VALUES (%s, 'acme')", (reporter,))
        cur = await admin.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'dw'::regnamespace AND c.relkind = 'v' "
            "AND c.relname LIKE 'v\\_%' ORDER BY 1"
        )
        views = [row[0] for row in await cur.fetchall()]
    assert "v_executions" in views and "v_queue_depth" in views
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            seen: list[str] = []
            conn.add_notice_handler(lambda notice: seen.append(notice.message_primary or ""))
            await conn.execute(f"SET ROLE {reporter}")
            await conn.execute(
                "CREATE FUNCTION pg_temp.peek(t text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 "
                "AS $f$ BEGIN RAISE NOTICE 'peek %', t; RETURN true; END $f$"
            )
            await conn.execute("SELECT set_config('dw.tenant_id', 'globex', false)")
            for view in views:
                cur = await conn.execute(f"SELECT count(*) FROM dw.{view} WHERE pg_temp.peek(tenant_id)")
                assert await cur.fetchone() == (0,), view
            assert seen == [], "a function of the caller's saw rows of a tenant it was not granted"
            await conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
            cur = await conn.execute("SELECT DISTINCT tenant_id FROM dw.v_queue_depth WHERE pg_temp.peek(tenant_id)")
            assert await cur.fetchall() == [("acme",)], "the queue counts only the granted tenant's jobs"
            assert set(seen) == {"peek acme"}
            # Dropped here, not left to the backend's exit: a DROP ROLE that came first (a loaded
            # machine) found the role still owning it.
            await conn.execute("DROP FUNCTION pg_temp.peek(text)")
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute("DELETE FROM dw.reporting_tenants WHERE role_name = %s", (reporter,))
            await admin.execute(f"DROP ROLE {reporter}")


async def test_a_reporting_login_cannot_ask_after_another_roles_grants(dsn: str) -> None:
    """dw.reporting_sees_v1 is SECURITY DEFINER and callable by every role (the views' row filter
    calls it with current_user): with another role's name, any login learned which tenants that
    role was granted (auth review). It now answers for the session's own roles only."""
    suffix = uuid.uuid4().hex[:8]
    granted, prober = f"granted_{suffix}", f"prober_{suffix}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {granted} LOGIN IN ROLE dw_reporting")
        await admin.execute(f"CREATE ROLE {prober} LOGIN IN ROLE dw_reporting")
        await admin.execute("INSERT INTO dw.reporting_tenants (role_name, tenant_id) VALUES (%s, 'acme')", (granted,))
    try:
        conninfo = psycopg.conninfo.make_conninfo(dsn, user=prober)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            cur = await conn.execute("SELECT dw.reporting_sees_v1(%s, 'acme'), current_user", (granted,))
            assert await cur.fetchone() == (False, prober)
        async with await psycopg.AsyncConnection.connect(
            psycopg.conninfo.make_conninfo(dsn, user=granted), autocommit=True
        ) as conn:
            cur = await conn.execute("SELECT dw.reporting_sees_v1(current_user, 'acme')")
            assert await cur.fetchone() == (True,), "its own grant still counts"
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute("DELETE FROM dw.reporting_tenants WHERE role_name = %s", (granted,))
            await admin.execute(f"DROP ROLE {granted}")
            await admin.execute(f"DROP ROLE {prober}")


async def test_a_reporting_query_ordered_by_time_takes_the_index(client: AsyncTestClient[Any], dsn: str) -> None:
    """The views were security barriers, planned apart from the query around them: `ORDER BY
    created_at DESC LIMIT 20` on dw.v_executions sorted every run of every tenant (2.3-2.8 s at
    322,000 runs, scale review). They now belong to dataworkflows_views, which the tables'
    row-level security keeps to the session's tenants, and are no barriers: the query reads the
    index in order and stops (no Sort). Every view but v_queue_depth (Procrastinate's tables have no
    tenant policies) is made so; a reporting login still reads the views only."""
    reporter = await one_run_each(client)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {reporter} NOLOGIN IN ROLE dw_reporting")
        await admin.execute("INSERT INTO dw.reporting_tenants (role_name, tenant_id) VALUES (%s, 'acme')", (reporter,))
        cur = await admin.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner),"
            " coalesce('security_barrier=true' = ANY (c.reloptions), false)"
            " FROM pg_class c WHERE c.relnamespace = 'dw'::regnamespace AND c.relkind = 'v'"
            " AND c.relname LIKE 'v\\_%' ORDER BY 1"
        )
        views = {name: (owner, barrier) for name, owner, barrier in await cur.fetchall()}
    assert views.pop("v_queue_depth")[1] is True
    assert views and set(views.values()) == {("dataworkflows_views", False)}, views
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"SET ROLE {reporter}")
            await conn.execute("SELECT set_config('dw.tenant_id', 'acme', false)")
            # A tiny table is scanned whole whatever the view; what differs is whether the view lets
            # the planner read an index in the query's order at all.
            await conn.execute("SET enable_seqscan = off")
            for view in ("v_executions", "v_dead_letters"):
                cur = await conn.execute(
                    f"EXPLAIN (COSTS OFF) SELECT * FROM dw.{view} ORDER BY created_at DESC LIMIT 20"
                )
                plan = "\n".join(str(row[0]) for row in await cur.fetchall())
                assert "Sort" not in plan and "Index" in plan, plan
                # dw.tenant_visible, given a body parsed once (0062), is still inlined.
                assert "tenant_visible(" not in plan and "CASE WHEN" in plan, plan
            cur = await conn.execute("SELECT tenant_id, workflow_id FROM dw.v_executions")
            assert await cur.fetchall() == [("acme", "simple-echo")]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("SELECT tenant_id FROM dw.executions")  # the views only
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute("DELETE FROM dw.reporting_tenants WHERE role_name = %s", (reporter,))
            await admin.execute(f"DROP ROLE {reporter}")


async def test_a_login_of_the_application_that_also_reports_sees_as_the_application(
    client: AsyncTestClient[Any], dsn: str
) -> None:
    """A review of the first form of migration 0062 (policies for dw_reporting on the tables): a role
    in both dataworkflows_app and dw_reporting saw nothing, in the views or the tables. The views'
    rows are what dw.tenant_visible says for the session's user, as before."""
    reporter = await one_run_each(client)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {reporter} NOLOGIN IN ROLE dw_reporting, dataworkflows_app")
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"SET ROLE {reporter}")
            await conn.execute("SELECT set_config('dw.tenant_id', 'acme', false)")
            cur = await conn.execute("SELECT tenant_id FROM dw.v_executions")
            assert await cur.fetchall() == [("acme",)]
            cur = await conn.execute("SELECT tenant_id FROM dw.v_workflow_health")
            assert {row[0] for row in await cur.fetchall()} == {"acme"}
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute(f"DROP ROLE {reporter}")


async def test_no_tenant_set_and_a_function_of_the_callers_path_show_nothing(
    client: AsyncTestClient[Any], dsn: str
) -> None:
    """Two holes a review of migration 0062 found: with no tenant set, dw.visible_tenants_v1 read the
    unset setting as '*' for a role with every tenant's rights (the maintenance role's view rows, by
    a function of its own, showed both tenants); and dw.tenant_visible's body, parsed where it was
    inlined, took pg_has_role from the caller's search_path (0018's: a login that could create one
    read every tenant it set)."""
    reporter = await one_run_each(client)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {reporter} NOLOGIN IN ROLE dw_reporting")
        await admin.execute(f"CREATE SCHEMA {reporter} AUTHORIZATION {reporter}")
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            seen: list[str] = []
            conn.add_notice_handler(lambda notice: seen.append(notice.message_primary or ""))
            await conn.execute("SET ROLE dataworkflows_maintenance")  # dw.tenant_id never set: NULL
            await conn.execute(
                "CREATE FUNCTION pg_temp.peek(t text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 "
                "AS $f$ BEGIN RAISE NOTICE 'peek %', t; RETURN true; END $f$"
            )
            for view in ("v_executions", "v_workflow_health", "v_node_durations"):
                cur = await conn.execute(f"SELECT count(*) FROM dw.{view} WHERE pg_temp.peek(tenant_id)")
                assert await cur.fetchone() == (0,), view
            assert seen == [], "no tenant set: no row"
            await conn.execute("DROP FUNCTION pg_temp.peek(text)")
            await conn.execute("RESET ROLE")
            await conn.execute(f"SET ROLE {reporter}")
            await conn.execute(
                f"CREATE FUNCTION {reporter}.pg_has_role(name, text) RETURNS boolean LANGUAGE sql AS 'SELECT true'"
            )
            await conn.execute(f"SET search_path = {reporter}, pg_catalog")
            await conn.execute("SELECT set_config('dw.tenant_id', 'acme', false)")
            cur = await conn.execute("SELECT count(*) FROM dw.v_executions")
            assert await cur.fetchone() == (0,), "a grant it does not have"
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute(f"DROP SCHEMA {reporter} CASCADE")
            await admin.execute(f"DROP ROLE {reporter}")


async def test_the_tenant_policy_is_an_index_condition(client: AsyncTestClient[Any], dsn: str) -> None:
    """The application role's policy is a plain equality (its '*' policy is the maintenance
    role's), so a tenant's listing is an index range, not a scan of every tenant's rows. Since
    migration 0032 the tenant it compares with is a sub-select, read once per statement (an InitPlan)."""
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await create_active(client, A, raw)
    await execute(client, A, "simple-echo")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await as_app(conn, "acme")
        await conn.execute("SET enable_seqscan = off")
        cur = await conn.execute("EXPLAIN SELECT id FROM dw.executions ORDER BY created_at DESC, id DESC LIMIT 20")
        plan = "\n".join(row[0] for row in await cur.fetchall())
    assert "Index Cond: (tenant_id = " in plan and "InitPlan" in plan, plan


async def test_a_pooled_connection_never_carries_a_tenant_to_its_next_user(
    client: AsyncTestClient[Any], dsn: str
) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await create_active(client, A, raw)
    run = uuid.UUID(await execute(client, A, "simple-echo"))
    pool = make_pool(dsn, min_size=1, max_size=1, name="one-connection")
    await pool.open(wait=True)
    try:
        db = Database(pool)  # one connection: every call below reuses it
        with tenant_scope("acme"):
            assert await db.executions.get(run) is not None
        with no_tenant():
            assert await db.executions.get(run) is None, "a task that names no tenant sees nothing"
        with tenant_scope("globex"):
            assert await db.executions.get(run) is None
        with tenant_scope("acme"):
            assert await db.executions.get(run) is not None
        with all_tenants():
            assert await db.executions.tenant_of(run) == "acme"
        with tenant_scope("globex"):
            assert await db.executions.tenant_of(run) is None, "the maintenance role is left with '*'"
    finally:
        await pool.close()


@pytest.mark.parametrize("planned_under", ["", "a-tenant-with-no-runs"])
async def test_a_plan_made_under_another_tenant_finds_a_run_by_its_key(
    db: Database, dsn: str, planned_under: str
) -> None:
    """Migration 0032. A connection keeps a procedure's generic plans for every tenant it later serves,
    and PostgreSQL estimated the tenant condition of a policy that called current_setting() with the
    tenant of the moment it planned: with none set (a worker's connection warming up) or one with no
    runs, "this tenant's runs" looked like a row, and an UPDATE of a run by its id went through the
    (tenant_id, created_at, id) index, reading all of the tenant's runs to find one. The policy's
    sub-select leaves the estimate to the column's statistics, so the primary key is the plan."""
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    for offset in range(0, 400, 50):
        await asyncio.gather(*(start(db, "simple-echo", {"userId": str(i)}) for i in range(offset, offset + 50)))
    with psycopg.connect(dsn, autocommit=True) as owner:
        owner.execute("ANALYZE dw.executions")
        execution_id = owner.execute("SELECT id FROM dw.executions LIMIT 1").fetchone()[0]  # type: ignore[index]
        owner.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(APP_ROLE)))
        owner.execute("SET plan_cache_mode = force_generic_plan")
        owner.execute("SELECT set_config('dw.tenant_id', %s, false)", (planned_under,))
        owner.execute("PREPARE touch(uuid) AS UPDATE dw.executions e SET lease_owner = e.lease_owner WHERE e.id = $1")
        explain = psycopg.sql.SQL("EXPLAIN EXECUTE touch({})").format(psycopg.sql.Literal(str(execution_id)))
        owner.execute(explain)  # planned now, and kept
        owner.execute("SELECT set_config('dw.tenant_id', 'default', false)")
        plan = "\n".join(r[0] for r in owner.execute(explain).fetchall())
    assert "executions_pkey" in plan, plan

"""Deleting a workflow (DELETE /api/v1/workflows/{id}, dw.delete_workflow_v1, `dataworkflows workflows
delete`; README "Workflow lifecycle"): everything that is the workflow's goes in one transaction,
refused while any run of it exists, and ordered against a start by the workflow's start lock."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.cli import EXIT_OK, EXIT_USAGE, cmd_workflows_delete
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.errors import WorkflowNotFound
from tests.conftest import load_fixture, publish, start
from tests.integration.cli_api import cli_command, served_api
from tests.integration.test_api import assert_problem
from tests.integration.test_auth_api import bearer, strict_settings
from tests.integration.test_retention import age, owner, prune
from tests.integration.test_runtime import echo, make_runtime, wf
from tests.integration.test_subworkflows import drain, execution, sub
from tests.integration.test_waits import sql

OPS = {"X-Principal-Id": "ops", "X-Principal-Type": "user"}
# The tables holding what is a workflow's own, and how each names it.
OWN = {
    "workflows": "SELECT count(*) FROM dw.workflows WHERE id = %s",
    "workflow_versions": "SELECT count(*) FROM dw.workflow_versions WHERE workflow_id = %s",
    "workflow_plans": "SELECT count(*) FROM dw.workflow_plans WHERE workflow_id = %s",
    "triggers": "SELECT count(*) FROM dw.triggers WHERE workflow_id = %s",
    "schedule_ticks": "SELECT count(*) FROM dw.schedule_ticks k JOIN dw.triggers t ON t.id = k.trigger_id"
    " WHERE t.workflow_id = %s",
    "webhook_deliveries": "SELECT count(*) FROM dw.webhook_deliveries d JOIN dw.triggers t ON t.id = d.trigger_id"
    " WHERE t.workflow_id = %s",
}
START = "SELECT execution_id FROM dw.start_execution_v1(%s, %s, '{}', 'tests', 'user', NULL, 'executions')"


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    key = base64.b64encode(b"k" * 32).decode()
    async with AsyncTestClient(create_app(Settings(database_url=dsn, credentials_key=key))) as test_client:
        yield test_client


def definition(workflow_id: str, message: str = "hello") -> dict[str, Any]:
    raw = load_fixture("bundle1/simple-echo-workflow.json") | {"id": workflow_id}
    raw["nodes"][0]["parameters"]["message"] = message
    return raw


async def counts(dsn: str, workflow_id: str) -> dict[str, int]:
    return {table: (await owner(dsn, query, workflow_id))[0][0] for table, query in OWN.items()}


async def allowed(client: AsyncTestClient[Any]) -> dict[str, list[str]]:
    return {c["name"]: c["allowedWorkflows"] for c in (await client.get("/api/v1/connections")).json()}


async def test_a_workflow_goes_with_everything_that_is_its_own(client: AsyncTestClient[Any], dsn: str) -> None:
    made = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=definition("gone"))
    assert made.status_code == 201, made.text
    assert (await client.put("/api/v1/workflows/gone", json=definition("gone", "v2"))).json()["version"] == 2
    assert (await client.post("/api/v1/workflows/gone/publish")).status_code == 200
    assert (await client.put("/api/v1/workflows/gone", json=definition("gone", "draft"))).json()["version"] == 3
    limits = await client.patch("/api/v1/workflows/gone/limits", json={"maxConcurrentExecutions": 2})
    assert limits.status_code == 200
    schedule = await client.post(
        "/api/v1/workflows/gone/triggers",
        json={"kind": "schedule", "name": "nightly", "config": {"cron": "0 2 * * *"}},
    )
    hook = await client.post(
        "/api/v1/workflows/gone/triggers", json={"kind": "webhook", "name": "inbox", "config": {"signature": "none"}}
    )
    assert (schedule.status_code, hook.status_code) == (201, 201), (schedule.text, hook.text)
    # A tick and a delivery that started nothing (a run would keep the workflow: below).
    await owner(
        dsn,
        "INSERT INTO dw.schedule_ticks (trigger_id, tick_at, fired_at) VALUES (%s, now(), now())",
        UUID(schedule.json()["id"]),
    )
    await owner(
        dsn,
        "INSERT INTO dw.webhook_deliveries (trigger_id, delivery_id, outcome, reason, status_code, body_bytes)"
        " VALUES (%s, 'd-1', 'refused', 'bad body', 400, 3)",
        UUID(hook.json()["id"]),
    )
    for name, allow in (("only-gone", ["gone"]), ("shared", ["gone", "kept"]), ("everyone", ["*"])):
        stored = await client.put(
            f"/api/v1/connections/{name}", json={"kind": "slack", "secret": "xoxb-1234", "allowedWorkflows": allow}
        )
        assert stored.status_code in (200, 201), stored.text
    assert (await client.post("/api/v1/workflows", json=definition("kept"))).status_code == 201
    assert await counts(dsn, "gone") == {
        "workflows": 1,
        "workflow_versions": 3,
        "workflow_plans": 2,
        "triggers": 2,
        "schedule_ticks": 1,
        "webhook_deliveries": 1,
    }

    deleted = await client.delete("/api/v1/workflows/gone", headers=OPS)
    assert deleted.status_code == 204 and deleted.content == b"", deleted.text
    assert set((await counts(dsn, "gone")).values()) == {0}
    assert await allowed(client) == {"everyone": ["*"], "only-gone": [], "shared": ["kept"]}
    assert (await client.get("/api/v1/workflows/kept")).status_code == 200, "another workflow stays"
    assert await counts(dsn, "kept") == dict.fromkeys(OWN, 0) | {"workflows": 1, "workflow_versions": 1}
    # Recorded: who deleted it, what it was, the last version it had.
    assert await owner(dsn, "SELECT workflow_id, last_version, created_by, deleted_by FROM dw.deleted_workflows") == [
        ("gone", 3, None, "ops")
    ]
    assert assert_problem(await client.get("/api/v1/workflows/gone"), 404)["code"] == "workflow_not_found"
    again = await client.delete("/api/v1/workflows/gone")
    assert assert_problem(again, 404)["code"] == "workflow_not_found"
    assert assert_problem(await client.delete("/api/v1/workflows/never"), 404)["code"] == "workflow_not_found"

    # Created again: nothing of the deleted one but its version numbers, which go on (a workflow and
    # version name one definition for good: workers cache plans by them).
    again_made = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=definition("gone"))
    assert again_made.status_code == 201, again_made.text
    body = again_made.json()
    assert (body["currentVersion"], body["latestVersion"], body["maxConcurrentExecutions"]) == (4, 4, None)
    assert [v["version"] for v in (await client.get("/api/v1/workflows/gone/versions")).json()] == [4]
    assert (await client.get("/api/v1/workflows/gone/triggers")).json() == []
    assert await allowed(client) == {"everyone": ["*"], "only-gone": [], "shared": ["kept"]}
    uses = definition("gone") | {"startNode": "post"}
    post = {"channel": "#c", "text": "x", "connection": "only-gone"}
    uses["nodes"] = [{"id": "post", "actionType": "slack.post-message", "parameters": post}]
    assert (await client.put("/api/v1/workflows/gone", json=uses)).status_code == 200
    refused = assert_problem(await client.post("/api/v1/workflows/gone/publish"), 422)
    assert refused["code"] == "connection_not_allowed", refused
    # A second deletion is recorded too, and numbering goes on from the latest.
    assert (await client.delete("/api/v1/workflows/gone")).status_code == 204
    assert await owner(dsn, "SELECT last_version FROM dw.deleted_workflows ORDER BY id") == [(3,), (5,)]
    assert (await client.post("/api/v1/workflows", json=definition("gone"))).json()["latestVersion"] == 6


async def test_a_workflow_with_runs_is_refused_until_they_are_pruned(
    client: AsyncTestClient[Any], db: Database, dsn: str
) -> None:
    made = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=definition("busy"))
    assert made.status_code == 201, made.text
    runs = []
    for request_id in ("r-1", "r-2"):
        started = await client.post("/api/v1/workflows/busy/execute", json={"trigger": {}, "requestId": request_id})
        assert started.status_code == 202, started.text
        runs.append(UUID(started.json()["executionId"]))

    refused = assert_problem(await client.delete("/api/v1/workflows/busy"), 409)
    assert (refused["code"], refused["executionCount"]) == ("workflow_has_executions", 2)
    assert "dataworkflows prune --workflow busy" in refused["detail"] and "audit log" in refused["detail"]
    assert (await counts(dsn, "busy"))["workflow_versions"] == 1, "nothing went"
    assert (await client.get("/api/v1/workflows/busy")).status_code == 200

    # Whatever their status: ended runs count until retention removes them.
    for run in runs:
        assert (await client.post(f"/api/v1/executions/{run}/cancel", json={})).status_code == 202
    assert assert_problem(await client.delete("/api/v1/workflows/busy"), 409)["executionCount"] == 2
    await age(dsn, runs[:1], 40)
    assert (await prune(db, 30, workflow_id="busy")).executions == 1
    assert assert_problem(await client.delete("/api/v1/workflows/busy"), 409)["executionCount"] == 1
    await age(dsn, runs[1:], 40)
    assert (await prune(db, 30, workflow_id="busy")).executions == 1
    assert (await client.delete("/api/v1/workflows/busy")).status_code == 204
    assert set((await counts(dsn, "busy")).values()) == {0}


async def test_another_tenants_workflow_is_not_found(client: AsyncTestClient[Any], dsn: str) -> None:
    acme, globex = {"X-Tenant-Id": "acme"}, {"X-Tenant-Id": "globex"}
    assert (await client.post("/api/v1/workflows", json=definition("shared"), headers=acme)).status_code == 201
    assert (await client.post("/api/v1/workflows", json=definition("shared"), headers=globex)).status_code == 201
    assert (await client.post("/api/v1/workflows", json=definition("acme-only"), headers=acme)).status_code == 201
    assert_problem(await client.delete("/api/v1/workflows/acme-only", headers=globex), 404)
    assert (await client.get("/api/v1/workflows/acme-only", headers=acme)).status_code == 200
    # A workflow of the same id in another tenant is that tenant's: only the caller's goes.
    assert (await client.delete("/api/v1/workflows/shared", headers=globex)).status_code == 204
    assert (await client.get("/api/v1/workflows/shared", headers=acme)).status_code == 200
    assert_problem(await client.get("/api/v1/workflows/shared", headers=globex), 404)
    assert await owner(dsn, "SELECT tenant_id, workflow_id FROM dw.deleted_workflows") == [("globex", "shared")]


async def test_strict_mode_an_author_deletes_only_its_own(dsn: str) -> None:
    settings = strict_settings(dsn)
    alice, bob, viewer, root = (
        bearer(settings, "alice", "author"),
        bearer(settings, "bob", "author"),
        bearer(settings, "vera", "viewer"),
        bearer(settings, "root", "admin"),
    )
    async with AsyncTestClient(create_app(settings)) as strict:
        for workflow_id in ("mine", "hers"):
            made = await strict.post("/api/v1/workflows", json=definition(workflow_id), headers=alice)
            assert made.status_code == 201, made.text
        assert_problem(await strict.delete("/api/v1/workflows/mine"), 401)
        assert assert_problem(await strict.delete("/api/v1/workflows/mine", headers=viewer), 403)["code"] == (
            "role_required"
        )
        problem = assert_problem(await strict.delete("/api/v1/workflows/mine", headers=bob), 403)
        assert problem["code"] == "not_owner" and "created by alice" in problem["detail"]
        assert assert_problem(await strict.delete("/api/v1/workflows/nope", headers=bob), 404)["code"] == (
            "workflow_not_found"
        )
        assert (await strict.delete("/api/v1/workflows/mine", headers=alice)).status_code == 204
        assert (await strict.delete("/api/v1/workflows/hers", headers=root)).status_code == 204
        assert (await strict.get("/api/v1/workflows", headers=viewer)).json()["items"] == []


async def test_a_start_in_flight_makes_the_delete_409(db: Database) -> None:
    """The start holds the workflow's start lock until it commits: the delete cannot count the runs
    before then (a lock_timeout proves that it waits, without a sleep), and then counts its run."""
    await publish(db, definition("raced"))
    async with db.connection() as starting, db.connection() as deleting:
        async with starting.transaction():
            await starting.execute(START, ("raced", "in-flight"))
            with pytest.raises(psycopg.errors.LockNotAvailable):
                async with deleting.transaction():
                    await deleting.execute("SET LOCAL lock_timeout = '100ms'")
                    await deleting.execute("SELECT * FROM dw.delete_workflow_v1('raced', 'tests')")
            # Waiting now, for the start's commit just below.
            waiting = asyncio.ensure_future(deleting.execute("SELECT * FROM dw.delete_workflow_v1('raced', 'tests')"))
        with pytest.raises(psycopg.Error, match="has 1 execution") as refused:
            await waiting
        assert refused.value.sqlstate == "DW008" and refused.value.diag.message_detail == "1"
    assert await sql(db, "SELECT count(*) FROM dw.executions") == [(1,)]
    assert await sql(db, "SELECT status FROM dw.workflows WHERE id = 'raced'") == [("Active",)]


async def test_a_delete_in_flight_makes_the_start_404(db: Database, client: AsyncTestClient[Any]) -> None:
    """The delete holds the start lock until it commits: a start waits for it, then finds no workflow
    (and starts nothing), as the API's 404 says."""
    await publish(db, definition("raced"))
    async with db.connection() as deleting, db.connection() as starting:
        async with deleting.transaction():
            await deleting.execute("SELECT * FROM dw.delete_workflow_v1('raced', 'tests')")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                async with starting.transaction():
                    await starting.execute("SET LOCAL lock_timeout = '100ms'")
                    await starting.execute(START, ("raced", "too-late"))
            waiting = asyncio.ensure_future(starting.execute(START, ("raced", "after")))
        with pytest.raises(psycopg.Error, match="workflow raced not found") as refused:
            await waiting
        assert refused.value.sqlstate == "DW001"
    assert await sql(db, "SELECT count(*) FROM dw.executions") == [(0,)]
    started = await client.post("/api/v1/workflows/raced/execute", json={"trigger": {}})
    assert assert_problem(started, 404)["code"] == "workflow_not_found"


async def test_a_delivery_holding_its_trigger_starts_its_run_before_the_delete(
    db: Database, client: AsyncTestClient[Any]
) -> None:
    """A webhook delivery (or a schedule's tick) holds its trigger's row while it starts a run, which
    takes the start lock: the delete locks the triggers before it takes that lock, so the two do not
    wait for each other (a deadlock, one of them refused), and the delivery's run makes the delete a
    409."""
    await publish(db, definition("hooked"))
    hook = await client.post(
        "/api/v1/workflows/hooked/triggers", json={"kind": "webhook", "name": "in", "config": {"signature": "none"}}
    )
    assert hook.status_code == 201, hook.text
    async with db.connection() as delivering, db.connection() as deleting:
        [(pid,)] = await (await deleting.execute("SELECT pg_backend_pid()")).fetchall()
        async with delivering.transaction():
            await delivering.execute("SELECT dw.lock_webhook_trigger_v1(%s, true)", (UUID(hook.json()["id"]),))
            waiting = asyncio.ensure_future(deleting.execute("SELECT * FROM dw.delete_workflow_v1('hooked', 'tests')"))
            # Until the delete waits for the trigger's row (a read of pg_locks each time, no sleep).
            for _ in range(10_000):
                await asyncio.sleep(0)
                held = await sql(db, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", pid)
                if held == [(1,)]:
                    break
            assert held == [(1,)], "the delete waits for the delivery's trigger row"
            await delivering.execute("SET LOCAL lock_timeout = '5s'")
            await delivering.execute(START, ("hooked", "hook:delivery"))
        with pytest.raises(psycopg.Error, match="has 1 execution") as refused:
            await waiting
        assert refused.value.sqlstate == "DW008"


async def test_an_event_holding_two_triggers_and_the_delete_do_not_deadlock(db: Database) -> None:
    """An event publish key-share locks its matching triggers in id order (dw.publish_event_v1); the
    delete locks the workflow's triggers in that order too. It locked them as its scan met them: a
    publish holding the first by id and waiting for the second, which the delete held while it waited
    for the first, deadlocked (one of them refused)."""
    await publish(db, definition("subscribed"))
    low, high = UUID(int=1), UUID(int=2**128 - 1)
    for trigger_id, name in ((high, "high"), (low, "low")):  # made in this order: a scan meets `high` first
        await sql(
            db,
            "INSERT INTO dw.triggers (id, workflow_id, kind, name, config, created_by) "
            "VALUES (%s, 'subscribed', 'event', %s, '{\"eventType\": \"*\"}', 'tests')",
            trigger_id,
            name,
        )

    async def waits(pid: int, task: asyncio.Future[Any]) -> None:
        # Until the statement waits for a lock, or is done (a read of pg_locks each time, no sleep).
        for _ in range(10_000):
            await asyncio.sleep(0)
            if task.done() or await sql(db, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", pid) == [
                (1,)
            ]:
                return
        raise AssertionError("it neither waited nor ended")

    async def published(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
        async with conn.transaction():
            await conn.execute("SELECT set_config('dw.tenant_id', 'default', true)")
            cur = await conn.execute(
                "SELECT outcome FROM dw.publish_event_v1('/s', 'e-1', 'order.created', NULL, NULL, '{}', 'ops', "
                "'executions')"
            )
            return await cur.fetchall()

    async with db.connection() as holding, db.connection() as deleting, db.connection() as publishing:
        [(deleter,)] = await (await deleting.execute("SELECT pg_backend_pid()")).fetchall()
        [(publisher,)] = await (await publishing.execute("SELECT pg_backend_pid()")).fetchall()
        async with holding.transaction():
            # Another event's publish, holding `low`.
            await holding.execute("SELECT 1 FROM dw.triggers WHERE id = %s FOR KEY SHARE", (low,))
            deleted = asyncio.ensure_future(
                deleting.execute("SELECT * FROM dw.delete_workflow_v1('subscribed', 'tests')")
            )
            await waits(deleter, deleted)
            publishing_task = asyncio.ensure_future(published(publishing))
            await waits(publisher, publishing_task)
        outcomes = await asyncio.gather(publishing_task, deleted, return_exceptions=True)
    assert not [o for o in outcomes if isinstance(o, psycopg.errors.DeadlockDetected)], outcomes
    started, refused = outcomes
    if started and started[0][0] is not None:
        # The publish came first: its runs make the delete a 409.
        assert [o for (o,) in started] == ["started", "started"], started
        assert isinstance(refused, psycopg.Error) and refused.sqlstate == "DW008", refused
    else:
        assert not isinstance(refused, BaseException), refused


async def test_a_trigger_created_while_its_workflow_is_deleted_is_not_found(db: Database) -> None:
    """The trigger's insert waits for the delete, then finds no workflow (it raised a foreign key
    violation, a 500, when the row was locked only by the key's check after the insert)."""
    await publish(db, definition("doomed"))
    async with db.connection() as deleting:
        async with deleting.transaction():
            await deleting.execute("SELECT * FROM dw.delete_workflow_v1('doomed', 'tests')")
            creating = asyncio.ensure_future(
                db.triggers.create(
                    workflow_id="doomed",
                    kind="schedule",
                    name="late",
                    enabled=True,
                    config={"cron": "0 2 * * *"},
                    principal="tests",
                    trigger_id=uuid4(),
                    secret=None,
                )
            )
            # Until the insert waits for the workflow's row (a read of pg_locks each time, no sleep).
            for _ in range(10_000):
                await asyncio.sleep(0)
                waiting = await sql(db, "SELECT count(*) FROM pg_locks WHERE NOT granted")
                if waiting == [(1,)]:
                    break
            assert waiting == [(1,)], "the trigger's insert waits for the delete"
        with pytest.raises(WorkflowNotFound):
            await creating
    assert await sql(db, "SELECT count(*) FROM dw.triggers") == [(0,)]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "moved"])
async def test_a_schedule_made_from_sql_while_its_workflow_is_deleted_is_not_found(
    db: Database, existing: bool
) -> None:
    """dw.schedule_v1 (psql's cron.schedule) waits for the delete, then says DW001 as for any unknown
    workflow, whether it makes a schedule or moves one of another workflow onto it (it read the
    workflow without a lock, and the foreign key's check after the insert raised a violation)."""
    await publish(db, definition("doomed"))
    if existing:
        await publish(db, definition("other"))
        await sql(db, "SELECT dw.schedule_v1('late', 'other', '0 2 * * *')")
    async with db.connection() as deleting, db.connection() as scheduling:
        [(pid,)] = await (await scheduling.execute("SELECT pg_backend_pid()")).fetchall()
        async with deleting.transaction():
            await deleting.execute("SELECT * FROM dw.delete_workflow_v1('doomed', 'tests')")
            waiting = asyncio.ensure_future(scheduling.execute("SELECT dw.schedule_v1('late', 'doomed', '0 3 * * *')"))
            # Until the schedule waits for the delete (a read of pg_locks each time, no sleep).
            for _ in range(10_000):
                await asyncio.sleep(0)
                held = await sql(db, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", pid)
                if held == [(1,)]:
                    break
            assert held == [(1,)], "the schedule waits for the delete"
        with pytest.raises(psycopg.Error, match="workflow doomed not found") as refused:
            await waiting
        assert refused.value.sqlstate == "DW001"
    expected = [("late", "other", "0 2 * * *")] if existing else []
    assert await sql(db, "SELECT name, workflow_id, config->>'cron' FROM dw.triggers") == expected


async def test_a_caller_of_a_deleted_workflow_fails_its_node_and_a_recreated_one_runs_its_own_plan(
    db: Database, client: AsyncTestClient[Any], dsn: str, conditions: ConditionPool
) -> None:
    """Another workflow's plan may call it (not refused: such a node fails child_workflow_not_found,
    as for any id that names no workflow). And a worker that ran the deleted workflow's version 1
    runs the recreated workflow's own plan: its versions are numbered on, so the worker's plan cache
    (by tenant, workflow, version) cannot hand it the deleted one's."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("child", echo("old", message="the deleted one")), conditions)
    await publish(db, wf("parent", sub("call", "child")), conditions)
    first = await start(db, "child")
    await drain(db, runtime)
    assert (await execution(db, first))["status"] == "Succeeded"
    await age(dsn, [first], 40)
    await prune(db, 30, workflow_id="child")

    assert (await client.delete("/api/v1/workflows/child")).status_code == 204
    orphan = await start(db, "parent")
    await drain(db, runtime)
    assert (await execution(db, orphan))["status"] == "Failed"
    [(error,)] = await sql(db, "SELECT error FROM dw.node_states WHERE execution_id = %s", orphan)
    assert error["code"] == "child_workflow_not_found", error

    await publish(db, wf("child", echo("new", message="the new one")), conditions)
    fresh = await start(db, "child")
    await drain(db, runtime)
    run = await execution(db, fresh)
    assert (run["status"], run["workflow_version"]) == ("Succeeded", 2)
    assert await sql(db, "SELECT node_id FROM dw.node_states WHERE execution_id = %s", fresh) == [("new",)]


async def test_the_delete_command(dsn: str, db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    await publish(db, definition("by-cli"))
    await publish(db, definition("has-runs"))
    await start(db, "has-runs")
    async with served_api(dsn) as url:
        run = cli_command(url, capsys, cmd_workflows_delete, "workflows", "delete")
        code, out, err = await run("by-cli")
        assert (code, err) == (EXIT_OK, ""), err
        # (The API's own log line, in this process, comes first.)
        assert out.splitlines()[-1].startswith("by-cli deleted, with its versions, plans and triggers"), out
        code, out, err = await run("by-cli")
        assert code == EXIT_USAGE and "HTTP 404: workflow by-cli not found" in err, err
        code, out, err = await run("has-runs")
        assert code == EXIT_USAGE
        assert "HTTP 409: workflow has-runs has 1 execution(s)" in err and "dataworkflows prune" in err, err


async def test_a_delete_between_a_creates_draft_and_its_publish_is_a_conflict(
    client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning's note: POST /workflows?autoActivate=true creates the Draft, then publishes it, in
    two transactions; a DELETE that landed between them made the create answer 404 (the publish
    found no workflow), a create request told its workflow was never there. It is a 409 saying
    what happened."""
    from dataworkflows.data.workflows import WorkflowData

    publish = WorkflowData.publish

    async def deleted_first(self: WorkflowData, **kwargs: Any) -> None:
        await self.delete(kwargs["workflow_id"], "someone-else")
        await publish(self, **kwargs)

    monkeypatch.setattr(WorkflowData, "publish", deleted_first)
    answer = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=definition("raced"))
    problem = assert_problem(answer, 409)
    assert "was deleted before its creation was answered" in problem["detail"], problem
    monkeypatch.setattr(WorkflowData, "publish", publish)
    assert (await client.get("/api/v1/workflows/raced")).status_code == 404
    again = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=definition("raced"))
    assert again.status_code == 201, again.text


async def test_a_create_whose_workflow_was_deleted_and_created_again_before_its_publish_is_a_conflict(
    client: AsyncTestClient[Any], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review of the 409 above: a DELETE and another create of the same id (a Draft of another
    definition) between a create's Draft and its publish made the publish store this create's plan
    for the other's version 1 and make it Active: the version said one definition and its runs ran
    another's plan. The publish is of the version the create wrote (its checksum), else a 409."""
    from dataworkflows.data.workflows import WorkflowData

    publish = WorkflowData.publish

    async def replaced_first(self: WorkflowData, **kwargs: Any) -> None:
        await self.delete(kwargs["workflow_id"], "someone-else")
        other = definition("replaced", message="theirs")
        await self.create(
            workflow_id="replaced",
            display_name="theirs",
            description=None,
            definition=other,
            checksum="sha256:theirs",
            principal="someone-else",
        )
        await publish(self, **kwargs)

    monkeypatch.setattr(WorkflowData, "publish", replaced_first)
    answer = await client.post(
        "/api/v1/workflows", params={"autoActivate": "true"}, json=definition("replaced", message="mine")
    )
    problem = assert_problem(answer, 409)
    assert "was deleted before its creation was answered" in problem["detail"], problem
    monkeypatch.setattr(WorkflowData, "publish", publish)
    # The other create's Draft is left as it was: a Draft, with no plan.
    read = (await client.get("/api/v1/workflows/replaced")).json()
    assert read["status"] == "Draft", read
    plans = await db.fetch_all("published_versions", ids=["replaced"], versions=[1])
    assert plans == []

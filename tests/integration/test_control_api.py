"""Control of executions over HTTP, with no worker running: cancel, suspend, resume, signals, waits
and approval decisions (sql/procedures/waits.sql behind api/executions.py and api/approvals.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.tenancy import tenant_scope
from tests.conftest import load_fixture
from tests.integration.test_api import assert_problem

OPS = {"X-Principal-Id": "ops"}


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(Settings(database_url=dsn, max_body_bytes=64 * 1024, max_trigger_depth=16, pool_max_size=25))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def start_run(client: AsyncTestClient[Any]) -> str:
    """A Pending run of simple-echo (echo1 Ready, echo2 Pending), with its run job queued."""
    if (await client.get("/api/v1/workflows/simple-echo")).status_code == 404:
        raw = load_fixture("bundle1/simple-echo-workflow.json")
        created = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
        assert created.status_code == 201, created.text
    started = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})
    assert started.status_code == 202, started.text
    return str(started.json()["executionId"])


async def sql(db: Database, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute(statement, params)
        return await cur.fetchall() if cur.description else []


async def queued_jobs(db: Database, execution_id: str) -> int:
    rows = await sql(
        db,
        "SELECT count(*) FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s AND status = 'todo'",
        execution_id,
    )
    return int(rows[0][0])


async def make_waiting(db: Database, execution_id: str, node_id: str = "echo1") -> None:
    """As a worker leaves a run whose node waits: the node Waiting on attempt 1, the run parked."""
    await sql(
        db,
        "UPDATE dw.node_states SET status = 'Waiting', attempts = 1, started_at = now() "
        "WHERE execution_id = %s AND node_id = %s",
        execution_id,
        node_id,
    )
    await sql(db, "UPDATE dw.executions SET status = 'Waiting', started_at = now() WHERE id = %s", execution_id)
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s", execution_id)


async def add_wait(db: Database, execution_id: str, kind: str, name: str | None, details: dict[str, Any]) -> str:
    rows = await sql(
        db,
        "INSERT INTO dw.waits (execution_id, node_id, attempt, kind, name, details) "
        "VALUES (%s, 'echo1', 1, %s, %s, %s::jsonb) RETURNING id",
        execution_id,
        kind,
        name,
        json.dumps(details),
    )
    return str(rows[0][0])


async def end_run(db: Database, execution_id: str, status: str = "Succeeded") -> None:
    await sql(
        db,
        "UPDATE dw.executions SET status = %s, started_at = now(), ended_at = now() WHERE id = %s",
        status,
        execution_id,
    )


# --- cancel --------------------------------------------------------------------------------------


def finished(workflow_id: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "dataworkflows_executions_finished_total", {"workflow_id": workflow_id, "status": status}
    )
    return value or 0.0


async def test_cancel_of_a_pending_run_ends_it_at_once(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    url = f"/api/v1/executions/{execution_id}"
    counted = finished("simple-echo", "Cancelled")
    cancelled = await client.post(f"{url}/cancel", json={"reason": "wrong customer"}, headers=OPS)
    assert cancelled.status_code == 202, cancelled.text
    # Ended here, so counted here (a worker counts the ends it makes; this one no worker saw).
    assert finished("simple-echo", "Cancelled") == counted + 1
    assert cancelled.json() == {"executionId": execution_id, "status": "Cancelled", "outcome": "cancelled"}

    execution = (await client.get(url)).json()
    assert execution["status"] == "Cancelled" and execution["endTime"] is not None
    assert [n["status"] for n in execution["nodes"]] == ["Skipped", "Skipped"]
    assert (execution["cancelRequestedBy"], execution["error"]["code"]) == ("ops", "cancelled")
    assert execution["cancelRequestedAt"] is not None
    assert "wrong customer" in execution["error"]["message"]
    events = (await client.get(f"{url}/events")).json()
    requested = next(e for e in events if e["type"] == "cancel_requested")
    assert requested["principal"] == "ops" and requested["details"]["reason"] == "wrong customer"
    assert events[-1]["type"] == "execution_cancelled"
    assert await queued_jobs(db, execution_id) == 0, "the run job has nothing left to do"

    # Idempotent: a second cancel (no body at all) changes nothing.
    again = await client.post(f"{url}/cancel")
    assert again.status_code == 202
    assert again.json()["outcome"] == "already_cancelled"
    assert finished("simple-echo", "Cancelled") == counted + 1, "counted once"
    listed = (await client.get("/api/v1/executions", params={"status": "Cancelled"})).json()["items"]
    assert [i["id"] for i in listed] == [execution_id] and listed[0]["cancelRequestedAt"] is not None


async def test_cancel_of_a_held_run_is_requested_once(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    await sql(
        db,
        "UPDATE dw.executions SET status = 'Running', started_at = now(), lease_owner = 'w1', lease_token = 1, "
        "lease_expires_at = now() + interval '1 minute' WHERE id = %s",
        execution_id,
    )
    url = f"/api/v1/executions/{execution_id}"
    first = await client.post(f"{url}/cancel", headers=OPS)
    assert (first.status_code, first.json()["status"], first.json()["outcome"]) == (202, "Running", "requested")
    second = await client.post(f"{url}/cancel", json={"reason": "again"})
    assert (second.status_code, second.json()["outcome"]) == (202, "already_requested")
    # A run being cancelled cannot be suspended.
    assert assert_problem(await client.post(f"{url}/suspend"), 409)["code"] == "conflict"
    execution = (await client.get(url)).json()
    assert (execution["status"], execution["cancelRequestedBy"]) == ("Running", "ops")


async def test_control_of_ended_and_unknown_runs(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    await end_run(db, execution_id)
    url = f"/api/v1/executions/{execution_id}"
    for action in ("cancel", "suspend", "resume"):
        body = assert_problem(await client.post(f"{url}/{action}"), 409)
        assert body["code"] == "execution_ended" and "Succeeded" in body["detail"]
        for unknown in (str(uuid.uuid4()), "not-a-uuid"):
            missing = assert_problem(await client.post(f"/api/v1/executions/{unknown}/{action}"), 404)
            assert missing["code"] == "execution_not_found"
    assert_problem(await client.post(f"{url}/cancel", json={"reason": "x" * 2001}), 400)
    assert_problem(await client.post(f"{url}/cancel", json={"why": "unknown field"}), 400)
    assert_problem(await client.post(f"{url}/cancel", json=["not", "an", "object"]), 400)
    assert_problem(await client.get(f"/api/v1/executions/{uuid.uuid4()}/waits"), 404)


# --- suspend and resume --------------------------------------------------------------------------


async def test_suspend_and_resume_a_pending_run(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    url = f"/api/v1/executions/{execution_id}"
    assert assert_problem(await client.post(f"{url}/resume"), 409)["code"] == "conflict", "not suspended"

    suspended = await client.post(f"{url}/suspend", json={"reason": "maintenance"}, headers=OPS)
    assert suspended.status_code == 202, suspended.text
    assert suspended.json() == {"executionId": execution_id, "status": "Suspended", "outcome": "suspended"}
    execution = (await client.get(url)).json()
    assert execution["status"] == "Suspended" and execution["suspendedAt"] is not None
    assert execution["suspendRequestedAt"] is not None
    again = await client.post(f"{url}/suspend")
    assert (again.status_code, again.json()["outcome"]) == (202, "already_suspended")
    listed = (await client.get("/api/v1/executions", params={"status": "Suspended"})).json()["items"]
    assert [i["id"] for i in listed] == [execution_id] and listed[0]["suspendedAt"] is not None
    assert (await client.get("/api/v1/executions", params={"status": "Pending"})).json()["items"] == []

    await sql(db, "DELETE FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s", execution_id)
    # A resume takes no body: a reason it would not keep, or a body that is not JSON, is refused and
    # resumes nothing.
    for bad in ({"reason": "why"}, ["x"]):
        assert_problem(await client.post(f"{url}/resume", json=bad, headers=OPS), 400)
    garbage = await client.post(
        f"{url}/resume", content=b"garbage", headers={**OPS, "Content-Type": "application/json"}
    )
    assert_problem(garbage, 400)
    assert (await client.get(url)).json()["status"] == "Suspended"
    resumed = await client.post(f"{url}/resume", headers=OPS)
    assert resumed.status_code == 202, resumed.text
    assert resumed.json() == {"executionId": execution_id, "status": "Pending", "outcome": "resumed"}
    assert await queued_jobs(db, execution_id) == 1, "resuming queues the run"
    execution = (await client.get(url)).json()
    assert (execution["status"], execution["suspendedAt"], execution["suspendRequestedAt"]) == ("Pending", None, None)
    types = [e["type"] for e in (await client.get(f"{url}/events")).json()]
    assert types[-3:] == ["suspend_requested", "execution_suspended", "execution_resumed"]
    assert assert_problem(await client.post(f"{url}/resume"), 409)["code"] == "conflict"

    # A Suspended run can be cancelled: nobody holds it.
    assert (await client.post(f"{url}/suspend")).json()["status"] == "Suspended"
    cancelled = await client.post(f"{url}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"]) == (202, "Cancelled")
    # Ended, it is no longer suspended (it kept suspendedAt and suspendRequestedAt); its events say
    # it was.
    ended = (await client.get(url)).json()
    assert (ended["status"], ended["suspendedAt"], ended["suspendRequestedAt"]) == ("Cancelled", None, None), ended
    types = [e["type"] for e in (await client.get(f"{url}/events")).json()]
    assert types.index("execution_suspended") < types.index("execution_cancelled") == len(types) - 1, types


async def test_list_refuses_an_unknown_status(client: AsyncTestClient[Any]) -> None:
    body = assert_problem(await client.get("/api/v1/executions", params={"status": "Paused"}), 400)
    assert "Suspended" in body["detail"]


# --- signals -------------------------------------------------------------------------------------


async def test_signal_is_buffered_then_duplicate(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    url = f"/api/v1/executions/{execution_id}/signals/order.paid"
    body = {"payload": {"amount": 12}, "signalId": "pay-1", "correlationKey": "order-7"}
    first = await client.post(url, json=body, headers=OPS)
    assert first.status_code == 202, first.text
    assert first.json() == {
        "signalId": "pay-1",
        "outcome": "buffered",
        "waitId": None,
        "nodeId": None,
        "executionStatus": "Pending",
    }
    second = await client.post(url, json=body)
    assert (second.status_code, second.json()["outcome"], second.json()["signalId"]) == (202, "duplicate", "pay-1")
    rows = await sql(
        db, "SELECT name, correlation_key, payload, sent_by FROM dw.signals WHERE execution_id = %s", execution_id
    )
    assert rows == [("order.paid", "order-7", {"amount": 12}, "ops")]

    # A number is a correlation key as its digits (a wait's key rendered from a number is).
    numeric = await client.post(url, json={"signalId": "pay-2", "correlationKey": 1003})
    assert numeric.status_code == 202, numeric.text
    keys = await sql(db, "SELECT correlation_key FROM dw.signals WHERE signal_id = 'pay-2'")
    assert keys == [("1003",)]
    assert_problem(await client.post(url, json={"signalId": "pay-3", "correlationKey": True}), 400)

    # Without a body: an empty payload and a generated signal id.
    bare = await client.post(f"/api/v1/executions/{execution_id}/signals/ping")
    assert bare.status_code == 202 and bare.json()["outcome"] == "buffered" and bare.json()["signalId"]


async def test_a_payload_that_is_no_object_is_refused_naming_the_payload(client: AsyncTestClient[Any]) -> None:
    """An array (or any other non-object) payload said "the request body: Expected `object`, got
    `array`", as if the body were the array; the detail names the payload, as the pointer does."""
    execution_id = await start_run(client)
    url = f"/api/v1/executions/{execution_id}/signals/order.paid"
    for payload, kind in (([1, 2], "array"), ("paid", "str")):
        problem = assert_problem(await client.post(url, json={"payload": payload}), 400)
        assert problem["detail"] == f"the request body at /payload: Expected `object`, got `{kind}`", problem
        assert [e["pointer"] for e in problem["errors"]] == ["/payload"]
    # The body itself an array: the body is what is wrong.
    whole = assert_problem(await client.post(url, json=[{"payload": {}}]), 400)
    assert whole["detail"] == "the request body: Expected `object | null`, got `array`", whole


async def test_a_signal_id_reused_for_another_signal_is_refused(client: AsyncTestClient[Any], db: Database) -> None:
    """A signalId names one signal: sent again with another name, payload or correlation key, it is a
    409 naming the difference, as a requestId reused for another trigger is; the first stays as it
    was. (It used to answer 202 'duplicate', the second signal silently dropped.)"""
    execution_id = await start_run(client)
    url = f"/api/v1/executions/{execution_id}/signals"
    body = {"payload": {"amount": 12}, "signalId": "pay-1", "correlationKey": "order-7"}
    assert (await client.post(f"{url}/order.paid", json=body)).status_code == 202
    for path, other, differs in (
        ("order.paid", {**body, "payload": {"amount": 13}}, "payload"),
        ("order.paid", {**body, "correlationKey": "order-8"}, "correlation key"),
        ("order.paid", {"payload": {"amount": 12}, "signalId": "pay-1"}, "correlation key"),
        ("order.shipped", body, "name"),
    ):
        refused = assert_problem(await client.post(f"{url}/{path}", json=other), 409)
        assert refused["code"] == "signal_id_reused", refused
        assert "pay-1" in refused["detail"] and differs in refused["detail"], refused
    # The same signal again (key order does not matter) is still the duplicate it always was.
    again = await client.post(f"{url}/order.paid", json={"correlationKey": "order-7", **body})
    assert (again.status_code, again.json()["outcome"]) == (202, "duplicate")
    rows = await sql(db, "SELECT name, correlation_key, payload FROM dw.signals WHERE execution_id = %s", execution_id)
    assert rows == [("order.paid", "order-7", {"amount": 12})]


async def test_bad_signals_are_refused(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    url = f"/api/v1/executions/{execution_id}/signals"
    assert_problem(await client.post(f"{url}/go", json={"payload": [1, 2]}), 400)
    assert_problem(await client.post(f"{url}/go", json={"payload": "text"}), 400)
    assert_problem(await client.post(f"{url}/go", json={"payload": {}, "extra": 1}), 400)
    assert_problem(await client.post(f"{url}/go", json={"signalId": "s" * 201}), 400)
    assert_problem(await client.post(f"{url}/go", json={"signalId": ""}), 400)
    assert_problem(await client.post(f"{url}/go", json={"correlationKey": "k" * 501}), 400)
    assert_problem(await client.post(f"{url}/go", json=[{"payload": {}}]), 400)
    deep: dict[str, Any] = {}
    for _ in range(20):
        deep = {"a": deep}
    assert "nested" in assert_problem(await client.post(f"{url}/go", json={"payload": deep}), 422)["detail"]
    for name in ("-go", "a" * 201, "with space", "é"):
        assert "signal name" in assert_problem(await client.post(f"{url}/{name}", json={}), 422)["detail"]
    assert await sql(db, "SELECT 1 FROM dw.signals") == []

    for unknown in (str(uuid.uuid4()), "nope"):
        missing = assert_problem(await client.post(f"/api/v1/executions/{unknown}/signals/go", json={}), 404)
        assert missing["code"] == "execution_not_found"

    await end_run(db, execution_id, "Failed")
    ended = assert_problem(await client.post(f"{url}/go", json={"signalId": "late"}), 409)
    assert ended["code"] == "execution_ended"


async def test_concurrent_copies_of_a_signal_are_one_signal(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    url = f"/api/v1/executions/{execution_id}/signals/approved"
    body = {"payload": {"ok": True}, "signalId": "once"}
    responses = await asyncio.gather(*(client.post(url, json=body) for _ in range(20)))
    assert {r.status_code for r in responses} == {202}
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["buffered"] + ["duplicate"] * 19
    assert await sql(db, "SELECT count(*) FROM dw.signals WHERE execution_id = %s", execution_id) == [(1,)]


async def test_signal_consumed_by_a_waiting_node(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    await make_waiting(db, execution_id)
    wait_id = await add_wait(db, execution_id, "signal", "order.paid", {})
    url = f"/api/v1/executions/{execution_id}"

    waits = (await client.get(f"{url}/waits")).json()
    assert [(w["id"], w["kind"], w["state"], w["name"], w["nodeId"]) for w in waits] == [
        (wait_id, "signal", "open", "order.paid", "echo1")
    ]
    other = await client.post(f"{url}/signals/order.shipped", json={"signalId": "s-0"})
    assert other.json()["outcome"] == "buffered", "another name is not what it waits for"
    consumed = await client.post(f"{url}/signals/order.paid", json={"payload": {"amount": 5}, "signalId": "s-1"})
    assert consumed.status_code == 202, consumed.text
    assert consumed.json() == {
        "signalId": "s-1",
        "outcome": "consumed",
        "waitId": wait_id,
        "nodeId": "echo1",
        "executionStatus": "Waiting",
    }
    assert await queued_jobs(db, execution_id) == 1, "the parked run is woken"
    duplicate = (
        await client.post(f"{url}/signals/order.paid", json={"payload": {"amount": 5}, "signalId": "s-1"})
    ).json()
    assert (duplicate["outcome"], duplicate["waitId"], duplicate["nodeId"]) == ("duplicate", wait_id, "echo1")

    wait = (await client.get(f"{url}/waits")).json()[0]
    assert (wait["state"], wait["consumedBy"]) == ("received", "signal:s-1")
    assert wait["consumedAt"] is not None and wait["result"]["payload"] == {"amount": 5}
    assert wait["attempt"] == 1 and wait["createdAt"] and wait["details"] == {}


async def test_the_waits_of_several_runs_in_one_request(client: AsyncTestClient[Any], db: Database) -> None:
    """GET /api/v1/waits: the console's waiting page asked each of up to 100 runs for its waits."""
    first, second, idle = [await start_run(client) for _ in range(3)]
    for execution_id in (first, second):
        await make_waiting(db, execution_id)
    paid = await add_wait(db, first, "signal", "order.paid", {})
    timer = str(
        (
            await sql(
                db,
                "INSERT INTO dw.waits (execution_id, node_id, attempt, kind, details, due_at, state, consumed_at) "
                "VALUES (%s, 'echo1', 1, 'timer', '{}', now(), 'fired', now()) RETURNING id",
                second,
            )
        )[0][0]
    )
    later = await add_wait(db, second, "signal", "order.shipped", {})
    # Another tenant's run and its wait: never listed to this caller, whichever id it names.
    other = {"X-Principal-Id": "ops", "X-Tenant-Id": "other"}
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    created = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw, headers=other)
    assert created.status_code == 201, created.text
    theirs = (await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}, headers=other)).json()
    with tenant_scope("other"):
        await add_wait(db, theirs["executionId"], "signal", "x", {})
    ids = [first, second, idle, theirs["executionId"], str(uuid.uuid4()), first]
    everything = await client.get("/api/v1/waits", params={"executionId": ids})
    assert everything.status_code == 200, everything.text
    by_run = sorted((w["executionId"], w["id"], w["state"]) for w in everything.json())
    assert by_run == sorted([(first, paid, "open"), (second, timer, "fired"), (second, later, "open")])
    opened = (await client.get("/api/v1/waits", params={"executionId": ids, "state": "open"})).json()
    assert sorted(w["id"] for w in opened) == sorted([paid, later])
    assert opened[0].keys() >= {"executionId", "nodeId", "kind", "name", "state", "dueAt", "expiresAt"}
    limited = await client.get("/api/v1/waits", params={"executionId": [second], "limit": 1})
    assert [w["id"] for w in limited.json()] == [timer], "oldest first, at most `limit`"
    assert limited.headers["X-More-Waits"] == "true", "cut at the limit: said"
    assert "X-More-Waits" not in everything.headers
    # In the order the executions are named: past the limit, the last ones named go without.
    ordered = (await client.get("/api/v1/waits", params={"executionId": [second, first], "limit": 2})).json()
    assert [w["executionId"] for w in ordered] == [second, second]
    mine = (await client.get("/api/v1/waits", params={"executionId": [theirs["executionId"]]}, headers=other)).json()
    assert [w["name"] for w in mine] == ["x"]

    # Bad input: 400s that say what is wrong.
    for params, says in (
        ({}, "executionId"),
        ({"executionId": "not-a-uuid"}, "executionId"),
        ({"executionId": [str(uuid.uuid4()) for _ in range(101)]}, "at most 100"),
        ({"executionId": first, "state": "closed"}, "state"),
        ({"executionId": first, "limit": "0"}, "limit"),
    ):
        answer = await client.get("/api/v1/waits", params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert says in answer.text, (params, answer.text)


# --- approvals -----------------------------------------------------------------------------------

APPROVAL = {
    "approvers": ["alice", "bob", "carol"],
    "required": 2,
    "quorum": 2,
    "title": "Refund 120 EUR",
    "description": "Order 7",
}


async def test_approvals_without_any(client: AsyncTestClient[Any]) -> None:
    listed = await client.get("/api/v1/approvals")
    assert (listed.status_code, listed.json()) == (200, [])
    assert (await client.get("/api/v1/approvals", params={"status": "all", "principal": "alice"})).json() == []
    unknown_status = assert_problem(await client.get("/api/v1/approvals", params={"status": "closed"}), 400)
    assert "open, all" in unknown_status["detail"]
    assert_problem(await client.get("/api/v1/approvals", params={"executionId": "nope"}), 400)
    assert_problem(await client.get("/api/v1/approvals", params={"limit": 0}), 400)
    assert_problem(await client.get("/api/v1/approvals", params={"principal": "p" * 201}), 400)
    for unknown in (str(uuid.uuid4()), "nope"):
        assert_problem(await client.get(f"/api/v1/approvals/{unknown}"), 404)
        decided = await client.post(
            f"/api/v1/approvals/{unknown}/decision", json={"decision": "approve"}, headers={"X-Principal-Id": "alice"}
        )
        assert assert_problem(decided, 404)["code"] == "not_found"


async def test_approval_decisions(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    await make_waiting(db, execution_id)
    approval_id = await add_wait(db, execution_id, "approval", "refund", APPROVAL)
    url = f"/api/v1/approvals/{approval_id}"

    listed = (await client.get("/api/v1/approvals")).json()
    assert [a["id"] for a in listed] == [approval_id]
    approval = listed[0]
    assert (approval["executionId"], approval["workflowId"], approval["nodeId"]) == (
        execution_id,
        "simple-echo",
        "echo1",
    )
    assert (approval["state"], approval["title"], approval["description"]) == ("open", "Refund 120 EUR", "Order 7")
    assert (approval["approvers"], approval["required"], approval["quorum"]) == (["alice", "bob", "carol"], 2, 2)
    assert (approval["decidedAt"], approval["result"], approval["decisions"]) == (None, None, [])
    assert [a["id"] for a in (await client.get("/api/v1/approvals", params={"principal": "bob"})).json()] == [
        approval_id
    ]
    assert (await client.get("/api/v1/approvals", params={"principal": "mallory"})).json() == []
    by_run = await client.get("/api/v1/approvals", params={"executionId": execution_id})
    assert [a["id"] for a in by_run.json()] == [approval_id]
    assert (await client.get("/api/v1/approvals", params={"executionId": str(uuid.uuid4())})).json() == []

    def decide(who: str | None, decision: str = "approve", comment: str | None = None) -> Any:
        headers = {"X-Principal-Id": who} if who else {}
        body = {"decision": decision} | ({"comment": comment} if comment else {})
        return client.post(f"{url}/decision", json=body, headers=headers)

    assert assert_problem(await decide("mallory"), 403)["code"] == "forbidden"
    assert "X-Principal-Id" in assert_problem(await decide(None), 401)["detail"]
    assert_problem(await decide("alice", "maybe"), 400)
    assert_problem(await decide("alice", comment="c" * 4001), 400)
    assert_problem(await client.post(f"{url}/decision", json={}, headers={"X-Principal-Id": "alice"}), 400)

    first = await decide("alice", comment="fine by me")
    assert first.status_code == 200, first.text
    assert first.json() == {
        "approvalId": approval_id,
        "executionId": execution_id,
        "nodeId": "echo1",
        "state": "open",
        "approvals": 1,
        "rejections": 0,
        "required": 2,
    }
    assert await queued_jobs(db, execution_id) == 0, "still open: the run sleeps on"
    assert assert_problem(await decide("alice", "reject"), 409)["code"] == "conflict"
    # What alice may decide no longer lists what she decided (a second decision is that 409); bob's
    # still does, and the history (status=all) keeps it for her.
    mine = {"principal": "alice"}
    assert (await client.get("/api/v1/approvals", params=mine)).json() == []
    assert [a["id"] for a in (await client.get("/api/v1/approvals", params={"principal": "bob"})).json()] == [
        approval_id
    ]
    history = (await client.get("/api/v1/approvals", params={**mine, "status": "all"})).json()
    assert [a["id"] for a in history] == [approval_id]
    second = await decide("bob")
    assert second.status_code == 200
    assert (second.json()["state"], second.json()["approvals"]) == ("approved", 2)
    assert await queued_jobs(db, execution_id) == 1, "decided: the run is woken"
    late = assert_problem(await decide("carol"), 409)
    assert "approved" in late["detail"]

    approval = (await client.get(url)).json()
    assert (approval["state"], approval["decidedAt"] is not None) == ("approved", True)
    assert [(d["principal"], d["decision"], d.get("comment")) for d in approval["decisions"]] == [
        ("alice", "approve", "fine by me"),
        ("bob", "approve", None),
    ]
    assert approval["result"]["decision"] == "approved"
    assert (await client.get("/api/v1/approvals")).json() == []
    assert [a["state"] for a in (await client.get("/api/v1/approvals", params={"status": "all"})).json()] == [
        "approved"
    ]
    events = (await client.get(f"/api/v1/executions/{execution_id}/events")).json()
    decided = [(e["principal"], e["details"]["decision"]) for e in events if e["type"] == "approval_decided"]
    assert decided == [("alice", "approve"), ("bob", "approve")]
    wait = (await client.get(f"/api/v1/executions/{execution_id}/waits")).json()[0]
    assert (wait["kind"], wait["state"], wait["consumedBy"]) == ("approval", "approved", "approval")


async def test_approvals_page_through_a_link_and_none_is_cut_without_a_word(
    client: AsyncTestClient[Any], db: Database
) -> None:
    """Past `limit` (100 by default) the rest were cut without a word, and past 500 could not be
    listed at all. The body stays a bare list; the next page is a Link header, as the events'."""
    made = []
    for _ in range(5):
        execution_id = await start_run(client)
        await make_waiting(db, execution_id)
        made.append(await add_wait(db, execution_id, "approval", None, APPROVAL))
    # Two at the same instant: the id orders them.
    await sql(
        db, "UPDATE dw.waits SET created_at = (SELECT min(created_at) FROM dw.waits) WHERE id = ANY(%s)", made[:2]
    )
    seen: list[str] = []
    url: str | None = "/api/v1/approvals?limit=2&principal=alice"
    pages = 0
    while url is not None:
        answer = await client.get(url)
        assert answer.status_code == 200, answer.text
        seen += [a["id"] for a in answer.json()]
        url = answer.links.get("next", {}).get("url")
        pages += 1
        assert pages <= 5
    assert pages == 3 and sorted(seen) == sorted(made) and len(set(seen)) == 5
    listed = (await client.get("/api/v1/approvals", params={"principal": "alice"})).json()
    assert [a["id"] for a in listed] == seen, "the pages in the one list's order, newest first"
    assert "link" not in (await client.get("/api/v1/approvals", params={"limit": 5})).headers


async def test_a_rejection_that_leaves_too_few_approvers_rejects(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    await make_waiting(db, execution_id)
    approval_id = await add_wait(
        db, execution_id, "approval", None, {"approvers": ["alice", "bob"], "required": 2, "quorum": "all"}
    )
    rejected = await client.post(
        f"/api/v1/approvals/{approval_id}/decision",
        json={"decision": "reject", "comment": "no"},
        headers={"X-Principal-Id": "bob"},
    )
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["state"], rejected.json()["rejections"]) == ("rejected", 1)
    approval = (await client.get(f"/api/v1/approvals/{approval_id}")).json()
    assert (approval["state"], approval["title"], approval["quorum"]) == ("rejected", None, "all")


async def test_a_wait_past_its_timeout_takes_no_signal_and_no_decision(
    client: AsyncTestClient[Any], db: Database
) -> None:
    """A review's finding: with no worker to time the wait out (the run Suspended, or parked and its
    waker late), a signal or an approval that came after the timeout was taken, and the run went on
    along its success edge."""
    # A signal, on a parked run: the wait times out here, the run is woken for its failure edge, and
    # the signal is kept for a wait to come.
    execution_id = await start_run(client)
    await make_waiting(db, execution_id)
    wait_id = await add_wait(db, execution_id, "signal", "go", {})
    await sql(db, "UPDATE dw.waits SET expires_at = now() - interval '1 second' WHERE id = %s", wait_id)
    late = await client.post(f"/api/v1/executions/{execution_id}/signals/go", json={"payload": {"late": True}})
    assert late.status_code == 202, late.text
    assert (late.json()["outcome"], late.json()["waitId"]) == ("buffered", None)
    [wait] = (await client.get(f"/api/v1/executions/{execution_id}/waits")).json()
    assert (wait["state"], wait["result"]["code"]) == ("timed_out", "wait_timeout")
    assert await queued_jobs(db, execution_id) == 1, "woken to follow the timeout"
    # Suspended: timed out all the same, and the run stays put until it is resumed.
    suspended = await start_run(client)
    await make_waiting(db, suspended)
    await sql(db, "UPDATE dw.executions SET status = 'Suspended', suspended_at = now() WHERE id = %s", suspended)
    held = await add_wait(db, suspended, "signal", "go", {})
    await sql(db, "UPDATE dw.waits SET expires_at = now() - interval '1 second' WHERE id = %s", held)
    assert (await client.post(f"/api/v1/executions/{suspended}/signals/go", json={})).json()["outcome"] == "buffered"
    assert (await client.get(f"/api/v1/executions/{suspended}/waits")).json()[0]["state"] == "timed_out"
    assert await queued_jobs(db, suspended) == 0
    # An approval past its timeout: refused (409), and no decision kept.
    approval_run = await start_run(client)
    await make_waiting(db, approval_run)
    approval_id = await add_wait(db, approval_run, "approval", None, APPROVAL)
    await sql(db, "UPDATE dw.waits SET expires_at = now() - interval '1 second' WHERE id = %s", approval_id)
    refused = await client.post(
        f"/api/v1/approvals/{approval_id}/decision", json={"decision": "approve"}, headers={"X-Principal-Id": "alice"}
    )
    body = assert_problem(refused, 409)
    assert "expired" in body["detail"], body
    approval = (await client.get(f"/api/v1/approvals/{approval_id}")).json()
    assert (approval["state"], approval["decisions"]) == ("open", [])
    # Before its timeout, a decision counts as ever.
    await sql(db, "UPDATE dw.waits SET expires_at = now() + interval '1 hour' WHERE id = %s", approval_id)
    taken = await client.post(
        f"/api/v1/approvals/{approval_id}/decision", json={"decision": "approve"}, headers={"X-Principal-Id": "alice"}
    )
    assert taken.status_code == 200, taken.text


async def test_cancel_withdraws_open_waits(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    await make_waiting(db, execution_id)
    approval_id = await add_wait(db, execution_id, "approval", None, APPROVAL)
    cancelled = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=OPS)
    assert cancelled.json()["status"] == "Cancelled"
    withdrawn = (await client.get(f"/api/v1/approvals/{approval_id}")).json()
    # Nobody decided it: no decision time (it showed the withdrawal's), but when it closed.
    assert (withdrawn["state"], withdrawn["decidedAt"], withdrawn["decisions"]) == ("withdrawn", None, []), withdrawn
    assert withdrawn["closedAt"] is not None, withdrawn
    late = await client.post(
        f"/api/v1/approvals/{approval_id}/decision", json={"decision": "approve"}, headers={"X-Principal-Id": "alice"}
    )
    assert assert_problem(late, 409)["code"] == "conflict"


# --- principals and the OpenAPI document ---------------------------------------------------------


async def test_control_requires_a_principal_when_the_server_does(dsn: str, db: Database) -> None:
    async with AsyncTestClient(create_app(Settings(database_url=dsn, require_principal=True))) as strict:
        execution_id = await start_run_as(strict)
        url = f"/api/v1/executions/{execution_id}"
        for path in ("cancel", "suspend", "resume", "signals/go"):
            body = assert_problem(await strict.post(f"{url}/{path}", json={}), 401)
            assert "X-Principal-Id" in body["detail"]
        approval_id = await add_wait(db, execution_id, "approval", None, APPROVAL)
        assert_problem(
            await strict.post(f"/api/v1/approvals/{approval_id}/decision", json={"decision": "approve"}), 401
        )
        assert (await strict.get("/api/v1/approvals")).status_code == 200, "reading needs no principal"
        ok = await strict.post(f"{url}/suspend", json={}, headers=OPS)
        assert (ok.status_code, ok.json()["outcome"]) == (202, "suspended")


async def start_run_as(client: AsyncTestClient[Any]) -> str:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    created = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw, headers=OPS)
    assert created.status_code == 201, created.text
    started = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}, headers=OPS)
    assert started.status_code == 202, started.text
    return str(started.json()["executionId"])


async def test_openapi_documents_the_control_routes(client: AsyncTestClient[Any]) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for path in ("cancel", "suspend", "resume", "signals/{name}"):
        responses = paths[f"/api/v1/executions/{{execution_id}}/{path}"]["post"]["responses"]
        assert {"202", "400", "404", "409"} <= set(responses)
    decision = paths["/api/v1/approvals/{approval_id}/decision"]["post"]["responses"]
    assert {"200", "401", "403", "404", "409"} <= set(decision)
    assert "application/problem+json" in decision["403"]["content"]
    assert "/api/v1/executions/{execution_id}/waits" in paths
    listed = paths["/api/v1/approvals"]["get"]["parameters"]
    assert {"principal", "status", "executionId", "limit"} <= {p["name"] for p in listed}


async def test_an_execution_read_carries_the_runs_outputs(client: AsyncTestClient[Any], db: Database) -> None:
    execution_id = await start_run(client)
    assert (await client.get(f"/api/v1/executions/{execution_id}")).json()["outputs"] is None
    await sql(db, "UPDATE dw.executions SET outputs = '{\"total\": 5}' WHERE id = %s", uuid.UUID(execution_id))
    assert (await client.get(f"/api/v1/executions/{execution_id}")).json()["outputs"] == {"total": 5}


async def test_a_decided_approval_keeps_its_decision_time_when_the_run_ends(
    client: AsyncTestClient[Any], db: Database
) -> None:
    """Approved while the run was suspended, then cancelled: the approval said it was decided when the
    run was cancelled, and its wait that the run's end had consumed it (composition review)."""
    execution_id = await start_run(client)
    await make_waiting(db, execution_id)
    await sql(db, "UPDATE dw.executions SET status = 'Suspended', suspended_at = now() WHERE id = %s", execution_id)
    approval_id = await add_wait(db, execution_id, "approval", None, APPROVAL)
    for approver in ("alice", "bob"):  # its quorum is 2
        decided = await client.post(
            f"/api/v1/approvals/{approval_id}/decision",
            json={"decision": "approve"},
            headers={"X-Principal-Id": approver},
        )
        assert decided.status_code == 200, decided.text
    before = (await client.get(f"/api/v1/approvals/{approval_id}")).json()
    assert before["state"] == "approved" and before["decidedAt"]
    await asyncio.sleep(0.05)
    cancelled = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=OPS)
    assert cancelled.json()["status"] == "Cancelled", cancelled.text
    after = (await client.get(f"/api/v1/approvals/{approval_id}")).json()
    assert (after["state"], after["decidedAt"]) == ("withdrawn", before["decidedAt"]), after
    assert after["closedAt"] == before["closedAt"] == before["decidedAt"], (before, after)
    [wait] = (await client.get(f"/api/v1/executions/{execution_id}/waits")).json()
    assert wait["state"] == "withdrawn" and wait["consumedBy"] != "run_ended", wait
    events = await sql(
        db, "SELECT count(*) FROM dw.execution_events WHERE execution_id = %s AND type = 'wait_withdrawn'", execution_id
    )
    assert events == [(1,)]


async def test_a_run_says_which_worker_holds_it(client: AsyncTestClient[Any], db: Database) -> None:
    """A Running run that its worker handed back (shutdown) looked exactly like one a worker runs:
    the run says which worker holds it, and until when, and null when none does."""
    execution_id = await start_run(client)
    read = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    assert (read["status"], read["worker"], read["leaseExpiresAt"]) == ("Pending", None, None)
    with tenant_scope("default"):
        row = await db.fetch_one(
            "acquire_run", id=uuid.UUID(execution_id), owner="host/42/w1", lease_seconds=30, start=True
        )
    assert row is not None
    held = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    assert (held["status"], held["worker"]) == ("Running", "host/42/w1"), held
    assert held["leaseExpiresAt"] > held["startTime"], held
    with tenant_scope("default"):
        released = await db.fetch_one(
            "release_execution",
            id=uuid.UUID(execution_id),
            token=int(row["lease_token"]),
            queue="executions",
            reason="shutdown",
        )
    assert released is not None and released["released"], released
    handed_back = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    assert (handed_back["status"], handed_back["worker"], handed_back["leaseExpiresAt"]) == ("Running", None, None)

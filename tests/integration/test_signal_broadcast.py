"""POST /api/v1/signals/{name} (README "Signals to every run that waits"): a signal by name and
correlation key reaches every run whose signal wait expects it, without the sender knowing the runs.
The runs are run in-process to their waits, the signal sent through the API, the runs resumed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from tests.conftest import load_fixture, publish, start
from tests.integration.test_api import assert_problem
from tests.integration.test_control_api import sql
from tests.integration.test_runtime import make_runtime

OPS = {"X-Principal-Id": "ops"}


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(Settings(database_url=dsn, max_trigger_depth=16))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def waiting_orders(db: Database, conditions: ConditionPool, *orders: str | int) -> dict[str, UUID]:
    """A run of order-payment per order, each run by the runtime to its payment wait (parked)."""
    runtime = make_runtime(db, conditions)
    raw = load_fixture("bundle5/order-payment-workflow.json")
    await publish(db, raw, conditions)
    runs = {}
    for order in orders:
        execution_id = await start(db, "order-payment", {"orderId": order, "timeout": "PT1H"})
        assert await runtime.run_execution(execution_id) == "parked"
        runs[str(order)] = execution_id
    return runs


async def test_a_signal_by_key_reaches_the_runs_waiting_for_that_key_only(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    runs = await waiting_orders(db, conditions, "A-1", "A-2", 1003)
    body = {"correlationKey": "A-2", "payload": {"amount": 40}, "signalId": "pay-A-2"}
    sent = await client.post("/api/v1/signals/payment", json=body, headers=OPS)
    assert sent.status_code == 200, sent.text
    answer = sent.json()
    assert answer["signalId"] == "pay-A-2" and answer["remaining"] == 0
    assert [(d["executionId"], d["workflowId"], d["outcome"], d["nodeId"]) for d in answer["deliveries"]] == [
        (str(runs["A-2"]), "order-payment", "consumed", "payment")
    ]
    runtime = make_runtime(db, conditions)
    assert await runtime.run_execution(runs["A-2"]) == "Succeeded"
    shipped = (await client.get(f"/api/v1/executions/{runs['A-2']}")).json()
    ship = next(n for n in shipped["nodes"] if n["nodeId"] == "ship")
    assert ship["outputs"] == {"echo": "shipping order A-2, paid 40"}
    # The others still wait; a number is a key as its digits.
    numeric = await client.post("/api/v1/signals/payment", json={"correlationKey": 1003, "payload": {"amount": 1}})
    assert [d["executionId"] for d in numeric.json()["deliveries"]] == [str(runs["1003"])]
    assert numeric.json()["signalId"]  # generated

    # The same signal again: nothing is waiting for it any more.
    again = await client.post("/api/v1/signals/payment", json=body, headers=OPS)
    assert again.status_code == 200 and again.json() == {"signalId": "pay-A-2", "deliveries": [], "remaining": 0}
    events = (await client.get(f"/api/v1/executions/{runs['A-2']}/events")).json()
    received = [e for e in events if e["type"] == "signal_received"]
    assert [(e["principal"], e["details"]["signalId"]) for e in received] == [("ops", "pay-A-2")]


async def test_a_limit_leaves_the_rest_for_the_same_signal_sent_again(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    await waiting_orders(db, conditions, "B", "B", "B")
    body = {"correlationKey": "B", "signalId": "pay-B", "limit": 2}
    first = (await client.post("/api/v1/signals/payment", json=body)).json()
    assert [d["outcome"] for d in first["deliveries"]] == ["consumed", "consumed"] and first["remaining"] == 1
    second = (await client.post("/api/v1/signals/payment", json=body)).json()
    assert [d["outcome"] for d in second["deliveries"]] == ["consumed"] and second["remaining"] == 0
    assert not {d["executionId"] for d in first["deliveries"]} & {d["executionId"] for d in second["deliveries"]}


async def test_a_signal_without_a_key_reaches_only_waits_without_one(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    await waiting_orders(db, conditions, "C-1")
    answer = (await client.post("/api/v1/signals/payment", json={"payload": {}})).json()
    assert answer["deliveries"] == [] and answer["remaining"] == 0


async def test_a_workflow_filter_and_another_tenant(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    runs = await waiting_orders(db, conditions, "D-1")
    other = (await client.post("/api/v1/signals/payment", json={"correlationKey": "D-1", "workflowId": "nope"})).json()
    assert other["deliveries"] == [] and other["remaining"] == 0
    elsewhere = await client.post(
        "/api/v1/signals/payment", json={"correlationKey": "D-1"}, headers={"X-Tenant-Id": "acme"}
    )
    assert elsewhere.status_code == 200 and elsewhere.json()["deliveries"] == []
    mine = (
        await client.post("/api/v1/signals/payment", json={"correlationKey": "D-1", "workflowId": "order-payment"})
    ).json()
    assert [d["executionId"] for d in mine["deliveries"]] == [str(runs["D-1"])]


async def test_bad_input_is_a_clear_400(client: AsyncTestClient[Any]) -> None:
    assert_problem(await client.post("/api/v1/signals/-bad", json={}), 422)
    assert_problem(await client.post("/api/v1/signals/go", json={"payload": [1]}), 400)
    assert_problem(await client.post("/api/v1/signals/go", json={"limit": 0}), 400)
    assert_problem(await client.post("/api/v1/signals/go", json={"workflowId": "a b"}), 400)
    assert_problem(await client.post("/api/v1/signals/go", json={"correlationKey": True}), 400)
    assert_problem(await client.post("/api/v1/signals/go", json={"surprise": 1}), 400)


async def test_the_signal_all_command(
    dsn: str, db: Database, conditions: ConditionPool, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataworkflows.cli import EXIT_OK, EXIT_USAGE, cmd_signal_all
    from tests.integration.cli_api import cli_command, served_api

    runs = await waiting_orders(db, conditions, "E-1", "E-1")
    async with served_api(dsn) as url:
        run = cli_command(url, capsys, cmd_signal_all, "signal-all")
        code, out, err = await run("payment", "--correlation-key", "E-1", "--signal-id", "e1", "--limit", "1")
        assert (code, err) == (EXIT_OK, ""), err
        lines = out.splitlines()
        assert lines[-1] == "signal payment (e1) sent to 1 run; 1 more wait for it: send it again with --signal-id e1"
        assert lines[-2].split()[1:] == ["order-payment", "consumed", "node", "payment"]
        code, out, err = await run("payment", "--correlation-key", "E-1", "--signal-id", "e1")
        assert code == EXIT_OK and out.splitlines()[-1] == "signal payment (e1) sent to 1 run", out
        assert {line.split()[0] for line in out.splitlines()[:-1]} <= {str(r) for r in runs.values()}
        code, out, err = await run("payment", "--payload", "[1]")
        assert code == EXIT_USAGE and "--payload" in err, err
        code, out, err = await run("bad name!")
        assert code == EXIT_USAGE and "signal name" in err, err


def two_waits(workflow_id: str, first: str, second: str) -> dict[str, Any]:
    """A workflow whose run waits for two signals at once (two branches), unkeyed."""
    wait = {"nodeType": "signal", "edges": []}
    return {
        "id": workflow_id,
        "displayName": workflow_id,
        "startNode": "start",
        "nodes": [
            {
                "id": "start",
                "actionType": "core.echo",
                "parameters": {"message": "go"},
                "edges": [{"targetNode": "w1"}, {"targetNode": "w2"}],
            },
            {**wait, "id": "w1", "parameters": {"name": first, "timeout": "PT1H"}},
            {**wait, "id": "w2", "parameters": {"name": second, "timeout": "PT1H"}},
        ],
    }


async def parked_runs(db: Database, conditions: ConditionPool, raw: dict[str, Any], count: int) -> list[UUID]:
    runtime = make_runtime(db, conditions)
    await publish(db, raw, conditions)
    runs = []
    for _ in range(count):
        execution_id = await start(db, raw["id"])
        assert await runtime.run_execution(execution_id) == "parked"
        runs.append(execution_id)
    return runs


async def test_a_run_with_two_waits_for_the_signal_does_not_hold_the_resend_back(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    """A run that waits for the signal in two branches takes one broadcast once (as its own signal
    would, one wait): sent again under the same id it is a duplicate, so it is no longer among the
    matches. It stayed one: `remaining` never reached 0, and with a limit the same run came first
    each time and the runs behind it were never reached (a review)."""
    twice, once = await parked_runs(db, conditions, two_waits("twice", "go", "go"), 1) + await parked_runs(
        db, conditions, two_waits("once", "go", "other"), 1
    )
    body = {"signalId": "go-1", "limit": 1}
    first = (await client.post("/api/v1/signals/go", json=body)).json()
    assert [(d["executionId"], d["outcome"]) for d in first["deliveries"]] == [(str(twice), "consumed")]
    assert first["remaining"] == 1
    second = (await client.post("/api/v1/signals/go", json=body)).json()
    assert [(d["executionId"], d["outcome"]) for d in second["deliveries"]] == [(str(once), "consumed")]
    assert second["remaining"] == 0
    third = (await client.post("/api/v1/signals/go", json=body)).json()
    assert third == {"signalId": "go-1", "deliveries": [], "remaining": 0}
    # Another signal of that name reaches the run's other wait.
    other = (await client.post("/api/v1/signals/go", json={"signalId": "go-2"})).json()
    assert [(d["executionId"], d["outcome"]) for d in other["deliveries"]] == [(str(twice), "consumed")]


async def test_broadcasts_of_two_names_lock_their_runs_in_one_order(
    dsn: str, db: Database, conditions: ConditionPool
) -> None:
    """Two broadcasts that reach the same runs take their rows in one order (the runs' ids), not each
    in the order its waits were made: runs that waited for "paid" in one order and for "shipped" in
    the other made the two broadcasts deadlock (a review)."""
    import asyncio

    import psycopg

    low, high = sorted(await parked_runs(db, conditions, two_waits("paid-shipped", "paid", "shipped"), 2))
    # "paid": low waited first; "shipped": high did.
    await sql(
        db,
        "UPDATE dw.waits w SET created_at = now() - (CASE WHEN (w.execution_id = %s) = (w.name = 'paid') "
        "THEN interval '2 minutes' ELSE interval '1 minute' END) WHERE w.execution_id IN (%s, %s)",
        low,
        low,
        high,
    )
    holder = await psycopg.AsyncConnection.connect(dsn)
    senders = [await psycopg.AsyncConnection.connect(dsn) for _ in range(2)]

    async def broadcast(conn: psycopg.AsyncConnection[Any], name: str) -> list[Any]:
        async with conn.transaction():
            await conn.execute("SELECT set_config('dw.tenant_id', 'default', true)")
            cur = await conn.execute(
                "SELECT execution_id, outcome FROM dw.broadcast_signal_v1(%s, %s, NULL, '{}', 'ops', 'executions', "
                "NULL, 10)",
                (name, f"{name}-1"),
            )
            return await cur.fetchall()

    async def blocked(count: int) -> None:
        while True:
            cur = await holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.02)

    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (low,))
            paid = asyncio.create_task(broadcast(senders[0], "paid"))
            await asyncio.wait_for(blocked(1), 10)
            shipped = asyncio.create_task(broadcast(senders[1], "shipped"))
            await asyncio.wait_for(blocked(2), 10)
        results = await asyncio.gather(paid, shipped, return_exceptions=True)
    finally:
        for conn in (holder, *senders):
            await conn.close()
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert [sorted(outcome for _, outcome in r) for r in results] == [["consumed", "consumed"]] * 2


async def test_a_broadcast_locks_a_child_before_its_parent(dsn: str, db: Database, conditions: ConditionPool) -> None:
    """Runs' rows are locked from a child up (sql/procedures/composition.sql: a child's end locks the
    child, then its parent). A broadcast reaching both locked them by id alone: holding the parent
    and waiting for the child, whose end held the child and waited for the parent, it deadlocked."""
    import asyncio

    import psycopg

    parent, child = sorted(await parked_runs(db, conditions, two_waits("family", "x", "other"), 2))
    await sql(
        db,
        "UPDATE dw.executions SET parent_execution_id = %s, parent_node_id = 'w2', root_execution_id = %s, "
        "depth = 1, path = ARRAY[%s, %s]::uuid[] WHERE id = %s",
        parent,
        parent,
        parent,
        child,
        child,
    )
    ending = await psycopg.AsyncConnection.connect(dsn)
    sending = await psycopg.AsyncConnection.connect(dsn)

    async def broadcast() -> list[Any]:
        async with sending.transaction():
            await sending.execute("SELECT set_config('dw.tenant_id', 'default', true)")
            cur = await sending.execute(
                "SELECT execution_id, outcome FROM dw.broadcast_signal_v1('x', 'x-1', NULL, '{}', 'ops', 'executions', "
                "NULL, 10)"
            )
            return await cur.fetchall()

    [(pid,)] = await (await sending.execute("SELECT pg_backend_pid()")).fetchall()
    try:
        async with ending.transaction():
            # The child's end: its row, then its parent's.
            await ending.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (child,))
            sent = asyncio.ensure_future(broadcast())
            for _ in range(10_000):
                await asyncio.sleep(0)
                waiting = await sql(db, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", pid)
                if waiting == [(1,)]:
                    break
            assert waiting == [(1,)], "the broadcast waits for the child"
            await ending.execute("SET LOCAL lock_timeout = '10s'")
            await ending.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (parent,))
        delivered = await sent
    finally:
        await ending.close()
        await sending.close()
    assert sorted(outcome for _, outcome in delivered) == ["consumed", "consumed"], delivered


async def test_a_run_that_used_the_signal_id_for_another_signal_is_passed_over_and_named(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    """The whole broadcast was refused (409 signal_id_reused) because one run had taken another
    signal under its signalId, and no run was reached or named."""
    runs = await waiting_orders(db, conditions, "F-1", "F-2")
    own = await client.post(f"/api/v1/executions/{runs['F-1']}/signals/other", json={"signalId": "shared"})
    assert own.status_code == 202, own.text
    sent = await client.post("/api/v1/signals/payment", json={"correlationKey": "F-1", "signalId": "shared"})
    assert sent.status_code == 200, sent.text
    assert [(d["executionId"], d["outcome"]) for d in sent.json()["deliveries"]] == [
        (str(runs["F-1"]), "signal_id_reused")
    ]
    other = (await client.post("/api/v1/signals/payment", json={"correlationKey": "F-2", "signalId": "shared"})).json()
    assert [(d["executionId"], d["outcome"]) for d in other["deliveries"]] == [(str(runs["F-2"]), "consumed")]

"""Runs that nobody picks up still end: the server's default workflowTimeout, and the sweeper that
times out a run whose deadline passed while no worker held it (dw.time_out_overdue_v1)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database, make_pool
from dataworkflows.deadlines import time_out_overdue
from dataworkflows.tenancy import tenant_scope
from tests.conftest import publish, start
from tests.integration.test_runtime import attempts, echo, events, nodes, to, wf


async def _sql(db: Database, query: str, *params: object) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def _deadline_seconds(db: Database, execution_id: UUID) -> float | None:
    rows = await _sql(
        db, "SELECT extract(epoch FROM deadline_at - created_at) FROM dw.executions WHERE id = %s", execution_id
    )
    return None if rows[0][0] is None else float(rows[0][0])


async def test_every_run_gets_a_deadline_from_its_definition_or_the_server_default(db: Database, dsn: str) -> None:
    await publish(db, wf("plain", echo("a")))
    await publish(db, wf("own", echo("a"), workflowTimeout="PT5M"))
    # A session that set nothing (psql, the tests' pool): the seeds' one hour.
    assert round(await _deadline_seconds(db, await start(db, "plain")) or 0) == 3600
    assert round(await _deadline_seconds(db, await start(db, "own")) or 0) == 300
    for default, expected in ((120.0, 120), (0.0, None)):
        pool = make_pool(dsn, min_size=1, max_size=1, name="deadline", default_workflow_timeout=default)
        await pool.open(wait=True)
        try:
            with tenant_scope("default"):
                other = Database(pool)
                plain = await start(other, "plain")
                own = await start(other, "own")
        finally:
            await pool.close()
        seconds = await _deadline_seconds(db, plain)
        assert (round(seconds) if seconds is not None else None) == expected
        # The definition's own timeout wins over the server's default.
        assert round(await _deadline_seconds(db, own) or 0) == 300


async def test_overdue_runs_that_no_worker_holds_time_out(db: Database) -> None:
    await publish(db, wf("slow-start", echo("a", to("b")), echo("b"), workflowTimeout="PT1S"))
    pending = await start(db, "slow-start")  # no worker ever takes it
    held = await start(db, "slow-start")
    running = await start(db, "slow-start")
    # A worker holds `held` (a live lease: it times the run out itself); `running` lost its worker.
    await _sql(
        db,
        "UPDATE dw.executions SET status = 'Running', lease_owner = 'w', lease_expires_at = now() + interval '1 hour'"
        " WHERE id = %s",
        held,
    )
    await _sql(
        db,
        "UPDATE dw.executions SET status = 'Running', lease_owner = 'gone', lease_expires_at = now() - interval '1 s'"
        " WHERE id = %s",
        running,
    )
    assert await time_out_overdue(db) == []  # not due yet
    await asyncio.sleep(1.1)
    ended = await time_out_overdue(db)
    assert sorted(e for e, _ in ended) == sorted([pending, running])
    assert {w for _, w in ended} == {"slow-start"}
    for execution_id in (pending, running):
        row = await db.fetch_one("get_execution", id=execution_id)
        assert row["status"] == "TimedOut" and row["error"]["code"] == "workflow_timeout"
        assert {n["status"] for n in (await nodes(db, execution_id)).values()} == {"Skipped"}
        assert "execution_timedout" in await events(db, execution_id)
        assert await attempts(db, execution_id) == []
        jobs = await _sql(
            db, "SELECT count(*) FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s", str(execution_id)
        )
        assert jobs == [(0,)]
    assert (await db.fetch_one("get_execution", id=held))["status"] == "Running"
    assert await time_out_overdue(db) == []
    # Each run the sweep timed out has its timed_out letter, for a human to redrive or let go.
    letters = await db.fetch_all("list_dead_letters", open=True, kind="timed_out", before=None, limit=10)
    assert sorted(row["execution_id"] for row in letters) == sorted([pending, running]), letters


async def test_the_api_times_out_overdue_runs_while_no_worker_runs(dsn: str, db: Database) -> None:
    await publish(db, wf("nobody", echo("a"), workflowTimeout="PT1S"))
    app = create_app(Settings(database_url=dsn, recovery_interval_seconds=0.2))
    async with AsyncTestClient(app) as client:
        started = await client.post("/api/v1/workflows/nobody/execute", json={"trigger": {}})
        assert started.status_code == 202
        status_url = started.json()["statusUrl"]
        deadline = time.monotonic() + 10
        while (body := (await client.get(status_url)).json())["status"] != "TimedOut":
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.1)
        assert body["error"]["code"] == "workflow_timeout"


async def test_a_child_without_its_own_timeout_shares_its_parents_deadline(
    db: Database, conditions: ConditionPool
) -> None:
    from tests.integration.test_runtime import make_runtime
    from tests.integration.test_subworkflows import children, sub

    await publish(db, wf("leaf", echo("l", delayMs=300)))
    await publish(db, wf("leaf-own", echo("l", delayMs=300), workflowTimeout="PT10M"))
    await publish(db, wf("parent", sub("a", "leaf", to("b")), sub("b", "leaf-own"), workflowTimeout="P2D"))
    parent = await start(db, "parent")
    runtime = make_runtime(db, conditions)
    await runtime.run_execution(parent)
    for _ in range(2):  # each child in turn (the parent parks while it runs)
        for child in await children(db, parent):
            await runtime.run_execution(child["id"])
        await runtime.run_execution(parent)
    rows = await _sql(
        db,
        "SELECT e.workflow_id, round(extract(epoch FROM e.deadline_at - p.deadline_at)) FROM dw.executions e"
        " JOIN dw.executions p ON p.id = e.parent_execution_id WHERE p.id = %s ORDER BY e.workflow_id",
        parent,
    )
    # leaf: its parent's two days (not the server's hour); leaf-own: its own ten minutes.
    assert rows[0] == ("leaf", 0)
    assert rows[1][0] == "leaf-own" and rows[1][1] < -86400


async def test_a_child_of_a_run_without_a_deadline_has_none_either(db: Database, conditions: ConditionPool) -> None:
    """A run started before deadlines were (release 0.1.0), or while the default was 0, has none;
    an attached child it starts after the upgrade got the server's default (an hour), so an old
    tree's remaining items and later subworkflows timed out under it. It now shares its parent's
    none; a detached child still gets its own default, and a workflowTimeout of its own wins."""
    from tests.integration.test_runtime import make_runtime
    from tests.integration.test_subworkflows import children, drain, sub

    await publish(db, wf("leaf", echo("l")))
    await publish(db, wf("leaf-own", echo("l"), workflowTimeout="PT10M"))
    await publish(
        db,
        wf(
            "old-tree",
            sub("a", "leaf", to("b")),
            sub("b", "leaf-own", to("c")),
            sub("c", "leaf", waitForCompletion=False),
        ),
    )
    parent = await start(db, "old-tree")
    await _sql(db, "UPDATE dw.executions SET deadline_at = NULL WHERE id = %s", parent)
    await drain(db, make_runtime(db, conditions))
    assert (await db.fetch_one("get_execution", id=parent))["status"] == "Succeeded"
    kids = {kid["parent_node_id"]: kid["id"] for kid in await children(db, parent)}
    assert await _deadline_seconds(db, kids["a"]) is None, "an attached child shares its parent's none"
    assert 590 < (await _deadline_seconds(db, kids["b"]) or 0) <= 600, "its own workflowTimeout"
    assert 3500 < (await _deadline_seconds(db, kids["c"]) or 0) <= 3600, "a detached child: the default"


async def test_a_detached_child_outlives_its_parents_deadline(db: Database, conditions: ConditionPool) -> None:
    from tests.integration.test_runtime import make_runtime
    from tests.integration.test_subworkflows import children, drain, sub
    from tests.integration.test_waits import kind_node, signal

    # Children that wait for a signal nobody sends, without a workflowTimeout of their own: one
    # attached (it shares its parent's deadline), two detached (they run on their own): a node's and
    # a forEach item's.
    detached_item = {"workflowId": "lingers", "waitForCompletion": False}
    await publish(db, wf("lingers", signal("s", name="never")), conditions)
    await publish(
        db,
        wf(
            "spawner",
            sub("spawn", "lingers", to("each"), waitForCompletion=False),
            kind_node("forEach", "each", (to("call"),), {"items": [1], "subworkflow": detached_item}),
            sub("call", "lingers"),
            workflowTimeout="PT2S",
        ),
        conditions,
    )
    parent = await start(db, "spawner")
    runtime = make_runtime(db, conditions)
    await drain(db, runtime)
    kids = {kid["parent_node_id"]: kid["id"] for kid in await children(db, parent)}
    assert set(kids) == {"spawn", "each", "call"}
    # Wait out the parent's deadline, no longer.
    (left,) = await _sql(db, "SELECT extract(epoch FROM deadline_at - now()) FROM dw.executions WHERE id = %s", parent)
    await asyncio.sleep(max(float(left[0]), 0) + 0.05)
    await time_out_overdue(db)
    await drain(db, runtime)  # the parent's end cancels the children it waited for
    statuses = {node: (await db.fetch_one("get_execution", id=kid))["status"] for node, kid in kids.items()}
    # The attached child is overdue with its parent (or cancelled by the parent's end, whichever came first).
    assert statuses["spawn"] == statuses["each"] == "Waiting" and statuses["call"] in {"TimedOut", "Cancelled"}
    assert (await db.fetch_one("get_execution", id=parent))["status"] == "TimedOut"
    # A detached child's deadline is the server's default from its own start.
    for node in ("spawn", "each"):
        assert 3500 < (await _deadline_seconds(db, kids[node]) or 0) <= 3600


async def test_a_detached_child_that_times_out_files_its_own_letter(db: Database, conditions: ConditionPool) -> None:
    """Nobody takes a detached child's end: past its deadline it files a timed_out letter, as a root
    run does, and the letter redrives it. An attached child's timeout stays its parent's."""
    from tests.integration.test_runtime import make_runtime
    from tests.integration.test_subworkflows import children, drain, sub
    from tests.integration.test_waits import kind_node, signal

    await publish(db, wf("lingers-briefly", signal("s", name="never"), workflowTimeout="PT1S"), conditions)
    detached_item = {"workflowId": "lingers-briefly", "waitForCompletion": False}
    await publish(
        db,
        wf(
            "scatters-briefly",
            sub("spawn", "lingers-briefly", to("each"), waitForCompletion=False),
            kind_node("forEach", "each", (to("call"),), {"items": [1], "subworkflow": detached_item}),
            sub("call", "lingers-briefly"),
        ),
        conditions,
    )
    parent = await start(db, "scatters-briefly")
    runtime = make_runtime(db, conditions)
    await drain(db, runtime)
    kids = {kid["parent_node_id"]: kid["id"] for kid in await children(db, parent)}
    assert set(kids) == {"spawn", "each", "call"}
    await asyncio.sleep(1.1)
    await time_out_overdue(db)
    await drain(db, runtime)
    for kid in kids.values():
        assert (await db.fetch_one("get_execution", id=kid))["status"] == "TimedOut"
    assert (await db.fetch_one("get_execution", id=parent))["status"] == "Failed"
    letters = await db.fetch_all("list_dead_letters", open=True, kind=None, before=None, limit=10)
    filed = sorted((row["kind"], row["execution_id"]) for row in letters)
    assert filed == sorted([("timed_out", kids["spawn"]), ("timed_out", kids["each"]), ("node_failed", parent)])
    (item_letter,) = [row["id"] for row in letters if row["execution_id"] == kids["each"]]
    redrive = await db.operations.redrive(int(item_letter), principal="ops", queue="executions")
    assert redrive.action == "requeued"
    assert (await db.fetch_one("get_execution", id=kids["each"]))["status"] == "Pending"


async def test_a_redrive_gives_the_run_a_fresh_default_deadline(db: Database, conditions: ConditionPool) -> None:
    from tests.integration.test_runtime import make_runtime

    await publish(db, wf("fails-once", echo("a", simulateFailure="permanent")))
    execution_id = await start(db, "fails-once")
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Failed"
    letters = await db.fetch_all("list_dead_letters", open=True, kind="node_failed", before=None, limit=10)
    await db.fetch_one("redrive_dead_letter", id=letters[0]["id"], principal="ops", queue="executions")
    rows = await _sql(
        db, "SELECT extract(epoch FROM deadline_at - now()) FROM dw.executions WHERE id = %s", execution_id
    )
    assert 3500 < float(rows[0][0]) <= 3600


async def test_the_examples_that_wait_long_say_how_long(db: Database, conditions: ConditionPool) -> None:
    from tests.conftest import load_fixture
    from tests.integration.test_runtime import make_runtime

    # "No quorum in two days routes to 'refuse'": the run must outlive its approval's timeout.
    await publish(db, load_fixture("bundle5/expense-approval-workflow.json"))
    execution_id = await start(db, "expense-approval", {"amount": 10, "requester": "dan"})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "parked"
    rows = await _sql(
        db,
        "SELECT e.deadline_at > w.expires_at FROM dw.executions e JOIN dw.waits w ON w.execution_id = e.id"
        " WHERE e.id = %s",
        execution_id,
    )
    assert rows == [(True,)]

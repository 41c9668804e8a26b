"""Run priority (README "Run priority", migration 0069): where a run's priority comes from, that every
job the run gets carries it, and changing it over HTTP. No worker runs here: the order in which a
worker takes runs is checked live in tests/acceptance/test_limits_live.py."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
import uuid
from typing import Any

import psycopg
from litestar.testing import AsyncTestClient

from dataworkflows.db import Database
from tests.conftest import load_fixture
from tests.integration.test_api import assert_problem
from tests.integration.test_control_api import OPS, client, end_run, sql

__all__ = ["client"]


def echo_workflow(workflow_id: str, priority: int | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(load_fixture("bundle1/simple-echo-workflow.json"))
    raw["id"] = workflow_id
    if priority is not None:
        raw["orchestration"] = {"priority": priority}
    return raw


async def create(client: AsyncTestClient[Any], raw: dict[str, Any]) -> None:
    created = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
    assert created.status_code == 201, created.text


async def execute(client: AsyncTestClient[Any], workflow_id: str, **body: Any) -> str:
    started = await client.post(f"/api/v1/workflows/{workflow_id}/execute", json={"trigger": {}, **body})
    assert started.status_code == 202, started.text
    return str(started.json()["executionId"])


async def job_priorities(db: Database, execution_id: str) -> list[tuple[str, int]]:
    rows = await sql(
        db,
        "SELECT status::text, priority FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s ORDER BY id",
        execution_id,
    )
    return [(str(r[0]), int(r[1])) for r in rows]


async def test_a_runs_priority_is_the_requests_else_its_definitions_else_zero(
    client: AsyncTestClient[Any], db: Database
) -> None:
    await create(client, echo_workflow("plain"))
    await create(client, echo_workflow("urgent", priority=40))
    runs = {
        "plain, none asked": (await execute(client, "plain"), 0),
        "plain, asked": (await execute(client, "plain", priority=-7), -7),
        "urgent, none asked": (await execute(client, "urgent"), 40),
        "urgent, asked": (await execute(client, "urgent", priority=100), 100),
        "urgent, asked 0": (await execute(client, "urgent", priority=0), 0),
    }
    for name, (execution_id, priority) in runs.items():
        read = (await client.get(f"/api/v1/executions/{execution_id}")).json()
        assert read["priority"] == priority, name
        assert await job_priorities(db, execution_id) == [("todo", priority)], name
        assert await sql(db, "SELECT priority FROM dw.v_executions WHERE id = %s", execution_id) == [(priority,)]
    listed = {i["id"]: i["priority"] for i in (await client.get("/api/v1/executions")).json()["items"]}
    assert listed == {execution_id: priority for execution_id, priority in runs.values()}

    # The same request again is the same run, at the first start's priority: a priority is not part
    # of a request's identity.
    first = await client.post("/api/v1/workflows/plain/execute", json={"requestId": "r-1", "priority": 3})
    again = await client.post("/api/v1/workflows/plain/execute", json={"requestId": "r-1", "priority": 90})
    assert again.status_code == 202 and again.json()["created"] is False
    assert again.json()["executionId"] == first.json()["executionId"]
    assert (await client.get(f"/api/v1/executions/{first.json()['executionId']}")).json()["priority"] == 3


async def test_a_priority_out_of_range_or_not_an_integer_is_refused_and_starts_nothing(
    client: AsyncTestClient[Any], db: Database
) -> None:
    await create(client, echo_workflow("plain"))
    for bad in (101, -101, 1.5, "high", True, 10**20):
        problem = assert_problem(await client.post("/api/v1/workflows/plain/execute", json={"priority": bad}), 400)
        assert "priority" in problem["detail"], (bad, problem)
    assert (await client.get("/api/v1/executions")).json()["items"] == []
    assert await sql(db, "SELECT count(*) FROM procrastinate_jobs") == [(0,)]

    # A definition's is checked when it is saved, with the field's pointer.
    refused = await client.post("/api/v1/workflows", json=echo_workflow("loud", priority=1000))
    problem = assert_problem(refused, 422)
    pointers = {p["pointer"] for p in problem["errors"]}
    assert "/orchestration/priority" in pointers, problem


async def test_every_job_of_a_run_carries_its_priority(client: AsyncTestClient[Any], db: Database) -> None:
    """Its start's job, and a job queued again later (here: a resume), through dw.defer_run_job_v1."""
    await create(client, echo_workflow("plain"))
    execution_id = await execute(client, "plain", priority=25)
    url = f"/api/v1/executions/{execution_id}"
    assert (await client.post(f"{url}/suspend", headers=OPS)).json()["status"] == "Suspended"
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s", execution_id)
    assert (await client.post(f"{url}/resume", headers=OPS)).json()["outcome"] == "resumed"
    assert await job_priorities(db, execution_id) == [("todo", 25)]


async def test_a_child_runs_at_its_parents_priority(client: AsyncTestClient[Any], db: Database) -> None:
    """A tree runs at its root's priority, whatever the child's definition says (a child below its
    parent's priority would keep the parent waiting behind lower work)."""
    await create(client, echo_workflow("parent"))
    await create(client, echo_workflow("child", priority=-50))
    parent = await execute(client, "parent", priority=60)
    rows = await sql(
        db,
        "SELECT c.o_execution_id, c.o_error FROM dw.executions p,"
        " dw.start_child_v2(p, 'echo1', 'child:1', 'child', NULL, '{}'::jsonb, 10) c WHERE p.id = %s",
        parent,
    )
    child, error = rows[0]
    assert error is None and child is not None
    assert (await client.get(f"/api/v1/executions/{child}")).json()["priority"] == 60
    assert await job_priorities(db, str(child)) == [("todo", 60)]


async def test_changing_a_queued_runs_priority_moves_its_job(client: AsyncTestClient[Any], db: Database) -> None:
    await create(client, echo_workflow("plain"))
    execution_id = await execute(client, "plain")
    url = f"/api/v1/executions/{execution_id}"

    changed = await client.put(f"{url}/priority", json={"priority": 80}, headers=OPS)
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "executionId": execution_id,
        "status": "Pending",
        "priority": 80,
        "previous": 0,
        "changed": True,
        "jobs": 1,
        "descendants": None,
    }
    assert await job_priorities(db, execution_id) == [("todo", 80)]
    assert (await client.get(url)).json()["priority"] == 80
    events = [e for e in (await client.get(f"{url}/events")).json() if e["type"] == "priority_changed"]
    assert [(e["principal"], e["details"]) for e in events] == [
        ("ops", {"priority": 80, "previous": 0, "status": "Pending"})
    ]

    # The same priority again writes and logs nothing.
    same = (await client.put(f"{url}/priority", json={"priority": 80})).json()
    assert (same["changed"], same["jobs"], same["previous"]) == (False, 0, 80)
    events = [e for e in (await client.get(f"{url}/events")).json() if e["type"] == "priority_changed"]
    assert len(events) == 1

    # Bad bodies are refused and change nothing.
    for bad in ({"priority": 101}, {"priority": "high"}, {}, {"priority": 5, "why": "x"}, ["x"]):
        assert_problem(await client.put(f"{url}/priority", json=bad), 400)
    assert (await client.get(url)).json()["priority"] == 80

    # An unknown run is a 404; an ended one a 409 (its priority no longer matters).
    for unknown in ("00000000-0000-0000-0000-000000000001", "not-a-uuid"):
        missing = assert_problem(await client.put(f"/api/v1/executions/{unknown}/priority", json={"priority": 1}), 404)
        assert missing["code"] == "execution_not_found"
    await end_run(db, execution_id)
    ended = assert_problem(await client.put(f"{url}/priority", json={"priority": 1}), 409)
    assert ended["code"] == "execution_ended" and "Succeeded" in ended["detail"]
    assert (await client.get(url)).json()["priority"] == 80


async def test_a_run_held_by_a_worker_keeps_its_doing_job_and_its_next_job_takes_the_new_priority(
    client: AsyncTestClient[Any], db: Database
) -> None:
    await create(client, echo_workflow("plain"))
    execution_id = await execute(client, "plain", priority=5)
    await sql(db, "UPDATE procrastinate_jobs SET status = 'doing' WHERE args ->> 'execution_id' = %s", execution_id)
    changed = (await client.put(f"/api/v1/executions/{execution_id}/priority", json={"priority": -20})).json()
    assert (changed["changed"], changed["jobs"]) == (True, 0)
    assert await job_priorities(db, execution_id) == [("doing", 5)]
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s", execution_id)
    await sql(db, "SELECT dw.defer_run_job_v1(%s, 'executions', NULL)", execution_id)
    assert await job_priorities(db, execution_id) == [("todo", -20)]


def hold_the_queued_job(dsn: str, execution_id: str, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """A worker's fetch in flight: the run's queued job locked, then, after `seconds`, rolled back (an
    acquire that raised, a lost connection). Returns the thread and an event set once it holds the job."""
    held = threading.Event()

    def fetch_then_roll_back() -> None:
        with psycopg.connect(dsn) as fetch:
            fetch.execute(
                "SELECT id FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s FOR UPDATE", (execution_id,)
            )
            held.set()
            time.sleep(seconds)
            fetch.rollback()

    thread = threading.Thread(target=fetch_then_roll_back)
    thread.start()
    return thread, held


async def test_a_queued_job_a_fetch_held_and_gave_back_takes_the_new_priority(
    client: AsyncTestClient[Any], db: Database, dsn: str
) -> None:
    """A fetch held the run's queued job when the priority changed, then rolled back: the job is
    queued again, and it takes the new priority (the change waits a moment for a fetch in flight),
    instead of waiting at the old one for as long as it is queued."""
    await create(client, echo_workflow("plain"))
    execution_id = await execute(client, "plain", priority=-10)
    fetching, held = hold_the_queued_job(dsn, execution_id, 0.03)
    assert await asyncio.to_thread(held.wait, 10)
    changed = await client.put(f"/api/v1/executions/{execution_id}/priority", json={"priority": 70})
    await asyncio.to_thread(fetching.join, 10)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["changed"], changed.json()["jobs"]) == (True, 1)
    assert await job_priorities(db, execution_id) == [("todo", 70)]


async def test_a_fetch_that_holds_the_queued_job_for_long_does_not_hold_the_change(
    client: AsyncTestClient[Any], db: Database, dsn: str
) -> None:
    """The change waits for a fetch in flight only a moment (a fetch may wait for other runs' rows):
    past it, it answers jobs 0; the same priority again moves the job left behind, and logs nothing."""
    await create(client, echo_workflow("plain"))
    execution_id = await execute(client, "plain")
    url = f"/api/v1/executions/{execution_id}/priority"
    fetching, held = hold_the_queued_job(dsn, execution_id, 1.5)
    assert await asyncio.to_thread(held.wait, 10)
    began = time.monotonic()
    changed = (await client.put(url, json={"priority": 30})).json()
    assert time.monotonic() - began < 1.0
    assert (changed["changed"], changed["jobs"]) == (True, 0)
    await asyncio.to_thread(fetching.join, 10)
    assert await job_priorities(db, execution_id) == [("todo", 0)]
    again = (await client.put(url, json={"priority": 30})).json()
    assert (again["changed"], again["jobs"], again["previous"]) == (False, 1, 30)
    assert await job_priorities(db, execution_id) == [("todo", 30)]
    events = (await client.get(f"/api/v1/executions/{execution_id}/events")).json()
    assert [e["type"] for e in events].count("priority_changed") == 1


async def test_a_cancel_cascade_goes_ahead_of_every_run(client: AsyncTestClient[Any], db: Database) -> None:
    """A parent's cancel queues the cancel of its children (dw.cancel_children): a job of the engine's
    own that a worker takes before any run's, whatever their priorities. At priority 0 it waited
    behind every run above 0, queued before or after it (no aging): the children of a cancelled
    parent ran on for as long as a stream of such runs lasted."""
    await create(client, echo_workflow("parent"))
    await create(client, echo_workflow("child"))
    parent = await execute(client, "parent", priority=20)
    rows = await sql(
        db,
        "SELECT c.o_execution_id FROM dw.executions p,"
        " dw.start_child_v2(p, 'echo1', 'child:1', 'child', NULL, '{}'::jsonb, 10) c WHERE p.id = %s",
        parent,
    )
    assert rows[0][0] is not None
    cancelled = await client.post(f"/api/v1/executions/{parent}/cancel", json={"reason": "enough"})
    assert cancelled.status_code == 202, cancelled.text
    later = await execute(client, "parent", priority=100)
    first = await sql(
        db,
        "SELECT task_name, args FROM procrastinate_jobs WHERE status = 'todo' ORDER BY priority DESC, id LIMIT 1",
    )
    assert first[0][0] == "dw.cancel_children", (first, later)
    assert first[0][1]["parent_execution_id"] == parent
    fetched = await sql(db, "SELECT task_name FROM dw.fetch_jobs_v1(ARRAY['executions']::varchar[], NULL, 1)")
    assert fetched == [("dw.cancel_children",)]


async def start_child(db: Database, parent: str, request_id: str) -> str:
    rows = await sql(
        db,
        "SELECT c.o_execution_id, c.o_error FROM dw.executions p,"
        " dw.start_child_v2(p, 'echo1', %s, 'child', NULL, '{}'::jsonb, 10) c WHERE p.id = %s",
        request_id,
        parent,
    )
    child, error = rows[0]
    assert error is None and child is not None
    return str(child)


async def test_a_change_with_descendants_reaches_the_runs_below_it(client: AsyncTestClient[Any], db: Database) -> None:
    """Planning's note: a parent's change left the children it had started at the old priority
    (change them one by one). With descendants, every unfinished run below it takes it: children,
    grandchildren; not its parent, nor an ended child, nor a run of another tree."""
    await create(client, echo_workflow("parent"))
    await create(client, echo_workflow("child"))
    root = await execute(client, "parent", priority=10)
    middle = await start_child(db, root, "child:m")
    grandchild = await start_child(db, middle, "child:g")
    ended = await start_child(db, middle, "child:e")
    await end_run(db, ended)
    other = await execute(client, "parent", priority=10)
    answer = await client.put(
        f"/api/v1/executions/{middle}/priority", json={"priority": 70, "descendants": True}, headers=OPS
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["priority"], body["changed"]) == (70, True)
    assert body["descendants"] == {"changed": 1, "skipped": 0, "jobs": 1}
    priorities = {
        run: (await client.get(f"/api/v1/executions/{run}")).json()["priority"]
        for run in (root, middle, grandchild, ended, other)
    }
    assert priorities == {root: 10, middle: 70, grandchild: 70, ended: 10, other: 10}
    assert await job_priorities(db, grandchild) == [("todo", 70)]
    events = await sql(
        db,
        "SELECT principal, details FROM dw.execution_events WHERE execution_id = %s AND type = 'priority_changed'",
        grandchild,
    )
    assert events == [("ops", {"priority": 70, "previous": 10, "status": "Pending", "byAncestor": middle})]
    # From the root: the whole tree. A run whose row is locked at that moment is skipped, and said.
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR UPDATE", (grandchild,))
        answer = await client.put(
            f"/api/v1/executions/{root}/priority", json={"priority": -5, "descendants": True}, headers=OPS
        )
    assert answer.json()["descendants"] == {"changed": 1, "skipped": 1, "jobs": 1}
    again = await client.put(
        f"/api/v1/executions/{root}/priority", json={"priority": -5, "descendants": True}, headers=OPS
    )
    assert (again.json()["changed"], again.json()["descendants"]) == (False, {"changed": 1, "skipped": 0, "jobs": 1})
    assert (await client.get(f"/api/v1/executions/{grandchild}")).json()["priority"] == -5
    # Without descendants, nothing below is touched, and the answer says none.
    plain = await client.put(f"/api/v1/executions/{root}/priority", json={"priority": 0}, headers=OPS)
    assert plain.json()["descendants"] is None
    assert (await client.get(f"/api/v1/executions/{middle}")).json()["priority"] == -5


async def test_the_priority_command_with_descendants(
    client: AsyncTestClient[Any], db: Database, dsn: str, capsys: Any
) -> None:
    from dataworkflows.cli import EXIT_OK, cmd_executions_priority
    from tests.integration.cli_api import cli_command, served_api

    await create(client, echo_workflow("parent"))
    await create(client, echo_workflow("child"))
    root = await execute(client, "parent")
    kid = await start_child(db, root, "child:c")
    async with served_api(dsn) as url:
        run = cli_command(url, capsys, cmd_executions_priority, "executions", "priority")
        code, out, err = await run(root, "30", "--descendants")
    assert (code, err) == (EXIT_OK, ""), err
    lines = out.splitlines()
    assert lines[-2].startswith(f"execution {root} priority 30 (was 0;"), out
    assert lines[-1] == "  runs below it: 1 changed, 1 queued jobs moved", out
    assert (await client.get(f"/api/v1/executions/{kid}")).json()["priority"] == 30


async def test_a_descendants_job_a_fetch_held_is_skipped_and_moved_by_the_same_request_again(
    client: AsyncTestClient[Any], db: Database
) -> None:
    """A review: a child's queued job that a worker's fetch held at that moment (a fetch that then
    rolled back leaves it queued) stayed at its old priority while its run took the new one, the
    answer counted nothing skipped, and the same request again never moved it (the run was no longer
    below the priority asked), where a single run's same priority again moves a job left so."""
    await create(client, echo_workflow("parent"))
    await create(client, echo_workflow("child"))
    root = await execute(client, "parent")
    kid = await start_child(db, root, "child:held")
    url = f"/api/v1/executions/{root}/priority"
    async with db.connection() as conn, conn.transaction():
        # As a fetch holds the job (and then rolls back: this one changed nothing).
        await conn.execute("SELECT 1 FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s FOR UPDATE", (kid,))
        first = await client.put(url, json={"priority": 50, "descendants": True}, headers=OPS)
    assert first.json()["descendants"] == {"changed": 1, "skipped": 1, "jobs": 0}, first.json()
    assert await job_priorities(db, kid) == [("todo", 0)]
    again = await client.put(url, json={"priority": 50, "descendants": True}, headers=OPS)
    assert again.json()["descendants"] == {"changed": 0, "skipped": 0, "jobs": 1}, again.json()
    assert await job_priorities(db, kid) == [("todo", 50)]
    # Its log says the change once.
    logged = await sql(
        db, "SELECT count(*) FROM dw.execution_events WHERE execution_id = %s AND type = 'priority_changed'", kid
    )
    assert logged == [(1,)]


async def test_a_descendant_that_ends_while_the_change_goes_on_is_left_as_it_ended(
    client: AsyncTestClient[Any], db: Database
) -> None:
    """A review, live: 40 changes with descendants of a forEach of 2,000 children, its children
    ending meanwhile, logged priority_changed after execution_succeeded on 5 of them. A run that
    ended after the change's statement began, and before its walk reached the run's row, was still
    locked and changed (the lock followed the row to its ended version, and only its id was checked
    again). Timing-based: the children end one by one while the changes walk them."""
    await create(client, echo_workflow("parent"))
    await create(client, echo_workflow("child"))
    root = await execute(client, "parent")
    first = await start_child(db, root, "child:first")
    await sql(
        db,
        "INSERT INTO dw.executions SELECT (jsonb_populate_record(e, jsonb_build_object("
        " 'id', x.id, 'path', e.path[1:1] || x.id, 'request_id', 'child:' || x.id))).*"
        " FROM dw.executions e, generate_series(1, 1500) g, LATERAL (SELECT gen_random_uuid() AS id, g AS k) x"
        " WHERE e.id = %s RETURNING 1",
        first,
    )
    children = [
        str(row[0])
        for row in await sql(db, "SELECT id FROM dw.executions WHERE parent_execution_id = %s ORDER BY id DESC", root)
    ]
    done = asyncio.Event()

    async def end_them() -> None:
        for child in children:
            await end_run(db, child)
        done.set()

    async def change_them() -> int:
        changes = 0
        while not done.is_set():
            changes += 1
            await db.control.set_descendants_priority(uuid.UUID(root), 10 + changes % 2, principal="ops")
        return changes

    _, changes = await asyncio.gather(end_them(), change_them())
    assert changes >= 1
    late = await sql(
        db,
        "SELECT count(*) FROM dw.execution_events WHERE type = 'priority_changed'"
        " AND details ->> 'status' IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')",
    )
    assert late == [(0,)]

"""The worker's fetch with the common case written set-based (dw.fetch_run_jobs_v2, issue 17): the same
jobs give the same answer and leave the same rows as dw.fetch_run_jobs_v1, which acquires run by run
(dw.try_acquire_execution_v6), and only the runs the set-based statements cannot lease go that way.

Each scenario is built twice, its runs' jobs queued on two queues; v1 fetches one queue's jobs, v2 the
other's, in one call each."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from dataworkflows.data.limits import WorkflowLimits
from dataworkflows.db import APP_ROLE, Database
from dataworkflows.tenancy import tenant_scope
from tests.conftest import publish
from tests.integration.test_runtime import echo, to, wf

RUN_TASK = "dw.run_execution"
QUEUES = ("fetch-v1", "fetch-v2")


@dataclass
class Scenario:
    """Runs brought to a state before the fetch; `set_based` says whether v2 leases them set-based."""

    name: str
    workflow_id: str
    set_based: bool
    tenant: str = "default"
    # What is done to the run (through the superuser's connection) after its start, before the fetch.
    setup: str | None = None
    second_job: bool = False  # a second run job for the same run
    locked: bool = False  # another transaction holds the run's row during the fetch
    ids: list[UUID] = field(default_factory=list)  # one run per world


SCENARIOS = [
    Scenario("fresh", "fx-pair", set_based=True),
    Scenario("fresh-parallel", "fx-wide", set_based=True),
    Scenario("other-tenant", "fx-pair", set_based=True, tenant="acme"),
    # A plan that allows no node in flight (edited below; validation allows 1 to 1000): none starts.
    Scenario("no-slot", "fx-no-slot", set_based=True),
    # The rest: dw.try_acquire_execution_v6, run by run.
    Scenario("limited", "fx-limited", set_based=False),
    Scenario("cancel-requested", "fx-pair", set_based=False, setup="cancel_requested_at = '2026-01-01T00:00:00Z'"),
    Scenario("suspend-requested", "fx-pair", set_based=False, setup="suspend_requested_at = '2026-01-01T00:00:00Z'"),
    Scenario("past-deadline", "fx-pair", set_based=False, setup="deadline_at = '2026-01-01T00:00:00Z'"),
    Scenario(
        "lease-expired",
        "fx-pair",
        set_based=False,
        setup="status = 'Running', started_at = now(), lease_owner = 'gone', lease_token = 3,"
        " lease_expires_at = '2026-01-01T00:00:00Z'",
    ),
    Scenario("two-jobs", "fx-pair", set_based=True, second_job=True),
    Scenario("locked", "fx-pair", set_based=False, locked=True),
]
# Calls of dw.try_acquire_execution_v6 that v2 makes: one a run that is not leased set-based (a
# locked row is not acquired at all), and the second job of "two-jobs" (its run's lease is held).
V6_CALLS = sum(1 for s in SCENARIOS if not s.set_based and not s.locked) + 1

# What a run's rows say, without ids and times.
STATE = {
    "run": "SELECT status, lease_owner, lease_token, lease_job_id IS NOT NULL AS job_named,"
    " started_at IS NOT NULL AS started, ended_at IS NOT NULL AS ended FROM dw.executions WHERE id = %s",
    "nodes": "SELECT node_id, status, attempts, started_at IS NOT NULL AS started, next_attempt_at"
    " FROM dw.node_states WHERE execution_id = %s ORDER BY node_id",
    "events": "SELECT type, node_id, CASE WHEN type = 'execution_requested' THEN NULL ELSE details END AS details"
    " FROM dw.execution_events WHERE execution_id = %s ORDER BY id",
    "jobs": "SELECT task_name, status::text FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s::text"
    " ORDER BY id",
}


def state(conn: psycopg.Connection[dict[str, Any]], execution_id: UUID) -> dict[str, Any]:
    return {part: conn.execute(query, (execution_id,)).fetchall() for part, query in STATE.items()}


async def start_on(db: Database, workflow_id: str, queue: str, tenant: str) -> UUID:
    with tenant_scope(tenant):
        row = await db.executions.start(
            workflow_id=workflow_id,
            request_id=os.urandom(8).hex(),
            trigger={},
            principal_id="tests",
            principal_type="user",
            correlation_id=None,
            queue=queue,
        )
    return UUID(str(row.execution_id))


async def publish_all(db: Database) -> None:
    for tenant in ("default", "acme"):
        with tenant_scope(tenant):
            await publish(db, wf("fx-pair", echo("a", to("b")), echo("b")))
    await publish(db, wf("fx-wide", echo("s", to("l"), to("r")), echo("l"), echo("r"), maxParallelActions=4))
    await publish(db, wf("fx-limited", echo("a")))
    await publish(db, wf("fx-no-slot", echo("a")))
    await db.limits.set_workflow_limits("fx-limited", WorkflowLimits(set_concurrent=True, max_concurrent=5))


@contextmanager
def rows_locked(dsn: str, ids: list[UUID]) -> Iterator[None]:
    """Another transaction holding these runs' rows (an operator's cancel being written)."""
    if not ids:
        yield
        return
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT 1 FROM dw.executions WHERE id = ANY(%s) FOR NO KEY UPDATE", (ids,))
        yield
        holder.rollback()


def without_times(run: Any) -> Any:
    """A fetch's `run` with its deadline (a time from the run's start) as whether it has one."""
    return {**run, "deadlineAt": run.get("deadlineAt") is not None} if isinstance(run, dict) else run


def fetch(conn: psycopg.Connection[dict[str, Any]], version: str, queue: str) -> list[dict[str, Any]]:
    return conn.execute(
        f"SELECT (f.job).id AS job_id, (f.job).args ->> 'execution_id' AS execution_id, f.outcome, f.lease_token,"
        f" f.run, f.nodes, f.started FROM dw.fetch_run_jobs_{version}(%s::varchar[], NULL, %s, 'fetcher', 30,"
        " true, 50) f",
        ([queue], RUN_TASK),
    ).fetchall()


def v6_calls(conn: psycopg.Connection[dict[str, Any]]) -> int:
    """Calls of dw.try_acquire_execution_v6 this session has made in its transaction."""
    row = conn.execute(
        "SELECT COALESCE(sum(calls), 0) AS calls FROM pg_stat_xact_user_functions"
        " WHERE funcname = 'try_acquire_execution_v6'"
    ).fetchone()
    assert row is not None
    return int(row["calls"])


async def test_a_fetch_leased_set_based_answers_and_writes_as_run_by_run(db: Database, dsn: str) -> None:
    await publish_all(db)
    scenarios = [Scenario(**{**s.__dict__, "ids": []}) for s in SCENARIOS]
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as admin:
        admin.execute(
            "UPDATE dw.workflow_plans SET plan = jsonb_set(plan, '{maxParallelActions}', '0')"
            " WHERE workflow_id = 'fx-no-slot'"
        )
        for scenario in scenarios:
            for queue in QUEUES:
                execution_id = await start_on(db, scenario.workflow_id, queue, scenario.tenant)
                scenario.ids.append(execution_id)
                if scenario.setup:
                    admin.execute(f"UPDATE dw.executions SET {scenario.setup} WHERE id = %s", (execution_id,))
                if scenario.second_job:
                    admin.execute("SELECT dw.defer_run_job_v1(%s, %s, NULL)", (execution_id, queue))

        answers: list[dict[str, list[tuple[Any, ...]]]] = []
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("SET track_functions = 'pl'")
            conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(APP_ROLE)))
            for world, (version, queue) in enumerate(zip(("v1", "v2"), QUEUES, strict=True)):
                locked = [s.ids[world] for s in scenarios if s.locked]
                with rows_locked(dsn, locked), conn.transaction():
                    before = v6_calls(conn)
                    rows = fetch(conn, version, queue)
                    calls = v6_calls(conn) - before
                by_run: dict[str, list[tuple[Any, ...]]] = {}
                for row in sorted(rows, key=lambda r: r["job_id"]):
                    by_run.setdefault(row["execution_id"], []).append(
                        (row["outcome"], row["lease_token"], without_times(row["run"]), row["nodes"], row["started"])
                    )
                answers.append(by_run)
                if version == "v2" and calls != V6_CALLS:
                    # Once seen in a full run (5 calls), never alone: say what each run got and who else
                    # was connected, so that the next occurrence tells why.
                    outcomes = {s.name: [a[0] for a in by_run.get(str(s.ids[1]), [])] for s in scenarios}
                    others = admin.execute(
                        "SELECT application_name, state, left(query, 120) AS query FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    ).fetchall()
                    pytest.fail(
                        f"only the runs the set-based statements leave go run by run: {calls} calls of"
                        f" try_acquire_execution_v6, not {V6_CALLS}; outcomes {outcomes}; other sessions {others}"
                    )
                # Every job of the queue was fetched, each once.
                assert len(rows) == sum(1 + s.second_job for s in scenarios)

        for scenario in scenarios:
            one, other = scenario.ids
            assert answers[0][str(one)] == answers[1][str(other)], scenario.name
            assert state(admin, one) == state(admin, other), scenario.name

        # What the scenarios were meant to be (so that the comparison above compares something).
        def outcome(name: str) -> list[tuple[Any, ...]]:
            scenario = next(s for s in scenarios if s.name == name)
            return answers[1][str(scenario.ids[1])]

        def first(name: str, pick: Callable[[tuple[Any, ...]], Any]) -> Any:
            return pick(outcome(name)[0])

        assert first("fresh", lambda a: (a[0], a[1], a[4])) == ("acquired", 1, ["a"])
        assert [(n["nodeId"], n["status"]) for n in outcome("fresh")[0][3]] == [("a", "Running"), ("b", "Pending")]
        assert first("fresh-parallel", lambda a: a[4]) == ["s"]
        assert first("other-tenant", lambda a: a[0]) == "acquired"
        assert first("no-slot", lambda a: (a[0], a[4])) == ("acquired", [])
        assert first("limited", lambda a: (a[0], a[4])) == ("acquired", ["a"])
        assert first("cancel-requested", lambda a: a[0]) == "finished"
        assert first("suspend-requested", lambda a: a[0]) == "suspended"
        assert first("past-deadline", lambda a: (a[0], a[4])) == ("acquired", [])
        assert first("lease-expired", lambda a: (a[0], a[1], a[4])) == ("acquired", 4, [])
        assert [a[0] for a in outcome("two-jobs")] == ["acquired", "held"]
        assert first("locked", lambda a: a[0]) is None
        events = state(admin, next(s for s in scenarios if s.name == "fresh").ids[1])["events"]
        assert [(e["type"], e["node_id"]) for e in events] == [
            ("execution_requested", None),
            ("execution_started", None),
            ("node_started", "a"),
        ]
        assert events[1]["details"] == {
            "worker": "fetcher",
            "leaseToken": 1,
            "previousStatus": "Pending",
            "previousOwner": None,
        }


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_a_batch_keeps_procrastinates_locks_between_its_jobs(db: Database, version: str) -> None:
    """Two jobs with one lock are never in one batch: v1 fetches one job at a time, each fetch seeing the
    ones before it; v2 fetches them in one statement, where the later job of a lock sees the earlier
    still queued and is not taken. The next fetch takes none of that lock while one is 'doing'."""
    defer = (
        "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('q', %s, 0, %s, NULL, '{}'::jsonb,"
        " NULL)::procrastinate_job_to_defer_v1])"
    )
    fetch = (
        f"SELECT (f.job).task_name, f.outcome FROM dw.fetch_run_jobs_{version}(ARRAY['q']::varchar[], NULL,"
        " 'dw.run_execution', 'w', 30, true, 10) f"
    )
    async with db.connection() as conn:
        for task, lock in (("l1", "L"), ("l2", "L"), ("free", None), ("l3", "L")):
            await conn.execute(defer, (task, lock))
        cur = await conn.execute(fetch)
        assert sorted(await cur.fetchall()) == [("free", None), ("l1", None)]
        cur = await conn.execute(fetch)
        assert await cur.fetchall() == []


async def test_a_child_whose_cancel_was_requested_is_left_to_its_task(db: Database, dsn: str) -> None:
    """v2 takes no lease for it (v1 ended it in the fetch): its end locks its parent's row, while the
    fetch holds every job of its batch, perhaps the parent's, which a cancel of the parent waits to
    delete. Its job's task acquires it, outside the fetch, and ends it there."""
    await publish(db, wf("fx-pair", echo("a", to("b")), echo("b")))
    parent = await start_on(db, "fx-pair", "fetch-child", "default")
    child = await start_on(db, "fx-pair", "fetch-child", "default")
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as admin:
        admin.execute(
            "UPDATE dw.executions SET parent_execution_id = %s, parent_node_id = 'a', depth = 1,"
            " cancel_requested_at = now() WHERE id = %s",
            (parent, child),
        )
        rows = {row["execution_id"]: row for row in fetch(admin, "v2", "fetch-child")}
        assert rows[str(child)]["outcome"] is None
        assert rows[str(parent)]["outcome"] == "acquired"
        run = admin.execute("SELECT status, lease_owner FROM dw.executions WHERE id = %s", (child,)).fetchone()
        assert run == {"status": "Pending", "lease_owner": None}
    # The task's own acquire ends it, as the fetch of v1 did.
    acquired = await db.runs.acquire(child, owner="w", lease_seconds=30, start=True)
    assert acquired.outcome == "finished"


async def test_a_child_its_cancelled_parent_no_longer_wants_is_left_to_its_task(db: Database, dsn: str) -> None:
    """Its cancel is not requested yet (the cascade's job waits with a dead worker): v2 took its
    lease set-based and started its first node. It is left to its task now, whose acquire cancels
    it as the cascade would (dw.child_unwanted_v1)."""
    await publish(db, wf("fx-pair", echo("a", to("b")), echo("b")))
    parent = await start_on(db, "fx-pair", "fetch-unwanted", "default")
    child = await start_on(db, "fx-pair", "fetch-unwanted", "default")
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as admin:
        admin.execute(
            "UPDATE dw.executions SET parent_execution_id = %s, parent_node_id = 'a', depth = 1 WHERE id = %s",
            (parent, child),
        )
        admin.execute("UPDATE dw.executions SET status = 'Cancelled', ended_at = now() WHERE id = %s", (parent,))
        rows = {row["execution_id"]: row for row in fetch(admin, "v2", "fetch-unwanted")}
        assert rows[str(child)]["outcome"] is None
        run = admin.execute("SELECT status, lease_owner FROM dw.executions WHERE id = %s", (child,)).fetchone()
        assert run == {"status": "Pending", "lease_owner": None}
    acquired = await db.runs.acquire(child, owner="w", lease_seconds=30, start=True)
    assert acquired.outcome == "finished"
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as admin:
        run = admin.execute("SELECT status, cancel_reason FROM dw.executions WHERE id = %s", (child,)).fetchone()
    assert run == {"status": "Cancelled", "cancel_reason": f"its parent execution {parent} ended"}

"""Issue 5: the execution log, reporting views, the reporting role, dead letters and redrive,
metrics, job-failure letters."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from dataworkflows.actions import default_registry
from dataworkflows.api.app import create_app
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.errors import DatabaseUnavailable
from dataworkflows.runtime import Runtime, RuntimeSettings
from dataworkflows.workers.app import build_app
from tests.conftest import current_templates, load_fixture, publish, start
from tests.integration.test_api import assert_problem
from tests.integration.test_runtime import FAST_RETRY, echo, make_runtime, to, wf


async def event_log(db: Database, execution_id: UUID) -> list[tuple[str | None, str, Any]]:
    rows = await db.fetch_all("list_events", id=execution_id, after=0, limit=1000)
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids) and [r["at"] for r in rows] == sorted(r["at"] for r in rows), "in order"
    return [(r["node_id"], r["type"], r["details"].get("attempt")) for r in rows]


async def run(db: Database, runtime: Runtime, raw: dict[str, Any], trigger: dict[str, Any] | None = None) -> UUID:
    await publish(db, raw, runtime.conditions)  # type: ignore[arg-type]
    execution_id = await start(db, raw["id"], trigger)
    await runtime.run_execution(execution_id)
    return execution_id


async def test_events_are_complete_and_ordered_for_the_seed_fixtures(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    retry = load_fixture("bundle2/retry-workflow.json")
    retry["nodes"][0]["retryPolicy"] = FAST_RETRY
    execution_id = await run(db, runtime, retry)
    assert await event_log(db, execution_id) == [
        (None, "execution_requested", None),
        (None, "execution_started", None),
        ("transient-fail", "node_started", 1),
        ("transient-fail", "node_retry_scheduled", 1),
        ("transient-fail", "node_started", 2),
        ("transient-fail", "node_retry_scheduled", 2),
        ("transient-fail", "node_started", 3),
        ("transient-fail", "node_succeeded", 3),
        ("success", "node_started", 1),
        ("success", "node_succeeded", 1),
        (None, "execution_succeeded", None),
    ]

    execution_id = await run(db, runtime, load_fixture("bundle3/conditional-branch-workflow.json"), {"status": "x"})
    log = await event_log(db, execution_id)
    assert log[:4] == [
        (None, "execution_requested", None),
        (None, "execution_started", None),
        ("check", "node_started", 1),
        ("check", "node_succeeded", 1),
    ]
    assert ("approved", "node_skipped", None) in log and ("rejected", "node_succeeded", 1) in log
    assert log[-1] == (None, "execution_succeeded", None)

    execution_id = await run(db, runtime, load_fixture("bundle2/permanent-failure-workflow.json"))
    assert (await event_log(db, execution_id))[-3:] == [
        ("boom", "node_failed", 1),
        ("after", "node_skipped", None),
        (None, "execution_failed", None),
    ]


async def test_reporting_views_give_the_right_figures(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    for _ in range(2):
        await run(db, runtime, load_fixture("bundle1/simple-echo-workflow.json"))
    failed = await run(db, runtime, load_fixture("bundle2/permanent-failure-workflow.json"))
    queued = await start(db, "simple-echo")

    async with db.connection() as conn:
        stats = await (
            await conn.execute(
                "SELECT attempts, succeeded, failed, failure_rate, p50_seconds >= 0, p95_seconds >= p50_seconds"
                " FROM dw.v_action_stats WHERE action_type = 'core.echo'"
            )
        ).fetchone()
        assert stats == (6, 5, 1, pytest.approx(0.1667, abs=1e-4), True, True)
        # An attempt its worker's death cut short (retried without using the budget) and one a cancel
        # stopped are no failures of the action, and their durations (a lease's length) are not its.
        await conn.execute(
            "INSERT INTO dw.action_executions (execution_id, node_id, action_type, attempt, status, error,"
            " start_time, end_time) VALUES"
            " (%s, 'boom', 'core.echo', 8, 'RetriableFailure', '{\"code\": \"attempt_interrupted\"}',"
            "  now() - interval '1 hour', now()),"
            " (%s, 'boom', 'core.echo', 9, 'Cancelled', '{\"code\": \"cancelled\"}', now() - interval '1 hour', now())",
            (failed, failed),
        )
        stats = await (
            await conn.execute(
                "SELECT attempts, succeeded, failed, failure_rate, interrupted, cancelled, p95_seconds < 3600"
                " FROM dw.v_action_stats WHERE action_type = 'core.echo'"
            )
        ).fetchone()
        assert stats == (8, 5, 1, pytest.approx(0.1667, abs=1e-4), 1, 1, True)
        # The same per period, over the attempts of the last hour and day (the two added above started
        # an hour ago: in the day, not the hour).
        recent = {
            r[0]: r[1:]
            for r in await (
                await conn.execute(
                    "SELECT period, attempts, succeeded, failed, interrupted, cancelled"
                    " FROM dw.v_action_health WHERE action_type = 'core.echo'"
                )
            ).fetchall()
        }
        assert recent == {"1 hour": (6, 5, 1, 0, 0), "1 day": (8, 5, 1, 1, 1)}
        health = {
            (r[0], r[1]): r[2:]
            for r in await (
                await conn.execute(
                    "SELECT workflow_id, period, executions, succeeded, failed, in_flight, success_rate"
                    " FROM dw.v_workflow_health WHERE workflow_id IN ('simple-echo', 'permanent-failure')"
                )
            ).fetchall()
        }
        assert health[("simple-echo", "1 hour")] == (3, 2, 0, 1, 1)
        assert health[("simple-echo", "1 day")] == (3, 2, 0, 1, 1)
        assert health[("permanent-failure", "1 hour")] == (1, 0, 1, 0, 0)
        # A run of two days ago is in neither period, and the view does not read it: it reads the
        # last day's runs by their creation time, not the workflow's whole history (it did).
        await conn.execute("UPDATE dw.executions SET created_at = now() - interval '2 days' WHERE id = %s", (failed,))
        failures = await (
            await conn.execute(
                "SELECT period, executions FROM dw.v_workflow_health WHERE workflow_id = 'permanent-failure'"
                " ORDER BY period"
            )
        ).fetchall()
        assert failures == [("1 day", 0), ("1 hour", 0)], failures
        # Nor its attempts, in v_action_health: it reads the last day's runs, then their attempts.
        failed_echo = await (
            await conn.execute(
                "SELECT period, failed FROM dw.v_action_health WHERE action_type = 'core.echo' ORDER BY period"
            )
        ).fetchall()
        assert failed_echo == [("1 day", 0), ("1 hour", 0)], failed_echo
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = (await (await conn.execute("EXPLAIN (FORMAT JSON) SELECT * FROM dw.v_workflow_health")).fetchone())[0]
        scans = [n for n in _plan_nodes(plan[0]["Plan"]) if n.get("Relation Name") == "executions"]
        bounded = [n.get("Index Cond", "") + n.get("Recheck Cond", "") for n in scans]
        assert scans and all("created_at" in cond for cond in bounded), scans
        # (On these few rows a read of the whole table is the cheaper plan: the plan is asked without it.)
        await conn.execute("SET enable_seqscan = off")
        plan = (await (await conn.execute("EXPLAIN (FORMAT JSON) SELECT * FROM dw.v_action_health")).fetchone())[0]
        await conn.execute("RESET enable_seqscan")
        nodes = _plan_nodes(plan[0]["Plan"])
        runs = [
            n.get("Index Cond", "") + n.get("Recheck Cond", "") for n in nodes if n.get("Relation Name") == "executions"
        ]
        attempts = [n.get("Index Cond", "") for n in nodes if n.get("Relation Name") == "action_executions"]
        assert runs and all("created_at" in cond for cond in runs), runs
        assert attempts and all("execution_id" in cond for cond in attempts), attempts
        row = await (
            await conn.execute(
                "SELECT status, error_code, run_seconds >= 0 FROM dw.v_executions WHERE id = %s", (failed,)
            )
        ).fetchone()
        assert row == ("Failed", "node_failed", True)
        durations = await (
            await conn.execute(
                "SELECT node_id, status, seconds IS NOT NULL FROM dw.v_node_durations WHERE execution_id = %s"
                " ORDER BY node_id",
                (failed,),
            )
        ).fetchall()
        assert durations == [("after", "Skipped", False), ("boom", "Failed", True), ("first", "Succeeded", True)]
        letters = await (await conn.execute("SELECT kind, node_id, attempts, open FROM dw.v_dead_letters")).fetchall()
        assert letters == [("node_failed", "boom", 1, True)]
        depth = await (await conn.execute("SELECT queue_name, status, jobs FROM dw.v_queue_depth")).fetchall()
        # These runs were driven in-process; a run that ends drops its queued jobs, so only the
        # start job of the run that never ran is still queued.
        assert depth == [("executions", "todo", 1)], queued


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


def test_reporting_role_reads_views_and_nothing_else(postgresql: psycopg.Connection) -> None:
    postgresql.autocommit = True
    name = f"report_{uuid.uuid4().hex[:8]}"
    postgresql.execute(f"CREATE ROLE {name} LOGIN")
    try:
        postgresql.execute(f"GRANT dw_reporting TO {name}")
        postgresql.execute(f"SET ROLE {name}")
        for view in [
            "v_executions",
            "v_node_durations",
            "v_action_stats",
            "v_action_health",
            "v_queue_depth",
            "v_workflow_health",
            "v_dead_letters",
            "v_waiting_runs",
            "v_pending_approvals",
            "v_webhook_deliveries",
            "v_schedule_ticks",
        ]:
            postgresql.execute(f"SELECT * FROM dw.{view}").fetchall()
        # The views run as their caller (so that row-level security shows a reporting login its
        # tenant): it reads the columns under them, never run inputs, attempt parameters, signal
        # and dead-letter payloads, secrets or the queue's job arguments.
        for statement in [
            "SELECT trigger FROM dw.executions",
            "SELECT parameters FROM dw.action_executions",
            "SELECT * FROM dw.execution_events",
            "SELECT payload FROM dw.dead_letters",
            "SELECT * FROM dw.signals",
            "SELECT * FROM dw.connections",
            "SELECT secret FROM dw.triggers",
            "SELECT content_hash FROM dw.webhook_deliveries",
            "SELECT * FROM dw.schedule_ticks",
            "SELECT * FROM procrastinate_jobs",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                postgresql.execute(statement)
        postgresql.execute("SET dw.tenant_id = 'default'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            postgresql.execute("SELECT dw.start_execution_v1('x', 'y', '{}', null, null, null, 'q')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            postgresql.execute("UPDATE dw.workflows SET description = 'x'")
    finally:
        postgresql.execute("RESET ROLE")
        postgresql.execute(f"DROP ROLE {name}")


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as test_client:
        yield test_client


async def test_dead_letter_and_redrive_end_to_end(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(
        "exhausts",
        echo("first", to("flaky")),
        echo("flaky", to("last"), simulateFailure="transient", failUntilAttempt=3),
        echo("last"),
    )
    raw["nodes"][1]["retryPolicy"] = {**FAST_RETRY, "maxAttempts": 2}
    execution_id = await run(db, runtime, raw)
    assert (await db.fetch_one("get_execution", id=execution_id))["status"] == "Failed"

    letters = (await client.get("/api/v1/dead-letters", params={"open": "true"})).json()["items"]
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["kind"], letter["nodeId"], letter["attempts"], letter["workflowId"]) == (
        "node_failed",
        "flaky",
        2,
        "exhausts",
    )
    assert letter["error"]["code"] == "simulated_transient_failure" and letter["payload"]["trigger"] == {}

    # A redrive takes no body: one with fields, or not JSON, is refused and redrives nothing.
    ops = {"X-Principal-Id": "ops"}
    for bad in ({"reason": "why"}, ["x"]):
        assert_problem(await client.post(f"/api/v1/dead-letters/{letter['id']}/redrive", json=bad, headers=ops), 400)
    garbage = await client.post(
        f"/api/v1/dead-letters/{letter['id']}/redrive",
        content=b"garbage",
        headers={**ops, "Content-Type": "application/json"},
    )
    assert_problem(garbage, 400)
    assert (await db.fetch_one("get_execution", id=execution_id))["status"] == "Failed"
    redriven = await client.post(f"/api/v1/dead-letters/{letter['id']}/redrive", json={}, headers=ops)
    assert redriven.status_code == 200, redriven.text
    assert (await db.fetch_one("get_execution", id=execution_id))["status"] == "Pending"
    assert await runtime.run_execution(execution_id) == "Succeeded"
    rows = [(r["node_id"], r["attempt"], r["status"]) for r in await db.fetch_all("list_attempts", id=execution_id)]
    assert rows == [
        ("first", 1, "Succeeded"),
        ("flaky", 1, "RetriableFailure"),
        ("flaky", 2, "RetriableFailure"),
        ("flaky", 3, "Succeeded"),
        ("last", 1, "Succeeded"),
    ], "first never ran again"
    log = [t for _, t, _ in await event_log(db, execution_id)]
    assert log.count("execution_redriven") == 1 and log[-1] == "execution_succeeded"

    again = assert_problem(await client.post(f"/api/v1/dead-letters/{letter['id']}/redrive"), 409)
    assert "already redriven" in again["detail"] and "ops" in again["detail"]
    # Its time as the API writes times (it was PostgreSQL's text, "2026-12-05 23:17:13.933411+00").
    redriven_at = (await client.get(f"/api/v1/dead-letters/{letter['id']}")).json()["redrivenAt"]
    assert f"already redriven at {redriven_at} by ops" in again["detail"], (again, redriven_at)
    assert (await client.get("/api/v1/dead-letters", params={"open": "true"})).json()["items"] == []
    assert (await client.get(f"/api/v1/dead-letters/{letter['id']}")).json()["redrivenBy"] == "ops"
    assert_problem(await client.get("/api/v1/dead-letters/999999"), 404)
    assert_problem(await client.post("/api/v1/dead-letters/999999/redrive"), 404)


async def test_worker_lost_letter_redrives(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo")
    async with db.connection() as conn:
        for _ in range(2):
            await db.fetch_one("try_acquire", id=execution_id, owner="dead", lease_seconds=30)
            await conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE status = 'todo'")
            await conn.execute("UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")
            await db.fetch_all("recover_executions", max_recoveries=1, stalled_worker_seconds=30, queue="executions")
    letter = (await client.get("/api/v1/dead-letters")).json()["items"][0]
    assert (letter["kind"], letter["attempts"]) == ("worker_lost", 2)
    assert (await client.post(f"/api/v1/dead-letters/{letter['id']}/redrive")).status_code == 200
    runtime = make_runtime(db, conditions)
    assert await runtime.run_execution(execution_id) == "Succeeded"


def job_context(job_id: int, execution_id: str) -> SimpleNamespace:
    """The JobContext a run_execution task reads, for a job Procrastinate fetched (no job manager of ours)."""
    return SimpleNamespace(
        app=SimpleNamespace(job_manager=None),
        job=SimpleNamespace(
            id=job_id,
            task_name="dw.run_execution",
            queue="executions",
            task_kwargs={"execution_id": execution_id},
            attempts=0,
            worker_id=None,
        ),
    )


async def test_a_failed_job_is_dead_lettered(db: Database, conditions: ConditionPool) -> None:
    class Exploding(Runtime):
        async def run_execution(self, execution_id: UUID, **lease: Any) -> str:
            raise RuntimeError("boom in the worker")

    runtime = Exploding(
        db, default_registry(), RuntimeSettings(worker_id="w"), conditions, templates=current_templates()
    )
    task = build_app(runtime).tasks["dw.run_execution"]
    execution_id = str(uuid.uuid4())
    context = job_context(42, execution_id)
    with pytest.raises(RuntimeError, match="boom"):
        await task.func(context, execution_id=execution_id)
    letter = (await db.fetch_all("list_dead_letters", open=None, kind="job_failed", before=None, limit=10))[0]
    assert (letter["job_id"], letter["execution_id"], letter["attempts"]) == (42, None, 1)
    assert letter["error"]["message"] == "RuntimeError: boom in the worker"
    assert "Traceback" in letter["error"]["traceback"]


async def test_a_run_whose_database_went_away_is_not_a_failed_job(db: Database, conditions: ConditionPool) -> None:
    """A review: over a PostgreSQL restart, runs whose job met the database away were marked failed
    jobs for good, each with a job_failed dead letter, though recovery resumed them and they
    succeeded. Such a job ends without a failure; the run's lease and recovery decide."""

    class Away(Runtime):
        async def run_execution(self, execution_id: UUID, **lease: Any) -> str:
            raise DatabaseUnavailable("the database is unavailable: couldn't get a connection after 9.94 sec")

    runtime = Away(db, default_registry(), RuntimeSettings(worker_id="w"), conditions, templates=current_templates())
    task = build_app(runtime).tasks["dw.run_execution"]
    execution_id = str(uuid.uuid4())
    context = job_context(43, execution_id)
    await task.func(context, execution_id=execution_id)  # no failure raised to Procrastinate
    assert await db.fetch_all("list_dead_letters", open=None, kind="job_failed", before=None, limit=10) == []


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_move_when_work_happens(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    before = {
        "finished": sample("dataworkflows_executions_finished_total", workflow_id="metrics-wf", status="Succeeded"),
        "attempts": sample("dataworkflows_attempts_total", action_type="core.echo", status="RetriableFailure"),
        "retries": sample("dataworkflows_retries_total", action_type="core.echo"),
        "durations": sample("dataworkflows_node_duration_seconds_count", action_type="core.echo", status="Succeeded"),
    }
    raw = wf("metrics-wf", echo("a", simulateFailure="transient", failUntilAttempt=2))
    raw["nodes"][0]["retryPolicy"] = FAST_RETRY
    await run(db, make_runtime(db, conditions), raw)
    assert sample("dataworkflows_executions_finished_total", workflow_id="metrics-wf", status="Succeeded") == (
        before["finished"] + 1
    )
    assert sample("dataworkflows_attempts_total", action_type="core.echo", status="RetriableFailure") == (
        before["attempts"] + 1
    )
    assert sample("dataworkflows_retries_total", action_type="core.echo") == before["retries"] + 1
    assert sample("dataworkflows_node_duration_seconds_count", action_type="core.echo", status="Succeeded") == (
        before["durations"] + 1
    )

    route = "/api/v1/workflows/{workflow_id}"
    seen = sample("dataworkflows_http_requests_total", method="GET", route=route, status="404")
    unmatched = {
        (method, status): sample("dataworkflows_http_requests_total", method=method, route="unmatched", status=status)
        for method, status in (("GET", "404"), ("DELETE", "405"), ("other", "405"))
    }
    await client.get("/api/v1/workflows/nope")
    scraped = await client.get("/metrics")
    text = scraped.text
    assert "dataworkflows_http_request_duration_seconds_bucket" in text
    # Prometheus's text format, its charset once (it was sent twice).
    assert scraped.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    assert sample("dataworkflows_http_requests_total", method="GET", route=route, status="404") == seen + 1
    # What the router refuses before any route: counted too, as "unmatched" (it was counted nowhere),
    # an invented method as "other"; a route's own 404 above is not counted twice.
    assert (await client.get("/no/such/path")).status_code == 404
    assert (await client.delete("/health/live")).status_code == 405
    assert (await client.request("FOO1", "/api/v1/executions")).status_code == 405
    for (method, status), before in unmatched.items():
        assert sample("dataworkflows_http_requests_total", method=method, route="unmatched", status=status) == (
            before + 1
        ), (method, status)


async def test_an_acknowledgement_waits_for_whoever_holds_the_run(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    """Its event must commit in id order with the run's other events (a follower reads after=N): like
    every other writer of a run's events, it takes the run's row first (it did not)."""
    runtime = make_runtime(db, conditions)
    execution_id = await run(db, runtime, wf("fails-held", echo("only", simulateFailure="permanent")))
    letters = (await client.get("/api/v1/dead-letters", params={"executionId": str(execution_id)})).json()["items"]
    async with db.connection() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (execution_id,))
        async with db.connection() as other, other.transaction():
            await other.execute("SET LOCAL lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                await other.execute("SELECT * FROM dw.acknowledge_dead_letter_v1(%s, 'ops', NULL)", (letters[0]["id"],))


async def test_a_dead_letter_can_be_acknowledged_once(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await run(db, runtime, wf("fails", echo("only", simulateFailure="permanent")))
    letter = (await client.get("/api/v1/dead-letters", params={"open": "true"})).json()["items"][0]

    acknowledged = await client.post(
        f"/api/v1/dead-letters/{letter['id']}/acknowledge",
        json={"note": "customer cancelled"},
        headers={"X-Principal-Id": "ops"},
    )
    assert acknowledged.status_code == 200, acknowledged.text
    body = acknowledged.json()
    assert (body["closeReason"], body["closedBy"], body["closeNote"]) == ("acknowledged", "ops", "customer cancelled")
    assert body["closedAt"] is not None and body["redrivenAt"] is None
    assert (await client.get("/api/v1/dead-letters", params={"open": "true"})).json()["items"] == []
    closed = (await client.get("/api/v1/dead-letters", params={"open": "false"})).json()["items"]
    assert [d["id"] for d in closed] == [letter["id"]]
    events = await db.fetch_all("list_events", id=execution_id, after=0, limit=1000)
    acknowledged_events = [e for e in events if e["type"] == "dead_letter_acknowledged"]
    assert [(e["principal"], e["details"]["note"]) for e in acknowledged_events] == [("ops", "customer cancelled")]

    # Once: a second acknowledgement or a redrive of a closed letter is a conflict.
    assert (
        "already closed"
        in assert_problem(await client.post(f"/api/v1/dead-letters/{letter['id']}/acknowledge"), 409)["detail"]
    )
    assert_problem(await client.post(f"/api/v1/dead-letters/{letter['id']}/redrive"), 409)
    assert_problem(await client.post("/api/v1/dead-letters/999999/acknowledge"), 404)
    assert_problem(await client.post(f"/api/v1/dead-letters/{2**63}/acknowledge"), 404)
    assert_problem(
        await client.post(f"/api/v1/dead-letters/{letter['id']}/acknowledge", json={"note": "x" * 3000}), 400
    )

"""Compensation (README "Compensation"): after a run ends Failed, TimedOut or Cancelled, the
compensations of its Succeeded nodes run, the last to succeed first, each an action attempt with its
own retries, recorded as rows and events. In-process: the runtime runs the run, and the worker
task's CompensationRunner its steps."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from dataworkflows.compensations import CompensationRunner
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.errors import Conflict
from dataworkflows.runtime import Runtime
from tests.conftest import publish, start
from tests.integration.test_runtime import FAST_RETRY, echo, events, make_runtime, to, wf

FAST = {**FAST_RETRY, "maxAttempts": 2}


def undo(node: dict[str, Any], message: str, **params: Any) -> dict[str, Any]:
    """The node with a core.echo compensation."""
    return {**node, "compensation": {"actionType": "core.echo", "parameters": {"message": message, **params}}}


def runner(db: Database, runtime: Runtime, *, park: float = 30.0, worker: str = "test-worker") -> CompensationRunner:
    return CompensationRunner(
        data=db.compensations,
        plans=runtime.plans,
        kinds=runtime.kinds,
        worker_id=worker,
        park_threshold_seconds=park,
        stopping=asyncio.Event(),
    )


async def run(db: Database, runtime: Runtime, raw: dict[str, Any], conditions: ConditionPool) -> UUID:
    await publish(db, raw, conditions)
    execution_id = await start(db, raw["id"], {"order": "A-17"})
    await runtime.run_execution(execution_id)
    return execution_id


async def compensate_jobs(db: Database, execution_id: UUID) -> list[dict[str, Any]]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT status, scheduled_at FROM procrastinate_jobs WHERE task_name = 'dw.compensate' "
            "AND args ->> 'run_id' = %s ORDER BY id",
            (str(execution_id),),
        )
        return [{"status": r[0], "scheduled_at": r[1]} for r in await cur.fetchall()]


async def test_a_failed_run_undoes_its_succeeded_nodes_last_first(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(
        "saga",
        undo(echo("reserve", to("charge")), "release {{ nodes.reserve.echo }} for {{ trigger.order }}"),
        undo(echo("charge", to("ship")), "refund {{ nodes.charge.echo }} ({{ execution.status }})"),
        echo("ship", simulateFailure="permanent"),
    )
    execution_id = await run(db, runtime, raw, conditions)
    execution = await db.executions.get(execution_id)
    assert execution.status == "Failed"
    steps = await db.compensations.steps(execution_id)
    assert [(s.position, s.node_id, s.status) for s in steps] == [(1, "charge", "Pending"), (2, "reserve", "Pending")]
    assert [j["status"] for j in await compensate_jobs(db, execution_id)] == ["todo"]

    assert await runner(db, runtime).run(execution_id) == "done"
    steps = await db.compensations.steps(execution_id)
    assert [(s.node_id, s.status, s.attempts, s.outputs) for s in steps] == [
        ("charge", "Succeeded", 1, {"echo": "refund charge (Failed)"}),
        ("reserve", "Succeeded", 1, {"echo": "release reserve for A-17"}),
    ]
    assert steps[0].ended_at <= steps[1].started_at
    async with db.connection() as conn:
        cur = await conn.execute("SELECT compensation_status FROM dw.executions WHERE id = %s", (execution_id,))
        assert (await cur.fetchone())[0] == "Compensated"
        cur = await conn.execute(
            "SELECT node_id, status FROM dw.v_compensations WHERE execution_id = %s ORDER BY position",
            (execution_id,),
        )
        assert await cur.fetchall() == [("charge", "Succeeded"), ("reserve", "Succeeded")]
    kinds = await events(db, execution_id)
    assert kinds[kinds.index("execution_failed") :] == [
        "execution_failed",
        "compensation_started",
        "compensation_attempt_started",
        "compensation_succeeded",
        "compensation_attempt_started",
        "compensation_succeeded",
        "compensation_ended",
    ]
    # A second job (a duplicate delivery) finds nothing to do and changes nothing.
    assert await runner(db, runtime).run(execution_id) == "done"
    assert len(await events(db, execution_id)) == len(kinds)


async def test_a_succeeded_run_and_a_handled_failure_compensate_nothing(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    handled = wf(
        "handled",
        undo(echo("a", to("b")), "undo a"),
        echo("b", to("fix", "failure"), simulateFailure="permanent"),
        echo("fix"),
    )
    execution_id = await run(db, runtime, handled, conditions)
    assert (await db.executions.get(execution_id)).status == "Succeeded"
    assert await db.compensations.steps(execution_id) == []
    assert await compensate_jobs(db, execution_id) == []


async def test_a_retriable_compensation_is_retried_and_a_failed_one_does_not_stop_the_others(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    a = undo(echo("a", to("b")), "undo a", simulateFailure="transient", failUntilAttempt=2)
    a["compensation"]["retryPolicy"] = FAST
    b = undo(echo("b", to("c")), "undo b", simulateFailure="permanent")
    raw = wf("retried", a, b, echo("c", simulateFailure="permanent"))
    execution_id = await run(db, runtime, raw, conditions)
    assert await runner(db, runtime).run(execution_id) == "done"
    steps = {s.node_id: s for s in await db.compensations.steps(execution_id)}
    assert (steps["b"].status, steps["b"].attempts, steps["b"].error["code"]) == (
        "Failed",
        1,
        "simulated_permanent_failure",
    )
    assert (steps["a"].status, steps["a"].attempts, steps["a"].error) == ("Succeeded", 2, None)
    async with db.connection() as conn:
        cur = await conn.execute("SELECT compensation_status FROM dw.v_executions WHERE id = %s", (execution_id,))
        assert (await cur.fetchone())[0] == "CompensationFailed"
    kinds = await events(db, execution_id)
    assert "compensation_attempt_failed" in kinds and "compensation_failed" in kinds


async def test_compensate_on_limits_the_ends_that_compensate(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(
        "only-cancel",
        undo(echo("a", to("b")), "undo a"),
        echo("b", simulateFailure="permanent"),
        compensateOn=["Cancelled"],
    )
    execution_id = await run(db, runtime, raw, conditions)
    assert (await db.executions.get(execution_id)).status == "Failed"
    assert await db.compensations.steps(execution_id) == []
    assert await compensate_jobs(db, execution_id) == []


async def test_a_cancelled_run_compensates(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("cancelled", undo(echo("a", to("b")), "undo a"), echo("b", delayMs=60_000))
    await publish(db, raw, conditions)
    execution_id = await start(db, raw["id"])
    task = asyncio.create_task(runtime.run_execution(execution_id))
    for _ in range(500):
        states = await db.fetch_all("list_node_states", id=execution_id)
        if any(s["node_id"] == "b" and s["status"] == "Running" for s in states):
            break
        await asyncio.sleep(0.02)
    await db.control.cancel(execution_id, principal="ops", reason="changed my mind")
    assert await asyncio.wait_for(task, 30) == "Cancelled"
    assert await runner(db, runtime).run(execution_id) == "done"
    steps = await db.compensations.steps(execution_id)
    assert [(s.node_id, s.status) for s in steps] == [("a", "Succeeded")]


async def test_a_retry_past_the_park_threshold_is_a_job_for_then(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    a = undo(echo("a", to("b")), "undo a", simulateFailure="transient", failUntilAttempt=2)
    a["compensation"]["retryPolicy"] = {**FAST, "initialDelay": "PT1H", "maxDelay": "PT2H"}
    raw = wf("parked", a, echo("b", simulateFailure="permanent"))
    execution_id = await run(db, runtime, raw, conditions)
    assert await runner(db, runtime, park=30.0).run(execution_id) == "later"
    (step,) = await db.compensations.steps(execution_id)
    assert step.status == "Pending" and step.attempts == 1
    assert step.next_attempt_at is not None and step.next_attempt_at > step.started_at + timedelta(minutes=29)
    jobs = await compensate_jobs(db, execution_id)
    assert [j["status"] for j in jobs] == ["todo", "todo"]
    assert jobs[1]["scheduled_at"] == step.next_attempt_at


async def test_a_lost_claim_is_taken_over_and_the_late_record_refused(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("lost", undo(echo("a", to("b")), "undo a"), echo("b", simulateFailure="permanent"))
    execution_id = await run(db, runtime, raw, conditions)
    first = await db.compensations.claim(execution_id, "worker-1")
    assert (first.outcome, first.node_id, first.attempt) == ("claimed", "a", 1)
    held = await db.compensations.claim(execution_id, "worker-2")
    assert held.outcome == "held"
    # A job that finds the step held queues one for when the claim runs out (its holder may be gone).
    assert await runner(db, runtime, worker="worker-2").run(execution_id) == "held"
    jobs = await compensate_jobs(db, execution_id)
    assert [j["status"] for j in jobs] == ["todo", "todo"] and jobs[1]["scheduled_at"] == held.due_at
    # worker-1 goes silent: its claim runs out.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE dw.compensations SET claimed_until = now() - interval '1 second' WHERE execution_id = %s",
            (execution_id,),
        )
    second = await db.compensations.claim(execution_id, "worker-2")
    assert (second.outcome, second.attempt) == ("claimed", 2)
    assert not await db.compensations.record(execution_id, "a", 1, "Succeeded", outputs={"late": True})
    assert await db.compensations.record(execution_id, "a", 2, "Succeeded", outputs={"echo": "undo a"})
    assert (await db.compensations.claim(execution_id, "worker-2")).outcome == "done"
    assert "compensation_attempt_interrupted" in await events(db, execution_id)


async def test_a_compensated_run_is_not_redriven(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("no-redrive", undo(echo("a", to("b")), "undo a"), echo("b", simulateFailure="permanent"))
    execution_id = await run(db, runtime, raw, conditions)
    letters = await db.operations.dead_letters(
        open_only=True, kind=None, before=None, limit=10, execution_id=execution_id
    )
    assert letters
    with pytest.raises(Conflict, match="compensation ran"):
        await db.operations.redrive(letters[0].id, principal="ops", queue="executions")


async def test_a_failed_step_files_a_letter_whose_redrive_runs_it_again(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    # Its first two attempts fail (transient), and it has two: the step fails for good; the
    # redrive's attempt is its third, which succeeds.
    a = undo(echo("a", to("b")), "undo a", simulateFailure="transient", failUntilAttempt=3)
    a["compensation"]["retryPolicy"] = FAST
    raw = wf("redriven", a, echo("b", simulateFailure="permanent"))
    execution_id = await run(db, runtime, raw, conditions)
    assert await runner(db, runtime).run(execution_id) == "done"
    (step,) = await db.compensations.steps(execution_id)
    assert (step.status, step.attempts) == ("Failed", 2)
    letters = await db.operations.dead_letters(
        open_only=True, kind="compensation_failed", before=None, limit=10, execution_id=execution_id
    )
    assert len(letters) == 1
    letter = letters[0]
    assert letter.error["code"] == "compensation_failed"
    assert letter.error["message"] == (
        "1 of 1 compensation steps failed: a (simulated_transient_failure: Simulated transient failure (attempt 2))"
    )
    assert letter.payload["failedSteps"] == ["a"]

    await db.operations.redrive(letter.id, principal="ops", queue="executions")
    (step,) = await db.compensations.steps(execution_id)
    assert (step.status, step.attempts, step.max_attempts) == ("Pending", 2, 2)
    assert await runner(db, runtime).run(execution_id) == "done"
    (step,) = await db.compensations.steps(execution_id)
    assert (step.status, step.attempts, step.outputs) == ("Succeeded", 3, {"echo": "undo a"})
    async with db.connection() as conn:
        cur = await conn.execute("SELECT status, compensation_status FROM dw.executions WHERE id = %s", (execution_id,))
        assert await cur.fetchone() == ("Failed", "Compensated")
    # Once: a second redrive of the letter is refused.
    with pytest.raises(Conflict, match="already redriven"):
        await db.operations.redrive(letter.id, principal="ops", queue="executions")
    kinds = await events(db, execution_id)
    assert kinds.count("compensation_ended") == 2 and "compensation_redriven" in kinds


async def test_definitions_refuse_compensations_where_they_cannot_be(db: Database, conditions: ConditionPool) -> None:
    from dataworkflows.errors import DefinitionError

    bad = wf(
        "bad-undo",
        {
            "id": "wait",
            "nodeType": "delay",
            "parameters": {"duration": "PT1S"},
            "compensation": {"actionType": "core.echo"},
            "edges": [{"targetNode": "a"}],
        },
        {**echo("a"), "compensation": {"actionType": "no.such", "parameters": {}}},
        {**echo("b"), "compensation": {"actionType": "core.echo", "parameters": {"message": "{{ nodes.a.echo "}}},
        compensateOn=["Failed", "Lost", "Failed"],
    )
    bad["nodes"][1]["edges"] = [{"targetNode": "b"}]
    with pytest.raises(DefinitionError) as caught:
        await publish(db, bad, conditions)
    found = {(p.pointer, p.code) for p in caught.value.problems}
    assert {
        ("/nodes/0/compensation", "not_allowed"),
        ("/nodes/1/compensation/actionType", "unknown_action_type"),
        ("/nodes/2/compensation/parameters", "template_syntax"),
        ("/orchestration/compensateOn/1", "enum"),
        ("/orchestration/compensateOn/2", "duplicate"),
    } <= found, found


async def test_the_trip_booking_example_releases_what_it_booked(db: Database, conditions: ConditionPool) -> None:
    from tests.conftest import load_fixture

    runtime = make_runtime(db, conditions)
    raw = load_fixture("bundle8/trip-booking-saga-workflow.json")
    await publish(db, raw, conditions)
    failing = await start(db, raw["id"], raw["metadata"]["sampleTrigger"])
    assert await runtime.run_execution(failing) == "Failed"
    assert await runner(db, runtime).run(failing) == "done"
    assert [(s.node_id, s.outputs) for s in await db.compensations.steps(failing)] == [
        ("reserve-hotel", {"echo": "released hotel H-T-100"}),
        ("reserve-flight", {"echo": "released flight F-T-100 for ada (Failed)"}),
    ]
    paid = await start(db, raw["id"], {**raw["metadata"]["sampleTrigger"], "failPayment": False})
    assert await runtime.run_execution(paid) == "Succeeded"
    assert await db.compensations.steps(paid) == []


async def test_a_compensating_request_sends_its_own_idempotency_key(
    db: Database, conditions: ConditionPool, templates: Any
) -> None:
    """A review: a compensation acts under its node's id, and http.request's default key is
    execution:node:generation, so the refund's POST carried the very Idempotency-Key of the charge's
    POST: a de-duplicating receiver (a payment API keys idempotency per account) answered the refund
    with the charge's stored answer, or refused it, and nothing was undone."""
    from dataworkflows.actions import default_registry
    from dataworkflows.circuit_breaker import CircuitBreakers
    from dataworkflows.config import Settings
    from dataworkflows.http_client import make_http_client
    from dataworkflows.runtime import RuntimeSettings
    from dataworkflows.workers.app import build_services
    from tests.fakes import fake_servers

    async with fake_servers() as fakes:
        settings = Settings(http_allowed_hosts=f"127.0.0.1:{fakes.port}")
        http = make_http_client(settings.allowed_hosts, circuits=CircuitBreakers(failures=0))
        try:
            runtime = Runtime(
                db,
                default_registry(),
                RuntimeSettings(worker_id="w", lease_seconds=10),
                conditions,
                build_services(settings, db, http),
                templates=templates,
            )
            charge = {
                "id": "charge",
                "actionType": "http.request",
                "parameters": {"method": "POST", "url": f"{fakes.base}/http/record/charge"},
                "compensation": {
                    "actionType": "http.request",
                    "parameters": {"method": "POST", "url": f"{fakes.base}/http/record/refund"},
                },
                "edges": [{"targetNode": "ship"}],
            }
            execution_id = await run(
                db, runtime, wf("refund-key", charge, echo("ship", simulateFailure="permanent")), conditions
            )
            assert await runner(db, runtime).run(execution_id) == "done"
        finally:
            await http.aclose()
    (step,) = await db.compensations.steps(execution_id)
    assert step.status == "Succeeded", step
    (charged,) = fakes.state.idempotency_keys["charge"]
    (refunded,) = fakes.state.idempotency_keys["refund"]
    assert charged is not None and refunded is not None
    assert refunded != charged


async def test_a_stopping_worker_does_not_wait_out_a_retry(db: Database, conditions: ConditionPool) -> None:
    """A review: a step's retry due within the park threshold (30 s) was waited for with a plain
    sleep, deaf to the worker's stop: a SIGTERM then held the worker for its whole grace (10 s) and
    the job was cut off at its end. Now a stop leaves the wait at once, with a job for the retry."""
    runtime = make_runtime(db, conditions)
    a = undo(echo("a", to("b")), "undo a", simulateFailure="transient", failUntilAttempt=2)
    a["compensation"]["retryPolicy"] = {**FAST, "initialDelay": "PT20S", "maxDelay": "PT20S"}
    raw = wf("stopping", a, echo("b", simulateFailure="permanent"))
    execution_id = await run(db, runtime, raw, conditions)
    worker = runner(db, runtime, park=30.0)
    task = asyncio.create_task(worker.run(execution_id))
    for _ in range(500):
        (step,) = await db.compensations.steps(execution_id)
        if step.next_attempt_at is not None:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    worker.stopping.set()
    assert await asyncio.wait_for(task, 3) == "later"
    (step,) = await db.compensations.steps(execution_id)
    assert (step.status, step.attempts) == ("Pending", 1)
    jobs = await compensate_jobs(db, execution_id)
    assert [j["status"] for j in jobs] == ["todo", "todo"]
    assert jobs[1]["scheduled_at"] == step.next_attempt_at


async def test_a_step_loads_only_the_outputs_a_template_of_the_run_reads(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: every step's attempt loaded the outputs of every Succeeded node, those nothing reads
    among them (node_states.outputs_used false), which a run's worker never loads: a run of large
    unread outputs (stored, not counted against DW_MAX_RUN_SCOPE_BYTES) took each compensation
    attempt's worker that much memory again, or past PostgreSQL's 1 GB for one jsonb value."""
    runtime = make_runtime(db, conditions)
    raw = wf(
        "unread",
        echo("big", to("a"), message="x" * 200_000),
        undo(echo("a", to("b")), "undo {{ nodes.a.echo }}"),
        echo("b", simulateFailure="permanent"),
    )
    execution_id = await run(db, runtime, raw, conditions)
    scope = await db.compensations.scope(execution_id)
    assert scope is not None
    assert set(scope.nodes) == {"a"}
    assert await runner(db, runtime).run(execution_id) == "done"
    (step,) = await db.compensations.steps(execution_id)
    assert (step.status, step.outputs) == ("Succeeded", {"echo": "undo a"})


async def _drain(db: Database, runtime: Runtime) -> None:
    """Runs queued jobs (runs, cancels, compensations) one by one until none is left."""
    from tests.integration.test_subworkflows import sql

    for _ in range(200):
        rows = await sql(
            db,
            "DELETE FROM procrastinate_jobs WHERE id = (SELECT id FROM procrastinate_jobs WHERE status = 'todo'"
            " AND (scheduled_at IS NULL OR scheduled_at <= now()) ORDER BY id LIMIT 1) RETURNING task_name, args",
        )
        if not rows:
            return
        task, args = rows[0]
        if task == "dw.cancel_children":
            await db.control.cancel_children(UUID(args["parent_execution_id"]))
        elif task == "dw.compensate":
            await runner(db, runtime).run(UUID(args["run_id"]))
        else:
            await runtime.run_execution(UUID(args["execution_id"]))
    raise AssertionError("jobs still queued")


async def _open_letters(db: Database, execution_id: UUID, kind: str) -> list[Any]:
    return await db.operations.dead_letters(open_only=True, kind=kind, before=None, limit=10, execution_id=execution_id)


@pytest.mark.parametrize("parent_letter", ["acknowledged", "redriven"])
async def test_a_childs_compensation_letter_outlives_its_parents_letter(
    db: Database, conditions: ConditionPool, parent_letter: str
) -> None:
    """A review: a parent's letter, acknowledged or redriven, closed the letters of the children whose
    end it had taken as superseded, and a child's compensation_failed letter among them: that letter
    says an effect of the child's was not undone, which no redrive of the parent's node undoes (it
    starts a new child); closed, nobody was told, and retention then removed the tree."""
    from tests.integration.test_subworkflows import sub

    runtime = make_runtime(db, conditions)
    book = undo(echo("book", to("boom")), "release", simulateFailure="permanent")
    await publish(db, wf("child-saga", book, echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("parent-of-saga", sub("call", "child-saga")), conditions)
    parent = await start(db, "parent-of-saga")
    await _drain(db, runtime)
    assert (await db.executions.get(parent)).status == "Failed"
    (child,) = [
        c["id"] for c in await db.fetch_all("list_children", id=parent, after_created=None, after_id=None, limit=None)
    ]
    (letter,) = await _open_letters(db, child, "compensation_failed")
    (parents,) = await _open_letters(db, parent, "node_failed")
    if parent_letter == "acknowledged":
        await db.operations.acknowledge(parents.id, principal="ops", note="seen")
    else:
        await db.operations.redrive(parents.id, principal="ops", queue="executions")
    assert [d.id for d in await _open_letters(db, child, "compensation_failed")] == [letter.id]


async def test_a_childs_compensation_letter_outlives_a_parent_that_handled_its_failure(
    db: Database, conditions: ConditionPool
) -> None:
    """The parent's end closes the letters of the children whose failure it handled: not a child's
    compensation_failed letter (filed while the parent went on)."""
    from tests.integration.test_subworkflows import sub
    from tests.integration.test_waits import kind_node

    runtime = make_runtime(db, conditions)
    book = undo(echo("book", to("boom")), "release", simulateFailure="permanent")
    await publish(db, wf("child-saga2", book, echo("boom", simulateFailure="permanent")), conditions)
    await publish(
        db,
        wf(
            "handler",
            sub("call", "child-saga2", to("later", "failure")),
            kind_node("delay", "later", (), {"duration": "PT1S"}),
        ),
        conditions,
    )
    parent = await start(db, "handler")
    await _drain(db, runtime)
    for _ in range(100):
        if (await db.executions.get(parent)).status == "Succeeded":
            break
        await asyncio.sleep(0.1)
        await db.operations.wake_due_runs(limit=10, queue="executions")
        await _drain(db, runtime)
    assert (await db.executions.get(parent)).status == "Succeeded"
    (child,) = [
        c["id"] for c in await db.fetch_all("list_children", id=parent, after_created=None, after_id=None, limit=None)
    ]
    assert len(await _open_letters(db, child, "compensation_failed")) == 1


async def test_an_interrupted_attempt_does_not_use_the_retry_budget(db: Database, conditions: ConditionPool) -> None:
    """A review: with maxAttempts 1, a worker lost (or a database blip) in the step's only attempt
    failed the step for good; a node's interrupted attempt is tried again without counting."""
    runtime = make_runtime(db, conditions)
    a = undo(echo("a", to("b")), "undo a")
    a["compensation"]["retryPolicy"] = {**FAST, "maxAttempts": 1}
    raw = wf("interrupted", a, echo("b", simulateFailure="permanent"))
    execution_id = await run(db, runtime, raw, conditions)

    async def lose_claim() -> None:
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE dw.compensations SET claimed_until = now() - interval '1 second' WHERE execution_id = %s",
                (execution_id,),
            )

    first = await db.compensations.claim(execution_id, "worker-1")
    assert (first.attempt, first.tries) == (1, 1)
    await lose_claim()
    second = await db.compensations.claim(execution_id, "worker-2")
    assert (second.outcome, second.attempt, second.tries) == ("claimed", 2, 1)
    # At most 10 interruptions: the 11th fails the step (an action that kills its worker each time).
    for _ in range(9):
        await lose_claim()
        assert (await db.compensations.claim(execution_id, "worker-2")).outcome == "claimed"
    await lose_claim()
    assert (await db.compensations.claim(execution_id, "worker-2")).outcome == "done"
    (step,) = await db.compensations.steps(execution_id)
    assert (step.status, step.attempts, step.error["code"]) == ("Failed", 11, "too_many_interruptions")


async def test_a_childs_redrive_refusal_does_not_point_at_a_compensated_parents_letter(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: refused because its parent took its end, a child's redrive named the parent's newest
    open letter to redrive instead: the parent's compensation_failed letter (which runs compensation
    steps, not the node), or a letter of a compensated parent (whose redrive is refused)."""
    from tests.integration.test_subworkflows import children, drain, open_letter, sub

    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    parent = wf(
        "books-then-calls",
        undo(echo("book", to("call")), "unbook", simulateFailure="permanent"),
        sub("call", "breaks"),
    )
    parent["nodes"][0]["compensation"]["retryPolicy"] = {**FAST, "maxAttempts": 1}
    await publish(db, parent, conditions)
    root = await start(db, "books-then-calls")
    await drain(db, runtime)
    assert await runner(db, runtime).run(root) == "done"
    (kid,) = await children(db, root)
    compensation_letter = (
        await db.operations.dead_letters(
            open_only=True, kind="compensation_failed", before=None, limit=10, execution_id=root
        )
    )[0].id
    with pytest.raises(Conflict) as refused:
        await db.operations.redrive(await open_letter(db, kid["id"]), principal="ops", queue="executions")
    said = str(refused.value)
    assert f"dead letter {compensation_letter}" not in said and "compensation ran" in said, said


async def test_acknowledging_a_parents_compensation_letter_leaves_its_childrens_letters(
    db: Database, conditions: ConditionPool
) -> None:
    """Planning's note: acknowledging a parent's compensation_failed letter closed the node_failed
    letters of the children whose end the parent took, as superseded, while the parent's own
    node_failed letter, the one that supersedes them, stayed open (its redrive, refused for them,
    would name it). That acknowledgement says the undo was done by hand, nothing about the node."""
    from tests.integration.test_subworkflows import children, open_letter, sub

    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks-2", echo("boom", simulateFailure="permanent")), conditions)
    parent = wf(
        "books-then-calls-2",
        undo(echo("book", to("call")), "unbook", simulateFailure="permanent"),
        sub("call", "breaks-2"),
    )
    parent["nodes"][0]["compensation"]["retryPolicy"] = {**FAST, "maxAttempts": 1}
    await publish(db, parent, conditions)
    root = await start(db, "books-then-calls-2")
    await _drain(db, runtime)
    (kid,) = await children(db, root)
    child_letter = await open_letter(db, kid["id"])
    (compensation_letter,) = await _open_letters(db, root, "compensation_failed")
    (node_letter,) = await _open_letters(db, root, "node_failed")
    await db.operations.acknowledge(compensation_letter.id, principal="ops", note="unbooked by hand")
    assert [d.id for d in await _open_letters(db, root, "node_failed")] == [node_letter.id]
    assert [d.id for d in await _open_letters(db, kid["id"], "node_failed")] == [child_letter]
    # The parent's node letter still closes them, as before.
    await db.operations.acknowledge(node_letter.id, principal="ops", note="not needed")
    assert await _open_letters(db, kid["id"], "node_failed") == []

"""The runtime against a real database, in-process (no Procrastinate worker): each test starts an
execution through the stored procedure and runs it the way the worker task does."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import msgspec
import pytest

from dataworkflows import metrics
from dataworkflows.actions import default_registry
from dataworkflows.checkpoints import NodeCheckpoint, NodeState
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.runtime import Runtime, RuntimeSettings
from tests.conftest import current_templates, load_fixture, publish, record, start

FAST_RETRY = {"maxAttempts": 3, "initialDelay": "PT0.05S", "backoffMultiplier": 2, "maxDelay": "PT1S", "jitter": False}


def make_runtime(db: Database, conditions: ConditionPool, **settings: Any) -> Runtime:
    options = {"worker_id": "test-worker", "lease_seconds": 5.0, "park_threshold_seconds": 30.0, **settings}
    return Runtime(db, default_registry(), RuntimeSettings(**options), conditions, templates=current_templates())


def echo(node_id: str, *edges: dict[str, Any], **params: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "actionType": "core.echo", "parameters": {"message": node_id, **params}}
    if edges:
        node["edges"] = list(edges)
    return node


def to(target: str, when: str = "success", condition: str | None = None) -> dict[str, Any]:
    edge = {"targetNode": target, "when": when}
    if condition:
        edge["condition"] = condition
    return edge


def wf(workflow_id: str, *nodes: dict[str, Any], **orchestration: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": workflow_id,
        "displayName": workflow_id,
        "startNode": nodes[0]["id"],
        "nodes": list(nodes),
    }
    if orchestration:
        raw["orchestration"] = orchestration
    return raw


async def execute(
    db: Database,
    runtime: Runtime,
    raw: dict[str, Any],
    trigger: dict[str, Any] | None = None,
    conditions: ConditionPool | None = None,
) -> tuple[UUID, str]:
    await publish(db, raw, conditions)
    execution_id = await start(db, raw["id"], trigger)
    return execution_id, await runtime.run_execution(execution_id)


async def nodes(db: Database, execution_id: UUID) -> dict[str, dict[str, Any]]:
    return {n["node_id"]: n for n in await db.fetch_all("list_node_states", id=execution_id)}


async def attempts(db: Database, execution_id: UUID) -> list[dict[str, Any]]:
    return await db.fetch_all("list_attempts", id=execution_id)


async def events(db: Database, execution_id: UUID) -> list[str]:
    return [e["type"] for e in await db.fetch_all("list_events", id=execution_id, after=0, limit=1000)]


async def test_bundle1_two_nodes_in_list_order(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id, outcome = await execute(
        db,
        runtime,
        load_fixture("bundle1/simple-echo-workflow.json"),
        load_fixture("bundle1/execute-request.json")["trigger"],
    )
    assert outcome == "Succeeded"
    rows = await attempts(db, execution_id)
    assert [(r["node_id"], r["status"], r["outputs"]) for r in rows] == [
        ("echo1", "Succeeded", {"echo": "Hello from node 1"}),
        ("echo2", "Succeeded", {"echo": "Hello from node 2"}),
    ]
    assert rows[0]["end_time"] <= rows[1]["start_time"]
    execution = await db.executions.get(execution_id)
    assert execution.status == "Succeeded" and execution.end_time >= execution.start_time
    assert await events(db, execution_id) == [
        "execution_requested",
        "execution_started",
        "node_started",
        "node_succeeded",
        "node_started",
        "node_succeeded",
        "execution_succeeded",
    ]
    # Running it again is a no-op: the job may be delivered twice.
    assert await runtime.run_execution(execution_id) == "finished"
    assert len(await attempts(db, execution_id)) == 2


async def test_transient_failures_are_retried_with_backoff(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("retry", echo("flaky", simulateFailure="transient", failUntilAttempt=3), echo("after"))
    raw["nodes"][0]["retryPolicy"] = FAST_RETRY
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "Succeeded"
    rows = await attempts(db, execution_id)
    assert [(r["node_id"], r["attempt"], r["status"]) for r in rows] == [
        ("flaky", 1, "RetriableFailure"),
        ("flaky", 2, "RetriableFailure"),
        ("flaky", 3, "Succeeded"),
        ("after", 1, "Succeeded"),
    ]
    # Backoff 0.05s then 0.1s between attempts.
    assert rows[1]["start_time"] - rows[0]["end_time"] >= timedelta(seconds=0.04)
    assert rows[2]["start_time"] - rows[1]["end_time"] >= timedelta(seconds=0.09)
    assert (await nodes(db, execution_id))["flaky"]["attempts"] == 3
    assert (await events(db, execution_id)).count("node_retry_scheduled") == 2


async def test_retries_exhausted_fail_the_run(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("exhaust", echo("flaky", simulateFailure="transient", failUntilAttempt=9), echo("after"))
    raw["nodes"][0]["retryPolicy"] = {**FAST_RETRY, "maxAttempts": 2}
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "Failed"
    state = await nodes(db, execution_id)
    assert state["flaky"]["status"] == "Failed" and state["flaky"]["error"]["attemptsExhausted"] == 2
    assert state["after"]["status"] == "Skipped"


async def test_permanent_failure_fails_fast_and_skips_the_rest(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id, outcome = await execute(db, runtime, load_fixture("bundle2/permanent-failure-workflow.json"))
    assert outcome == "Failed"
    assert [(r["node_id"], r["status"]) for r in await attempts(db, execution_id)] == [
        ("first", "Succeeded"),
        ("boom", "Failed"),
    ]
    state = await nodes(db, execution_id)
    assert {k: v["status"] for k, v in state.items()} == {"first": "Succeeded", "boom": "Failed", "after": "Skipped"}
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution["error"]["code"] == "node_failed" and execution["error"]["nodeId"] == "boom"
    assert "Simulated permanent failure" in execution["error"]["message"]


async def test_action_timeout_is_enforced_and_retried(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("slow", echo("slow", delayMs=5000))
    raw["nodes"][0]["timeout"] = "PT0.2S"
    raw["nodes"][0]["retryPolicy"] = {**FAST_RETRY, "maxAttempts": 2}
    loop = asyncio.get_running_loop()
    began = loop.time()
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "Failed" and loop.time() - began < 3
    rows = await attempts(db, execution_id)
    assert [(r["status"], r["error"]["code"]) for r in rows] == [("TimedOut", "action_timeout")] * 2


async def test_fan_out_fan_in(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = load_fixture("bundle3/fanout-fanin-workflow.json")
    for node in raw["nodes"]:
        if node["id"].startswith("branch"):
            node["parameters"]["delayMs"] = 300
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "Succeeded"
    rows = {r["node_id"]: r for r in await attempts(db, execution_id)}
    assert len(rows) == 4
    a, b, join = rows["branch-a"], rows["branch-b"], rows["join"]
    assert a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"], "branches overlap"
    assert join["start_time"] >= max(a["end_time"], b["end_time"])


@pytest.mark.parametrize(
    ("status", "ran", "skipped"),
    [("approved", "approved", "rejected"), ("denied", "rejected", "approved"), (None, "rejected", "approved")],
)
async def test_conditional_branch(
    db: Database, conditions: ConditionPool, status: str | None, ran: str, skipped: str
) -> None:
    runtime = make_runtime(db, conditions)
    trigger = {"status": status} if status else {}
    execution_id, outcome = await execute(
        db, runtime, load_fixture("bundle3/conditional-branch-workflow.json"), trigger, conditions
    )
    assert outcome == "Succeeded"
    state = await nodes(db, execution_id)
    assert state[ran]["status"] == "Succeeded" and state[skipped]["status"] == "Skipped"
    assert [r["node_id"] for r in await attempts(db, execution_id)] == ["check", ran]


async def test_dead_path_elimination_never_hangs_a_join(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(
        "dead-paths",
        echo("start", to("never", condition="trigger.go === true"), to("always")),
        echo("never", to("join"), to("deeper")),
        echo("always", to("join")),
        echo("deeper", to("behind-two-dead")),
        echo("join", to("behind-two-dead", condition="false")),
        echo("behind-two-dead"),
    )
    execution_id, outcome = await execute(db, runtime, raw, {"go": False}, conditions)
    assert outcome == "Succeeded"
    state = {k: v["status"] for k, v in (await nodes(db, execution_id)).items()}
    assert state == {
        "start": "Succeeded",
        "never": "Skipped",
        "always": "Succeeded",
        "deeper": "Skipped",
        "join": "Succeeded",
        "behind-two-dead": "Skipped",
    }


async def test_failure_routing_and_first_match(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(
        "routing",
        echo("boom", to("handler", "failure"), to("on-success"), to("cleanup", "always"), simulateFailure="permanent"),
        echo("handler", to("first"), to("second")),
        echo("on-success"),
        echo("cleanup"),
        echo("first"),
        echo("second"),
    )
    raw["nodes"][1]["routePolicy"] = "firstMatch"
    execution_id, outcome = await execute(db, runtime, raw, conditions=conditions)
    assert outcome == "Succeeded"
    state = {k: v["status"] for k, v in (await nodes(db, execution_id)).items()}
    assert state == {
        "boom": "Failed",
        "handler": "Succeeded",
        "on-success": "Skipped",
        "cleanup": "Succeeded",
        "first": "Succeeded",
        "second": "Skipped",
    }


async def test_a_failure_handler_reads_the_error_it_handles(db: Database, conditions: ConditionPool) -> None:
    """`nodes` holds Succeeded nodes' outputs only: a node on a failure edge could not read why its
    source failed, nor could a failure edge's condition route by the error's code (review)."""
    runtime = make_runtime(db, conditions)
    raw = wf(
        "handles-errors",
        echo(
            "boom",
            to("by-code", "failure", "errors.boom.code === 'simulated_permanent_failure'"),
            to("other-code", "failure", "errors.boom.code === 'http_404'"),
            simulateFailure="permanent",
        ),
        echo("by-code", to("transformed"), message="{{ errors.boom.code }}: {{ errors.boom.message }}"),
        echo("other-code"),
        {
            "id": "transformed",
            "nodeType": "transform",
            "parameters": {"expression": "({code: errors.boom.code, seen: Object.keys(errors)})"},
        },
    )
    execution_id, outcome = await execute(db, runtime, raw, conditions=conditions)
    assert outcome == "Succeeded"
    state = await nodes(db, execution_id)
    assert (state["boom"]["status"], state["other-code"]["status"]) == ("Failed", "Skipped")
    assert state["by-code"]["outputs"]["echo"] == "simulated_permanent_failure: Simulated permanent failure"
    assert state["transformed"]["outputs"] == {"code": "simulated_permanent_failure", "seen": ["boom"]}
    # A worker that takes the run back reads the error from the checkpoints (the scope is the same).
    async with db.connection() as conn:
        checkpoints = (await (await conn.execute("SELECT dw.run_checkpoints_v1(%s)", (execution_id,))).fetchone())[0]
    boom = next(c for c in checkpoints if c["nodeId"] == "boom")
    assert boom["error"]["code"] == "simulated_permanent_failure" and "failedUnhandled" not in boom
    assert NodeState.from_checkpoint(msgspec.convert(boom, NodeCheckpoint)).error == boom["error"]


async def test_parallelism_is_bounded(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    branches = [echo(f"b{i}", to("join"), delayMs=150) for i in range(10)]
    raw = wf("wide", echo("start", *[to(f"b{i}") for i in range(10)]), *branches, echo("join"), maxParallelActions=3)
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "Succeeded"
    rows = [r for r in await attempts(db, execution_id) if r["node_id"].startswith("b")]
    points = sorted(
        [(r["start_time"], 1) for r in rows] + [(r["end_time"], -1) for r in rows], key=lambda p: (p[0], p[1])
    )
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    assert peak == 3


async def test_a_node_the_acquire_or_a_record_started_reads_no_start_back(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every node of a run is started by the acquire or the record before it, and taken up as a
    resumed attempt: reading its start back from its event (which a forEach left over from an
    earlier hold needs) cost every step a query, and a 2-node step 1.26 transactions instead of 0.19
    (bench, c2df07a). Only a left-over attempt reads it."""
    from dataworkflows.data.runs import RunData

    reads: list[str] = []
    real = RunData.attempt_started_at

    async def counted(self: Any, execution_id: Any, node_id: str, attempt: int) -> Any:
        reads.append(node_id)
        return await real(self, execution_id, node_id, attempt)

    monkeypatch.setattr(RunData, "attempt_started_at", counted)
    runtime = make_runtime(db, conditions)
    _, outcome = await execute(db, runtime, wf("plain", echo("a", to("b")), echo("b", to("c")), echo("c")))
    assert (outcome, reads) == ("Succeeded", [])


async def test_workflow_timeout_ends_the_run_as_timed_out(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("deadline", echo("slow", to("next"), delayMs=10_000), echo("next"), workflowTimeout="PT0.5S")
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "TimedOut"
    state = {k: v["status"] for k, v in (await nodes(db, execution_id)).items()}
    assert state == {"slow": "Cancelled", "next": "Skipped"}
    assert (await db.fetch_one("get_execution", id=execution_id))["error"]["code"] == "workflow_timeout"


async def test_a_timed_out_run_files_a_letter_whose_redrive_carries_it_on(
    db: Database, conditions: ConditionPool
) -> None:
    """A run past its workflowTimeout ended with no dead letter and could not be redriven: a new run
    repeated every node that had succeeded (control review). Its timed_out letter redrives what the
    timeout cut short, under a fresh deadline; what succeeded keeps its outputs."""
    runtime = make_runtime(db, conditions)
    raw = wf(
        "late",
        echo("first", to("slow")),
        echo("slow", to("next"), delayMs="{{ 10000 if attempt == 1 else 0 }}"),
        echo("next"),
        # Time enough for the redriven run under a loaded machine (it took 0.5 s once).
        workflowTimeout="PT3S",
    )
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "TimedOut"
    letters = await db.fetch_all("list_dead_letters", open=True, kind="timed_out", before=None, limit=10)
    assert [(row["execution_id"], row["node_id"]) for row in letters] == [(execution_id, None)], letters
    assert letters[0]["error"]["code"] == "workflow_timeout"
    redriven = await db.operations.redrive(letters[0]["id"], principal="ops", queue="executions")
    assert redriven.action == "requeued", redriven
    assert await runtime.run_execution(execution_id) == "Succeeded"
    rows = [(r["node_id"], r["attempt"], r["status"]) for r in await attempts(db, execution_id)]
    assert rows == [
        ("first", 1, "Succeeded"),
        ("slow", 1, "Cancelled"),
        ("slow", 2, "Succeeded"),
        ("next", 1, "Succeeded"),
    ], rows
    # A letter is redriven once, and a Failed-run's rule does not apply to it.
    again = await db.fetch_all("list_dead_letters", open=True, kind="timed_out", before=None, limit=10)
    assert again == []


async def test_templates_render_into_attempt_rows(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(
        "templated",
        echo("first", to("second"), message="hi {{ trigger.user }}"),
        echo("second", message="{{ nodes.first.echo }}", delayMs="{{ trigger.delay }}"),
    )
    execution_id, outcome = await execute(db, runtime, raw, {"user": "ana", "delay": 1})
    assert outcome == "Succeeded"
    rows = {r["node_id"]: r for r in await attempts(db, execution_id)}
    assert rows["first"]["parameters"] == {"message": "hi ana"}
    assert rows["second"]["parameters"] == {"message": "hi ana", "delayMs": 1}


async def test_template_errors_fail_without_retry(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("bad-template", echo("first", message="{{ trigger.missing.deeper }}"))
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "Failed"
    rows = await attempts(db, execution_id)
    assert len(rows) == 1 and rows[0]["error"]["code"] == "template_error" and rows[0]["parameters"] is None
    raw = wf("escape", echo("first", message="{{ ''.__class__.__mro__ }}"))
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "Failed"
    assert "unsafe" in (await attempts(db, execution_id))[0]["error"]["message"]


async def test_condition_errors_and_timeouts(db: Database) -> None:
    pool = ConditionPool(size=1, timeout_seconds=0.3)
    try:
        runtime = make_runtime(db, pool)
        raw = wf("cond-error", echo("a", to("b", condition="trigger.x.y === 1"), to("c")), echo("b"), echo("c"))
        execution_id, outcome = await execute(db, runtime, raw, {}, pool)
        assert outcome == "Succeeded"
        state = {k: v["status"] for k, v in (await nodes(db, execution_id)).items()}
        assert state == {"a": "Succeeded", "b": "Skipped", "c": "Succeeded"}
        assert "condition_error" in await events(db, execution_id)

        raw = wf("cond-loop", echo("a", to("b", condition="(function(){ while (true) {} })()")), echo("b"))
        execution_id, outcome = await execute(db, runtime, raw, {}, pool)
        assert outcome == "Failed"
        state = await nodes(db, execution_id)
        assert state["a"]["status"] == "Failed" and state["a"]["error"]["code"] == "condition_timeout"
        # The pool replaced its helper and still works.
        assert await pool.evaluate("1 === 1", {"trigger": {}, "nodes": {}, "execution": {}})
    finally:
        await pool.close()


async def parked_wake(db: Database, execution_id: UUID) -> tuple[Any, int]:
    """A parked run's wake-up time, and how many run jobs it has queued."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT e.wake_at, (SELECT count(*) FROM procrastinate_jobs j WHERE j.args->>'execution_id' = e.id::text"
            " AND j.status = 'todo') FROM dw.executions e WHERE e.id = %s",
            (execution_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        return row[0], int(row[1])


async def _due_now(db: Database, execution_id: UUID) -> None:
    """Time passes: the run's retry, and its wake-up time, are due."""
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.node_states SET next_attempt_at = now() WHERE execution_id = %s", (execution_id,))
        await conn.execute("UPDATE dw.executions SET wake_at = now() WHERE id = %s", (execution_id,))


async def test_long_backoff_parks_the_execution(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions, park_threshold_seconds=1.0)
    raw = wf("parking", echo("flaky", simulateFailure="transient", failUntilAttempt=2))
    raw["nodes"][0]["retryPolicy"] = {**FAST_RETRY, "initialDelay": "PT60S", "maxDelay": "PT60S"}
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "parked"
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution["status"] == "Waiting" and execution["lease_owner"] is None
    async with db.connection() as conn:
        # The test ran the start job's run itself: without that job (as once a worker took it), a
        # park queues one wake-up job, for the retry's due time.
        await conn.execute("DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", (str(execution_id),))
    assert await runtime.run_execution(execution_id) == "parked"
    (scheduled, queued) = await parked_wake(db, execution_id)
    state = await nodes(db, execution_id)
    assert state["flaky"]["status"] == "Waiting"
    assert abs((scheduled - state["flaky"]["next_attempt_at"]).total_seconds()) < 0.01
    assert queued == 0, "no job waits in the queue until the retry is due"
    assert await db.operations.wake_due_runs(limit=10, queue="executions") == 0
    # Time passes: the waker queues the wake-up job, which runs the next attempt.
    await _due_now(db, execution_id)
    assert await db.operations.wake_due_runs(limit=10, queue="executions") == 1
    assert await db.operations.wake_due_runs(limit=10, queue="executions") == 0, "one job per run"
    assert (await parked_wake(db, execution_id))[1] == 1
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert [r["status"] for r in await attempts(db, execution_id)] == ["RetriableFailure", "Succeeded"]


async def test_an_interrupted_attempt_is_retried_and_succeeded_nodes_never_rerun(
    db: Database, conditions: ConditionPool
) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await publish(db, raw)
    execution_id = await start(db, "simple-echo")
    # A worker ran echo1, started echo2, then died (no outcome recorded, lease expired).
    token = (await db.fetch_one("try_acquire", id=execution_id, owner="dead-worker", lease_seconds=30))["lease_token"]

    await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="echo1")
    await record(db, execution_id, token, outputs={"echo": "Hello from node 1"}, worker="dead-worker")
    await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="echo2")
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")

    survivor = make_runtime(db, conditions, worker_id="survivor")
    assert await survivor.run_execution(execution_id) == "Succeeded"
    rows = [(r["node_id"], r["attempt"], r["status"], r["worker"]) for r in await attempts(db, execution_id)]
    assert rows == [
        ("echo1", 1, "Succeeded", "dead-worker"),
        ("echo2", 1, "RetriableFailure", "survivor"),
        ("echo2", 2, "Succeeded", "survivor"),
    ]
    assert (await nodes(db, execution_id))["echo1"]["attempts"] == 1


async def test_an_interrupted_attempt_is_recorded_with_its_real_start(db: Database, conditions: ConditionPool) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    await publish(db, raw)
    execution_id = await start(db, "simple-echo")
    # A worker's first attempt at echo1 failed and was retried; it died during the second.
    token = (await db.fetch_one("try_acquire", id=execution_id, owner="dead-worker", lease_seconds=30))["lease_token"]
    await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="echo1")
    await record(db, execution_id, token, status="RetriableFailure", node_status="Ready", error={"code": "x"})
    await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="echo1")
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT at FROM dw.execution_events WHERE execution_id = %s AND node_id = 'echo1'"
            " AND type = 'node_started' AND details ->> 'attempt' = '2'",
            (execution_id,),
        )
        (started_at,) = await cur.fetchone() or (None,)
        await conn.execute("UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")

    assert await make_runtime(db, conditions, worker_id="survivor").run_execution(execution_id) == "Succeeded"
    (interrupted,) = [r for r in await attempts(db, execution_id) if r["node_id"] == "echo1" and r["attempt"] == 2]
    assert interrupted["error"]["code"] == "attempt_interrupted"
    # When the dead worker started it (not the recovery time, as start = end said before).
    assert started_at is not None and interrupted["start_time"] == started_at
    assert interrupted["start_time"] < interrupted["end_time"]


async def test_losing_the_lease_stops_the_run_without_writes(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions, lease_seconds=0.6)
    raw = wf("stolen", echo("slow", to("next"), delayMs=1500), echo("next"))
    await publish(db, raw)
    execution_id = await start(db, "stolen")
    task = asyncio.create_task(runtime.run_execution(execution_id))
    await asyncio.sleep(0.4)
    async with db.connection() as conn:  # another worker takes over
        await conn.execute("UPDATE dw.executions SET lease_token = lease_token + 1 WHERE id = %s", (execution_id,))
    assert await asyncio.wait_for(task, 5) == "lease_lost"
    assert await attempts(db, execution_id) == []


async def test_a_renewal_that_races_with_the_runs_own_end_is_not_a_lost_lease(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last record commits the run's end; a lease renewal runs before the run has taken in that
    record's answer (at 1,000 runs in flight, the benchmark saw it: "lease lost" warnings and refused
    job ends for runs that had succeeded under their only lease). The renewal is refused, but it says
    the run ended under this lease: the run ends as its record says."""
    runtime = make_runtime(db, conditions, lease_seconds=0.6)  # a renewal every 0.2 s
    await publish(db, wf("raced", echo("only")))
    execution_id = await start(db, "raced")
    answered = asyncio.Event()
    record_attempt = db.runs.record_attempt

    async def slow_answer(*args: Any, **kwargs: Any) -> Any:
        recorded = await record_attempt(*args, **kwargs)
        await asyncio.sleep(0.5)  # committed; the answer is on its way while renewals run
        answered.set()
        return recorded

    monkeypatch.setattr(db.runs, "record_attempt", slow_answer)
    renewals = []
    renew_lease = db.runs.renew_lease

    async def renewal(*args: Any, **kwargs: Any) -> Any:
        renewals.append(answer := await renew_lease(*args, **kwargs))
        return answer

    monkeypatch.setattr(db.runs, "renew_lease", renewal)
    lost = metrics.LEASES_LOST._value.get()
    assert await asyncio.wait_for(runtime.run_execution(execution_id), 5) == "Succeeded"
    assert answered.is_set()
    assert [(r.renewed, r.ended) for r in renewals][-1] == (False, True), "a renewal came after the end"
    assert metrics.LEASES_LOST._value.get() == lost
    assert [r["status"] for r in await attempts(db, execution_id)] == ["Succeeded"]


async def test_a_failed_lease_renewal_is_tried_again_within_a_second(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: after a failed renewal the heartbeat waited its whole interval again. A renewal that
    waited out DW_WORKER_ANSWER_SECONDS (10 s) on a silent connection and then the interval (10 s) lost
    the default 30 s lease, although the next connection would have answered. It is tried again after
    LEASE_RETRY_SECONDS."""
    from dataworkflows.errors import DatabaseUnavailable
    from dataworkflows.runtime import LEASE_RETRY_SECONDS

    runtime = make_runtime(db, conditions, lease_seconds=9.0)  # a renewal every 3 s
    await publish(db, wf("renewed", echo("slow", delayMs=5000)))
    execution_id = await start(db, "renewed")
    renew_lease = db.runs.renew_lease
    calls: list[float] = []

    async def first_fails(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise DatabaseUnavailable("the database did not answer within 10 s (DW_WORKER_ANSWER_SECONDS)")
        return await renew_lease(*args, **kwargs)

    monkeypatch.setattr(db.runs, "renew_lease", first_fails)
    assert await asyncio.wait_for(runtime.run_execution(execution_id), 15) == "Succeeded"
    assert len(calls) >= 2
    # A bound, not a speed: the interval (3 s) before.
    assert calls[1] - calls[0] < LEASE_RETRY_SECONDS + 1.2, calls


async def test_a_run_ended_under_its_lease_by_someone_else_is_told_its_lease_is_gone(
    db: Database, conditions: ConditionPool
) -> None:
    """The one end of a held run that is not the holder's own (a cancel while its worker had stopped
    beating): a renewal says `ended`, and once the lease it held would have run out, the run stops as for a
    lost lease."""
    runtime = make_runtime(db, conditions, lease_seconds=0.6)
    await publish(db, wf("ended-elsewhere", echo("slow", delayMs=3000)))
    execution_id = await start(db, "ended-elsewhere")
    task = asyncio.create_task(runtime.run_execution(execution_id))
    await asyncio.sleep(0.4)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE dw.executions SET status = 'Cancelled', ended_at = now(), lease_owner = NULL WHERE id = %s",
            (execution_id,),
        )
    assert await asyncio.wait_for(task, 2.5) == "lease_lost"
    assert await attempts(db, execution_id) == []


@pytest.mark.parametrize(
    ("fixture", "trigger", "expected"),
    [
        (
            "bundle3/dead-path-join-workflow.json",
            {"orderId": 7, "priority": False},
            {
                "receive": "Succeeded",
                "express": "Skipped",
                "notify-courier": "Skipped",
                "standard": "Succeeded",
                "ship": "Succeeded",
            },
        ),
        (
            "bundle3/dead-path-join-workflow.json",
            {"orderId": 7, "priority": True},
            {
                "receive": "Succeeded",
                "express": "Succeeded",
                "notify-courier": "Succeeded",
                "standard": "Succeeded",
                "ship": "Succeeded",
            },
        ),
        (
            "bundle3/first-match-workflow.json",
            {"amount": 5000},
            {"classify": "Succeeded", "large": "Succeeded", "medium": "Skipped", "small": "Skipped"},
        ),
        (
            "bundle3/first-match-workflow.json",
            {"amount": 150},
            {"classify": "Succeeded", "large": "Skipped", "medium": "Succeeded", "small": "Skipped"},
        ),
        (
            "bundle3/first-match-workflow.json",
            {"amount": 3},
            {"classify": "Succeeded", "large": "Skipped", "medium": "Skipped", "small": "Succeeded"},
        ),
        (
            "bundle3/failure-routing-workflow.json",
            {"orderId": 9, "declined": True},
            {"charge": "Failed", "receipt": "Skipped", "refund-flow": "Succeeded", "audit": "Succeeded"},
        ),
        (
            "bundle3/failure-routing-workflow.json",
            {"orderId": 9},
            {"charge": "Succeeded", "receipt": "Succeeded", "refund-flow": "Skipped", "audit": "Succeeded"},
        ),
    ],
)
async def test_semantics_fixtures(
    db: Database, conditions: ConditionPool, fixture: str, trigger: dict[str, Any], expected: dict[str, str]
) -> None:
    runtime = make_runtime(db, conditions)
    execution_id, outcome = await execute(db, runtime, load_fixture(fixture), trigger, conditions)
    assert outcome == "Succeeded"
    assert {k: v["status"] for k, v in (await nodes(db, execution_id)).items()} == expected


@pytest.mark.parametrize(
    "fixture",
    [
        "bundle3/conditional-branch-workflow.json",
        "bundle3/dead-path-join-workflow.json",
        "bundle3/failure-routing-workflow.json",
        "bundle3/first-match-workflow.json",
        "bundle4/templated-greeting-workflow.json",
        "bundle6/order-summary-transform-workflow.json",
    ],
)
async def test_an_examples_sample_trigger_renders_valid_parameters(
    db: Database, conditions: ConditionPool, fixture: str
) -> None:
    """`dataworkflows run EXAMPLE` without --trigger runs it with its metadata.sampleTrigger: no node of
    it may fail on the parameters that trigger renders. failure-routing's sample gave its charge
    `simulateFailure: "card declined"`, not a value core.echo takes: the node failed on invalid
    parameters (its message quoting "[redacted]"), not with the simulated failure its failure edge
    shows, and the walkthrough's run read as a broken example. It now says `declined: true`, a value
    the failure's message does not hold (the run's scrubber blanks trigger strings in errors)."""
    raw = load_fixture(fixture)
    execution_id, outcome = await execute(
        db, make_runtime(db, conditions), raw, raw["metadata"]["sampleTrigger"], conditions
    )
    assert outcome == "Succeeded"
    errors = {a["node_id"]: a["error"] for a in await attempts(db, execution_id) if a["error"]}
    # Its message as the action gave it: a trigger value in it would be scrubbed ("Simulated
    # [redacted] failure" when the sample said `simulate: "permanent"`).
    failed = {"charge": {"code": "simulated_permanent_failure", "message": "Simulated permanent failure"}}
    assert errors == (failed if "failure-routing" in fixture else {})


async def test_templating_fixture_keeps_types(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    trigger = {"user": {"name": "ada lovelace"}, "items": ["tea", "cake"]}
    execution_id, outcome = await execute(
        db, runtime, load_fixture("bundle4/templated-greeting-workflow.json"), trigger, conditions
    )
    assert outcome == "Succeeded"
    state = await nodes(db, execution_id)
    assert state["greet"]["outputs"]["echo"] == {
        "text": "Hello Ada Lovelace, you have 2 items",
        "itemCount": 2,
        "firstItem": "tea",
        "run": "templated-greeting",
    }
    assert state["follow-up"]["outputs"]["echo"] == "Hello Ada Lovelace, you have 2 items (count=2)"


async def test_an_engine_crash_fails_the_run_with_a_reason(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataworkflows import node_attempts

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in edge decisions")

    # The decision after an attempt (dataworkflows.outcomes.decide, as node_attempts calls it).
    monkeypatch.setattr(node_attempts, "decide", broken)
    runtime = make_runtime(db, conditions)
    execution_id, outcome = await execute(db, runtime, load_fixture("bundle3/fanout-fanin-workflow.json"))
    assert outcome == "Failed"
    error = (await db.fetch_one("get_execution", id=execution_id))["error"]
    assert error == {"code": "engine_error", "nodeId": "start", "message": "RuntimeError: bug in edge decisions"}


@pytest.mark.parametrize(("rerender", "messages"), [(True, ["try 1", "try 2"]), (False, ["try 1", "try 1"])])
async def test_rerender_on_retry(db: Database, conditions: ConditionPool, rerender: bool, messages: list[str]) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(f"rerender-{rerender}".lower(), echo("n", simulateFailure="transient", failUntilAttempt=2))
    raw["nodes"][0]["parameters"]["message"] = "try {{ attempt }}"
    raw["nodes"][0]["retryPolicy"] = FAST_RETRY
    raw["nodes"][0]["rerenderOnRetry"] = rerender
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "Succeeded"
    assert [r["parameters"]["message"] for r in await attempts(db, execution_id)] == messages


async def test_two_unhandled_failures_both_come_back_on_redrive(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    once = {**FAST_RETRY, "maxAttempts": 1}
    raw = wf(
        "two-failures",
        echo("a", to("b"), to("c")),
        # Both attempts are under way before either fails (a node the first failure ended before it
        # started would fail again on its first attempt after the redrive: a race, not the point).
        echo("b", to("d"), simulateFailure="transient", failUntilAttempt=2, delayMs=100),
        echo("c", to("d"), simulateFailure="transient", failUntilAttempt=2, delayMs=100),
        echo("d"),
    )
    raw["nodes"][1]["retryPolicy"] = once
    raw["nodes"][2]["retryPolicy"] = once
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "Failed"
    letters = await db.fetch_all("list_dead_letters", open=True, kind=None, before=None, limit=10)
    assert len(letters) == 1
    await db.fetch_one("redrive_dead_letter", id=letters[0]["id"], principal="ops", queue="executions")
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert {k: v["status"] for k, v in (await nodes(db, execution_id)).items()} == {
        "a": "Succeeded",
        "b": "Succeeded",
        "c": "Succeeded",
        "d": "Succeeded",
    }


async def test_condition_timeout_routes_to_the_failure_edge(db: Database) -> None:
    pool = ConditionPool(size=1, timeout_seconds=0.3)
    try:
        runtime = make_runtime(db, pool)
        raw = wf(
            "cond-timeout-route",
            echo("a", to("ok", condition="(function(){ while (true) {} })()"), to("handler", "failure")),
            echo("ok"),
            echo("handler"),
        )
        execution_id, outcome = await execute(db, runtime, raw, {}, pool)
        assert outcome == "Succeeded"
        state = await nodes(db, execution_id)
        assert (state["a"]["status"], state["a"]["error"]["code"]) == ("Failed", "condition_timeout")
        assert (state["handler"]["status"], state["ok"]["status"]) == ("Succeeded", "Skipped")
    finally:
        await pool.close()


async def test_a_due_retry_without_a_free_slot_does_not_spin(db: Database, conditions: ConditionPool) -> None:
    import time

    runtime = make_runtime(db, conditions)
    raw = wf(
        "no-spin",
        echo("s", to("x"), to("y"), to("r")),
        echo("x", delayMs=1500),
        echo("y", delayMs=1500),
        echo("r", simulateFailure="transient", failUntilAttempt=2),
        maxParallelActions=2,
    )
    raw["nodes"][3]["retryPolicy"] = {**FAST_RETRY, "initialDelay": "PT0.3S"}
    await publish(db, raw)
    execution_id = await start(db, "no-spin")
    cpu = time.process_time()
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert time.process_time() - cpu < 1.0, "the loop waited instead of spinning"


async def test_parking_wakes_in_time_for_the_deadline_and_reuses_parameters(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions, park_threshold_seconds=1.0)
    raw = wf("park-deadline", echo("n", simulateFailure="transient", failUntilAttempt=2), workflowTimeout="PT20S")
    raw["nodes"][0]["parameters"]["message"] = "try {{ attempt }}"
    raw["nodes"][0]["retryPolicy"] = {**FAST_RETRY, "initialDelay": "PT600S", "maxDelay": "PT600S"}
    execution_id, outcome = await execute(db, runtime, raw)
    assert outcome == "parked"
    execution = await db.fetch_one("get_execution", id=execution_id)
    async with db.connection() as conn:
        # The test ran the start job's run itself: without that job (as once a worker took it), a
        # park queues one wake-up job, for the retry's due time.
        await conn.execute("DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", (str(execution_id),))
    assert await runtime.run_execution(execution_id) == "parked"
    (scheduled, _) = await parked_wake(db, execution_id)
    assert abs((scheduled - execution["deadline_at"]).total_seconds()) < 0.01, "woken at the deadline"
    await _due_now(db, execution_id)
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert [r["parameters"]["message"] for r in await attempts(db, execution_id)] == ["try 1", "try 1"]

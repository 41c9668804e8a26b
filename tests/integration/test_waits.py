"""Waiting node kinds (delay, signal, approval) and run control (cancel, suspend, resume), with the
runtime in-process as in test_runtime.py: the worker's Procrastinate task is played by calling
run_execution, and a NOTIFY on dw_control by Runtime.poke."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import REGISTRY

from dataworkflows.conditions import ConditionPool
from dataworkflows.data.runs import Suspension
from dataworkflows.db import Database
from dataworkflows.errors import Conflict, ExecutionEnded, Forbidden
from dataworkflows.workers.app import update_queue_metrics
from tests.conftest import load_fixture, publish, start
from tests.integration.test_folded_writes import attempt_record
from tests.integration.test_runtime import attempts, echo, events, make_runtime, nodes, parked_wake, to, wf


def delay(node_id: str, *edges: dict[str, Any], **params: Any) -> dict[str, Any]:
    return kind_node("delay", node_id, edges, params)


def signal(node_id: str, *edges: dict[str, Any], **params: Any) -> dict[str, Any]:
    return kind_node("signal", node_id, edges, params)


def approval(node_id: str, *edges: dict[str, Any], **params: Any) -> dict[str, Any]:
    return kind_node("approval", node_id, edges, params)


def kind_node(kind: str, node_id: str, edges: tuple[dict[str, Any], ...], params: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "nodeType": kind, "parameters": params}
    if edges:
        node["edges"] = list(edges)
    return node


async def sql(db: Database, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute(query, args)
        return await cur.fetchall() if cur.description else []


async def jobs(db: Database, execution_id: UUID) -> list[tuple[Any, ...]]:
    return await sql(
        db,
        "SELECT status::text, scheduled_at FROM procrastinate_jobs WHERE args->>'execution_id' = %s ORDER BY id",
        str(execution_id),
    )


async def started(db: Database, raw: dict[str, Any], trigger: dict[str, Any] | None = None) -> UUID:
    """Publishes and starts; the start job is dropped, as if a worker had taken it."""
    await publish(db, raw)
    execution_id = await start(db, raw["id"], trigger)
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(execution_id))
    return execution_id


async def status(db: Database, execution_id: UUID) -> str:
    execution = await db.executions.get(execution_id)
    assert execution is not None
    return execution.status.value


async def test_a_delay_parks_the_run_and_fires_once_at_its_due_time(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("nap", delay("nap", duration="PT0.4S"), echo("after")))
    before = datetime.now(UTC)
    assert await runtime.run_execution(execution_id) == "parked"
    assert await status(db, execution_id) == "Waiting"
    assert (await nodes(db, execution_id))["nap"]["status"] == "Waiting"
    # It wakes at the timer's due time; meanwhile it holds no lease and no job.
    (scheduled, queued) = await parked_wake(db, execution_id)
    assert queued == 0 and timedelta(seconds=0.3) < scheduled - before < timedelta(seconds=1)
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None and execution["lease_owner"] is None
    assert await db.operations.wake_due_runs(limit=10, queue="executions") == 0

    # Too early: the run parks again, the timer stays open.
    assert await runtime.run_execution(execution_id) == "parked"
    await asyncio.sleep(max((scheduled - datetime.now(UTC)).total_seconds(), 0) + 0.05)
    assert await db.operations.wake_due_runs(limit=10, queue="executions") == 1
    assert await runtime.run_execution(execution_id) == "Succeeded"
    rows = await attempts(db, execution_id)
    assert [(r["node_id"], r["status"]) for r in rows] == [("nap", "Succeeded"), ("after", "Succeeded")]
    assert rows[0]["outputs"]["lateSeconds"] >= 0
    assert (await events(db, execution_id)).count("timer_fired") == 1
    # The node's record marked the fired wait recorded (so the run's end had no wait to withdraw).
    assert await sql(
        db, "SELECT state, recorded_at IS NOT NULL FROM dw.waits WHERE execution_id = %s", execution_id
    ) == [("fired", True)]
    assert "wait_withdrawn" not in await events(db, execution_id)
    # Fired once: the run is over and a late job finds nothing.
    assert await runtime.run_execution(execution_id) == "finished"


async def test_a_delay_until_a_past_time_fires_at_once(db: Database, conditions: ConditionPool) -> None:
    raw = wf("past", delay("wait", until="{{ trigger.at }}"), echo("after"))
    execution_id = await started(db, raw, {"at": "2020-01-01T00:00:00Z"})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"


async def test_a_bad_until_fails_the_node_with_a_reason(db: Database, conditions: ConditionPool) -> None:
    execution_id = await started(db, wf("bad-until", delay("wait", until="{{ trigger.at }}")), {"at": "tomorrow"})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Failed"
    error = (await nodes(db, execution_id))["wait"]["error"]
    assert error["code"] == "invalid_parameters" and "ISO 8601" in error["message"]


async def test_an_approver_no_caller_can_be_fails_the_node(db: Database, conditions: ConditionPool) -> None:
    """An approver id of 300 characters (or with a line break) is one no X-Principal-Id or token can
    present (400): the node waited, undecidable, until its timeout (for ever without one). It fails
    invalid_parameters, as other bad approver lists do; so does a title past 200 characters."""
    raw = wf("far-approver", approval("ok", approvers="{{ trigger.ap }}", title="{{ trigger.title }}"))
    for trigger, said in (
        ({"ap": ["a" * 300], "title": "t"}, "must be 1-200 characters"),
        ({"ap": ["ann", "bo\u202eb"], "title": "t"}, "must not contain control"),
        ({"ap": ["ann"], "title": "t" * 100_000}, "title must be at most 200 characters"),
    ):
        execution_id = await started(db, raw, trigger)
        assert await make_runtime(db, conditions).run_execution(execution_id) == "Failed"
        error = (await nodes(db, execution_id))["ok"]["error"]
        assert error["code"] == "invalid_parameters" and said in error["message"], error
        assert await sql(db, "SELECT 1 FROM dw.waits WHERE execution_id = %s", execution_id) == []
    execution_id = await started(db, raw, {"ap": ["a" * 200], "title": "t" * 200})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "parked"


async def test_a_signal_sent_before_its_wait_is_consumed_exactly_once(db: Database, conditions: ConditionPool) -> None:
    raw = wf(
        "early",
        echo("first"),
        signal("approve", name="go", correlationKey="{{ trigger.order }}"),
        echo("after", message="{{ nodes.approve.amount }}"),
    )
    execution_id = await started(db, raw, {"order": "o-1"})
    # Another order's signal is not this wait's; this order's is buffered until the wait starts.
    other = await db.control.signal(
        execution_id, "go", payload={"amount": 1}, signal_id="s-0", correlation_key="o-2", principal="t", queue="q"
    )
    mine = await db.control.signal(
        execution_id, "go", payload={"amount": 7}, signal_id="s-1", correlation_key="o-1", principal="t", queue="q"
    )
    assert (other.outcome, mine.outcome) == ("buffered", "buffered")
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    state = await nodes(db, execution_id)
    assert state["approve"]["outputs"] == {"amount": 7}
    assert state["after"]["outputs"]["echo"] == 7
    consumed = await sql(
        db, "SELECT signal_id, wait_id IS NOT NULL FROM dw.signals WHERE execution_id = %s ORDER BY id", execution_id
    )
    assert consumed == [("s-0", False), ("s-1", True)]
    again = await db.control.signal(
        execution_id, "go", payload={"amount": 7}, signal_id="s-1", correlation_key="o-1", principal="t", queue="q"
    )
    assert again.outcome == "duplicate" and again.node_id == "approve"


async def test_a_number_is_a_correlation_key_as_its_digits(db: Database, conditions: ConditionPool) -> None:
    """`{{ trigger.orderId }}` keeps a number's type: an order id 1003 failed the node invalid_parameters
    at once, and its failure edge ran as if no payment came (composition review)."""
    raw = wf("numeric-key", signal("pay", name="paid", correlationKey="{{ trigger.orderId }}"), echo("after"))
    execution_id = await started(db, raw, {"orderId": 1003})
    runtime = make_runtime(db, conditions)
    assert await runtime.run_execution(execution_id) == "parked"
    keys = await sql(db, "SELECT correlation_key FROM dw.waits WHERE execution_id = %s", execution_id)
    assert keys == [("1003",)]
    delivery = await db.control.signal(
        execution_id, "paid", payload={}, signal_id="p-1", correlation_key="1003", principal="t", queue="q"
    )
    assert delivery.outcome == "consumed"
    assert await runtime.run_execution(execution_id) == "Succeeded"


async def test_a_correlation_key_that_renders_to_null_fails_the_node(db: Database, conditions: ConditionPool) -> None:
    """`{{ trigger.orderId }}` for a trigger whose orderId is null made a wait without a key, which took
    any `paid` signal: another order's payment completed this run. The node fails instead, with a reason
    a failure edge can route (a missing orderId is a template error already); a key left out is still a
    wait for any signal."""
    raw = wf("null-key", signal("pay", name="paid", correlationKey="{{ trigger.orderId }}"), echo("after"))
    execution_id = await started(db, raw, {"orderId": None})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Failed"
    error = (await nodes(db, execution_id))["pay"]["error"]
    assert error["code"] == "invalid_parameters"
    assert "correlationKey {{ trigger.orderId }} rendered to null" in error["message"], error
    assert await sql(db, "SELECT 1 FROM dw.waits WHERE execution_id = %s", execution_id) == []
    keyless = wf("no-key", signal("pay", name="paid"), echo("after"))
    execution_id = await started(db, keyless, {})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "parked"
    assert await sql(db, "SELECT correlation_key FROM dw.waits WHERE execution_id = %s", execution_id) == [(None,)]


async def test_a_composite_correlation_key_with_null_parts_fails_the_node(
    db: Database, conditions: ConditionPool
) -> None:
    """`{{ trigger.region }}-{{ trigger.orderId }}` with both null rendered "null-null", and the wait
    waited for that key, which nobody sends, until its timeout (or for ever). The node fails naming
    the null parts; the same key with its values waits for them."""
    key = "{{ trigger.region }}-{{ trigger['orderId'] }}"
    raw = wf("composite-key", signal("pay", name="paid", correlationKey=key), echo("after"))
    execution_id = await started(db, raw, {"region": "eu", "orderId": None})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Failed"
    error = (await nodes(db, execution_id))["pay"]["error"]
    assert error["code"] == "invalid_parameters", error
    assert error["message"].startswith(f'correlationKey {key}: trigger["orderId"] is null'), error
    assert await sql(db, "SELECT 1 FROM dw.waits WHERE execution_id = %s", execution_id) == []
    execution_id = await started(db, raw, {"region": "eu", "orderId": 7})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "parked"
    assert await sql(db, "SELECT correlation_key FROM dw.waits WHERE execution_id = %s", execution_id) == [("eu-7",)]


async def test_a_signal_wakes_a_parked_run_and_20_copies_deliver_once(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("late", signal("pay", name="paid"), echo("after")))
    assert await runtime.run_execution(execution_id) == "parked"
    # Nothing but the signal can wake it: no job is queued.
    assert await jobs(db, execution_id) == []

    async def send() -> str:
        delivery = await db.control.signal(
            execution_id, "paid", payload={"n": 1}, signal_id="same", correlation_key=None, principal="p", queue="q"
        )
        return delivery.outcome

    outcomes = await asyncio.gather(*(send() for _ in range(20)))
    assert sorted(outcomes) == ["consumed"] + ["duplicate"] * 19
    assert [j[0] for j in await jobs(db, execution_id)] == ["todo"]
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert [r["status"] for r in await attempts(db, execution_id)] == ["Succeeded", "Succeeded"]
    assert (await sql(db, "SELECT count(*) FROM dw.signals WHERE execution_id = %s", execution_id)) == [(1,)]


async def test_a_signal_timeout_is_routed_by_a_failure_edge(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(
        "timeout",
        signal("wait", to("handled", "failure"), to("happy"), name="never", timeout="PT0.3S"),
        echo("handled"),
        echo("happy"),
    )
    execution_id = await started(db, raw)
    assert await runtime.run_execution(execution_id) == "parked"
    (scheduled, _) = await parked_wake(db, execution_id)  # wakes up at the timeout
    await asyncio.sleep(max((scheduled - datetime.now(UTC)).total_seconds(), 0) + 0.05)
    assert await runtime.run_execution(execution_id) == "Succeeded"
    state = await nodes(db, execution_id)
    assert state["wait"]["status"] == "Failed" and state["wait"]["error"]["code"] == "wait_timeout"
    assert re.fullmatch(
        r"the signal wait for 'never' timed out at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
        r" \(waiting since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\)",
        state["wait"]["error"]["message"],
    ), state["wait"]["error"]
    assert (state["handled"]["status"], state["happy"]["status"]) == ("Succeeded", "Skipped")


async def _approval_run(db: Database, conditions: ConditionPool, workflow_id: str, **params: Any) -> tuple[UUID, UUID]:
    raw = wf(
        workflow_id,
        approval("ok", to("ship"), to("rejected", "failure"), approvers=["alice", "bob", "carol"], **params),
        echo("ship"),
        # What the failure edge's node reads of the rejection (a failed node has no outputs in scope).
        echo("rejected", message="{{ errors.ok.code }} {{ errors.ok.details.comments | join(', ') }}"),
    )
    execution_id = await started(db, raw)
    assert await make_runtime(db, conditions).run_execution(execution_id) == "parked"
    (pending,) = await db.control.approvals(principal="alice", open_only=True)
    assert pending.execution_id == execution_id and pending.details["approvers"] == ["alice", "bob", "carol"]
    return execution_id, pending.id


async def test_an_approval_with_a_quorum_of_2_of_3(db: Database, conditions: ConditionPool) -> None:
    execution_id, approval_id = await _approval_run(db, conditions, "quorum", quorum=2, title="Ship it?")
    assert await db.control.approvals(principal="mallory", open_only=True) == []
    with pytest.raises(Forbidden):
        await db.control.decide(approval_id, principal="mallory", decision="approve", comment=None, queue="q")
    first = await db.control.decide(approval_id, principal="alice", decision="approve", comment="fine", queue="q")
    assert (first.state, first.approvals, first.required) == ("open", 1, 2)
    pending = await sql(db, "SELECT title, approvers, required, approvals FROM dw.v_pending_approvals")
    assert pending == [("Ship it?", ["alice", "bob", "carol"], 2, 1)]
    with pytest.raises(Conflict):
        await db.control.decide(approval_id, principal="alice", decision="reject", comment=None, queue="q")
    second = await db.control.decide(approval_id, principal="bob", decision="approve", comment=None, queue="q")
    assert second.state == "approved"
    with pytest.raises(Conflict):
        await db.control.decide(approval_id, principal="carol", decision="approve", comment=None, queue="q")
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    outputs = (await nodes(db, execution_id))["ok"]["outputs"]
    assert outputs["decision"] == "approved" and outputs["comments"] == ["fine"]
    assert [d["principal"] for d in outputs["decisions"]] == ["alice", "bob"]
    assert "approval_decided" in await events(db, execution_id)


async def test_a_rejection_is_routed_by_a_failure_edge(db: Database, conditions: ConditionPool) -> None:
    execution_id, approval_id = await _approval_run(db, conditions, "all", quorum="all")
    decided = await db.control.decide(approval_id, principal="carol", decision="reject", comment="no", queue="q")
    assert decided.state == "rejected"  # everyone had to approve: one rejection decides
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    state = await nodes(db, execution_id)
    assert state["ok"]["status"] == "Failed" and state["ok"]["error"]["code"] == "rejected"
    assert (state["ship"]["status"], state["rejected"]["status"]) == ("Skipped", "Succeeded")
    assert state["rejected"]["outputs"]["echo"] == "rejected no", state["rejected"]["outputs"]
    assert [d["principal"] for d in state["ok"]["error"]["details"]["decisions"]] == ["carol"]


async def test_cancel_of_a_waiting_run_withdraws_its_wait(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("cancel-wait", signal("wait", name="never"), echo("after")))
    assert await runtime.run_execution(execution_id) == "parked"
    cancelled = await db.control.cancel(execution_id, principal="ops", reason="not needed")
    assert (cancelled.status, cancelled.outcome) == ("Cancelled", "cancelled")
    state = await nodes(db, execution_id)
    assert (state["wait"]["status"], state["after"]["status"]) == ("Cancelled", "Skipped")
    assert [r["status"] for r in await attempts(db, execution_id)] == ["Cancelled"]
    assert [w.state for w in await db.control.waits(execution_id)] == ["withdrawn"]
    execution = await db.executions.get(execution_id)
    assert execution is not None and execution.error is not None
    assert execution.error["code"] == "cancelled" and "not needed" in execution.error["message"]
    log = await events(db, execution_id)
    assert log.index("cancel_requested") < log.index("wait_withdrawn") < log.index("execution_cancelled")
    again = await db.control.cancel(execution_id, principal="ops", reason=None)
    assert again.outcome == "already_cancelled"
    with pytest.raises(ExecutionEnded):
        await db.control.signal(
            execution_id, "never", payload={}, signal_id=None, correlation_key=None, principal=None, queue="q"
        )


async def test_cancel_during_a_long_node_ends_the_run_within_a_second(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions, lease_seconds=30.0)  # the heartbeat is 10 s away
    execution_id = await started(db, wf("long", echo("slow", delayMs=30000), echo("after")))
    run = asyncio.ensure_future(runtime.run_execution(execution_id))
    await asyncio.sleep(0.3)
    requested = await db.control.cancel(execution_id, principal="ops", reason=None)
    assert (requested.status, requested.outcome) == ("Running", "requested")
    began = time.monotonic()
    runtime.poke(execution_id)  # what the worker's dw_control listener does on the NOTIFY
    assert await asyncio.wait_for(run, 2) == "Cancelled"
    assert time.monotonic() - began < 1
    assert await status(db, execution_id) == "Cancelled"
    ((node, attempt_status, error),) = [
        (r["node_id"], r["status"], r["error"]) for r in await attempts(db, execution_id)
    ]
    assert (node, attempt_status, error["code"]) == ("slow", "Cancelled", "run_ended")
    assert (await nodes(db, execution_id))["after"]["status"] == "Skipped"


async def test_a_cancel_requested_while_its_worker_died_ends_the_run_at_the_next_acquire(
    db: Database, conditions: ConditionPool
) -> None:
    execution_id = await started(db, wf("orphan", echo("a")))
    # A worker holds a live lease and then vanishes.
    await sql(
        db,
        "UPDATE dw.executions SET status = 'Running', lease_owner = 'dead',"
        " lease_expires_at = now() + interval '1 hour' WHERE id = %s",
        execution_id,
    )
    assert (await db.control.cancel(execution_id, principal=None, reason=None)).outcome == "requested"
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", execution_id)
    assert await make_runtime(db, conditions).run_execution(execution_id) == "finished"
    assert await status(db, execution_id) == "Cancelled"


async def test_suspend_lets_running_attempts_finish_and_starts_nothing(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("pause", echo("a", delayMs=400), echo("b")))
    run = asyncio.ensure_future(runtime.run_execution(execution_id))
    await asyncio.sleep(0.15)
    assert (await db.control.suspend(execution_id, principal="ops", reason=None)).outcome == "requested"
    runtime.poke(execution_id)
    assert await asyncio.wait_for(run, 3) == "suspended"
    state = await nodes(db, execution_id)
    assert (state["a"]["status"], state["b"]["status"]) == ("Succeeded", "Ready")
    assert await status(db, execution_id) == "Suspended"
    # A job that finds it Suspended does nothing.
    assert await runtime.run_execution(execution_id) == "suspended"
    resumed = await db.control.resume(execution_id, principal="ops", queue="executions")
    assert (resumed.status, resumed.outcome) == ("Waiting", "resumed")
    assert [j[0] for j in await jobs(db, execution_id)] == ["todo"]
    assert await runtime.run_execution(execution_id) == "Succeeded"
    log = await events(db, execution_id)
    assert log.index("suspend_requested") < log.index("execution_suspended") < log.index("execution_resumed")


async def _cut_off_mid_attempt(db: Database, conditions: ConditionPool) -> UUID:
    """A run whose worker started node a and stopped holding it mid-attempt (its lease still
    current: the worker looks alive)."""
    execution_id = await started(db, wf("cut-off", echo("a", to("b")), echo("b")))
    token = (await db.fetch_one("try_acquire", id=execution_id, owner="w-1", lease_seconds=30))["lease_token"]
    await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="a")
    return execution_id


async def _suspended_with_nothing_running(db: Database, conditions: ConditionPool, execution_id: UUID) -> None:
    runtime = make_runtime(db, conditions, worker_id="w-2")
    assert await runtime.run_execution(execution_id) == "suspended"
    assert await status(db, execution_id) == "Suspended"
    state = await nodes(db, execution_id)
    # The cut-off attempt is recorded as interrupted: a retry due at once (on resume), budget untouched.
    assert (state["a"]["status"], state["a"]["interruptions"], state["b"]["status"]) == ("Waiting", 1, "Pending")
    assert [(r["node_id"], r["attempt"], r["error"]["code"]) for r in await attempts(db, execution_id)] == [
        ("a", 1, "attempt_interrupted")
    ]
    await db.control.resume(execution_id, principal="ops", queue="executions")
    assert await runtime.run_execution(execution_id) == "Succeeded"
    rows = [(r["node_id"], r["attempt"], r["status"]) for r in await attempts(db, execution_id)]
    assert rows == [("a", 1, "RetriableFailure"), ("a", 2, "Succeeded"), ("b", 1, "Succeeded")]


async def test_a_suspension_then_a_worker_shutdown_leaves_no_node_running(
    db: Database, conditions: ConditionPool
) -> None:
    # The review's case: suspend, then SIGTERM, whose grace ran out mid-attempt: the worker hands
    # the run back (dw.release_execution_v1) with node a Running. The run was Suspended with a
    # still Running.
    execution_id = await _cut_off_mid_attempt(db, conditions)
    assert (await db.control.suspend(execution_id, principal="ops", reason=None)).outcome == "requested"
    ((token,),) = await sql(db, "SELECT lease_token FROM dw.executions WHERE id = %s", execution_id)
    await db.runs.release(execution_id, token, queue="executions", reason="worker_shutdown")
    await _suspended_with_nothing_running(db, conditions, execution_id)


async def test_a_suspension_after_a_worker_died_leaves_no_node_running(db: Database, conditions: ConditionPool) -> None:
    # kill -9 mid-attempt, then a suspend: nobody holds the run, whose node a is Running. It used to
    # be Suspended at once, a still Running; now the next holder records a first.
    execution_id = await _cut_off_mid_attempt(db, conditions)
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", execution_id)
    suspension = await db.control.suspend(execution_id, principal="ops", reason=None)
    assert (suspension.status, suspension.outcome) == ("Running", "requested")
    await _suspended_with_nothing_running(db, conditions, execution_id)


async def test_suspend_freezes_a_timer_and_resume_fires_it(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("frozen", delay("nap", duration="PT0.3S"), echo("after")))
    assert await runtime.run_execution(execution_id) == "parked"
    suspended = await db.control.suspend(execution_id, principal="ops", reason="freeze")
    assert (suspended.status, suspended.outcome) == ("Suspended", "suspended")
    await asyncio.sleep(0.5)
    # The timer came due while suspended: its wake-up job finds the run Suspended and does nothing.
    assert await runtime.run_execution(execution_id) == "suspended"
    assert [w.state for w in await db.control.waits(execution_id)] == ["open"]
    assert (await db.control.resume(execution_id, principal="ops", queue="executions")).outcome == "resumed"
    assert await runtime.run_execution(execution_id) == "Succeeded"
    (fired,) = [w for w in await db.control.waits(execution_id)]
    assert fired.state == "fired" and fired.result["lateSeconds"] >= 0.15  # caught up on resume
    with pytest.raises(Conflict):
        await db.control.resume(execution_id, principal="ops", queue="executions")


async def test_a_run_waiting_only_for_a_signal_is_not_recovered(db: Database, conditions: ConditionPool) -> None:
    execution_id = await started(db, wf("quiet", signal("wait", name="someday")))
    assert await make_runtime(db, conditions).run_execution(execution_id) == "parked"
    await sql(db, "UPDATE dw.executions SET created_at = now() - interval '1 hour' WHERE id = %s", execution_id)
    recovered = await db.operations.recover(max_recoveries=5, stalled_worker_seconds=30, queue="executions")
    assert execution_id not in [r.execution_id for r in recovered]
    assert await jobs(db, execution_id) == []
    await update_queue_metrics(db, "a-queue-never-used")
    assert REGISTRY.get_sample_value("dataworkflows_waiting_runs", {"status": "Waiting"}) == 1
    # The worker's own queue is a series at 0 before any job comes (it was absent).
    for status in ("todo", "doing"):
        depth = REGISTRY.get_sample_value(
            "dataworkflows_queue_depth", {"queue": "a-queue-never-used", "status": status}
        )
        assert depth == 0, status
    views = await sql(
        db, "SELECT node_id, kind, name, due_at FROM dw.v_waiting_runs WHERE execution_id = %s", execution_id
    )
    assert views == [("wait", "signal", "someday", None)]


async def test_a_cancel_that_comes_as_the_run_parks_takes_effect(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("race", signal("wait", name="never")))
    real_park = runtime.data.park

    async def park_after_a_cancel(execution: UUID, token: int, *, queue: str, **job: Any) -> Any:
        # The request lands after the worker decided to park, before its park commits.
        assert (await db.control.cancel(execution, principal="ops", reason=None)).outcome == "requested"
        return await real_park(execution, token, queue=queue, **job)

    runtime.data.park = park_after_a_cancel  # type: ignore[method-assign]
    assert await runtime.run_execution(execution_id) == "Cancelled"
    assert await status(db, execution_id) == "Cancelled"


async def test_the_waiting_examples_in_fixtures_run(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    reminder = await started(db, load_fixture("bundle5/delayed-reminder-workflow.json"), {"after": "PT0.2S"})
    assert await runtime.run_execution(reminder) == "parked"
    await asyncio.sleep(0.3)
    assert await runtime.run_execution(reminder) == "Succeeded"
    assert (await nodes(db, reminder))["remind"]["outputs"]["echo"].startswith("Reminder for you")

    order = await started(db, load_fixture("bundle5/order-payment-workflow.json"), {"orderId": "A-7"})
    assert await runtime.run_execution(order) == "parked"
    paid = await db.control.signal(
        order, "payment", payload={"amount": 30}, signal_id="p-1", correlation_key="A-7", principal=None, queue="q"
    )
    assert paid.outcome == "consumed" and paid.node_id == "payment"
    assert await runtime.run_execution(order) == "Succeeded"
    assert (await nodes(db, order))["ship"]["outputs"]["echo"] == "shipping order A-7, paid 30"

    expense = await started(
        db, load_fixture("bundle5/expense-approval-workflow.json"), {"amount": 120, "requester": "dan"}
    )
    assert await runtime.run_execution(expense) == "parked"
    (pending,) = await db.control.approvals(principal="bob", open_only=True)
    assert pending.details["title"] == "Expense of 120 for dan"
    for person in ("alice", "bob"):
        await db.control.decide(pending.id, principal=person, decision="approve", comment=None, queue="q")
    assert await runtime.run_execution(expense) == "Succeeded"
    assert (await nodes(db, expense))["pay"]["outputs"]["echo"] == "paying 120, approved by alice, bob"


async def test_a_withdrawn_suspension_lets_the_run_go_on(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("withdrawn", echo("a", delayMs=300), echo("b")))
    real_suspend = runtime.data.suspend

    async def resumed_first(execution: UUID, token: int, *, worker: str, **job: Any) -> Suspension:
        # The resume lands after the worker heard the request, before its suspension commits.
        assert (await db.control.resume(execution, principal="ops", queue="q")).outcome == "withdrawn"
        return await real_suspend(execution, token, worker=worker, **job)

    runtime.data.suspend = resumed_first  # type: ignore[method-assign]
    run = asyncio.ensure_future(runtime.run_execution(execution_id))
    await asyncio.sleep(0.1)
    await db.control.suspend(execution_id, principal="ops", reason=None)
    runtime.poke(execution_id)
    assert await asyncio.wait_for(run, 3) == "Succeeded"


async def test_a_cancel_that_comes_as_the_run_suspends_wins(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("both", echo("a", delayMs=300), echo("b")))
    real_suspend = runtime.data.suspend

    async def cancelled_first(execution: UUID, token: int, *, worker: str, **job: Any) -> Suspension:
        assert (await db.control.cancel(execution, principal="ops", reason=None)).outcome == "requested"
        return await real_suspend(execution, token, worker=worker, **job)

    runtime.data.suspend = cancelled_first  # type: ignore[method-assign]
    run = asyncio.ensure_future(runtime.run_execution(execution_id))
    await asyncio.sleep(0.1)
    await db.control.suspend(execution_id, principal="ops", reason=None)
    runtime.poke(execution_id)
    assert await asyncio.wait_for(run, 3) == "Cancelled"
    assert await status(db, execution_id) == "Cancelled"


async def test_a_signal_taken_by_a_node_whose_run_ended_is_given_back(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(
        "give-back",
        echo("s", to("w"), to("f")),
        signal("w", name="go"),
        echo("f", simulateFailure="permanent", delayMs=200),
    )
    execution_id = await started(db, raw)
    real_record = runtime.data.record_attempt

    async def signal_then_record(record: Any) -> Any:
        if record.node_id == "f":
            # The signal resolves w's open wait just as f's failure is about to end the run
            # (this worker has not heard of it: no listener here).
            delivery = await db.control.signal(
                execution_id, "go", payload={"n": 1}, signal_id="g-1", correlation_key=None, principal=None, queue="q"
            )
            assert delivery.outcome == "consumed"
        return await real_record(record)

    runtime.data.record_attempt = signal_then_record  # type: ignore[method-assign]
    assert await runtime.run_execution(execution_id) == "Failed"
    # The signal is back in the inbox; the wait is withdrawn, its node Cancelled.
    assert await sql(db, "SELECT wait_id FROM dw.signals WHERE execution_id = %s", execution_id) == [(None,)]
    assert [w.state for w in await db.control.waits(execution_id)] == ["withdrawn"]
    assert (await nodes(db, execution_id))["w"]["status"] == "Cancelled"
    # A redrive of f's letter runs w again, and its new wait takes the signal.
    runtime.data.record_attempt = real_record  # type: ignore[method-assign]
    (letter,) = await db.operations.dead_letters(open_only=True, kind=None, before=None, limit=10)
    await db.operations.redrive(letter.id, principal="ops", queue="executions")
    assert await runtime.run_execution(execution_id) == "Failed"  # f fails again, permanently
    state = await nodes(db, execution_id)
    assert (state["w"]["status"], state["w"]["outputs"]) == ("Succeeded", {"n": 1})


async def test_a_cancel_that_comes_as_the_last_node_is_recorded_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("late-cancel", echo("a", to("b")), echo("b")))
    real_record = runtime.data.record_attempt

    async def cancel_then_record(record: Any) -> Any:
        if record.node_id != "b":
            return await real_record(record)
        # The request lands while the last node's result is on its way to the database: b is still
        # running, so the request is one the worker must act on, and b's record cannot end the run.
        requested = await db.control.cancel(execution_id, principal="ops", reason="late")
        assert (requested.status, requested.outcome) == ("Running", "requested")
        recorded = await real_record(record)
        assert not recorded.run_succeeded
        # The worker hears of it after it has the record's answer, before it ends the run.
        runtime.poke(execution_id)
        return recorded

    runtime.data.record_attempt = cancel_then_record  # type: ignore[method-assign]
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert await status(db, execution_id) == "Succeeded"
    assert {n: s["status"] for n, s in (await nodes(db, execution_id)).items()} == {"a": "Succeeded", "b": "Succeeded"}
    log = await events(db, execution_id)
    assert "execution_cancelled" not in log
    assert log.index("cancel_requested") < log.index("cancel_too_late") < log.index("execution_succeeded")
    (details,) = await sql(
        db, "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = 'cancel_too_late'", execution_id
    )
    assert details[0]["status"] == "Succeeded" and details[0]["reason"] == "late"
    with pytest.raises(ExecutionEnded):
        await db.control.cancel(execution_id, principal="ops", reason=None)


async def test_a_cancel_heard_while_the_last_record_is_in_flight_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("late-cancel-in-flight", echo("a", to("b")), echo("b")))
    real_record = runtime.data.record_attempt

    async def cancel_then_record(record: Any) -> Any:
        if record.node_id == "b":
            # The worker hears of the request as b's record goes out: it stops b's task, whose
            # record (sent by the group commit's own task) commits all the same.
            assert (await db.control.cancel(execution_id, principal="ops", reason=None)).outcome == "requested"
            runtime.poke(execution_id)
        return await real_record(record)

    runtime.data.record_attempt = cancel_then_record  # type: ignore[method-assign]
    # Every node had ended, but this worker did not take in b's record: it hands the run back ...
    assert await runtime.run_execution(execution_id) == "released"
    assert await status(db, execution_id) == "Running"
    assert [j[0] for j in await jobs(db, execution_id)] == ["todo"]
    # ... and the job that queued ends it from its checkpoints, as it would have ended.
    runtime.data.record_attempt = real_record  # type: ignore[method-assign]
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert {n: s["status"] for n, s in (await nodes(db, execution_id)).items()} == {"a": "Succeeded", "b": "Succeeded"}
    assert [(r["node_id"], r["status"]) for r in await attempts(db, execution_id)] == [
        ("a", "Succeeded"),
        ("b", "Succeeded"),
    ]
    log = await events(db, execution_id)
    assert "execution_cancelled" not in log
    assert log.index("cancel_requested") < log.index("cancel_too_late") < log.index("execution_succeeded")


async def test_a_run_whose_last_node_ended_keeps_its_outputs_when_cancelled_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("late-cancel-outputs", echo("a", to("b")), echo("b"))
    raw["outputs"] = {"said": "{{ nodes.b.echo }}"}
    execution_id = await started(db, raw)
    real_record = runtime.data.record_attempt
    answers: list[str] = []

    async def record_then_cancel(record: Any) -> Any:
        recorded = await real_record(record)
        if record.node_id == "b":
            # Every node has ended; the worker has its outputs to render when the request lands.
            answers.append((await db.control.cancel(execution_id, principal="ops", reason=None)).outcome)
            runtime.poke(execution_id)
        return recorded

    runtime.data.record_attempt = record_then_cancel  # type: ignore[method-assign]
    assert await runtime.run_execution(execution_id) == "Succeeded"
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None
    assert (execution["status"], execution["outputs"]) == ("Succeeded", {"said": "b"})
    assert execution["cancel_requested_at"] is not None
    log = await events(db, execution_id)
    assert "execution_cancelled" not in log and log.count("cancel_too_late") == 1
    # Nothing was left to stop when it was asked: the answer says so.
    assert answers == ["too_late"]


async def test_a_cancel_of_a_run_whose_worker_died_after_its_last_node_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    raw = wf("late-orphan", echo("a"))
    raw["outputs"] = {"said": "{{ nodes.a.echo }}"}
    execution_id = await started(db, raw)
    # A worker took the run and recorded its only node (a run with outputs ends after its last
    # record, when the worker has rendered them), then died before ending the run.
    acquired = await db.runs.acquire(execution_id, owner="dead", lease_seconds=30, start=True)
    token = int(acquired.lease_token or 0)
    recorded = await db.runs.record_attempt(attempt_record(execution_id, token, "a", start_limit=1, complete=False))
    assert not recorded.run_succeeded
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", execution_id)

    cancelled = await db.control.cancel(execution_id, principal="ops", reason="too slow")
    assert await status(db, execution_id) == "Running"
    assert (cancelled.status, cancelled.outcome) == ("Running", "too_late")
    # The worker that takes it back (recovery queues it) ends it as it would have ended.
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None
    assert (execution["status"], execution["outputs"]) == ("Succeeded", {"said": "a"})
    log = await events(db, execution_id)
    assert "execution_cancelled" not in log
    assert log.index("cancel_requested") < log.index("cancel_too_late") < log.index("execution_succeeded")


async def test_a_cancel_that_comes_as_a_run_with_every_node_ended_suspends_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("late-both", echo("a")))
    real_record, real_suspend = runtime.data.record_attempt, runtime.data.suspend
    answers: list[str] = []
    outcomes: list[str] = []

    async def suspend_then_record(record: Any) -> Any:
        # The suspension is asked for while a runs; the worker hears of it once a is recorded.
        assert (await db.control.suspend(execution_id, principal="ops", reason=None)).outcome == "requested"
        recorded = await real_record(record)
        runtime.poke(execution_id)
        return recorded

    async def cancelled_first(execution: UUID, token: int, *, worker: str, **job: Any) -> Suspension:
        answers.append((await db.control.cancel(execution, principal="ops", reason=None)).outcome)
        suspension = await real_suspend(execution, token, worker=worker, **job)
        outcomes.append(suspension.outcome)
        return suspension

    runtime.data.record_attempt = suspend_then_record  # type: ignore[method-assign]
    runtime.data.suspend = cancelled_first  # type: ignore[method-assign]
    try:
        # a ended while the suspension was pending: the cancel finds nothing to stop, and the
        # suspension nothing to hold back. The run ends as it would have, not Suspended with every
        # node ended until someone resumes it.
        assert await runtime.run_execution(execution_id) == "Succeeded"
    finally:
        runtime.data.record_attempt, runtime.data.suspend = real_record, real_suspend  # type: ignore[method-assign]
    assert (answers, outcomes) == (["too_late"], ["too_late"])
    log = await events(db, execution_id)
    assert "execution_cancelled" not in log and "execution_suspended" not in log
    assert log.index("cancel_requested") < log.index("suspend_too_late") < log.index("cancel_too_late")
    assert log.index("cancel_too_late") < log.index("execution_succeeded")


async def test_a_node_cancelled_in_its_retry_backoff_is_cancelled_not_skipped(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions, park_threshold_seconds=1.0)
    raw = wf("backoff-cancel", echo("flaky", simulateFailure="transient", failUntilAttempt=5), echo("after"))
    raw["nodes"][0]["retryPolicy"] = {"maxAttempts": 5, "initialDelay": "PT60S", "maxDelay": "PT60S", "jitter": False}
    execution_id = await started(db, raw)
    assert await runtime.run_execution(execution_id) == "parked"
    before = await nodes(db, execution_id)
    assert (before["flaky"]["status"], before["flaky"]["attempts"]) == ("Waiting", 1)
    last_error = before["flaky"]["error"]
    assert last_error is not None

    cancelled = await db.control.cancel(execution_id, principal="ops", reason=None)
    assert (cancelled.status, cancelled.outcome) == ("Cancelled", "cancelled")
    state = await nodes(db, execution_id)
    assert (state["flaky"]["status"], state["after"]["status"]) == ("Cancelled", "Skipped")
    # Its history is its one attempt (the next one never started), and it keeps that attempt's error.
    assert [(r["node_id"], r["attempt"], r["status"]) for r in await attempts(db, execution_id)] == [
        ("flaky", 1, "RetriableFailure")
    ]
    assert state["flaky"]["error"] == last_error and state["flaky"]["next_attempt_at"] is None
    node_events = await sql(
        db,
        "SELECT node_id, type FROM dw.execution_events WHERE execution_id = %s"
        " AND type IN ('node_cancelled', 'node_skipped') ORDER BY node_id",
        execution_id,
    )
    assert node_events == [("after", "node_skipped"), ("flaky", "node_cancelled")]


async def test_an_approval_escalates_to_more_approvers_after_a_while(db: Database, conditions: ConditionPool) -> None:
    """The seeds' approval expiry with escalation: its approvers alone until escalation.after, then
    the escalation's approvers may decide too (and are listed as able to), and count among those who
    could still approve: everyone rejecting before it is a rejection, after it is not."""
    execution_id, approval_id = await _approval_run(
        db, conditions, "escalates", escalation={"after": "PT1H", "approvers": ["dana", "alice"]}
    )
    (pending,) = await db.control.approvals(principal="alice", open_only=True)
    assert pending.details["escalation"]["approvers"] == ["dana", "alice"]
    # Before its time: dana may not decide, and is not listed; the refusal says from when.
    assert await db.control.approvals(principal="dana", open_only=True) == []
    with pytest.raises(Forbidden) as refused:
        await db.control.decide(approval_id, principal="dana", decision="approve", comment=None, queue="q")
    assert "from" in str(refused.value) and "its escalation" in str(refused.value)
    for who in ("alice", "bob"):
        await db.control.decide(approval_id, principal=who, decision="reject", comment=None, queue="q")
    # The hour passes.
    await sql(
        db,
        "UPDATE dw.waits SET details = jsonb_set(details, '{escalation,at}', to_jsonb(now() - interval '1 second'))"
        " WHERE id = %s RETURNING id",
        approval_id,
    )
    (listed,) = await db.control.approvals(principal="dana", open_only=True)
    assert listed.id == approval_id
    # carol's rejection would have ended it; dana may still approve now.
    after = await db.control.decide(approval_id, principal="carol", decision="reject", comment=None, queue="q")
    assert after.state == "open"
    decided = await db.control.decide(approval_id, principal="dana", decision="approve", comment="ok", queue="q")
    assert decided.state == "approved"
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    outputs = (await nodes(db, execution_id))["ok"]["outputs"]
    assert [d["principal"] for d in outputs["decisions"] if d["decision"] == "approve"] == ["dana"]


@pytest.mark.parametrize(
    ("escalation", "timeout", "message"),
    [
        (
            {"after": "PT2H", "approvers": ["dana"]},
            "PT1H",
            "escalation.after must be shorter than the approval's timeout",
        ),
        ({"after": "PT0S", "approvers": ["dana"]}, None, "escalation.after"),
        ({"after": "PT1H", "approvers": []}, None, "escalation.approvers: give 1 to 100 approvers"),
        ({"after": "PT1H", "approvers": "dana"}, None, "escalation.approvers must be a list of principal ids"),
        ({"after": "PT1H"}, None, "approvers"),
        # A review's note: one that adds nobody would never change who may decide.
        ({"after": "PT1H", "approvers": ["alice", " alice"]}, None, "escalation.approvers adds nobody"),
    ],
)
def test_an_escalation_that_cannot_be_is_refused_at_publish(
    escalation: dict[str, Any], timeout: str | None, message: str
) -> None:
    from dataworkflows.validation import validate_definition

    params: dict[str, Any] = {"approvers": ["alice"], "escalation": escalation}
    if timeout:
        params["timeout"] = timeout
    node = {"id": "ok", "nodeType": "approval", "parameters": params}
    problems = validate_definition({"id": "w", "displayName": "W", "startNode": "ok", "nodes": [node]})
    assert [p.pointer for p in problems] == ["/nodes/0/parameters"], problems
    assert message in problems[0].message, problems


async def test_the_api_shows_an_approvals_escalation(db: Database, conditions: ConditionPool, dsn: str) -> None:
    from litestar.testing import AsyncTestClient

    from dataworkflows.api.app import create_app
    from dataworkflows.config import Settings

    execution_id, approval_id = await _approval_run(
        db, conditions, "escalates-api", escalation={"after": "PT30M", "approvers": ["{{ 'da' ~ 'na' }}"]}
    )
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as client:
        shown = (await client.get(f"/api/v1/approvals/{approval_id}")).json()
        plain = (await client.get("/api/v1/approvals", params={"principal": "alice"})).json()
    # Its approvers rendered at the start, as the node's are; its time, from then.
    assert shown["escalation"]["approvers"] == ["dana"]
    at = datetime.fromisoformat(shown["escalation"]["at"])
    assert timedelta(minutes=29) < at - datetime.fromisoformat(shown["createdAt"]) <= timedelta(minutes=31)
    assert [a["escalation"] is not None for a in plain] == [True], plain
    assert execution_id is not None


async def test_one_rejection_still_rejects_an_all_approval_once_it_has_escalated(
    db: Database, conditions: ConditionPool
) -> None:
    """quorum all: one rejection rejects (README "Waiting node kinds"), escalated or not. The
    escalation's approvers counted among those who could still approve, so after it an 'all'
    approval that alice had rejected stayed open, and bob, carol and dana approved it over her veto."""
    execution_id, approval_id = await _approval_run(
        db, conditions, "all-escalated", quorum="all", escalation={"after": "PT1H", "approvers": ["dana"]}
    )
    await sql(
        db,
        "UPDATE dw.waits SET details = jsonb_set(details, '{escalation,at}', to_jsonb(now() - interval '1 second'))"
        " WHERE id = %s RETURNING id",
        approval_id,
    )
    decided = await db.control.decide(approval_id, principal="alice", decision="reject", comment="no", queue="q")
    assert decided.state == "rejected"
    with pytest.raises(Conflict):
        await db.control.decide(approval_id, principal="dana", decision="approve", comment=None, queue="q")
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    assert (await nodes(db, execution_id))["ok"]["error"]["code"] == "rejected"


async def test_the_pending_approvals_view_says_who_may_decide_once_it_has_escalated(
    db: Database, conditions: ConditionPool
) -> None:
    """dw.v_pending_approvals is who may decide (README "Execution control"): it listed only the
    approvers, also once the escalation's approvers could decide."""
    _, approval_id = await _approval_run(
        db, conditions, "view-escalated", escalation={"after": "PT1H", "approvers": ["dana", "alice"]}
    )
    view = "SELECT approvers, escalation_approvers, escalation_at IS NOT NULL FROM dw.v_pending_approvals"
    assert await sql(db, view) == [(["alice", "bob", "carol"], ["dana", "alice"], True)]
    await sql(
        db,
        "UPDATE dw.waits SET details = jsonb_set(details, '{escalation,at}', to_jsonb(now() - interval '1 second'))"
        " WHERE id = %s RETURNING id",
        approval_id,
    )
    assert await sql(db, view) == [(["alice", "bob", "carol", "dana"], ["dana", "alice"], True)]

"""A run whose outcome is decided before the run's end is written: every node has ended, or a node
failed with nothing to handle the failure (fail fast). A worker that dies in between, a cancel or a
suspension that comes then, and the recovery that takes the run back must all end it as it would
have ended: Succeeded with its outputs, or Failed with its node_failed dead letter."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import REGISTRY
from workers.app import count_recoveries

from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.deadlines import time_out_overdue
from dataworkflows.runtime import Runtime
from tests.integration.test_folded_writes import attempt_record
from tests.integration.test_runtime import FAST_RETRY, attempts, echo, events, make_runtime, nodes, to, wf
from tests.integration.test_waits import sql, started, status


class WorkerDied(Exception):
    """The worker's process went away (the test's stand-in for kill -9)."""


async def _dies_before_the_runs_end(db: Database, runtime: Runtime, execution_id: UUID) -> None:
    """Runs the execution on a worker that dies after its last node's record commits and before it
    ends the run (dw.complete_execution_v4); its lease then runs out, as a dead worker's does."""
    real_complete = db.runs.complete

    async def died(*args: Any, **kwargs: Any) -> Any:
        raise WorkerDied()

    db.runs.complete = died  # type: ignore[method-assign]
    try:
        with pytest.raises(WorkerDied):
            await runtime.run_execution(execution_id)
    finally:
        db.runs.complete = real_complete  # type: ignore[method-assign]
    assert await status(db, execution_id) == "Running"
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", execution_id)


async def _failed_and_crashed(db: Database, runtime: Runtime, raw: dict[str, Any]) -> tuple[UUID, UUID]:
    """Two runs of a workflow whose node fails unhandled: one run through (it ends Failed), the
    baseline; one whose worker dies after the failure's record and before the run's end."""
    baseline = await started(db, raw)
    assert await runtime.run_execution(baseline) == "Failed"
    execution_id = await started(db, raw)
    await _dies_before_the_runs_end(db, runtime, execution_id)
    return baseline, execution_id


async def _ending(db: Database, execution_id: UUID) -> dict[str, Any]:
    """What a user sees of a run's end: its status and error, its nodes, its dead letters, and its
    log without the events a takeover adds."""
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None
    letters = await db.fetch_all(
        "list_execution_dead_letters", execution_id=execution_id, open=None, kind=None, before=None, limit=10
    )
    takeover = {
        "lease_lost",
        "execution_reacquired",
        "execution_released",
        "cancel_requested",
        "cancel_too_late",
        "suspend_requested",
        "suspend_too_late",
    }
    return {
        "status": execution["status"],
        "error": execution["error"],
        "nodes": {n: s["status"] for n, s in (await nodes(db, execution_id)).items()},
        "letters": [(d["kind"], d["node_id"], d["payload"], d["error"], d["attempts"]) for d in letters],
        "log": [e for e in await events(db, execution_id) if e not in takeover],
    }


async def _attempt_rows(db: Database, execution_id: UUID) -> list[tuple[Any, ...]]:
    rows = await attempts(db, execution_id)
    return sorted((r["node_id"], r["attempt"], r["status"], (r["error"] or {}).get("code")) for r in rows)


def _fails_last() -> dict[str, Any]:
    return wf("fails-last", echo("a", to("b")), echo("b", simulateFailure="permanent"))


def _fails_first() -> dict[str, Any]:
    return wf("fails-first", echo("a", to("b"), simulateFailure="permanent"), echo("b"))


def _fails_beside_a_running_node() -> dict[str, Any]:
    return wf(
        "fails-beside",
        echo("s", to("a"), to("slow")),
        echo("a", simulateFailure="permanent"),
        # Still running when a fails (the run's end stops it), and when the worker dies.
        echo("slow", delayMs=5_000),
        maxParallelActions=2,
    )


@pytest.mark.parametrize(
    ("raw", "failed"),
    [(_fails_last(), "b"), (_fails_first(), "a"), (_fails_beside_a_running_node(), "a")],
    ids=["last-node", "first-node", "beside-a-running-node"],
)
async def test_a_run_whose_worker_died_after_an_unhandled_failure_ends_failed(
    db: Database, conditions: ConditionPool, raw: dict[str, Any], failed: str
) -> None:
    runtime = make_runtime(db, conditions)
    baseline, execution_id = await _failed_and_crashed(db, runtime, raw)
    # The worker that takes it back (recovery queues it) ends it as the dead one would have: Failed,
    # with the failed node's dead letter, not Succeeded (every node had ended) nor "stuck".
    assert await make_runtime(db, conditions, worker_id="survivor").run_execution(execution_id) == "Failed"
    ending = await _ending(db, execution_id)
    assert ending == await _ending(db, baseline)
    # What the attempts say too: the attempt cut off by the run's end is Cancelled (run_ended), not
    # recorded as interrupted and run again.
    assert await _attempt_rows(db, execution_id) == await _attempt_rows(db, baseline)
    assert (ending["status"], ending["error"]["code"], ending["error"]["nodeId"]) == ("Failed", "node_failed", failed)
    assert [letter[:2] for letter in ending["letters"]] == [("node_failed", failed)]


async def _sweep(db: Database, ended_by: str, execution_id: UUID) -> None:
    """Ends a run nobody holds as the sweeps do: its deadline passes (dw.time_out_overdue_v2), or
    recovery gives up on it (dw.recover_executions_v1 past DW_MAX_RECOVERIES)."""
    if ended_by == "deadline":
        await sql(db, "UPDATE dw.executions SET deadline_at = now() - interval '1 second' WHERE id = %s", execution_id)
        assert [e for e, _ in await time_out_overdue(db)] == [execution_id]
    else:
        await db.fetch_all("recover_executions", max_recoveries=0, stalled_worker_seconds=30, queue="executions")


@pytest.mark.parametrize("ended_by", ["deadline", "recovery"])
@pytest.mark.parametrize(
    ("raw", "failed"),
    [(_fails_last(), "b"), (_fails_first(), "a"), (_fails_beside_a_running_node(), "a")],
    ids=["last-node", "first-node", "beside-a-running-node"],
)
async def test_a_run_the_sweeps_end_after_an_unhandled_failure_ends_failed(
    db: Database, conditions: ConditionPool, raw: dict[str, Any], failed: str, ended_by: str
) -> None:
    runtime = make_runtime(db, conditions)
    baseline, execution_id = await _failed_and_crashed(db, runtime, raw)
    # Before a worker takes it back, its deadline passes or recovery gives up on it: it ends as the
    # dead worker would have (Failed, the node's dead letter), not TimedOut without a letter nor
    # worker_lost.
    await _sweep(db, ended_by, execution_id)
    ending = await _ending(db, execution_id)
    assert ending == await _ending(db, baseline)
    assert await _attempt_rows(db, execution_id) == await _attempt_rows(db, baseline)
    assert (ending["status"], ending["error"]["code"], ending["error"]["nodeId"]) == ("Failed", "node_failed", failed)
    assert [letter[:2] for letter in ending["letters"]] == [("node_failed", failed)]


@pytest.mark.parametrize("ended_by", ["deadline", "recovery"])
async def test_a_run_the_sweeps_end_after_an_unhandled_failure_with_a_cancel_pending_says_it_came_too_late(
    db: Database, conditions: ConditionPool, ended_by: str
) -> None:
    runtime = make_runtime(db, conditions)
    baseline, execution_id = await _failed_and_crashed(db, runtime, _fails_last())
    assert (await db.control.cancel(execution_id, principal="ops", reason="too slow")).outcome == "too_late"
    await _sweep(db, ended_by, execution_id)
    assert await _ending(db, execution_id) == await _ending(db, baseline)
    log = await events(db, execution_id)
    assert log.index("cancel_requested") < log.index("cancel_too_late") < log.index("execution_failed")
    query = "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = %s"
    ((details,),) = await sql(db, query, execution_id, "cancel_too_late")
    assert (details["status"], details["reason"]) == ("Failed", "too slow")


async def test_the_sweeps_leave_a_decided_run_its_live_worker_holds(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    _, execution_id = await _failed_and_crashed(db, runtime, _fails_last())
    # Its worker is slow, not dead: it still renews the lease, past the run's deadline.
    await sql(
        db,
        "UPDATE dw.executions SET lease_expires_at = now() + interval '30 seconds',"
        " deadline_at = now() - interval '1 second' WHERE id = %s",
        execution_id,
    )
    assert await time_out_overdue(db) == []
    recovered = await db.fetch_all(
        "recover_executions", max_recoveries=0, stalled_worker_seconds=30, queue="executions"
    )
    assert execution_id not in [r["execution_id"] for r in recovered]
    assert await status(db, execution_id) == "Running"
    assert "execution_failed" not in await events(db, execution_id)


@pytest.mark.parametrize("ended_by", ["deadline", "recovery"])
async def test_a_sweep_ending_a_run_whose_cancel_came_in_time_cancels_it(
    db: Database, conditions: ConditionPool, ended_by: str
) -> None:
    """A cancel requested while a node ran (the outcome was not decided), and the worker died before
    it took the cancel in: the next acquire ends the run Cancelled, and so do the sweeps when they end
    the run first: not TimedOut (its deadline passed), nor Failed worker_lost with a dead letter
    (recovery gave up on it), each with a cancel_too_late."""

    async def cancelled_then_dead(workflow_id: str) -> UUID:
        execution_id = await started(db, wf(workflow_id, echo("a", to("b")), echo("b")))
        acquired = await db.runs.acquire(execution_id, owner="dead", lease_seconds=30, start=True)
        assert acquired.started == ("a",)
        assert (
            await db.control.cancel(execution_id, principal="ops", reason="no longer needed")
        ).outcome == "requested"
        await sql(
            db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", execution_id
        )
        return execution_id

    baseline = await cancelled_then_dead("cancel-in-time-acquired")
    assert (await db.runs.acquire(baseline, owner="survivor", lease_seconds=30, start=True)).outcome == "finished"
    execution_id = await cancelled_then_dead(f"cancel-in-time-{ended_by}")
    if ended_by == "deadline":
        await sql(db, "UPDATE dw.executions SET deadline_at = now() - interval '1 second' WHERE id = %s", execution_id)
        ended = await db.operations.time_out_overdue(limit=10)
        assert [(e, s) for e, _, s in ended] == [(execution_id, "Cancelled")]
    else:
        recovered = await db.fetch_all(
            "recover_executions", max_recoveries=0, stalled_worker_seconds=30, queue="executions"
        )
        assert [(r["execution_id"], r["action"]) for r in recovered] == [(execution_id, "cancelled")]

    ending, expected = await _ending(db, execution_id), await _ending(db, baseline)
    # The error says when the cancel was asked: not at the same time for the two runs.
    assert ending["error"].pop("requestedAt") and expected["error"].pop("requestedAt")
    assert ending == expected
    assert (ending["status"], ending["error"]["code"], ending["letters"]) == ("Cancelled", "cancelled", [])
    assert ending["nodes"] == {"a": "Cancelled", "b": "Skipped"}
    assert "cancel_too_late" not in await events(db, execution_id)


async def test_a_cancel_of_a_run_whose_worker_died_after_an_unhandled_failure_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    baseline, execution_id = await _failed_and_crashed(db, runtime, _fails_last())
    # The run's outcome was decided when b's failure was recorded: nothing is left to stop.
    cancelled = await db.control.cancel(execution_id, principal="ops", reason="too slow")
    assert (cancelled.status, cancelled.outcome) == ("Running", "too_late")
    assert await make_runtime(db, conditions, worker_id="survivor").run_execution(execution_id) == "Failed"
    assert await _ending(db, execution_id) == await _ending(db, baseline)
    log = await events(db, execution_id)
    assert "execution_cancelled" not in log
    assert log.index("cancel_requested") < log.index("cancel_too_late") < log.index("execution_failed")
    query = "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = %s"
    ((details,),) = await sql(db, query, execution_id, "cancel_too_late")
    assert (details["status"], details["reason"]) == ("Failed", "too slow")


async def test_a_cancel_heard_as_an_unhandled_failure_is_recorded_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    baseline = await started(db, _fails_last())
    assert await runtime.run_execution(baseline) == "Failed"

    execution_id = await started(db, _fails_last())
    real_record = db.runs.record_attempt

    async def cancel_then_record(record: Any) -> Any:
        if record.node_id != "b":
            return await real_record(record)
        # The worker hears of the request as b's failure goes out: b's record commits, its answer is
        # not back when the worker takes the cancel in and stops b's task. (Poked before the record
        # was awaited, a loaded machine's worker stopped the task before the record was sent, and
        # the run rightly ended Cancelled: a cancel taken in before the failure is recorded.)
        assert (await db.control.cancel(execution_id, principal="ops", reason=None)).outcome == "requested"
        await real_record(record)
        runtime.poke(execution_id)
        await asyncio.sleep(30)
        raise AssertionError("the cancel did not stop b's task")

    db.runs.record_attempt = cancel_then_record  # type: ignore[method-assign]
    try:
        # The failure decided the run, but this worker did not take it in: it hands the run back ...
        assert await runtime.run_execution(execution_id) == "released"
    finally:
        db.runs.record_attempt = real_record  # type: ignore[method-assign]
    # ... and the worker that takes it ends it Failed, as it would have ended: not Cancelled.
    assert await runtime.run_execution(execution_id) == "Failed"
    assert await _ending(db, execution_id) == await _ending(db, baseline)
    log = await events(db, execution_id)
    assert "execution_cancelled" not in log
    assert log.index("cancel_requested") < log.index("cancel_too_late") < log.index("execution_failed")


def _with_outputs(workflow_id: str) -> dict[str, Any]:
    raw = wf(workflow_id, echo("a", to("b")), echo("b"))
    raw["outputs"] = {"said": "{{ nodes.b.echo }}"}
    return raw


async def _succeeded_with_outputs(db: Database, execution_id: UUID) -> None:
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None
    assert (execution["status"], execution["outputs"], execution["suspended_at"]) == ("Succeeded", {"said": "b"}, None)
    assert execution["suspend_requested_at"] is None
    log = await events(db, execution_id)
    assert "execution_suspended" not in log
    assert log.index("suspend_requested") < log.index("suspend_too_late") < log.index("execution_succeeded")


async def test_a_suspension_heard_as_the_last_node_is_recorded_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, _with_outputs("late-suspend"))
    real_record = db.runs.record_attempt

    async def suspend_then_record(record: Any) -> Any:
        if record.node_id != "b":
            return await real_record(record)
        # The request lands while b's result is on its way: b still runs, so the worker must act on
        # it, and b's record ends nothing while it is pending.
        requested = await db.control.suspend(execution_id, principal="ops", reason="maintenance")
        assert (requested.status, requested.outcome) == ("Running", "requested")
        recorded = await real_record(record)
        assert not recorded.run_succeeded
        runtime.poke(execution_id)
        return recorded

    db.runs.record_attempt = suspend_then_record  # type: ignore[method-assign]
    try:
        # Every node has ended when the suspension would take effect: it ends as it would have.
        assert await runtime.run_execution(execution_id) == "Succeeded"
    finally:
        db.runs.record_attempt = real_record  # type: ignore[method-assign]
    await _succeeded_with_outputs(db, execution_id)
    query = "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = %s"
    ((details,),) = await sql(db, query, execution_id, "suspend_too_late")
    assert details["status"] == "Running" and "requestedAt" in details


async def test_a_suspension_asked_when_every_node_has_ended_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    execution_id = await started(db, _with_outputs("late-suspend-asked"))
    real_record = db.runs.record_attempt
    answers: list[str] = []

    async def record_then_suspend(record: Any) -> Any:
        recorded = await real_record(record)
        if record.node_id == "b":
            # The worker has the outputs to render when the request lands.
            answers.append((await db.control.suspend(execution_id, principal="ops", reason=None)).outcome)
            runtime.poke(execution_id)
        return recorded

    db.runs.record_attempt = record_then_suspend  # type: ignore[method-assign]
    try:
        assert await runtime.run_execution(execution_id) == "Succeeded"
    finally:
        db.runs.record_attempt = real_record  # type: ignore[method-assign]
    assert answers == ["too_late"]
    await _succeeded_with_outputs(db, execution_id)


async def _every_node_recorded(db: Database, execution_id: UUID, *, suspend_before_b: bool = False) -> None:
    """A worker ran a and b and recorded both (b's record ended nothing: complete=False), then died
    before it ended the run; with suspend_before_b, a suspension was asked while b ran."""
    acquired = await db.runs.acquire(execution_id, owner="dead", lease_seconds=30, start=True)
    token = int(acquired.lease_token or 0)
    await db.runs.record_attempt(attempt_record(execution_id, token, "a", fired=(True,), start_limit=1))
    if suspend_before_b:
        assert (await db.control.suspend(execution_id, principal="ops", reason=None)).outcome == "requested"
    recorded = await db.runs.record_attempt(attempt_record(execution_id, token, "b", complete=False))
    assert not recorded.run_succeeded


async def test_a_suspension_pending_when_the_worker_died_after_the_last_node_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    execution_id = await started(db, _with_outputs("late-suspend-orphan"))
    # The worker died after b's record (which ended nothing: a suspension was pending), before it
    # suspended the run.
    await _every_node_recorded(db, execution_id, suspend_before_b=True)
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", execution_id)

    # The worker that takes it back (recovery queues it) ends it as it would have, not Suspended.
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    await _succeeded_with_outputs(db, execution_id)


async def test_a_suspension_of_a_run_whose_worker_died_after_its_last_node_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    execution_id = await started(db, _with_outputs("late-suspend-dead"))
    await _every_node_recorded(db, execution_id)
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", execution_id)

    suspension = await db.control.suspend(execution_id, principal="ops", reason=None)
    assert (suspension.status, suspension.outcome) == ("Running", "too_late")
    assert await status(db, execution_id) == "Running"
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    await _succeeded_with_outputs(db, execution_id)


async def test_a_suspension_of_a_run_whose_worker_died_after_an_unhandled_failure_is_too_late(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    baseline, execution_id = await _failed_and_crashed(db, runtime, _fails_first())
    # b never started and never will: the run failed when a's failure was recorded.
    suspension = await db.control.suspend(execution_id, principal="ops", reason=None)
    assert (suspension.status, suspension.outcome) == ("Running", "too_late")
    assert await make_runtime(db, conditions, worker_id="survivor").run_execution(execution_id) == "Failed"
    assert await _ending(db, execution_id) == await _ending(db, baseline)
    assert "execution_suspended" not in await events(db, execution_id)


@pytest.mark.parametrize(
    ("ended_by", "ended_status", "event"),
    [("deadline", "TimedOut", "execution_timedout"), ("recovery", "Failed", "execution_failed")],
)
async def test_a_run_ended_by_the_sweeps_with_a_cancel_pending_says_the_cancel_came_too_late(
    db: Database, ended_by: str, ended_status: str, event: str
) -> None:
    execution_id = await started(db, _with_outputs(f"swept-{ended_by}"))
    # Every node ended, a cancel came too late, and the worker died before it ended the run; then,
    # before a worker takes it back, its deadline passes, or recovery gives up on it.
    acquired = await db.runs.acquire(execution_id, owner="dead", lease_seconds=30, start=True)
    token = int(acquired.lease_token or 0)
    await db.runs.record_attempt(attempt_record(execution_id, token, "a", fired=(True,), start_limit=1))
    await db.runs.record_attempt(attempt_record(execution_id, token, "b", complete=False))
    assert (await db.control.cancel(execution_id, principal="ops", reason="late")).outcome == "too_late"
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", execution_id)
    await _sweep(db, ended_by, execution_id)

    assert await status(db, execution_id) == ended_status
    log = await events(db, execution_id)
    # As when its worker ends a run whose cancel was pending otherwise (dw.complete_execution_v2).
    assert log.index("cancel_requested") < log.index("cancel_too_late") < log.index(event)
    query = "SELECT principal, details FROM dw.execution_events WHERE execution_id = %s AND type = %s"
    ((principal, details),) = await sql(db, query, execution_id, "cancel_too_late")
    assert (principal, details["status"], details["reason"]) == ("ops", ended_status, "late")


async def test_a_cancel_of_a_suspended_run_whose_nodes_all_ended_cancels_it(
    db: Database, conditions: ConditionPool
) -> None:
    """A run suspended with every node ended (before suspensions that come too late were refused) has
    no worker to end it: a cancel ends it Cancelled rather than answering too_late and leaving it
    Suspended, holding its workflow's concurrency slot, until someone resumes it."""
    execution_id = await started(db, _with_outputs("suspended-all-ended"))
    await _every_node_recorded(db, execution_id)
    await sql(
        db,
        "UPDATE dw.executions SET status = 'Suspended', lease_owner = NULL, lease_expires_at = NULL WHERE id = %s",
        execution_id,
    )
    cancellation = await db.control.cancel(execution_id, principal="ops", reason=None)
    assert (cancellation.status, cancellation.outcome) == ("Cancelled", "cancelled")
    assert await status(db, execution_id) == "Cancelled"


def _fails_once(workflow_id: str) -> dict[str, Any]:
    """b fails unhandled at its first attempt (a budget of one) and succeeds when redriven."""
    raw = wf(workflow_id, echo("a", to("b")), echo("b", simulateFailure="transient", failUntilAttempt=2))
    raw["nodes"][1]["retryPolicy"] = {**FAST_RETRY, "maxAttempts": 1}
    return raw


@pytest.mark.parametrize("request_left", ["cancel", "suspension"])
async def test_a_redrive_withdraws_what_was_asked_of_the_failed_run(
    db: Database, conditions: ConditionPool, request_left: str
) -> None:
    """A cancel that came too late (the run had failed) or a suspension pending when the run failed
    was about that run: its redrive re-runs the failed node instead of being cancelled or suspended
    by it at the first acquire."""
    execution_id = await started(db, _fails_once(f"redrive-withdraws-{request_left}"))
    if request_left == "cancel":
        await _dies_before_the_runs_end(db, make_runtime(db, conditions), execution_id)
        assert (await db.control.cancel(execution_id, principal="ops", reason="stop")).outcome == "too_late"
        assert await make_runtime(db, conditions, worker_id="survivor").run_execution(execution_id) == "Failed"
    else:
        assert await make_runtime(db, conditions).run_execution(execution_id) == "Failed"
        await sql(db, "UPDATE dw.executions SET suspend_requested_at = now() WHERE id = %s", execution_id)
    letters = await db.fetch_all(
        "list_execution_dead_letters", execution_id=execution_id, open=None, kind=None, before=None, limit=10
    )
    assert [letter["kind"] for letter in letters] == ["node_failed"]
    await db.operations.redrive(letters[0]["id"], principal="ops", queue="executions")
    assert await make_runtime(db, conditions, worker_id="after").run_execution(execution_id) == "Succeeded"
    logged = await db.fetch_all("list_events", id=execution_id, after=0, limit=1000)
    redriven = [e["details"] for e in logged if e["type"] == "execution_redriven"]
    withdrew = "withdrewCancel" if request_left == "cancel" else "withdrewSuspension"
    assert len(redriven) == 1 and withdrew in redriven[0]


async def test_a_run_recovery_ends_is_counted_among_the_executions_finished(
    db: Database, conditions: ConditionPool
) -> None:
    """dataworkflows_executions_finished_total counts every end: a run recovery gives up on (Failed,
    worker_lost) or cancels (its cancel came in time) as a run its worker ends."""

    def finished(workflow_id: str, status: str) -> float:
        labels = {"workflow_id": workflow_id, "status": status}
        return REGISTRY.get_sample_value("dataworkflows_executions_finished_total", labels) or 0.0

    lost = await started(db, wf("recovered-lost", echo("a")))
    cancelled = await started(db, wf("recovered-cancelled", echo("a")))
    for execution_id in (lost, cancelled):
        assert (await db.runs.acquire(execution_id, owner="dead", lease_seconds=30, start=True)).started == ("a",)
    assert (await db.control.cancel(cancelled, principal="ops", reason=None)).outcome == "requested"
    await sql(
        db,
        "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = ANY(%s)",
        [
            lost,
            cancelled,
        ],
    )
    before = finished("recovered-lost", "Failed"), finished("recovered-cancelled", "Cancelled")
    recovered = await db.operations.recover(max_recoveries=0, stalled_worker_seconds=30, queue="executions")
    assert sorted((r.workflow_id, r.action) for r in recovered) == [
        ("recovered-cancelled", "cancelled"),
        ("recovered-lost", "failed"),
    ]
    count_recoveries(recovered)
    after = finished("recovered-lost", "Failed"), finished("recovered-cancelled", "Cancelled")
    assert (after[0] - before[0], after[1] - before[1]) == (1.0, 1.0)

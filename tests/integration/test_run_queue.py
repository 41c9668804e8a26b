"""A run's jobs go to the queue it was started on (dw.executions.queue, a child's its parent's), whoever
queues one again: the waker and recovery of a worker that reads another queue, the API's signal, resume
and redrive, a worker giving the run back. Before, each of them queued the job on its own queue, so a
deployment with a queue of its own for some workflows saw their runs move to another queue (and to that
queue's workers) at their first timer, signal or recovery."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from tests.conftest import publish
from tests.integration.test_runtime import echo, make_runtime, to, wf
from tests.integration.test_waits import delay, signal, sql

# The run's queue; everyone below queues from "executions", the default the API and workers read.
OWN = "heavy"


async def start_on(db: Database, workflow_id: str, queue: str) -> UUID:
    row = await db.executions.start(
        workflow_id=workflow_id,
        request_id=f"{workflow_id}-{queue}",
        trigger={},
        principal_id="tests",
        principal_type="user",
        correlation_id=None,
        queue=queue,
    )
    return row.execution_id


async def taken(db: Database, execution_id: UUID) -> list[str]:
    """The queues of the run's jobs waiting to run; they are deleted, as if a worker had taken them."""
    rows = await sql(
        db,
        "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s AND status = 'todo' RETURNING queue_name",
        str(execution_id),
    )
    return [str(r[0]) for r in rows]


async def test_timers_signals_resume_and_a_release_queue_the_run_on_its_own_queue(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)  # settings.queue: "executions"
    nodes = [delay("nap", to("go"), duration="PT0.2S"), signal("go", to("after"), name="go"), echo("after")]
    await publish(db, wf("own-queue", *nodes))
    run = await start_on(db, "own-queue", OWN)
    assert await taken(db, run) == [OWN]
    assert await runtime.run_execution(run) == "parked"
    await asyncio.sleep(0.3)
    # The timer: a worker reading "executions" wakes it, on its own queue.
    assert await db.operations.wake_due_runs(limit=10, queue="executions") == 1
    assert await taken(db, run) == [OWN]
    assert await runtime.run_execution(run) == "parked"  # at the signal now
    # Suspended and resumed by an API whose queue is "executions".
    assert (await db.control.suspend(run, principal="ops", reason=None)).outcome == "suspended"
    assert (await db.control.resume(run, principal="ops", queue="executions")).outcome == "resumed"
    assert await taken(db, run) == [OWN]
    assert await runtime.run_execution(run) == "parked"
    # The signal, sent through the same API.
    await db.control.signal(
        run, "go", payload={}, signal_id="s-1", correlation_key=None, principal="ops", queue="executions"
    )
    assert await taken(db, run) == [OWN]
    # A worker taking it and giving it back (shutting down).
    acquired = await db.fetch_one("try_acquire", id=run, owner="w1", lease_seconds=30)
    assert acquired is not None and acquired["outcome"] == "acquired"
    await db.runs.release(run, acquired["lease_token"], queue="executions", reason="worker_shutdown")
    assert await taken(db, run) == [OWN]
    assert await runtime.run_execution(run) == "Succeeded"


async def test_recovery_and_redrive_queue_the_run_on_its_own_queue(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("own-recovery", echo("only")))
    run = await start_on(db, "own-recovery", OWN)
    assert await taken(db, run) == [OWN]
    # Its worker vanished with the lease: recovery, by a worker reading "executions".
    acquired = await db.fetch_one("try_acquire", id=run, owner="gone", lease_seconds=30)
    assert acquired is not None and acquired["outcome"] == "acquired"
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", run)
    recovered = await db.operations.recover(max_recoveries=5, stalled_worker_seconds=30, queue="executions")
    assert [(r.execution_id, r.action) for r in recovered] == [(run, "requeued")]
    assert await taken(db, run) == [OWN]

    # A run that failed, redriven from its dead letter through an API reading "executions".
    await publish(db, wf("own-redrive", echo("boom", simulateFailure="permanent")))
    failed = await start_on(db, "own-redrive", OWN)
    assert await taken(db, failed) == [OWN]
    assert await runtime.run_execution(failed) == "Failed"
    letters: list[Any] = await sql(
        db, "SELECT id FROM dw.dead_letters WHERE execution_id = %s AND kind = 'node_failed'", failed
    )
    assert len(letters) == 1
    assert (await db.operations.redrive(letters[0][0], principal="ops", queue="executions")).action == "requeued"
    assert await taken(db, failed) == [OWN]

"""A run its workflow's limits hold back waits for its turn on its own row, Pending and with no job
(dw.park_throttled_run_v1), as a parked run does; a worker's waker queues its job when the turn
comes (dw.wake_due_runs_v1). Not as a job scheduled for later: every fetch walks past those."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from dataworkflows.conditions import ConditionPool
from dataworkflows.data.limits import WorkflowLimits
from dataworkflows.data.runs import acquired_from_row
from dataworkflows.db import Database
from dataworkflows.runtime import Runtime
from dataworkflows.statuses import ExecutionStatus
from tests.conftest import publish, start
from tests.integration.test_folded_writes import job_manager
from tests.integration.test_runtime import echo, make_runtime, wf
from tests.integration.test_set_based_records import encoded

QUEUE = "executions"


async def run_row(db: Database, execution_id: Any) -> dict[str, Any]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT status, wake_at, rate_slot_at, lease_owner FROM dw.executions WHERE id = %s", (execution_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(zip(("status", "wake_at", "rate_slot_at", "lease_owner"), row, strict=True))


async def jobs_of(db: Database, execution_id: Any) -> list[tuple[str, bool]]:
    """The run's jobs: (status, due now)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT status, scheduled_at IS NULL OR scheduled_at <= now() FROM procrastinate_jobs"
            " WHERE args ->> 'execution_id' = %s ORDER BY id",
            (str(execution_id),),
        )
        return [(status, due) for status, due in await cur.fetchall()]


async def limited(db: Database, workflow_id: str, *, rate: int | None = None, concurrent: int | None = None) -> None:
    await publish(db, wf(workflow_id, echo("a")))
    limits = WorkflowLimits(
        set_concurrent=concurrent is not None,
        max_concurrent=concurrent,
        set_rate=rate is not None,
        rate_per_minute=rate,
    )
    assert await db.limits.set_workflow_limits(workflow_id, limits)


async def test_a_throttled_run_waits_on_its_row_until_its_turn(db: Database, conditions: ConditionPool) -> None:
    await limited(db, "paced", rate=60)  # one start a second
    first, second = await start(db, "paced"), await start(db, "paced")
    runtime = make_runtime(db, conditions)
    ended: set[int] = set()
    runtime.job_finished = ended.add
    woken: list[datetime] = []
    runtime.wake_hint = woken.append
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s", (str(first),))
    assert await runtime.run_execution(first) == "Succeeded"

    # The worker's fetch takes the second run's job; its acquire says "not yet".
    async with job_manager(db) as (manager, worker_id):
        job = await manager.fetch_job([QUEUE], worker_id)
        assert job is not None and job.id is not None
        lease = manager.take_acquired(job.id)
        assert lease is not None
        acquired = acquired_from_row(lease)
        assert acquired.outcome == "throttled" and acquired.throttle is not None
        turn = acquired.throttle.retry_at
        assert turn is not None
        outcome = await runtime.run_execution(second, acquired=acquired, job_id=job.id, job_worker=worker_id)
    assert outcome == "throttled"
    # Its job ended with the write that parked it; no job waits in the queue for its turn.
    assert ended == {job.id}
    assert await jobs_of(db, second) == []
    assert await run_row(db, second) == {
        "status": "Pending",
        "wake_at": turn,
        "rate_slot_at": turn,
        "lease_owner": None,
    }
    assert woken == [turn]

    # Before its turn: the waker queues nothing, and recovery leaves it alone (it has no job, rightly).
    assert await db.operations.wake_due_runs(limit=10, queue=QUEUE) == 0
    recovered = await db.operations.recover(max_recoveries=3, stalled_worker_seconds=0.0, queue=QUEUE)
    assert second not in [r.execution_id for r in recovered]
    assert await jobs_of(db, second) == []

    # At its turn: the waker queues its job, and the run starts.
    await asyncio.sleep(max((turn - datetime.now(UTC)).total_seconds(), 0.0) + 0.01)
    assert await db.operations.wake_due_runs(limit=10, queue=QUEUE) == 1
    assert await jobs_of(db, second) == [("todo", True)]
    # Its turn is spent: were that job to end without taking the run, recovery (which counts) would
    # queue it again, not every pass of every waker.
    assert (await run_row(db, second))["wake_at"] is None
    assert await db.operations.wake_due_runs(limit=10, queue=QUEUE) == 0
    assert await runtime.run_execution(second) == "Succeeded"


async def promises(db: Database, runs: list[Any]) -> list[tuple[datetime, datetime | None]]:
    """Each run's promised start time and the one first promised (NULL: never moved)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT rate_slot_at, rate_first_slot_at FROM dw.executions WHERE id = ANY(%s)"
            " ORDER BY array_position(%s, id)",
            (runs, runs),
        )
        return [(slot, first) for slot, first in await cur.fetchall()]


async def held_back_by_rate(
    db: Database, conditions: ConditionPool, workflow_id: str, rate: int, priorities: list[int]
) -> tuple[Runtime, list[Any]]:
    """A run of the workflow started (the last start), then one held back by its rate per priority
    given, in that order, each through a worker's acquire and park; no job is left queued."""
    await limited(db, workflow_id, rate=rate)
    first = await start(db, workflow_id)
    runs = [await start(db, workflow_id) for _ in priorities]
    for run, priority in zip(runs, priorities, strict=True):
        if priority:
            await db.control.set_priority(run, priority, principal="ops")
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    runtime = make_runtime(db, conditions, throttle_delay_seconds=60.0)
    assert await runtime.run_execution(first) == "Succeeded"
    assert [await runtime.run_execution(run) for run in runs] == ["throttled"] * len(runs)
    return runtime, runs


async def test_a_higher_run_held_back_later_is_promised_the_next_start(db: Database, conditions: ConditionPool) -> None:
    """Under rateLimitPerMinute, a run of higher priority held back after two lower ones is promised
    the next start, and they move back a turn each (until this release it was promised the turn
    after theirs, in the order they were held back); the runs then start in that order, a turn apart."""
    runtime, (low1, low2, high) = await held_back_by_rate(db, conditions, "ranked", 60, [0, 0, 5])
    (high_at, high_first), (low1_at, low1_first), (low2_at, _) = await promises(db, [high, low1, low2])
    assert (low1_at - high_at).total_seconds() == 1.0 and (low2_at - low1_at).total_seconds() == 1.0
    assert high_first is None and low1_first == high_at  # its first promise was the one it gave up
    assert [(await run_row(db, run))["wake_at"] for run in (high, low1, low2)] == [high_at, low1_at, low2_at]
    for run in (high, low1, low2):
        # At its wake-up its job is queued; its start may still wait for the spacing after the last
        # actual one (the run before it started a little after its time): then it waits again.
        outcome = "throttled"
        while outcome == "throttled":
            turn = (await run_row(db, run))["wake_at"]
            await asyncio.sleep(max((turn - datetime.now(UTC)).total_seconds(), 0.0) + 0.01)
            assert await db.operations.wake_due_runs(limit=10, queue=QUEUE) == 1
            assert await jobs_of(db, run) == [("todo", True)]
            async with db.connection() as conn:
                await conn.execute("DELETE FROM procrastinate_jobs")
            outcome = await runtime.run_execution(run)
        assert outcome == "Succeeded"
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM dw.executions WHERE id = ANY(%s) ORDER BY started_at", ([low1, low2, high],)
        )
        assert [row[0] for row in await cur.fetchall()] == [high, low1, low2]


async def test_a_promise_is_moved_back_by_a_minute_at_most(db: Database, conditions: ConditionPool) -> None:
    """At one start a minute, a lower run promised the next start gives it up to a higher one held
    back later and moves back a minute; the next higher one held back then waits behind it: a stream
    of higher runs cannot keep a promised run waiting for ever."""
    _, (low, high1, high2) = await held_back_by_rate(db, conditions, "bounded", 1, [0, 5, 5])
    (high1_at, _), (low_at, low_first), (high2_at, _) = await promises(db, [high1, low, high2])
    assert low_first == high1_at
    assert (low_at - low_first).total_seconds() == 60.0
    assert (high2_at - low_at).total_seconds() == 60.0


async def wake_ups(db: Database, runs: list[Any]) -> list[datetime]:
    return [(await run_row(db, run))["wake_at"] for run in runs]


async def test_a_raised_run_is_promised_again_as_a_run_held_back_now(db: Database, conditions: ConditionPool) -> None:
    """A run waiting for its promised start whose priority is raised is placed as a run held back now
    at that priority would be: ahead of the lower ones promised before it, which move back a turn each
    (their wake-ups too), the last of them into its old turn (until this release the change applied
    from its next promise only, and it waited behind them). At one start a minute, so that every
    time is far from now."""
    _, (a, b, c) = await held_back_by_rate(db, conditions, "raised", 1, [0, 0, 0])
    (a_at, _), (b_at, _), (c_at, _) = await promises(db, [a, b, c])
    assert (b_at - a_at).total_seconds() == 60.0 and (c_at - b_at).total_seconds() == 60.0
    change = await db.control.set_priority(c, 5, principal="ops")
    assert change.changed
    # c takes a's turn; a and b move back one each, their first promises kept as their bounds.
    assert await promises(db, [c, a, b]) == [(a_at, None), (b_at, a_at), (c_at, b_at)]
    assert await wake_ups(db, [c, a, b]) == [a_at, b_at, c_at]
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = 'priority_changed'", (c,)
        )
        (details,) = [row[0] for row in await cur.fetchall()]
    assert datetime.fromisoformat(details["promisedAt"]) == a_at
    assert datetime.fromisoformat(details["previousPromisedAt"]) == c_at
    # No job was queued by it: each wakes at its time, as before.
    assert [await jobs_of(db, run) for run in (a, b, c)] == [[], [], []]


async def test_a_raised_run_does_not_pass_a_run_moved_back_a_minute_and_a_lowered_run_keeps_its_promise(
    db: Database, conditions: ConditionPool
) -> None:
    """The bound holds for a raise as for a hold-back: a run already moved back a minute is not moved
    again, so a run raised behind it keeps its time. A lowered run keeps its promise: moving it back
    would leave its turn empty, or move runs held back before it forward."""
    _, (low, high, c) = await held_back_by_rate(db, conditions, "raised-bounded", 1, [0, 5, 0])
    before = await promises(db, [high, low, c])
    (high_at, _), (low_at, low_first), (c_at, _) = before
    assert low_first == high_at and (low_at - low_first).total_seconds() == 60.0
    assert (await db.control.set_priority(c, 5, principal="ops")).changed
    assert (await db.control.set_priority(high, -5, principal="ops")).changed
    assert await promises(db, [high, low, c]) == before
    assert await wake_ups(db, [high, low, c]) == [high_at, low_at, c_at]


async def test_a_raise_waits_for_an_admission_and_never_for_a_run_being_taken(
    db: Database, conditions: ConditionPool, dsn: str
) -> None:
    """Lock order as an acquire's: the raised run, then its workflow (an admission under way holds it:
    the raise waits for it), and the runs it moves SKIP LOCKED: one a worker is taking at that moment
    keeps its time, and the raise does not wait for it while it holds the workflow's row."""
    _, (a, b, c) = await held_back_by_rate(db, conditions, "raised-locks", 1, [0, 0, 0])
    (a_at, _), (b_at, _), (c_at, _) = await promises(db, [a, b, c])
    async with (
        await psycopg.AsyncConnection.connect(dsn) as taking,
        await psycopg.AsyncConnection.connect(dsn) as admitting,
        # Another session to look: pg_stat_activity is read once per transaction.
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as look,
    ):
        for conn in (taking, admitting):
            await conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
        await taking.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (a,))
        await admitting.execute("SELECT 1 FROM dw.workflows WHERE id = 'raised-locks' FOR NO KEY UPDATE")
        raise_c = asyncio.create_task(db.control.set_priority(c, 5, principal="ops"))
        while True:  # until the raise waits for the workflow's row (it holds c's)
            cur = await look.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND %s = ANY (pg_blocking_pids(pid)) AND query LIKE '%%set_execution_priority%%'",
                (admitting.info.backend_pid,),
            )
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                break
            assert not raise_c.done(), raise_c
            await asyncio.sleep(0.01)
        await admitting.commit()
        # The workflow's row released, a's still held (a worker taking it): the raise ends.
        assert (await raise_c).changed
        await taking.rollback()
    assert await promises(db, [a, c, b]) == [(a_at, None), (a_at, None), (c_at, b_at)]


async def test_a_higher_run_does_not_go_ahead_of_a_run_whose_turn_has_come(
    db: Database, conditions: ConditionPool
) -> None:
    """A lower run whose promised time has passed (its waker has not queued its job yet, or it lost
    its start to a run that came late and waits again) cannot be moved back: a higher run held back
    then goes after it. Before, the higher one was promised the time now (or the next start after the
    last) and took it, the lower one's promise was not moved, so the minute's bound never counted:
    a higher run arriving each turn kept it waiting for ever."""
    runtime, (low,) = await held_back_by_rate(db, conditions, "due", 1, [0])
    async with db.connection() as conn:
        # A minute and a second later: its turn came a second ago; the waker has not run yet.
        await conn.execute(
            "UPDATE dw.workflows SET rate_last_start_at = rate_last_start_at - interval '61 seconds' WHERE id = 'due'"
        )
        await conn.execute(
            "UPDATE dw.executions SET rate_slot_at = rate_slot_at - interval '61 seconds',"
            " wake_at = wake_at - interval '61 seconds' WHERE id = %s",
            (low,),
        )
    low_at = (await run_row(db, low))["rate_slot_at"]
    high = await start(db, "due")
    await db.control.set_priority(high, 5, principal="ops")
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(high) == "throttled"
    assert (await run_row(db, high))["rate_slot_at"] == low_at + timedelta(seconds=60)
    ((_, low_first),) = await promises(db, [low])
    assert low_first is None  # not moved
    assert await runtime.run_execution(low) == "Succeeded"


async def test_a_raised_run_does_not_go_ahead_of_a_run_whose_turn_has_come(
    db: Database, conditions: ConditionPool
) -> None:
    """A raise places the run as a hold-back at its new priority would be, so it too goes after a lower
    run whose promised time has passed (its waker not yet run): raised, the later run keeps the turn
    after that one, which it was promised already, and the lower one is not moved."""
    _, (low, later) = await held_back_by_rate(db, conditions, "due-raised", 1, [0, 0])
    async with db.connection() as conn:
        # A minute and a second later: low's turn came a second ago; the waker has not run yet.
        for sql in (
            "UPDATE dw.workflows SET rate_last_start_at = rate_last_start_at - interval '61 seconds'"
            " WHERE id = 'due-raised'",
            "UPDATE dw.executions SET rate_slot_at = rate_slot_at - interval '61 seconds',"
            " wake_at = wake_at - interval '61 seconds' WHERE workflow_id = 'due-raised'",
        ):
            await conn.execute(sql)
    before = await promises(db, [low, later])
    change = await db.control.set_priority(later, 5, principal="ops")
    assert change.changed
    assert await promises(db, [low, later]) == before


async def test_a_higher_run_is_promised_a_turn_after_the_wake_up_of_a_run_that_lost_its_start(
    db: Database, conditions: ConditionPool
) -> None:
    """A lower run whose promised time passed while another run started (one that came late) waits
    again, for the spacing after that start. A higher run held back then was promised that same time:
    the two woke together, the higher one's job went first, and the lower one waited again; a higher
    run held back each turn kept it waiting for ever, its promise never moved (the minute's bound
    never counted). The higher run is now promised the turn after the lower one's wake-up."""
    runtime, (low,) = await held_back_by_rate(db, conditions, "lost", 1, [0])
    async with db.connection() as conn:
        # A minute and a second later its turn came; another run started just before it was taken.
        await conn.execute(
            "UPDATE dw.executions SET rate_slot_at = rate_slot_at - interval '61 seconds',"
            " wake_at = NULL WHERE id = %s",
            (low,),
        )
        await conn.execute("UPDATE dw.workflows SET rate_last_start_at = clock_timestamp() WHERE id = 'lost'")
    assert await runtime.run_execution(low) == "throttled"
    low_wake = (await run_row(db, low))["wake_at"]
    assert low_wake is not None and low_wake > datetime.now(UTC)
    high = await start(db, "lost")
    await db.control.set_priority(high, 5, principal="ops")
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(high) == "throttled"
    assert (await run_row(db, high))["rate_slot_at"] == low_wake + timedelta(seconds=60)
    # At its wake-up (a minute on), the lower run starts; the higher one is not due yet.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE dw.workflows SET rate_last_start_at = rate_last_start_at - interval '60 seconds' WHERE id = 'lost'"
        )
        await conn.execute(
            "UPDATE dw.executions SET wake_at = wake_at - interval '60 seconds',"
            " rate_slot_at = rate_slot_at - interval '60 seconds' WHERE id = ANY(%s)",
            ([low, high],),
        )
    assert await db.operations.wake_due_runs(limit=10, queue=QUEUE) == 1
    assert await jobs_of(db, low) == [("todo", True)]
    assert await jobs_of(db, high) == []


async def test_a_redriven_run_that_timed_out_held_back_is_promised_a_new_time(
    db: Database, conditions: ConditionPool
) -> None:
    """A run that ran past its workflowTimeout while the rate held it back ends with its promise on
    its row; the turn it gave back goes to the next run held back. Redriven, it is Pending again and
    held back anew: it is promised a time of its own, after that run's, not the one it had (both
    were promised the same start, and it went ahead of runs that waited for theirs)."""
    runtime, (late,) = await held_back_by_rate(db, conditions, "again", 1, [0])
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.executions SET deadline_at = now() - interval '1 second' WHERE id = %s", (late,))
    assert [(run, status) for run, _, status in await db.operations.time_out_overdue()] == [(late, "TimedOut")]
    promised = (await run_row(db, late))["rate_slot_at"]
    other = await start(db, "again")
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(other) == "throttled"
    assert (await run_row(db, other))["rate_slot_at"] == promised  # the turn it gave back
    async with db.connection() as conn:
        cur = await conn.execute("SELECT id FROM dw.dead_letters WHERE execution_id = %s", (late,))
        ((letter,),) = await cur.fetchall()
    await db.operations.redrive(letter, principal="ops", queue=QUEUE)
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(late) == "throttled"
    assert (await run_row(db, late))["rate_slot_at"] == promised + timedelta(seconds=60)


async def test_a_run_suspended_while_held_back_is_promised_a_new_time_when_resumed(
    db: Database, conditions: ConditionPool
) -> None:
    """A run suspended while the rate held it back gives its turn back (the next run held back is
    promised it); resumed, it is held back anew, after that run, not on its old time beside it."""
    runtime, (paused,) = await held_back_by_rate(db, conditions, "paused", 1, [0])
    promised = (await run_row(db, paused))["rate_slot_at"]
    assert (await db.control.suspend(paused, principal="ops", reason=None)).outcome == "suspended"
    other = await start(db, "paused")
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(other) == "throttled"
    assert (await run_row(db, other))["rate_slot_at"] == promised  # the turn it gave back
    assert (await db.control.resume(paused, principal="ops", queue=QUEUE)).status == "Pending"
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(paused) == "throttled"
    assert (await run_row(db, paused))["rate_slot_at"] == promised + timedelta(seconds=60)


async def test_a_throttled_run_whose_wake_up_was_lost_is_recovered(db: Database, conditions: ConditionPool) -> None:
    await limited(db, "held", concurrent=1)
    first, second = await start(db, "held"), await start(db, "held")
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
        await conn.execute(
            "UPDATE dw.executions SET status = 'Running', lease_owner = 'w',"
            " lease_expires_at = now() + interval '1 hour' WHERE id = %s",
            (first,),
        )
    runtime = make_runtime(db, conditions, throttle_delay_seconds=60.0)
    assert await runtime.run_execution(second) == "throttled"
    row = await run_row(db, second)
    assert row["status"] == "Pending" and row["wake_at"] is not None and row["wake_at"] > datetime.now(UTC)
    assert await jobs_of(db, second) == []
    # Its turn passed a moment ago: the wakers' business still, not recovery's.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE dw.executions SET wake_at = now() - interval '1 second', created_at = now() - interval '2 hours'"
            " WHERE id = %s",
            (second,),
        )
    assert await db.operations.recover(max_recoveries=3, stalled_worker_seconds=60.0, queue=QUEUE) == []
    # Its turn passed long ago and no waker queued its job (every worker was down): recovery does.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE dw.executions SET wake_at = now() - interval '1 hour', created_at = now() - interval '2 hours'"
            " WHERE id = %s",
            (second,),
        )
    recovered = await db.operations.recover(max_recoveries=3, stalled_worker_seconds=1.0, queue=QUEUE)
    assert [r.execution_id for r in recovered] == [second]
    assert await jobs_of(db, second) == [("todo", True)]


async def test_a_new_rate_queues_the_runs_waiting_for_their_old_turns(db: Database, conditions: ConditionPool) -> None:
    await limited(db, "slowed", rate=1)  # one start a minute
    runs = [await start(db, "slowed") for _ in range(3)]
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    runtime = make_runtime(db, conditions)
    assert await runtime.run_execution(runs[0]) == "Succeeded"
    assert [await runtime.run_execution(run) for run in runs[1:]] == ["throttled", "throttled"]
    for run in runs[1:]:
        assert await jobs_of(db, run) == []
    # A faster rate withdraws the promised turns: the runs are queued now, to be promised new ones.
    assert await db.limits.set_workflow_limits("slowed", WorkflowLimits(set_rate=True, rate_per_minute=6000))
    for run in runs[1:]:
        assert await run_row(db, run) == {
            "status": "Pending",
            "wake_at": None,
            "rate_slot_at": None,
            "lease_owner": None,
        }
        assert await jobs_of(db, run) == [("todo", True)]
    await asyncio.sleep(0.02)
    assert await runtime.run_execution(runs[1]) == "Succeeded"


async def test_a_run_queued_again_meanwhile_is_not_parked_over(db: Database, conditions: ConditionPool) -> None:
    """Between the acquire that said 'throttled' and the park, something queued the run again (a rate
    change that withdrew its turn, a resume): that job takes it, and the old turn is not written."""
    await limited(db, "requeued", rate=1)
    first, second = await start(db, "requeued"), await start(db, "requeued")
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    runtime = make_runtime(db, conditions)
    assert await runtime.run_execution(first) == "Succeeded"
    acquired = await db.runs.acquire(second, owner="w", lease_seconds=30)
    assert acquired.outcome == "throttled" and acquired.throttle is not None
    await db.runs.defer(second, queue=QUEUE, at=None)
    turn = acquired.throttle.retry_at
    assert turn is not None
    parked = await db.runs.park_throttled(second, wake_at=turn)
    assert not parked.parked and not parked.job_finished
    assert (await run_row(db, second))["wake_at"] is None
    assert await jobs_of(db, second) == [("todo", True)]


async def one_holding_two_held_back(
    db: Database, conditions: ConditionPool, workflow_id: str
) -> tuple[Runtime, list[Any], int]:
    """Three runs of a workflow limited to one at a time: the first holds the slot (its lease taken,
    token returned), the other two are held back with a look 60 s away; no job is queued."""
    await limited(db, workflow_id, concurrent=1)
    runs = [await start(db, workflow_id) for _ in range(3)]
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    holder = await db.fetch_one("try_acquire", id=runs[0], owner="w1", lease_seconds=30)
    assert holder is not None and holder["outcome"] == "acquired"
    runtime = make_runtime(db, conditions, throttle_delay_seconds=60.0)
    assert [await runtime.run_execution(run) for run in runs[1:]] == ["throttled", "throttled"]
    assert [await jobs_of(db, run) for run in runs[1:]] == [[], []]
    return runtime, runs, int(holder["lease_token"])


async def test_a_run_that_ends_hands_its_slot_to_the_run_held_back_longest(
    db: Database, conditions: ConditionPool
) -> None:
    """Under maxConcurrentExecutions, a run held back waits for its next look (DW_THROTTLE_DELAY_SECONDS,
    60 s here) only if no slot frees before: the end of a run that held one queues a held-back run at
    once (dw.hand_over_slot_v1), one run per end, the one whose look comes first (here, the first held
    back)."""
    runtime, (first, second, third), token = await one_holding_two_held_back(db, conditions, "slots")
    await db.runs.complete(first, token, status=ExecutionStatus.SUCCEEDED, error=None)
    assert await jobs_of(db, second) == [("todo", True)]
    assert (await run_row(db, second))["wake_at"] is None  # its look is spent: the job takes it
    assert await jobs_of(db, third) == []
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(second) == "Succeeded"
    assert await jobs_of(db, third) == [("todo", True)]
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(third) == "Succeeded"


async def test_a_freed_slot_goes_to_the_highest_priority_run_held_back(db: Database, conditions: ConditionPool) -> None:
    """The hand-off takes the held-back runs by priority first, then by look: the run held back last,
    its priority raised while it waited, is queued ahead of the one held back before it (until this
    release the hand-off went by look alone, whatever their priorities). Its job carries that
    priority."""
    runtime, (first, second, third), token = await one_holding_two_held_back(db, conditions, "slot-priority")
    assert (await db.control.set_priority(third, 5, principal="ops")).priority == 5
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")  # the priority change's requeue, if any
    await db.runs.complete(first, token, status=ExecutionStatus.SUCCEEDED, error=None)
    assert await jobs_of(db, third) == [("todo", True)]
    assert await jobs_of(db, second) == []
    async with db.connection() as conn:
        priority = await (
            await conn.execute(
                "SELECT priority FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s", (str(third),)
            )
        ).fetchone()
        await conn.execute("DELETE FROM procrastinate_jobs")
    assert priority == (5,)
    assert await runtime.run_execution(third) == "Succeeded"
    assert await jobs_of(db, second) == [("todo", True)]


async def test_a_run_that_never_started_frees_no_slot(db: Database, conditions: ConditionPool) -> None:
    """A held-back run cancelled while Pending held no slot: the other held-back run keeps waiting."""
    _, (_, second, third), _ = await one_holding_two_held_back(db, conditions, "no-slot")
    assert (await db.control.cancel(second, principal="ops", reason=None)).status == "Cancelled"
    assert await jobs_of(db, third) == []


async def test_runs_ended_together_in_a_batch_each_hand_a_slot_over(db: Database, conditions: ConditionPool) -> None:
    """The group commit's set-based end (dw.record_attempts_v2 ends runs without dw.finish_execution_v1)
    hands the slots over too: two runs ended by one batch queue the two runs held back."""
    await limited(db, "batch-slots", concurrent=2)
    runs = [await start(db, "batch-slots") for _ in range(4)]
    async with db.connection() as conn:
        await conn.execute("DELETE FROM procrastinate_jobs")
    tokens = []
    for run in runs[:2]:
        acquired = await db.runs.acquire(run, owner="w", lease_seconds=30, start=True)
        assert acquired.outcome == "acquired" and acquired.lease_token is not None
        tokens.append(acquired.lease_token)
    runtime = make_runtime(db, conditions, throttle_delay_seconds=60.0)
    assert [await runtime.run_execution(run) for run in runs[2:]] == ["throttled", "throttled"]
    batch = [encoded(run, token, "a", "succeeded", (), 1) for run, token in zip(runs[:2], tokens, strict=True)]
    answers = await db.fetch_all("record_attempts", records=json.dumps(batch))
    assert all(answer["error_state"] is None for answer in answers)
    assert [(await run_row(db, run))["status"] for run in runs[:2]] == ["Succeeded", "Succeeded"]
    assert [await jobs_of(db, run) for run in runs[2:]] == [[("todo", True)], [("todo", True)]]


async def test_a_redriven_run_suspended_before_its_admission_passes_it_when_resumed(
    db: Database, conditions: ConditionPool
) -> None:
    """A redriven root run is Pending again, with its first start's time. Suspended before a worker
    admitted it, it counted as a run holding a slot (it had started), and resumed it came back
    Waiting, which no admission looks at: it ran beside the run holding the only slot (a review:
    maxConcurrentExecutions 1, two runs in flight). It is Pending until admitted, whatever it did
    before its redrive."""
    from tests.integration.test_subworkflows import open_letter

    runtime = make_runtime(db, conditions, throttle_delay_seconds=60.0)
    await publish(db, wf("one-slot", echo("a", simulateFailure="permanent")))
    failed = await start(db, "one-slot")
    assert await runtime.run_execution(failed) == "Failed"
    await limited(db, "one-slot", concurrent=1)  # a new version, and the limit

    async def holding() -> tuple[Any, int]:
        run = await start(db, "one-slot")
        held = await db.fetch_one("try_acquire", id=run, owner="w1", lease_seconds=30)
        assert held is not None and held["outcome"] == "acquired"
        return run, int(held["lease_token"])

    async def run_now(run: Any) -> str:
        async with db.connection() as conn:
            await conn.execute("DELETE FROM procrastinate_jobs")
        return await runtime.run_execution(run)

    holder, token = await holding()
    await db.operations.redrive(await open_letter(db, failed), principal="ops", queue=QUEUE)
    assert await run_now(failed) == "throttled"
    assert (await db.control.suspend(failed, principal="ops", reason=None)).status == "Suspended"
    # Suspended before its admission, it holds no slot: the holder's end lets another run start.
    await db.runs.complete(holder, token, status=ExecutionStatus.SUCCEEDED, error=None)
    assert await run_now(await start(db, "one-slot")) == "Succeeded"
    # Resumed while another run holds the slot: held back, as any run not yet admitted.
    holder, token = await holding()
    assert (await db.control.resume(failed, principal="ops", queue=QUEUE)).status == "Pending"
    assert await run_now(failed) == "throttled"
    await db.runs.complete(holder, token, status=ExecutionStatus.SUCCEEDED, error=None)
    assert await run_now(failed) == "Failed"

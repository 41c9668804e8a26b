"""A worker host whose clock is off (NTP lost, a VM resumed from a snapshot) decides its times by the
database's clock (dataworkflows.clock): a delay's due time, a retry's, the run's deadline. Each test
skews the host's clock (clock._wall) and measures the offset as a worker does at its start; the
runtime runs in-process, as in test_waits."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from dataworkflows import clock
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from tests.conftest import publish, start
from tests.integration.test_runtime import echo, make_runtime, to, wf
from tests.integration.test_waits import delay, sql, started


async def skewed(db: Database, monkeypatch: pytest.MonkeyPatch, by: timedelta) -> None:
    """This host's clock runs `by` off the database's, and the worker has measured it."""
    monkeypatch.setattr(clock, "_wall", lambda: time.time() + by.total_seconds())
    monkeypatch.setattr(clock.CLOCK, "offset", 0.0)
    monkeypatch.setattr(clock.CLOCK, "_warned_at", None)  # an earlier test's warning is not this one's
    offset = await clock.synchronize(db)
    assert abs(offset + by.total_seconds()) < 0.5, offset


@pytest.mark.parametrize("hours", [-1, 1])
async def test_a_delay_waits_its_duration_by_the_databases_clock(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch, hours: int
) -> None:
    """An hour behind, a ten-minute delay fired at once (its due time was the host's now + 10 min);
    an hour ahead, it would have waited 70 minutes."""
    await skewed(db, monkeypatch, timedelta(hours=hours))
    raw = wf(f"nap-{hours + 1}", delay("nap", duration="PT10M"), echo("after"), workflowTimeout="PT2H")
    execution_id = await started(db, raw)
    assert await make_runtime(db, conditions).run_execution(execution_id) == "parked"
    ((state, due_in),) = await sql(
        db, "SELECT state, due_at - now() FROM dw.waits WHERE execution_id = %s AND node_id = 'nap'", execution_id
    )
    assert state == "open"
    assert timedelta(minutes=9) < due_in <= timedelta(minutes=10), due_in


async def test_a_host_ahead_does_not_time_out_a_fresh_run(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hours ahead, a run a moment old was past its one-hour deadline by the host's clock."""
    await skewed(db, monkeypatch, timedelta(hours=2))
    execution_id = await started(db, wf("ahead", echo("a", to("b")), echo("b")))
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"


async def test_a_host_behind_times_out_a_run_at_its_deadline(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten minutes behind, a run with a one-second timeout ran on past it and Succeeded."""
    await skewed(db, monkeypatch, -timedelta(minutes=10))
    raw = wf("behind", echo("a", to("b"), delayMs=1500), echo("b", delayMs=500), workflowTimeout="PT1S")
    execution_id = await started(db, raw)
    assert await make_runtime(db, conditions).run_execution(execution_id) == "TimedOut"


async def test_a_retry_parks_for_its_backoff_by_the_databases_clock(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thirty minutes ahead, a one-minute backoff parked the run for 31 minutes."""
    await skewed(db, monkeypatch, timedelta(minutes=30))
    node: dict[str, Any] = {
        "id": "flaky",
        "actionType": "core.echo",
        "parameters": {"message": "x", "simulateFailure": "transient", "failUntilAttempt": 2},
        "retryPolicy": {"maxAttempts": 2, "initialDelay": "PT60S", "jitter": False},
    }
    execution_id = await started(db, wf("ahead-retry", node))
    assert await make_runtime(db, conditions).run_execution(execution_id) == "parked"
    ((wakes_in, retry_in),) = await sql(
        db,
        "SELECT e.wake_at - now(), n.next_attempt_at - now() FROM dw.executions e"
        " JOIN dw.node_states n ON n.execution_id = e.id AND n.node_id = 'flaky' WHERE e.id = %s",
        execution_id,
    )
    assert timedelta(seconds=55) < retry_in <= timedelta(seconds=61), retry_in
    assert wakes_in <= timedelta(seconds=61), wakes_in


async def test_an_offset_of_a_second_or_more_is_said_once_and_exported(
    db: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataworkflows import metrics

    await skewed(db, monkeypatch, timedelta(seconds=-30))
    await clock.synchronize(db)
    said = [line for line in capsys.readouterr().out.splitlines() if "this host's clock is off" in line]
    assert len(said) == 1, said
    assert 29.5 < metrics.CLOCK_OFFSET._value.get() < 30.5
    # A host in step says nothing.
    monkeypatch.setattr(clock, "_wall", time.time)
    await clock.synchronize(db)
    assert abs(clock.CLOCK.offset) < 0.5
    assert "this host's clock is off" not in capsys.readouterr().out


async def test_a_worker_measures_the_offset_before_it_takes_a_run(
    db: Database, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker process (run_worker) reads the database's clock at its start: an hour behind, the
    ten-minute delay of the first run it takes still waits ten minutes."""
    from tests.integration.test_tenants import worker

    monkeypatch.setattr(clock, "_wall", lambda: time.time() - 3600)
    monkeypatch.setattr(clock.CLOCK, "offset", 0.0)
    raw = wf("nap-worker", delay("nap", duration="PT10M"), echo("after"), workflowTimeout="PT2H")
    await publish(db, raw)
    execution_id = await start(db, raw["id"])
    async with worker(dsn):
        for _ in range(200):
            rows = await sql(db, "SELECT status FROM dw.executions WHERE id = %s", execution_id)
            if rows[0][0] not in ("Pending", "Running"):
                break
            await asyncio.sleep(0.05)
    ((status, state, due_in),) = await sql(
        db,
        "SELECT e.status, w.state, w.due_at - now() FROM dw.executions e JOIN dw.waits w ON w.execution_id = e.id"
        " WHERE e.id = %s",
        execution_id,
    )
    assert (status, state) == ("Waiting", "open")
    assert timedelta(minutes=9) < due_in <= timedelta(minutes=10), due_in
    assert 3599 < clock.CLOCK.offset < 3601


async def test_the_offset_is_measured_over_the_statements_round_trip_not_the_pools_wait(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: the reading was timed from before the wait for a pooled connection, so a worker whose
    pool was busy for 2.4 s read a host clock in step with the database's as 1.2 s behind it (warned
    of it, and moved every time it decided by as much)."""
    from dataworkflows.db import make_pool

    monkeypatch.setattr(clock.CLOCK, "offset", 0.0)
    pool = make_pool(dsn, min_size=2, max_size=2, name="busy")
    await pool.open(wait=True)
    busy = Database(pool)

    async def hold() -> None:
        async with pool.connection():
            await asyncio.sleep(2.4)

    try:
        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0.05)
        offset = await clock.synchronize(busy)  # this host's clock is the database's: about 0
        await asyncio.gather(*holders)
    finally:
        await pool.close()
    assert abs(offset) < 0.1, offset

"""The engine under hostile input and lost workers: budgets, unrecordable results, a stopping
worker, and the bookkeeping recovery does (orphaned jobs, dead letters). Real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest

from dataworkflows.actions import ActionResult
from dataworkflows.actions.echo import EchoAction
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.errors import Conflict
from dataworkflows.tenancy import DEFAULT_TENANT
from tests.conftest import publish, record, start
from tests.integration.test_runtime import attempts, echo, events, make_runtime, nodes, to, wf
from tests.unit.test_templating import NESTED_LOOPS_1E9, NESTED_LOOPS_1E12


async def _sql(db: Database, query: str, *params: object) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def test_hostile_templates_fail_their_node_while_a_neighbour_finishes(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions, lease_seconds=2.0)
    await publish(db, wf("hostile-9", echo("bomb", message=NESTED_LOOPS_1E9)))
    await publish(db, wf("hostile-12", echo("bomb", message=NESTED_LOOPS_1E12)))
    await publish(db, wf("hostile-int", echo("bomb", message="{{ ((10**64)**64)**2 }}")))
    await publish(db, wf("neighbour", echo("a", message="{{ trigger.n * 2 }}", delayMs=50), echo("b")))
    hostile = [await start(db, name) for name in ("hostile-9", "hostile-12", "hostile-int")]
    neighbour = await start(db, "neighbour", {"n": 21})

    runs = [asyncio.ensure_future(runtime.run_execution(e)) for e in hostile]
    await asyncio.sleep(0.01)
    began = time.monotonic()
    assert await runtime.run_execution(neighbour) == "Succeeded"
    neighbour_seconds = time.monotonic() - began
    assert await asyncio.gather(*runs) == ["Failed", "Failed", "Failed"]

    assert (await attempts(db, neighbour))[0]["parameters"]["message"] == 42
    assert neighbour_seconds < 3.0
    for execution_id in hostile:
        rows = await attempts(db, execution_id)
        # One attempt row that says why; not retried.
        assert [(r["status"], r["error"]["code"]) for r in rows] == [("Failed", "template_budget_exceeded")]
        assert (await nodes(db, execution_id))["bomb"]["status"] == "Failed"
        assert "lease_lost" not in await events(db, execution_id)


async def test_a_result_postgresql_refuses_becomes_a_failed_attempt_row(
    db: Database, conditions: ConditionPool
) -> None:
    # jsonb has no NUL character: the template makes one (the definition holds the escape, which
    # jsonb stores), so the echo's parameters and outputs both carry it.
    runtime = make_runtime(db, conditions)
    await publish(db, wf("nul", echo("a", to("b"), message="{{ 'x\\u0000y' }}"), echo("b")))
    execution_id = await start(db, "nul")
    assert await runtime.run_execution(execution_id) == "Failed"
    rows = await attempts(db, execution_id)
    assert [(r["node_id"], r["status"], r["error"]["code"]) for r in rows] == [("a", "Failed", "unrecordable_result")]
    assert rows[0]["parameters"] is None and rows[0]["outputs"] is None
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution["error"]["code"] == "node_failed"
    assert "engine_error" not in str(execution["error"])


async def test_a_result_nested_past_what_the_engine_records_becomes_a_failed_attempt_row(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """About 960 levels crashed the worker that recorded it (RecursionError in the JSON encoder, the
    job failed and recovery queued it again until worker_lost), or made the run unreadable: an
    attempt's parameters and outputs nest at most 100 levels (dataworkflows.json_depth)."""
    runtime = make_runtime(db, conditions)
    deep: Any = []
    for _ in range(970):
        deep = [deep]

    async def deep_echo(self: EchoAction, ctx: Any, params: Any) -> ActionResult:
        return ActionResult.succeeded({"echo": deep})  # as an HTTP response's JSON could be

    monkeypatch.setattr(EchoAction, "execute", deep_echo)
    await publish(db, wf("deep", echo("a", to("b")), echo("b")))
    execution_id = await start(db, "deep")
    assert await runtime.run_execution(execution_id) == "Failed"
    rows = await attempts(db, execution_id)
    assert [(r["node_id"], r["status"], r["error"]["code"]) for r in rows] == [("a", "Failed", "unrecordable_result")]
    assert "outputs are nested deeper than 100 levels" in rows[0]["error"]["message"], rows[0]["error"]
    assert rows[0]["outputs"] is None


async def test_a_stopping_worker_starts_no_attempt_and_hands_the_run_back(
    db: Database, conditions: ConditionPool
) -> None:
    raw = wf("chain", echo("a", to("b"), delayMs=300), echo("b", to("c"), delayMs=300), echo("c"))
    await publish(db, raw)
    execution_id = await start(db, "chain")
    stopping = make_runtime(db, conditions)
    run = asyncio.ensure_future(stopping.run_execution(execution_id))
    await asyncio.sleep(0.1)  # a is running
    stopping.stop_starting()
    assert await asyncio.wait_for(run, 5) == "released"
    # a finished and was recorded; b never started; nothing was interrupted.
    assert [(r["node_id"], r["status"]) for r in await attempts(db, execution_id)] == [("a", "Succeeded")]
    assert "execution_released" in await events(db, execution_id)

    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    rows = await attempts(db, execution_id)
    assert [r["node_id"] for r in rows] == ["a", "b", "c"]
    assert not [r for r in rows if (r["error"] or {}).get("code") == "attempt_interrupted"]


async def test_a_stopping_worker_leaves_a_retry_for_the_next_one(db: Database, conditions: ConditionPool) -> None:
    retry = {"maxAttempts": 3, "initialDelay": "PT2S", "backoffMultiplier": 1, "jitter": False}
    node = echo("flaky", simulateFailure="transient", failUntilAttempt=2)
    node["retryPolicy"] = retry
    await publish(db, wf("flaky-stop", node))
    execution_id = await start(db, "flaky-stop")
    runtime = make_runtime(db, conditions)
    run = asyncio.ensure_future(runtime.run_execution(execution_id))
    await asyncio.sleep(0.3)  # attempt 1 failed, the node waits 2 s in process
    runtime.stop_starting()
    # Nothing is due now: the run is parked until the retry is (not handed back at once, which
    # would only make the next worker wait in its place).
    assert await asyncio.wait_for(run, 1.5) == "parked"
    assert (await nodes(db, execution_id))["flaky"]["status"] == "Waiting"
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"


async def test_recovery_finishes_jobs_left_doing_by_a_worker_that_died_after_the_run_ended(
    db: Database, conditions: ConditionPool
) -> None:
    await publish(db, wf("short", echo("a")))
    execution_id = await start(db, "short")
    # A worker took the job ('doing') and died between completing the run and finishing the job.
    await _sql(db, "UPDATE procrastinate_jobs SET status = 'doing' WHERE args->>'execution_id' = %s", str(execution_id))
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    recovered = await db.fetch_all(
        "recover_executions", max_recoveries=5, stalled_worker_seconds=30, queue="executions"
    )
    assert [(r["execution_id"], r["action"]) for r in recovered] == [(execution_id, "job_reconciled")]
    assert (
        await _sql(db, "SELECT status FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(execution_id))
        == []
    )
    queue = await _sql(db, "SELECT coalesce(sum(jobs), 0) FROM dw.v_queue_depth WHERE status = 'doing'")
    assert queue == [(0,)]

    # A live worker's job is its own to finish.
    other = await start(db, "short")
    worker = (await _sql(db, "SELECT procrastinate_register_worker_v1()"))[0][0]
    await _sql(
        db,
        "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE args->>'execution_id' = %s",
        worker,
        str(other),
    )
    assert await make_runtime(db, conditions).run_execution(other) == "Succeeded"
    assert (
        await db.fetch_all("recover_executions", max_recoveries=5, stalled_worker_seconds=30, queue="executions") == []
    )


async def _job_failed_letter(db: Database, execution_id: UUID) -> dict[str, Any]:
    """A job_failed dead letter of the run, as a worker files one when a run's job raises."""
    letter = await db.fetch_one(
        "record_job_failure",
        job_id=1,
        execution_id=execution_id,
        payload={},
        error={"code": "job_failed", "message": "ConnectorException"},
        attempts=1,
    )
    assert letter is not None
    return letter


async def test_job_failed_letters_close_when_the_run_ends(db: Database, conditions: ConditionPool) -> None:
    await publish(db, wf("short", echo("a")))
    execution_id = await start(db, "short")
    await _job_failed_letter(db, execution_id)
    open_letters = await db.fetch_all("list_dead_letters", open=True, kind=None, before=None, limit=10)
    assert [d["kind"] for d in open_letters] == ["job_failed"]
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    assert await db.fetch_all("list_dead_letters", open=True, kind=None, before=None, limit=10) == []
    closed = (await db.fetch_all("list_dead_letters", open=False, kind=None, before=None, limit=10))[0]
    assert closed["close_reason"] == "run_ended" and closed["closed_at"] is not None


async def test_a_redrive_meeting_the_runs_end_waits_for_it_instead_of_deadlocking(db: Database, dsn: str) -> None:
    """A run's end locks the run, then closes its open job_failed letters (dw.finish_execution_v1);
    a redrive of such a letter locked the letter, then the run. Coming at once they deadlocked:
    PostgreSQL aborted one of them after deadlock_timeout (1 s), and it was retried. The redrive now
    takes the run first: it waits for the end, then finds its letter closed (a conflict, 409)."""
    await publish(db, wf("ending", echo("a")))
    execution_id = await start(db, "ending")
    letter = await _job_failed_letter(db, execution_id)
    # The run's end on a connection of the server's superuser (deadlock_timeout is the superuser's to set).
    ending = await psycopg.AsyncConnection.connect(dsn)
    async with ending, db.connection() as watching, ending.transaction():
        # Were there a deadlock, this transaction would see it first, and fail (the redrive's statement
        # would be retried: dataworkflows.db retries a refusal of class 40).
        await ending.execute("SET LOCAL deadlock_timeout = '20ms'")
        await ending.execute("SELECT set_config('dw.tenant_id', %s, true)", (DEFAULT_TENANT,))
        # The run's end has taken the run's row (its first statement) ...
        await ending.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (execution_id,))
        redrive = asyncio.create_task(db.operations.redrive(letter["id"], principal="ops", queue="executions"))
        # ... when the redrive comes, and waits for a lock (bounded: 5 s).
        for _ in range(100):
            cur = await watching.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            waiting = await cur.fetchone()
            if waiting is not None and waiting[0] > 0:
                break
            await asyncio.sleep(0.05)
        await ending.execute(
            "SELECT dw.finish_execution_v1(%s, 'Failed', %s::jsonb, 'execution_failed')",
            (execution_id, '{"code": "node_failed", "message": "stopped"}'),
        )
    with pytest.raises(Conflict, match="closed"):
        await asyncio.wait_for(redrive, 10)
    closed = (await db.fetch_all("list_dead_letters", open=False, kind=None, before=None, limit=10))[0]
    assert (closed["id"], closed["close_reason"], closed["redriven_at"]) == (letter["id"], "run_ended", None)


async def test_a_worker_lost_letter_names_the_attempt_in_flight(db: Database) -> None:
    await publish(db, wf("crashy", echo("ok", to("crash")), echo("crash")))
    execution_id: UUID = await start(db, "crashy")
    for lost in range(3):
        # A worker fetches the run's job and takes the lease.
        await _sql(db, "UPDATE procrastinate_jobs SET status = 'doing' WHERE status = 'todo'")
        row = await db.fetch_one("acquire_run", id=execution_id, owner="doomed", lease_seconds=30, start=False)
        token = int(row["lease_token"])
        if lost == 0:
            await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="ok")
            await record(db, execution_id, token, "ok", fired=[True])
        else:
            # Each new worker records the interrupted attempt, as the runtime does, then retries.
            await record(
                db,
                execution_id,
                token,
                "crash",
                attempt=lost,
                status="RetriableFailure",
                node_status="Waiting",
                error={"code": "attempt_interrupted"},
            )
        # The crash node's attempt starts, and its worker dies with it.
        await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="crash")
        await _sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")
        await db.fetch_all("recover_executions", max_recoveries=2, stalled_worker_seconds=30, queue="executions")
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution["status"] == "Failed"
    error = execution["error"]
    assert error["code"] == "worker_lost"
    assert error["message"].startswith("the run lost its worker 3 times; in flight each time: ")
    assert "node crash attempt 3 (core.echo)" in error["message"]
    assert [(f["nodeId"], f["attempt"], f["interruptedAttempts"]) for f in error["inFlight"]] == [("crash", 3, 2)]
    # When the attempt in flight started, not the node's first attempt.
    starts = await _sql(
        db,
        "SELECT details ->> 'attempt', at FROM dw.execution_events WHERE execution_id = %s AND node_id = 'crash'"
        " AND type = 'node_started' ORDER BY id",
        execution_id,
    )
    assert [attempt for attempt, _ in starts] == ["1", "2", "3"], starts
    assert datetime.fromisoformat(error["inFlight"][0]["startedAt"]) == starts[2][1] != starts[0][1], (error, starts)
    letter = (await db.fetch_all("list_dead_letters", open=True, kind="worker_lost", before=None, limit=10))[0]
    assert letter["error"]["inFlight"][0]["nodeId"] == "crash"
    # The dead workers' jobs went (they were left 'failed', as if the task had failed, for good).
    jobs = await _sql(db, "SELECT status FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s", str(execution_id))
    assert jobs == [], jobs


async def test_a_run_given_up_after_its_first_lost_worker_says_once(db: Database) -> None:
    await publish(db, wf("crashy-once", echo("crash")))
    execution_id: UUID = await start(db, "crashy-once")
    await _sql(db, "UPDATE procrastinate_jobs SET status = 'doing' WHERE status = 'todo'")
    row = await db.fetch_one("acquire_run", id=execution_id, owner="doomed", lease_seconds=30, start=False)
    await db.fetch_one("start_node_attempt", id=execution_id, token=int(row["lease_token"]), node_id="crash")
    await _sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")
    await db.fetch_all("recover_executions", max_recoveries=0, stalled_worker_seconds=30, queue="executions")
    error = (await db.fetch_one("get_execution", id=execution_id))["error"]
    assert error["message"].startswith("the run lost its worker once; in flight: node crash"), error


async def test_a_stopping_worker_completes_a_run_whose_last_attempt_ended(
    db: Database, conditions: ConditionPool
) -> None:
    await publish(db, wf("last-one", echo("only", delayMs=200)))
    execution_id = await start(db, "last-one")
    runtime = make_runtime(db, conditions)
    run = asyncio.ensure_future(runtime.run_execution(execution_id))
    await asyncio.sleep(0.05)
    runtime.stop_starting()
    # Nothing is left to run: the run ends here instead of being handed to another worker.
    assert await asyncio.wait_for(run, 5) == "Succeeded"


async def test_a_stopping_worker_does_not_spin_while_an_attempt_finishes(
    db: Database, conditions: ConditionPool, monkeypatch: Any
) -> None:
    from dataworkflows import runtime as runtime_module

    retry = {"maxAttempts": 3, "initialDelay": "PT0.4S", "backoffMultiplier": 1, "jitter": False}
    flaky = echo("flaky", simulateFailure="transient", failUntilAttempt=3)
    flaky["retryPolicy"] = retry
    await publish(db, wf("spin", echo("start", to("slow"), to("flaky")), echo("slow", delayMs=1000), flaky))
    execution_id = await start(db, "spin")
    steps = 0
    original = runtime_module._Run._step

    async def counted(self: Any, waiters: Any) -> Any:
        nonlocal steps
        steps += 1
        return await original(self, waiters)

    monkeypatch.setattr(runtime_module._Run, "_step", counted)
    runtime = make_runtime(db, conditions)
    run = asyncio.ensure_future(runtime.run_execution(execution_id))
    # slow runs for 1 s; flaky failed once and waits 0.4 s to retry, so its retry falls due while
    # the stopping worker waits for slow.
    await asyncio.sleep(0.2)
    runtime.stop_starting()
    assert await asyncio.wait_for(run, 5) == "released"
    # One pass per event (a node done, the stop request), not one per event-loop turn.
    assert steps < 20, steps
    assert (await nodes(db, execution_id))["flaky"]["status"] == "Waiting"


async def _interrupt(
    db: Database,
    conditions: ConditionPool,
    execution_id: UUID,
    *,
    after: float = 0.15,
    attempt: tuple[str, int] | None = None,
    **settings: Any,
) -> None:
    """A worker runs the execution and is stopped with attempts still running once its grace is
    over (the task is cancelled, as the worker does at the end of DW_SHUTDOWN_GRACE_SECONDS).
    `attempt`: (node, n): not before that node's attempt n is running (a loaded machine took more
    than `after` to take the run and start it, once in a full suite run)."""
    runtime = make_runtime(db, conditions, **settings)
    run = asyncio.ensure_future(runtime.run_execution(execution_id))
    await asyncio.sleep(after)
    for _ in range(400):
        if attempt is None or run.done():
            break
        node = (await nodes(db, execution_id))[attempt[0]]
        if (node["status"], node["attempts"]) == ("Running", attempt[1]):
            break
        await asyncio.sleep(0.05)
    runtime.stop_starting()
    run.cancel()
    try:
        await run
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the run ended before its attempt was interrupted")


async def test_restarts_do_not_use_up_the_retry_budget(db: Database, conditions: ConditionPool) -> None:
    # No retry at all: before, a single restart during the long node failed it into a dead letter.
    slow = echo("slow", delayMs=1500)
    slow["retryPolicy"] = {"maxAttempts": 1}
    await publish(db, wf("long-node", slow))
    execution_id = await start(db, "long-node")
    for n in range(1, 4):
        await _interrupt(db, conditions, execution_id, attempt=("slow", n))
        assert "execution_released" in await events(db, execution_id)
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    rows = await attempts(db, execution_id)
    # Three interrupted attempts (recorded by the next holder) and the one that finished.
    assert [(r["attempt"], r["status"], r["interrupted"]) for r in rows] == [
        (1, "RetriableFailure", True),
        (2, "RetriableFailure", True),
        (3, "RetriableFailure", True),
        (4, "Succeeded", False),
    ]
    assert rows[0]["error"]["code"] == "attempt_interrupted" and rows[2]["error"]["interruptions"] == 3
    node = (await nodes(db, execution_id))["slow"]
    assert (node["status"], node["attempts"], node["interruptions"], node["attempt_base"]) == ("Succeeded", 4, 3, 3)


async def test_interruptions_have_their_own_bound(db: Database, conditions: ConditionPool) -> None:
    slow = echo("slow", delayMs=1500)
    slow["retryPolicy"] = {"maxAttempts": 5}
    await publish(db, wf("crash-loop", slow))
    execution_id = await start(db, "crash-loop")
    for n in range(1, 3):
        await _interrupt(db, conditions, execution_id, attempt=("slow", n))
    # DW_MAX_INTERRUPTIONS=1: the second interruption fails the node, whatever its retry budget.
    assert await make_runtime(db, conditions, max_interruptions=1).run_execution(execution_id) == "Failed"
    rows = await attempts(db, execution_id)
    assert [(r["status"], r["interrupted"], r["error"]["code"]) for r in rows] == [
        ("RetriableFailure", True, "attempt_interrupted"),
        ("Failed", True, "too_many_interruptions"),
    ]
    letters = await db.fetch_all("list_dead_letters", open=True, kind="node_failed", before=None, limit=10)
    assert [letter["node_id"] for letter in letters] == ["slow"]
    # A redrive gives the node a fresh bound as well as a fresh budget.
    await db.fetch_one("redrive_dead_letter", id=letters[0]["id"], principal="ops", queue="executions")
    assert await make_runtime(db, conditions, max_interruptions=1).run_execution(execution_id) == "Succeeded"
    assert (await nodes(db, execution_id))["slow"]["interruptions"] == 0


async def test_an_interrupted_foreach_item_keeps_its_retry_budget(db: Database, conditions: ConditionPool) -> None:
    node = {
        "id": "each",
        "nodeType": "forEach",
        "parameters": {
            "items": [1, 2],
            "action": {"actionType": "core.echo", "parameters": {"message": "{{ item }}", "delayMs": 1500}},
            "concurrency": 2,
        },
        "retryPolicy": {"maxAttempts": 1},
    }
    await publish(db, wf("each-long", node))
    execution_id = await start(db, "each-long")
    await _interrupt(db, conditions, execution_id, after=0.3)
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    rows = [r for r in await attempts(db, execution_id) if r["item_index"] is not None]
    assert sorted((r["item_index"], r["status"], r["interrupted"]) for r in rows) == [
        (0, "RetriableFailure", True),
        (0, "Succeeded", False),
        (1, "RetriableFailure", True),
        (1, "Succeeded", False),
    ]


async def _redrive_the_letter(db: Database) -> None:
    letters = await db.fetch_all("list_dead_letters", open=True, kind="node_failed", before=None, limit=10)
    assert len(letters) == 1, letters
    await db.fetch_one("redrive_dead_letter", id=letters[0]["id"], principal="ops", queue="executions")


async def test_the_rerun_after_an_interruption_still_has_its_retry(db: Database, conditions: ConditionPool) -> None:
    flaky = echo("flaky", delayMs=800, simulateFailure="transient", failUntilAttempt=3)
    flaky["retryPolicy"] = {"maxAttempts": 2, "initialDelay": "PT0.01S", "jitter": False}
    await publish(db, wf("flaky-after-cut", flaky))
    execution_id = await start(db, "flaky-after-cut")
    await _interrupt(db, conditions, execution_id, after=0.3)
    # attempt 1 interrupted (free), attempt 2 fails (1st real), attempt 3 succeeds (2nd real).
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    rows = await attempts(db, execution_id)
    assert [(r["attempt"], r["status"], r["interrupted"]) for r in rows] == [
        (1, "RetriableFailure", True),
        (2, "RetriableFailure", False),
        (3, "Succeeded", False),
    ]


async def test_a_redrive_gives_foreach_items_a_fresh_interruption_bound(
    db: Database, conditions: ConditionPool
) -> None:
    each = {
        "id": "each",
        "nodeType": "forEach",
        "parameters": {
            "items": [1],
            "action": {"actionType": "core.echo", "parameters": {"message": "{{ item }}", "delayMs": 1500}},
        },
        "retryPolicy": {"maxAttempts": 1},
    }
    await publish(db, wf("each-bound", each))
    execution_id = await start(db, "each-bound")
    one = {"max_interruptions": 1}
    await _interrupt(db, conditions, execution_id, after=0.3, **one)
    await _interrupt(db, conditions, execution_id, after=0.5, **one)  # records interruption 1, re-runs
    # The second interruption is past the bound: the item, so the node, so the run fail.
    assert await make_runtime(db, conditions, **one).run_execution(execution_id) == "Failed"
    await _redrive_the_letter(db)
    await _interrupt(db, conditions, execution_id, after=0.5, **one)
    # One interruption after the redrive: within a fresh bound of 1, the item goes again.
    assert await make_runtime(db, conditions, **one).run_execution(execution_id) == "Succeeded"


async def test_interruptions_do_not_lengthen_the_next_backoff(db: Database, conditions: ConditionPool) -> None:
    flaky = echo("flaky", delayMs=800, simulateFailure="transient", failUntilAttempt=4)
    flaky["retryPolicy"] = {
        "maxAttempts": 3,
        "initialDelay": "PT1S",
        "backoffMultiplier": 2,
        "maxDelay": "PT1H",
        "jitter": False,
    }
    await publish(db, wf("backoff-after-cuts", flaky))
    execution_id = await start(db, "backoff-after-cuts")
    await _interrupt(db, conditions, execution_id, after=0.3)
    await _interrupt(db, conditions, execution_id, after=0.5)
    # Attempt 3 is the first one that ends on its own (a retriable failure); the run parks.
    assert await make_runtime(db, conditions, park_threshold_seconds=0.1).run_execution(execution_id) == "parked"
    rows = await _sql(
        db,
        "SELECT extract(epoch FROM n.next_attempt_at - a.end_time) FROM dw.node_states n"
        " JOIN dw.action_executions a ON a.execution_id = n.execution_id AND a.node_id = n.node_id AND a.attempt = 3"
        " WHERE n.execution_id = %s",
        execution_id,
    )
    assert round(float(rows[0][0])) == 1, rows  # the policy's first delay, not the third one (4 s)


# A lone UTF-16 surrogate, as a Jinja string literal in a definition: '\ud800' (no character; JSON text,
# UTF-8 and PostgreSQL hold none). An HTTP answer's JSON text may carry one too ("\ud800", a server that cut
# an emoji in half).
LONE_SURROGATE = "{{ '\\ud800' }}"


async def test_a_lone_surrogate_in_a_result_becomes_a_failed_attempt_row(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: the encoder's UnicodeEncodeError was not among the errors a record turns into
    unrecordable_result, so the node task crashed and the run ended engine_error. Templates refuse to
    make one (template_error, below); an action's outputs may still hold one (a connector of one's own)."""
    runtime = make_runtime(db, conditions)

    async def cut_echo(self: EchoAction, ctx: Any, params: Any) -> ActionResult:
        return ActionResult.succeeded({"echo": "cut \ud83d"})

    monkeypatch.setattr(EchoAction, "execute", cut_echo)
    # A condition on its edge would be sent the outputs: they are refused before.
    await publish(db, wf("surrogate", echo("a", to("b", condition="true")), echo("b")))
    execution_id = await start(db, "surrogate")
    assert await runtime.run_execution(execution_id) == "Failed"
    rows = await attempts(db, execution_id)
    assert [(r["node_id"], r["status"], r["error"]["code"]) for r in rows] == [("a", "Failed", "unrecordable_result")]
    assert "lone UTF-16 surrogate (\\ud83d" in rows[0]["error"]["message"], rows[0]["error"]
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution["error"]["code"] == "node_failed", execution["error"]


async def test_a_template_that_makes_a_lone_surrogate_fails_its_node(db: Database, conditions: ConditionPool) -> None:
    """Rendered in process (a literal is a lookup), it is refused as a helper's answer is: template_error."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("surrogate-template", echo("a", to("b"), message=LONE_SURROGATE), echo("b")))
    execution_id = await start(db, "surrogate-template")
    assert await runtime.run_execution(execution_id) == "Failed"
    rows = await attempts(db, execution_id)
    assert [(r["node_id"], r["status"], r["error"]["code"]) for r in rows] == [("a", "Failed", "template_error")]
    assert "lone UTF-16 surrogate" in rows[0]["error"]["message"], rows[0]["error"]


async def test_a_lone_surrogate_in_a_runs_outputs_fails_the_run_with_outputs_error(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: the run's end could not encode them, the run's job failed at every try, and the run
    stayed Running (a cancel too late) until recovery gave up on it as worker_lost minutes later."""
    runtime = make_runtime(db, conditions)
    raw = wf("surrogate-outputs", echo("a"))
    raw["outputs"] = {"s": LONE_SURROGATE, "fine": "{{ nodes.a.echo }}"}
    await publish(db, raw)
    execution_id = await start(db, "surrogate-outputs")
    assert await runtime.run_execution(execution_id) == "Failed"
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution["error"]["code"] == "outputs_error", execution["error"]
    assert "lone UTF-16 surrogate" in execution["error"]["message"]
    assert execution["outputs"] is None


NUL = "{{ 'a\\x00b' }}"


async def test_a_nul_character_in_a_runs_outputs_fails_the_run_with_outputs_error(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: PostgreSQL refused the run's end at every try ("unsupported Unicode escape
    sequence"), a job_failed letter each time, the run Running until recovery gave up on it as
    worker_lost minutes later."""
    runtime = make_runtime(db, conditions)
    # In a value, and in a key (whose pointer, holding the NUL, made the message unstorable too).
    for name, outputs, where in [
        ("nul-outputs", {"x": {"deep": [NUL]}, "fine": "{{ nodes.a.echo }}"}, "/x/deep/0"),
        ("nul-key-outputs", {"x": "{{ {'k\\x00': 1} }}"}, "/x/k\\u0000"),
    ]:
        raw = wf(name, echo("a"))
        raw["outputs"] = outputs
        await publish(db, raw)
        execution_id = await start(db, name)
        assert await runtime.run_execution(execution_id) == "Failed"
        execution = await db.fetch_one("get_execution", id=execution_id)
        assert execution["error"]["code"] == "outputs_error", execution["error"]
        assert f"{where} holds a NUL character" in execution["error"]["message"], execution["error"]
        assert execution["outputs"] is None


async def test_a_nul_character_in_a_for_eachs_items_fails_its_node(db: Database, conditions: ConditionPool) -> None:
    """A review: the items' insert was refused, the node's task crashed, the run ended engine_error."""
    runtime = make_runtime(db, conditions)
    for name, items, where in [
        ("nul-items", [1, {"k": NUL}], "/items/1/k"),
        ("nul-key-items", "{{ [1, {'k\\x00': 1}] }}", "/items/1/k\\u0000"),
    ]:
        each = {
            "id": "w",
            "nodeType": "forEach",
            "parameters": {"items": items, "action": {"actionType": "core.echo", "parameters": {"message": "x"}}},
        }
        await publish(db, wf(name, {**each, "edges": [to("handled", "failure")]}, echo("handled")))
        execution_id = await start(db, name)
        assert await runtime.run_execution(execution_id) == "Succeeded"
        states = await nodes(db, execution_id)
        assert (states["w"]["status"], states["handled"]["status"]) == ("Failed", "Succeeded"), states
        rows = await attempts(db, execution_id)
        failed = [r["error"] for r in rows if r["node_id"] == "w"]
        assert failed[0]["code"] == "unrecordable_result", failed
        assert f"{where} holds a NUL character" in failed[0]["message"], failed


@pytest.mark.parametrize(
    "node",
    [
        {"id": "w", "nodeType": "signal", "parameters": {"name": "s", "correlationKey": LONE_SURROGATE}},
        {"id": "w", "nodeType": "approval", "parameters": {"approvers": ["ana"], "title": LONE_SURROGATE}},
        {"id": "w", "nodeType": "approval", "parameters": {"approvers": [LONE_SURROGATE]}},
        {"id": "w", "nodeType": "subworkflow", "parameters": {"workflowId": "child", "input": {"s": LONE_SURROGATE}}},
        {
            "id": "w",
            "nodeType": "forEach",
            "parameters": {
                "items": [1, 2],
                "action": {"actionType": "core.echo", "parameters": {"message": LONE_SURROGATE}},
            },
        },
        {
            "id": "w",
            "nodeType": "forEach",
            "parameters": {"items": [1], "subworkflow": {"workflowId": "child", "input": {"s": LONE_SURROGATE}}},
        },
        # A second review: parameters a node kind checks and quotes in its error (json_preview), a
        # Literal field (msgspec.convert), a forEach's items themselves, and a success's failure edge.
        {"id": "w", "nodeType": "signal", "parameters": {"name": LONE_SURROGATE}},
        {"id": "w", "nodeType": "delay", "parameters": {"until": LONE_SURROGATE}},
        {"id": "w", "nodeType": "approval", "parameters": {"approvers": ["ana"], "quorum": LONE_SURROGATE}},
        {"id": "w", "nodeType": "approval", "parameters": {"approvers": ["{{ 'a\\n\\ud800' }}"]}},
        {"id": "w", "nodeType": "subworkflow", "parameters": {"workflowId": "child", "input": LONE_SURROGATE}},
        {
            "id": "w",
            "nodeType": "forEach",
            "parameters": {
                "items": LONE_SURROGATE,
                "action": {"actionType": "core.echo", "parameters": {"message": "x"}},
            },
        },
        {
            "id": "w",
            "nodeType": "forEach",
            "parameters": {
                "items": [LONE_SURROGATE],
                "action": {"actionType": "core.echo", "parameters": {"message": "{{ item }}"}},
            },
        },
        {
            "id": "w",
            "actionType": "http.request",
            "parameters": {"url": "http://127.0.0.1:9/", "method": LONE_SURROGATE},
        },
    ],
    ids=[
        "signal-key",
        "approval-title",
        "approver",
        "subworkflow-input",
        "foreach-action",
        "foreach-subworkflow",
        "signal-name",
        "delay-until",
        "quorum",
        "approver-problem",
        "subworkflow-input-string",
        "foreach-items-string",
        "foreach-item",
        "http-method",
    ],
)
async def test_a_lone_surrogate_in_a_waits_or_a_childs_parameters_fails_its_node(
    db: Database, conditions: ConditionPool, node: dict[str, Any]
) -> None:
    """A review: each of these crashed its node task (engine_error) instead of failing the node."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("child", echo("c")))
    await publish(db, wf("surrogate-kind", {**node, "edges": [to("handled", "failure")]}, echo("handled")))
    execution_id = await start(db, "surrogate-kind")
    assert await runtime.run_execution(execution_id) == "Succeeded"
    states = await nodes(db, execution_id)
    assert (states["w"]["status"], states["handled"]["status"]) == ("Failed", "Succeeded"), states
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution["error"] is None

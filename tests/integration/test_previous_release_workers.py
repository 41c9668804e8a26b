"""A worker of the previous release during a rolling upgrade (README "Upgrading"): it calls the
procedures it was built for, as the release's fixture records its queries, and cannot read what this
release added to their answers (`suspendRequested` in an acquire's run, `failedUnhandled` in its
node checkpoints). Where the new behaviour would make it do harm, those procedures keep its contract,
or give it an answer it handles correctly (what it does with each is in the tests' comments, from
the release's runtime.py)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from psycopg.rows import dict_row

from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from tests.integration.test_decided_runs import (
    _attempt_rows,
    _dies_before_the_runs_end,
    _ending,
    _failed_and_crashed,
    _fails_beside_a_running_node,
    _fails_first,
    _fails_last,
)
from tests.integration.test_folded_writes import attempt_record
from tests.integration.test_runtime import attempts, echo, events, make_runtime, nodes, to, wf
from tests.integration.test_upgrades import META
from tests.integration.test_waits import sql, started, status

# The previous release's acquire (dw.try_acquire_execution_v4), and v5, which earlier commits call
# and whose callers read neither key either.
ACQUIRES = {
    "v4": META["queries"]["acquire_run"],
    "v5": "SELECT * FROM dw.try_acquire_execution_v5(%(id)s, %(owner)s, %(lease_seconds)s, false)",
}
# The previous release's cancel (dw.cancel_execution_v1), and v2 (earlier commits) over it.
CANCELS = {
    "v1": META["queries"]["cancel_execution"],
    "v2": "SELECT dw.cancel_execution_v2(%(id)s, %(token)s, NULL, NULL)",
}


async def old(db: Database, query: str, **params: Any) -> dict[str, Any] | None:
    """One call as the previous release's data layer makes it (its query text, named parameters)."""
    async with db.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        return await cur.fetchone() if cur.description else None


async def lease(db: Database, execution_id: UUID) -> tuple[Any, ...]:
    ((owner, token),) = await sql(db, "SELECT lease_owner, lease_token FROM dw.executions WHERE id = %s", execution_id)
    return owner, token


@pytest.mark.parametrize("acquire", ACQUIRES, ids=list(ACQUIRES))
async def test_an_old_acquire_suspends_a_run_whose_worker_left_an_attempt_running(
    db: Database, conditions: ConditionPool, acquire: str
) -> None:
    # Node a was in flight when its worker died; then a suspend (answered `requested`: the next
    # holder records a first). This release's acquire hands the run over with suspendRequested;
    # the previous release's worker ignores that key, records a as interrupted and starts it again
    # (runtime.py: _drive -> recover_interrupted, then _launch_ready), though the operator was told
    # nothing new starts; it hears of the suspension at its first lease renewal only. Its acquire
    # keeps suspending at once, as in that release (its worker returns on "suspended").
    execution_id = await started(db, wf("cut-off", echo("a", to("b")), echo("b")))
    acquired = await db.runs.acquire(execution_id, owner="dead", lease_seconds=30, start=True)
    assert acquired.started == ("a",)
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", execution_id)
    suspension = await db.control.suspend(execution_id, principal="ops", reason=None)
    assert (suspension.status, suspension.outcome) == ("Running", "requested")

    answer = await old(db, ACQUIRES[acquire], id=execution_id, owner="old-worker", lease_seconds=30)
    assert answer is not None
    assert (answer["outcome"], answer["lease_token"]) == ("suspended", None)
    assert await status(db, execution_id) == "Suspended"
    assert await lease(db, execution_id) == (None, acquired.lease_token)
    # As that release left it: a still Running, nothing recorded, nothing started.
    assert {n: s["status"] for n, s in (await nodes(db, execution_id)).items()} == {"a": "Running", "b": "Pending"}
    assert await attempts(db, execution_id) == []
    log = await events(db, execution_id)
    assert "execution_reacquired" not in log and log[-1] == "execution_suspended"

    # Resumed, a worker of this release records a as interrupted (its budget untouched) and finishes.
    await db.control.resume(execution_id, principal="ops", queue="executions")
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    rows = [(r["node_id"], r["attempt"], r["status"]) for r in await attempts(db, execution_id)]
    assert rows == [("a", 1, "RetriableFailure"), ("a", 2, "Succeeded"), ("b", 1, "Succeeded")]


@pytest.mark.parametrize(
    ("raw", "failed"),
    [(_fails_last(), "b"), (_fails_first(), "a"), (_fails_beside_a_running_node(), "a")],
    ids=["last-node", "first-node", "beside-a-running-node"],
)
@pytest.mark.parametrize("acquire", ACQUIRES, ids=list(ACQUIRES))
async def test_an_old_acquire_ends_failed_a_run_whose_node_failed_unhandled(
    db: Database, conditions: ConditionPool, raw: dict[str, Any], failed: str, acquire: str
) -> None:
    # The worker died after recording a node's unhandled failure, before the run's end. The previous
    # release's worker cannot read failedUnhandled: taking the run, it would record a node in flight
    # as interrupted and run it again, then end the run Succeeded (every node final: _idle ->
    # _succeed) or Failed `stuck` with no dead letter (nodes left Pending). Its acquire ends the run
    # as this release's worker does, and answers finished: that worker then leaves it
    # (run_execution: "held, finished (...), suspended, not_found" return at once).
    runtime = make_runtime(db, conditions)
    baseline, execution_id = await _failed_and_crashed(db, runtime, raw)
    answer = await old(db, ACQUIRES[acquire], id=execution_id, owner="old-worker", lease_seconds=30)
    assert answer is not None
    assert (answer["outcome"], answer["lease_token"], answer["nodes"]) == ("finished", None, None)
    ending = await _ending(db, execution_id)
    assert ending == await _ending(db, baseline)
    assert await _attempt_rows(db, execution_id) == await _attempt_rows(db, baseline)
    assert (ending["status"], ending["error"]["code"], ending["error"]["nodeId"]) == ("Failed", "node_failed", failed)
    assert [letter[:2] for letter in ending["letters"]] == [("node_failed", failed)]
    # A cancel asked then was too late (dw.cancel_too_late_v1), and the end says so.
    late = await started(db, raw)
    await _dies_before_the_runs_end(db, runtime, late)
    assert (await db.control.cancel(late, principal="ops", reason="too slow")).outcome == "too_late"
    answer = await old(db, ACQUIRES[acquire], id=late, owner="old-worker", lease_seconds=30)
    assert answer is not None and answer["outcome"] == "finished"
    assert await _ending(db, late) == await _ending(db, baseline)
    log = await events(db, late)
    assert log.index("cancel_requested") < log.index("cancel_too_late") < log.index("execution_failed")


async def _cancel_heard_as_the_last_record_commits(db: Database) -> tuple[UUID, int]:
    """A worker holds the run: it records a; a cancel comes (`requested`, it is told) while b runs;
    b's record commits before the worker stops its node tasks, so when it calls its cancel the
    run's outcome is decided (every node has ended)."""
    execution_id = await started(db, wf("late-cancel", echo("a", to("b")), echo("b")))
    acquired = await db.runs.acquire(execution_id, owner="old-worker", lease_seconds=30, start=True)
    token = int(acquired.lease_token or 0)
    await db.runs.record_attempt(attempt_record(execution_id, token, "a", fired=(True,), start_limit=1))
    assert (await db.control.cancel(execution_id, principal="ops", reason="too slow")).outcome == "requested"
    await db.runs.record_attempt(attempt_record(execution_id, token, "b", complete=False))
    # The API, asked now, says so.
    assert (await db.control.cancel(execution_id, principal="ops", reason=None)).outcome == "already_requested"
    return execution_id, token


@pytest.mark.parametrize("cancel", CANCELS, ids=list(CANCELS))
async def test_an_old_cancel_that_comes_too_late_hands_the_run_back(
    db: Database, conditions: ConditionPool, cancel: str
) -> None:
    # The previous release's worker, told to cancel, stops its node tasks and calls its cancel
    # (runtime.py _cancel: _cancel_running, then data.cancel, whose void answer it does not read);
    # it then logs the run cancelled and returns, writing nothing more (its job just ends). The
    # cancel used to end Cancelled a run whose every node had ended; now it hands the run back, as
    # this release's worker does when it stopped node tasks on a late cancel, and the worker that
    # takes it ends it as it would have.
    execution_id, token = await _cancel_heard_as_the_last_record_commits(db)
    await old(db, CANCELS[cancel], id=execution_id, token=token)
    assert await status(db, execution_id) == "Running"
    assert (await lease(db, execution_id))[0] is None
    query = "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = 'execution_released'"
    assert await sql(db, query, execution_id) == [({"reason": "cancel_too_late"},)]
    queued = "SELECT count(*) FROM procrastinate_jobs WHERE args->>'execution_id' = %s AND status = 'todo'"
    assert await sql(db, queued, str(execution_id)) == [(1,)]

    assert await make_runtime(db, conditions, worker_id="next").run_execution(execution_id) == "Succeeded"
    log = await events(db, execution_id)
    assert "execution_cancelled" not in log
    assert log.index("cancel_requested") < log.index("cancel_too_late") < log.index("execution_succeeded")


@pytest.mark.parametrize("cancel", CANCELS, ids=list(CANCELS))
async def test_an_old_cancel_in_time_still_cancels(db: Database, cancel: str) -> None:
    execution_id = await started(db, wf("in-time", echo("a", to("b")), echo("b")))
    acquired = await db.runs.acquire(execution_id, owner="old-worker", lease_seconds=30, start=True)
    assert (await db.control.cancel(execution_id, principal="ops", reason=None)).outcome == "requested"
    await old(db, CANCELS[cancel], id=execution_id, token=acquired.lease_token)
    assert await status(db, execution_id) == "Cancelled"
    assert {n: s["status"] for n, s in (await nodes(db, execution_id)).items()} == {"a": "Cancelled", "b": "Skipped"}

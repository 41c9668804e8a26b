"""Nothing starts once an operator's cancel or suspension is committed, even before the worker holding
the run has heard of it: forEach items (dw.start_item_attempts_v2), their children
(dw.begin_item_child_v2) and a subworkflow node's child (dw.begin_child_v2) are refused by the
database as a node's start is (dw.start_node_attempt_v2). A race review found them started after the
202: 89 of 100 subworkflow items' children after a suspension's answer, and a child that ran to its
end under its Cancelled parent. Each test commits the request just before the worker's call, without
telling the worker (its notification still on the way)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from tests.conftest import publish, start
from tests.integration.test_foreach import child_items, for_each, item_attempts
from tests.integration.test_runtime import echo, make_runtime, wf
from tests.integration.test_subworkflows import drain, execution, sub
from tests.integration.test_waits import sql


async def _not_running(db: Database, root: Any) -> None:
    """The run waits for its worker in this test, not for Procrastinate's."""
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))


async def _children(db: Database, root: Any) -> int:
    ((count,),) = await sql(db, "SELECT count(*) FROM dw.executions WHERE parent_execution_id = %s", root)
    return int(count)


async def _items(db: Database, root: Any) -> dict[str, int]:
    rows = await sql(db, "SELECT status, count(*) FROM dw.foreach_items WHERE execution_id = %s GROUP BY 1", root)
    return {str(status): int(count) for status, count in rows}


@contextlib.contextmanager
def _requested_before(db: Database, root: Any, method: str, request: str, calls: set[int]) -> Iterator[list[int]]:
    """db.runs.<method> with the operator's `request` (suspend or cancel) of run `root` committed
    just before the calls numbered in `calls` (from 1), the worker not told; yields the calls made."""
    real = getattr(db.runs, method)
    made: list[int] = []

    async def requesting_first(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        if len(made) in calls:
            answer = await getattr(db.control, request)(root, principal="ops", reason=None)
            assert answer.outcome == "requested", answer
        return await real(*args, **kwargs)

    setattr(db.runs, method, requesting_first)
    try:
        yield made
    finally:
        setattr(db.runs, method, real)


async def _leaf(db: Database, conditions: ConditionPool) -> None:
    await publish(db, wf("leaf", echo("only", message="{{ trigger.value }}")), conditions)


async def test_a_suspension_before_the_first_item_child_starts_none(db: Database, conditions: ConditionPool) -> None:
    await _leaf(db, conditions)
    await publish(db, wf("fan", child_items("all", list(range(20)), "leaf", concurrency=20)), conditions)
    root = await start(db, "fan")
    await _not_running(db, root)
    with _requested_before(db, root, "begin_item_child", "suspend", {1}):
        assert await make_runtime(db, conditions).run_execution(root) == "suspended"
    # The items started for children that never started were put back, their attempt not counted.
    assert await _children(db, root) == 0
    assert await _items(db, root) == {"Pending": 20}
    assert await sql(db, "SELECT max(attempts) FROM dw.foreach_items WHERE execution_id = %s", root) == [(0,)]
    await db.control.resume(root, principal="ops", queue="executions")
    await drain(db, make_runtime(db, conditions))
    assert (await execution(db, root))["status"] == "Succeeded"
    assert await _children(db, root) == 20
    assert await item_attempts(db, root) == [(i, 1, "Succeeded") for i in range(20)]


async def test_a_cancel_before_the_items_start_starts_none(db: Database, conditions: ConditionPool) -> None:
    await _leaf(db, conditions)
    await publish(db, wf("fan-cancel", child_items("all", list(range(5)), "leaf", concurrency=5)), conditions)
    root = await start(db, "fan-cancel")
    await _not_running(db, root)
    with _requested_before(db, root, "start_item_attempts", "cancel", {1}):
        assert await make_runtime(db, conditions).run_execution(root) == "Cancelled"
    assert await _children(db, root) == 0
    assert "Running" not in await _items(db, root)
    assert await item_attempts(db, root) == []


async def test_a_suspension_lets_action_items_in_flight_finish_and_starts_no_more(
    db: Database, conditions: ConditionPool
) -> None:
    action = {"actionType": "core.echo", "parameters": {"message": "{{ item }}", "delayMs": 20}}
    await publish(db, wf("one-by-one", for_each("all", [0, 1, 2], action=action, concurrency=1)), conditions)
    root = await start(db, "one-by-one")
    await _not_running(db, root)
    with _requested_before(db, root, "start_item_attempts", "suspend", {2}):
        assert await make_runtime(db, conditions).run_execution(root) == "suspended"
    assert await item_attempts(db, root) == [(0, 1, "Succeeded")]
    assert await _items(db, root) == {"Succeeded": 1, "Pending": 2}
    await db.control.resume(root, principal="ops", queue="executions")
    await drain(db, make_runtime(db, conditions))
    assert (await execution(db, root))["status"] == "Succeeded"
    assert await item_attempts(db, root) == [(i, 1, "Succeeded") for i in range(3)]


async def test_a_cancel_before_a_subworkflow_nodes_child_starts_it_not(db: Database, conditions: ConditionPool) -> None:
    await _leaf(db, conditions)
    await publish(db, wf("calls-leaf", sub("call", "leaf", input={"value": 1})), conditions)
    root = await start(db, "calls-leaf")
    await _not_running(db, root)
    with _requested_before(db, root, "begin_child", "cancel", {1}):
        assert await make_runtime(db, conditions).run_execution(root) == "Cancelled"
    assert await _children(db, root) == 0
    assert await sql(
        db, "SELECT status FROM dw.action_executions WHERE execution_id = %s AND node_id = 'call'", root
    ) == [("Cancelled",)]


async def test_a_suspension_before_a_subworkflow_nodes_child_holds_it_until_resumed(
    db: Database, conditions: ConditionPool
) -> None:
    await _leaf(db, conditions)
    await publish(db, wf("calls-leaf-later", sub("call", "leaf", input={"value": 2})), conditions)
    root = await start(db, "calls-leaf-later")
    await _not_running(db, root)
    with _requested_before(db, root, "begin_child", "suspend", {1}):
        assert await make_runtime(db, conditions).run_execution(root) == "suspended"
    assert await _children(db, root) == 0
    await db.control.resume(root, principal="ops", queue="executions")
    await drain(db, make_runtime(db, conditions))
    assert (await execution(db, root))["status"] == "Succeeded"
    assert await _children(db, root) == 1
    # The attempt the suspension held back was taken up again, not recorded as interrupted.
    assert await _call_attempts(db, root) == [(1, "Succeeded", False)]


async def _call_attempts(db: Database, root: Any) -> list[tuple[int, str, bool]]:
    rows = await sql(
        db,
        "SELECT attempt, status, interrupted FROM dw.action_executions"
        " WHERE execution_id = %s AND node_id = 'call' ORDER BY attempt",
        root,
    )
    return [(int(a), str(s), bool(i)) for a, s, i in rows]


async def test_suspensions_that_hold_a_child_back_are_no_interruptions(db: Database, conditions: ConditionPool) -> None:
    """Recorded as interrupted, three suspensions that each held the child back failed the node with
    too_many_interruptions (DW_MAX_INTERRUPTIONS 2): nothing ran, and no worker stopped (a review)."""
    await _leaf(db, conditions)
    await publish(db, wf("calls-leaf-held", sub("call", "leaf", input={"value": 3})), conditions)
    root = await start(db, "calls-leaf-held")
    await _not_running(db, root)
    with _requested_before(db, root, "begin_child", "suspend", {1, 2, 3}) as calls:
        runtime = make_runtime(db, conditions, max_interruptions=2)
        assert await runtime.run_execution(root) == "suspended"
        for _ in range(3):
            await db.control.resume(root, principal="ops", queue="executions")
            await drain(db, runtime)
    assert len(calls) == 4  # three held back, then the child started
    assert (await execution(db, root))["status"] == "Succeeded"
    assert await _call_attempts(db, root) == [(1, "Succeeded", False)]


async def test_items_start_again_once_a_refusing_suspension_is_withdrawn(
    db: Database, conditions: ConditionPool
) -> None:
    """A suspension refused an item's start, then a resume withdrew it before the worker heard of
    it: the free slot is used again while the long item runs on (the attempt started no item until
    every item in flight had ended, a review)."""
    action = {"actionType": "core.echo", "parameters": {"message": "{{ item }}", "delayMs": "{{ item }}"}}
    await publish(db, wf("withdrawn", for_each("all", [4000, 50, 50, 50], action=action, concurrency=2)), conditions)
    root = await start(db, "withdrawn")
    await _not_running(db, root)
    real = db.runs.start_item_attempts
    calls: list[int] = []

    async def refused_then_withdrawn(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) != 2:
            return await real(*args, **kwargs)
        assert (await db.control.suspend(root, principal="ops", reason=None)).outcome == "requested"
        started = await real(*args, **kwargs)
        assert started == {}
        resumed = await db.control.resume(root, principal="ops", queue="executions")
        assert resumed.outcome == "withdrawn", resumed
        return started

    db.runs.start_item_attempts = refused_then_withdrawn  # type: ignore[method-assign]
    try:
        assert await make_runtime(db, conditions).run_execution(root) == "Succeeded"
    finally:
        db.runs.start_item_attempts = real  # type: ignore[method-assign]
    rows = await sql(
        db,
        "SELECT item_index, start_time, end_time FROM dw.action_executions"
        " WHERE execution_id = %s AND item_index IS NOT NULL ORDER BY item_index",
        root,
    )
    times = {int(index): (begun, ended) for index, begun, ended in rows}
    assert sorted(times) == [0, 1, 2, 3]
    assert times[2][0] < times[0][1] and times[3][0] < times[0][1], rows


async def test_a_refused_start_whose_request_is_not_heard_is_not_tried_again_at_once(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: with the lease renewals failing (the request never taken in), the worker took the
    refused forEach up again at once and was refused again, 3,905 times in 2 s, a core busy. After a
    refusal the run now starts nothing for REFUSAL_PAUSE_SECONDS (0.5 s)."""
    from dataworkflows.errors import DatabaseUnavailable

    action = {"actionType": "core.echo", "parameters": {"message": "{{ item }}"}}
    await publish(db, wf("unheard", for_each("all", [0, 1, 2], action=action, concurrency=1)), conditions)
    root = await start(db, "unheard")
    await _not_running(db, root)
    real_renew = db.runs.renew_lease

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailable("the database is unavailable: renewals fail in this test")

    with _requested_before(db, root, "start_item_attempts", "suspend", {1}) as calls:
        db.runs.renew_lease = unavailable  # type: ignore[method-assign]
        try:
            task = asyncio.create_task(make_runtime(db, conditions).run_execution(root))
            await asyncio.sleep(2.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            db.runs.renew_lease = real_renew  # type: ignore[method-assign]
    # One refusal every 0.5 s at most (bounded loosely: a loaded machine's loop runs late, never early).
    assert 1 <= len(calls) <= 6, len(calls)
    assert await _items(db, root) == {"Pending": 3}

"""forEach nodes: an action per item, each item a checkpointed row and each item attempt an attempt
row with its index; concurrency, failFast and continue, the limits, and a run resumed half-way."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from dataworkflows import foreach
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.errors import Conflict, DefinitionError
from tests.conftest import publish, start
from tests.integration.test_runtime import echo, make_runtime, nodes, to, wf
from tests.integration.test_subworkflows import drain, execution
from tests.integration.test_waits import kind_node, sql


def for_each(node_id: str, items: Any, *edges: dict[str, Any], **params: Any) -> dict[str, Any]:
    action = params.pop("action", {"actionType": "core.echo", "parameters": {"message": "{{ item }}#{{ index }}"}})
    return kind_node("forEach", node_id, edges, {"items": items, "action": action, **params})


async def item_attempts(db: Database, execution_id: Any) -> list[tuple[int, int, str]]:
    rows = await sql(
        db,
        "SELECT item_index, attempt, status FROM dw.action_executions"
        " WHERE execution_id = %s AND item_index IS NOT NULL ORDER BY item_index, attempt",
        execution_id,
    )
    return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]


async def test_items_run_with_bounded_concurrency_and_outputs_keep_input_order(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    action = {
        "actionType": "core.echo",
        "parameters": {"message": "{{ item.name }}-{{ index }}", "delayMs": "{{ item.ms }}"},
    }
    raw = wf(
        "each",
        for_each("all", "{{ trigger.rows }}", to("after"), action=action, concurrency=2),
        echo("after", message="{{ nodes.all.count }}"),
    )
    await publish(db, raw, conditions)
    rows = [{"name": n, "ms": ms} for n, ms in (("a", 80), ("b", 10), ("c", 30), ("d", 0), ("e", 5))]
    root = await start(db, "each", {"rows": rows})
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    outputs = (await nodes(db, root))["all"]["outputs"]
    assert [o["echo"] for o in outputs["items"]] == ["a-0", "b-1", "c-2", "d-3", "e-4"]
    assert (outputs["count"], outputs["succeeded"], outputs["failed"], outputs["errors"]) == (5, 5, 0, [])
    assert await item_attempts(db, root) == [(i, 1, "Succeeded") for i in range(5)]
    overlap = await sql(
        db,
        "SELECT max(c) FROM (SELECT (SELECT count(*) FROM dw.action_executions b WHERE b.execution_id = a.execution_id"
        " AND b.item_index IS NOT NULL AND b.start_time <= a.start_time AND b.end_time > a.start_time) AS c"
        " FROM dw.action_executions a WHERE a.execution_id = %s AND a.item_index IS NOT NULL) t",
        root,
    )
    assert overlap[0][0] == 2  # items in flight when each one started, itself included


async def test_continue_collects_every_error_in_order(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    action = {
        "actionType": "core.echo",
        "parameters": {"message": "{{ item }}", "simulateFailure": "{{ 'permanent' if item % 3 == 0 else none }}"},
    }
    raw = wf("keeps-going", for_each("all", "{{ trigger.n }}", action=action, onItemFailure="continue"))
    await publish(db, raw, conditions)
    root = await start(db, "keeps-going", {"n": list(range(1, 8))})
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    outputs = (await nodes(db, root))["all"]["outputs"]
    assert [e["index"] for e in outputs["errors"]] == [2, 5]
    assert {e["error"]["code"] for e in outputs["errors"]} == {"simulated_permanent_failure"}
    assert [o and o["echo"] for o in outputs["items"]] == [1, 2, None, 4, 5, None, 7]
    assert (outputs["succeeded"], outputs["failed"]) == (5, 2)


async def test_fail_fast_stops_at_the_first_failure_and_routes_it(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    action = {
        "actionType": "core.echo",
        "parameters": {"message": "{{ item }}", "simulateFailure": "{{ 'permanent' if item == 3 else none }}"},
    }
    raw = wf(
        "stops",
        for_each("all", list(range(1, 30)), to("ok"), to("handled", "failure"), action=action, concurrency=1),
        echo("ok"),
        echo("handled"),
    )
    await publish(db, raw, conditions)
    root = await start(db, "stops")
    await drain(db, runtime)
    states = await nodes(db, root)
    assert (states["all"]["status"], states["handled"]["status"]) == ("Failed", "Succeeded")
    error = states["all"]["error"]
    assert error["code"] == "item_failed" and error["details"]["index"] == 2
    assert await item_attempts(db, root) == [(0, 1, "Succeeded"), (1, 1, "Succeeded"), (2, 1, "Failed")]
    statuses = await sql(db, "SELECT status, count(*) FROM dw.foreach_items WHERE execution_id = %s GROUP BY 1", root)
    assert dict(statuses) == {"Succeeded": 2, "Failed": 1, "Cancelled": 26}


async def two_items_the_second_failing(db: Database, conditions: ConditionPool, name: str, delay_ms: str) -> Any:
    """A failFast forEach over items 0 and 1, both in flight at once, whose item 1 fails for good
    after `delay_ms`; run to its end. Returns the run's id."""
    action = {
        "actionType": "core.echo",
        "parameters": {
            "message": "{{ item }}",
            "delayMs": delay_ms,
            "simulateFailure": "{{ 'permanent' if item == 1 else none }}",
        },
    }
    await publish(db, wf(name, for_each("all", [0, 1], action=action, concurrency=2)), conditions)
    root = await start(db, name)
    await asyncio.wait_for(drain(db, make_runtime(db, conditions)), 20)
    return root


async def test_an_item_cancelled_in_flight_keeps_its_attempt_start(db: Database, conditions: ConditionPool) -> None:
    """failFast cancels the items in flight: each such attempt is recorded Cancelled from when it
    started to the cancel (it was recorded as starting at the cancel, with no duration)."""
    root = await two_items_the_second_failing(db, conditions, "cut-short", "{{ 5000 if item == 0 else 300 }}")
    rows = await sql(
        db,
        "SELECT item_index, status, start_time, end_time FROM dw.action_executions"
        " WHERE execution_id = %s AND item_index IS NOT NULL ORDER BY item_index",
        root,
    )
    (_, cancelled, c_start, c_end), (_, failed, _, f_end) = rows
    assert (cancelled, failed) == ("Cancelled", "Failed"), rows
    # The cancelled one began before the other failed (after its 300 ms) and ran until then; recorded
    # as starting at the cancel, it would start at or after that failure's end. (Not "both began
    # within 0.25 s": on a loaded machine the second item started 0.47 s after the first.)
    assert c_start < f_end, rows
    assert c_end >= f_end and (c_end - c_start).total_seconds() >= 0.25, rows


async def test_an_item_whose_success_committed_as_it_was_cancelled_is_counted(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """failFast cancels the items in flight; one whose own success had committed, its answer not yet
    back, stays Succeeded in its row, and the node's counts said one Succeeded item fewer (seen in CI
    under load: succeeded 7 against 8 Succeeded rows)."""
    from dataworkflows import node_attempts

    real = node_attempts._Items.record
    zero_recorded = asyncio.Event()

    async def record_then_hang(self: Any, record: foreach.ItemRecord) -> None:
        if record.index == 1:
            # Item 1's failure (whose record leads to the cancel) waits for item 0's success to
            # commit: on a loaded machine item 0 had not ended after item 1's 300 ms.
            await asyncio.wait_for(zero_recorded.wait(), 20)
        await real(self, record)
        if record.index == 0 and record.item_status == "Succeeded":
            zero_recorded.set()
            await asyncio.sleep(30)  # committed; the answer "never comes back" before the cancel

    monkeypatch.setattr(node_attempts._Items, "record", record_then_hang)
    root = await two_items_the_second_failing(db, conditions, "late-success", "{{ 300 if item == 1 else 0 }}")
    state = (await nodes(db, root))["all"]
    assert state["error"]["code"] == "item_failed"
    rows = dict(await sql(db, "SELECT item_index, status FROM dw.foreach_items WHERE execution_id = %s", root))
    assert rows == {0: "Succeeded", 1: "Failed"}
    ((outputs,),) = await sql(
        db, "SELECT outputs FROM dw.action_executions WHERE execution_id = %s AND item_index IS NULL", root
    )
    assert (outputs["succeeded"], outputs["failed"]) == (1, 1), outputs
    assert outputs["items"][0] is not None and outputs["items"][1] is None, outputs


async def test_items_are_retried_by_the_node_policy(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    action = {
        "actionType": "core.echo",
        "parameters": {"message": "{{ item }}", "simulateFailure": "transient", "failUntilAttempt": 2},
    }
    raw = wf(
        "flaky-items",
        {**for_each("all", [1, 2], action=action), "retryPolicy": {"initialDelay": "PT0.05S", "maxAttempts": 3}},
    )
    await publish(db, raw, conditions)
    root = await start(db, "flaky-items")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    assert await item_attempts(db, root) == [
        (0, 1, "RetriableFailure"),
        (0, 2, "Succeeded"),
        (1, 1, "RetriableFailure"),
        (1, 2, "Succeeded"),
    ]


async def test_item_limits(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("too-many", for_each("all", "{{ trigger.items }}", maxItems=3)), conditions)
    root = await start(db, "too-many", {"items": [1, 2, 3, 4]})
    await drain(db, runtime)
    assert (await nodes(db, root))["all"]["error"]["code"] == "too_many_items"
    await publish(db, wf("not-a-list", for_each("all", "{{ trigger.items }}")), conditions)
    root = await start(db, "not-a-list", {"items": {"a": 1}})
    await drain(db, runtime)
    error = (await nodes(db, root))["all"]["error"]
    # Said in JSON's words (it said "not a dict: {'a': 1}", and for null "not a NoneType: None").
    assert (error["code"], error["message"]) == (
        "invalid_items",
        'items must render to an array, not an object: {"a":1}',
    )
    root = await start(db, "not-a-list", {"items": None})
    await drain(db, runtime)
    error = (await nodes(db, root))["all"]["error"]
    assert (error["code"], error["message"]) == ("invalid_items", "items must render to an array, not null")
    with pytest.raises(DefinitionError) as refused:
        await publish(db, wf("over-cap", for_each("all", "{{ trigger.items }}", maxItems=10_001)), conditions)
    assert [p.pointer for p in refused.value.problems] == ["/nodes/0/parameters/maxItems"]
    with pytest.raises(DefinitionError) as refused:
        bad = {"actionType": "core.nope", "parameters": {}}
        await publish(db, wf("bad-action", for_each("all", [1], action=bad)), conditions)
    assert [p.code for p in refused.value.problems] == ["unknown_action_type"]


async def test_a_run_stopped_half_way_resumes_without_redoing_finished_items(
    db: Database, conditions: ConditionPool
) -> None:
    first = make_runtime(db, conditions, worker_id="first")
    # Item 12 runs for a second, the others for 20 ms: when the worker dies, item 12 is certainly in
    # flight. (With equal delays the items in flight start and end together, and the cut could land
    # while all of them were recording their success: nothing left to interrupt. A CI run met that.)
    action = {"actionType": "core.echo", "parameters": {"message": "{{ item.n }}", "delayMs": "{{ item.ms }}"}}
    items = [{"n": n, "ms": 1000 if n == 12 else 20} for n in range(40)]
    await publish(db, wf("long-list", for_each("all", items, action=action, concurrency=4)), conditions)
    root = await start(db, "long-list")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))
    task = asyncio.create_task(first.run_execution(root))
    for _ in range(200):
        await asyncio.sleep(0.02)
        counts = await sql(
            db,
            "SELECT count(*) FILTER (WHERE status = 'Succeeded'),"
            " count(*) FILTER (WHERE status = 'Running' AND item_index = 12)"
            " FROM dw.foreach_items WHERE execution_id = %s",
            root,
        )
        if counts[0][0] >= 10 and counts[0][1] == 1:
            break
    else:
        pytest.fail("item 12 was never seen running after ten items had succeeded")
    # The worker dies: its tasks stop, its lease is left to expire.
    first.stop_starting()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", root)
    second = make_runtime(db, conditions, worker_id="second")
    assert await second.run_execution(root) == "Succeeded"
    rows = await item_attempts(db, root)
    succeeded = [index for index, _, status in rows if status == "Succeeded"]
    assert sorted(succeeded) == list(range(40))  # each item succeeded exactly once
    # The items in flight when the worker died were recorded as interrupted, then retried.
    interrupted = await sql(
        db,
        "SELECT count(*) FROM dw.action_executions WHERE execution_id = %s AND error->>'code' = 'attempt_interrupted'",
        root,
    )
    assert 1 <= interrupted[0][0] <= 4
    assert [(index, attempt) for index, attempt, status in rows if index == 12] == [(12, 1), (12, 2)]
    outputs = (await nodes(db, root))["all"]["outputs"]
    assert [o["echo"] for o in outputs["items"]] == list(range(40))


async def test_a_suspended_for_each_finishes_its_items_in_flight_and_goes_on_when_resumed(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    action = {"actionType": "core.echo", "parameters": {"message": "{{ item }}", "delayMs": 30}}
    await publish(db, wf("pausable", for_each("all", list(range(30)), action=action, concurrency=3)), conditions)
    root = await start(db, "pausable")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))
    task = asyncio.create_task(runtime.run_execution(root))
    for _ in range(200):  # a few items done (on a loaded machine, 0.15 s may not be enough)
        await asyncio.sleep(0.02)
        succeeded = await sql(
            db, "SELECT count(*) FROM dw.foreach_items WHERE execution_id = %s AND status = 'Succeeded'", root
        )
        if succeeded[0][0] >= 3:
            break
    assert (await db.control.suspend(root, principal="ops", reason="pause")).outcome == "requested"
    runtime.poke(root)
    assert await task == "suspended"
    done = await sql(db, "SELECT status, count(*) FROM dw.foreach_items WHERE execution_id = %s GROUP BY 1", root)
    assert "Running" not in dict(done) and 0 < dict(done)["Succeeded"] < 30
    await db.control.resume(root, principal="ops", queue="executions")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    rows = await item_attempts(db, root)
    assert rows == [(i, 1, "Succeeded") for i in range(30)]


def child_items(node_id: str, items: Any, workflow_id: str, *edges: dict[str, Any], **params: Any) -> dict[str, Any]:
    sub = {"workflowId": workflow_id, "input": {"value": "{{ item }}", "position": "{{ index }}"}}
    return kind_node("forEach", node_id, edges, {"items": items, "subworkflow": sub, **params})


async def test_a_subworkflow_per_item_parks_the_parent_while_children_run(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    leaf = wf("square", echo("sq", message="{{ trigger.value * trigger.value }}"))
    leaf["outputs"] = {"square": "{{ nodes.sq.echo }}", "at": "{{ trigger.position }}"}
    await publish(db, leaf, conditions)
    await publish(db, wf("squares", child_items("all", [1, 2, 3, 4, 5], "square", concurrency=2)), conditions)
    root = await start(db, "squares")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))
    # The first holder starts two children (the concurrency) and parks: the run holds nothing.
    assert await runtime.run_execution(root) == "parked"
    # Nothing to wake it for but its deadline (every run has one: the server's default hour).
    assert await sql(
        db, "SELECT status, wake_at = deadline_at, lease_owner FROM dw.executions WHERE id = %s", root
    ) == [("Waiting", True, None)]
    assert len(await db.fetch_all("list_children", id=root, after_created=None, after_id=None, limit=None)) == 2
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    outputs = (await nodes(db, root))["all"]["outputs"]
    assert outputs["items"] == [{"square": v * v, "at": i} for i, v in enumerate([1, 2, 3, 4, 5])]
    kids = await db.fetch_all("list_children", id=root, after_created=None, after_id=None, limit=None)
    assert len(kids) == 5 and {k["status"] for k in kids} == {"Succeeded"}
    assert await item_attempts(db, root) == [(i, 1, "Succeeded") for i in range(5)]


async def test_a_failing_child_item_stops_the_for_each_and_cancels_its_siblings(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    flaky = wf(
        "odd-fails",
        echo("check", simulateFailure="{{ 'permanent' if trigger.value == 2 else none }}"),
        kind_node("signal", "hold", (), {"name": "never"}),
    )
    flaky["nodes"][0]["edges"] = [to("hold")]
    await publish(db, flaky, conditions)
    await publish(db, wf("stops-children", child_items("all", [1, 2, 3, 4], "odd-fails", concurrency=3)), conditions)
    root = await start(db, "stops-children")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    error = (await nodes(db, root))["all"]["error"]
    assert error["code"] == "item_failed" and error["details"]["index"] == 1
    assert error["details"]["cause"]["code"] == "child_failed"
    kids = {
        k["id"]: k["status"]
        for k in await db.fetch_all("list_children", id=root, after_created=None, after_id=None, limit=None)
    }
    # Three started (the concurrency); the one that failed, and two cancelled with the forEach.
    assert sorted(kids.values()) == ["Cancelled", "Cancelled", "Failed"]
    statuses = await sql(db, "SELECT item_index, status FROM dw.foreach_items WHERE execution_id = %s ORDER BY 1", root)
    assert [s for _, s in statuses] == ["Cancelled", "Failed", "Cancelled", "Cancelled"]


async def test_cancelling_a_parent_cancels_the_children_of_its_items(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("holds", kind_node("signal", "hold", (), {"name": "never"})), conditions)
    await publish(db, wf("fans-out", child_items("all", [1, 2], "holds")), conditions)
    root = await start(db, "fans-out")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Waiting"
    await db.control.cancel(root, principal="ops", reason="stop")
    await drain(db, runtime)
    kids = await db.fetch_all("list_children", id=root, after_created=None, after_id=None, limit=None)
    assert [k["status"] for k in kids] == ["Cancelled", "Cancelled"]


async def test_a_long_item_backoff_parks_the_run(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions, park_threshold_seconds=0.2)
    action = {
        "actionType": "core.echo",
        "parameters": {"message": "{{ item }}", "simulateFailure": "transient", "failUntilAttempt": 2},
    }
    node = {**for_each("all", [1], action=action), "retryPolicy": {"initialDelay": "PT0.6S", "jitter": False}}
    await publish(db, wf("slow-retry", node), conditions)
    root = await start(db, "slow-retry")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))
    assert await runtime.run_execution(root) == "parked"
    ((wake_at, owner),) = await sql(db, "SELECT wake_at, lease_owner FROM dw.executions WHERE id = %s", root)
    assert owner is None and wake_at is not None
    await asyncio.sleep(0.7)
    assert await db.operations.wake_due_runs(limit=10, queue="executions") == 1
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    assert await item_attempts(db, root) == [(0, 1, "RetriableFailure"), (0, 2, "Succeeded")]
    # The node's own attempt row starts when the attempt did, before its items, not when the run
    # was taken again after its park (its duration was the last hold's, after its own items).
    times = await sql(
        db,
        "SELECT item_index, start_time, end_time FROM dw.action_executions WHERE execution_id = %s"
        " ORDER BY start_time, item_index NULLS FIRST",
        root,
    )
    assert [index for index, _, _ in times] == [None, 0, 0], times
    ((started,),) = await sql(db, "SELECT started_at FROM dw.node_states WHERE execution_id = %s", root)
    assert abs(times[0][1] - started) < timedelta(seconds=0.5), (times, started)
    assert times[0][2] - times[0][1] >= timedelta(seconds=0.6), times


@pytest.mark.parametrize("kind", ["action", "subworkflow"])
async def test_the_items_outputs_together_are_bounded(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A forEach's outputs hold every item's, in the worker's memory and then in one checkpoint: 800
    items of 1 MB held 3.7 GB in the worker before the checkpoint failed (jsonb's 256 MB), 10,000 of
    them would have taken tens (sandbox review). The items' outputs together are bounded
    (foreach.MAX_OUTPUTS_BYTES, 16 MiB; 20 kB here): past it the node fails with
    outputs_too_large, in either failure mode, and the items not started are not run."""
    monkeypatch.setattr(foreach, "MAX_OUTPUTS_BYTES", 20_000)
    runtime = make_runtime(db, conditions)
    message = "{{ 'x' * 3000 }}"
    if kind == "action":
        action = {"actionType": "core.echo", "parameters": {"message": message}}
        node = for_each("all", list(range(30)), action=action, concurrency=2, onItemFailure="continue")
    else:
        leaf = wf("big-out", echo("e", message=message))
        leaf["outputs"] = {"text": "{{ nodes.e.echo }}"}
        await publish(db, leaf, conditions)
        node = child_items("all", list(range(30)), "big-out", concurrency=2, onItemFailure="continue")
    await publish(db, wf(f"bounded-{kind}", node), conditions)
    root = await start(db, f"bounded-{kind}")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    state = (await nodes(db, root))["all"]
    assert state["error"]["code"] == "outputs_too_large", state["error"]
    assert "20,000 bytes" in state["error"]["message"], state["error"]
    ((outputs,),) = await sql(
        db, "SELECT outputs FROM dw.action_executions WHERE execution_id = %s AND item_index IS NULL", root
    )
    assert "items" not in outputs and outputs["succeeded"] < 10, outputs
    statuses = [r[0] for r in await sql(db, "SELECT status FROM dw.foreach_items WHERE execution_id = %s", root)]
    assert statuses.count("Succeeded") == outputs["succeeded"] and "Pending" not in statuses, statuses
    # The items it stopped say why: no item failed (they said "another item failed (failFast)").
    errors = await sql(
        db, "SELECT error ->> 'message' FROM dw.foreach_items WHERE execution_id = %s AND status = 'Cancelled'", root
    )
    assert errors and all("outputs_too_large" in e and "failFast" not in e for (e,) in errors), errors


async def test_a_redriven_for_each_starts_new_children_for_the_items_that_failed(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    breaks = wf("breaks-on-2", echo("x", simulateFailure="{{ 'permanent' if trigger.value == 2 else none }}"))
    await publish(db, breaks, conditions)
    await publish(db, wf("redrives", child_items("all", [1, 2, 3], "breaks-on-2", concurrency=1)), conditions)
    root = await start(db, "redrives")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    first_children = {
        k["id"] for k in await db.fetch_all("list_children", id=root, after_created=None, after_id=None, limit=None)
    }
    assert len(first_children) == 2  # item 0 succeeded, item 1 failed, item 2 never started
    # The child workflow is fixed, then the run redriven: item 1 starts a child of its own.
    await publish(db, wf("breaks-on-2", echo("x", message="fixed")), conditions)
    letters = await db.operations.dead_letters(open_only=True, kind=None, before=None, limit=10)
    (letter,) = [d for d in letters if d.execution_id == root]
    await db.operations.redrive(letter.id, principal="ops", queue="executions")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    kids = await db.fetch_all("list_children", id=root, after_created=None, after_id=None, limit=None)
    assert len(kids) == 4 and len({k["id"] for k in kids} - first_children) == 2
    # Item 0 kept its first child's outputs; items 1 and 2 ran new children.
    assert await item_attempts(db, root) == [
        (0, 1, "Succeeded"),
        (1, 1, "Failed"),
        (1, 2, "Succeeded"),
        (2, 1, "Succeeded"),
    ]


async def test_an_item_child_whose_end_its_item_took_is_not_redriven(db: Database, conditions: ConditionPool) -> None:
    """An item's child that failed: its item recorded child_failed, so redriving the child would
    leave the item and its run as they are: refused, naming the run's letter (its redrive starts the
    item a new child, above)."""
    runtime = make_runtime(db, conditions)
    breaks = wf("breaks-on-2", echo("x", simulateFailure="{{ 'permanent' if trigger.value == 2 else none }}"))
    await publish(db, breaks, conditions)
    await publish(db, wf("item-kids", child_items("all", [2], "breaks-on-2")), conditions)
    root = await start(db, "item-kids")
    await drain(db, runtime)
    (kid,) = await db.fetch_all("list_children", id=root, after_created=None, after_id=None, limit=None)
    letters = await db.operations.dead_letters(open_only=True, kind=None, before=None, limit=10)
    by_run = {d.execution_id: d.id for d in letters}
    with pytest.raises(Conflict) as refused:
        await db.operations.redrive(by_run[kid["id"]], principal="ops", queue="executions")
    assert f"dead letter {by_run[root]}" in str(refused.value), refused.value
    assert (await execution(db, kid["id"]))["status"] == "Failed"


async def test_a_wake_that_comes_while_the_worker_holds_the_run_is_kept_for_its_park(db: Database) -> None:
    await publish(db, wf("held", kind_node("signal", "s", (), {"name": "go"})))
    root = await start(db, "held")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))
    acquired = await db.runs.acquire(root, owner="w1", lease_seconds=5)
    assert acquired.lease_token is not None
    # A child ends (or a signal comes) while w1 holds the run and has not heard the NOTIFY yet.
    await sql(db, "SELECT dw.wake_run_v1(e, 'executions') FROM dw.executions e WHERE e.id = %s", root)
    parked = await db.runs.park(root, acquired.lease_token, queue="executions")
    assert parked.outcome == "parked" and parked.wake_at is not None
    assert await sql(db, "SELECT count(*) FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root)) == [
        (1,)
    ]
    # Taking the run answers the wake; a run woken while Waiting is due now (recovery's view).
    await db.runs.acquire(root, owner="w2", lease_seconds=5)
    assert await sql(db, "SELECT wake_requested_at FROM dw.executions WHERE id = %s", root) == [(None,)]


async def test_an_item_whose_child_failed_is_not_retried(db: Database, conditions: ConditionPool) -> None:
    """README "A subworkflow per item": the node's retryPolicy does not start a second child for an
    item whose child failed (the child had its own retries), as a subworkflow node's does not."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("always-fails", echo("x", simulateFailure="permanent")), conditions)
    node = child_items("each", [1], "always-fails")
    node["retryPolicy"] = {"maxAttempts": 3, "initialDelay": "PT0.05S", "jitter": False}
    await publish(db, wf("no-item-retry", node), conditions)
    root = await start(db, "no-item-retry")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    statuses = await sql(db, "SELECT status, attempts FROM dw.foreach_items WHERE execution_id = %s", root)
    assert statuses == [("Failed", 1)]
    kids = await db.fetch_all("list_children", id=root, after_created=None, after_id=None, limit=None)
    assert len(kids) == 1

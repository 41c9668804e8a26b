"""A run's compensation undoes its succeeded children (README "Compensation", "Children"): a child
run that Succeeded (a subworkflow node's, a forEach item's) is a step of its parent's compensation,
in the order of its end; the step starts the child's own compensation and waits for it, and the
child's end of it records the step and queues the parent's job again. In-process: `_drain` plays
the workers (runs, cancels, compensations)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from psycopg.types.json import Jsonb

from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from tests.conftest import publish, start
from tests.integration.test_compensation import FAST, _drain, _open_letters, runner, undo
from tests.integration.test_foreach import child_items
from tests.integration.test_runtime import echo, events, make_runtime, to, wf
from tests.integration.test_subworkflows import children, sql, sub


async def compensation(db: Database, execution_id: UUID | str) -> str | None:
    rows = await sql(db, "SELECT compensation_status FROM dw.executions WHERE id = %s", execution_id)
    return rows[0][0]


async def steps(db: Database, execution_id: UUID | str) -> list[tuple[str, str, str | None]]:
    """(node, status, child id or None) of each step, in order."""
    return [
        (s.node_id, s.status, None if s.child_execution_id is None else str(s.child_execution_id))
        for s in await db.compensations.steps(UUID(str(execution_id)))
    ]


async def publish_hotel(
    db: Database,
    conditions: ConditionPool,
    workflow_id: str = "hotel",
    message: str = "release {{ nodes['book-hotel'].echo }} of {{ trigger.who }}",
    **extra: Any,
) -> None:
    """A child that books and succeeds; its booking's compensation releases it."""
    raw = wf(workflow_id, undo(echo("book-hotel"), message))
    raw.setdefault("orchestration", {}).update(extra)
    await publish(db, raw, conditions)


async def test_a_failed_parent_undoes_its_succeeded_child_in_order_of_ends(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    await publish_hotel(db, conditions)
    await publish(
        db,
        wf(
            "trip",
            undo(echo("flight", to("stay")), "cancel flight"),
            sub("stay", "hotel", to("pay"), input={"who": "ada"}),
            echo("pay", simulateFailure="permanent"),
        ),
        conditions,
    )
    parent = await start(db, "trip")
    await _drain(db, runtime)
    assert (await db.executions.get(parent)).status == "Failed"
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    # The child ended after the flight was booked: it is undone first, by its own compensation.
    assert await steps(db, parent) == [("stay", "Succeeded", str(kid)), ("flight", "Succeeded", None)]
    assert await compensation(db, parent) == "Compensated"
    # The child keeps its end (it did succeed); its compensation is its own, as its parent's end.
    assert (await db.executions.get(kid)).status == "Succeeded"
    assert await compensation(db, kid) == "Compensated"
    (hotel,) = await db.compensations.steps(kid)
    assert (hotel.node_id, hotel.status, hotel.outputs) == (
        "book-hotel",
        "Succeeded",
        {"echo": "release book-hotel of ada"},
    )
    started = await sql(
        db,
        "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = 'compensation_started'",
        kid,
    )
    assert started[0][0]["parentExecutionId"] == str(parent) and started[0][0]["parentStatus"] == "Failed"
    child_step = (await db.compensations.steps(parent))[0]
    assert child_step.action_type == "subworkflow"
    assert child_step.outputs == {"childExecutionId": str(kid), "compensation": "Compensated"}
    # The child was undone before the flight: the parent's next step waited for the child's end.
    hotel_end = hotel.ended_at
    flight = (await db.compensations.steps(parent))[1]
    assert flight.started_at is not None and hotel_end <= flight.started_at
    kinds = await events(db, parent)
    assert kinds.count("compensation_attempt_started") == 2 and kinds[-1] == "compensation_ended"
    # No letter: nothing failed.
    assert await _open_letters(db, parent, "compensation_failed") == []


async def test_the_parent_job_waits_for_the_child_and_the_childs_end_wakes_it(
    db: Database, conditions: ConditionPool
) -> None:
    """Step by step: the parent's job starts the child's compensation and ends (waiting), recovery
    does not queue it again while the child's is under way, and the child's end queues it."""
    runtime = make_runtime(db, conditions)
    await publish_hotel(db, conditions, "hotel-2")
    await publish(
        db,
        wf("trip-2", sub("stay", "hotel-2", to("pay"), input={"who": "bo"}), echo("pay", simulateFailure="permanent")),
        conditions,
    )
    parent = await start(db, "trip-2")
    from tests.integration.test_subworkflows import drain

    await drain(db, runtime)  # runs, not compensations
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    assert await steps(db, parent) == [("stay", "Pending", str(kid))]
    await sql(db, "DELETE FROM procrastinate_jobs WHERE task_name = 'dw.compensate' RETURNING id")
    assert await runner(db, runtime).run(parent) == "waiting"
    assert await steps(db, parent) == [("stay", "Waiting", str(kid))]
    assert await compensation(db, kid) == "Compensating"
    jobs = await sql(db, "SELECT args ->> 'run_id' FROM procrastinate_jobs WHERE task_name = 'dw.compensate'")
    assert jobs == [(str(kid),)]
    # A second delivery of the parent's job finds the step waiting, and changes nothing.
    assert await runner(db, runtime).run(parent) == "waiting"
    # Recovery passes over a parent that waits for a child's compensation under way (it would queue
    # a job each pass), though the parent's own job is gone.
    await sql(
        db,
        "UPDATE dw.executions SET ended_at = now() - interval '1 hour' WHERE id IN (%s, %s) RETURNING id",
        parent,
        kid,
    )
    recovered = await db.operations.recover(max_recoveries=3, stalled_worker_seconds=1, queue="executions")
    assert [r for r in recovered if str(r.execution_id) == str(parent)] == []
    await sql(db, "DELETE FROM procrastinate_jobs WHERE task_name = 'dw.compensate' RETURNING id")
    assert await runner(db, runtime).run(kid) == "done"
    assert await steps(db, parent) == [("stay", "Succeeded", str(kid))]
    jobs = await sql(db, "SELECT args ->> 'run_id' FROM procrastinate_jobs WHERE task_name = 'dw.compensate'")
    assert jobs == [(str(parent),)]
    assert await runner(db, runtime).run(parent) == "done"
    assert await compensation(db, parent) == "Compensated"


async def test_every_succeeded_item_of_a_for_each_is_undone_last_first(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish_hotel(db, conditions, "hotel-3", "release {{ trigger.value }}")
    await publish(
        db,
        wf(
            "tour",
            child_items("stays", ["a", "b", "c"], "hotel-3", to("pay"), concurrency=1),
            echo("pay", simulateFailure="permanent"),
        ),
        conditions,
    )
    parent = await start(db, "tour")
    await _drain(db, runtime)
    assert (await db.executions.get(parent)).status == "Failed"
    kids = await sql(
        db, "SELECT id FROM dw.executions WHERE parent_execution_id = %s ORDER BY ended_at DESC, id DESC", parent
    )
    assert len(kids) == 3
    assert await steps(db, parent) == [("stays", "Succeeded", str(k)) for (k,) in kids]
    for (k,) in kids:
        assert await compensation(db, k) == "Compensated"
    released = [(await db.compensations.steps(k))[0].outputs["echo"] for (k,) in kids]
    assert released == ["release c", "release b", "release a"]
    assert await compensation(db, parent) == "Compensated"


async def test_a_for_eachs_children_are_undone_up_to_its_concurrency_at_once(
    db: Database, conditions: ConditionPool
) -> None:
    """A forEach's children compensate as they ran: up to its concurrency at once (until this release
    one at a time, two job round trips each: a forEach of 1,000 children about 20 s). A child's end
    of its compensation lets the next one start; the parent's step before the forEach (the flight,
    which ended first) waits for them all."""
    from tests.integration.test_subworkflows import drain

    runtime = make_runtime(db, conditions)
    await publish_hotel(db, conditions, "hotel-5", "release {{ trigger.value }}")
    await publish(
        db,
        wf(
            "tour-5",
            undo(echo("flight", to("stays")), "cancel flight"),
            child_items("stays", ["a", "b", "c", "d", "e"], "hotel-5", to("pay"), concurrency=3),
            echo("pay", simulateFailure="permanent"),
        ),
        conditions,
    )
    parent = await start(db, "tour-5")
    await drain(db, runtime)  # runs, not compensations
    assert (await db.executions.get(parent)).status == "Failed"
    await sql(db, "DELETE FROM procrastinate_jobs WHERE task_name = 'dw.compensate' RETURNING id")
    assert [s.parameters for s in await db.compensations.steps(parent)][:1] == [
        {"compensateAs": "Failed", "concurrency": 3}
    ]
    assert await runner(db, runtime).run(parent) == "waiting"
    statuses = [status for _, status, _ in await steps(db, parent)]
    assert statuses == ["Waiting", "Waiting", "Waiting", "Pending", "Pending", "Pending"]
    kids = [kid for _, _, kid in await steps(db, parent)][:5]
    assert [await compensation(db, kid) for kid in kids[:3]] == ["Compensating"] * 3
    assert await compensation(db, kids[3]) is None
    # The second of the three ends first: its step is recorded and the parent's job queued, and the
    # next child's compensation starts (the others' jobs stay queued, for the drain below).
    jobs = "SELECT args ->> 'run_id' FROM procrastinate_jobs WHERE task_name = 'dw.compensate'"
    assert await runner(db, runtime).run(kids[1]) == "done"
    assert (str(parent),) in await sql(db, jobs)
    assert await runner(db, runtime).run(parent) == "waiting"
    statuses = [status for _, status, _ in await steps(db, parent)]
    assert statuses == ["Waiting", "Succeeded", "Waiting", "Waiting", "Pending", "Pending"]
    # The others end; the flight, which succeeded before them, is undone once they all have.
    await _drain(db, runtime)
    assert await compensation(db, parent) == "Compensated"
    done = await db.compensations.steps(parent)
    assert [(s.node_id, s.status) for s in done] == [("stays", "Succeeded")] * 5 + [("flight", "Succeeded")]
    last_child_end = max(s.ended_at for s in done[:5] if s.ended_at is not None)
    assert done[5].started_at is not None and last_child_end <= done[5].started_at
    assert [await compensation(db, kid) for kid in kids] == ["Compensated"] * 5


async def test_a_childs_failed_compensation_fails_the_parents_step_and_its_letter_redrives_the_child(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    # The child's compensation fails its first attempt (its only one), and succeeds at its second.
    raw = wf("hotel-4", undo(echo("book-hotel"), "release", simulateFailure="transient", failUntilAttempt=2))
    raw["nodes"][0]["compensation"]["retryPolicy"] = {**FAST, "maxAttempts": 1}
    await publish(db, raw, conditions)
    await publish(
        db, wf("trip-4", sub("stay", "hotel-4", to("pay")), echo("pay", simulateFailure="permanent")), conditions
    )
    parent = await start(db, "trip-4")
    await _drain(db, runtime)
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    assert await compensation(db, kid) == "CompensationFailed"
    assert await compensation(db, parent) == "CompensationFailed"
    (step,) = await db.compensations.steps(parent)
    assert step.parameters == {"compensateAs": "Failed"}
    assert (step.status, step.error["code"], step.error["childExecutionId"]) == (
        "Failed",
        "child_compensation_failed",
        str(kid),
    )
    assert "book-hotel (simulated_transient_failure" in step.error["message"]
    # One letter, the parent's: it names the child's failure; the child files none while its parent
    # waits for it (the parent's letter's redrive reaches it).
    (letter,) = await _open_letters(db, parent, "compensation_failed")
    assert await _open_letters(db, kid, "compensation_failed") == []
    await db.operations.redrive(letter.id, principal="ops", queue="executions")
    await _drain(db, runtime)
    assert await compensation(db, kid) == "Compensated"
    assert await compensation(db, parent) == "Compensated"
    (hotel,) = await db.compensations.steps(kid)
    assert (hotel.status, hotel.attempts) == ("Succeeded", 2)
    assert await steps(db, parent) == [("stay", "Succeeded", str(kid))]
    redriven = await sql(
        db, "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = 'compensation_redriven'", kid
    )
    assert redriven[0][0]["parentExecutionId"] == str(parent)


@pytest.mark.parametrize(
    ("child_on", "undone"),
    [(None, True), (["Failed"], True), (["Cancelled"], False), ([], False)],
)
async def test_the_childs_compensate_on_says_whether_its_parents_end_undoes_it(
    db: Database, conditions: ConditionPool, child_on: list[str] | None, undone: bool
) -> None:
    """As if the child had ended as its parent did: a parent that Failed undoes a child that
    compensates on Failed (all three by default), not one that names other ends, or none."""
    runtime = make_runtime(db, conditions)
    extra = {} if child_on is None else {"compensateOn": child_on}
    await publish_hotel(db, conditions, "hotel-5", **extra)
    # The parent has no compensation of its own: its end still looks for succeeded children.
    await publish(
        db,
        wf("trip-5", sub("stay", "hotel-5", to("pay"), input={"who": "di"}), echo("pay", simulateFailure="permanent")),
        conditions,
    )
    parent = await start(db, "trip-5")
    await _drain(db, runtime)
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    if undone:
        assert await steps(db, parent) == [("stay", "Succeeded", str(kid))]
        assert await compensation(db, kid) == "Compensated"
    else:
        assert await steps(db, parent) == []
        assert await compensation(db, parent) is None and await compensation(db, kid) is None


async def test_a_parent_that_compensates_on_nothing_leaves_its_children(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    await publish_hotel(db, conditions, "hotel-6")
    raw = wf("trip-6", sub("stay", "hotel-6", to("pay")), echo("pay", simulateFailure="permanent"))
    raw["orchestration"] = {"compensateOn": []}
    await publish(db, raw, conditions)
    parent = await start(db, "trip-6")
    await _drain(db, runtime)
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    assert await compensation(db, parent) is None and await compensation(db, kid) is None


async def test_a_grandchild_is_undone_through_a_child_without_compensations(
    db: Database, conditions: ConditionPool
) -> None:
    """A child whose plan has no compensation of its own is a step when it has succeeded children:
    its compensation is its children's."""
    runtime = make_runtime(db, conditions)
    await publish_hotel(db, conditions, "hotel-7")
    await publish(db, wf("middle-7", sub("inner", "hotel-7", input={"who": "cy"})), conditions)
    await publish(
        db, wf("trip-7", sub("outer", "middle-7", to("pay")), echo("pay", simulateFailure="permanent")), conditions
    )
    parent = await start(db, "trip-7")
    await _drain(db, runtime)
    ((middle,),) = [[c["id"] for c in await children(db, parent)]]
    ((grandchild,),) = [[c["id"] for c in await children(db, middle)]]
    assert await steps(db, parent) == [("outer", "Succeeded", str(middle))]
    assert await steps(db, middle) == [("inner", "Succeeded", str(grandchild))]
    assert await compensation(db, grandchild) == "Compensated"
    assert await compensation(db, parent) == "Compensated"


async def test_a_child_its_parents_end_cancels_is_undone_before_the_parent(
    db: Database, conditions: ConditionPool
) -> None:
    """Planning's note: a parent's compensation and those of the children its end cancelled ran at
    the same time, the parent's earlier effects undone before (or while) the child's later ones.
    The parent's step for such a child waits for the child's end and its own compensation."""
    from tests.integration.test_subworkflows import drain
    from tests.integration.test_waits import signal

    runtime = make_runtime(db, conditions)
    await publish(db, wf("holds-8", undo(echo("hold", to("s")), "unhold"), signal("s", name="never")), conditions)
    await publish(db, wf("trip-8", undo(echo("book", to("call")), "unbook"), sub("call", "holds-8")), conditions)
    parent = await start(db, "trip-8")
    await drain(db, runtime)
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    assert (await db.executions.get(kid)).status == "Waiting"
    assert (await db.control.cancel(parent, principal="ops", reason="enough")).outcome == "cancelled"
    # The parent's end: a step for the child it cancels, first (its end is the last to come).
    assert await steps(db, parent) == [("call", "Pending", str(kid)), ("book", "Pending", None)]
    # Its job runs before the cancel cascade reached the child: the step waits.
    assert await runner(db, runtime).run(parent) == "waiting"
    assert await steps(db, parent) == [("call", "Waiting", str(kid)), ("book", "Pending", None)]
    # While the child has not ended, recovery leaves the parent be (the child's end queues its job).
    await sql(db, "UPDATE dw.executions SET ended_at = now() - interval '1 hour' WHERE id = %s RETURNING id", parent)
    await sql(db, "DELETE FROM procrastinate_jobs WHERE task_name = 'dw.compensate' RETURNING id")
    recovered = await db.operations.recover(max_recoveries=3, stalled_worker_seconds=1, queue="executions")
    assert [r for r in recovered if str(r.execution_id) == str(parent)] == []
    await _drain(db, runtime)
    assert (await db.executions.get(kid)).status == "Cancelled"
    assert await compensation(db, kid) == "Compensated"
    assert await steps(db, parent) == [("call", "Succeeded", str(kid)), ("book", "Succeeded", None)]
    assert await compensation(db, parent) == "Compensated"
    (unhold,) = await db.compensations.steps(kid)
    unbook = (await db.compensations.steps(parent))[1]
    assert unhold.ended_at is not None and unbook.started_at is not None and unhold.ended_at <= unbook.started_at


async def test_a_cancelled_child_with_nothing_to_undo_ends_its_parents_step(
    db: Database, conditions: ConditionPool
) -> None:
    """A child whose plan has compensations, cancelled before any of its nodes succeeded: its step
    waits for its end, and ends with nothing undone."""
    from tests.integration.test_subworkflows import drain
    from tests.integration.test_waits import signal

    runtime = make_runtime(db, conditions)
    await publish(db, wf("plain-9", signal("s", to("later"), name="never"), undo(echo("later"), "unlater")), conditions)
    await publish(db, wf("trip-9", undo(echo("book", to("call")), "unbook"), sub("call", "plain-9")), conditions)
    parent = await start(db, "trip-9")
    await drain(db, runtime)
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    await db.control.cancel(parent, principal="ops", reason="enough")
    assert await runner(db, runtime).run(parent) == "waiting"
    await _drain(db, runtime)
    assert await compensation(db, kid) is None
    assert await steps(db, parent) == [("call", "Succeeded", str(kid)), ("book", "Succeeded", None)]
    (call, _) = await db.compensations.steps(parent)
    assert call.outputs == {"childExecutionId": str(kid), "compensation": None}
    assert await compensation(db, parent) == "Compensated"


async def test_a_child_that_succeeds_after_its_parent_was_cancelled_is_undone(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: the parent was cancelled while its child's last action ran; the child ended
    Succeeded after the parent's end had made its steps (none), and its booking stayed for good.
    It compensates at its end, as if it had ended as its parent did, with a letter of its own."""
    import asyncio

    runtime = make_runtime(db, conditions)
    await publish(db, wf("hotel-8", undo(echo("book-hotel", delayMs=1500), "release")), conditions)
    await publish(db, wf("trip-8", sub("stay", "hotel-8")), conditions)
    parent = await start(db, "trip-8")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s RETURNING id", str(parent))
    await runtime.run_execution(parent)
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s RETURNING id", str(kid))

    async def cancel_while_the_child_books() -> None:
        for _ in range(100):
            if "node_started" in await events(db, kid):
                break
            await asyncio.sleep(0.02)
        await db.control.cancel(parent, principal="ops", reason="enough")

    await asyncio.gather(runtime.run_execution(UUID(str(kid))), cancel_while_the_child_books())
    await _drain(db, runtime)
    assert (await db.executions.get(parent)).status == "Cancelled"
    assert (await db.executions.get(kid)).status == "Succeeded"
    assert await compensation(db, kid) == "Compensated"
    (hotel,) = await db.compensations.steps(kid)
    assert (hotel.node_id, hotel.status) == ("book-hotel", "Succeeded")
    started = await sql(
        db,
        "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = 'compensation_started'",
        kid,
    )
    assert started[0][0]["parentExecutionId"] == str(parent) and started[0][0]["parentStatus"] == "Cancelled"


@pytest.mark.parametrize("child_first", [True, False])
async def test_a_detached_child_outlives_a_failed_parent_whichever_ends_first(
    db: Database, conditions: ConditionPool, child_first: bool
) -> None:
    """A review: a detached child (waitForCompletion false) outlives a parent that fails (README
    "Subworkflows"): one still running at the parent's end went on and kept its effects, but one
    that had succeeded a moment before was undone by the parent's compensation, so the same
    definition left or undid the child by timing alone. Neither is a step of a failed parent's
    compensation (a cancelled parent cancels its detached children, and undoes those that
    succeeded)."""
    from tests.integration.test_waits import signal

    runtime = make_runtime(db, conditions)
    await publish_hotel(db, conditions, "hotel-10")
    await publish(
        db,
        wf(
            "trip-10",
            sub("fire", "hotel-10", to("go"), waitForCompletion=False, input={"who": "ed"}),
            signal("go", to("pay"), name="go"),
            echo("pay", simulateFailure="permanent"),
        ),
        conditions,
    )
    parent = await start(db, "trip-10")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s RETURNING id", str(parent))
    await runtime.run_execution(parent)  # starts the child, then waits for the signal
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    if child_first:
        await sql(db, "DELETE FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s RETURNING id", str(kid))
        await runtime.run_execution(UUID(str(kid)))
        assert (await db.executions.get(kid)).status == "Succeeded"
    await db.control.signal(parent, "go", payload={}, signal_id="s-10", correlation_key=None, principal="t", queue="q")
    await _drain(db, runtime)
    assert (await db.executions.get(parent)).status == "Failed"
    assert (await db.executions.get(kid)).status == "Succeeded"
    assert await steps(db, parent) == []
    assert await compensation(db, kid) is None


async def test_a_child_with_nothing_that_could_be_undone_is_no_step(db: Database, conditions: ConditionPool) -> None:
    """A full-suite run: a step for every child the parent's end cancels made every parent that
    failed while a child ran a compensated run (whose redrive is refused), though nothing could be
    undone. A child whose plan has no compensations and who has no children of its own is no step:
    the parent compensates nothing, and its letter redrives it."""
    from tests.integration.test_subworkflows import drain
    from tests.integration.test_waits import signal

    runtime = make_runtime(db, conditions)
    await publish(db, wf("bare-11", signal("s", name="never")), conditions)
    await publish(
        db,
        wf(
            "trip-11",
            echo("go", to("call"), to("boom")),
            sub("call", "bare-11"),
            echo("boom", simulateFailure="permanent", delayMs=300),
        ),
        conditions,
    )
    parent = await start(db, "trip-11")
    await drain(db, runtime)
    assert (await db.executions.get(parent)).status == "Failed"
    assert await steps(db, parent) == [] and await compensation(db, parent) is None
    (letter,) = await _open_letters(db, parent, "node_failed")
    assert (await db.operations.redrive(letter.id, principal="ops", queue="executions")).action == "requeued"


async def test_a_cancelled_childs_compensation_that_ends_while_its_parent_takes_its_step_wakes_the_parent(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: a child the parent's end cancels compensates itself as it ends, and that end queues
    its compensation's job and its parent's at once. The parent's claim read the child's compensation
    under way and made the step Waiting; the child's compensation ended before that claim committed,
    looked for a Waiting step, saw the step as it was (Pending), and neither recorded it nor queued
    the parent's job: the parent stayed Compensating, nothing queued, until recovery (a forEach's
    claim, which starts up to its concurrency of children at once, is the longer for it)."""
    import asyncio

    from tests.integration.test_subworkflows import drain
    from tests.integration.test_waits import signal

    runtime = make_runtime(db, conditions)
    await publish(db, wf("holds-12", undo(echo("hold", to("s")), "unhold"), signal("s", name="never")), conditions)
    await publish(db, wf("trip-12", undo(echo("book", to("call")), "unbook"), sub("call", "holds-12")), conditions)
    parent = await start(db, "trip-12")
    await drain(db, runtime)
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    await db.control.cancel(parent, principal="ops", reason="enough")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE task_name = 'dw.compensate' RETURNING id")
    await db.control.cancel_children(UUID(str(parent)))
    await _drain_runs(db, runtime)
    assert (await db.executions.get(kid)).status == "Cancelled"
    assert await compensation(db, kid) == "Compensating"
    parent_jobs = "SELECT id FROM procrastinate_jobs WHERE task_name = 'dw.compensate' AND args ->> 'run_id' = %s"
    await sql(
        db,
        "DELETE FROM procrastinate_jobs WHERE task_name = 'dw.compensate' AND args ->> 'run_id' = %s RETURNING id",
        str(parent),
    )
    async with db.connection() as conn:
        async with conn.transaction():
            # The parent's claim: the child's compensation is under way, its step waits (not committed).
            cur = await conn.execute("SELECT outcome FROM dw.claim_compensation_v1(%s, 'w1')", (parent,))
            assert await cur.fetchall() == [("waiting",)]
            # The child's compensation ends meanwhile (its end waits for the claim, or not at all).
            ending = asyncio.create_task(runner(db, runtime, worker="w2").run(UUID(str(kid))))
            await asyncio.sleep(0.5)
        assert await ending == "done"
    assert await compensation(db, kid) == "Compensated"
    # The step is recorded by the child's end, and the parent's job queued to go on.
    assert await steps(db, parent) == [("call", "Succeeded", str(kid)), ("book", "Pending", None)]
    assert len(await sql(db, parent_jobs, str(parent))) == 1
    await _drain(db, runtime)
    assert await compensation(db, parent) == "Compensated"


async def _drain_runs(db: Database, runtime: Any) -> None:
    """Runs the queued run jobs only (not compensations)."""
    for _ in range(50):
        rows = await sql(
            db,
            "DELETE FROM procrastinate_jobs WHERE id = (SELECT id FROM procrastinate_jobs WHERE status = 'todo'"
            " AND task_name NOT IN ('dw.compensate', 'dw.cancel_children') ORDER BY id LIMIT 1) RETURNING args",
        )
        if not rows:
            return
        await runtime.run_execution(UUID(rows[0][0]["execution_id"]))


async def test_a_cancelled_childs_failed_compensation_before_its_parent_reaches_its_step_files_one_letter(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: a child the parent's end cancels whose compensation failed before the parent's job
    reached its step (the step still Pending) filed a compensation_failed letter of its own, and the
    parent's step, failed for it, filed the parent's: two open letters for one failure, and the
    parent's acknowledgement left the child's open. The parent's letter is the one filed."""
    from tests.integration.test_subworkflows import drain
    from tests.integration.test_waits import signal

    runtime = make_runtime(db, conditions)
    raw = wf("holds-13", undo(echo("hold", to("s")), "unhold", simulateFailure="permanent"), signal("s", name="never"))
    raw["nodes"][0]["compensation"]["retryPolicy"] = {**FAST, "maxAttempts": 1}
    await publish(db, raw, conditions)
    await publish(db, wf("trip-13", undo(echo("book", to("call")), "unbook"), sub("call", "holds-13")), conditions)
    parent = await start(db, "trip-13")
    await drain(db, runtime)
    ((kid,),) = [[c["id"] for c in await children(db, parent)]]
    await db.control.cancel(parent, principal="ops", reason="enough")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE task_name = 'dw.compensate' RETURNING id")
    await db.control.cancel_children(UUID(str(parent)))
    await _drain_runs(db, runtime)
    # The child's compensation runs first, and fails, while the parent's step is Pending.
    assert await runner(db, runtime).run(UUID(str(kid))) == "done"
    assert await compensation(db, kid) == "CompensationFailed"
    assert await steps(db, parent) == [("call", "Pending", str(kid)), ("book", "Pending", None)]
    await _drain(db, runtime)
    assert await steps(db, parent) == [("call", "Failed", str(kid)), ("book", "Succeeded", None)]
    assert await compensation(db, parent) == "CompensationFailed"
    assert len(await _open_letters(db, parent, "compensation_failed")) == 1
    assert await _open_letters(db, UUID(str(kid)), "compensation_failed") == []


async def test_a_for_eachs_failed_undos_are_named_by_their_child_runs(db: Database, conditions: ConditionPool) -> None:
    """A review: a forEach's children are steps of one node, and the parent's compensation_failed
    letter named that node once per failed child, the child's id only deep in each one's error: an
    operator could not tell whose undo failed. The letter (payload, message) and the run's
    compensation_ended event name each failed child's run and what failed in it."""
    runtime = make_runtime(db, conditions)
    # Item a's release succeeds; b's and c's fail (their one attempt), and succeed when redriven.
    raw = wf(
        "hotel-11",
        undo(
            echo("book-hotel"),
            "release",
            simulateFailure="transient",
            failUntilAttempt="{{ 2 if trigger.value != 'a' else 1 }}",
        ),
    )
    raw["nodes"][0]["compensation"]["retryPolicy"] = {**FAST, "maxAttempts": 1}
    await publish(db, raw, conditions)
    await publish(
        db,
        wf(
            "tour-11",
            child_items("stays", ["a", "b", "c"], "hotel-11", to("pay"), concurrency=1),
            echo("pay", simulateFailure="permanent"),
        ),
        conditions,
    )
    parent = await start(db, "tour-11")
    await _drain(db, runtime)
    assert await compensation(db, parent) == "CompensationFailed"
    kid_of = {
        value: str(kid)
        for kid, value in await sql(
            db, "SELECT id, trigger ->> 'value' FROM dw.executions WHERE parent_execution_id = %s", parent
        )
    }
    failed = [kid for node, status, kid in await steps(db, parent) if status == "Failed"]
    assert sorted(failed) == sorted([kid_of["b"], kid_of["c"]])
    (letter,) = await _open_letters(db, parent, "compensation_failed")
    assert letter.payload["failedSteps"] == ["stays", "stays"]
    assert letter.payload["failedChildren"] == [
        {"nodeId": "stays", "childExecutionId": kid, "failedSteps": ["book-hotel"]} for kid in failed
    ]
    message = letter.error["message"]
    assert message.startswith(f"2 of 3 compensation steps failed: stays child run {failed[0]} (book-hotel (")
    assert f"; stays child run {failed[1]} (book-hotel (simulated_transient_failure" in message
    assert kid_of["a"] not in message
    ended = await sql(
        db, "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = 'compensation_ended'", parent
    )
    assert ended[0][0]["failedSteps"] == [
        {"nodeId": "stays", "childExecutionId": kid, "code": "child_compensation_failed"} for kid in failed
    ]
    await db.operations.redrive(letter.id, principal="ops", queue="executions")
    await _drain(db, runtime)
    assert await compensation(db, parent) == "Compensated"
    ended = await sql(
        db,
        "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = 'compensation_ended' ORDER BY id",
        parent,
    )
    assert "failedSteps" not in ended[-1][0]


async def test_a_childs_compensation_reads_why_it_is_undone(db: Database, conditions: ConditionPool) -> None:
    """A child's own `execution.status` is its end (a succeeded child's Succeeded), not its parent's:
    its compensation's templates read why it is undone in `compensation` (the cause: the end of the
    run whose compensation undoes it, up the tree; and its parent as it is). A root's cause is its
    own end, and it has no parent."""
    runtime = make_runtime(db, conditions)
    message = (
        "{{ execution.status }} child of {{ compensation.parent.workflowId }} ({{ compensation.parent.nodeId }},"
        " {{ compensation.parent.status }}), undone for {{ compensation.cause.workflowId }}'s"
        " {{ compensation.cause.status }} at {{ compensation.cause.error.nodeId }}"
    )
    await publish(db, wf("hotel-12", undo(echo("book-hotel"), message)), conditions)
    # The middle run has no compensation of its own: its child is undone through it.
    await publish(db, wf("stay-12", sub("book", "hotel-12")), conditions)
    root_message = "{{ compensation.cause.status }} {{ compensation.cause.executionId }} {{ compensation.parent }}"
    await publish(
        db,
        wf(
            "trip-12",
            undo(echo("flight", to("stay")), root_message),
            sub("stay", "stay-12", to("pay")),
            echo("pay", simulateFailure="permanent"),
        ),
        conditions,
    )
    root = await start(db, "trip-12")
    await _drain(db, runtime)
    assert await compensation(db, root) == "Compensated"
    ((middle,),) = [[c["id"] for c in await children(db, root)]]
    ((kid,),) = [[c["id"] for c in await children(db, middle)]]
    (hotel,) = await db.compensations.steps(UUID(str(kid)))
    assert hotel.outputs["echo"] == ("Succeeded child of stay-12 (book, Succeeded), undone for trip-12's Failed at pay")
    flight = next(s for s in await db.compensations.steps(root) if s.node_id == "flight")
    assert flight.outputs["echo"] == f"Failed {root} null"


async def test_a_failed_childs_part_of_its_parents_letter_stays_bounded(
    db: Database, conditions: ConditionPool
) -> None:
    """A failed child step's error was its child's failures cut to 2,000 characters
    (dw.end_child_step_v1); the parent's letter, which now reads them from the child's own steps
    (dw.child_compensation_failures_v1), took every one of them whole: a child with a forEach of
    1,000 failed undos made its parent's message megabytes. Its part stays within those 2,000."""
    await publish(db, wf("many-12", echo("a")), conditions)
    child = await start(db, "many-12")
    for position in range(1, 41):
        await sql(
            db,
            "INSERT INTO dw.compensations (tenant_id, execution_id, node_id, position, action_type, max_attempts,"
            " timeout_seconds, status, error) VALUES ('default', %s, %s, %s, 'core.echo', 1, 1, 'Failed', %s)",
            child,
            f"step-{position}",
            position,
            Jsonb({"code": "refund_refused", "message": "x" * 200}),
        )
    ((failures,),) = await sql(db, "SELECT dw.child_compensation_failures_v1(%s)", child)
    assert failures.startswith("step-1 (refund_refused: xxx") and len(failures) <= 2000, len(failures)

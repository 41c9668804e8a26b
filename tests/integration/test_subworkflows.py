"""Subworkflows: a child started in its parent node's checkpoint, the parent waiting holding nothing,
the child's end resolving the parent's wait, the depth limit and the cancel cascade. Workers are
played by `drain`, which runs queued jobs in-process the way the worker's tasks do."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import pytest

from dataworkflows.actions import default_registry
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database, make_pool
from dataworkflows.errors import Conflict, DefinitionError
from dataworkflows.runtime import Runtime
from tests.conftest import ROOT, load_fixture, publish, start
from tests.integration.test_runtime import attempts, echo, events, make_runtime, nodes, to, wf
from tests.integration.test_waits import kind_node, signal, sql


def sub(node_id: str, workflow_id: str, *edges: dict[str, Any], **params: Any) -> dict[str, Any]:
    return kind_node("subworkflow", node_id, edges, {"workflowId": workflow_id, **params})


async def drain(db: Database, runtime: Runtime, *, limit: int = 100) -> list[tuple[str, str]]:
    """Runs queued jobs one by one, as workers would, until none is left; returns (execution,
    outcome) for each run job. Compensation jobs are left queued (a test runs them with its own
    CompensationRunner)."""
    ran: list[tuple[str, str]] = []
    for _ in range(limit):
        rows = await sql(
            db,
            "DELETE FROM procrastinate_jobs WHERE id = (SELECT id FROM procrastinate_jobs WHERE status = 'todo'"
            " AND task_name <> 'dw.compensate' AND (scheduled_at IS NULL OR scheduled_at <= now())"
            " ORDER BY id LIMIT 1) RETURNING task_name, args",
        )
        if not rows:
            return ran
        task, args = rows[0]
        if task == "dw.cancel_children":
            await db.control.cancel_children(UUID(args["parent_execution_id"]))
            continue
        ran.append((args["execution_id"], await runtime.run_execution(UUID(args["execution_id"]))))
    raise AssertionError(f"jobs still queued after {limit}: {ran[-5:]}")


async def execution(db: Database, execution_id: UUID | str) -> dict[str, Any]:
    row = await db.fetch_one("get_execution", id=execution_id)
    assert row is not None
    return row


async def children(db: Database, execution_id: UUID) -> list[dict[str, Any]]:
    return await db.fetch_all("list_children", id=execution_id, after_created=None, after_id=None, limit=None)


async def test_outputs_flow_back_from_a_grandchild(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    grandchild = wf("gc", echo("g", message="{{ trigger.x * 2 }}"))
    grandchild["outputs"] = {"doubled": "{{ nodes.g.echo }}"}
    child = wf("ch", sub("call", "gc", input={"x": "{{ trigger.x }}"}))
    child["outputs"] = {"fromGrandchild": "{{ nodes.call.doubled }}"}
    parent = wf(
        "pa",
        sub("call", "ch", to("after"), input={"x": "{{ trigger.n }}"}),
        echo("after", message="{{ nodes.call.fromGrandchild }}"),
    )
    parent["outputs"] = {"result": "{{ nodes.after.echo }}"}
    for raw in (grandchild, child, parent):
        await publish(db, raw, conditions)
    root = await start(db, "pa", {"n": 21})
    outcomes = await drain(db, runtime)
    # The parent and the child each park while their child runs, and resume once it ended.
    assert [o for _, o in outcomes].count("parked") == 2
    top = await execution(db, root)
    assert top["status"] == "Succeeded" and top["outputs"] == {"result": 42}
    (kid,) = await children(db, root)
    (grandkid,) = await children(db, kid["id"])
    mid, low = await execution(db, kid["id"]), await execution(db, grandkid["id"])
    assert (mid["depth"], mid["root_execution_id"], mid["parent_node_id"]) == (1, root, "call")
    assert (low["depth"], low["root_execution_id"], low["parent_execution_id"]) == (2, root, kid["id"])
    assert low["trigger"] == {"x": 21} and mid["outputs"] == {"fromGrandchild": 42}
    assert (await nodes(db, root))["call"]["outputs"] == {"fromGrandchild": 42}
    tree = await db.fetch_all("execution_tree", id=grandkid["id"], after=None, limit=None)
    assert [(t["id"], t["depth"]) for t in tree] == [(root, 0), (kid["id"], 1), (grandkid["id"], 2)]
    assert "child_started" in await events(db, root) and "child_ended" in await events(db, root)


async def test_the_depth_limit_stops_a_workflow_that_calls_itself(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions, max_nesting_depth=2)
    await publish(db, wf("again", sub("call", "again")), conditions)
    root = await start(db, "again")
    await drain(db, runtime)
    chain = await db.fetch_all("execution_tree", id=root, after=None, limit=None)
    assert [t["depth"] for t in chain] == [0, 1, 2]
    deepest = await execution(db, chain[-1]["id"])
    assert deepest["status"] == "Failed"
    assert deepest["error"]["cause"]["code"] == "nesting_too_deep"
    assert (await nodes(db, chain[-1]["id"]))["call"]["error"]["code"] == "nesting_too_deep"
    # Each parent fails with its child's failure as the cause.
    top = await execution(db, root)
    assert top["status"] == "Failed" and top["error"]["cause"]["code"] == "child_failed"
    cause = top["error"]["cause"]["details"]["cause"]
    assert cause["cause"]["code"] == "child_failed"


async def test_the_tree_limit_stops_a_workflow_that_starts_itself_twice(dsn: str, conditions: ConditionPool) -> None:
    """Depth alone let a workflow that starts itself twice, detached, make 2^9 - 1 runs from one
    request. With DW_MAX_RUNS_PER_TREE (the worker's pool sets it for its sessions) a child past the
    limit is not started, and its node fails with tree_too_large."""
    pool = make_pool(dsn, min_size=1, max_size=4, name="tree-limit", max_runs_per_tree=5)
    await pool.open(wait=True)
    try:
        db = Database(pool)
        runtime = make_runtime(db, conditions)
        detached = {"waitForCompletion": False}
        bomb = wf("bomb", echo("s", to("c1"), to("c2")), sub("c1", "bomb", **detached), sub("c2", "bomb", **detached))
        await publish(db, bomb, conditions)
        root = await start(db, "bomb")
        await drain(db, runtime)
        tree = await sql(db, "SELECT id FROM dw.executions WHERE root_execution_id = %s", root)
        assert len(tree) == 5
        refused = await sql(
            db,
            "SELECT n.error FROM dw.node_states n JOIN dw.executions e ON e.id = n.execution_id"
            " WHERE e.root_execution_id = %s AND n.error ->> 'code' = 'tree_too_large'",
            root,
        )
        assert refused, "a node past the limit fails with tree_too_large"
        assert "hold more than 5 runs (DW_MAX_RUNS_PER_TREE)" in refused[0][0]["message"]
    finally:
        await pool.close()


def test_the_default_tree_limit_holds_the_largest_foreach_of_subworkflows_with_retries() -> None:
    """A review: at 10,000, which counts the root, a forEach of 10,000 subworkflow items (maxItems'
    most) never finished: its last item's child was refused (tree_too_large), and so was any retried
    item's new child. The default is twice the largest forEach, in the settings and in the procedure
    (for a session that does not set it)."""
    import re

    from dataworkflows.config import Settings
    from dataworkflows.foreach import HARD_MAX_ITEMS

    default = Settings().max_runs_per_tree
    assert default == 2 * HARD_MAX_ITEMS
    procedure = (ROOT / "sql" / "procedures" / "composition.sql").read_text("utf-8")
    unset = re.search(r"current_setting\('dw\.max_runs_per_tree', true\), ''\)::integer, (\d+)\)", procedure)
    assert unset is not None and int(unset.group(1)) == default


async def test_a_child_failure_is_routed_by_the_parent_failure_edge(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    parent = wf("routes", sub("call", "breaks", to("ok"), to("handled", "failure")), echo("ok"), echo("handled"))
    await publish(db, parent, conditions)
    root = await start(db, "routes")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    states = await nodes(db, root)
    assert (states["call"]["status"], states["ok"]["status"], states["handled"]["status"]) == (
        "Failed",
        "Skipped",
        "Succeeded",
    )
    error = states["call"]["error"]
    assert error["code"] == "child_failed" and error["details"]["cause"]["code"] == "node_failed"


async def test_cancelling_a_parent_cancels_its_children(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("waits-long", signal("s", name="never")), conditions)
    await publish(db, wf("awaits", sub("call", "waits-long")), conditions)
    await publish(
        db, wf("detaches", sub("spawn", "waits-long", waitForCompletion=False), signal("s", name="never")), conditions
    )
    root = await start(db, "awaits")
    detached_root = await start(db, "detaches")
    await drain(db, runtime)
    (kid,) = await children(db, root)
    (detached,) = await children(db, detached_root)
    assert kid["status"] == "Waiting" and detached["status"] == "Waiting"
    spawn = (await nodes(db, detached_root))["spawn"]
    assert spawn["status"] == "Succeeded" and spawn["outputs"]["executionId"] == str(detached["id"])

    outcome = await db.control.cancel(root, principal="ops", reason="enough")
    assert outcome.outcome == "cancelled"
    await drain(db, runtime)
    assert (await execution(db, kid["id"]))["status"] == "Cancelled"
    # Who cancelled the parent, and why, cancels the child (it said only that its parent "ended").
    cancelled_kid = await execution(db, kid["id"])
    assert cancelled_kid["error"]["message"] == f"cancelled by ops: its parent execution {root} was cancelled: enough"
    assert cancelled_kid["cancel_requested_by"] == "ops", cancelled_kid
    # A parent cancelled cancels every child, a detached one too.
    await db.control.cancel(detached_root, principal="ops", reason="enough")
    await drain(db, runtime)
    assert (await execution(db, detached["id"]))["status"] == "Cancelled"


@pytest.mark.parametrize("worker", ["gone", "silent"])
async def test_a_cancel_cascade_whose_worker_died_is_taken_up_again(
    db: Database, conditions: ConditionPool, worker: str
) -> None:
    """The parent's end queues a dw.cancel_children job. A worker killed while it held that job left
    it 'doing' for good (Procrastinate does not retry a stalled job by itself, and recovery looked
    only at run jobs): the cancelled parent's children ran on. Recovery now queues such a job again
    once its worker is gone or silent."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("waits-long", signal("s", name="never")), conditions)
    await publish(db, wf("awaits", sub("call", "waits-long")), conditions)
    root = await start(db, "awaits")
    await drain(db, runtime)
    (kid,) = await children(db, root)
    assert (await db.control.cancel(root, principal="ops", reason="enough")).outcome == "cancelled"
    # A worker fetched the cascade's job, then died (its row pruned, or its heartbeat stopped).
    if worker == "gone":
        holder = None
    else:
        ((holder,),) = await sql(
            db, "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id"
        )
    taken = await sql(
        db,
        "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s"
        " WHERE task_name = 'dw.cancel_children' AND status = 'todo' RETURNING id",
        holder,
    )
    assert len(taken) == 1
    assert await drain(db, runtime) == [] and (await execution(db, kid["id"]))["status"] == "Waiting"

    recovered = await db.operations.recover(max_recoveries=5, stalled_worker_seconds=30, queue="executions")
    assert [(r.execution_id, r.action) for r in recovered] == [(root, "cascade_requeued")]
    await drain(db, runtime)
    assert (await execution(db, kid["id"]))["status"] == "Cancelled"
    assert await db.operations.recover(max_recoveries=5, stalled_worker_seconds=30, queue="executions") == []


async def test_a_child_its_cancelled_parent_no_longer_wants_is_cancelled_when_taken_not_run(
    db: Database, conditions: ConditionPool
) -> None:
    """The cascade's job waits with a dead worker (recovery queues it again once that worker is
    silent for DW_STALLED_WORKER_SECONDS) while the child is taken first: a signal (here), or its
    own lease running out. The child ran on and its HTTP call was sent again (crash review). The
    acquire now cancels it as the cascade would, and nothing more of it runs."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("waits-go", signal("s", to("after"), name="go"), echo("after")), conditions)
    await publish(db, wf("awaits-go", sub("call", "waits-go")), conditions)
    root = await start(db, "awaits-go")
    await drain(db, runtime)
    (kid,) = await children(db, root)
    assert kid["status"] == "Waiting"
    assert (await db.control.cancel(root, principal="ops", reason="enough")).outcome == "cancelled"
    taken = await sql(
        db,
        "UPDATE procrastinate_jobs SET status = 'doing', worker_id = NULL"
        " WHERE task_name = 'dw.cancel_children' AND status = 'todo' RETURNING id",
    )
    assert len(taken) == 1, "the cascade's job, held by a worker that died"
    delivered = await db.control.signal(
        kid["id"], "go", payload={}, signal_id=None, correlation_key=None, principal="ops", queue="executions"
    )
    assert delivered.outcome == "consumed", delivered
    assert await drain(db, runtime) == [(str(kid["id"]), "finished")]
    child = await execution(db, kid["id"])
    assert child["status"] == "Cancelled" and "its parent execution" in child["error"]["message"], child
    # The signal's node is recorded Cancelled (it never went on), and after never started.
    assert [(r["node_id"], r["status"]) for r in await attempts(db, kid["id"])] == [("s", "Cancelled")]
    log = await events(db, kid["id"])
    assert log.count("node_started") == 1 and log[-1] == "execution_cancelled", log
    assert log.index("signal_consumed") < log.index("cancel_requested"), log


async def test_a_cancelled_child_fails_its_parent_node(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("waits-a-bit", signal("s", name="never")), conditions)
    await publish(db, wf("calls", sub("call", "waits-a-bit")), conditions)
    root = await start(db, "calls")
    await drain(db, runtime)
    (kid,) = await children(db, root)
    await db.control.cancel(kid["id"], principal="ops", reason="not needed")
    await drain(db, runtime)
    top = await execution(db, root)
    assert top["status"] == "Failed"
    assert (await nodes(db, root))["call"]["error"]["code"] == "child_cancelled"


async def test_a_detached_child_outlives_a_parent_that_succeeded(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("lingers", signal("s", name="never")), conditions)
    await publish(db, wf("fire-and-forget", sub("spawn", "lingers", waitForCompletion=False)), conditions)
    root = await start(db, "fire-and-forget")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    (kid,) = await children(db, root)
    assert (await execution(db, kid["id"]))["status"] == "Waiting"


async def test_the_child_starts_once_per_attempt(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("leaf", echo("x")), conditions)
    await publish(db, wf("once", sub("call", "leaf")), conditions)
    root = await start(db, "once")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))
    acquired = await db.runs.acquire(root, owner="w1", lease_seconds=5)
    assert acquired.lease_token is not None
    attempt = await db.runs.start_node_attempt(root, acquired.lease_token, "call")
    from dataworkflows.subworkflows import ChildSpec

    spec = ChildSpec("leaf", None, {}, True)
    first, _ = await db.runs.begin_child(
        root, acquired.lease_token, node_id="call", attempt=attempt, parameters={}, spec=spec, max_depth=8
    )
    again, _ = await db.runs.begin_child(
        root, acquired.lease_token, node_id="call", attempt=attempt, parameters={}, spec=spec, max_depth=8
    )
    assert first is not None and again is not None and first.id == again.id
    assert len(await children(db, root)) == 1
    # The worker dies here: the next holder finds the node waiting on that child, and starts no other.
    await sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", root)
    assert await runtime.run_execution(root) == "parked"
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    assert len(await children(db, root)) == 1
    assert [a["status"] for a in await attempts(db, root)] == ["Succeeded"]


async def test_an_unknown_child_workflow_is_refused_at_publish(db: Database, conditions: ConditionPool) -> None:
    with pytest.raises(DefinitionError) as refused:
        await publish(db, wf("orphan", sub("call", "no-such-workflow")), conditions)
    assert [(p.pointer, p.code) for p in refused.value.problems] == [
        ("/nodes/0/parameters/workflowId", "unknown_workflow")
    ]


async def test_a_pinned_version_that_was_never_published_is_refused_at_publish(
    db: Database, conditions: ConditionPool
) -> None:
    """It was accepted, and every run failed at run time (child_not_runnable: 'has no compiled
    plan', or child_workflow_not_found)."""
    from dataworkflows.publishing import prepare_definition

    await publish(db, wf("pinned-child", echo("x")), conditions)
    draft = await prepare_definition(wf("pinned-child", echo("y")), default_registry(), conditions)
    version, created = await db.workflows.save_definition(draft, "ops")
    assert (version, created) == (2, True)  # saved, never published
    for pinned in (2, 99):
        with pytest.raises(DefinitionError) as refused:
            await publish(db, wf("pins", sub("call", "pinned-child", version=pinned)), conditions)
        assert [(p.pointer, p.code) for p in refused.value.problems] == [
            ("/nodes/0/parameters/version", "unknown_version")
        ]
        assert f"no published version {pinned}" in refused.value.problems[0].message
    looped = kind_node(
        "forEach", "each", [], {"items": [1], "subworkflow": {"workflowId": "pinned-child", "version": 2}}
    )
    with pytest.raises(DefinitionError) as refused:
        await publish(db, wf("pins-each", looped), conditions)
    assert [(p.pointer, p.code) for p in refused.value.problems] == [
        ("/nodes/0/parameters/subworkflow/version", "unknown_version")
    ]
    await publish(db, wf("pins", sub("call", "pinned-child", version=1)), conditions)


async def test_a_child_that_cannot_start_fails_the_node(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("versioned", echo("x")), conditions)
    # A templated version is resolved per run (a literal one that was never published is refused).
    await publish(db, wf("asks-v9", sub("call", "versioned", version="{{ trigger.v }}")), conditions)
    root = await start(db, "asks-v9", {"v": 9})
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    error = (await nodes(db, root))["call"]["error"]
    assert error["code"] == "child_workflow_not_found" and "no version 9" in error["message"]
    assert await children(db, root) == []


async def test_a_disabled_child_fails_the_node_that_calls_it(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("switched-off", echo("x")), conditions)
    await publish(db, wf("calls-switched-off", sub("call", "switched-off")), conditions)
    assert await db.workflows.set_enabled("switched-off", False, "ops") is True
    root = await start(db, "calls-switched-off", {})
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    error = (await nodes(db, root))["call"]["error"]
    assert error["code"] == "child_not_runnable" and "is disabled" in error["message"], error
    assert await children(db, root) == []


async def test_a_version_past_what_postgresql_holds_is_refused_at_publish_and_fails_the_node_at_run_time(
    db: Database, conditions: ConditionPool
) -> None:
    """It passed publish, and at run time no procedure took the bigint (or numeric) psycopg sent: an
    engine_error quoting PostgreSQL's text, for a subworkflow node and a forEach's children alike."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("versioned-big", echo("x")), conditions)
    for version in (2**31, 2**63):
        with pytest.raises(DefinitionError) as refused:
            await publish(db, wf("asks-huge", sub("call", "versioned-big", version=version)), conditions)
        assert [(p.pointer, p.code) for p in refused.value.problems] == [("/nodes/0/parameters/version", "range")]
        looped = kind_node(
            "forEach", "each", [], {"items": [1], "subworkflow": {"workflowId": "versioned-big", "version": version}}
        )
        with pytest.raises(DefinitionError) as refused:
            await publish(db, wf("each-huge", looped), conditions)
        assert [(p.pointer, p.code) for p in refused.value.problems] == [
            ("/nodes/0/parameters/subworkflow/version", "range")
        ]
    # A template that renders one: the node fails with what is wrong, as for any bad parameter.
    await publish(db, wf("asks-templated", sub("call", "versioned-big", version="{{ trigger.v }}")), conditions)
    root = await start(db, "asks-templated", {"v": 3_000_000_000})
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    error = (await nodes(db, root))["call"]["error"]
    assert error["code"] == "invalid_parameters" and "1 to 2147483647" in error["message"], error
    assert await children(db, root) == []


async def test_parameters_too_deep_to_record_start_no_child(db: Database, conditions: ConditionPool) -> None:
    """Checked only when the attempt was recorded, after the child had run: the node failed
    unrecordable_result with the child's work done, and each redrive ran another child."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("deep-leaf", echo("x")), conditions)
    deep: Any = 1
    for _ in range(100):
        deep = {"a": deep}
    await publish(db, wf("asks-deep", sub("call", "deep-leaf", input={"x": "{{ trigger.deep }}"})), conditions)
    root = await start(db, "asks-deep", {"deep": deep})
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    error = (await nodes(db, root))["call"]["error"]
    assert error["code"] == "unrecordable_result" and "nested deeper than 100" in error["message"], error
    assert await children(db, root) == []


async def test_the_composition_examples_in_fixtures_run(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    for name in ("ship-order", "process-order", "notify-customers", "ship-orders"):
        await publish(db, load_fixture(f"bundle7/{name}-workflow.json"), conditions)
    order = await start(db, "process-order", {"orderId": "A-7", "lines": [{"sku": "x"}, {"sku": "y"}]})
    customers = [{"name": n} for n in ("ann", "bo", "cy")]
    notify = await start(db, "notify-customers", {"customers": customers})
    await drain(db, runtime)
    shipped = await execution(db, order)
    assert shipped["status"] == "Succeeded" and shipped["outputs"] == {"trackingId": "TRK-A-7"}
    assert (await nodes(db, order))["confirm"]["outputs"]["echo"] == "order A-7 shipped as TRK-A-7"
    assert (await nodes(db, notify))["report"]["outputs"]["echo"] == "3 of 3 customers notified"
    # A child that fails takes the failure edge, and the run ends Succeeded without a tracking id
    # (its outputs read the child's, and failed the run outputs_error).
    unshippable = await start(db, "process-order", {"orderId": "Z", "lines": 5})
    await drain(db, runtime)
    apologised = await execution(db, unshippable)
    assert apologised["status"] == "Succeeded" and apologised["outputs"] == {"trackingId": None}, apologised
    assert (await nodes(db, unshippable))["apologise"]["status"] == "Succeeded"
    orders = [{"id": f"B-{i}", "lines": [{"sku": "z"}]} for i in range(4)]
    bulk = await start(db, "ship-orders", {"orders": orders})
    await drain(db, runtime)
    summary = (await nodes(db, bulk))["summary"]["outputs"]["echo"]
    assert summary == "4 orders shipped: TRK-B-0, TRK-B-1, TRK-B-2, TRK-B-3"


async def test_a_request_id_squatted_through_the_api_is_not_taken_for_the_child(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("leaf2", echo("x")), conditions)
    await publish(db, wf("squatted", sub("call", "leaf2")), conditions)
    root = await start(db, "squatted")
    impostor = await start(db, "leaf2", request_id=f"child:{root}:call:1")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    error = (await nodes(db, root))["call"]["error"]
    assert error["code"] == "child_request_conflict" and str(impostor) in error["message"]


async def open_letter(db: Database, execution_id: UUID) -> int:
    letters = await db.operations.dead_letters(open_only=True, kind=None, before=None, limit=50)
    (letter,) = [d for d in letters if d.execution_id == execution_id]
    return int(letter.id)


async def test_a_child_whose_end_its_parent_took_is_not_redriven_but_the_parent_is(
    db: Database, conditions: ConditionPool
) -> None:
    """Redriving a failed child its parent waited for would leave the parent as it is (its node
    failed with child_failed, the run Failed or routed on), a Succeeded child under it: refused,
    naming the parent's letter. The parent's redrive runs its node again, which starts a new child."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("waits-on", sub("call", "breaks")), conditions)
    root = await start(db, "waits-on")
    await drain(db, runtime)
    (kid,) = await children(db, root)
    assert ((await execution(db, root))["status"], kid["status"]) == ("Failed", "Failed")
    parent_letter = await open_letter(db, root)
    with pytest.raises(Conflict) as refused:
        await db.operations.redrive(await open_letter(db, kid["id"]), principal="ops", queue="executions")
    said = str(refused.value)
    assert str(root) in said and f"dead letter {parent_letter}" in said and "child_failed" in said, said
    assert (await execution(db, kid["id"]))["status"] == "Failed"
    # The parent's redrive: its node starts a child of its own, which the fixed workflow lets succeed.
    await publish(db, wf("breaks", echo("boom", message="fixed")), conditions)
    child_letter = await open_letter(db, kid["id"])
    await db.operations.redrive(parent_letter, principal="ops", queue="executions")
    # Asked meanwhile (the node's error is cleared): no "(the node failed with )".
    ((said,),) = await sql(db, "SELECT dw.child_redrive_refusal_v1(e) FROM dw.executions e WHERE e.id = %s", kid["id"])
    assert "failed with" not in said and "has taken its end:" in said, said
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    assert sorted(k["status"] for k in await children(db, root)) == ["Failed", "Succeeded"]
    # The old child's letter, which no redrive could take, is closed by the parent's (it stayed
    # open, and retention kept the tree until someone acknowledged it).
    letters = await db.operations.dead_letters(open_only=False, kind=None, before=None, limit=50)
    (closed,) = [d for d in letters if d.id == child_letter]
    assert (closed.close_reason, closed.closed_by, closed.redriven_at) == ("superseded", "ops", None)
    assert closed.close_note == f"execution {root} was redriven (dead letter {parent_letter})"
    assert not [
        d
        for d in await db.operations.dead_letters(open_only=True, kind=None, before=None, limit=50)
        if d.execution_id in (root, kid["id"])
    ]


async def publish_handling_tree(db: Database, conditions: ConditionPool) -> None:
    """`handles`: a child that fails (handled by an always edge), a forEach of two failing item
    children (continue), a child whose own child fails, and a detached failing child; and the
    `breaks` and `middle` workflows they start."""
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("middle", sub("call", "breaks")), conditions)
    parent = wf(
        "handles",
        sub("call", "breaks", to("items", "always")),
        kind_node(
            "forEach",
            "items",
            (to("deep"),),
            {"items": [1, 2], "onItemFailure": "continue", "subworkflow": {"workflowId": "breaks"}},
        ),
        sub("deep", "middle", to("loose", "always")),
        sub("loose", "breaks", waitForCompletion=False),
    )
    await publish(db, parent, conditions)


async def test_the_letters_of_children_whose_failure_the_parent_handled_close_with_its_end(
    db: Database, conditions: ConditionPool
) -> None:
    """A child's failure that its parent handled (a failure edge; a forEach that goes on,
    onItemFailure continue) files the child's letter, which no redrive may take (its parent took the
    end) and no parent's letter supersedes (the parent went on): it stayed open for good, listed as
    needing a human, and retention kept the whole tree until someone acknowledged each one. The
    parent's end closes them, a grandchild's under a handled child too; a detached child's stays
    open (it is redriven on its own)."""
    runtime = make_runtime(db, conditions)
    await publish_handling_tree(db, conditions)
    root = await start(db, "handles")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    tree = await sql(db, "SELECT id, workflow_id, parent_node_id FROM dw.executions WHERE root_execution_id = %s", root)
    assert len(tree) == 7, tree
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    by_node: dict[tuple[str, str], list[Any]] = {(n, w): [] for _, w, n in tree}
    for execution_id, workflow_id, node in tree:
        by_node[(node, workflow_id)] += [d for d in letters if d.execution_id == execution_id]
    still_open = [(node, d.kind) for (node, _), ds in by_node.items() for d in ds if d.closed_at is None]
    # The detached child is redriven on its own: its letter stays open.
    assert still_open == [("loose", "node_failed")], still_open
    closed = [d for ds in by_node.values() for d in ds if d.closed_at is not None]
    assert len(closed) == 5 and {d.close_reason for d in closed} == {"superseded"}, closed
    assert all("handled its failure" in (d.close_note or "") for d in closed), [d.close_note for d in closed]


async def test_acknowledging_a_parents_letter_closes_those_of_the_children_whose_end_it_took(
    db: Database, conditions: ConditionPool
) -> None:
    """A child's letter whose end its parent took is refused every redrive, naming the parent's
    letter. Acknowledged instead of redriven, the parent's letter left the child's open for good
    (and retention kept the tree): the acknowledgement closes them, as a redrive does."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("waits-on", sub("call", "breaks")), conditions)
    root = await start(db, "waits-on")
    await drain(db, runtime)
    (kid,) = await children(db, root)
    child_letter = await open_letter(db, kid["id"])
    await db.operations.acknowledge(await open_letter(db, root), principal="ops", note="not needed")
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    (closed,) = [d for d in letters if d.id == child_letter]
    assert (closed.close_reason, closed.closed_by) == ("superseded", "ops"), closed
    assert closed.close_note is not None and "acknowledged" in closed.close_note, closed.close_note


async def test_a_detached_child_is_redriven_on_its_own(db: Database, conditions: ConditionPool) -> None:
    """Nobody waits for a detached child (waitForCompletion false): its letter redrives it (the
    version it pinned runs again: its node fails again, a second time)."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("fires", sub("call", "breaks", waitForCompletion=False)), conditions)
    root = await start(db, "fires")
    await drain(db, runtime)
    (kid,) = await children(db, root)
    assert ((await execution(db, root))["status"], kid["status"]) == ("Succeeded", "Failed")
    redrive = await db.operations.redrive(await open_letter(db, kid["id"]), principal="ops", queue="executions")
    assert redrive.action == "requeued"
    await drain(db, runtime)
    assert [a["status"] for a in await attempts(db, kid["id"])] == ["Failed", "Failed"]
    assert "execution_redriven" in await events(db, kid["id"])


async def test_a_detached_childs_letter_is_not_redriven_once_its_parent_was_cancelled(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: the redrive answered requeued and spent the letter, then the first worker to take the
    child cancelled it (a cancelled parent's children are cancelled) and its node never ran again.
    Now it is refused (409) and the letter stays open, to acknowledge."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    detached = sub("call", "breaks", {"targetNode": "hold"}, waitForCompletion=False)
    await publish(db, wf("fires", detached, signal("hold", name="go")), conditions)
    root = await start(db, "fires")
    await drain(db, runtime)
    (kid,) = await children(db, root)
    assert ((await execution(db, root))["status"], kid["status"]) == ("Waiting", "Failed")
    assert (await db.control.cancel(root, principal="ops", reason="enough")).outcome == "cancelled"
    await drain(db, runtime)
    letter = await open_letter(db, kid["id"])
    with pytest.raises(Conflict, match=f"a child of execution {root}, which was cancelled"):
        await db.operations.redrive(letter, principal="ops", queue="executions")
    assert await open_letter(db, kid["id"]) == letter, "the letter stays open"
    assert (await execution(db, kid["id"]))["status"] == "Failed"


async def test_a_parent_redriven_before_its_children_were_cancelled_leaves_no_orphan(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("slowpoke", signal("s", name="go")), conditions)
    parent = wf(
        "races",
        echo("go", to("call"), to("boom")),
        sub("call", "slowpoke"),
        # After call has started its child.
        echo("boom", simulateFailure="permanent", delayMs=300),
    )
    await publish(db, parent, conditions)
    root = await start(db, "races")
    await drain(db, runtime)
    (first,) = await children(db, root)
    assert (await execution(db, root))["status"] == "Failed"  # boom failed while the child ran
    # Redriven before the cancel job ran: the child that the run stopped waiting for is cancelled
    # all the same, and the redriven node starts one child of its own.
    letters = await db.operations.dead_letters(open_only=True, kind=None, before=None, limit=10)
    (letter,) = [d for d in letters if d.execution_id == root]
    await db.operations.redrive(letter.id, principal="ops", queue="executions")
    await drain(db, runtime)
    assert (await execution(db, first["id"]))["status"] == "Cancelled"


async def test_a_workflow_that_calls_itself_under_a_concurrency_limit_of_1_finishes(
    db: Database, conditions: ConditionPool
) -> None:
    runtime = make_runtime(db, conditions, max_nesting_depth=2)
    await publish(db, wf("narrow", sub("call", "narrow", to("done", "always")), echo("done")), conditions)
    await sql(db, "UPDATE dw.workflows SET max_concurrent_executions = 1 WHERE id = 'narrow'")
    root = await start(db, "narrow")
    await drain(db, runtime)
    tree = await db.fetch_all("execution_tree", id=root, after=None, limit=None)
    assert [t["status"] for t in tree] == ["Succeeded", "Succeeded", "Succeeded"]


async def child_failed_under_a_suspended_parent(
    db: Database, runtime: Runtime, workflow_id: str
) -> tuple[UUID, dict[str, Any], str]:
    """A run of the workflow, whose one child fails while the run is Suspended: (the run, its child,
    why the child's redrive is refused)."""
    root = await start(db, workflow_id)
    await runtime.run_execution(root)
    (kid,) = await children(db, root)
    assert (await db.control.suspend(root, principal="ops", reason=None)).status == "Suspended"
    await runtime.run_execution(kid["id"])
    assert (await execution(db, kid["id"]))["status"] == "Failed"
    with pytest.raises(Conflict) as refused:
        await db.operations.redrive(await open_letter(db, kid["id"]), principal="ops", queue="executions")
    return root, kid, str(refused.value)


async def test_a_child_whose_end_its_suspended_parent_has_not_acted_on_says_so(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: a child that failed while its parent was Suspended was refused with "the parent has
    no open dead letter ...: start a new run instead", though the parent, once resumed, fails its node
    and files the letter to redrive. The refusal says that instead."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks-later", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("waits-suspended", sub("call", "breaks-later")), conditions)
    root, kid, said = await child_failed_under_a_suspended_parent(db, runtime, "waits-suspended")
    assert "The parent (Suspended) has not acted on it yet, and will once it is resumed" in said, said
    assert "start a new run" not in said, said
    await db.control.resume(root, principal="ops", queue="executions")
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    with pytest.raises(Conflict) as refused:
        await db.operations.redrive(await open_letter(db, kid["id"]), principal="ops", queue="executions")
    assert f"dead letter {await open_letter(db, root)}" in str(refused.value)


async def test_a_failed_item_child_under_on_item_failure_continue_promises_no_letter(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: under onItemFailure continue the forEach node succeeds without a failed item, so the
    refusal must not promise a dead letter of the parent's to redrive."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("item-breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(
        db,
        wf(
            "goes-on",
            kind_node(
                "forEach",
                "all",
                (),
                {"items": [1], "onItemFailure": "continue", "subworkflow": {"workflowId": "item-breaks"}},
            ),
        ),
        conditions,
    )
    _, _, said = await child_failed_under_a_suspended_parent(db, runtime, "goes-on")
    assert "onItemFailure continue" in said and "files a dead letter" not in said, said


async def test_a_detached_item_child_is_redriven_on_its_own(db: Database, conditions: ConditionPool) -> None:
    """A forEach item's detached child (waitForCompletion false) is nobody's to take either: its item
    succeeded when the child started, and its letter redrives it."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks-alone", echo("boom", simulateFailure="permanent")), conditions)
    await publish(
        db,
        wf(
            "scatters",
            kind_node(
                "forEach",
                "all",
                (),
                {"items": [1], "subworkflow": {"workflowId": "breaks-alone", "waitForCompletion": False}},
            ),
        ),
        conditions,
    )
    root = await start(db, "scatters")
    await drain(db, runtime)
    (kid,) = await children(db, root)
    assert ((await execution(db, root))["status"], kid["status"]) == ("Succeeded", "Failed")
    ((said,),) = await sql(db, "SELECT dw.child_redrive_refusal_v1(e) FROM dw.executions e WHERE e.id = %s", kid["id"])
    assert said is None
    # An item written before migration 0050 is found detached by its attempt row (the migration's
    # backfill, run again on the item made to look as it did).
    backfill = (ROOT / "sql" / "migrations" / "0050_detached_item_children.sql").read_text()
    (update,) = [s for s in backfill.split(";") if "UPDATE dw.foreach_items" in s]
    await sql(db, "UPDATE dw.foreach_items SET detached = false WHERE child_execution_id = %s", kid["id"])
    await sql(db, update)
    assert await sql(db, "SELECT detached FROM dw.foreach_items WHERE child_execution_id = %s", kid["id"]) == [(True,)]
    redrive = await db.operations.redrive(await open_letter(db, kid["id"]), principal="ops", queue="executions")
    assert redrive.action == "requeued"
    await drain(db, runtime)
    assert [a["status"] for a in await attempts(db, kid["id"])] == ["Failed", "Failed"]


async def test_a_cancelled_parent_closes_the_letters_of_the_children_whose_end_it_took(
    db: Database, conditions: ConditionPool
) -> None:
    """A child that failed while its parent was suspended, the parent then cancelled: the child's
    letter is refused every redrive (its parent stopped waiting for it) and a cancelled run files no
    letter and is never redriven, so nothing superseded it: it stayed open for good, as a handled
    child's did. The parent's end closes it."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("waits-on", sub("call", "breaks")), conditions)
    root = await start(db, "waits-on")
    await sql(db, "DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(root) == "parked"
    (kid,) = await children(db, root)
    assert (await db.control.suspend(root, principal="ops", reason=None)).status == "Suspended"
    await sql(db, "DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(kid["id"]) == "Failed"
    letter = await open_letter(db, kid["id"])
    assert (await db.control.cancel(root, principal="ops", reason="enough")).outcome == "cancelled"
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Cancelled"
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    (closed,) = [d for d in letters if d.id == letter]
    assert closed.closed_at is not None and closed.close_reason == "superseded", closed
    assert closed.close_note == f"execution {root} was cancelled (node call)", closed.close_note


async def test_letters_left_open_before_this_release_are_closed_by_the_migration(
    db: Database, conditions: ConditionPool
) -> None:
    """The procedures close a handled child's letter at its parent's end, those of a cancelled
    parent's children, and those of the children of a parent whose letter is acknowledged; letters
    already left open by an earlier release (refused every redrive, superseded by nothing) are closed
    by migration 0065, as 0044 closed those of redriven parents. A detached child's stays open."""
    runtime = make_runtime(db, conditions)
    await publish_handling_tree(db, conditions)
    await publish(db, wf("waits-on", sub("call", "breaks")), conditions)
    handled = await start(db, "handles")
    acked = await start(db, "waits-on")
    await drain(db, runtime)
    await db.operations.acknowledge(await open_letter(db, acked), principal="ops", note=None)
    cancelled = await start(db, "waits-on")
    await sql(db, "DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(cancelled) == "parked"
    (kid,) = await children(db, cancelled)
    assert (await db.control.suspend(cancelled, principal="ops", reason=None)).status == "Suspended"
    assert await runtime.run_execution(kid["id"]) == "Failed"
    assert (await db.control.cancel(cancelled, principal="ops", reason=None)).outcome == "cancelled"
    await drain(db, runtime)
    # As an earlier release left them.
    await sql(
        db,
        "UPDATE dw.dead_letters SET closed_at = NULL, close_reason = NULL, close_note = NULL, closed_by = NULL"
        " WHERE close_reason = 'superseded'",
    )
    reopened = await sql(db, "SELECT count(*) FROM dw.dead_letters WHERE closed_at IS NULL")
    assert reopened == [(8,)], reopened  # 5 under handles, its detached child's, acked's and cancelled's child's
    migration = ROOT / "sql" / "migrations" / "0065_handled_child_letters_closed.sql"
    async with db.connection() as conn:
        await conn.execute(migration.read_text("utf-8"))
    still_open = await sql(
        db,
        "SELECT e.parent_node_id FROM dw.dead_letters d JOIN dw.executions e ON e.id = d.execution_id"
        " WHERE d.closed_at IS NULL",
    )
    assert still_open == [("loose",)], still_open
    notes = await sql(
        db,
        "SELECT e.root_execution_id, d.close_note FROM dw.dead_letters d JOIN dw.executions e ON e.id = d.execution_id"
        " WHERE d.close_reason = 'superseded'",
    )
    assert len(notes) == 7 and all(note for _, note in notes), notes
    assert all("handled its failure" in note for root, note in notes if root == handled), notes
    assert {note for root, note in notes if root == cancelled} == {f"execution {cancelled} was cancelled (node call)"}
    assert {note for root, note in notes if root == acked} == {f"execution {acked}'s dead letter was acknowledged"}


async def a_failed_parent_over_a_detached_failed_tree(db: Database, conditions: ConditionPool) -> tuple[UUID, Any, Any]:
    """`holds` run to its end: its detached child (`middle`) failed with its own child (`breaks`), then
    `holds` was signalled on and failed (`last`). The root, the detached child and its child."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("middle", sub("call", "breaks")), conditions)
    loose = sub("loose", "middle", to("hold"), waitForCompletion=False)
    parent = wf("holds", loose, signal("hold", to("last"), name="go"))
    parent["nodes"].append(echo("last", simulateFailure="permanent"))
    await publish(db, parent, conditions)
    root = await start(db, "holds")
    await drain(db, runtime)
    (detached,) = await children(db, root)
    (grandchild,) = await children(db, detached["id"])
    assert (await execution(db, grandchild["id"]))["status"] == "Failed"
    await db.control.signal(
        root, "go", payload={}, signal_id=None, correlation_key=None, principal="ops", queue="executions"
    )
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Failed"
    return root, detached, grandchild


async def test_a_parents_end_or_acknowledgement_leaves_the_letters_in_a_detached_childs_tree(
    db: Database, conditions: ConditionPool
) -> None:
    """A detached child's letters, and those of its own children beneath it, are its to redrive or
    acknowledge: its parent's end closed its child's letter (the note saying the parent handled a
    failure it never saw) while the detached child's own letter stayed open, and so did an
    acknowledgement of the parent's letter."""
    root, detached, grandchild = await a_failed_parent_over_a_detached_failed_tree(db, conditions)
    await open_letter(db, detached["id"])
    grandchild_letter = await open_letter(db, grandchild["id"])  # the parent's end left it open
    await db.operations.acknowledge(await open_letter(db, root), principal="ops", note=None)
    assert await open_letter(db, grandchild["id"]) == grandchild_letter  # and so did the acknowledgement
    await open_letter(db, detached["id"])


async def test_a_child_that_fails_after_its_parent_was_cancelled_leaves_no_letter_open(
    db: Database, conditions: ConditionPool
) -> None:
    """The parent cancelled first (its child's cancel queued, not yet taken), the child then failed:
    its letter was filed after the parent's end had closed its children's, refused every redrive (its
    parent stopped waiting for it) and superseded by nothing (a cancelled run files none): open for
    good. It is closed as it is filed."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("waits-on", sub("call", "breaks")), conditions)
    root = await start(db, "waits-on")
    await sql(db, "DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(root) == "parked"
    (kid,) = await children(db, root)
    real_complete = db.runs.complete

    async def cancelled_meanwhile(*args: Any, **kwargs: Any) -> Any:
        # The parent's cancel lands as the child's worker ends it (its node failed unhandled).
        assert (await db.control.cancel(root, principal="ops", reason="enough")).outcome == "cancelled"
        return await real_complete(*args, **kwargs)

    db.runs.complete = cancelled_meanwhile  # type: ignore[method-assign]
    try:
        assert await runtime.run_execution(kid["id"]) == "Failed"
    finally:
        db.runs.complete = real_complete  # type: ignore[method-assign]
    assert (await execution(db, root))["status"] == "Cancelled"
    await drain(db, runtime)
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    (letter,) = [d for d in letters if d.execution_id == kid["id"]]
    assert letter.closed_at is not None and letter.close_reason == "superseded", letter
    assert letter.close_note == f"execution {root} was cancelled (node call)", letter.close_note


async def test_a_parents_redrive_leaves_the_letters_in_a_detached_childs_tree(
    db: Database, conditions: ConditionPool
) -> None:
    """As its end and its acknowledgement do, a parent's redrive leaves the letters of a detached
    child's tree alone: it closed the detached child's own child's letter ("execution ... was
    redriven") while the detached child's letter, which supersedes it, stayed open. The detached
    child's redrive closes it, naming that letter."""
    root, detached, grandchild = await a_failed_parent_over_a_detached_failed_tree(db, conditions)
    detached_letter = await open_letter(db, detached["id"])
    grandchild_letter = await open_letter(db, grandchild["id"])
    await db.operations.redrive(await open_letter(db, root), principal="ops", queue="executions")
    assert await open_letter(db, grandchild["id"]) == grandchild_letter
    await db.operations.redrive(detached_letter, principal="ops", queue="executions")
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    (closed,) = [d for d in letters if d.id == grandchild_letter]
    assert closed.close_note == f"execution {detached['id']} was redriven (dead letter {detached_letter})", closed


async def closed_again_by_migration_0068(db: Database, letter_ids: list[int]) -> dict[int, str | None]:
    """The letters reopened, as an earlier release left them, then migration 0068 run: each one's
    close note (None: left open)."""
    await sql(
        db,
        "UPDATE dw.dead_letters SET closed_at = NULL, close_reason = NULL, close_note = NULL WHERE id = ANY(%s)",
        letter_ids,
    )
    migration = ROOT / "sql" / "migrations" / "0068_late_child_letters_closed.sql"
    async with db.connection() as conn:
        await conn.execute(migration.read_text("utf-8"))
    rows = await sql(db, "SELECT id, close_note FROM dw.dead_letters WHERE id = ANY(%s)", letter_ids)
    return {letter_id: note for letter_id, note in rows}


async def fail_late(db: Database, runtime: Runtime, kid: UUID, meanwhile: Any) -> None:
    """Runs child `kid` to its failure, `meanwhile` awaited as its worker ends it (its node failed
    unhandled): what its parent does while the child is in flight, before its letter is filed."""
    real_complete = db.runs.complete

    async def then_end(execution_id: UUID, *args: Any, **kwargs: Any) -> Any:
        if execution_id == kid:
            await meanwhile()
        return await real_complete(execution_id, *args, **kwargs)

    db.runs.complete = then_end  # type: ignore[method-assign]
    try:
        assert await runtime.run_execution(kid) == "Failed"
    finally:
        db.runs.complete = real_complete  # type: ignore[method-assign]


async def a_parent_waiting_on_a_failing_child(db: Database, conditions: ConditionPool) -> tuple[Any, UUID, Any]:
    """`forks` started and parked: its `call` a child of `breaks` (which fails when it runs), its `hold`
    waiting for the signal `go`, after which `last` fails. The runtime, the root and the child; no job
    queued (each run is run by hand)."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    parent = wf(
        "forks", echo("go", to("call"), to("hold")), sub("call", "breaks"), signal("hold", to("last"), name="go")
    )
    parent["nodes"].append(echo("last", simulateFailure="permanent"))
    await publish(db, parent, conditions)
    root = await start(db, "forks")
    await sql(db, "DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(root) == "parked"
    (kid,) = await children(db, root)
    await sql(db, "DELETE FROM procrastinate_jobs")
    return runtime, root, kid


async def test_a_child_that_fails_after_its_parents_letter_was_acknowledged_leaves_no_letter_open(
    db: Database, conditions: ConditionPool
) -> None:
    """The parent failed (another of its nodes) while its child ran, and its letter was acknowledged,
    closing those of the children whose end it took; the child then failed: its letter, filed after,
    was refused every redrive (its parent stopped waiting for it) and superseded by nothing (the
    parent's letter was closed): open for good, and retention kept the tree. It is closed as it is
    filed, as the acknowledgement would have closed it."""
    runtime, root, kid = await a_parent_waiting_on_a_failing_child(db, conditions)
    acknowledged: list[int] = []

    async def parent_fails_and_is_acknowledged() -> None:
        await db.control.signal(
            root, "go", payload={}, signal_id=None, correlation_key=None, principal="ops", queue="executions"
        )
        assert await runtime.run_execution(root) == "Failed"
        acknowledged.append(await open_letter(db, root))
        await db.operations.acknowledge(acknowledged[0], principal="ops", note=None)

    await fail_late(db, runtime, kid["id"], parent_fails_and_is_acknowledged)
    await drain(db, runtime)
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    (letter,) = [d for d in letters if d.execution_id == kid["id"]]
    assert letter.closed_at is not None and letter.close_reason == "superseded", letter
    assert letter.close_note == f"execution {root}'s dead letter {acknowledged[0]} was acknowledged", letter.close_note
    assert await closed_again_by_migration_0068(db, [letter.id]) == {letter.id: letter.close_note}


async def test_a_child_that_fails_after_its_parent_handled_its_node_and_ended_leaves_no_letter_open(
    db: Database, conditions: ConditionPool
) -> None:
    """A forEach's item child failed (failFast), the forEach stopped waiting for its sibling's
    child, an always edge took the node's failure and the parent succeeded, closing the letters of
    the children whose failure it handled; the sibling's child then failed: its letter, filed after,
    was refused every redrive (its parent stopped waiting for it) and superseded by nothing: open for
    good. It is closed as it is filed."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    items = kind_node(
        "forEach", "items", (to("done", "always"),), {"items": [1, 2], "subworkflow": {"workflowId": "breaks"}}
    )
    await publish(db, wf("fans", items, echo("done")), conditions)
    root = await start(db, "fans")
    await sql(db, "DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(root) == "parked"
    first, second = await children(db, root)
    await sql(db, "DELETE FROM procrastinate_jobs")

    async def sibling_fails_and_parent_ends() -> None:
        assert await runtime.run_execution(first["id"]) == "Failed"
        assert await runtime.run_execution(root) == "Succeeded"

    await fail_late(db, runtime, second["id"], sibling_fails_and_parent_ends)
    await drain(db, runtime)
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    kids = {first["id"]: "first", second["id"]: "second"}
    states = {kids[d.execution_id]: (d.close_reason, d.close_note) for d in letters if d.execution_id in kids}
    assert states["first"] == ("superseded", f"execution {root} handled its failure (node items) and ended"), states
    assert states["second"] == ("superseded", f"execution {root} handled its failure (node items) and ended"), states
    (second_letter,) = [d.id for d in letters if d.execution_id == second["id"]]
    assert await closed_again_by_migration_0068(db, [second_letter]) == {second_letter: states["second"][1]}


async def ended_while_acknowledging(db: Database, letter: int, end: Callable[[], Awaitable[Any]]) -> Any:
    """`end` run while `letter`'s acknowledgement is written and not yet committed: once `end` waits on
    it (pg_blocking_pids, a bounded poll) or has ended, the acknowledgement commits; `end`'s answer."""
    async with db.connection() as acknowledging:
        async with acknowledging.transaction():
            await acknowledging.execute("SELECT * FROM dw.acknowledge_dead_letter_v1(%s, 'ops', NULL)", (letter,))
            pid = acknowledging.info.backend_pid
            ending = asyncio.create_task(end())
            for _ in range(250):
                if ending.done() or await sql(
                    db, "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", pid
                ):
                    break
                await asyncio.sleep(0.02)
        return await ending


async def test_a_childs_letter_filed_while_its_parents_letter_is_being_acknowledged_is_closed(
    db: Database, conditions: ConditionPool
) -> None:
    """The parent's letter acknowledged in a transaction still in flight as the child fails: the
    acknowledgement closes the letters of its tree that it sees, not the child's, filed meanwhile;
    and the child's end saw the parent's letter open (superseding its own) and left its letter open
    for good. The child's end files its letter under its parent's row, which the acknowledgement
    holds: it waits for it, then sees the letter acknowledged."""
    runtime, root, kid = await a_parent_waiting_on_a_failing_child(db, conditions)
    await db.control.signal(
        root, "go", payload={}, signal_id=None, correlation_key=None, principal="ops", queue="executions"
    )
    real_complete = db.runs.complete
    parent_letter: list[int] = []

    async def while_acknowledging(execution_id: UUID, *args: Any, **kwargs: Any) -> Any:
        if execution_id != kid["id"]:
            return await real_complete(execution_id, *args, **kwargs)
        assert await runtime.run_execution(root) == "Failed"
        parent_letter.append(await open_letter(db, root))
        return await ended_while_acknowledging(
            db, parent_letter[0], lambda: real_complete(execution_id, *args, **kwargs)
        )

    db.runs.complete = while_acknowledging  # type: ignore[method-assign]
    try:
        assert await runtime.run_execution(kid["id"]) == "Failed"
    finally:
        db.runs.complete = real_complete  # type: ignore[method-assign]
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    (letter,) = [d for d in letters if d.execution_id == kid["id"]]
    assert letter.close_reason == "superseded", letter
    assert [d.close_reason for d in letters if d.execution_id == kid["id"]] == ["superseded"]
    assert letter.close_note == f"execution {root}'s dead letter {parent_letter[0]} was acknowledged", letter.close_note


async def test_migration_0068_leaves_the_letters_something_will_still_close(
    db: Database, conditions: ConditionPool
) -> None:
    """A child's letter under its parent's open letter (whose redrive or acknowledgement closes it),
    and a detached child's, stay open."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("waits-on", sub("call", "breaks")), conditions)
    await publish(db, wf("fires", sub("call", "breaks", waitForCompletion=False)), conditions)
    waits_on = await start(db, "waits-on")
    fires = await start(db, "fires")
    await drain(db, runtime)
    (kid,) = await children(db, waits_on)
    (loose,) = await children(db, fires)
    letters = [await open_letter(db, kid["id"]), await open_letter(db, loose["id"])]
    assert await closed_again_by_migration_0068(db, letters) == dict.fromkeys(letters)


async def test_a_roots_redrive_and_its_childs_end_take_their_locks_in_one_order(
    db: Database, conditions: ConditionPool
) -> None:
    """A review suspected a deadlock: a redrive of the root's letter holds the root's row and closes
    the letters of its tree, while a child's end (closing the letters of the children whose failure
    it handled, filing its own) locks its own rows and then its parent's. Both take the runs' rows
    first, from the child up, and then letters: the child's end waits for the redrive to commit,
    then ends, and neither is aborted."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    middle = wf("handles-then-breaks", sub("call", "breaks", to("next", "always")))
    middle["nodes"].append(echo("next", simulateFailure="permanent"))
    await publish(db, middle, conditions)
    parent = wf(
        "forks",
        echo("go", to("call"), to("hold")),
        sub("call", "handles-then-breaks"),
        signal("hold", to("last"), name="go"),
    )
    parent["nodes"].append(echo("last", simulateFailure="permanent"))
    await publish(db, parent, conditions)
    root = await start(db, "forks")
    await sql(db, "DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(root) == "parked"
    (kid,) = await children(db, root)
    assert await runtime.run_execution(kid["id"]) == "parked"
    (grandchild,) = await children(db, kid["id"])
    assert await runtime.run_execution(grandchild["id"]) == "Failed"
    grandchild_letter = await open_letter(db, grandchild["id"])
    await sql(db, "DELETE FROM procrastinate_jobs")
    await db.control.signal(
        root, "go", payload={}, signal_id=None, correlation_key=None, principal="ops", queue="executions"
    )
    real_complete = db.runs.complete
    blocked: list[bool] = []

    async def while_redriving(execution_id: UUID, *args: Any, **kwargs: Any) -> Any:
        if execution_id != kid["id"]:
            return await real_complete(execution_id, *args, **kwargs)
        assert await runtime.run_execution(root) == "Failed"
        root_letter = await open_letter(db, root)
        async with db.connection() as redriving:
            async with redriving.transaction():
                await redriving.execute(
                    "SELECT * FROM dw.redrive_dead_letter_v1(%s, 'ops', 'executions')", (root_letter,)
                )
                pid = redriving.info.backend_pid
                ending = asyncio.create_task(real_complete(execution_id, *args, **kwargs))
                for _ in range(250):
                    if ending.done():
                        break
                    if await sql(db, "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", pid):
                        blocked.append(True)
                        break
                    await asyncio.sleep(0.02)
            return await ending

    db.runs.complete = while_redriving  # type: ignore[method-assign]
    try:
        assert await runtime.run_execution(kid["id"]) == "Failed"
    finally:
        db.runs.complete = real_complete  # type: ignore[method-assign]
    assert blocked == [True]  # the child's end waited for the redrive, holding no letter
    assert (await execution(db, root))["status"] == "Pending"
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    (closed,) = [d for d in letters if d.id == grandchild_letter]
    assert closed.close_reason == "superseded" and closed.closed_by == "ops", closed
    # The child's letter, filed under its redriven parent: the parent's end, or its letter, closes it.
    assert [d.closed_at for d in letters if d.execution_id == kid["id"]] == [None]


async def test_a_grandchilds_letter_filed_while_the_roots_letter_is_being_acknowledged_is_closed(
    db: Database, conditions: ConditionPool
) -> None:
    """The root failed as its child did (another of the child's nodes), while the grandchild ran; the
    root's letter is acknowledged in a transaction still in flight as the grandchild fails. The
    acknowledgement closes the letters of the root's whole tree that it sees, not the grandchild's,
    filed meanwhile; and the grandchild's end, holding its parent's row only, saw the child's letter
    still open (the acknowledgement closing it had not committed) and left its own open: refused every
    redrive (its parent stopped waiting for it), open for good. It waits for the root's row too."""
    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    middle = wf(
        "forks", echo("go", to("call"), to("hold")), sub("call", "breaks"), signal("hold", to("last"), name="go")
    )
    middle["nodes"].append(echo("last", simulateFailure="permanent"))
    await publish(db, middle, conditions)
    await publish(db, wf("tops", sub("call", "forks")), conditions)
    root = await start(db, "tops")
    await sql(db, "DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(root) == "parked"
    (kid,) = await children(db, root)
    await sql(db, "DELETE FROM procrastinate_jobs")
    assert await runtime.run_execution(kid["id"]) == "parked"
    (grandchild,) = await children(db, kid["id"])
    await sql(db, "DELETE FROM procrastinate_jobs")
    real_complete = db.runs.complete

    async def while_acknowledging(execution_id: UUID, *args: Any, **kwargs: Any) -> Any:
        if execution_id != grandchild["id"]:
            return await real_complete(execution_id, *args, **kwargs)
        await db.control.signal(
            kid["id"], "go", payload={}, signal_id=None, correlation_key=None, principal="ops", queue="executions"
        )
        assert await runtime.run_execution(kid["id"]) == "Failed"
        assert await runtime.run_execution(root) == "Failed"
        root_letter = await open_letter(db, root)
        await sql(db, "DELETE FROM procrastinate_jobs")
        return await ended_while_acknowledging(db, root_letter, lambda: real_complete(execution_id, *args, **kwargs))

    db.runs.complete = while_acknowledging  # type: ignore[method-assign]
    try:
        assert await runtime.run_execution(grandchild["id"]) == "Failed"
    finally:
        db.runs.complete = real_complete  # type: ignore[method-assign]
    letters = await db.operations.dead_letters(open_only=None, kind=None, before=None, limit=50)
    (letter,) = [d for d in letters if d.execution_id == grandchild["id"]]
    assert letter.close_reason == "superseded", letter
    assert [d.close_reason for d in letters if d.execution_id == kid["id"]] == ["superseded"]

"""Review: what an operator does to a parked forEach parent and its children between two holds of
the same worker (the kept items, foreach.KeptItems, are taken up by the next hold)."""

from __future__ import annotations

from uuid import UUID

from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from tests.integration.test_foreach import item_attempts
from tests.integration.test_foreach_wakes import RowsRead, squares
from tests.integration.test_runtime import make_runtime, nodes
from tests.integration.test_subworkflows import drain, execution
from tests.integration.test_waits import sql


async def children(db: Database, root: UUID) -> list[tuple[int, UUID, str]]:
    rows = await sql(
        db,
        "SELECT i.item_index, i.child_execution_id, e.status FROM dw.foreach_items i"
        " JOIN dw.executions e ON e.id = i.child_execution_id WHERE i.execution_id = %s ORDER BY i.item_index",
        root,
    )
    return [(int(r[0]), r[1], str(r[2])) for r in rows]


async def test_a_suspended_parent_whose_child_an_operator_cancelled_takes_its_kept_items_up_right(
    db: Database, conditions: ConditionPool, monkeypatch
) -> None:
    runtime = make_runtime(db, conditions)
    read = RowsRead(monkeypatch)
    root = await squares(db, conditions, "suspended-squares", 6, concurrency=3, onItemFailure="continue")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))
    assert await runtime.run_execution(root) == "parked"
    assert len(runtime.kept_items) == 1
    started = await children(db, root)
    assert [i for i, _, _ in started] == [0, 1, 2]
    # The operator suspends the parked parent, cancels one child, and one child runs to its end.
    assert (await db.control.suspend(root, principal="op", reason="r")).outcome == "suspended"
    await db.control.cancel(started[0][1], principal="op", reason="r")
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(started[1][1]))
    assert await runtime.run_execution(started[1][1]) in ("succeeded", "Succeeded")
    await db.control.resume(root, principal="op", queue="default")
    await drain(db, runtime, limit=200)
    assert (await execution(db, root))["status"] == "Succeeded"
    outputs = (await nodes(db, root))["all"]["outputs"]
    assert (outputs["count"], outputs["succeeded"], outputs["failed"]) == (6, 5, 1)
    assert [(i, a) for i, a, _ in await item_attempts(db, root)] == [(i, 1) for i in range(6)]
    assert read.full_loads == 1  # the kept items were taken up by the next hold


async def test_failfast_a_child_cancelled_between_holds_stops_the_items(
    db: Database, conditions: ConditionPool, monkeypatch
) -> None:
    runtime = make_runtime(db, conditions)
    read = RowsRead(monkeypatch)
    root = await squares(db, conditions, "failfast-squares", 6, concurrency=3)
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))
    assert await runtime.run_execution(root) == "parked"
    started = await children(db, root)
    await db.control.cancel(started[1][1], principal="op", reason="r")
    await drain(db, runtime, limit=200)
    assert (await execution(db, root))["status"] == "Failed"
    state = (await nodes(db, root))["all"]
    assert state["error"]["code"] == "item_failed" and state["error"]["details"]["index"] == 1, state["error"]
    assert read.full_loads == 2  # the first hold, and the stop's reading of the items
    assert [i for i, _, _ in await children(db, root)] == [0, 1, 2]  # nothing started after


async def start_children(
    db: Database, root: UUID, limit: int, count: int, tag: str, version: int = 2
) -> list[str | None]:
    """Starts `count` children of the root's node directly (dw.start_child_v2, or v1, the previous
    release's name for it) under a tree limit."""
    codes: list[str | None] = []
    async with db.connection() as conn:
        await conn.execute("SELECT set_config('dw.max_runs_per_tree', %s, false)", (str(limit),))
        for k in range(count):
            cur = await conn.execute(
                f"SELECT o_error ->> 'code' FROM dw.start_child_v{version}((SELECT e FROM dw.executions e"
                " WHERE e.id = %s), 'all', %s, 'square', NULL, '{\"value\": 1}'::jsonb, 10)",
                (root, f"{tag}:{k}"),
            )
            codes.append((await cur.fetchone())[0])
        await conn.execute("RESET dw.max_runs_per_tree")
    return codes


async def test_a_tree_counted_under_a_lower_limit_is_not_undercounted_under_a_higher_one(
    db: Database, conditions: ConditionPool
) -> None:
    """A tree of 9 runs whose count is made (the first time) under a limit of 3 holds 9 runs, not 3:
    once the limit is 12 (DW_MAX_RUNS_PER_TREE raised, or another worker's), 3 more start, not 9."""
    runtime = make_runtime(db, conditions)
    root = await squares(db, conditions, "counted-squares", 8, concurrency=8)
    await sql(db, "DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", str(root))
    assert await runtime.run_execution(root) == "parked"
    await sql(db, "UPDATE dw.executions SET tree_runs = NULL WHERE id = %s", root)  # a tree from before 0067
    assert await start_children(db, root, 3, 1, "low") == ["tree_too_large"]
    codes = await start_children(db, root, 12, 5, "high")
    assert codes == [None, None, None, "tree_too_large", "tree_too_large"], codes
    assert await sql(db, "SELECT count(*) FROM dw.executions WHERE root_execution_id = %s", root) == [(12,)]
    # The previous release's name for the start keeps the same count (it is v2's start).
    assert await start_children(db, root, 13, 2, "v1", version=1) == [None, "tree_too_large"]
    assert await sql(db, "SELECT tree_runs FROM dw.executions WHERE id = %s", root) == [(13,)]


def test_kept_items_are_bounded_by_the_outputs_they_hold() -> None:
    """Each kept attempt may hold up to MAX_OUTPUTS_BYTES of outputs: 64 of them held a gigabyte of
    JSON while their runs parked. Past the bytes bound the least recently parked is dropped."""
    from types import SimpleNamespace
    from uuid import uuid4

    from dataworkflows import foreach

    kept = foreach.KeptItems()
    runs = [uuid4() for _ in range(8)]
    for k, run in enumerate(runs):
        kept.put(run, "all", 1, k, SimpleNamespace(output_bytes=foreach.MAX_OUTPUTS_BYTES))
    assert 0 < len(kept) * foreach.MAX_OUTPUTS_BYTES <= foreach.KEPT_OUTPUT_BYTES
    assert kept.take(runs[-1], "all", 1, 7) is not None  # the latest is kept
    assert kept.take(runs[0], "all", 1, 0) is None  # the oldest was dropped

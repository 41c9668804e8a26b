"""A forEach of subworkflow items takes its items up again at each child's end: what a wake reads.

Each child's end wakes the parent run, which carries the forEach's attempt on. Reading every item at
each wake made a forEach of n children read n x n rows (a review: 9,999 children took 356 s, 1,000
took 5.1 s). The worker keeps the attempt's items when it parks (foreach.KeptItems) and a wake reads
again only the items whose children were in flight; another holder between reads them afresh."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from dataworkflows import foreach
from dataworkflows.conditions import ConditionPool
from dataworkflows.data.runs import RunData
from dataworkflows.db import Database
from tests.conftest import publish, start
from tests.integration.test_foreach import child_items, item_attempts
from tests.integration.test_runtime import echo, make_runtime, nodes, wf
from tests.integration.test_subworkflows import drain, execution
from tests.integration.test_waits import sql


class RowsRead:
    """Counts the item rows the workers read (all of an attempt's, or some)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.all = self.some = self.full_loads = 0
        load_items, load_items_at = RunData.load_items, RunData.load_items_at

        async def counted_all(data: RunData, *args: Any) -> list[foreach.ItemCheckpoint]:
            rows = await load_items(data, *args)
            self.all += len(rows)
            self.full_loads += 1
            return rows

        async def counted_some(data: RunData, *args: Any) -> list[foreach.ItemCheckpoint]:
            rows = await load_items_at(data, *args)
            self.some += len(rows)
            return rows

        monkeypatch.setattr(RunData, "load_items", counted_all)
        monkeypatch.setattr(RunData, "load_items_at", counted_some)


async def squares(db: Database, conditions: ConditionPool, workflow_id: str, n: int, **params: Any) -> UUID:
    leaf = wf("square", echo("sq", message="{{ trigger.value * trigger.value }}"))
    leaf["outputs"] = {"square": "{{ nodes.sq.echo }}"}
    await publish(db, leaf, conditions)
    node = child_items("all", "{{ trigger.values }}", "square", maxItems=10_000, **params)
    await publish(db, wf(workflow_id, node), conditions)
    return await start(db, workflow_id, {"values": list(range(n))})


async def test_a_wake_reads_the_items_in_flight_not_every_item(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 children, 5 at a time: about 40 wakes. Reading every item at each wake read about 8,000
    rows (40 x 200); now the items once, and then at most the 5 in flight at each wake."""
    n, concurrency = 200, 5
    runtime = make_runtime(db, conditions)
    read = RowsRead(monkeypatch)
    root = await squares(db, conditions, "many-squares", n, concurrency=concurrency)
    ran = await drain(db, runtime, limit=4 * n)
    wakes = sum(1 for execution_id, _ in ran if execution_id == str(root))
    assert (await execution(db, root))["status"] == "Succeeded"
    outputs = (await nodes(db, root))["all"]["outputs"]
    assert outputs["items"] == [{"square": v * v} for v in range(n)]
    assert (outputs["count"], outputs["succeeded"], outputs["failed"]) == (n, n, 0)
    assert await item_attempts(db, root) == [(i, 1, "Succeeded") for i in range(n)]
    assert wakes >= n // concurrency, ran[-5:]
    # The first hold reads the items once (none yet: it writes them); a wake reads those in flight.
    assert read.full_loads == 1, (read.full_loads, wakes)
    assert read.some <= concurrency * wakes, (read.some, wakes)
    assert read.all + read.some < 3 * n, (read.all, read.some, wakes)
    assert len(runtime.kept_items) == 0  # dropped when the attempt ended
    # The tree's runs are counted on its root's row as children start (dw.start_child_v2), not read
    # at each start.
    assert await sql(
        db,
        "SELECT tree_runs, (SELECT count(*) FROM dw.executions WHERE root_execution_id = %s)"
        " FROM dw.executions WHERE id = %s",
        root,
        root,
    ) == [(n + 1, n + 1)]


async def test_another_holder_between_wakes_reads_the_items_afresh(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers take the run in turn: what one kept is not taken up by it after the other held
    the run (and changed its items); every item still runs once, in order."""
    n = 30
    first, second = make_runtime(db, conditions), make_runtime(db, conditions, worker_id="other-worker")
    read = RowsRead(monkeypatch)
    root = await squares(db, conditions, "shared-squares", n, concurrency=3)
    turn = 0
    for _ in range(20 * n):
        rows = await sql(
            db,
            "DELETE FROM procrastinate_jobs WHERE id = (SELECT id FROM procrastinate_jobs WHERE status = 'todo'"
            " AND (scheduled_at IS NULL OR scheduled_at <= now()) ORDER BY id LIMIT 1) RETURNING args",
        )
        if not rows:
            break
        execution_id = UUID(rows[0][0]["execution_id"])
        runtime = first if execution_id != root or turn % 2 == 0 else second
        turn += execution_id == root
        await runtime.run_execution(execution_id)
    assert (await execution(db, root))["status"] == "Succeeded"
    outputs = (await nodes(db, root))["all"]["outputs"]
    assert outputs["items"] == [{"square": v * v} for v in range(n)]
    assert await item_attempts(db, root) == [(i, 1, "Succeeded") for i in range(n)]
    # Every hold read the items afresh: each took the run after the other worker.
    assert read.full_loads == turn, (read.full_loads, read.some, turn)


def test_kept_items_are_taken_by_the_same_hold_or_the_next_one_only() -> None:
    kept = foreach.KeptItems(limit=2)
    run = uuid4()
    kept.put(run, "all", 1, 7, "state")
    assert kept.take(run, "all", 1, 7) == "state"  # the same hold
    assert kept.take(run, "all", 1, 7) is None  # taken: gone
    kept.put(run, "all", 1, 7, "state")
    assert kept.take(run, "all", 2, 8) is None  # another attempt of the node
    kept.put(run, "all", 1, 7, "state")
    assert kept.take(run, "all", 1, 9) is None  # someone held the run between
    kept.put(run, "all", 1, 7, "state")
    assert kept.take(run, "all", 1, 8) == "state"  # the next hold
    kept.put(run, "all", 1, 7, "a")
    kept.put(run, "other", 1, 7, "b")
    kept.put(uuid4(), "all", 1, 1, "c")
    assert len(kept) == 2 and kept.take(run, "all", 1, 7) is None  # bounded: the oldest dropped
    kept.drop_run(run)
    assert len(kept) == 1


async def test_a_tree_not_counted_yet_is_counted_at_its_next_start_and_kept_after(
    db: Database, conditions: ConditionPool
) -> None:
    """A tree started before its root's row held its count (migration 0067), or while the limit was
    0, has none: its runs are counted once, at its next child's start under a limit, then kept."""
    runtime = make_runtime(db, conditions)
    root = await squares(db, conditions, "late-count", 6, concurrency=2)
    assert await runtime.run_execution(root) == "parked"  # two children started
    await sql(db, "UPDATE dw.executions SET tree_runs = NULL WHERE id = %s", root)
    await drain(db, runtime)
    assert (await execution(db, root))["status"] == "Succeeded"
    assert await sql(db, "SELECT tree_runs FROM dw.executions WHERE id = %s", root) == [(7,)]

"""A cancel or a suspension that comes while a worker takes a run (crash review): no node attempt
starts once the request is committed (dw.start_node_attempt_v2), and a request whose notification
reached the worker before the run was registered there is not dropped (Runtime.early_pokes)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.runtime import Runtime
from tests.integration.test_runtime import FAST_RETRY, attempts, echo, events, make_runtime, nodes, to, wf
from tests.integration.test_waits import sql, started, status


async def _node_starts(db: Database, execution_id: UUID) -> list[str]:
    rows = await sql(
        db,
        "SELECT node_id FROM dw.execution_events WHERE execution_id = %s AND type = 'node_started' ORDER BY id",
        execution_id,
    )
    return [row[0] for row in rows]


async def test_no_attempt_starts_once_a_cancel_or_a_suspension_is_committed(db: Database) -> None:
    for request in ("cancel", "suspend"):
        execution_id = await started(db, wf(f"held-{request}", echo("a", to("b")), echo("b")))
        acquired = await db.runs.acquire(execution_id, owner="w1", lease_seconds=30.0)
        assert acquired.outcome == "acquired" and acquired.lease_token is not None
        ask = db.control.cancel if request == "cancel" else db.control.suspend
        assert (await ask(execution_id, principal="ops", reason=None)).outcome == "requested"
        # Its notification is on its way: the worker's start is refused, and the node stays Ready.
        assert await db.runs.start_node_attempt(execution_id, acquired.lease_token, "a") is None
        assert (await nodes(db, execution_id))["a"]["status"] == "Ready"
        assert await _node_starts(db, execution_id) == []
        # A worker of the previous release still calls v1, which starts it as it did.
        query = "SELECT dw.start_node_attempt_v1(%s, %s, 'a')"
        assert await sql(db, query, execution_id, acquired.lease_token) == [(1,)]


async def test_a_retry_is_not_started_after_a_cancel_whose_notification_is_late(
    db: Database, conditions: ConditionPool
) -> None:
    """The node's second attempt (an in-process retry) is where the worker starts an attempt itself
    rather than in a record: the cancel is committed, its NOTIFY not yet heard."""
    runtime = make_runtime(db, conditions)
    raw = wf("late-cancel", echo("flaky", to("after"), simulateFailure="transient", failUntilAttempt=2), echo("after"))
    raw["nodes"][0]["retryPolicy"] = FAST_RETRY
    execution_id = await started(db, raw)
    real_start = db.runs.start_node_attempt
    asked: list[str] = []

    async def cancel_then_start(run_id: UUID, token: int, node_id: str) -> Any:
        if not asked:
            asked.append((await db.control.cancel(run_id, principal="ops", reason="late")).outcome)
        return await real_start(run_id, token, node_id)

    db.runs.start_node_attempt = cancel_then_start  # type: ignore[method-assign]
    try:
        assert await runtime.run_execution(execution_id) == "Cancelled"
    finally:
        db.runs.start_node_attempt = real_start  # type: ignore[method-assign]
    assert asked == ["requested"]
    assert [(r["node_id"], r["attempt"], r["status"]) for r in await attempts(db, execution_id)] == [
        ("flaky", 1, "RetriableFailure")
    ]
    log = await events(db, execution_id)
    assert "cancel_too_late" not in log and log[-1] == "execution_cancelled", log


async def test_a_cancel_heard_before_the_run_is_registered_is_not_dropped(
    db: Database, conditions: ConditionPool
) -> None:
    """The worker took the run (its acquire started node a); the cancel's notification came before
    the run was registered in the worker, and was dropped: a ran to its end, and the run went on
    until its next lease renewal. The run now checks at once, and a never runs."""
    runtime: Runtime = make_runtime(db, conditions)
    execution_id = await started(db, wf("early-poke", echo("a", to("b")), echo("b")))
    real_plan = runtime.plans.get

    async def cancel_while_registering(workflow_id: str, version: int) -> Any:
        assert (await db.control.cancel(execution_id, principal="ops", reason=None)).outcome == "requested"
        runtime.poke(execution_id)  # the NOTIFY, heard before the run is in runtime.active
        return await real_plan(workflow_id, version)

    runtime.plans.get = cancel_while_registering  # type: ignore[method-assign]
    try:
        assert await runtime.run_execution(execution_id) == "Cancelled"
    finally:
        runtime.plans.get = real_plan  # type: ignore[method-assign]
    assert await status(db, execution_id) == "Cancelled"
    # Its attempt was recorded Cancelled without running (the worker never launched it).
    assert [(r["node_id"], r["attempt"], r["status"]) for r in await attempts(db, execution_id)] == [
        ("a", 1, "Cancelled")
    ]
    assert {k: v["status"] for k, v in (await nodes(db, execution_id)).items()} == {"a": "Cancelled", "b": "Skipped"}
    assert await _node_starts(db, execution_id) == ["a"], "started by the acquire, before the cancel"
    assert runtime.early_pokes == {}


def test_early_pokes_are_bounded() -> None:
    from dataworkflows import runtime as runtime_module

    class Bare(Runtime):
        def __init__(self) -> None:
            self.active = {}
            self.early_pokes = {}

    bare = Bare()
    for i in range(runtime_module.EARLY_POKES + 50):
        bare.poke(UUID(int=i))
    assert len(bare.early_pokes) == runtime_module.EARLY_POKES
    assert UUID(int=0) not in bare.early_pokes and UUID(int=runtime_module.EARLY_POKES + 49) in bare.early_pokes

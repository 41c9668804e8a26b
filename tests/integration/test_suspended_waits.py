"""What a Suspended run's waits do meanwhile: its timers do not fire (README "Cancel, suspend,
resume"), not even when a signal comes to it; an approval past its timeout that no worker has timed
out yet (its run Suspended) is no longer offered to its approvers, nor listed by
dw.v_pending_approvals."""

from __future__ import annotations

import asyncio

import pytest

from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.errors import Conflict
from tests.integration.test_runtime import echo, make_runtime, to, wf
from tests.integration.test_waits import approval, delay, signal, sql, started


async def test_a_signal_to_a_suspended_run_fires_none_of_its_timers(db: Database, conditions: ConditionPool) -> None:
    """The signal times out the waits past their timeout (so that none of them takes it), and fired
    the run's due timers with it, with the signal's time: until resumed, they must not fire."""
    runtime = make_runtime(db, conditions)
    raw = wf(
        "frozen-two",
        echo("start", to("nap"), to("wait")),
        delay("nap", duration="PT0.3S"),
        signal("wait", to("handled", "failure"), name="paid", timeout="PT0.3S"),
        echo("handled"),
    )
    execution_id = await started(db, raw)
    assert await runtime.run_execution(execution_id) == "parked"
    assert (await db.control.suspend(execution_id, principal="ops", reason="freeze")).status == "Suspended"
    await asyncio.sleep(0.6)
    await db.control.signal(
        execution_id, "other", payload={}, signal_id="s1", correlation_key=None, principal="p", queue="q"
    )
    waits = {w.node_id: w.state for w in await db.control.waits(execution_id)}
    assert waits == {"nap": "open", "wait": "timed_out"}, waits
    # Resumed, the timer that came due meanwhile fires at once (catch-up).
    await db.control.resume(execution_id, principal="ops", queue="q")
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert {w.node_id: w.state for w in await db.control.waits(execution_id)}["nap"] == "fired"


async def test_an_approval_past_its_timeout_is_not_offered_to_decide(db: Database, conditions: ConditionPool) -> None:
    raw = wf("expiring", approval("ok", to("ship"), approvers=["alice"], timeout="PT0.3S"), echo("ship"))
    execution_id = await started(db, raw)
    assert await make_runtime(db, conditions).run_execution(execution_id) == "parked"
    assert (await db.control.suspend(execution_id, principal="ops", reason="x")).status == "Suspended"
    (offered,) = await db.control.approvals(principal="alice", open_only=True)
    assert offered.lapsed_at is None
    await asyncio.sleep(0.5)
    # Nothing has timed it out (the run is Suspended): still open, yet no decision counts any more.
    with pytest.raises(Conflict):
        await db.control.decide(offered.id, principal="alice", decision="approve", comment=None, queue="q")
    assert await db.control.approvals(principal="alice", open_only=True) == []
    (listed,) = await db.control.approvals(principal=None, open_only=True)
    assert (listed.state, listed.lapsed_at) == ("open", listed.expires_at)
    # The operators' view of what is waiting for a decision leaves it out too (migration 0064);
    # the view of waiting runs still shows the open wait, with its timeout.
    assert await sql(db, "SELECT count(*) FROM dw.v_pending_approvals") == [(0,)]
    assert await sql(db, "SELECT expires_at FROM dw.v_waiting_runs") == [(listed.expires_at,)]

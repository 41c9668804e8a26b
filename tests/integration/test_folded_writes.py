"""A run's writes folded into fewer transactions (issue 17): the first acquire starts the first
nodes, a node's record starts the nodes it makes Ready and ends the run when nothing is left, and
every guarantee of the separate writes still holds (fencing, one checkpoint per attempt, nothing
new while an operator's request is pending, an attempt started for a dead worker is interrupted)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import procrastinate
import psycopg
import psycopg_pool
import pytest
from procrastinate import jobs

from dataworkflows.checkpoints import Acquired, AttemptRecord
from dataworkflows.conditions import ConditionPool
from dataworkflows.data.runs import acquired_from_row, fetch_run_jobs
from dataworkflows.db import Database
from dataworkflows.statuses import AttemptStatus, ExecutionStatus, NodeStatus, Verdict
from dataworkflows.workers.app import RUN_EXECUTION_TASK, LeaseWithFetch, ResilientJobManager, connection_broken
from tests.conftest import ROOT, publish, start
from tests.integration.test_runtime import attempts, echo, events, make_runtime, nodes, to, wf


def count_calls(db: Database, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the worker's writes by kind, as the runtime makes them through db.runs."""
    calls: Counter[str] = Counter()
    for name in ("acquire", "start_node_attempt", "record_attempt", "complete", "park"):
        original = getattr(db.runs, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(db.runs, name, counted)
    return calls


async def test_a_chain_costs_one_write_per_attempt_and_one_acquire(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(db, conditions)
    await publish(db, wf("chain3", echo("a", to("b")), echo("b", to("c")), echo("c")))
    execution_id = await start(db, "chain3")
    calls = count_calls(db, monkeypatch)
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert calls == Counter({"acquire": 1, "record_attempt": 3})
    assert await events(db, execution_id) == [
        "execution_requested",
        "execution_started",
        "node_started",
        "node_succeeded",
        "node_started",
        "node_succeeded",
        "node_started",
        "node_succeeded",
        "execution_succeeded",
    ]
    assert [(r["node_id"], r["attempt"], r["status"]) for r in await attempts(db, execution_id)] == [
        ("a", 1, "Succeeded"),
        ("b", 1, "Succeeded"),
        ("c", 1, "Succeeded"),
    ]
    execution = await db.executions.get(execution_id)
    assert execution.status == "Succeeded" and execution.end_time is not None


async def test_a_record_starts_no_more_nodes_than_the_free_slots(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(db, conditions)
    branches = [echo(name, to("join"), delayMs=150) for name in ("x", "y", "z")]
    raw = wf("fan3", echo("root", *(to(b["id"]) for b in branches)), *branches, echo("join"), maxParallelActions=2)
    await publish(db, raw)
    execution_id = await start(db, "fan3")
    calls = count_calls(db, monkeypatch)
    assert await runtime.run_execution(execution_id) == "Succeeded"
    # root's record started two branches (two slots); the third waited for a slot and started on
    # its own; the last branch's record started the join, whose record ended the run.
    assert calls == Counter({"acquire": 1, "record_attempt": 5, "start_node_attempt": 1})
    rows = {r["node_id"]: r for r in await attempts(db, execution_id)}
    spans = sorted((rows[b]["start_time"], rows[b]["end_time"]) for b in ("x", "y", "z"))
    assert spans[2][0] >= min(spans[0][1], spans[1][1]), "at most two branches at a time"
    assert rows["join"]["start_time"] >= max(end for _, end in spans)


async def test_records_in_flight_at_once_never_hand_out_the_same_slot(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    fans = {side: [echo(f"{side}{i}", delayMs=100) for i in range(3)] for side in ("a", "b")}
    raw = wf(
        "two-fans",
        echo("root", to("a"), to("b")),
        echo("a", *(to(n["id"]) for n in fans["a"]), delayMs=50),
        echo("b", *(to(n["id"]) for n in fans["b"]), delayMs=50),
        *fans["a"],
        *fans["b"],
        maxParallelActions=3,
    )
    await publish(db, raw)
    execution_id = await start(db, "two-fans")
    assert await runtime.run_execution(execution_id) == "Succeeded"
    rows = await attempts(db, execution_id)
    assert len(rows) == 9
    # a and b record at about the same moment; together they start no more than the limit allows.
    moments = sorted({r["start_time"] for r in rows} | {r["end_time"] for r in rows})
    peak = max(sum(1 for r in rows if r["start_time"] <= at < r["end_time"]) for at in moments)
    assert peak <= 3, peak


async def test_a_run_with_outputs_ends_after_rendering_them(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("with-outputs", echo("a", to("b")), echo("b"))
    raw["outputs"] = {"said": "{{ nodes.b.echo }}"}
    await publish(db, raw)
    execution_id = await start(db, "with-outputs")
    calls = count_calls(db, monkeypatch)
    assert await runtime.run_execution(execution_id) == "Succeeded"
    assert calls == Counter({"acquire": 1, "record_attempt": 2, "complete": 1})
    assert (await db.fetch_one("get_execution", id=execution_id))["outputs"] == {"said": "b"}


def attempt_record(
    execution_id: UUID, token: int, node_id: str, *, fired: tuple[bool, ...] = (), **next_steps: Any
) -> AttemptRecord:
    at = datetime.now(UTC)
    return AttemptRecord(
        execution_id=execution_id,
        token=token,
        node_id=node_id,
        attempt=1,
        action_type="core.echo",
        attempt_status=AttemptStatus.SUCCEEDED,
        parameters={},
        outputs={"echo": node_id},
        error=None,
        start_time=at,
        end_time=at,
        worker="w",
        outcome=Verdict.SUCCEEDED,
        next_attempt_at=None,
        fired=fired,
        **next_steps,
    )


async def test_nothing_starts_or_ends_in_a_record_while_a_cancel_is_pending(db: Database) -> None:
    await publish(db, wf("pending-cancel", echo("a", to("b")), echo("b")))
    execution_id = await start(db, "pending-cancel")
    acquired = await db.runs.acquire(execution_id, owner="w", lease_seconds=30, start=True)
    assert acquired.started == ("a",)
    assert {n.node_id: (n.status, n.attempts) for n in acquired.nodes} == {
        "a": (NodeStatus.RUNNING, 1),
        "b": (NodeStatus.PENDING, 0),
    }
    token = int(acquired.lease_token or 0)
    await db.control.cancel(execution_id, principal="tests", reason=None)
    record = attempt_record(execution_id, token, "a", start_limit=5, complete=True)
    recorded = await db.runs.record_attempt(msgspec.structs.replace(record, fired=(True,)))
    # b is Ready for the worker to see; the worker's loop then takes the cancel.
    assert [(c.node_id, c.status, c.attempt) for c in recorded.changes] == [("b", NodeStatus.READY, None)]
    assert not recorded.run_succeeded
    assert (await db.executions.get(execution_id)).status == "Running"


async def test_a_record_ends_the_run_only_when_every_node_has_ended(db: Database) -> None:
    await publish(db, wf("two-leaves", echo("r", to("a"), to("b")), echo("a"), echo("b")))
    execution_id = await start(db, "two-leaves")
    acquired = await db.runs.acquire(execution_id, owner="w", lease_seconds=30, start=True)
    token = int(acquired.lease_token or 0)
    root = attempt_record(execution_id, token, "r", start_limit=2, complete=True)
    started = await db.runs.record_attempt(msgspec.structs.replace(root, fired=(True, True)))
    assert sorted((c.node_id, c.status, c.attempt) for c in started.changes) == [
        ("a", NodeStatus.RUNNING, 1),
        ("b", NodeStatus.RUNNING, 1),
    ]
    first = await db.runs.record_attempt(attempt_record(execution_id, token, "a", start_limit=1, complete=True))
    assert first.changes == [] and not first.run_succeeded
    assert (await db.executions.get(execution_id)).status == "Running"
    second = await db.runs.record_attempt(attempt_record(execution_id, token, "b", start_limit=1, complete=True))
    assert second.run_succeeded
    assert (await db.executions.get(execution_id)).status == "Succeeded"


async def test_a_node_started_for_a_worker_that_died_is_recorded_interrupted(
    db: Database, conditions: ConditionPool
) -> None:
    await publish(db, wf("died-at-start", echo("a", to("b")), echo("b")))
    execution_id = await start(db, "died-at-start")
    # A worker took the run (starting a) and died before running a's attempt.
    acquired = await db.runs.acquire(execution_id, owner="dead-worker", lease_seconds=30, start=True)
    assert acquired.started == ("a",)
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")
    survivor = make_runtime(db, conditions, worker_id="survivor")
    assert await survivor.run_execution(execution_id) == "Succeeded"
    rows = [(r["node_id"], r["attempt"], r["status"], r["interrupted"]) for r in await attempts(db, execution_id)]
    assert rows == [
        ("a", 1, "RetriableFailure", True),
        ("a", 2, "Succeeded", False),
        ("b", 1, "Succeeded", False),
    ]
    state = await nodes(db, execution_id)
    assert state["a"]["interruptions"] == 1


async def test_the_previous_releases_procedures_start_and_end_nothing(db: Database) -> None:
    await publish(db, wf("old-worker", echo("a", to("b")), echo("b")))
    execution_id = await start(db, "old-worker")
    acquired = await db.fetch_one("try_acquire", id=execution_id, owner="old", lease_seconds=30)
    token = acquired["lease_token"]
    await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="a")
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM dw.record_attempt_v4(%s, %s, 'a', 1, 'core.echo', 'Succeeded', '{}', '{}', NULL,"
            " now(), now(), 'old', 'succeeded', NULL, ARRAY[true], NULL, false)",
            (execution_id, token),
        )
        assert await cur.fetchall() == [("b", "Ready")]
    assert (await nodes(db, execution_id))["b"]["status"] == "Ready"


async def test_outputs_nothing_reads_are_neither_loaded_nor_kept(db: Database, conditions: ConditionPool) -> None:
    big = "x" * 1_000_000
    raw = wf(
        "context-size",
        echo("big", to("small")),
        echo("small", to("last")),
        echo("last", message="small said {{ nodes.small.echo }}"),
    )
    await publish(db, raw)
    plan = (await db.fetch_one("get_plan", id="context-size", version=1))["plan"]
    assert {n["id"]: n["outputsUsed"] for n in plan["nodes"]} == {"big": False, "small": True, "last": False}

    execution_id = await start(db, "context-size")
    acquired = await db.runs.acquire(execution_id, owner="first", lease_seconds=30, start=True)
    token = int(acquired.lease_token or 0)
    first = attempt_record(execution_id, token, "big", start_limit=1)
    await db.runs.record_attempt(msgspec.structs.replace(first, outputs={"echo": big}, fired=(True,)))
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")
    # The next holder reads big's checkpoint without its megabyte.
    again = await db.runs.acquire(execution_id, owner="peek", lease_seconds=0.01)
    assert {n.node_id: n.outputs for n in again.nodes}["big"] is None
    assert (await nodes(db, execution_id))["big"]["outputs"] == {"echo": big}  # still stored

    await asyncio.sleep(0.05)
    survivor = make_runtime(db, conditions, worker_id="survivor")
    assert await survivor.run_execution(execution_id) == "Succeeded"
    outputs = {r["node_id"]: r["outputs"] for r in await attempts(db, execution_id) if r["status"] == "Succeeded"}
    assert outputs["last"] == {"echo": "small said small"}


async def test_a_template_that_reads_every_node_renders_every_nodes_outputs(
    db: Database, conditions: ConditionPool
) -> None:
    """A loop over `nodes.items()` renders in a helper, which got none of the outputs (the call was
    taken for a read of a node named "items"): the node succeeded with an empty message."""
    raw = wf(
        "every-node-read",
        echo("a", to("b")),
        echo("b", to("c")),
        echo("c", message="{% for k, v in nodes.items() %}{{ k }}={{ v.echo }};{% endfor %}{{ nodes.get('a').echo }}"),
    )
    await publish(db, raw)
    execution_id = await start(db, "every-node-read")
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    outputs = {r["node_id"]: r["outputs"] for r in await attempts(db, execution_id) if r["status"] == "Succeeded"}
    assert outputs["c"] == {"echo": "a=a;b=b;a"}


async def test_a_method_of_nodes_reads_every_nodes_outputs(db: Database, conditions: ConditionPool) -> None:
    """`nodes.values`, `nodes['items']` (Jinja looks attributes up first) and `nodes['valueOf']()`
    (Object.prototype's) reach every node without naming one: they were taken for reads of nodes
    named so, and the run went on without the others' outputs (0 nodes counted, b's echo lost)."""
    raw = wf(
        "method-of-nodes",
        echo("a", to("b")),
        echo("b", to("c")),
        echo(
            "c",
            to("t"),
            message="{% set f = nodes.values %}{{ f() | list | length }}/{{ nodes['items']() | list | length }}",
        ),
        {"id": "t", "nodeType": "transform", "parameters": {"expression": "nodes['valueOf']().b.echo"}},
    )
    await publish(db, raw, conditions)
    execution_id = await start(db, "method-of-nodes")
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    outputs = {r["node_id"]: r["outputs"] for r in await attempts(db, execution_id) if r["status"] == "Succeeded"}
    assert outputs["c"] == {"echo": "2/2"}
    assert outputs["t"] == {"value": "b"}


async def test_plans_compiled_before_are_mended_by_the_migration(db: Database, conditions: ConditionPool) -> None:
    """Plans compiled before the release marked the nodes such a name reads as unused (their outputs
    not loaded): migration 0066 marks every node of such a plan used, in the plan and in its runs
    that have not ended. Other plans, and ended runs without an open dead letter, stay as they are."""
    reads_all = wf(
        "old-method-of-nodes",
        echo("a", to("b")),
        echo("b", message="{{ nodes['items']() | list | length }}"),
    )
    names_one = wf("old-names-one", echo("a", to("b")), echo("b", to("c")), echo("c", message="{{ nodes.b.echo }}"))
    for raw in (reads_all, names_one):
        await publish(db, raw, conditions)
    running = await start(db, "old-method-of-nodes")
    ended = await start(db, "old-method-of-nodes")
    other = await start(db, "old-names-one")
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.executions SET status = 'Cancelled', ended_at = now() WHERE id = %s", (ended,))
        # As the earlier release compiled them: a, read through nodes['items'](), taken for unused.
        await conn.execute(
            "UPDATE dw.workflow_plans SET plan = jsonb_set(plan, '{nodes,0,outputsUsed}', 'false')"
            " WHERE workflow_id = 'old-method-of-nodes'"
        )
        await conn.execute(
            "UPDATE dw.node_states s SET outputs_used = false FROM dw.executions e"
            " WHERE e.id = s.execution_id AND e.workflow_id = 'old-method-of-nodes' AND s.node_id = 'a'"
        )
        await conn.execute((ROOT / "sql" / "migrations" / "0066_plans_reading_nodes_methods.sql").read_text("utf-8"))
        cur = await conn.execute(
            "SELECT workflow_id, array_agg((n ->> 'outputsUsed')::boolean ORDER BY n ->> 'id')"
            " FROM dw.workflow_plans, jsonb_array_elements(plan -> 'nodes') n"
            " WHERE workflow_id LIKE 'old-%%' GROUP BY workflow_id ORDER BY workflow_id"
        )
        assert await cur.fetchall() == [("old-method-of-nodes", [True, True]), ("old-names-one", [False, True, False])]
        cur = await conn.execute(
            "SELECT execution_id, node_id, outputs_used FROM dw.node_states"
            " WHERE execution_id = ANY(%s) ORDER BY execution_id, node_id",
            ([running, ended, other],),
        )
        used = {(str(e), n): u for e, n, u in await cur.fetchall()}
    assert used[(str(running), "a")] is True, "a run not ended loads a's outputs now"
    assert used[(str(ended), "a")] is False, "an ended run is left as it was"
    assert (used[(str(other), "a")], used[(str(other), "b")]) == (False, True), "a plan naming its nodes is kept"


@pytest.mark.parametrize(
    "message",
    [
        "{% set f = nodes\n  .values %}{{ f() | list | length }}",
        "{{ nodes[\n'items'\n]() | list | length }}",
        "{% set f = nodes\t.values %}{{ f() | list | length }}",
        "{% set f = nodes\r\n.values %}{{ f() | list | length }}",
    ],
)
async def test_plans_spelling_a_method_of_nodes_across_lines_are_mended(
    db: Database, conditions: ConditionPool, message: str
) -> None:
    """The planner before this release read `nodes`, a method's name and the brackets between
    them across a line break or a tab (Python's \\s), so such a template's plan marked its nodes
    unused too; migration 0066, looking for them with \\s over the plan's JSON text, where a line
    break is the escape \\n, left these plans as they were (a review): it takes the escapes too."""
    await publish(db, wf("old-across-lines", echo("a", to("b")), echo("b", message=message)), conditions)
    running = await start(db, "old-across-lines")
    async with db.connection() as conn:
        # As the earlier release compiled it: a, read through the method, taken for unused.
        await conn.execute(
            "UPDATE dw.workflow_plans SET plan = jsonb_set(plan, '{nodes,0,outputsUsed}', 'false')"
            " WHERE workflow_id = 'old-across-lines'"
        )
        await conn.execute("UPDATE dw.node_states SET outputs_used = false WHERE execution_id = %s", (running,))
        await conn.execute((ROOT / "sql" / "migrations" / "0066_plans_reading_nodes_methods.sql").read_text("utf-8"))
        cur = await conn.execute(
            "SELECT array_agg((n ->> 'outputsUsed')::boolean ORDER BY n ->> 'id')"
            " FROM dw.workflow_plans, jsonb_array_elements(plan -> 'nodes') n WHERE workflow_id = 'old-across-lines'"
        )
        assert await cur.fetchone() == ([True, True],)
        cur = await conn.execute(
            "SELECT bool_and(outputs_used) FROM dw.node_states WHERE execution_id = %s", (running,)
        )
        assert await cur.fetchone() == (True,), "the run not ended loads a's outputs now"
    assert await make_runtime(db, conditions).run_execution(running) == "Succeeded"
    outputs = {r["node_id"]: r["outputs"] for r in await attempts(db, running) if r["status"] == "Succeeded"}
    assert str(outputs["b"]["echo"]) == "1", "b saw a's outputs"


async def test_a_run_that_failed_for_it_and_is_redriven_after_the_migration_reads_every_node(
    db: Database, conditions: ConditionPool
) -> None:
    """The runs that ended Failed for want of the outputs such a name reads are the ones an operator
    redrives once the release is in; migration 0066 left ended runs' nodes unused, so the redriven
    run acquired a's outputs as absent again and t failed as before (a review). It marks them used
    in every run that a redrive can take on (not ended, or ended with an open dead letter)."""
    await publish(
        db,
        wf(
            "old-redriven",
            echo("a", to("t")),
            {"id": "t", "nodeType": "transform", "parameters": {"expression": "nodes['valueOf']().a.echo"}},
        ),
        conditions,
    )
    async with db.connection() as conn:
        # As the earlier release compiled it: a, read through nodes['valueOf'](), taken for unused.
        await conn.execute(
            "UPDATE dw.workflow_plans SET plan = jsonb_set(plan, '{nodes,0,outputsUsed}', 'false')"
            " WHERE workflow_id = 'old-redriven'"
        )
    failed = await start(db, "old-redriven")
    runtime = make_runtime(db, conditions)
    assert await runtime.run_execution(failed) == "Failed", "t read no outputs of a"
    letters = await db.fetch_all("list_dead_letters", open=True, kind=None, before=None, limit=10)
    [letter] = [row for row in letters if row["execution_id"] == failed]
    async with db.connection() as conn:
        await conn.execute((ROOT / "sql" / "migrations" / "0066_plans_reading_nodes_methods.sql").read_text("utf-8"))
    redriven = await db.operations.redrive(letter["id"], principal="ops", queue="executions")
    assert redriven.action == "requeued", redriven
    assert await make_runtime(db, conditions).run_execution(failed) == "Succeeded"
    outputs = {r["node_id"]: r["outputs"] for r in await attempts(db, failed) if r["status"] == "Succeeded"}
    assert outputs["t"] == {"value": "a"}


async def test_what_a_run_keeps_for_its_nodes_is_bounded(db: Database, conditions: ConditionPool) -> None:
    """DW_MAX_RUN_SCOPE_BYTES bounds the outputs a run keeps for its later nodes (a review: 200 nodes
    of 0.9 MB, read by one join, took a worker to 1.4 GB). The node whose outputs would pass it fails
    with run_outputs_too_large, which its failure edge takes; outputs nothing reads do not count; and
    a holder that takes the run over counts what it loads."""
    limit = 1_048_576
    chunk = "x" * 400_000
    raw = wf(
        "scope-bound",
        echo("a", to("unread"), message=chunk),
        # Read by nothing: its 1.2 MB do not count (else b would not fit).
        echo("unread", to("b"), message=chunk * 3),
        echo("b", to("c"), message=chunk),
        echo("c", to("joined"), to("handled", "failure"), message=chunk),
        echo("joined", message="{{ nodes.a.echo | length }} {{ nodes.b.echo | length }} {{ nodes.c.echo | length }}"),
        echo("handled", message="{{ errors.c.code }}: {{ errors.c.details.limit }}"),
    )
    await publish(db, raw)
    runtime = make_runtime(db, conditions, max_run_scope_bytes=limit)
    execution_id = await start(db, "scope-bound")
    assert await runtime.run_execution(execution_id) == "Succeeded"
    expected = {"a": "Succeeded", "unread": "Succeeded", "b": "Succeeded", "c": "Failed", "joined": "Skipped"}
    states = await nodes(db, execution_id)
    assert {n: states[n]["status"] for n in expected} == expected
    error = states["c"]["error"]
    assert error["code"] == "run_outputs_too_large" and "DW_MAX_RUN_SCOPE_BYTES" in error["message"], error
    assert error["details"]["limit"] == limit and error["details"]["bytes"] > 400_000
    assert states["c"]["outputs"] is None, "the outputs that did not fit are not stored"
    outputs = {r["node_id"]: r["outputs"] for r in await attempts(db, execution_id) if r["status"] == "Succeeded"}
    assert outputs["handled"] == {"echo": f"run_outputs_too_large: {limit}"}

    # Another holder takes over a run whose a and b another worker ran: it counts what it loads.
    taken_over = await start(db, "scope-bound")
    acquired = await db.runs.acquire(taken_over, owner="first", lease_seconds=30, start=True)
    token = int(acquired.lease_token or 0)
    for node_id, message in (("a", chunk), ("unread", chunk * 3), ("b", chunk)):
        record = attempt_record(taken_over, token, node_id, fired=(True,), start_limit=1)
        await db.runs.record_attempt(msgspec.structs.replace(record, outputs={"echo": message}))
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second' WHERE id = %s", (taken_over,)
        )
    survivor = make_runtime(db, conditions, worker_id="survivor", max_run_scope_bytes=limit)
    assert await survivor.run_execution(taken_over) == "Succeeded"
    states = await nodes(db, taken_over)
    assert (states["c"]["status"], states["c"]["error"]["code"]) == ("Failed", "run_outputs_too_large")
    # Parallel branches: each one's outputs are counted from its check, not from its record's end
    # (a review: ten branches of 600 kB all passed the check first and kept 6 MB against 1 MiB).
    await publish(
        db,
        wf(
            "scope-parallel",
            echo("s", to("p1"), to("p2"), to("p3")),
            *(echo(f"p{i}", to("j", "always"), message=chunk) for i in (1, 2, 3)),
            echo("j", message="{{ nodes.p1 is defined }} {{ nodes.p2 is defined }} {{ nodes.p3 is defined }}"),
            maxParallelActions=3,
        ),
    )
    parallel = await start(db, "scope-parallel")
    assert await runtime.run_execution(parallel) in ("Succeeded", "Failed")
    states = await nodes(db, parallel)
    codes = sorted((states[f"p{i}"]["error"] or {}).get("code", "ok") for i in (1, 2, 3))
    assert codes == ["ok", "ok", "run_outputs_too_large"], codes
    # With room for them, the same nodes succeed.
    roomy = make_runtime(db, conditions, max_run_scope_bytes=4 * limit)
    plain = await start(db, "scope-bound")
    assert await roomy.run_execution(plain) == "Succeeded"
    assert (await nodes(db, plain))["joined"]["status"] == "Succeeded"


# -- The fetch takes the lease; the last record ends the job (dw.fetch_run_jobs_v2, record_attempt_v6) --


@contextlib.asynccontextmanager
async def job_manager(
    db: Database, owner: str = "fetcher", *, batch: int = 1, slots: int = 1
) -> AsyncIterator[tuple[ResilientJobManager, int]]:
    """A worker's job manager on the test database's pool, taking leases with its fetches (up to
    `batch` jobs a fetch, for a fetch loop of `slots` slots), and the id of the Procrastinate worker
    it fetches for."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())
    async with app.open_async(pool=db.pool):
        lease = LeaseWithFetch(owner=owner, lease_seconds=30.0, start=lambda: True, batch=batch, slots=slots)
        manager = ResilientJobManager(app.connector, asyncio.Event(), lease)
        yield manager, await manager.register_worker()


async def fetch_losing_its_answers(manager: ResilientJobManager, worker_id: int, limit: int) -> list[dict[str, Any]]:
    """The worker's fetch of up to `limit` jobs, whose answer never reaches the job manager (lost
    with its connection)."""
    return await fetch_run_jobs(
        manager.connector,
        queues=["executions"],
        worker_id=worker_id,
        run_task=RUN_EXECUTION_TASK,
        owner="fetcher",
        lease_seconds=30.0,
        start=True,
        limit=limit,
    )


async def fetch_losing_its_answer(manager: ResilientJobManager, worker_id: int) -> dict[str, Any]:
    """The same, of one job."""
    [row] = await fetch_losing_its_answers(manager, worker_id, 1)
    return row


async def fetch_with_lease(manager: ResilientJobManager, worker_id: int) -> tuple[jobs.Job, Acquired]:
    """The next job, and the lease its fetch took (dw.fetch_run_jobs_v2), as the run task takes it."""
    job = await manager.fetch_job(["executions"], worker_id)
    assert job is not None and job.id is not None
    return job, acquired_from_row(manager.take_acquired(job.id) or {})


async def queued_jobs(db: Database) -> list[dict[str, Any]]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT id, status::text, task_name, args FROM procrastinate_jobs ORDER BY id")
        return [dict(zip(("id", "status", "task", "args"), row, strict=True)) for row in await cur.fetchall()]


async def test_a_two_node_run_costs_the_fetch_and_two_records(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(db, wf("two", echo("a", to("b")), echo("b")))
    execution_id = await start(db, "two")
    runtime = make_runtime(db, conditions, worker_id="fetcher", lease_seconds=30.0)
    async with job_manager(db) as (manager, worker_id):
        runtime.job_finished = manager.ended_in_record.add
        job = await manager.fetch_job(["executions"], worker_id)
        assert job is not None and job.task_kwargs["execution_id"] == str(execution_id)
        assert job.worker_id == worker_id
        # The fetch took the lease and started the first node, in its own transaction.
        row = await db.fetch_one("get_execution", id=execution_id)
        assert row is not None and row["status"] == "Running" and row["lease_owner"] == "fetcher"
        assert (await nodes(db, execution_id))["a"]["status"] == "Running"
        lease = manager.take_acquired(int(job.id or 0))
        assert lease is not None and lease["outcome"] == "acquired" and lease["started"] == ["a"]

        calls = count_calls(db, monkeypatch)
        outcome = await runtime.run_execution(
            execution_id, acquired=acquired_from_row(lease), job_id=job.id, job_worker=job.worker_id
        )
        assert outcome == "Succeeded"
        assert calls == Counter({"record_attempt": 2}), "no acquire of its own, no completion of its own"
        # The last record ended the run and its job: nothing is left for the job manager to write.
        assert job.id in manager.ended_in_record
        assert await queued_jobs(db) == []
        await manager.finish_job(job, jobs.Status.SUCCEEDED, delete_job=True)
        assert manager.ended_in_record == set() and manager.in_hand[worker_id] == set()
    assert await events(db, execution_id) == [
        "execution_requested",
        "execution_started",
        "node_started",
        "node_succeeded",
        "node_started",
        "node_succeeded",
        "execution_succeeded",
    ]


async def test_a_run_that_parks_ends_its_job_in_the_same_transaction(db: Database, conditions: ConditionPool) -> None:
    """No window in which a worker killed after parking leaves its job 'doing' (which kept the run's
    wake-up waiting until recovery found the worker dead)."""
    raw = wf("parks", {"id": "nap", "nodeType": "delay", "parameters": {"duration": "PT1H"}})
    await publish(db, raw)
    execution_id = await start(db, "parks")
    runtime = make_runtime(db, conditions, worker_id="fetcher", lease_seconds=30.0)
    async with job_manager(db) as (manager, worker_id):
        runtime.job_finished = manager.ended_in_record.add
        job, lease = await fetch_with_lease(manager, worker_id)
        assert await runtime.run_execution(execution_id, acquired=lease, job_id=job.id, job_worker=job.worker_id) == (
            "parked"
        )
        assert job.id in manager.ended_in_record
        assert await queued_jobs(db) == [], "the job ended with the park; the wake-up is the waker's, in an hour"
        await manager.finish_job(job, jobs.Status.SUCCEEDED, delete_job=True)
        assert manager.ended_in_record == set()
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None and execution["status"] == "Waiting"


@pytest.mark.parametrize(
    ("workflow_id", "second", "outcome"),
    [
        # The run has outputs to render: its last record leaves the end to the completion.
        ("ends-with-outputs", echo("b"), "Succeeded"),
        # A node fails unhandled: the completion fails the run (and dead-letters the node).
        ("ends-failed", echo("b", simulateFailure="permanent"), "Failed"),
    ],
)
async def test_a_run_that_completes_ends_its_job_in_the_same_transaction(
    db: Database,
    conditions: ConditionPool,
    monkeypatch: pytest.MonkeyPatch,
    workflow_id: str,
    second: dict[str, Any],
    outcome: str,
) -> None:
    """dw.complete_execution_v4 ends the job as the last record and the park do: no transaction of
    its own, and no window in which a killed worker leaves it 'doing' for an ended run."""
    raw = wf(workflow_id, echo("a", to("b")), second)
    if outcome == "Succeeded":
        raw["outputs"] = {"said": "{{ nodes.b.echo }}"}
    await publish(db, raw)
    execution_id = await start(db, workflow_id)
    runtime = make_runtime(db, conditions, worker_id="fetcher", lease_seconds=30.0)
    async with job_manager(db) as (manager, worker_id):
        runtime.job_finished = manager.ended_in_record.add
        job, lease = await fetch_with_lease(manager, worker_id)
        calls = count_calls(db, monkeypatch)
        assert await runtime.run_execution(execution_id, acquired=lease, job_id=job.id, job_worker=job.worker_id) == (
            outcome
        )
        assert calls == Counter({"record_attempt": 2, "complete": 1})
        assert job.id in manager.ended_in_record
        assert await queued_jobs(db) == [], "the job ended with the run"
        await manager.finish_job(job, jobs.Status.SUCCEEDED, delete_job=True)
        assert manager.ended_in_record == set() and manager.in_hand[worker_id] == set()
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None and execution["status"] == outcome


async def test_a_completion_leaves_a_job_another_worker_holds_alone(db: Database) -> None:
    await publish(db, wf("completes-alone", echo("a")))
    execution_id = await start(db, "completes-alone")
    async with job_manager(db) as (manager, worker_id):
        job, lease = await fetch_with_lease(manager, worker_id)
        # Another Procrastinate worker's id: the job is not this completion's to end.
        ended = await db.runs.complete(
            execution_id,
            int(lease.lease_token or 0),
            status=ExecutionStatus.CANCELLED,
            error=None,
            job_id=job.id,
            job_worker=worker_id + 1,
        )
        assert not ended
        assert [j["status"] for j in await queued_jobs(db)] == ["doing"]
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None and execution["status"] == "Cancelled"


async def test_an_operators_cancel_or_suspend_ends_the_runs_job_and_a_withdrawn_one_does_not(db: Database) -> None:
    """dw.cancel_execution_v3 and dw.suspend_execution_v2 end the job as a record, a park and a
    completion do; a suspension withdrawn meanwhile leaves it (the run goes on under it)."""
    await publish(db, wf("controlled", echo("a", to("b")), echo("b")))
    ids = [await start(db, "controlled") for _ in range(3)]
    async with job_manager(db) as (manager, worker_id):
        held = {}
        for _ in ids:
            job, lease = await fetch_with_lease(manager, worker_id)
            held[UUID(job.task_kwargs["execution_id"])] = (job.id, int(lease.lease_token or 0))
        cancelled, suspended, withdrawn = ids

        await db.control.cancel(cancelled, principal="ops", reason=None)
        job_id, token = held[cancelled]
        cancellation = await db.runs.cancel(cancelled, token, job_id=job_id, job_worker=worker_id)
        assert (cancellation.outcome, cancellation.job_finished) == ("cancelled", True)

        await db.control.suspend(suspended, principal="ops", reason=None)
        job_id, token = held[suspended]
        suspension = await db.runs.suspend(suspended, token, worker="w", job_id=job_id, job_worker=worker_id)
        assert (suspension.outcome, suspension.job_finished) == ("suspended", True)

        await db.control.suspend(withdrawn, principal="ops", reason=None)
        await db.control.resume(withdrawn, principal="ops", queue="executions")
        job_id, token = held[withdrawn]
        suspension = await db.runs.suspend(withdrawn, token, worker="w", job_id=job_id, job_worker=worker_id)
        assert (suspension.outcome, suspension.job_finished) == ("withdrawn", False)

        assert [(j["id"], j["status"]) for j in await queued_jobs(db)] == [(held[withdrawn][0], "doing")]
    statuses = {i: (await db.fetch_one("get_execution", id=i) or {})["status"] for i in ids}
    assert statuses == {cancelled: "Cancelled", suspended: "Suspended", withdrawn: "Running"}


async def test_a_record_that_does_not_end_the_run_leaves_its_job_alone(db: Database) -> None:
    await publish(db, wf("two-more", echo("a", to("b")), echo("b")))
    execution_id = await start(db, "two-more")
    async with job_manager(db) as (manager, worker_id):
        job, lease = await fetch_with_lease(manager, worker_id)
        token = int(lease.lease_token or 0)
        # A record that asks to end the run when it cannot (b is still to run) ends nothing.
        first = attempt_record(execution_id, token, "a", complete=True, finish_job=job.id, job_worker=worker_id)
        recorded = await db.runs.record_attempt(msgspec.structs.replace(first, fired=(True,)))
        assert not recorded.run_succeeded and not recorded.job_finished
        assert [j["status"] for j in await queued_jobs(db)] == ["doing"]
        # b's record ends the run, and the job with it.
        await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="b")
        last = attempt_record(execution_id, token, "b", complete=True, finish_job=job.id, job_worker=worker_id)
        recorded = await db.runs.record_attempt(last)
        assert recorded.run_succeeded and recorded.job_finished
        assert await queued_jobs(db) == []


async def test_a_job_another_worker_holds_is_not_ended_by_the_record(db: Database) -> None:
    await publish(db, wf("one-taken", echo("a")))
    execution_id = await start(db, "one-taken")
    async with job_manager(db) as (manager, worker_id):
        job, lease = await fetch_with_lease(manager, worker_id)
        other = await manager.register_worker()
        async with db.connection() as conn:
            # Recovery took the job back from a worker it took for dead, and another fetched it.
            await conn.execute("UPDATE procrastinate_jobs SET worker_id = %s", (other,))
        record = attempt_record(
            execution_id, int(lease.lease_token or 0), "a", complete=True, finish_job=job.id, job_worker=worker_id
        )
        recorded = await db.runs.record_attempt(record)
        assert recorded.run_succeeded and not recorded.job_finished
        assert [(j["status"], j["task"]) for j in await queued_jobs(db)] == [("doing", "dw.run_execution")]


async def test_jobs_the_fetch_takes_no_lease_for(db: Database) -> None:
    await publish(db, wf("plain", echo("a")))
    execution_id = await start(db, "plain")
    async with db.connection() as conn:
        # Another task, and a run job of an earlier release (no tenant in its arguments).
        await conn.execute(
            "UPDATE procrastinate_jobs SET args = args - 'tenant_id', priority = 1",
        )
        await conn.execute(
            "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('executions', 'dw.cancel_children', 2, NULL, NULL,"
            " jsonb_build_object('parent_execution_id', %s::text), NULL)::procrastinate_job_to_defer_v1])",
            (str(execution_id),),
        )
    async with job_manager(db) as (manager, worker_id):
        first = await manager.fetch_job(["executions"], worker_id)
        second = await manager.fetch_job(["executions"], worker_id)
        assert first is not None and first.task_name == "dw.cancel_children"  # the higher priority
        assert second is not None and second.task_name == "dw.run_execution"
        assert manager.acquired == {}
    row = await db.fetch_one("get_execution", id=execution_id)
    assert row is not None and row["status"] == "Pending" and row["lease_owner"] is None


async def test_a_fetch_whose_acquire_fails_hands_out_the_job_alone(db: Database, dsn: str) -> None:
    await publish(db, wf("refused", echo("a")))
    execution_id = await start(db, "refused")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The acquire raises (an engine bug, a storage error) when the fetch runs it.
        conn.execute(
            """
            CREATE FUNCTION public.refuse_in_fetch() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF strpos(current_query(), 'fetch_run_job') > 0 THEN
                    RAISE EXCEPTION 'refused for the test';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON dw.execution_events
                FOR EACH ROW EXECUTE FUNCTION public.refuse_in_fetch();
            """
        )
    async with job_manager(db) as (manager, worker_id):
        job = await manager.fetch_job(["executions"], worker_id)
        # Rolled back, then fetched as Procrastinate fetches: the job's task acquires (and meets
        # the error, if it persists, where the job's failure is recorded).
        assert job is not None and job.task_kwargs["execution_id"] == str(execution_id)
        assert manager.acquired == {}
        assert [j["status"] for j in await queued_jobs(db)] == ["doing"]
    row = await db.fetch_one("get_execution", id=execution_id)
    assert row is not None and row["status"] == "Pending" and row["lease_owner"] is None


async def test_the_fetch_hands_out_jobs_in_procrastinates_order(db: Database) -> None:
    """dw.fetch_job_v1 is procrastinate_fetch_job_v2's query with a fixed plan: same jobs, same order, in
    rounds (every job due is fetched, then those are finished): priority, then age; a job whose lock
    another job holds ('doing') or an earlier one of the same priority waits; a scheduled job waits;
    queues NULL takes every queue."""
    defer = (
        "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(%s, %s, %s, %s, NULL, '{}'::jsonb,"
        " %s::timestamptz)::procrastinate_job_to_defer_v1])"
    )
    spec = [
        ("q", "low", 0, None, None),
        ("q", "high", 5, None, None),
        ("q", "locked-first", 1, "L", None),
        ("q", "locked-second", 3, "L", None),
        ("q", "same-lock-1", 2, "M", None),
        ("q", "same-lock-2", 2, "M", None),
        ("q", "later", 9, None, "2999-01-01T00:00:00Z"),
        ("q", "low-2", 0, None, None),
        ("elsewhere", "other-queue", 9, None, None),
    ]

    async def rounds(function: str, queues: str) -> list[list[str]]:
        async with db.connection() as conn:
            await conn.execute("DELETE FROM procrastinate_jobs")
            for job in spec:
                await conn.execute(defer, job)
            order: list[list[str]] = []
            while True:
                fetched: list[str] = []
                while True:
                    cur = await conn.execute(f"SELECT task_name FROM {function}({queues}, NULL)")
                    row = await cur.fetchone()
                    if row is None or row[0] is None:
                        break
                    fetched.append(row[0])
                if not fetched:
                    return order
                order.append(fetched)
                # Those end, so that their locks' next jobs may go.
                await conn.execute(
                    "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE task_name = ANY(%s)", (fetched,)
                )

    for queues in ("ARRAY['q']::varchar[]", "ARRAY['q', 'elsewhere']::varchar[]", "NULL"):
        ours = await rounds("dw.fetch_job_v1", queues)
        assert ours == await rounds("procrastinate_fetch_job_v2", queues), queues
    assert await rounds("dw.fetch_job_v1", "ARRAY['q']::varchar[]") == [
        ["high", "locked-second", "same-lock-1", "low", "low-2"],
        ["same-lock-2", "locked-first"],
    ]
    assert (await rounds("dw.fetch_job_v1", "NULL"))[0][0] == "other-queue"


async def test_a_fetch_of_one_queue_walks_that_queues_jobs_only(db: Database) -> None:
    """A backlog on another queue (its workers away) is not passed over by every fetch of this one: a
    fetch of one queue reads its own entries of dw_procrastinate_jobs_queue_todo_idx (migration 0035)
    and none of Procrastinate's priority index, which holds every queue's jobs. The index's predicate,
    `status <= 'todo'`, is `status = 'todo'` as long as 'todo' is the first value of the status type."""
    async with db.connection() as conn:
        cur = await conn.execute("SELECT (enum_range(NULL::procrastinate_job_status))[1]::text")
        assert await cur.fetchone() == ("todo",)
        await conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, priority)"
            " SELECT 'elsewhere', 'backlog', '{}', 5 FROM generate_series(1, 500)"
        )
        await conn.execute("INSERT INTO procrastinate_jobs (queue_name, task_name, args) VALUES ('q', 'mine', '{}')")
        read = (
            "SELECT pg_stat_get_xact_tuples_returned('procrastinate_jobs_priority_idx_v1'::regclass),"
            " pg_stat_get_xact_tuples_returned('dw_procrastinate_jobs_queue_todo_idx'::regclass)"
        )
        async with conn.transaction():
            assert await (await conn.execute(read)).fetchone() == (0, 0)
            cur = await conn.execute("SELECT task_name FROM dw.fetch_job_v1(ARRAY['q']::varchar[], NULL)")
            assert await cur.fetchone() == ("mine",)
            cur = await conn.execute("SELECT task_name FROM dw.fetch_job_v1(ARRAY['q']::varchar[], NULL)")
            assert await cur.fetchone() == (None,)
            # Its own queue's one entry, read by each fetch (the second finds it taken).
            priority_index, queue_index = await (await conn.execute(read)).fetchone() or (None, None)
            assert priority_index == 0 and queue_index is not None and 1 <= queue_index <= 2


async def test_a_fetch_whose_answer_was_lost_gives_the_lease_back(db: Database) -> None:
    await publish(db, wf("lost", echo("a")))
    execution_id = await start(db, "lost")
    async with job_manager(db) as (manager, worker_id):
        # The fetch commits (job 'doing', lease taken, node a started), but its answer is lost with
        # its connection: the manager never saw it.
        row = await fetch_losing_its_answer(manager, worker_id)
        assert row["outcome"] == "acquired"
        # What fetch_job does on its next try after a lost answer: the job goes back to the queue,
        # and the lease with it.
        await manager._requeue_lost_fetches(worker_id)
        assert [j["status"] for j in await queued_jobs(db)] == ["todo"]
        execution = await db.fetch_one("get_execution", id=execution_id)
        assert execution is not None and execution["lease_owner"] is None
        job = await manager.fetch_job(["executions"], worker_id)
        assert job is not None and job.id is not None
        lease = manager.take_acquired(job.id)
        assert lease is not None and lease["outcome"] == "acquired"
    assert "execution_released" in await events(db, execution_id)


async def test_a_batch_whose_answer_was_lost_gives_back_every_job_and_lease(db: Database) -> None:
    await publish(db, wf("lost-batch", echo("a")))
    started = [await start(db, "lost-batch") for _ in range(3)]
    async with job_manager(db, batch=3, slots=3) as (manager, worker_id):
        rows = await fetch_losing_its_answers(manager, worker_id, 3)
        assert [row["outcome"] for row in rows] == ["acquired"] * 3
        await manager._requeue_lost_fetches(worker_id)
        assert [j["status"] for j in await queued_jobs(db)] == ["todo"] * 3
        for execution_id in started:
            execution = await db.fetch_one("get_execution", id=execution_id)
            assert execution is not None and execution["lease_owner"] is None
        fetched = [await manager.fetch_job(["executions"], worker_id) for _ in range(3)]
        assert all(job is not None and manager.acquired[job.id or 0]["outcome"] == "acquired" for job in fetched)


async def test_a_lost_answer_never_gives_back_a_lease_another_fetch_took(db: Database) -> None:
    """Two jobs for one run (a wake-up and a re-queue, say) fetched by two fetch loops of one process:
    the lease belongs to the fetch that took it; the other's lost answer gives back nothing."""
    await publish(db, wf("two-jobs", echo("a")))
    execution_id = await start(db, "two-jobs")
    async with job_manager(db) as (manager, first_loop), db.connection() as conn:
        await conn.execute("SELECT dw.defer_run_job_v1(%s, 'executions', NULL)", (execution_id,))
        second_loop = await manager.register_worker()
        taker = await manager.fetch_job(["executions"], first_loop)
        assert taker is not None and taker.id is not None
        lease = manager.acquired[taker.id]
        assert lease["outcome"] == "acquired"
        # The second loop's fetch finds the run held, and its answer is lost.
        row = await fetch_losing_its_answer(manager, second_loop)
        assert row["outcome"] == "held"
        await manager._requeue_lost_fetches(second_loop)
        execution = await db.fetch_one("get_execution", id=execution_id)
        assert execution is not None and execution["lease_owner"] == "fetcher", "still the first fetch's"
        assert "execution_released" not in await events(db, execution_id)


async def test_a_lost_answers_lease_is_given_back_before_its_job_is_queued(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued first, the job could be fetched (and end, the run 'held') before the lease is free: the
    run would be left with neither a lease nor a job."""
    await publish(db, wf("order", echo("a")))
    execution_id = await start(db, "order")
    owners_when_queued: list[Any] = []
    original = procrastinate.manager.JobManager.retry_job

    async def retry_job(self: Any, job: Any, *args: Any, **kwargs: Any) -> None:
        execution = await db.fetch_one("get_execution", id=execution_id)
        owners_when_queued.append(execution["lease_owner"] if execution else "?")
        await original(self, job, *args, **kwargs)

    monkeypatch.setattr(procrastinate.manager.JobManager, "retry_job", retry_job)
    async with job_manager(db) as (manager, worker_id):
        row = await fetch_losing_its_answer(manager, worker_id)
        assert row["outcome"] == "acquired"
        await manager._requeue_lost_fetches(worker_id)
    assert owners_when_queued == [None]


async def test_a_fetch_never_waits_for_a_locked_execution(db: Database) -> None:
    """The fetch holds the job's row; whoever holds the execution's row may want the job's (a run's
    end deletes its queued jobs): the fetch takes the job without the lease rather than wait."""
    await publish(db, wf("locked", echo("a")))
    execution_id = await start(db, "locked")
    async with job_manager(db) as (manager, worker_id), db.connection() as conn:
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (execution_id,))
        job = await asyncio.wait_for(manager.fetch_job(["executions"], worker_id), 5)
        assert job is not None and manager.acquired == {}, "the job, without a lease: its task acquires"
        await conn.execute("ROLLBACK")
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None and execution["status"] == "Pending" and execution["lease_owner"] is None


async def test_a_job_that_ends_before_its_task_took_the_lease_gives_it_back(db: Database) -> None:
    await publish(db, wf("untaken", echo("a")))
    execution_id = await start(db, "untaken")
    async with job_manager(db) as (manager, worker_id):
        job = await manager.fetch_job(["executions"], worker_id)
        assert job is not None and job.id is not None and job.id in manager.acquired
        # Its task was cancelled before it began: Procrastinate ends the job.
        await manager.finish_job(job, jobs.Status.ABORTED, delete_job=False)
        assert manager.acquired == {}
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None and execution["lease_owner"] is None
    # The run is queued again, to be taken at once rather than after its lease expires.
    queued = [(j["status"], j["args"]["execution_id"]) for j in await queued_jobs(db)]
    assert ("todo", str(execution_id)) in queued


def count_fetches(manager: ResilientJobManager, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The `limit` of every batched fetch the manager's connector runs, in order."""
    limits: list[int] = []
    original = manager.connector.execute_query_all_async

    async def counted(query: str, **arguments: Any) -> list[dict[str, Any]]:
        if "dw.fetch_run_jobs_v2" in query:
            limits.append(arguments["limit"])
        return await original(query, **arguments)

    monkeypatch.setattr(manager.connector, "execute_query_all_async", counted)
    return limits


async def test_one_fetch_takes_a_batch_of_jobs_each_with_its_lease(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to DW_WORKER_FETCH_BATCH jobs in one transaction: the loop gets the first at once and the
    others on its next turns without a round trip; each run's lease was taken and its first node
    started by that one fetch, and each runs to its end under that lease."""
    await publish(db, wf("batched", echo("a", to("b")), echo("b")))
    started = [await start(db, "batched") for _ in range(5)]
    runtime = make_runtime(db, conditions, worker_id="fetcher", lease_seconds=30.0)
    async with job_manager(db, batch=4, slots=10) as (manager, worker_id):
        runtime.job_finished = manager.ended_in_record.add
        limits = count_fetches(manager, monkeypatch)
        fetched = [await manager.fetch_job(["executions"], worker_id) for _ in range(5)]
        assert limits == [4, 4], "one fetch for the first four jobs, a second for the fifth"
        assert [j.task_kwargs["execution_id"] for j in fetched if j is not None] == [str(e) for e in started]
        assert manager.in_hand[worker_id] == {j.id for j in fetched if j is not None}
        for job in fetched:
            assert job is not None and job.id is not None and job.worker_id == worker_id
            lease = manager.take_acquired(job.id)
            assert lease is not None and lease["outcome"] == "acquired" and lease["started"] == ["a"]
            outcome = await runtime.run_execution(
                UUID(job.task_kwargs["execution_id"]),
                acquired=acquired_from_row(lease),
                job_id=job.id,
                job_worker=job.worker_id,
            )
            assert outcome == "Succeeded"
            await manager.finish_job(job, jobs.Status.SUCCEEDED, delete_job=True)
        assert await manager.fetch_job(["executions"], worker_id) is None
    assert await queued_jobs(db) == []
    for execution_id in started:
        assert [(r["node_id"], r["attempt"]) for r in await attempts(db, execution_id)] == [("a", 1), ("b", 1)]


async def test_a_fetch_takes_no_more_jobs_than_the_loop_has_free_slots(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(db, wf("slots", echo("a")))
    for _ in range(6):
        await start(db, "slots")
    async with job_manager(db, batch=10, slots=3) as (manager, worker_id):
        limits = count_fetches(manager, monkeypatch)
        first = [await manager.fetch_job(["executions"], worker_id) for _ in range(3)]
        assert limits == [3], "three free slots: three jobs"
        # Two of the three end; the loop asks again with three jobs in hand less the two ended.
        for job in first[:2]:
            assert job is not None
            await manager.finish_job(job, jobs.Status.ABORTED, delete_job=False)
        await manager.fetch_job(["executions"], worker_id)
        assert limits == [3, 2]
        doing = [j for j in await queued_jobs(db) if j["status"] == "doing"]
        assert len(doing) == 3, "never more jobs taken than slots"


async def test_a_stopping_loop_gives_back_the_jobs_it_fetched_and_never_ran(
    db: Database, conditions: ConditionPool
) -> None:
    """Procrastinate's loop stops asking once a stop is requested: jobs its last batch took and it
    never asked for go back to the queue, their leases given back first; another worker runs them
    (their first nodes, started by the fetch, as interrupted attempts not counted)."""
    await publish(db, wf("given-back", echo("a", to("b")), echo("b")))
    started = [await start(db, "given-back") for _ in range(3)]
    async with job_manager(db, batch=3, slots=3) as (manager, worker_id):
        first = await manager.fetch_job(["executions"], worker_id)
        assert first is not None and first.id is not None and len(manager.fetched[worker_id]) == 2
        await manager.finish_job(first, jobs.Status.ABORTED, delete_job=True)  # its task was cancelled
        await manager.unregister_worker(worker_id)
        assert manager.fetched == {} and manager.acquired == {}
    assert sorted(j["status"] for j in await queued_jobs(db)) == ["todo", "todo", "todo"]
    for execution_id in started:
        row = await db.fetch_one("get_execution", id=execution_id)
        assert row is not None and row["lease_owner"] is None
        assert "execution_released" in await events(db, execution_id)
    survivor = make_runtime(db, conditions, worker_id="survivor")
    for execution_id in started:
        assert await survivor.run_execution(execution_id) == "Succeeded"
        counted = [(r["node_id"], r["status"]) for r in await attempts(db, execution_id) if not r["interrupted"]]
        assert counted == [("a", "Succeeded"), ("b", "Succeeded")]


async def test_a_stopping_worker_hands_its_loop_the_jobs_it_fetched_before_stopping_it(db: Database) -> None:
    """On stop the loop first gets the jobs its last fetch took (their first nodes are in flight, so
    they run); what it cannot take in time (every slot busy) goes back to the queue at once, and no
    new job is fetched."""
    await publish(db, wf("handed-out", echo("a")))
    for _ in range(5):
        await start(db, "handed-out")
    async with job_manager(db, batch=3, slots=3) as (manager, worker_id):
        first = await manager.fetch_job(["executions"], worker_id)
        assert first is not None and len(manager.fetched[worker_id]) == 2
        manager.stop.set()
        handing = asyncio.create_task(manager.hand_out_fetched(worker_id, 5.0))
        await asyncio.sleep(0.05)
        assert not handing.done(), "it waits for the loop to take them"
        rest = [await manager.fetch_job(["executions"], worker_id) for _ in range(2)]
        assert all(job is not None and job.id in manager.acquired for job in rest)
        await asyncio.wait_for(handing, 1.0)
        assert await manager.fetch_job(["executions"], worker_id) is None, "stopping: nothing new is fetched"
        assert sorted(j["status"] for j in await queued_jobs(db)) == ["doing"] * 3 + ["todo"] * 2

        # Another loop, whose slots stay busy: its fetched jobs go back once the time is up.
        manager.stop.clear()
        busy_loop = await manager.register_worker()
        await manager.fetch_job(["executions"], busy_loop)
        assert len(manager.fetched[busy_loop]) == 1
        manager.stop.set()
        await asyncio.wait_for(manager.hand_out_fetched(busy_loop, 0.05), 1.0)
        assert busy_loop not in manager.fetched
        assert sorted(j["status"] for j in await queued_jobs(db)) == ["doing"] * 4 + ["todo"]


async def test_the_previous_releases_fetch_still_answers_as_it_did(db: Database) -> None:
    """dw.fetch_run_job_v1, which a worker of the release before batched fetches calls during a rolling
    upgrade: one job and its lease, or one row of NULLs when no job is due."""
    await publish(db, wf("old-worker", echo("a")))
    execution_id = await start(db, "old-worker")
    query = (
        "SELECT (f.job).id, f.outcome, f.started FROM dw.fetch_run_job_v1(ARRAY['executions']::varchar[], NULL,"
        " 'dw.run_execution', 'old-worker', 30, true) f"
    )
    async with db.connection() as conn:
        cur = await conn.execute(query)
        [(job_id, outcome, started)] = await cur.fetchall()
        assert job_id is not None and outcome == "acquired" and started == ["a"]
        cur = await conn.execute(query)
        assert await cur.fetchall() == [(None, None, None)]
    row = await db.fetch_one("get_execution", id=execution_id)
    assert row is not None and row["lease_owner"] == "old-worker"


def test_only_a_broken_connection_is_retried_as_one() -> None:
    """A refused statement (a deadlock, a serialization failure: OperationalErrors with their own
    SQLSTATE) makes the fetch fall back to Procrastinate's; a broken connection is retried."""

    def error(sqlstate: str | None) -> psycopg.OperationalError:
        exc = psycopg.OperationalError("x")
        exc.sqlstate = sqlstate  # type: ignore[misc]
        return exc

    assert not connection_broken(error("40P01")) and not connection_broken(error("40001"))
    assert not connection_broken(error("57014"))  # statement_timeout
    assert connection_broken(error("08006")) and connection_broken(error("57P01"))
    assert connection_broken(error(None)), "the client's own: the connection is closed"
    assert connection_broken(psycopg_pool.PoolTimeout("no connection"))


async def test_a_job_whose_fetch_lost_its_answer_goes_back_at_its_runs_priority(db: Database) -> None:
    """The run's priority changed while the job was 'doing' for a fetch whose answer was lost (jobs 0:
    the change left it); handed back to the queue, it takes the run's priority, not its old one."""
    await publish(db, wf("lost-priority", echo("a")))
    execution_id = await start(db, "lost-priority")
    async with job_manager(db) as (manager, worker_id):
        row = await fetch_losing_its_answer(manager, worker_id)
        assert row["outcome"] == "acquired"
        change = await db.control.set_priority(UUID(str(execution_id)), 60, principal="ops")
        assert (change.changed, change.jobs) == (True, 0)
        await manager._requeue_lost_fetches(worker_id)
        async with db.connection() as conn:
            cur = await conn.execute("SELECT status::text, priority FROM procrastinate_jobs")
            assert await cur.fetchall() == [("todo", 60)]

"""The stored procedures' invariants, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from dataworkflows import errors
from dataworkflows.db import Database
from dataworkflows.migrations import migrate
from dataworkflows.statuses import ExecutionStatus
from tests.conftest import load_fixture, publish, record, start


async def _jobs(db: Database, execution_id: object) -> list[dict]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT task_name, status, queue_name, scheduled_at FROM procrastinate_jobs"
            " WHERE args->>'execution_id' = %s",
            (str(execution_id),),
        )
        return [
            dict(zip(["task_name", "status", "queue_name", "scheduled_at"], r, strict=True))
            for r in await cur.fetchall()
        ]


async def _sql(db: Database, query: str, *params: object) -> list[tuple]:
    async with db.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def test_start_defers_the_run_job_in_the_same_transaction(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo", {"userId": "u"})
    jobs = await _jobs(db, execution_id)
    assert jobs == [
        {"task_name": "dw.run_execution", "status": "todo", "queue_name": "executions", "scheduled_at": None}
    ]
    states = await db.fetch_all("list_node_states", id=execution_id)
    assert [(s["node_id"], s["status"], s["expected_incoming"]) for s in states] == [
        ("echo1", "Ready", 0),
        ("echo2", "Pending", 1),
    ]
    events = await db.fetch_all("list_events", id=execution_id, after=0, limit=10)
    assert [e["type"] for e in events] == ["execution_requested"]


async def test_twenty_concurrent_starts_with_one_request_id_give_one_execution(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    rows = await asyncio.gather(
        *[
            db.executions.start(
                workflow_id="simple-echo",
                request_id="same-request",
                trigger={"same": True},
                principal_id=None,
                principal_type=None,
                correlation_id=None,
                queue="executions",
            )
            for _ in range(20)
        ]
    )
    assert len({r.execution_id for r in rows}) == 1
    assert sum(1 for r in rows if r.created) == 1
    assert await _sql(db, "SELECT count(*) FROM dw.executions") == [(1,)]
    assert len(await _jobs(db, rows[0].execution_id)) == 1
    assert await _sql(db, "SELECT count(*) FROM dw.node_states") == [(2,)]


async def test_concurrent_starts_reusing_a_request_id_for_other_triggers_are_refused(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    answers = await asyncio.gather(
        *[
            db.executions.start(
                workflow_id="simple-echo",
                request_id="one-id",
                trigger={"i": i},
                principal_id=None,
                principal_type=None,
                correlation_id=None,
                queue="executions",
            )
            for i in range(10)
        ],
        return_exceptions=True,
    )
    started = [a for a in answers if not isinstance(a, BaseException)]
    refused = [a for a in answers if isinstance(a, BaseException)]
    # Whichever committed first is the run; every other request is told, none gets that run.
    assert len(started) == 1 and started[0].created
    assert len(refused) == 9 and all(isinstance(a, errors.RequestIdReused) for a in refused)
    assert await _sql(db, "SELECT count(*) FROM dw.executions") == [(1,)]


async def test_a_workflow_that_is_not_active_is_refused(db: Database) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    with pytest.raises(errors.WorkflowNotFound):
        await start(db, "simple-echo")
    await db.workflows.create(
        workflow_id="simple-echo", display_name="x", description=None, definition=raw, checksum="c", principal=None
    )
    with pytest.raises(errors.WorkflowNotRunnable, match="Draft"):
        await start(db, "simple-echo")
    await publish(db, raw)
    await _sql(db, "UPDATE dw.workflows SET status = 'Archived'")
    with pytest.raises(errors.WorkflowNotRunnable, match="Archived"):
        await start(db, "simple-echo")
    await _sql(db, "UPDATE dw.workflows SET status = 'Active', is_enabled = false")
    with pytest.raises(errors.WorkflowNotRunnable, match="disabled"):
        await start(db, "simple-echo")
    assert await _sql(db, "SELECT count(*) FROM dw.executions") == [(0,)]


async def test_a_repeated_request_finds_its_run_after_the_workflow_stopped_taking_starts(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    first = await start(db, "simple-echo", {"n": 1}, request_id="kept")
    await _sql(db, "SELECT dw.archive_workflow_v1('simple-echo', 'tests')")
    # The same request again: its run, although the workflow now refuses new ones.
    assert await start(db, "simple-echo", {"n": 1}, request_id="kept") == first
    with pytest.raises(errors.RequestIdReused):
        await start(db, "simple-echo", {"n": 2}, request_id="kept")
    with pytest.raises(errors.WorkflowNotRunnable, match="Archived"):
        await start(db, "simple-echo", {"n": 1}, request_id="new")
    await _sql(db, "UPDATE dw.workflows SET status = 'Active', is_enabled = false")
    assert await start(db, "simple-echo", {"n": 1}, request_id="kept") == first
    with pytest.raises(errors.WorkflowNotRunnable, match="disabled"):
        await start(db, "simple-echo", {"n": 1}, request_id="new")
    await _sql(db, "UPDATE dw.workflows SET is_enabled = true")
    assert await start(db, "simple-echo", {"n": 1}, request_id="new") != first


START = "SELECT execution_id FROM dw.start_execution_v1('simple-echo', %s, '{}', 'tests', 'user', NULL, 'executions')"


async def _blocked(db: Database, task: asyncio.Task[object]) -> bool:
    """Whether `task`'s statement waits for a lock (an advisory one: the workflow's start lock)."""
    for _ in range(50):
        await asyncio.sleep(0.02)
        waiting = await _sql(
            db,
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'advisory' AND database = ("
            "SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        if waiting == [(1,)] and not task.done():
            return True
    return False


async def test_a_start_and_a_change_of_its_workflow_wait_for_each_other(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    # A start in flight leaves the workflow's row unlocked (no row lock is written), yet an archive
    # waits for it to commit.
    async with db.connection() as starting, db.connection() as other:
        async with starting.transaction():
            started = (await (await starting.execute(START, ("in-flight",))).fetchone())[0]
            async with other.transaction():
                row = await other.execute("SELECT id FROM dw.workflows WHERE id = 'simple-echo' FOR UPDATE NOWAIT")
                assert await row.fetchall() == [("simple-echo",)]
            archive = asyncio.create_task(other.execute("SELECT dw.archive_workflow_v1('simple-echo', 'tests')"))
            assert await _blocked(db, archive)
        await archive
    assert await _sql(db, "SELECT status FROM dw.executions WHERE id = %s", started) == [("Pending",)]
    assert await _sql(db, "SELECT status FROM dw.workflows") == [("Archived",)]

    # A disable in flight: a start waits for it to commit, then reads what it committed.
    await _sql(db, "UPDATE dw.workflows SET status = 'Active'")
    async with db.connection() as changing, db.connection() as starting:
        async with changing.transaction():
            await changing.execute("UPDATE dw.workflows SET is_enabled = false")
            blocked = asyncio.create_task(starting.execute(START, ("after-disable",)))
            assert await _blocked(db, blocked)
        with pytest.raises(psycopg.Error, match="disabled"):
            await blocked
    assert await _sql(db, "SELECT count(*) FROM dw.executions") == [(1,)]

    # Columns a start does not read take no lock: a start in flight does not hold them up.
    await _sql(db, "UPDATE dw.workflows SET is_enabled = true")
    async with db.connection() as starting, db.connection() as other, starting.transaction():
        await starting.execute(START, ("concurrent",))
        async with other.transaction():
            await other.execute("SET LOCAL lock_timeout = '1s'")
            await other.execute("UPDATE dw.workflows SET updated_at = now()")


async def _heard(conn: psycopg.AsyncConnection[object]) -> list[str]:
    """The job notifications `conn` (listening) has received by now."""
    return [n.payload async for n in conn.notifies(timeout=0.3)]


async def test_a_start_wakes_the_workers_after_its_commit(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    start_r = functools.partial(
        db.executions.start,
        workflow_id="simple-echo",
        request_id="r",
        trigger={},
        principal_id=None,
        principal_type=None,
        correlation_id=None,
        queue="executions",
    )
    async with db.connection() as listening:
        await listening.execute("LISTEN procrastinate_any_queue_v1")
        # The API's start (dw.start_execution_v3) sends no NOTIFY in its transaction ...
        async with db.connection() as starting:
            async with starting.transaction():
                await starting.execute(
                    "SELECT * FROM dw.start_execution_v3(NULL, 'simple-echo', 'in-tx', '{}', 't', 'user', NULL, 'q')"
                )
                # ... and what its transaction does afterwards notifies as usual.
                await starting.execute(
                    "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('q', 'other', 0, NULL, NULL, '{}', NULL)"
                    "::procrastinate_job_to_defer_v1])"
                )
            other_job = await _sql(db, "SELECT id FROM procrastinate_jobs WHERE task_name = 'other'")
            assert await _heard(listening) == [f'{{"type" : "job_inserted", "job_id" : {other_job[0][0]}}}']
        # The data layer's start wakes them once committed, with a job id of 0 (any job), ...
        started = await start_r()
        assert started.created
        assert await _heard(listening) == ['{"type" : "job_inserted", "job_id" : 0}']
        # ... and not for a request it had started already (no job was queued).
        again = await start_r()
        assert (again.execution_id, again.created) == (started.execution_id, False)
        assert await _heard(listening) == []
        # The previous release's start (dw.start_execution_v1) notifies inside its transaction, as before.
        await _sql(db, START, "old-api")
        assert len(await _heard(listening)) == 1


async def test_a_start_and_its_notification_are_one_message(db: Database) -> None:
    """The data layer's start sends the start and the notification together (start_execution_then_notify):
    the notification comes after the start's commit, a refused start sends none, and one that cannot be
    sent (a channel name PostgreSQL refuses) leaves the run started, with its job queued."""
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    start_on = functools.partial(
        db.executions.start,
        workflow_id="simple-echo",
        trigger={},
        principal_id=None,
        principal_type=None,
        correlation_id=None,
    )
    async with db.connection() as listening:
        await listening.execute("LISTEN procrastinate_any_queue_v1")
        started = await start_on(request_id="one", queue="executions")
        heard = [n async for n in listening.notifies(timeout=0.3)]
        assert [n.payload for n in heard] == ['{"type" : "job_inserted", "job_id" : 0}']
        # Another session sees the run and its job: the notification came after the commit.
        assert await _jobs(db, started.execution_id) == [
            {"task_name": "dw.run_execution", "status": "todo", "queue_name": "executions", "scheduled_at": None}
        ]
        with pytest.raises(errors.WorkflowNotFound):
            await start_on(workflow_id="no-such-workflow", request_id="two", queue="executions")
        assert await _heard(listening) == []
        # 'procrastinate_queue_v1#' and this queue's name make a channel name over PostgreSQL's 63 bytes.
        long_queue = "q" * 60
        unheard = await start_on(request_id="three", queue=long_queue)
        assert unheard.created
        assert await _heard(listening) == []
        jobs = await _jobs(db, unheard.execution_id)
        assert [(j["status"], j["queue_name"]) for j in jobs] == [("todo", long_queue)]
        # The session's setting the start left for its notification is cleared.
        async with db.connection() as conn:
            values = await (await conn.execute("SELECT current_setting('dw.notify_queue', true)")).fetchall()
        assert values in ([("",)], [(None,)])


async def test_a_refused_start_logs_nothing_of_the_drivers(
    db: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a refused start (a 404) whose failure psycopg read while it sent the pipeline's next
    statement made the pipeline's exit fail too, and psycopg logged "error ignored terminating ...:
    pipeline aborted" at warning, outside our log's format, once per refusal (under load, when the
    refusal came back before the COMMIT went: here the COMMIT waits for it). The refusal is raised as
    itself, nothing is logged, and the connection serves the next start."""
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    start_on = functools.partial(
        db.executions.start, trigger={}, principal_id=None, principal_type=None, correlation_id=None, queue="executions"
    )
    execute = psycopg.AsyncCursor.execute

    async def late_commit(self: psycopg.AsyncCursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        if str(query).strip() == "COMMIT":
            await asyncio.sleep(0.05)
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", late_commit)
    caplog.set_level("WARNING", logger="psycopg")
    for n in range(8):
        with pytest.raises(errors.WorkflowNotFound):
            await start_on(workflow_id="no-such-workflow", request_id=f"missing-{n}")
        started = await start_on(workflow_id="simple-echo", request_id=f"there-{n}")
        assert started.created
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []


async def test_a_start_leaves_no_warning_in_the_servers_log(db: Database, dsn: str) -> None:
    """A review: the start's COMMIT, sent in the pipeline's implicit transaction, made PostgreSQL log
    "WARNING: there is no transaction in progress" at every start. It goes as the protocol's Sync."""
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    async with await psycopg.AsyncConnection.connect(dsn) as conn:  # the application role may not read it
        [data_directory] = await (await conn.execute("SHOW data_directory")).fetchone() or [None]
    log = Path(data_directory) / "log"  # the embedded server's (pg_ctl -l)
    warning = "there is no transaction in progress"
    before = log.read_text(errors="replace").count(warning)
    for n in range(3):
        started = await db.executions.start(
            workflow_id="simple-echo",
            request_id=f"quiet-{n}",
            trigger={},
            principal_id=None,
            principal_type=None,
            correlation_id=None,
            queue="executions",
        )
        assert started.created
    await asyncio.sleep(0.2)  # the server's log is written as it goes
    assert log.read_text(errors="replace").count(warning) == before


async def test_a_start_is_one_round_trip_and_a_refused_one_leaves_its_connection_idle(db: Database) -> None:
    """Reviews: the start's COMMIT sent as the pipeline's Sync waited for the start's answer before the
    notification went (two round trips); sent between a BEGIN and the start, a refused start left its
    connection in the aborted transaction (the pool rolled it back, with a warning)."""
    import tempfile

    from psycopg.pq import TransactionStatus

    from dataworkflows.db import _run
    from dataworkflows.sqlfiles import QUERIES

    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    params: dict[str, Any] = {
        "trace_context": None,
        "workflow_id": "simple-echo",
        "request_id": "traced",
        "trigger": psycopg.types.json.Jsonb({}),
        "principal_id": None,
        "principal_type": None,
        "correlation_id": None,
        "queue": "executions",
        "priority": None,
    }
    async with db.pool.connection() as conn:
        # A first start gives the connection its tenant (a statement of its own, once).
        first = await _run(
            conn, QUERIES["start_execution_then_notify"], {**params, "request_id": "first"}, None, one_message=True
        )
        assert (await first.fetchone() or {}).get("created") is True
        with tempfile.TemporaryFile("w+") as trace:
            conn.pgconn.trace(trace.fileno())
            try:
                cursor = await _run(conn, QUERIES["start_execution_then_notify"], params, None, one_message=True)
                started = await cursor.fetchone()
            finally:
                conn.pgconn.untrace()
            trace.seek(0)
            lines = trace.read().splitlines()
        assert started is not None and started["created"] is True
        # libpq's trace: one Sync sent, one ReadyForQuery back.
        assert sum("\tF\t" in line and line.endswith("\tSync") for line in lines) == 1, lines
        assert sum("\tB\t" in line and "\tReadyForQuery" in line for line in lines) == 1, lines
        with pytest.raises(psycopg.Error):
            await _run(
                conn,
                QUERIES["start_execution_then_notify"],
                {**params, "workflow_id": "no-such-workflow", "request_id": "refused"},
                None,
                one_message=True,
            )
        assert conn.info.transaction_status == TransactionStatus.IDLE
        again = await _run(
            conn, QUERIES["start_execution_then_notify"], {**params, "request_id": "after"}, None, one_message=True
        )
        assert (await again.fetchone() or {}).get("created") is True


async def test_a_refused_start_writes_no_trigger_value_into_the_servers_log(db: Database, dsn: str) -> None:
    """A review: the start and its notification went as one simple-protocol message, the driver writing
    the values into its text, and PostgreSQL's log quotes a statement that fails: every refused start
    (a 404, a 409) wrote its whole trigger there, secrets and all. They go over the extended protocol
    now, the values apart from the text."""
    secret = "sk-live-" + uuid.uuid4().hex
    missing = "no-such-workflow-" + uuid.uuid4().hex[:8]
    with pytest.raises(errors.WorkflowNotFound):
        await db.executions.start(
            workflow_id=missing,
            request_id="r",
            trigger={"apiKey": secret},
            principal_id=None,
            principal_type=None,
            correlation_id=None,
            queue="executions",
        )
    async with await psycopg.AsyncConnection.connect(dsn) as conn:  # the application role may not read it
        [data_directory] = await (await conn.execute("SHOW data_directory")).fetchone() or [None]
    log = Path(data_directory) / "log"  # the embedded server's (pg_ctl -l)
    text = log.read_text(errors="replace")
    assert missing in text  # the refusal and its statement are logged ...
    assert secret not in text  # ... without the trigger's values


def _function(text: str, name: str) -> str:
    """A CREATE [OR REPLACE] FUNCTION statement of `text`, from its name to its closing $$;, spaces folded."""
    begin = text.index(f"FUNCTION {name}()")
    end = text.index("$$;", text.index("$$", text.index("AS $$", begin) + 5)) + 3
    return " ".join(text[begin:end].split())


def test_the_job_notify_trigger_is_procrastinates_own_but_for_the_dw_block() -> None:
    import procrastinate

    upstream = (Path(procrastinate.__file__).parent / "sql" / "schema.sql").read_text()
    ours = (Path(__file__).parents[2] / "sql" / "procedures" / "queue.sql").read_text()
    name = "procrastinate_notify_queue_job_inserted_v1"
    block = re.compile(r"-- dw: begin.*?-- dw: end\n", re.S)
    assert block.search(ours)
    # A Procrastinate upgrade that changes the function fails here: carry its change into queue.sql.
    assert _function(block.sub("", ours), name) == _function(upstream, name)


async def test_a_cancelled_attempt_row_starts_when_its_own_attempt_started(db: Database) -> None:
    """The run's end recorded an attempt in flight from node_states.started_at, the node's first
    attempt's start: a redriven node's second attempt, timed out after 3 s, said it ran 9 s."""
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo")
    await db.fetch_one("try_acquire", id=execution_id, owner="w1", lease_seconds=30)
    [(status,)] = await _sql(
        db, "SELECT status FROM dw.node_states WHERE execution_id = %s AND node_id = 'echo1'", execution_id
    )
    if status != "Running":
        await db.fetch_one("start_node_attempt", id=execution_id, token=1, node_id="echo1")
    # As for a node whose first attempt was an hour ago.
    await _sql(
        db, "UPDATE dw.node_states SET started_at = now() - interval '1 hour' WHERE execution_id = %s", execution_id
    )
    await _sql(db, "SELECT dw.finish_execution_v1(%s, 'Cancelled', NULL, 'execution_cancelled')", execution_id)
    [(start_time, started_event)] = await _sql(
        db,
        "SELECT a.start_time, (SELECT ev.at FROM dw.execution_events ev WHERE ev.execution_id = a.execution_id"
        " AND ev.node_id = a.node_id AND ev.type = 'node_started') FROM dw.action_executions a"
        " WHERE a.execution_id = %s AND a.status = 'Cancelled'",
        execution_id,
    )
    assert start_time == started_event


async def test_a_suspension_pending_at_the_runs_end_is_withdrawn_by_it_and_said(db: Database) -> None:
    """The end cleared a suspension asked while the run ran, without a word (a review: the redrive's
    `withdrewSuspension` never found one to withdraw)."""
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo")
    await db.fetch_one("try_acquire", id=execution_id, owner="w1", lease_seconds=30)
    await _sql(db, "UPDATE dw.executions SET suspend_requested_at = now() WHERE id = %s", execution_id)
    [(asked,)] = await _sql(db, "SELECT suspend_requested_at FROM dw.executions WHERE id = %s", execution_id)
    await _sql(db, "SELECT dw.finish_execution_v1(%s, 'Failed', NULL, 'execution_failed')", execution_id)
    [(details, pending)] = await _sql(
        db,
        "SELECT ev.details, e.suspend_requested_at FROM dw.execution_events ev JOIN dw.executions e"
        " ON e.id = ev.execution_id WHERE ev.execution_id = %s AND ev.type = 'execution_failed'",
        execution_id,
    )
    assert pending is None
    # As a time, not as text: PostgreSQL writes no trailing zeros in the fraction, Python does.
    assert details["status"] == "Failed" and datetime.fromisoformat(details["withdrewSuspension"]) == asked


async def test_two_workers_one_lease_and_fencing(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo")
    first = await db.fetch_one("try_acquire", id=execution_id, owner="w1", lease_seconds=30)
    second = await db.fetch_one("try_acquire", id=execution_id, owner="w2", lease_seconds=30)
    assert (first["outcome"], first["lease_token"]) == ("acquired", 1)
    assert (second["outcome"], second["lease_token"]) == ("held", None)

    # w1 starts an attempt, then stalls past its lease; w2 takes over with a newer token.
    attempt = await db.fetch_one("start_node_attempt", id=execution_id, token=1, node_id="echo1")
    assert attempt["attempt"] == 1
    await _sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")
    taken = await db.fetch_one("try_acquire", id=execution_id, owner="w2", lease_seconds=30)
    assert (taken["outcome"], taken["lease_token"]) == ("acquired", 2)

    with pytest.raises(errors.LeaseLost):
        await record(db, execution_id, 1, outputs={"echo": "late"}, worker="w1")
    with pytest.raises(errors.LeaseLost):
        await db.fetch_one("start_node_attempt", id=execution_id, token=1, node_id="echo1")
    with pytest.raises(errors.LeaseLost):
        await db.runs.complete(execution_id, 1, status=ExecutionStatus.SUCCEEDED, error=None)
    renewed = await db.fetch_one("renew_lease", id=execution_id, token=1, lease_seconds=30)
    assert (renewed["renewed"], renewed["ended"]) == (False, False), "taken by another: not ended under it"
    assert await _sql(db, "SELECT count(*) FROM dw.action_executions") == [(0,)]

    # The new holder's writes go through.
    await record(db, execution_id, 2, outputs={"echo": "ok"}, worker="w2")
    states = {s["node_id"]: s["status"] for s in await db.fetch_all("list_node_states", id=execution_id)}
    assert states == {"echo1": "Succeeded", "echo2": "Ready"}
    # A Succeeded node can never start again.
    with pytest.raises(errors.NodeNotRunnable):
        await db.fetch_one("start_node_attempt", id=execution_id, token=2, node_id="echo1")
    # A second record of the same attempt is refused on the attempt row's key, and changes nothing.
    with pytest.raises(errors.Conflict, match="action_executions_attempt_key"):
        await record(db, execution_id, 2, outputs={"echo": "again"}, worker="w2")
    assert await _sql(db, "SELECT count(*), min(outputs ->> 'echo') FROM dw.action_executions") == [(1, "ok")]
    # The holder ends the run: a renewal after that end is refused, and says the run ended under
    # that lease (not taken by another); the stale token's still says it was not.
    await db.runs.complete(execution_id, 2, status=ExecutionStatus.SUCCEEDED, error=None)
    renewed = await db.fetch_one("renew_lease", id=execution_id, token=2, lease_seconds=30)
    assert (renewed["renewed"], renewed["ended"]) == (False, True)
    renewed = await db.fetch_one("renew_lease", id=execution_id, token=1, lease_seconds=30)
    assert (renewed["renewed"], renewed["ended"]) == (False, False)


async def test_finished_executions_are_not_acquired(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo")
    await db.fetch_one("try_acquire", id=execution_id, owner="w1", lease_seconds=30)
    await db.runs.complete(execution_id, 1, status=ExecutionStatus.FAILED, error={"code": "x"})
    again = await db.fetch_one("try_acquire", id=execution_id, owner="w2", lease_seconds=30)
    assert again["outcome"] == "finished"
    states = {s["node_id"]: s["status"] for s in await db.fetch_all("list_node_states", id=execution_id)}
    assert states == {"echo1": "Skipped", "echo2": "Skipped"}


async def test_concurrency_limit_throttles_acquire(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    await _sql(db, "UPDATE dw.workflows SET max_concurrent_executions = 1")
    first, second = await start(db, "simple-echo"), await start(db, "simple-echo")
    assert (await db.fetch_one("try_acquire", id=first, owner="w1", lease_seconds=30))["outcome"] == "acquired"
    assert (await db.fetch_one("try_acquire", id=second, owner="w2", lease_seconds=30))["outcome"] == "throttled"


async def test_execution_events_are_append_only(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    await start(db, "simple-echo")
    # The application role may not even try (no UPDATE, DELETE or TRUNCATE privilege: only the
    # retention prune deletes, as the owner); the tables' owner meets the triggers
    # (test_owner_cannot_change_events; tests/integration/test_retention.py for DELETE).
    for statement in [
        "UPDATE dw.execution_events SET type = 'x'",
        "DELETE FROM dw.execution_events",
        "TRUNCATE dw.execution_events",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await _sql(db, statement)


@pytest.mark.parametrize(
    "statement",
    ["TRUNCATE dw.execution_events", "UPDATE dw.execution_events SET type = 'x'", "DELETE FROM dw.execution_events"],
)
def test_owner_cannot_change_events(postgresql: psycopg.Connection, statement: str) -> None:
    postgresql.execute(
        "INSERT INTO dw.workflows (tenant_id, id, display_name) VALUES ('default', 'w', 'w');"
        "INSERT INTO dw.workflow_versions (tenant_id, workflow_id, version, definition, checksum)"
        " VALUES ('default', 'w', 1, '{}', 'c');"
        "INSERT INTO dw.executions (id, tenant_id, workflow_id, workflow_version, request_id, root_execution_id, path)"
        " VALUES ('00000000-0000-0000-0000-000000000001', 'default', 'w', 1, 'r',"
        " '00000000-0000-0000-0000-000000000001', '{00000000-0000-0000-0000-000000000001}');"
        "INSERT INTO dw.execution_events (tenant_id, execution_id, type)"
        " VALUES ('default', '00000000-0000-0000-0000-000000000001', 'x')"
    )
    with pytest.raises(psycopg.DatabaseError, match="append-only"):
        postgresql.execute(statement)


async def test_published_versions_are_immutable(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    with pytest.raises(errors.Immutable, match="immutable"):
        await _sql(db, "UPDATE dw.workflow_versions SET definition = '{}'::jsonb")


async def test_a_published_version_stays_on_record_and_a_draft_may_go(db: Database) -> None:
    """A DELETE (by hand) removed a published version that had no runs, and its plan with it."""
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    with pytest.raises(errors.Immutable, match="stays on record"):
        await _sql(db, "DELETE FROM dw.workflow_versions WHERE workflow_id = 'simple-echo'")
    await _sql(
        db,
        "INSERT INTO dw.workflow_versions (workflow_id, version, definition, checksum)"
        " SELECT workflow_id, 2, definition, 'draft' FROM dw.workflow_versions"
        " WHERE workflow_id = 'simple-echo'",
    )
    await _sql(db, "DELETE FROM dw.workflow_versions WHERE workflow_id = 'simple-echo' AND version = 2")
    rows = await _sql(db, "SELECT version FROM dw.workflow_versions WHERE workflow_id = 'simple-echo'")
    assert [row[0] for row in rows] == [1]


async def test_recovery_requeues_runs_whose_worker_vanished(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo")
    await db.fetch_one("try_acquire", id=execution_id, owner="dead", lease_seconds=30)
    # The worker fetched the job and died: job 'doing' without a live worker, lease expired.
    await _sql(db, "UPDATE procrastinate_jobs SET status = 'doing'")
    assert (
        await db.fetch_all("recover_executions", max_recoveries=2, stalled_worker_seconds=30, queue="executions") == []
    )
    await _sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")
    recovered = await db.fetch_all(
        "recover_executions", max_recoveries=2, stalled_worker_seconds=30, queue="executions"
    )
    assert [(r["execution_id"], r["action"]) for r in recovered] == [(execution_id, "requeued")]
    statuses = sorted(j["status"] for j in await _jobs(db, execution_id))
    assert statuses == ["todo"], "the dead worker's job went; the run has a new one"
    # A queued job means nothing more to do.
    assert (
        await db.fetch_all("recover_executions", max_recoveries=2, stalled_worker_seconds=30, queue="executions") == []
    )

    # Past the limit the run fails with worker_lost instead of looping forever.
    for _ in range(2):
        await db.fetch_one("try_acquire", id=execution_id, owner="dead", lease_seconds=30)
        await _sql(db, "UPDATE procrastinate_jobs SET status = 'doing' WHERE status = 'todo'")
        await _sql(db, "UPDATE dw.executions SET lease_expires_at = now() - interval '1 second'")
        last = await db.fetch_all("recover_executions", max_recoveries=2, stalled_worker_seconds=30, queue="executions")
    assert [r["action"] for r in last] == ["failed"]
    row = await db.fetch_one("get_execution", id=execution_id)
    assert row["status"] == "Failed" and row["error"]["code"] == "worker_lost"


@pytest.mark.parametrize("how", ["in flight", "pipeline"])
def test_an_interrupted_migration_is_an_interruption_and_lets_its_lock_go(
    postgresql: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Ctrl-C or a stop signal (`up` turns SIGTERM and SIGHUP into KeyboardInterrupt until it serves)
    while a migration statement is in flight leaves the connection busy; the unlock in `migrate`'s
    `finally` then failed ("another command is already in progress") and replaced the interruption:
    `up` said "cannot start: the database cannot be reached" and exited 3, not 130 as the README
    says. Or psycopg's own clean-up failed as the interruption went through it (Procrastinate's schema
    is written with executemany, a pipeline: "cannot exit pipeline mode while busy") and its error
    took the interruption's place. The interruption now goes on as itself, and the session's end
    lets the lock go."""
    from dataworkflows import migrations

    info = postgresql.info
    postgresql.autocommit = True
    postgresql.execute("CREATE DATABASE dw_migrate_interrupted")
    try:
        conninfo = f"host={info.host} port={info.port} user={info.user} dbname=dw_migrate_interrupted"

        def interrupted(conn: psycopg.Connection[Any]) -> None:
            conn.pgconn.send_query(b"SELECT pg_sleep(0.2)")  # in flight when the interruption comes
            if how == "in flight":
                raise KeyboardInterrupt
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise psycopg.OperationalError("cannot exit pipeline mode while busy") from None

        monkeypatch.setattr(migrations, "_install_procedures", interrupted)
        with pytest.raises(KeyboardInterrupt):
            migrate(conninfo)
        monkeypatch.undo()
        # Not left holding the migrations' lock: the next migrate goes on (it would poll for it).
        assert migrate(conninfo) == []
    finally:
        postgresql.execute("DROP DATABASE dw_migrate_interrupted WITH (FORCE)")


def test_migrations_are_idempotent_and_safe_from_two_processes_at_once(postgresql: psycopg.Connection) -> None:
    info = postgresql.info
    postgresql.autocommit = True
    postgresql.execute("CREATE DATABASE dw_migrate_race")
    try:
        conninfo = f"host={info.host} port={info.port} user={info.user} dbname=dw_migrate_race"
        results: list[object] = []

        def run() -> None:
            try:
                results.append(migrate(conninfo))
            except Exception as exc:  # collected and asserted below
                results.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not [r for r in results if isinstance(r, Exception)], results
        applied = sorted(results, key=len)  # type: ignore[arg-type]
        assert applied[0] == [] and applied[1][:2] == ["0000", "0001"]
        assert migrate(conninfo) == []
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT count(*) FROM dw.schema_migrations").fetchone()[0] >= 2
    finally:
        postgresql.execute("DROP DATABASE dw_migrate_race WITH (FORCE)")


async def test_recovery_covers_parked_runs_and_spares_live_workers(db: Database) -> None:
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    parked = await start(db, "simple-echo")
    await db.fetch_one("try_acquire", id=parked, owner="w1", lease_seconds=30)
    await db.fetch_one("park_execution", id=parked, token=1, queue="executions", job_id=None, job_worker_id=None)
    released = await start(db, "simple-echo")
    await db.fetch_one("try_acquire", id=released, owner="w2", lease_seconds=30)
    await db.fetch_one("release_execution", id=released, token=1, queue="executions", reason="test")
    async with db.connection() as conn:
        worker = (await (await conn.execute("SELECT procrastinate_register_worker_v1()")).fetchone())[0]
        # The parked run lost its wake-up job; the released run's job is held by a live worker.
        await conn.execute("DELETE FROM procrastinate_jobs WHERE args->>'execution_id' = %s", (str(parked),))
        await conn.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE status = 'todo'"
            " AND args->>'execution_id' = %s",
            (worker, str(released)),
        )
        await conn.execute("UPDATE dw.executions SET created_at = now() - interval '1 hour'")
    recovered = await db.fetch_all(
        "recover_executions", max_recoveries=5, stalled_worker_seconds=30, queue="executions"
    )
    # The parked run was due at once: recovery gives its lost job the stalled-worker grace first.
    assert recovered == []
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.executions SET wake_at = now() - interval '1 minute' WHERE id = %s", (parked,))
    recovered = await db.fetch_all(
        "recover_executions", max_recoveries=5, stalled_worker_seconds=30, queue="executions"
    )
    assert [(r["execution_id"], r["action"]) for r in recovered] == [(parked, "requeued")]
    # A stale token cannot release (or re-queue) a run it no longer holds.
    again = await db.fetch_one("release_execution", id=released, token=1, queue="executions", reason="stale")
    assert again["released"] is False


async def test_a_resource_claim_belongs_to_one_attempt(db: Database) -> None:
    from dataworkflows.resources import DatabaseResources

    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo")
    resources = DatabaseResources(db, claim_seconds=30)
    where = {"workflow_id": "simple-echo", "execution_id": execution_id, "node_id": "echo1"}
    assert (await resources.claim("t", "k", **where, attempt=1)).state == "claimed"
    # The zombie's attempt 1 may still be creating it: the retry waits instead of creating twice.
    assert (await resources.claim("t", "k", **where, attempt=2)).state == "pending"
    await resources.release("t", "k", execution_id=execution_id, node_id="echo1", attempt=1)
    assert (await resources.claim("t", "k", **where, attempt=2)).state == "claimed"
    await resources.link("t", "k", "ext-1", workflow_id="simple-echo", execution_id=execution_id, node_id="echo1")
    claim = await resources.claim("t", "k", **where, attempt=3)
    assert (claim.state, claim.external_id) == ("exists", "ext-1")
    assert await resources.check("t", "k") == "ext-1"


async def test_a_compensations_claim_is_over_once_its_step_is_past_that_attempt(db: Database) -> None:
    """A compensation's attempt claims as execution:node:compensation:attempt: live while its step is
    Running at that attempt (another run waits: pending), over once the step moved on (taken over
    after its worker was lost: in doubt, looked up). Its node's attempt of that number says nothing."""
    from dataworkflows.resources import DatabaseResources

    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    undone = await start(db, "simple-echo")
    other = await start(db, "simple-echo", request_id="another")
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO dw.compensations (tenant_id, execution_id, node_id, position, action_type, max_attempts,"
            " timeout_seconds, status, attempts) VALUES ('default', %s, 'echo1', 1, 'monday.create-item', 3, 30,"
            " 'Running', 1)",
            (undone,),
        )
    resources = DatabaseResources(db, claim_seconds=30)
    mine = {"workflow_id": "simple-echo", "execution_id": undone, "node_id": "echo1"}
    theirs = {"workflow_id": "simple-echo", "execution_id": other, "node_id": "echo1"}
    assert (await resources.claim("t", "undo", **mine, attempt=1, compensating=True)).state == "claimed"
    assert (await resources.claim("t", "undo", **theirs, attempt=1)).state == "pending"
    async with db.connection() as conn:
        await conn.execute("UPDATE dw.compensations SET attempts = 2 WHERE execution_id = %s", (undone,))
    assert (await resources.claim("t", "undo", **mine, attempt=2, compensating=True)).state == "in_doubt"
    assert (await resources.claim("t", "undo", **theirs, attempt=1)).state == "pending"
    await resources.release("t", "undo", execution_id=undone, node_id="echo1", attempt=2, compensating=True)
    assert (await resources.claim("t", "undo", **theirs, attempt=1)).state == "claimed"


async def test_a_redrive_gives_the_run_its_own_tenants_deadline(db: Database) -> None:
    """A redrive reads the run's plan for its fresh deadline: the run's tenant's, not that of
    another tenant's workflow of the same id and version (a session that sees every tenant: an
    operator's psql, the maintenance role; row-level security does not narrow it there)."""
    from datetime import timedelta

    from dataworkflows.tenancy import all_tenants, tenant_scope
    from tests.integration.test_runtime import echo, wf

    with tenant_scope("aaa"):  # published first, and first in the plans' key order
        await publish(db, wf("same-id", echo("a"), workflowTimeout="P7D"))
    await publish(db, wf("same-id", echo("a"), workflowTimeout="PT5M"))
    execution_id = await start(db, "same-id")
    await _sql(db, "UPDATE dw.executions SET status = 'Failed', ended_at = now() WHERE id = %s", execution_id)
    await _sql(
        db,
        "UPDATE dw.node_states SET status = 'Failed', end_reason = 'unhandled_failure' WHERE execution_id = %s",
        execution_id,
    )
    [(letter,)] = await _sql(
        db,
        "INSERT INTO dw.dead_letters (kind, execution_id, node_id, payload, error, attempts)"
        " VALUES ('node_failed', %s, 'a', '{}', '{}', 1) RETURNING id",
        execution_id,
    )
    with all_tenants():
        [row] = await db.fetch_all("redrive_dead_letter", id=letter, principal="ops", queue="executions")
    assert row["action"] == "requeued"
    [(left,)] = await _sql(db, "SELECT deadline_at - now() FROM dw.executions WHERE id = %s", execution_id)
    assert timedelta(minutes=4) < left <= timedelta(minutes=5), left


async def test_publish_and_archive_act_in_the_sessions_tenant_only(db: Database) -> None:
    """A session that sees every tenant (an operator's psql, the maintenance role) publishes and
    archives in its own tenant ('default' when it set none, or '*'), as dw.set_workflow_enabled_v1
    does: an archive of a workflow id archived every tenant's workflow of that id, and a publish
    wrote its plan for tenant '*' (refused) after reading another tenant's version."""
    from dataworkflows.tenancy import all_tenants, tenant_scope
    from tests.integration.test_runtime import echo, wf

    with tenant_scope("aaa"):
        await publish(db, wf("shared", echo("a")))
    await publish(db, wf("shared", echo("a")))
    plan = (await _sql(db, "SELECT plan FROM dw.workflow_plans WHERE workflow_id = 'shared'"))[0][0]
    with all_tenants():
        async with db.connection() as conn:
            await conn.execute("SELECT * FROM dw.publish_workflow_v1('shared', 1, %s, 'ops')", (Jsonb(plan),))
            await conn.execute("SELECT * FROM dw.archive_workflow_v1('shared', 'ops')")
            cur = await conn.execute("SELECT tenant_id, status FROM dw.workflows WHERE id = 'shared' ORDER BY 1")
            assert await cur.fetchall() == [("aaa", "Active"), ("default", "Archived")]


async def test_a_triggered_start_runs_in_its_triggers_tenant(db: Database, dsn: str) -> None:
    """dw.start_triggered_v1 started the trigger's workflow by its id in the session's tenant, not the
    trigger's: a superuser's psql session (row-level security does not bind it) set to another tenant
    started that tenant's workflow of the same id under the trigger's id. It runs in the trigger's
    tenant now: under '*' as that tenant, and in a session of another tenant not at all (DW040)."""
    from dataworkflows.tenancy import tenant_scope
    from tests.integration.test_runtime import echo, wf

    with tenant_scope("aaa"):
        await publish(db, wf("same-id", echo("a")))
        await publish(db, wf("same-id", echo("a"), workflowTimeout="PT7M"))  # aaa's version 2
        [(trigger,)] = await _sql(db, "SELECT dw.schedule_v1('nightly', 'same-id', '0 2 * * *')")
    await publish(db, wf("same-id", echo("a")))  # the default tenant's, version 1
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:  # a superuser
        await conn.execute("SET dw.tenant_id = 'default'")
        with pytest.raises(psycopg.Error) as refused:
            await conn.execute("SELECT * FROM dw.start_triggered_v1(%s, 'r-1', '{}', 'executions')", (trigger,))
        assert refused.value.sqlstate == "DW040", refused.value
        await conn.execute("SET dw.tenant_id = '*'")
        await conn.execute("SELECT * FROM dw.start_triggered_v1(%s, 'r-2', '{}', 'executions')", (trigger,))
        cur = await conn.execute("SELECT tenant_id, workflow_version, request_id FROM dw.executions ORDER BY 3")
        assert await cur.fetchall() == [("aaa", 2, "r-2")]


async def test_a_pending_claim_reads_its_owners_attempt_row_by_key(db: Database) -> None:
    """A claim that another attempt holds ('pending', asked again each second by monday.create-item)
    looks the owning attempt's row up by the table's key: it compared the columns as text, and
    read every attempt row of every tenant at each retry (67 ms at 300,000 rows). Sequential scans
    are off in the session, so a plan that can only scan the table shows in its statistics."""
    from dataworkflows.resources import DatabaseResources

    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo")
    resources = DatabaseResources(db, claim_seconds=300)
    where = {"workflow_id": "simple-echo", "execution_id": execution_id, "node_id": "echo1"}
    assert (await resources.claim("t", "k3", **where, attempt=1)).state == "claimed"
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        for owner in (f"{execution_id}:echo1:2", f"{execution_id}:echo1#4:2"):
            cur = await conn.execute(
                "SELECT state FROM dw.claim_resource_v3('default', 't', 'k3', 'simple-echo', %s, 'echo1', %s, 300)",
                (execution_id, owner),
            )
            assert await cur.fetchall() == [("pending",)]
        cur = await conn.execute(
            "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE schemaname = 'dw' AND relname = 'action_executions'"
        )
        assert await cur.fetchall() == [(0,)]


async def test_a_claim_of_a_finished_attempt_can_be_taken_over(db: Database) -> None:

    from dataworkflows.resources import DatabaseResources

    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    execution_id = await start(db, "simple-echo")
    token = (await db.fetch_one("try_acquire", id=execution_id, owner="w", lease_seconds=30))["lease_token"]
    await db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id="echo1")
    resources = DatabaseResources(db, claim_seconds=300)
    where = {"workflow_id": "simple-echo", "execution_id": execution_id, "node_id": "echo1"}
    assert (await resources.claim("t", "k2", **where, attempt=1)).state == "claimed"
    assert (await resources.claim("t", "k2", **where, attempt=2)).state == "pending"
    # Attempt 1 timed out: its outcome is recorded, so attempt 2 need not wait out the claim; but
    # attempt 1 may have created the resource before it was stopped, so the claim is in doubt (look
    # it up before creating it), with when the key was first claimed.
    await record(
        db, execution_id, token, status="TimedOut", node_status="Ready", error={"code": "action_timeout"}, fired=[]
    )
    taken = await resources.claim("t", "k2", **where, attempt=2)
    assert taken.state == "in_doubt" and taken.claimed_at is not None
    # Released (a refusal: nothing was made), the key is claimed afresh.
    await resources.release("t", "k2", execution_id=execution_id, node_id="echo1", attempt=2)
    assert (await resources.claim("t", "k2", **where, attempt=3)).state == "claimed"


async def test_a_request_id_is_a_workflows_own(db: Database) -> None:
    """Idempotency is per workflow and request id (README "Guarantees"): the same request id and
    trigger sent to another workflow of the tenant start a run of that workflow, not the first one's."""
    from tests.integration.test_runtime import echo, wf

    for workflow_id in ("first-of-two", "second-of-two"):
        await publish(db, wf(workflow_id, echo("a")))
    first = await start(db, "first-of-two", {"n": 1}, request_id="shared")
    assert await start(db, "first-of-two", {"n": 1}, request_id="shared") == first
    second = await start(db, "second-of-two", {"n": 1}, request_id="shared")
    assert second != first
    assert (await db.executions.get(second)).workflow_id == "second-of-two"  # type: ignore[union-attr]

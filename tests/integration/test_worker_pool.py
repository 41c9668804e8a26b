"""The pool a worker runs on: the connection returned last is handed out first (a few connections stay
warm, the rest idle), and a new connection of a worker's pool compiles the run's procedures before its
first run needs them (dw.warm_up_session_v1), writing nothing; the run's statements are planned once per
connection (generic plans), not on each of their first five executions."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from dataworkflows.db import Database, make_pool
from dataworkflows.sqlfiles import QUERIES
from dataworkflows.statuses import NodeStatus
from tests.conftest import load_fixture, publish, start
from tests.integration.test_folded_writes import attempt_record
from tests.integration.test_runtime import echo, to, wf

RUN_PROCEDURES = {
    "dw.try_acquire_execution_v6",
    "dw.start_ready_nodes_v1",
    "dw.decide_edges_v1",
    "dw.record_attempt_v6",
    "dw.check_lease_v1",
    "dw.finish_execution_v1",
    "dw.end_run_job_v1",
}


async def backend(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_the_pool_hands_out_the_connection_returned_last(dsn: str) -> None:
    pool = make_pool(dsn, min_size=3, max_size=3)
    await pool.open(wait=True)
    try:
        taken = [await pool.getconn() for _ in range(3)]
        pids = [await backend(conn) for conn in taken]
        for conn in taken:
            await pool.putconn(conn)
        # Last in, first out: the most recently used connection again and again, not a rotation
        # through all three (psycopg_pool's own order).
        for _ in range(3):
            async with pool.connection() as conn:
                assert await backend(conn) == pids[-1]
        async with pool.connection() as first, pool.connection() as second:
            assert [await backend(first), await backend(second)] == [pids[2], pids[1]]
    finally:
        await pool.close()


async def compiled_functions(conn: psycopg.AsyncConnection[Any]) -> set[str]:
    # The view needs more than the application role has; the session's compiled functions stay.
    await conn.execute("RESET ROLE")
    cur = await conn.execute(
        "SELECT ident FROM pg_backend_memory_contexts WHERE name = 'PL/pgSQL function' AND ident LIKE 'dw.%'"
    )
    return {str(row[0]).split("(")[0] for row in await cur.fetchall()}


async def counts(dsn: str) -> tuple[int, ...]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM dw.executions), (SELECT count(*) FROM dw.execution_events),"
            " (SELECT count(*) FROM dw.action_executions), (SELECT count(*) FROM dw.node_states),"
            " (SELECT count(*) FROM procrastinate_jobs)"
        )
        row = await cur.fetchone()
        assert row is not None
        return tuple(int(value) for value in row)


@pytest.mark.parametrize("warm_up", [True, False])
async def test_a_new_connection_of_a_workers_pool_is_warmed_up(
    db: Database, dsn: str, warm_up: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    # A run in the database, so that "finds nothing" is not only an empty database's answer.
    await publish(db, load_fixture("bundle1/simple-echo-workflow.json"))
    await start(db, "simple-echo")
    before = await counts(dsn)
    pool = make_pool(dsn, min_size=1, max_size=1, warm_up=warm_up)
    await pool.open(wait=True)
    try:
        assert await counts(dsn) == before, "the warm-up leaves no row"
        async with pool.connection() as conn:
            compiled = await compiled_functions(conn)
        if warm_up:
            assert compiled >= RUN_PROCEDURES | {"dw.warm_up_session_v1"}
        else:
            assert not compiled & RUN_PROCEDURES
    finally:
        await pool.close()
    # It ran to its end: a compiled function stays compiled after an error, so the set above alone
    # would not tell.
    assert "warm-up failed" not in capsys.readouterr().out


async def test_the_warm_up_runs_to_its_end_as_the_application_role(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SET ROLE dataworkflows_app")
        cur = await conn.execute("SELECT dw.warm_up_session_v1()")
        row = await cur.fetchone()
        assert row is not None and row[0] > 0
        # Its tenant was the transaction's only.
        cur = await conn.execute("SELECT current_setting('dw.tenant_id', true)")
        assert await cur.fetchone() in {(None,), ("",)}


async def test_a_failed_warm_up_does_not_refuse_the_connection(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A worker on a schema without the function (or a server that refuses it) runs, only its first
    runs are slower."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("ALTER FUNCTION dw.warm_up_session_v1() RENAME TO warm_up_session_v1_away")
    try:
        pool = make_pool(dsn, min_size=1, max_size=1, warm_up=True)
        await pool.open(wait=True)
        try:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT 1")
                assert await cur.fetchone() == (1,)
        finally:
            await pool.close()
    finally:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute("ALTER FUNCTION dw.warm_up_session_v1_away() RENAME TO warm_up_session_v1")
    assert "a new connection's warm-up failed" in capsys.readouterr().out


async def generic_plans(conn: psycopg.AsyncConnection[Any]) -> int:
    """The session's generic plans of SQL statements (a custom plan is freed once its statement has
    run; a generic one stays in a CachedPlan context; plpgsql's simple expressions, which always
    have one, are left out)."""
    cur = await conn.execute(
        "SELECT count(*) FROM pg_backend_memory_contexts WHERE name = 'CachedPlan'"
        " AND ltrim(ident) ~* '^(select|insert|update|delete|with)\\M'"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_runs_statements_are_planned_once_per_connection(db: Database, dsn: str) -> None:
    """The worker's per-step functions run with plan_cache_mode = force_generic_plan: a connection
    plans their statements on its first run and keeps the plans. Left to the default, PostgreSQL
    plans each statement afresh on its first five executions per connection (1.5-2x a run's cost on
    a new connection, see sql/procedures/executions.sql), and no generic plan exists after one run."""
    await publish(db, wf("plans", echo("a", to("b")), echo("b")))
    execution_id = await start(db, "plans")
    pool = make_pool(dsn, min_size=1, max_size=1)  # one connection: the worker's calls, then the look
    await pool.open(wait=True)
    try:
        one = Database(pool)
        async with one.connection() as conn:
            # The setting comes from the functions, not from the server, database or role.
            cur = await conn.execute("SHOW plan_cache_mode")
            assert await cur.fetchone() == ("auto",)
        acquired = await one.runs.acquire(execution_id, owner="plans", lease_seconds=30.0, start=True)
        assert acquired.outcome == "acquired" and list(acquired.started) == ["a"] and acquired.lease_token is not None
        token = acquired.lease_token
        # What the worker writes: a's record starts b; b's ends the run.
        first = await one.runs.record_attempt(attempt_record(execution_id, token, "a", fired=(True,), start_limit=1))
        assert [(c.node_id, c.status) for c in first.changes] == [("b", NodeStatus.RUNNING)]
        last = await one.runs.record_attempt(attempt_record(execution_id, token, "b", start_limit=1, complete=True))
        assert last.run_succeeded
        async with one.connection() as conn:
            await conn.execute("RESET ROLE")
            planned = await generic_plans(conn)
    finally:
        await pool.close()
    # The acquire's, the two records' and the run's end: 19 statements with a generic plan, 2
    # without the setting (measured on PostgreSQL 18).
    assert planned >= 15, planned


# The worker's queries that run on every run or step, and the warm-up.
PER_STEP_QUERIES = (
    "fetch_run_jobs",
    "acquire_run",
    "start_node_attempt",
    "record_attempt",
    "record_attempts",
    "record_item_attempt",
    "complete_execution",
    "renew_lease",
)


async def test_every_per_step_function_plans_generically(dsn: str) -> None:
    """The functions the worker's per-step queries call, whichever version they name now, and the
    warm-up carry the setting (the test above runs only the acquire and the records)."""
    called = {"warm_up_session_v1"}
    for name in PER_STEP_QUERIES:
        functions = set(re.findall(r"\bdw\.(\w+)\(", QUERIES[name]))
        assert len(functions) == 1, (name, functions)
        called |= functions
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'dw' AND p.proname = ANY(%s)",
            (sorted(called),),
        )
        config = {name: settings for name, settings in await cur.fetchall()}
    assert set(config) == called
    assert {
        name for name, settings in config.items() if "plan_cache_mode=force_generic_plan" in (settings or [])
    } == called


async def test_a_transaction_left_idle_is_ended_and_its_locks_released(dsn: str) -> None:
    """DW_IDLE_IN_TRANSACTION_SECONDS: a process stopped mid-transaction (SIGSTOP, a frozen VM) held
    its locks for as long as it was stopped, and a publish's lock on its workflow stopped every start
    of that workflow meanwhile. The pools' sessions carry idle_in_transaction_session_timeout: the
    server ends such a session, its locks go, and the caller that comes back learns the database is
    unavailable (a 503, not a 500)."""
    import asyncio

    from dataworkflows.errors import DatabaseUnavailable

    bounded = make_pool(dsn, min_size=1, max_size=1, name="bounded", idle_in_transaction_seconds=0.3)
    other = make_pool(dsn, min_size=1, max_size=1, name="other")
    await bounded.open(wait=True)
    await other.open(wait=True)
    try:
        async with bounded.connection() as conn:
            assert (await (await conn.execute("SHOW idle_in_transaction_session_timeout")).fetchone()) == ("300ms",)
        async with other.connection() as conn:
            # A pool made without the setting keeps the server's (none).
            assert (await (await conn.execute("SHOW idle_in_transaction_session_timeout")).fetchone()) == ("0",)
        db = Database(bounded)
        stopped = asyncio.Event()

        async def holder() -> None:
            async with db.transaction() as tx:
                await tx.fetch_one("lock_workflow_template", id="held")
                await stopped.wait()  # the process stops here, the lock held
                await tx.fetch_one("lock_workflow_template", id="held")

        held = asyncio.ensure_future(holder())
        await asyncio.sleep(0.8)
        async with other.connection() as conn:
            # Free while its holder is still stopped (lock_timeout: waiting for it would raise).
            await conn.execute("SET lock_timeout = '100ms'")
            await conn.execute("SELECT pg_advisory_lock(hashtextextended('dw.workflow_templates:' || 'held', 0))")
            await conn.execute("SELECT pg_advisory_unlock_all()")
        stopped.set()
        with pytest.raises(DatabaseUnavailable):
            await held
        # The pool replaced the ended session: the next call works.
        async with bounded.connection() as conn:
            assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
    finally:
        await bounded.close()
        await other.close()

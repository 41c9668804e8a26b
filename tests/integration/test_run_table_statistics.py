"""Planner statistics of the run tables (dw.analyze_stale_run_tables_v1): a new database's first burst of
runs gets them from the workers at once, not from autovacuum's next round, and a table another session
is vacuuming or analyzing is left for the next call without waiting."""

from __future__ import annotations

import psycopg

from dataworkflows.db import Database
from tests.conftest import publish
from tests.integration.test_runtime import echo, to, wf

TABLES = ("dw.executions", "dw.node_states", "dw.execution_events", "public.procrastinate_jobs")


def analyzed(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    rows = conn.execute(
        "SELECT schemaname || '.' || relname FROM pg_stat_all_tables"
        " WHERE (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"
        " AND schemaname || '.' || relname = ANY(%s)",
        (list(TABLES),),
    ).fetchall()
    return {str(r[0]) for r in rows}


def without_autovacuum(dsn: str) -> None:
    """Autovacuum kept off the tables, so that only the calls below analyze them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")


def start_burst(dsn: str, runs: int) -> None:
    """`runs` runs started in one transaction, the session's counts sent to the statistics at once."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('dw.tenant_id', 'default', false)")
        conn.execute(
            "SELECT dw.start_execution_v1('burst', gen_random_uuid()::text, '{}'::jsonb, 'tests', 'user', NULL,"
            " 'executions') FROM generate_series(1, %s)",
            (runs,),
        )
        conn.execute("SELECT pg_stat_force_next_flush()")


async def test_a_new_databases_first_burst_gets_statistics_once(db: Database, dsn: str) -> None:
    await publish(db, wf("burst", echo("a", to("b")), echo("b")))
    without_autovacuum(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert analyzed(conn) == set()
        start_burst(dsn, 200)
        # 200 runs: under the threshold (1,000 changes), autovacuum's to do.
        assert await db.operations.analyze_stale_run_tables() == []
        start_burst(dsn, 1_000)
        # Through the worker's pool (the application role): executions (1,200 rows), their nodes
        # (2,400), events and jobs (1,200 each).
        done = await db.operations.analyze_stale_run_tables()
        assert set(TABLES) <= set(done)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        assert analyzed(conn) == set(TABLES)
        # Once: the statistics count what they analyzed.
        assert await db.operations.analyze_stale_run_tables() == []
        # Doubling what was analyzed is not enough; tripling is.
        start_burst(dsn, 1_300)
        assert "dw.executions" not in await db.operations.analyze_stale_run_tables()
        start_burst(dsn, 1_200)
        assert "dw.executions" in await db.operations.analyze_stale_run_tables()


async def test_a_table_another_session_holds_is_left_for_the_next_call(db: Database, dsn: str) -> None:
    await publish(db, wf("burst", echo("a")))
    without_autovacuum(dsn)
    start_burst(dsn, 1_100)
    with psycopg.connect(dsn) as holder:
        # What VACUUM and ANALYZE take: the call does not wait for it.
        holder.execute("LOCK TABLE dw.executions IN SHARE UPDATE EXCLUSIVE MODE")
        done = await db.operations.analyze_stale_run_tables()
        assert "dw.executions" not in done and "dw.node_states" in done
        holder.rollback()
    assert await db.operations.analyze_stale_run_tables() == ["dw.executions"]


async def test_only_the_run_tables_are_analyzed_not_a_callers_table_of_that_name(db: Database, dsn: str) -> None:
    """The function runs as the migrations' role (SECURITY DEFINER): a table a caller made, named like
    Procrastinate's, is not among those it analyzes."""
    async with db.connection() as conn:
        await conn.execute("CREATE TEMP TABLE procrastinate_jobs (id bigint)")
        await conn.execute("INSERT INTO procrastinate_jobs SELECT generate_series(1, 5000)")
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.commit()
        cur = await conn.execute("SELECT dw.analyze_stale_run_tables_v1()")
        row = await cur.fetchone()
        assert row is not None and row[0] == []


async def test_churn_is_not_growth_a_queue_and_a_runs_updates_leave_the_statistics(db: Database, dsn: str) -> None:
    """Far behind means grown: Procrastinate's job table, whose rows come and go, and the run tables,
    whose rows are updated several times each, are not analyzed again for changes that leave them
    the size their statistics counted (counting changes, every recovery pass under load analyzed the
    job table, and every session planned its calls on it again)."""
    await publish(db, wf("burst", echo("a")))
    without_autovacuum(dsn)
    start_burst(dsn, 1_200)
    assert {"dw.executions", "public.procrastinate_jobs"} <= set(await db.operations.analyze_stale_run_tables())
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A queue's day: 3,000 jobs queued and done (5 times the changes that counted before).
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " SELECT 'stats-churn', 'tests.churn', '{}'::jsonb FROM generate_series(1, 3000)"
        )
        conn.execute("DELETE FROM procrastinate_jobs WHERE queue_name = 'stats-churn'")
        # Every run updated twice (2,400 changes: twice the 1,200 rows analyzed).
        for _ in range(2):
            conn.execute("UPDATE dw.executions SET correlation_id = gen_random_uuid()::text")
        conn.execute("SELECT pg_stat_force_next_flush()")
    assert await db.operations.analyze_stale_run_tables() == []
    # Growth still counts: 2,600 more runs (3,800 rows, over three times the 1,200 analyzed).
    start_burst(dsn, 2_600)
    assert "dw.executions" in await db.operations.analyze_stale_run_tables()

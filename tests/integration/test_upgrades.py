"""Upgrades: Procrastinate's own migrations under our objects, and a database of the previous release
brought to this one while its procedures stay for the old workers (README "Upgrading")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
import structlog
import structlog.testing
from psycopg import sql

from dataworkflows import cli, migrations, procrastinate_schema
from dataworkflows.config import Settings
from dataworkflows.db import Database, make_pool
from dataworkflows.errors import DatabaseNewerError, MigrationError
from dataworkflows.migration_locks import LockPolicy
from dataworkflows.migrations import held_back, migrate
from dataworkflows.procrastinate_schema import capture_dependents, load_queue_migrations, parse_version
from dataworkflows.sqlfiles import EARLIER_CHECKSUMS, Migration, load_migrations
from dataworkflows.workers.app import run_worker
from tests.conftest import load_fixture, publish, start

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "upgrade_data"
OLD_QUEUE = "2.15.1"


@contextlib.contextmanager
def sibling_database(postgresql: psycopg.Connection, name: str) -> Iterator[str]:
    """A new empty database on the test server; dropped afterwards."""
    info = postgresql.info
    postgresql.commit()
    postgresql.autocommit = True
    postgresql.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    postgresql.execute(f"CREATE DATABASE {name}")
    try:
        yield f"host={info.host} port={info.port} user={info.user} dbname={name}"
    finally:
        postgresql.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.asynccontextmanager
async def database(conninfo: str) -> AsyncIterator[Database]:
    pool = make_pool(conninfo, min_size=1, max_size=8, name="upgrades")
    await pool.open(wait=True)
    try:
        yield Database(pool)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def worker(conninfo: str) -> AsyncIterator[None]:
    stop = asyncio.Event()
    settings = Settings(database_url=conninfo, worker_poll_seconds=0.2, recovery_interval_seconds=0.3)
    task = asyncio.create_task(run_worker(settings, concurrency=4, install_signal_handlers=False, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until_ended(conn: psycopg.AsyncConnection[Any], runs: list[Any], seconds: float = 20) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for _ in range(int(seconds / 0.05)):
        cur = await conn.execute(
            "SELECT id::text, status FROM dw.executions WHERE id = ANY(%s)", ([str(r) for r in runs],)
        )
        statuses = dict(await cur.fetchall())
        if all(s in ("Succeeded", "Failed", "Cancelled", "TimedOut") for s in statuses.values()):
            return statuses
        await asyncio.sleep(0.05)
    raise AssertionError(f"runs did not end: {statuses}")


def catalog(conninfo: str) -> dict[str, Any]:
    """What the application relies on in Procrastinate's schema and ours over it, down to function
    bodies, trigger and constraint definitions and column defaults."""
    with psycopg.connect(conninfo) as conn:

        def rows(query: str) -> list[Any]:
            return sorted(conn.execute(query).fetchall())

        queue = "c.relname LIKE 'procrastinate\\_%' AND c.relnamespace = 'public'::regnamespace"
        return {
            "queue_functions": rows(
                "SELECT p.proname, pg_get_function_identity_arguments(p.oid), md5(pg_get_functiondef(p.oid)) "
                "FROM pg_proc p WHERE p.proname LIKE 'procrastinate\\_%' AND p.pronamespace = 'public'::regnamespace"
            ),
            "queue_columns": rows(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                f"WHERE {queue} AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
            ),
            "queue_types": rows(
                "SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_type t "
                "LEFT JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typname LIKE 'procrastinate\\_%' "
                "AND t.typnamespace = 'public'::regnamespace GROUP BY 1"
            ),
            "queue_triggers": rows(
                "SELECT pg_get_triggerdef(t.oid), t.tgenabled::text FROM pg_trigger t JOIN pg_class c "
                f"ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND {queue}"
            ),
            "queue_constraints": rows(
                "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k "
                f"JOIN pg_class c ON c.oid = k.conrelid WHERE {queue}"
            ),
            "queue_indexes": rows(
                "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid::regclass::text LIKE 'procrastinate\\_%'"
            ),
            "queue_grants": rows(
                "SELECT c.relname, r.rolname, has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE') "
                "FROM pg_class c CROSS JOIN pg_roles r WHERE c.relname LIKE 'procrastinate\\_%' "
                "AND c.relkind IN ('r', 'v') AND r.rolname IN ('dataworkflows_app', 'dataworkflows_maintenance')"
            ),
            "dw_views": rows(
                "SELECT c.oid::regclass::text, pg_get_viewdef(c.oid), c.relacl::text, pg_get_userbyid(c.relowner) "
                "FROM pg_class c WHERE c.relnamespace = 'dw'::regnamespace AND c.relkind = 'v'"
            ),
        }


EXTRAS = '''
CREATE VIEW dw.v_test_queue_total AS SELECT sum(jobs) AS jobs FROM dw.v_queue_depth;
GRANT SELECT ON dw.v_test_queue_total TO dw_reporting;
CREATE FUNCTION dw.test_started() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$;
CREATE TRIGGER dw_test_started AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW WHEN (NEW.status = 'doing') EXECUTE FUNCTION dw.test_started();
CREATE FUNCTION dw.test_depth_rows() RETURNS SETOF dw.v_queue_depth LANGUAGE sql
    AS $$ SELECT * FROM dw.v_queue_depth $$;
CREATE VIEW dw.v_test_jobs AS SELECT id, queue_name, status FROM procrastinate_jobs;
ALTER VIEW dw.v_test_jobs ALTER COLUMN queue_name SET DEFAULT 'default';
COMMENT ON COLUMN dw.v_test_jobs.queue_name IS 'the queue';
GRANT SELECT (id) ON dw.v_test_jobs TO dw_reporting;
CREATE FUNCTION dw.test_jobs_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$;
CREATE TRIGGER test_jobs_insert INSTEAD OF INSERT ON dw.v_test_jobs
    FOR EACH ROW EXECUTE FUNCTION dw.test_jobs_insert();
CREATE SCHEMA "Odd Schema";
CREATE VIEW "Odd Schema"."v; it's ""odd""" WITH (security_barrier=true, check_option=local) AS
    SELECT id, status FROM procrastinate_jobs WHERE status = 'todo';
COMMENT ON VIEW "Odd Schema"."v; it's ""odd""" IS 'it''s a comment';
GRANT USAGE ON SCHEMA "Odd Schema" TO dw_reporting;
GRANT SELECT ON "Odd Schema"."v; it's ""odd""" TO dw_reporting;
'''
DROP_EXTRAS = """
DROP VIEW dw.v_test_queue_total; DROP TRIGGER dw_test_started ON procrastinate_jobs;
DROP FUNCTION dw.test_depth_rows(); DROP VIEW dw.v_test_jobs; DROP SCHEMA "Odd Schema" CASCADE;
"""


def extra_definitions(conn: psycopg.Connection[Any]) -> Any:
    """What the extras are, beyond their names: definitions, options, grants (column ones too),
    comments, defaults, triggers, and the function over a view's row type."""
    return conn.execute(
        "SELECT c.relname, pg_get_viewdef(c.oid), c.reloptions, c.relacl::text, obj_description(c.oid, 'pg_class'), "
        "ARRAY(SELECT format('%s %s %s %s', a.attname, a.attacl, col_description(c.oid, a.attnum), "
        "                    pg_get_expr(d.adbin, d.adrelid)) "
        "        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "       WHERE a.attrelid = c.oid AND a.attnum > 0 ORDER BY a.attnum), "
        "ARRAY(SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = c.oid ORDER BY 1) "
        "FROM pg_class c WHERE c.relname IN ('v_test_queue_total', 'v_test_jobs', 'v; it''s \"odd\"') "
        "UNION ALL SELECT 'dw_test_started', pg_get_triggerdef(oid), NULL, NULL, NULL, NULL, NULL "
        "FROM pg_trigger WHERE tgname = 'dw_test_started' "
        "UNION ALL SELECT 'test_depth_rows', pg_get_functiondef(to_regproc('dw.test_depth_rows')), "
        "NULL, NULL, NULL, NULL, NULL ORDER BY 1"
    ).fetchall()


def old_queue_database(conninfo: str) -> None:
    """Procrastinate 2.15.1's schema with every one of our migrations over it (their views, index
    and grants included), as if an installation had run on that Procrastinate; no procedures yet
    (ours call Procrastinate 3 functions)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute((DATA / f"procrastinate-{OLD_QUEUE}-schema.sql").read_text())
        conn.execute("SELECT set_config('dw.tenant_id', '*', false)")
        conn.execute("CREATE SCHEMA dw")
        conn.execute(
            "CREATE TABLE dw.schema_migrations (version text PRIMARY KEY, name text NOT NULL, "
            "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        record = "INSERT INTO dw.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
        conn.execute(record, ("0000", f"procrastinate_schema {OLD_QUEUE}", "procrastinate"))
        for migration in load_migrations():
            # A no-transaction migration (CREATE INDEX CONCURRENTLY) runs statement by statement.
            with conn.transaction() if migration.transactional else contextlib.nullcontext():
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(record, (migration.version, migration.name, migration.checksum))


async def test_procrastinate_migrations_apply_under_our_views_and_grants(
    postgresql: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_files = [m for m in load_queue_migrations() if m.version > parse_version(OLD_QUEUE)]
    up_to_3_3 = ["procrastinate/" + m.stem for m in queue_files if m.version <= (3, 3, 0)]
    pre = ["procrastinate/" + m.stem for m in queue_files if not m.post and m.version > (3, 3, 0)]
    post = [m.stem for m in queue_files if m.post and m.version > (3, 3, 0)]
    assert pre and post
    # A fresh installation records the installed Procrastinate's schema.sql as its migration 0000,
    # and the files it had, by name.
    rows = postgresql.execute(
        "SELECT version, name FROM dw.schema_migrations WHERE version = '0000' OR version LIKE 'procrastinate/%' "
        "ORDER BY 1"
    ).fetchall()
    baseline = f"procrastinate_schema {procrastinate.__version__}"
    assert rows == [("0000", baseline)] + [("procrastinate/" + m.stem, baseline) for m in load_queue_migrations()]
    assert held_back(postgresql_conninfo(postgresql)) == []
    # Our objects over Procrastinate's, found from the catalog as migrate finds them.
    with postgresql.transaction():
        dependents = capture_dependents(postgresql)
    assert [v.name for v in dependents.views] == ["dw.v_queue_depth"]
    assert sorted(i.name for i in dependents.indexes) == [
        "public.dw_procrastinate_jobs_compensate_idx",
        "public.dw_procrastinate_jobs_execution_idx",
        "public.dw_procrastinate_jobs_queue_todo_idx",
    ]
    assert dependents.triggers == []
    fresh = catalog(postgresql_conninfo(postgresql))
    with sibling_database(postgresql, "dw_upgrade_queue") as conninfo:
        old_queue_database(conninfo)
        # Without detaching our view, 3.0.0's post migration cannot change the job status column.
        with psycopg.connect(conninfo) as conn:
            by_stem = {m.stem: m for m in queue_files}
            conn.execute(by_stem["03.00.00_01_pre_cancel_notification"].sql)
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="used by a view"):
                conn.execute(by_stem["03.00.00_50_post_cancel_notification"].sql)
            conn.rollback()

        with psycopg.connect(conninfo, autocommit=True) as conn:
            # More of what detaching handles: a view over our view, with a grant; a trigger whose
            # condition reads the column 3.0.0 changes; a function returning our view's rows; a
            # view with a column default, column grant and comment, and an INSTEAD OF trigger; an
            # oddly named one with options, comment and grants.
            conn.execute(EXTRAS)
            extras = extra_definitions(conn)

        # 2.15.1 -> 3.10 crosses several versions with post migrations: not while old workers run.
        with pytest.raises(MigrationError, match="migrate --finish"):
            migrate(conninfo)
        assert held_back(conninfo) == [m.stem for m in queue_files if m.post]

        # Stopped, and upgraded to a Procrastinate 3.3 first: everything up to it, in order; only
        # 3.0.0's post migration needs our objects detached.
        monkeypatch.setattr(procrastinate_schema, "installed_version", lambda: (3, 3, 0))
        with structlog.testing.capture_logs() as logs:
            assert migrate(conninfo, finish=True) == up_to_3_3
        assert [e["migration"] for e in logs if "detached" in e["event"]] == ["03.00.00_50_post_cancel_notification"]
        monkeypatch.undo()

        # A rolling upgrade to 3.10: pre migrations now, post migrations held back for the old workers.
        assert migrate(conninfo) == pre
        assert held_back(conninfo) == post
        assert migrate(conninfo) == []
        await run_one(conninfo, "in the rolling window")

        # An old worker's transaction on procrastinate_jobs blocks 3.4.0's post migration (DROP
        # TRIGGER on it): migrate waits the lock timeout at most each time, the queue's readers
        # get through meanwhile, and it fails naming that session; once it ends, a try succeeds.
        quick = LockPolicy(timeout_seconds=0.2, attempts=2, backoff_seconds=0.1)
        with psycopg.connect(conninfo, application_name="dw-test-old-worker") as holder:
            holder.execute("SELECT count(*) FROM procrastinate_jobs")
            with reader_waits(conninfo) as waits:
                started = time.monotonic()
                with pytest.raises(MigrationError, match=r"could not take its locks.*dw-test-old-worker.*idle in tr"):
                    migrate(conninfo, finish=True, locks=quick)
                assert time.monotonic() - started < 3
            assert waits and max(waits) < 1, waits
            assert held_back(conninfo) == post
            threading.Timer(0.3, holder.rollback).start()
            # Every process runs the new release: the post migrations follow.
            assert migrate(conninfo, finish=True, locks=replace(quick, attempts=20)) == [
                "procrastinate/" + stem for stem in post
            ]
        assert held_back(conninfo) == []
        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert extra_definitions(conn) == extras
            conn.execute(DROP_EXTRAS)
        upgraded = catalog(conninfo)
        await run_one(conninfo, "after the post migrations")
    # Procrastinate's migrations built its current schema (functions, triggers, constraints,
    # defaults as a fresh installation has them), and ours over it is as a fresh installation has
    # it: same views (definition, grants, owner), index and grants.
    for key in fresh:
        assert set(upgraded[key]) ^ set(fresh[key]) == set(), key


@contextlib.contextmanager
def reader_waits(conninfo: str) -> Iterator[list[float]]:
    """A reader of procrastinate_jobs (a worker's fetch) in a loop meanwhile: how long each read took."""
    waits: list[float] = []
    stop = threading.Event()

    def read() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '3s'")
            while not stop.wait(0.05):
                started = time.monotonic()
                conn.execute("SELECT count(*) FROM procrastinate_jobs")
                waits.append(time.monotonic() - started)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        yield waits
    finally:
        stop.set()
        thread.join(10)


def test_our_migrations_wait_for_a_lock_at_most_the_timeout(
    postgresql: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    conninfo = postgresql_conninfo(postgresql)
    extra = Migration(
        version="9990", name="test_lock", sql="ALTER TABLE dw.executions ADD COLUMN test_lock int", transactional=True
    )
    monkeypatch.setattr(migrations, "load_migrations", lambda: [*load_migrations(), extra])
    quick = LockPolicy(timeout_seconds=0.2, attempts=2, backoff_seconds=0.1)
    with psycopg.connect(conninfo, application_name="dw-test-report") as holder:
        holder.execute("LOCK TABLE dw.executions IN ACCESS SHARE MODE")
        started = time.monotonic()
        with pytest.raises(MigrationError, match=r"migration 9990_test_lock could not take its locks.*dw-test-report"):
            migrate(conninfo, locks=quick)
        assert time.monotonic() - started < 3
        threading.Timer(0.3, holder.rollback).start()
        assert migrate(conninfo, locks=replace(quick, attempts=20)) == ["9990"]
    # A no-transaction migration may leave part of itself behind: an index built CONCURRENTLY that
    # any open snapshot held up stays INVALID; the message says so (and that the next migrate
    # rebuilds it), where it said nothing.
    concurrent = Migration(
        version="9991",
        name="test_concurrent",
        sql="-- no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS dw.test_cic;\n"
        "CREATE INDEX CONCURRENTLY test_cic ON dw.workflows (id);\n",
        transactional=False,
    )
    monkeypatch.setattr(migrations, "load_migrations", lambda: [*load_migrations(), extra, concurrent])
    with psycopg.connect(conninfo, application_name="dw-test-snapshot") as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM dw.triggers")
        with pytest.raises(MigrationError, match=r"9991_test_concurrent could not take its locks.*left INVALID"):
            migrate(conninfo, locks=quick)
        holder.rollback()
    assert migrate(conninfo, locks=quick) == ["9991"]


def test_a_migrate_waiting_for_another_says_for_whom(
    postgresql: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second migrate behind one that holds the migrations' lock (or behind the session of one
    that was killed) printed nothing while it waited; it now says who holds it, every few seconds."""
    conninfo = postgresql_conninfo(postgresql)
    monkeypatch.setattr(migrations, "LOCK_NOTICE_SECONDS", 0.2)
    with psycopg.connect(conninfo, autocommit=True, application_name="dw-test-lock-holder") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (migrations.LOCK_KEY,))
        pid = holder.info.backend_pid
        threading.Timer(0.7, lambda: holder.execute("SELECT pg_advisory_unlock(%s)", (migrations.LOCK_KEY,))).start()
        with structlog.testing.capture_logs() as logs:
            assert migrate(conninfo) == []
    said = [entry for entry in logs if entry["event"] == "waiting for the migration lock"]
    assert said and said[0]["holder"].startswith(f"pid {pid} (dw-test-lock-holder, ")


def postgresql_conninfo(postgresql: psycopg.Connection) -> str:
    info = postgresql.info
    return f"host={info.host} port={info.port} user={info.user} dbname={info.dbname}"


async def run_one(conninfo: str, message: str) -> None:
    async with database(conninfo) as db:
        workflow_id = f"echo-{os.urandom(3).hex()}"
        await publish(db, load_fixture("bundle1/simple-echo-workflow.json") | {"id": workflow_id})
        run = await start(db, workflow_id, {"message": message})
        async with worker(conninfo), await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            assert await until_ended(conn, [run]) == {str(run): "Succeeded"}


# The previous release, as its fixture holds it (made by scripts/release_fixture.py).
RELEASES = json.loads((ROOT / "sql" / "releases.json").read_text())
PREVIOUS = RELEASES["releases"][-1]
META = json.loads((DATA / f"release-{PREVIOUS['version']}.json").read_text())
_PARAM = re.compile(r"%\((\w+)\)s")
PLANNABLE = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "MERGE"}


def signatures(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Our procedures: identity -> result type."""
    rows = conn.execute(
        "SELECT format('dw.%s(%s)', p.proname, pg_get_function_identity_arguments(p.oid)), "
        "pg_get_function_result(p.oid) FROM pg_proc p WHERE p.pronamespace = 'dw'::regnamespace"
    ).fetchall()
    return dict(rows)


def unplannable(conn: psycopg.Connection[Any], queries: dict[str, str]) -> dict[str, str]:
    """The queries PostgreSQL cannot plan here (PREPARE: names, types and functions resolve, nothing
    runs), with why."""
    failures = {}
    for name, text in queries.items():
        if text.split(None, 1)[0].upper() not in PLANNABLE:
            continue  # LISTEN, NOTIFY, SET: nothing in the schema to check
        try:
            with conn.transaction():
                conn.execute(f"PREPARE upgrade_check AS {positional(text)}")
                conn.execute("DEALLOCATE upgrade_check")
        except psycopg.Error as exc:
            failures[name] = str(exc).splitlines()[0]
    return failures


def positional(text: str) -> str:
    """A named query with $n parameters, as PREPARE takes it."""
    numbers: dict[str, int] = {}
    statement = _PARAM.sub(lambda m: f"${numbers.setdefault(m.group(1), len(numbers) + 1)}", text)
    return statement.replace("%%", "%")


def move_times(conn: psycopg.Connection[Any], made_at: str) -> None:
    """Every time in the fixture moves by its age, as if it had been made a moment ago (deadlines,
    leases and wake-up times keep their distance to now)."""
    conn.execute("SET session_replication_role = replica")  # the append-only trigger stays out of it
    columns = conn.execute(
        "SELECT c.table_schema, c.table_name, array_agg(c.column_name::text) FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE t.table_type = 'BASE TABLE' AND c.data_type = 'timestamp with time zone' "
        "AND (c.table_schema = 'dw' OR c.table_name LIKE 'procrastinate\\_%%') GROUP BY 1, 2"
    ).fetchall()
    for schema, table, names in columns:
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = {0} + (now() - %(made)s::timestamptz)").format(sql.Identifier(n)) for n in names
        )
        conn.execute(
            sql.SQL("UPDATE {}.{} SET {}").format(sql.Identifier(schema), sql.Identifier(table), assignments),
            {"made": made_at},
        )
    conn.execute("RESET session_replication_role")


async def test_a_database_of_the_previous_release_upgrades_and_keeps_its_procedures(
    postgresql: psycopg.Connection,
) -> None:
    retired = set(RELEASES["unreleased"]["retires"])
    fresh = signatures(postgresql)
    runs = META["runs"]
    with sibling_database(postgresql, "dw_upgrade_release") as conninfo:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute((DATA / f"release-{PREVIOUS['version']}.sql").read_text())
            conn.execute("SELECT set_config('search_path', 'public', false)")
            last = conn.execute("SELECT max(version) FROM dw.schema_migrations WHERE version ~ '^[0-9]+$'").fetchone()
            assert last == (PREVIOUS["lastMigration"],)
            before = signatures(conn)
            assert unplannable(conn, META["queries"]) == {}
            move_times(conn, META["madeAt"])

        applied = migrate(conninfo)
        assert [v for v in applied if v.isdigit()] == [
            m.version for m in load_migrations() if m.version > PREVIOUS["lastMigration"]
        ]
        with psycopg.connect(conninfo, autocommit=True) as conn:
            after = signatures(conn)
            # What the previous release's API and workers send still plans: its procedures, tables
            # and columns are there.
            assert unplannable(conn, META["queries"]) == {}
            recorded = dict(conn.execute("SELECT version, checksum FROM dw.schema_migrations").fetchall())
        # The previous release's `migrate` (and `up`, which runs it) has no guard against undoing an
        # upgrade; it compares each recorded checksum of its migrations with its file's, and refuses
        # before installing anything on a difference: its last migration's record is marked (0038).
        # Its files are this checkout's (no released migration may change).
        last = next(m for m in load_migrations() if m.version == PREVIOUS["lastMigration"])
        assert recorded[last.version] != last.checksum and recorded[last.version].startswith(last.checksum + "+")
        assert all(recorded[m.version] == m.checksum for m in load_migrations() if m.version < last.version)
        assert migrate(conninfo) == [], "this release reads the mark"
        # Its procedures are all here, with the same arguments and results, unless retired; and
        # they are defined by this checkout (a fresh installation has them too), not left over.
        kept = {name: result for name, result in before.items() if name not in retired}
        assert {name: after.get(name) for name in kept} == kept
        assert retired <= set(before), "retired procedures must be the previous release's"
        called = {m.group(1) for text in META["queries"].values() for m in re.finditer(r"dw\.(\w+)\(", text)}
        assert not {name.split("(")[0].removeprefix("dw.") for name in retired} & called, (
            "the previous release still calls a retired procedure"
        )
        assert after == fresh

        # A worker of this release finishes what the previous one left: the run whose worker was
        # killed mid-node (node a is not run again), the queued one, and the parked one once its
        # signal comes.
        async with database(conninfo) as db:
            await db.control.signal(
                runs["waiting"],
                "go",
                payload={"word": "go"},
                signal_id="upgrade-1",
                correlation_key=None,
                principal="tests",
                queue="executions",
            )
        async with worker(conninfo), await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            assert await until_ended(conn, list(runs.values())) == dict.fromkeys(runs.values(), "Succeeded")
            cur = await conn.execute(
                "SELECT execution_id::text, node_id, count(*) FILTER (WHERE status = 'Succeeded'), count(*) "
                "FROM dw.action_executions WHERE execution_id = ANY(%s) GROUP BY 1, 2",
                (list(runs.values()),),
            )
            attempts = {(run, node): (succeeded, total) for run, node, succeeded, total in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT outputs FROM dw.node_states WHERE execution_id = %s AND node_id = 'done'", (runs["waiting"],)
            )
            done = await cur.fetchone()
    assert all(succeeded == 1 for succeeded, _ in attempts.values()), attempts
    assert attempts[(runs["running"], "a")] == (1, 1)
    assert done == ({"echo": "go"},)


def test_migrate_takes_an_earlier_text_of_an_edited_migration_and_refuses_any_other(
    postgresql: psycopg.Connection,
) -> None:
    """Migrations 0023, 0024, 0026 and 0034 were edited after development databases applied them:
    their earlier checksums are accepted (sqlfiles.EARLIER_CHECKSUMS), where such a database was
    refused for good. Any other text is refused before anything is applied, Procrastinate's
    migrations and the procedures included."""
    conninfo = postgresql_conninfo(postgresql)
    current = {m.version: m.checksum for m in load_migrations()}
    for version, earlier in EARLIER_CHECKSUMS.items():
        assert earlier and current[version] not in earlier
        for checksum in earlier:
            postgresql.execute("UPDATE dw.schema_migrations SET checksum = %s WHERE version = %s", (checksum, version))
    postgresql.commit()
    assert migrate(conninfo) == []
    postgresql.execute("UPDATE dw.schema_migrations SET checksum = 'edited' WHERE version = '0034'")
    postgresql.execute("DROP FUNCTION dw.renew_lease_v2")
    postgresql.commit()
    with pytest.raises(MigrationError, match=r"0034_throttled_wake changed after it was applied.*Nothing was applied"):
        migrate(conninfo)
    assert postgresql.execute("SELECT to_regproc('dw.renew_lease_v2')").fetchone() == (None,)
    postgresql.execute("UPDATE dw.schema_migrations SET checksum = %s WHERE version = '0034'", (current["0034"],))
    postgresql.commit()
    assert migrate(conninfo) == []
    assert postgresql.execute("SELECT to_regproc('dw.renew_lease_v2')").fetchone() != (None,)


def test_migrate_leaves_a_database_of_a_newer_or_another_release_alone(
    postgresql: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An old release's process that migrates at start (`up`) during a rolling upgrade must not put
    its own procedures back over the newer release's; `migrate` says why it did nothing, and fails."""
    conninfo = postgresql_conninfo(postgresql)
    postgresql.execute("INSERT INTO dw.schema_migrations (version, name, checksum) VALUES ('9999', 'future', 'x')")
    postgresql.execute("DROP FUNCTION dw.renew_lease_v2")
    postgresql.commit()
    with pytest.raises(DatabaseNewerError, match=r"newer release \(migrations 9999"):
        migrate(conninfo)
    info = postgresql.info
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{info.user}@/{info.dbname}?host={info.host}&port={info.port}")
    monkeypatch.setattr(cli, "configure_logging", lambda *_: None)  # structlog's global set-up stays the tests'
    assert cli.main(["migrate"]) != 0
    out = capsys.readouterr()
    assert "up to date" not in out.out and "migrated by a newer release" in out.err
    # Newer, but without one of ours: another line of releases.
    postgresql.execute("UPDATE dw.schema_migrations SET version = '0003x' WHERE version = '0003'")
    postgresql.commit()
    with pytest.raises(MigrationError, match=r"does not know \(9999\) and lacks some of this release.s \(0003\)"):
        migrate(conninfo)
    postgresql.execute("UPDATE dw.schema_migrations SET version = '0003' WHERE version = '0003x'")
    postgresql.execute("DELETE FROM dw.schema_migrations WHERE version = '9999'")
    # A newer Procrastinate installed the queue's schema.
    postgresql.execute("UPDATE dw.schema_migrations SET name = 'procrastinate_schema 99.0.0' WHERE version = '0000'")
    postgresql.commit()
    with pytest.raises(DatabaseNewerError, match=r"Procrastinate 99\.0\.0"):
        migrate(conninfo)
    assert postgresql.execute("SELECT to_regproc('dw.renew_lease_v2')").fetchone() == (None,)
    postgresql.execute(
        "UPDATE dw.schema_migrations SET name = %s WHERE version = '0000'",
        (f"procrastinate_schema {procrastinate.__version__}",),
    )
    postgresql.commit()
    assert migrate(conninfo) == []
    assert postgresql.execute("SELECT to_regproc('dw.renew_lease_v2')").fetchone() == ("dw.renew_lease_v2",)

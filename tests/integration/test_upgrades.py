"""Upgrades: Procrastinate's own migrations under our objects, and a database of the previous release
brought to this one while its procedures stay for the old workers (README "Upgrading")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
from psycopg import sql

from dataworkflows.config import Settings
from dataworkflows.db import Database, make_pool
from dataworkflows.migrations import held_back, migrate
from dataworkflows.procrastinate_schema import capture_dependents, load_queue_migrations, parse_version
from dataworkflows.sqlfiles import load_migrations
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
    """What the application relies on in Procrastinate's schema and ours over it."""
    with psycopg.connect(conninfo) as conn:

        def rows(query: str) -> list[Any]:
            return sorted(conn.execute(query).fetchall())

        return {
            "queue_functions": rows(
                "SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
                "WHERE p.proname LIKE 'procrastinate\\_%' AND p.pronamespace = 'public'::regnamespace"
            ),
            "queue_columns": rows(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "WHERE c.relname LIKE 'procrastinate\\_%' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
            ),
            "queue_triggers": rows(
                "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal "
                "AND tgrelid::regclass::text LIKE 'procrastinate\\_%'"
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


EXTRAS = """
CREATE VIEW dw.v_test_queue_total AS SELECT sum(jobs) AS jobs FROM dw.v_queue_depth;
GRANT SELECT ON dw.v_test_queue_total TO dw_reporting;
CREATE FUNCTION dw.test_started() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END; $$;
CREATE TRIGGER dw_test_started AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW WHEN (NEW.status = 'doing') EXECUTE FUNCTION dw.test_started();
"""


def extra_definitions(conn: psycopg.Connection[Any]) -> Any:
    return conn.execute(
        "SELECT pg_get_viewdef('dw.v_test_queue_total'::regclass), "
        "has_table_privilege('dw_reporting', 'dw.v_test_queue_total', 'SELECT'), "
        "(SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'dw_test_started')"
    ).fetchone()


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
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(record, (migration.version, migration.name, migration.checksum))


async def test_procrastinate_migrations_apply_under_our_views_and_grants(postgresql: psycopg.Connection) -> None:
    queue_files = [m for m in load_queue_migrations() if m.version > parse_version(OLD_QUEUE)]
    pre = ["procrastinate/" + m.stem for m in queue_files if not m.post]
    post = [m.stem for m in queue_files if m.post]
    assert pre and post
    # A fresh installation records the installed Procrastinate's schema.sql as its migration 0000.
    row = postgresql.execute("SELECT name FROM dw.schema_migrations WHERE version = '0000'").fetchone()
    assert row == (f"procrastinate_schema {procrastinate.__version__}",)
    # Our objects over Procrastinate's, found from the catalog as migrate finds them.
    with postgresql.transaction():
        dependents = capture_dependents(postgresql)
    assert [v.name for v in dependents.views] == ["dw.v_queue_depth"]
    assert [i.name for i in dependents.indexes] == ["public.dw_procrastinate_jobs_execution_idx"]
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
            # More of what detaching handles: a view over our view, with a grant, and a trigger
            # whose condition reads the column 3.0.0 changes.
            conn.execute(EXTRAS)
            extras = extra_definitions(conn)

        # A rolling upgrade: pre migrations now, post migrations held back for the old workers.
        assert migrate(conninfo) == pre
        assert held_back(conninfo) == post
        assert migrate(conninfo) == []
        await run_one(conninfo, "in the rolling window")

        # Every process runs the new release: the post migrations follow.
        assert migrate(conninfo, finish=True) == ["procrastinate/" + stem for stem in post]
        assert held_back(conninfo) == []
        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert extra_definitions(conn) == extras
            conn.execute("DROP VIEW dw.v_test_queue_total; DROP TRIGGER dw_test_started ON procrastinate_jobs")
        upgraded = catalog(conninfo)
        await run_one(conninfo, "after the post migrations")
    # Procrastinate's migrations built its current schema, and ours over it is as a fresh
    # installation has it: same views (definition, grants, owner), index and grants.
    for key in fresh:
        assert set(upgraded[key]) ^ set(fresh[key]) == set(), key


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


def test_migrate_leaves_a_database_of_a_newer_release_alone(postgresql: psycopg.Connection) -> None:
    """An old release's process that migrates at start (`up`) during a rolling upgrade must not put
    its own procedures back over the newer release's."""
    conninfo = postgresql_conninfo(postgresql)
    postgresql.execute("INSERT INTO dw.schema_migrations (version, name, checksum) VALUES ('9999', 'future', 'x')")
    postgresql.execute("DROP FUNCTION dw.renew_lease_v2")
    postgresql.commit()
    assert migrate(conninfo) == []
    assert postgresql.execute("SELECT to_regproc('dw.renew_lease_v2')").fetchone() == (None,)
    postgresql.execute("DELETE FROM dw.schema_migrations WHERE version = '9999'")
    postgresql.commit()
    assert migrate(conninfo) == []
    assert postgresql.execute("SELECT to_regproc('dw.renew_lease_v2')").fetchone() == ("dw.renew_lease_v2",)

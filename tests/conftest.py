"""Test infrastructure (DESIGN §8): one embedded PostgreSQL per test process (pytest-xdist runs two a
core, at most four), a template database migrated once in each, and a fresh clone of it for every
test that asks for `postgresql`."""

from __future__ import annotations

import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql import factories

from dataworkflows.actions import default_registry
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database, make_pool
from dataworkflows.publishing import compile_for_publish, prepare_definition
from dataworkflows.template_pool import TemplatePool
from dataworkflows.tenancy import DEFAULT_TENANT, tenant_scope

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@dataclass
class EmbeddedServer:
    """What pytest-postgresql's noproc factory reads from a `depends_on` fixture."""

    host: str
    port: int
    user: str = "postgres"
    password: str = ""
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: str | None = None


# The test server's files go to a RAM file system when one has this much room: every test clones the
# template database (about a thousand files) and drops it, and on this project's machine those file
# operations on ext4 were the suite's largest single cost (about 90 s of system CPU per test process
# in a run of 9 min 19 s, measured with process accounting; half as much per clone on tmpfs).
_RAM_DIR = Path("/dev/shm")
_RAM_ROOM = 4 << 30


def _server_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bool]:
    """Where the test process's server lives, and whether it is ours to remove (RAM) or pytest's."""
    if _ram_room():
        return Path(tempfile.mkdtemp(prefix="dw-test-pg-", dir=_RAM_DIR)), True
    return tmp_path_factory.mktemp("pg"), False


def _ram_room() -> bool:
    try:
        room = os.statvfs(_RAM_DIR)
    except OSError:  # no /dev/shm (macOS): the temporary directory, as before
        return False
    return room.f_bavail * room.f_frsize >= _RAM_ROOM and os.access(_RAM_DIR, os.W_OK)


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    from dataworkflows.embedded import EmbeddedPostgres

    directory, in_ram = _server_dir(tmp_path_factory)
    try:
        server = EmbeddedPostgres(directory, database="postgres")
    except BaseException:
        if in_ram:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    # A throwaway server: durability buys nothing here, and every test clones and drops a database.
    with psycopg.connect(server.uri("postgres"), autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = off")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield EmbeddedServer(host=server.socket_dir, port=server.port)
    finally:
        server.stop()
        if in_ram:
            shutil.rmtree(directory, ignore_errors=True)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (pyproject's addopts): two test processes a core, at most `--maxprocesses` (4). Most of
    a test's time is spent waiting on the real processes it starts and on PostgreSQL, so one process
    a core leaves the cores half idle: on this project's two-core machine the suite took 557 s with
    two and 331 s with four (2026-12-06, the same commit). PYTEST_XDIST_AUTO_NUM_WORKERS still wins."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    return 2 * cores


postgresql_proc = factories.postgresql_noproc(
    depends_on="embedded_pg", dbname="dw_test", load=["dataworkflows.migrations:load_for_tests"]
)


class ClonePool:
    """Clones of the migrated template database, made ahead by a thread. CREATE DATABASE ...
    TEMPLATE takes about a quarter of a second on this schema, more than most tests take; made
    while the previous test runs (mostly on the server's side, on the other core), each test starts
    with its database ready and renames it to its own name (instant)."""

    def __init__(self, proc: Any, ahead: int = 2) -> None:
        self.proc = proc
        self.ready: queue.Queue[str | BaseException] = queue.Queue()
        self.wanted = threading.Semaphore(ahead)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._fill, name="database-clones", daemon=True)
        self.thread.start()

    def admin(self) -> psycopg.Connection[Any]:
        proc = self.proc
        return psycopg.connect(
            host=proc.host,
            port=proc.port,
            user=proc.user,
            password=proc.password or None,
            dbname=proc.maintenance_dbname,
            autocommit=True,
        )

    def _fill(self) -> None:
        made = 0
        try:
            with self.admin() as conn:
                while True:
                    self.wanted.acquire()
                    if self.stopping.is_set():
                        return
                    made += 1
                    name = f"{self.proc.dbname}_clone_{made}"
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            sql.Identifier(name), sql.Identifier(self.proc.template_dbname)
                        )
                    )
                    self.ready.put(name)
        except Exception as exc:  # handed to the test that waits for a clone
            self.ready.put(exc)

    def take(self, as_name: str) -> None:
        """Waits for a clone and gives it `as_name` (dropping one a failed teardown left under that
        name); the next one starts now."""
        got = self.ready.get(timeout=120)
        if isinstance(got, BaseException):
            raise RuntimeError("making a clone of the template database failed") from got
        self.wanted.release()
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(as_name)))
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(got), sql.Identifier(as_name)))

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        self.stopping.set()
        self.wanted.release()
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def _clones(postgresql_proc: Any) -> Iterator[ClonePool]:
    pool = ClonePool(postgresql_proc)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def postgresql(postgresql_proc: Any, _clones: ClonePool) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a fresh clone of the migrated template, dropped after the test (as
    pytest-postgresql's own fixture does, with the clone made ahead: ClonePool)."""
    name = postgresql_proc.dbname
    _clones.take(name)
    conn = psycopg.connect(
        host=postgresql_proc.host,
        port=postgresql_proc.port,
        user=postgresql_proc.user,
        password=postgresql_proc.password or None,
        dbname=name,
        options=postgresql_proc.options,
    )
    try:
        yield conn
    finally:
        conn.close()
        _clones.drop(name)


@pytest.fixture(autouse=True)
def _default_tenant() -> Iterator[None]:
    """Tests work in the default tenant, as a single-tenant installation does: the `db` fixture's
    pool acts as the application role, so row-level security applies to what a test does through
    it (its requests to the API and its workers' jobs choose their own tenants)."""
    with tenant_scope(DEFAULT_TENANT):
        yield


@pytest.fixture
def dsn(postgresql: Any) -> str:
    info = postgresql.info
    return f"host={info.host} port={info.port} user={info.user} dbname={info.dbname}"


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Database]:
    pool = make_pool(dsn, min_size=1, max_size=20, name="tests")
    await pool.open(wait=True)
    try:
        yield Database(pool)
    finally:
        await pool.close()


@pytest.fixture
async def conditions() -> AsyncIterator[ConditionPool]:
    pool = ConditionPool(size=2, timeout_seconds=1.0)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def templates() -> AsyncIterator[TemplatePool]:
    pool = TemplatePool(size=2, timeout_seconds=3.0)
    _TEMPLATES.append(pool)
    try:
        yield pool
    finally:
        _TEMPLATES.remove(pool)
        await pool.close()


# The template pool of the running test, for helpers that build runtimes (its helper processes
# belong to the test's event loop). tests/integration/conftest.py provides one to every test.
_TEMPLATES: list[TemplatePool] = []


def current_templates() -> TemplatePool:
    assert _TEMPLATES, "this test needs the `templates` fixture"
    return _TEMPLATES[-1]


def load_fixture(relative: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / relative).read_text())
    assert isinstance(data, dict)
    return data


async def publish(db: Database, raw: dict[str, Any], conditions: ConditionPool | None = None) -> int:
    """Creates (or versions) and publishes a workflow, prepared as the API prepares it; returns the
    version."""
    # Without a pool, one of its own: it starts a helper process only if the workflow has conditions.
    own = ConditionPool(size=1) if conditions is None else None
    try:
        prepared = await prepare_definition(raw, default_registry(), conditions or own)
    finally:
        if own is not None:
            await own.close()
    definition = prepared.definition
    version, _ = await db.workflows.save_definition(prepared, "tests")
    await db.workflows.publish(
        workflow_id=definition.id, version=version, plan=compile_for_publish(definition, version), principal="tests"
    )
    return version


async def start(
    db: Database, workflow_id: str, trigger: dict[str, Any] | None = None, request_id: str | None = None
) -> Any:
    row = await db.executions.start(
        workflow_id=workflow_id,
        request_id=request_id or os.urandom(8).hex(),
        trigger=trigger or {},
        principal_id="tests",
        principal_type="user",
        correlation_id=None,
        queue="executions",
    )
    return row.execution_id


async def record(
    db: Database,
    execution_id: Any,
    token: int,
    node_id: str = "echo1",
    *,
    attempt: int = 1,
    status: str = "Succeeded",
    node_status: str | None = None,
    outputs: Any = None,
    error: Any = None,
    worker: str = "w",
    fired: list[bool] | None = None,
) -> list[Any]:
    """Records one attempt the way a worker does (dw.record_attempt_v4), with test defaults: the
    outcome follows from the node status (Succeeded; Waiting or Ready: a retry; Failed: handled by
    `fired`)."""
    from datetime import UTC, datetime

    from dataworkflows.checkpoints import AttemptRecord
    from dataworkflows.statuses import AttemptStatus, Verdict

    outcomes = {"Succeeded": Verdict.SUCCEEDED, "Waiting": Verdict.RETRY, "Ready": Verdict.RETRY}
    outcome = outcomes.get(node_status or status, Verdict.FAILED_HANDLED)
    now = datetime.now(UTC)
    recorded = await db.runs.record_attempt(
        AttemptRecord(
            execution_id=execution_id,
            token=token,
            node_id=node_id,
            attempt=attempt,
            action_type="core.echo",
            attempt_status=AttemptStatus(status),
            parameters={},
            outputs=outputs,
            error=error,
            start_time=now,
            end_time=now,
            worker=worker,
            outcome=outcome,
            next_attempt_at=None,
            fired=(True,) if fired is None else tuple(fired),
        )
    )
    return recorded.changes

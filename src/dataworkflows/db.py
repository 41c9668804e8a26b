"""Database access. The only module that runs SQL at run time: named queries from sql/queries,
stored procedures from sql/procedures. Driver errors are translated here, once, into
DataWorkflowsError subclasses (by SQLSTATE or constraint name).
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg
import psycopg.errors
import psycopg_pool
import structlog
from psycopg.rows import TupleRow, dict_row
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from dataworkflows import errors
from dataworkflows.publishing import PreparedDefinition
from dataworkflows.sqlfiles import QUERIES

Row = dict[str, Any]

_SQLSTATE_ERRORS: dict[str, type[errors.DataWorkflowsError]] = {
    "DW001": errors.WorkflowNotFound,
    "DW002": errors.WorkflowNotRunnable,
    "DW003": errors.NotFound,
    "DW004": errors.Conflict,
    "DW005": errors.Conflict,
    "DW006": errors.NotFound,
    "DW010": errors.LeaseLost,
    "DW011": errors.NodeNotRunnable,
    "DW012": errors.ExecutionNotFound,
}
_CONSTRAINT_ERRORS: dict[str, type[errors.DataWorkflowsError]] = {
    "workflows_pkey": errors.WorkflowExists,
}

_encoder = msgspec.json.Encoder()


def _dumps(value: Any) -> str:
    return _encoder.encode(value).decode()


def configure_json() -> None:
    """msgspec for jsonb in both directions: faster than the stdlib, and it encodes structs."""
    set_json_dumps(_dumps)
    set_json_loads(msgspec.json.decode)


def jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _adapt(params: dict[str, Any]) -> dict[str, Any]:
    """dicts go to PostgreSQL as jsonb (lists stay arrays: boolean[], text[])."""
    return {k: Jsonb(v) if isinstance(v, dict) else v for k, v in params.items()}


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except errors.DataWorkflowsError:
        raise
    except psycopg.errors.UniqueViolation as exc:
        name = exc.diag.constraint_name or ""
        cls = _CONSTRAINT_ERRORS.get(name, errors.Conflict)
        raise cls(exc.diag.message_primary or str(exc), constraint=name) from exc
    except psycopg.Error as exc:
        sqlstate = exc.sqlstate or ""
        if sqlstate in _SQLSTATE_ERRORS:
            raise _SQLSTATE_ERRORS[sqlstate](
                exc.diag.message_primary or str(exc), detail=exc.diag.message_detail
            ) from exc
        if sqlstate.startswith("22") or sqlstate.startswith("54") or isinstance(exc, psycopg.DataError):
            # Data exceptions (a NUL character, a number out of range, an impossible interval) and
            # program limits: the input's fault, never a 500.
            raise errors.InvalidInput(f"the database refused a value: {exc.diag.message_primary or exc}") from exc
        if isinstance(exc, psycopg.OperationalError) or sqlstate.startswith("08") or sqlstate in {"57P01", "57P03"}:
            raise errors.DatabaseUnavailable(f"the database is unavailable: {exc}") from exc
        raise
    except psycopg_pool.PoolTimeout as exc:
        raise errors.DatabaseUnavailable("no database connection available (is PostgreSQL running?)") from exc


def make_pool(
    conninfo: str, *, min_size: int = 1, max_size: int = 10, name: str = "dataworkflows", timeout: float = 10.0
) -> psycopg_pool.AsyncConnectionPool:
    configure_json()
    return CheckedPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        timeout=timeout,
        # Autocommit through configure, not kwargs: Procrastinate reuses the pool's kwargs for
        # its LISTEN connection and passes autocommit itself.
        configure=_autocommit,
        # No `check=` callback: CheckedPool.getconn does the checking (see there for why).
        max_idle=300.0,
    )


_log = structlog.get_logger("dataworkflows.db")


class CheckedPool(psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]):
    """A pool that never hands out a connection whose server end is already gone.

    A terminated backend or a restarted server leaves every idle pooled connection dead, and
    without a check the next call on each one fails (DatabaseUnavailable: a 503, a failed job).
    psycopg_pool's check_connection on checkout costs a round trip per database call (measured on
    the embedded server over its Unix socket: checkout + `SELECT 1` 77 us without it, 140 us with
    it). Instead, getconn polls the connection's socket with a zero timeout: an idle healthy
    connection has nothing to read, while a dead one has the server's FATAL message or EOF waiting
    (the same measurement: 80 us, the poll alone under 1.5 us). Only then does it run the real
    check, which fails and lets the pool discard the connection and open a replacement. What this
    cannot see is a peer gone without a word (a network partition): that call fails as before.

    This is done in getconn rather than through the pool's `check=` callback on purpose: after a
    failed check, psycopg_pool sleeps before trying the next connection (about 1 s, then doubling),
    so with several dead connections queued (a restart kills them all) the first requests waited
    seconds and timed out (PoolTimeout, a 503) although the server was back. Here a dead connection
    is dropped and the next one tried at once; the pool's timeout still bounds the wait when the
    server really is down.
    """

    async def getconn(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg_pool's signature
    ) -> psycopg.AsyncConnection[TupleRow]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            conn = await super().getconn(max(deadline - time.monotonic(), 0.0))
            if not _peer_hung_up(conn):
                return conn
            try:
                await psycopg_pool.AsyncConnectionPool.check_connection(conn)
            except psycopg.Error as exc:
                _log.warning(
                    "discarding a pooled connection the server closed",
                    pool=self.name,
                    error=str(exc).strip(),
                    error_type=type(exc).__name__,
                )
                # Broken now (psycopg read the FATAL/EOF): putconn discards it and refills the pool.
                await self.putconn(conn)
                continue
            # Readable for a harmless reason (a notice, a parameter change), consumed by the check.
            return conn


def _peer_hung_up(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has sent something to an idle connection (in practice: FATAL or EOF)."""
    if conn.closed:
        return True
    fd = conn.pgconn.socket
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _, errored = select.select([fd], [], [fd], 0)  # Windows: no poll()
    return bool(readable or errored)


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


class Database:
    """Named queries over an async pool. Each call is one round trip and one transaction."""

    def __init__(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        with translate_errors():
            async with self.pool.connection() as conn:
                yield conn

    async def fetch_all(self, name: str, /, **params: Any) -> list[Row]:
        with translate_errors():
            async with self.pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(QUERIES[name], _adapt(params))
                return await cur.fetchall()

    async def fetch_one(self, name: str, /, **params: Any) -> Row | None:
        with translate_errors():
            async with self.pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(QUERIES[name], _adapt(params))
                return await cur.fetchone()

    async def execute(self, name: str, /, **params: Any) -> None:
        """Runs a named statement that returns no rows."""
        with translate_errors():
            async with self.pool.connection() as conn:
                await conn.execute(QUERIES[name], _adapt(params))

    async def fetch_connection(self, name: str) -> Row | None:
        """For the credential provider: a connection with its ciphertext."""
        return await self.fetch_one("fetch_connection", name=name)

    async def ping(self) -> None:
        with translate_errors():
            async with self.pool.connection(timeout=3.0) as conn:
                await conn.execute("SELECT 1")

    # -- workflows ---------------------------------------------------------------------------

    async def create_workflow(
        self,
        *,
        workflow_id: str,
        display_name: str,
        description: str | None,
        definition: dict[str, Any],
        checksum: str,
        principal: str | None,
        max_concurrent_executions: int | None = None,
    ) -> int:
        """Creates a Draft workflow with version 1; returns the version."""
        with translate_errors():
            async with self.pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(QUERIES["lock_workflow"], {"id": workflow_id})
                if await cur.fetchone() is not None:
                    raise errors.WorkflowExists(
                        f"a workflow with id {workflow_id!r} already exists; PUT /api/v1/workflows/{workflow_id} "
                        "adds a version"
                    )
                await cur.execute(
                    QUERIES["insert_workflow"],
                    {
                        "id": workflow_id,
                        "display_name": display_name,
                        "description": description,
                        "principal": principal,
                        "max_concurrent_executions": max_concurrent_executions,
                    },
                )
                await cur.execute(
                    QUERIES["insert_version"],
                    {"id": workflow_id, "definition": Jsonb(definition), "checksum": checksum, "principal": principal},
                )
                row = await cur.fetchone()
                assert row is not None
                return int(row["version"])

    async def add_version(
        self, *, workflow_id: str, definition: dict[str, Any], checksum: str, principal: str | None
    ) -> tuple[int, bool]:
        """Adds a version unless one with the same checksum exists; returns (version, created)."""
        with translate_errors():
            async with self.pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(QUERIES["lock_workflow"], {"id": workflow_id})
                if await cur.fetchone() is None:
                    raise errors.WorkflowNotFound(f"workflow {workflow_id!r} not found")
                await cur.execute(QUERIES["find_version_by_checksum"], {"id": workflow_id, "checksum": checksum})
                existing = await cur.fetchone()
                if existing is not None:
                    return int(existing["version"]), False
                await cur.execute(
                    QUERIES["insert_version"],
                    {"id": workflow_id, "definition": Jsonb(definition), "checksum": checksum, "principal": principal},
                )
                row = await cur.fetchone()
                assert row is not None
                return int(row["version"]), True

    async def add_workflow_template(
        self,
        *,
        template_id: str,
        display_name: str,
        description: str | None,
        parameters: list[Any],
        definition_template: dict[str, Any],
        checksum: str,
        principal: str | None,
    ) -> tuple[int, bool]:
        """Stores a template version unless one with the same checksum exists; (version, created)."""
        with translate_errors():
            async with self.pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(QUERIES["lock_workflow_template"], {"id": template_id})
                await cur.execute(QUERIES["find_template_by_checksum"], {"id": template_id, "checksum": checksum})
                existing = await cur.fetchone()
                if existing is not None:
                    return int(existing["version"]), False
                await cur.execute(
                    QUERIES["insert_workflow_template"],
                    {
                        "id": template_id,
                        "display_name": display_name,
                        "description": description,
                        "parameters": Jsonb(parameters),
                        "definition_template": Jsonb(definition_template),
                        "checksum": checksum,
                        "principal": principal,
                    },
                )
                row = await cur.fetchone()
                assert row is not None
                return int(row["version"]), True

    async def save_definition(self, prepared: PreparedDefinition, principal: str | None) -> tuple[int, bool]:
        """Creates the workflow from a prepared definition, or adds it as a version (an unchanged
        definition returns its existing version); returns (version, whether it is new)."""
        definition = prepared.definition
        if await self.fetch_one("get_workflow", id=definition.id) is not None:
            return await self.add_version(
                workflow_id=definition.id, definition=prepared.raw, checksum=prepared.checksum, principal=principal
            )
        try:
            version = await self.create_workflow(
                workflow_id=definition.id,
                display_name=definition.display_name,
                description=definition.description,
                definition=prepared.raw,
                checksum=prepared.checksum,
                principal=principal,
            )
        except errors.WorkflowExists:
            # Created by someone else in the meantime: this definition becomes a version of it.
            return await self.add_version(
                workflow_id=definition.id, definition=prepared.raw, checksum=prepared.checksum, principal=principal
            )
        return version, True

    async def publish(self, *, workflow_id: str, version: int, plan: dict[str, Any], principal: str | None) -> None:
        await self.fetch_one("publish_workflow", id=workflow_id, version=version, plan=Jsonb(plan), principal=principal)

    # -- executions --------------------------------------------------------------------------

    async def start_execution(
        self,
        *,
        workflow_id: str,
        request_id: str,
        trigger: dict[str, Any],
        principal_id: str | None,
        principal_type: str | None,
        correlation_id: str | None,
        queue: str,
    ) -> Row:
        row = await self.fetch_one(
            "start_execution",
            workflow_id=workflow_id,
            request_id=request_id,
            trigger=Jsonb(trigger),
            principal_id=principal_id,
            principal_type=principal_type,
            correlation_id=correlation_id,
            queue=queue,
        )
        assert row is not None
        return row

    async def record_attempt(
        self,
        *,
        execution_id: UUID,
        token: int,
        node_id: str,
        attempt: int,
        action_type: str,
        attempt_status: str,
        parameters: Any,
        outputs: Any,
        error: Any,
        start_time: datetime,
        end_time: datetime,
        worker: str,
        node_status: str,
        next_attempt_at: datetime | None,
        fired: list[bool] | None,
        resource_links: list[dict[str, Any]] | None = None,
    ) -> list[Row]:
        return await self.fetch_all(
            "record_attempt",
            id=execution_id,
            token=token,
            node_id=node_id,
            attempt=attempt,
            action_type=action_type,
            attempt_status=attempt_status,
            parameters=jsonb(parameters),
            outputs=jsonb(outputs),
            error=jsonb(error),
            start_time=start_time,
            end_time=end_time,
            worker=worker,
            node_status=node_status,
            next_attempt_at=next_attempt_at,
            fired=fired,
            resource_links=Jsonb(resource_links) if resource_links else None,
        )

"""Database access. With dataworkflows.data, the only code that runs SQL at run time: named queries
from sql/queries, stored procedures from sql/procedures. Callers use the typed methods of the data
layer (db.workflows, db.executions, ...); the generic fetch_one/fetch_all/execute below are its
internals. Driver errors are translated here, once, into DataWorkflowsError subclasses (by SQLSTATE
or constraint name).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol, TypeVar

import msgspec
import psycopg
import psycopg.errors
import psycopg.sql
import psycopg_pool
import psycopg_pool.base
import structlog
from psycopg.rows import DictRow, TupleRow, dict_row
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from dataworkflows import errors
from dataworkflows.answers import CLIENT_CHECK_SECONDS, AnswerWatch, WatchedConnection, answer_within, readable
from dataworkflows.data.compensations import CompensationData
from dataworkflows.data.connections import ConnectionData
from dataworkflows.data.control import ControlData
from dataworkflows.data.document_templates import DocumentTemplateData
from dataworkflows.data.events import EventData
from dataworkflows.data.executions import ExecutionData
from dataworkflows.data.limits import LimitData
from dataworkflows.data.operations import OperationsData
from dataworkflows.data.resources import ResourceData
from dataworkflows.data.retention import RetentionData
from dataworkflows.data.runs import RunData
from dataworkflows.data.schedules import ScheduleData
from dataworkflows.data.triggers import TriggerData
from dataworkflows.data.webhooks import WebhookData
from dataworkflows.data.workflows import WorkflowData
from dataworkflows.errors import SqlState
from dataworkflows.json_text import encode_json, surrogate_refused
from dataworkflows.sqlfiles import QUERIES
from dataworkflows.tcp_liveness import tcp_liveness
from dataworkflows.tenancy import ALL_TENANTS, MAINTENANCE_ROLE, current_tenant

Row = dict[str, Any]
T = TypeVar("T")

# Keyed by SqlState members, which are the SQLSTATE strings themselves (a StrEnum).
SQLSTATE_ERRORS: dict[str, type[errors.DataWorkflowsError]] = {
    SqlState.WORKFLOW_NOT_FOUND: errors.WorkflowNotFound,
    SqlState.WORKFLOW_NOT_RUNNABLE: errors.WorkflowNotRunnable,
    SqlState.VERSION_NOT_FOUND: errors.NotFound,
    SqlState.NOTHING_TO_ARCHIVE: errors.Conflict,
    SqlState.DEAD_LETTER_CLOSED: errors.Conflict,
    SqlState.DEAD_LETTER_NOT_FOUND: errors.NotFound,
    SqlState.REQUEST_ID_REUSED: errors.RequestIdReused,
    SqlState.WORKFLOW_HAS_EXECUTIONS: errors.WorkflowHasExecutions,
    SqlState.LEASE_LOST: errors.LeaseLost,
    SqlState.NODE_NOT_RUNNABLE: errors.NodeNotRunnable,
    SqlState.EXECUTION_NOT_FOUND: errors.ExecutionNotFound,
    SqlState.WORKER_INVARIANT: errors.InvariantViolation,
    SqlState.VERSION_IMMUTABLE: errors.Immutable,
    SqlState.EVENTS_APPEND_ONLY: errors.Immutable,
    SqlState.EXECUTION_ENDED: errors.ExecutionEnded,
    SqlState.CONTROL_CONFLICT: errors.Conflict,
    SqlState.APPROVAL_NOT_FOUND: errors.NotFound,
    SqlState.NOT_AN_APPROVER: errors.Forbidden,
    SqlState.APPROVAL_DECIDED: errors.Conflict,
    SqlState.SIGNAL_ID_REUSED: errors.SignalIdReused,
    SqlState.EVENT_ID_REUSED: errors.EventIdReused,
    SqlState.TRIGGER_NOT_FOUND: errors.NotFound,
    SqlState.INVALID_SCHEDULE: errors.InvalidInput,
    SqlState.TENANT_REQUIRED: errors.InvariantViolation,
}
_CONSTRAINT_ERRORS: dict[str, type[errors.DataWorkflowsError]] = {
    "workflows_pkey": errors.WorkflowExists,
    "triggers_name_key": errors.TriggerNameTaken,
}
# What a unique violation of these constraints means, said instead of PostgreSQL's words.
_CONSTRAINT_MESSAGES: dict[str, str] = {
    # Two creates of one id at once: the one that lost the race (the other's check found none yet).
    "workflows_pkey": "a workflow with this id already exists (created just now by another request); PUT"
    " /api/v1/workflows/{id} adds a version",
    "triggers_name_key": "another trigger of this kind has this name: a trigger's name is unique among the"
    " tenant's triggers of its kind (schedules, webhooks or event triggers), whatever their workflow",
    "template_sets_pkey": "a template set with this id exists already: choose another id, or add templates to that set",
}
# The role the API's and the workers' pools act as (migration 0018 creates it).
APP_ROLE = "dataworkflows_app"
# The server is shutting down (57P01) or starting up (57P03): worth a retry, like a lost connection.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P03", "25P03"})
# Errors the server raises for a statement that the same statement may well not meet again: a
# serialization failure or a deadlock (class 40), insufficient resources (class 53: disk full, out
# of memory), a lock not available (55P03), a system error (class 58: I/O). The server rolled the
# statement's transaction back, so running it again cannot record anything twice (Database.
# _statement does, a few times, before the error becomes DatabaseUnavailable).
_TRANSIENT_SQLSTATE_CLASSES = ("40", "53", "58")
_TRANSIENT_SQLSTATES = frozenset({"55P03"})
# The waits before each new try (1.05 s in all: well within a lease's renewal interval).
STATEMENT_RETRY_DELAYS = (0.05, 0.25, 0.75)


def _dumps(value: Any) -> str:
    # A lone surrogate is refused as msgspec.EncodeError, not UnicodeEncodeError (json_text.encode_json).
    return encode_json(value).decode()


def configure_json() -> None:
    """msgspec for jsonb in both directions: faster than the stdlib, and it encodes structs."""
    set_json_dumps(_dumps)
    set_json_loads(msgspec.json.decode)


def _adapt(params: dict[str, Any]) -> dict[str, Any]:
    """dicts go to PostgreSQL as jsonb (lists stay arrays: boolean[], text[])."""
    return {k: Jsonb(v) if isinstance(v, dict) else v for k, v in params.items()}


def translated(exc: psycopg.Error) -> errors.DataWorkflowsError | None:
    """The DataWorkflowsError a driver error stands for, or None for one that is a bug (a 500)."""
    message = exc.diag.message_primary or str(exc)
    sqlstate = exc.sqlstate or ""
    if (
        sqlstate == "23505"
        or sqlstate in SQLSTATE_ERRORS
        or sqlstate.startswith(("22", "54"))
        or _too_large(sqlstate, message)
    ):
        error = translated_state(sqlstate, message, detail=exc.diag.message_detail, constraint=exc.diag.constraint_name)
        assert isinstance(error, errors.DataWorkflowsError)
        return error
    if isinstance(exc, psycopg.DataError):
        return errors.InvalidInput(f"the database refused a value: {message}")
    # psycopg_pool's PoolTimeout is an OperationalError: no connection came in time.
    if isinstance(exc, psycopg.OperationalError) or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES:
        # The primary message, one line: str(exc) carries PostgreSQL's CONTEXT (a whole procedure's
        # statement, when a prune was cut short by a stopping server: fifteen lines, a review).
        said = errors.first_line(message, or_else=type(exc).__name__)
        if sqlstate == "57014":
            # The database answered, and cancelled the statement (a statement_timeout, or somebody's
            # pg_cancel_backend): a prune past its login's statement_timeout said the database was
            # unavailable (scale review).
            return errors.DatabaseUnavailable(f"the database cancelled a statement: {said}")
        return errors.DatabaseUnavailable(f"the database is unavailable: {said}")
    return None


def translated_state(
    sqlstate: str, message: str, *, detail: str | None = None, constraint: str | None = None
) -> Exception:
    """translated() for an error reported as its SQLSTATE and message (a record refused inside a
    batch: dataworkflows.data.group_commit). One that stands for no DataWorkflowsError comes back
    as the driver's error class for the SQLSTATE, as the driver would have raised it."""
    if sqlstate == "23505":
        name = constraint or ""
        return _CONSTRAINT_ERRORS.get(name, errors.Conflict)(_CONSTRAINT_MESSAGES.get(name, message), constraint=name)
    mapped = SQLSTATE_ERRORS.get(sqlstate)
    if mapped is not None:
        return mapped(message, detail=detail)
    if _too_large(sqlstate, message):
        return errors.ValueTooLarge(f"the database cannot hold a value this large in one piece (1 GB): {message}")
    if sqlstate.startswith(("22", "54")):
        # Data exceptions (a NUL character, a number out of range, an impossible interval) and
        # program limits: the input's fault, never a 500.
        return errors.InvalidInput(f"the database refused a value: {message}")
    if sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES:
        return errors.DatabaseUnavailable(f"the database is unavailable: {message}")
    try:
        return psycopg.errors.lookup(sqlstate)(message)
    except KeyError:
        return psycopg.Error(f"{sqlstate}: {message}")


def _too_large(sqlstate: str, message: str) -> bool:
    """Whether PostgreSQL refused a value for its size as an internal error, not a program limit:
    a JSON array of 26 million numbers (52 MB, an HTTP response within maxResponseBytes) needs more
    than the 1 GB a single allocation may take to become jsonb. The run failed with engine_error
    (a size review); as the input's fault, its node fails with unrecordable_result."""
    return sqlstate == "XX000" and message.startswith("invalid memory alloc request size")


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raises driver errors as DataWorkflowsError subclasses (the driver's error as the cause)."""
    try:
        yield
    except psycopg.Error as exc:
        error = translated(exc)
        if error is None:
            raise
        raise error from exc


def make_pool(
    conninfo: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    name: str = "dataworkflows",
    timeout: float = 10.0,
    role: str | None = APP_ROLE,
    default_workflow_timeout: float | None = None,
    max_runs_per_tree: int | None = None,
    warm_up: bool = False,
    idle_in_transaction_seconds: float | None = None,
    statement_timeout_seconds: float | None = None,
    answer_seconds: float | None = None,
    answer_setting: str | None = None,
) -> psycopg_pool.AsyncConnectionPool:
    """A pool whose connections are in autocommit mode and, with `role`, act as that role (`SET
    ROLE`): the application role owns no table, so row-level security applies to everything the
    pool runs. role=None keeps the login's own rights (migrations, tests that inspect every row).
    default_workflow_timeout: the deadline, in seconds, of runs this pool starts whose definition
    sets none (DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS; 0: none; None: the procedures' one hour).
    max_runs_per_tree: the most runs a tree may hold when this pool's runs start children
    (DW_MAX_RUNS_PER_TREE; 0: no limit; None: the procedures' 20,000).
    warm_up: each new connection runs dw.warm_up_session_v1 (a worker's pool: see there).
    idle_in_transaction_seconds: the sessions' idle_in_transaction_session_timeout
    (DW_IDLE_IN_TRANSACTION_SECONDS; 0 or None: the server's own).
    statement_timeout_seconds: the sessions' statement_timeout (DW_STATEMENT_TIMEOUT_SECONDS, the API's
    pool; 0 or None: the server's own).
    answer_seconds: the longest any call on a connection this pool lends waits for an answer before the
    connection is severed (dataworkflows.answers.AnswerWatch; the worker's DW_WORKER_ANSWER_SECONDS; 0:
    none), named `answer_setting` in the error; None: statement_timeout_seconds +
    STATEMENT_ANSWER_GRACE_SECONDS when that is set (the server's own timeout comes first when the server
    is merely slow), else none."""
    configure_json()
    if answer_seconds is None and statement_timeout_seconds:
        answer_seconds = statement_timeout_seconds + STATEMENT_ANSWER_GRACE_SECONDS
        answer_setting = answer_setting or "DW_STATEMENT_TIMEOUT_SECONDS and its grace"
    pool = CheckedPool(
        conninfo,
        connection_class=WatchedConnection,
        # Procrastinate opens its LISTEN connection with the pool's conninfo and kwargs: it has them too.
        kwargs=tcp_liveness(conninfo),
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        timeout=timeout,
        # Autocommit through configure, not kwargs: Procrastinate reuses the pool's kwargs for
        # its LISTEN connection and passes autocommit itself.
        configure=functools.partial(
            _configure,
            role=role or None,
            default_timeout=default_workflow_timeout,
            max_runs_per_tree=max_runs_per_tree,
            warm_up=warm_up,
            idle_in_transaction_seconds=idle_in_transaction_seconds,
            statement_timeout_seconds=statement_timeout_seconds,
            client_check=bool(answer_seconds),
        ),
        # No `check=` callback: CheckedPool.getconn does the checking (see there for why).
        max_idle=300.0,
    )
    pool.role = role or None
    pool.answer_watch = (
        AnswerWatch(answer_seconds, answer_setting or "the pool's answer bound") if answer_seconds else None
    )
    return pool


_log = structlog.get_logger("dataworkflows.db")

# The longest wait between two attempts to reach a database that is away: a pool's attempts to open
# a connection again (CheckedPool), a worker's listeners and retries (workers.app.Backoff). Once
# the server is back, each is back within this many seconds.
RECONNECT_MAX_DELAY_SECONDS = 2.0


class CappedReconnect(psycopg_pool.base.AttemptWithBackoff):
    """psycopg_pool's reconnect schedule (1 s, then doubling), its delays held to
    RECONNECT_MAX_DELAY_SECONDS. Left alone the delays grew with the outage (1, 3, 7, 15, 31, 63 and
    127 s after the first failure): measured, a pool whose server was down 100 s had its next
    attempt, and the API and the worker their first connection, 16 s after the server came back."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY_SECONDS)


class CheckedPool(psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]):
    """A pool that never hands out a connection whose server end is already gone.

    `role`: the role its connections act as (make_pool), None for the login's own.

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

    role: str | None = None
    # The bound on each answer on the connections this pool lends (dataworkflows.answers); None: none.
    answer_watch: AnswerWatch | None = None

    async def _add_connection(
        self, attempt: psycopg_pool.base.AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        """psycopg_pool's own, with the reconnect schedule of CappedReconnect: a connection that
        could not be opened is tried again at most RECONNECT_MAX_DELAY_SECONDS later
        (tests/acceptance/test_connection_faults.py checks the schedule, so a psycopg_pool that
        changes how it retries fails there, not silently)."""
        await super()._add_connection(attempt or CappedReconnect(timeout=self.reconnect_timeout), growing)

    async def _get_ready_connection(
        self,
        timeout: float | None,  # noqa: ASYNC109 - psycopg_pool's signature
    ) -> psycopg.AsyncConnection[TupleRow] | None:
        """psycopg_pool's own, taking the connection returned last instead of the one idle longest
        (LIFO, not FIFO). Rotating through every connection made each of a worker's 28 pay its
        first-call costs (PL/pgSQL compiling the run's procedures, plans, the tables' descriptions:
        about 10 ms a fetch and 6.5 ms a record) within its first runs, and a new worker's first
        100-200 starts queued for up to 250 ms behind them; now the few connections a load needs stay
        warm, and the rest idle (psycopg_pool's shrinking closes those from the other end). A copy of
        psycopg_pool 3.3's method but for pop(): tests/integration/test_worker_pool.py checks the
        order, so a psycopg_pool that changes it fails there, not silently."""
        if timeout is not None and timeout <= 0.0:
            raise psycopg_pool.PoolTimeout()
        conn = None
        if self._pool:
            conn = self._pool.pop()
            if len(self._pool) < self._nconns_min:
                self._nconns_min = len(self._pool)
        elif self.max_waiting and len(self._waiting) >= self.max_waiting:
            self._stats[self._REQUESTS_ERRORS] += 1
            raise psycopg_pool.TooManyRequests(
                f"the pool {self.name!r} has already {len(self._waiting)} requests waiting"
            )
        return conn

    async def getconn(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg_pool's signature
    ) -> psycopg.AsyncConnection[TupleRow]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            conn = await super().getconn(max(deadline - time.monotonic(), 0.0))
            if not _peer_hung_up(conn):
                return self._lent(conn)
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
            return self._lent(conn)

    def _lent(self, conn: psycopg.AsyncConnection[TupleRow]) -> psycopg.AsyncConnection[TupleRow]:
        """The connection, its waits for answers watched while it is lent (the pool's own use of it, its
        checks and resets, is not: it has timeouts of its own)."""
        if isinstance(conn, WatchedConnection):
            conn.answer_watch = self.answer_watch
        return conn

    async def putconn(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        if isinstance(conn, WatchedConnection):
            conn.answer_watch = None
        await super().putconn(conn)


def _peer_hung_up(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has sent something to an idle connection (in practice: FATAL or EOF)."""
    return conn.closed or readable(conn)


async def _configure(
    conn: psycopg.AsyncConnection[Any],
    *,
    role: str | None,
    default_timeout: float | None = None,
    max_runs_per_tree: int | None = None,
    warm_up: bool = False,
    idle_in_transaction_seconds: float | None = None,
    statement_timeout_seconds: float | None = None,
    client_check: bool = False,
) -> None:
    await conn.set_autocommit(True)
    if client_check and conn.info.server_version >= 140000:
        # A statement its caller gave up (the pool's AnswerWatch severed the connection: the server was
        # merely slow) stops within this long, rather than running on to its end for nobody.
        await conn.execute(
            "SELECT set_config('client_connection_check_interval', %s, false)",
            (str(round(CLIENT_CHECK_SECONDS * 1000)),),
        )
    for setting, seconds in (
        ("idle_in_transaction_session_timeout", idle_in_transaction_seconds),
        ("statement_timeout", statement_timeout_seconds),
    ):
        if seconds:
            # In milliseconds, at least 1 (PostgreSQL reads a bare number so; 0 would mean no limit).
            milliseconds = max(round(seconds * 1000), 1)
            await conn.execute("SELECT set_config(%s, %s, false)", (setting, str(milliseconds)))
    if default_timeout is not None:
        # Read by dw.start_run_v1 for runs whose definition sets no workflowTimeout.
        await conn.execute("SELECT set_config('dw.default_workflow_timeout', %s, false)", (str(default_timeout),))
    if max_runs_per_tree is not None:
        # Read by dw.start_child_v2 (a session setting: the children's procedures keep their signatures).
        await conn.execute("SELECT set_config('dw.max_runs_per_tree', %s, false)", (str(max_runs_per_tree),))
    if role is not None:
        try:
            await conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
        except psycopg.errors.InvalidParameterValue as exc:
            raise errors.ConfigurationError(
                f"cannot SET ROLE {role}: run `dataworkflows migrate` (it creates the role) and grant it to "
                f"the database user ({exc.diag.message_primary})"
            ) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise errors.ConfigurationError(
                f"the database user may not act as {role}: GRANT {role} TO <the user in DATABASE_URL>"
            ) from exc
    if warm_up:
        try:
            await conn.execute("SELECT dw.warm_up_session_v1()")
        except psycopg.Error as exc:
            # Only the first runs on this connection are slower without it: not a reason to refuse
            # the connection (an older schema without the function, a statement the server refused).
            _log.warning("a new connection's warm-up failed", error=str(exc).strip(), error_type=type(exc).__name__)


# The tenant and role each pooled connection's session was last given by the data layer (see _enter).
_SESSIONS: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], tuple[str, str | None]] = weakref.WeakKeyDictionary()


async def _enter(conn: psycopg.AsyncConnection[Any], pool_role: str | None) -> None:
    """Gives the connection the task's tenant (dataworkflows.tenancy) before it runs anything.

    Every call the data layer makes goes through here, on whatever pooled connection it got: the
    connection's session is set to the task's tenant, or to none ('') for a task that entered no
    scope (row-level security then shows it nothing, whoever used the connection before), and work
    across tenants (ALL_TENANTS) takes the maintenance role, which the application role holds none
    of otherwise (migration 0018), so that its own policy stays a plain equality that indexes serve.
    It costs a statement only when the tenant or role changes: the statements themselves keep
    server-side binding and psycopg's prepared statements. (Setting it per transaction, `SET LOCAL`,
    would put every statement in an explicit transaction or a pipeline, or make it unprepared;
    measured on a two-table read: 105 us this way, 287 us pipelined, 332 us in a transaction,
    530 us as one unprepared multi-statement message: bench/tenancy.py, README "Tenants".)"""
    tenant = current_tenant()
    role = MAINTENANCE_ROLE if tenant == ALL_TENANTS and pool_role is not None else pool_role
    wanted = (tenant or "", role)
    if _SESSIONS.get(conn) == wanted:
        return
    # Forgotten first: a failure below leaves the connection to be set again by its next user.
    _SESSIONS.pop(conn, None)
    if role is None:
        await conn.execute("SELECT set_config('dw.tenant_id', %s, false)", (wanted[0],))
    else:
        await conn.execute(
            "SELECT set_config('role', %s, false), set_config('dw.tenant_id', %s, false)", (role, wanted[0])
        )
    _SESSIONS[conn] = wanted


def _forget(conn: psycopg.AsyncConnection[Any]) -> None:
    """The connection's session was changed outside _enter: set it again at its next use."""
    _SESSIONS.pop(conn, None)


# How much longer than its statement_timeout a pool's caller waits for an answer before it severs the
# connection (make_pool): time for the server's own timeout to arrive first when the server is merely slow.
STATEMENT_ANSWER_GRACE_SECONDS = 2.0
# The readiness probe's whole time: a connection and one round trip (Database.ping).
PING_SECONDS = 3.0


class Transaction:
    """Named statements on one connection inside one transaction (for the data layer)."""

    def __init__(self, cursor: psycopg.AsyncCursor[DictRow]) -> None:
        self._cursor = cursor

    async def fetch_one(self, name: str, /, **params: Any) -> Row | None:
        await self._cursor.execute(QUERIES[name], _adapt(params))
        return await self._cursor.fetchone()

    async def fetch_all(self, name: str, /, **params: Any) -> list[Row]:
        await self._cursor.execute(QUERIES[name], _adapt(params))
        return await self._cursor.fetchall()


def transient_state(sqlstate: str) -> bool:
    """Whether a refusal with this SQLSTATE may well not come again (see _TRANSIENT_SQLSTATES)."""
    return sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES) or sqlstate in _TRANSIENT_SQLSTATES


def _refused_transiently(exc: psycopg.Error, conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server answered the statement with a transient error (see _TRANSIENT_SQLSTATES)
    on a connection that is still open. Never true for a statement whose answer was lost (the
    connection died: it may have committed) nor for a refusal that would come again (a DWnnn
    invariant, a constraint, a bug)."""
    return (
        transient_state(exc.sqlstate or "")
        and exc.pgresult is not None
        and not conn.closed
        # In a transaction (Database.all_or_nothing's), a refused statement aborted all of it: it is not
        # run again alone, which would only be refused as "current transaction is aborted".
        and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )


def _stop_if_cancelled() -> None:
    """Raises the CancelledError that the wait for a pooled connection swallowed, if it did.

    psycopg_pool waits for a connection with asyncio.wait_for, which in Python 3.11 returns a
    result that arrives together with a cancellation and drops the cancellation (fixed in 3.12,
    gh-86296): the task carries on as if nothing had asked it to stop. tests/faults found it under
    repeated pg_terminate_backend (the pools drained, callers queued for connections): a run's lease
    heartbeat, cancelled as its run ended, got its connection instead, renewed the lease and went on
    renewing it forever, so that the run was held by a live worker, never resumed and never
    recovered. A task that is being cancelled (Task.cancelling()) and still asks for the database
    stops here; nothing in the data layer's callers goes on with database work after catching a
    cancellation in the same task (they shield such work in a task of its own)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


async def _run(
    conn: psycopg.AsyncConnection[Any],
    query: str,
    params: dict[str, Any],
    pool_role: str | None,
    *,
    one_message: bool = False,
) -> psycopg.AsyncCursor[DictRow]:
    """Runs one statement (its own transaction: the pool's connections autocommit) as the task's tenant.
    one_message: the query is several statements, sent together (_pipelined); the cursor is on the first
    one's answer."""
    _stop_if_cancelled()
    await _enter(conn, pool_role)
    try:
        if one_message:
            return await _pipelined(conn, query, _adapt(params))
        cur: psycopg.AsyncCursor[DictRow] = conn.cursor(row_factory=dict_row)
        await cur.execute(query, _adapt(params))
    except UnicodeEncodeError as exc:
        # A text parameter holding a lone surrogate (a wait's correlation key rendered from one), refused
        # by UTF-8 as psycopg adapts it, before anything was sent: the caller's InvalidInput (a failed
        # node, a 4xx), not a crash (a review: the node task crashed, engine_error).
        raise errors.InvalidInput(surrogate_refused(exc, "PostgreSQL's text")) from None
    return cur


# Where a named query of several statements ends one (sqlfiles keeps each statement's line end).
_STATEMENT_SPLIT = re.compile(r";[ \t]*\n")


async def _pipelined(
    conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]
) -> psycopg.AsyncCursor[DictRow]:
    """A query of several statements in one pipeline: one round trip, each statement over the extended
    protocol, its parameters sent apart from its text (bound by the server). Statements from a BEGIN
    to a COMMIT commit with it, and those after it in a transaction of their own, committed at the
    pipeline's end (start_execution_then_notify: the start, then its notification). The BEGIN makes
    the transaction explicit: a COMMIT of the pipeline's implicit one (the pool's connections
    autocommit) made PostgreSQL log "WARNING: there is no transaction in progress" at every start (a
    review); a Sync in its place waited for the start's answer before the notification went (psycopg's
    Pipeline.sync), a round trip more.
    It was one simple-protocol message with the driver binding the values into the text, so
    PostgreSQL's log, which quotes a statement that fails (log_min_error_statement), carried them,
    and every refused start (a 404, a 409) wrote its whole trigger there, secrets and all (a review).
    Returns the cursor of the first statement that is not a BEGIN or a COMMIT.

    A statement's failure can surface inside the block (psycopg reads the answers that have come while it
    sends the next statement) or at its end. Raised inside, it made the pipeline's exit fail as well
    ("pipeline aborted"), which psycopg logs as a warning of its own, outside our log's format, on every
    refused start (a 404, a 409: a review). The failure is kept, the pipeline closed, then it is raised."""
    cursors: list[psycopg.AsyncCursor[DictRow]] = []
    failure: psycopg.Error | None = None
    try:
        async with conn.pipeline():
            for statement in _STATEMENT_SPLIT.split(query):
                cur = conn.cursor(row_factory=dict_row)
                # Only the first that answers rows is prepared (as psycopg decides; BEGIN and COMMIT
                # never): one after it that a failure skipped (the pipeline aborts up to its end) was
                # not prepared either, though psycopg counted it so, and its next use failed on a
                # prepared statement that does not exist.
                control = statement.strip().upper() in _TRANSACTION_CONTROL
                try:
                    await cur.execute(
                        statement,
                        params if "%(" in statement else None,
                        prepare=False if control or cursors else None,
                    )
                except psycopg.Error as exc:
                    failure = exc
                    break
                if not control:
                    cursors.append(cur)
    except psycopg.Error as exc:
        # A failure read at the pipeline's end; after one read inside, the exit's own "pipeline
        # aborted" (or the lost connection that caused the failure): the statement's says what happened.
        failure = failure or exc
    if failure is not None:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            # A statement between the BEGIN and its COMMIT failed: the transaction it began stays
            # open, aborted, until it is rolled back (else the pool does it, with a warning of its
            # own). A connection lost meanwhile is the pool's to discard.
            with contextlib.suppress(psycopg.OperationalError):
                await conn.rollback()
        raise failure
    return cursors[0]


# A named query's BEGIN and COMMIT: sent in the pipeline, not answered with rows.
_TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT"})


class ConnectionLender(Protocol):
    """What a Database borrows its connections from: a pool, or _OneConnection."""

    def connection(
        self, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...


class _OneConnection:
    """Lends the same connection, in a transaction, to every call (Database.all_or_nothing)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], role: str | None) -> None:
        self._conn = conn
        self.role = role

    @contextlib.asynccontextmanager
    async def connection(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - the pool's signature
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        yield self._conn


class Database:
    """Named queries over an async pool. Each call is one round trip and one transaction, except
    inside `transaction()` and `all_or_nothing()`. Every transaction runs under the task's tenant
    (dataworkflows.tenancy). The data layer's typed methods hang off it by area."""

    def __init__(self, pool: ConnectionLender) -> None:
        self.pool = pool
        self._pool_role: str | None = getattr(pool, "role", None)
        self._pinned = isinstance(pool, _OneConnection)
        self.workflows = WorkflowData(self)
        self.executions = ExecutionData(self)
        self.operations = OperationsData(self)
        self.connections = ConnectionData(self)
        self.resources = ResourceData(self)
        # Cancel, suspend, resume, signals and approvals: requests from outside the worker.
        self.control = ControlData(self)
        # What a worker reads and writes while it holds a run's lease.
        self.runs = RunData(self)
        # Triggers (schedules and webhooks), the scheduler's ticks and webhook deliveries.
        self.triggers = TriggerData(self)
        self.schedules = ScheduleData(self)
        self.webhooks = WebhookData(self)
        # The API's token buckets per caller and workflows' start limits.
        self.limits = LimitData(self)
        # Document template sets, templates and their versions.
        self.document_templates = DocumentTemplateData(self)
        # Removing finished runs past their retention; workflows' retention.
        self.retention = RetentionData(self)
        # The steps that undo a run's nodes after it ended otherwise than Succeeded.
        self.compensations = CompensationData(self)
        # Published CloudEvents and the runs their event triggers started.
        self.events = EventData(self)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection for tools and tests, as the task's tenant (see _enter). Whatever the
        borrower does to its session, the next user of the connection sets it again."""
        if self._pinned:
            raise RuntimeError("connection() would roll all_or_nothing's transaction back as it ends")
        with translate_errors():
            async with self.pool.connection() as conn:
                _stop_if_cancelled()
                await _enter(conn, self._pool_role)
                try:
                    yield conn
                finally:
                    _forget(conn)
                    if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        await conn.rollback()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Several named statements that commit together, or not at all."""
        with translate_errors():
            async with self.pool.connection() as conn:
                _stop_if_cancelled()
                await _enter(conn, self._pool_role)
                async with conn.transaction():
                    yield Transaction(conn.cursor(row_factory=dict_row))

    @contextlib.asynccontextmanager
    async def all_or_nothing(self) -> AsyncIterator[Database]:
        """A Database whose every call, the typed methods' included, runs on one connection in one
        transaction: committed as the block ends, rolled back whole if it raises (and by the server if
        the process dies). A typed method's own transaction() is a savepoint in it. It holds the
        connection and every lock it takes until the block ends (a typed method's transaction-level
        advisory locks too): for short work that must land whole or not at all (the examples' load).
        Not for fetch_one_of_message, whose COMMIT would end the block's transaction."""
        with translate_errors():
            async with self.pool.connection() as conn:
                _stop_if_cancelled()
                await _enter(conn, self._pool_role)
                try:
                    async with conn.transaction():
                        yield Database(_OneConnection(conn, self._pool_role))
                finally:
                    _forget(conn)  # a session setting changed inside was rolled back with it

    async def _statement(
        self,
        name: str,
        params: dict[str, Any],
        fetch: Callable[[psycopg.AsyncCursor[DictRow]], Awaitable[T]],
        *,
        one_message: bool = False,
    ) -> T:
        """Runs one named statement (its own transaction) and fetches its answer. A statement the
        server refused with a transient error rolled back whole, so it runs again after a short
        wait, at most len(STATEMENT_RETRY_DELAYS) times, before the error is raised (as
        DatabaseUnavailable): a worker's checkpoint survives a deadlock or a full disk for a moment
        without its run waiting for its lease to expire and its action running again. A statement
        whose answer was lost (the connection died) is never run again here: it may have committed,
        and the procedures' fencing and the run's lease decide what happens next."""
        delays = iter(STATEMENT_RETRY_DELAYS)
        with translate_errors():
            while True:
                async with self.pool.connection() as conn:
                    try:
                        cur = await _run(conn, QUERIES[name], params, self._pool_role, one_message=one_message)
                        return await fetch(cur)
                    except psycopg.Error as exc:
                        delay = next(delays, None) if _refused_transiently(exc, conn) else None
                        if delay is None:
                            raise
                        refusal = f"{exc.sqlstate}: {exc.diag.message_primary or exc}"
                _log.warning("retrying a statement the server refused", query=name, error=refusal, retry_in=delay)
                await asyncio.sleep(delay)

    async def fetch_all(self, name: str, /, **params: Any) -> list[Row]:
        return await self._statement(name, params, _fetch_all)

    async def fetch_one(self, name: str, /, **params: Any) -> Row | None:
        return await self._statement(name, params, _fetch_one)

    async def fetch_one_of_message(self, name: str, /, **params: Any) -> Row | None:
        """A named query of several statements (each committed as its COMMITs say), sent together in one
        pipeline (_pipelined): the first row of the first statement's answer. A transient refusal sends
        them all again, so its statements must bear that (start_execution_then_notify's do: the start
        is idempotent by request id)."""
        if self._pinned:
            raise RuntimeError("a pipeline's COMMIT would end all_or_nothing's transaction")
        return await self._statement(name, params, _fetch_one, one_message=True)

    async def execute(self, name: str, /, **params: Any) -> None:
        """Runs a named statement that returns no rows."""
        await self._statement(name, params, _fetch_nothing)

    async def fetch_one_as(self, cls: type[T], name: str, /, **params: Any) -> T | None:
        """One row as a struct (its fields named like the query's columns)."""
        row = await self.fetch_one(name, **params)
        return None if row is None else msgspec.convert(row, cls)

    async def fetch_all_as(self, cls: type[T], name: str, /, **params: Any) -> list[T]:
        """Rows as structs (their fields named like the query's columns)."""
        return [msgspec.convert(row, cls) for row in await self.fetch_all(name, **params)]

    async def ping(self, seconds: float = PING_SECONDS) -> None:
        """A round trip, in at most `seconds` with the wait for a connection (the readiness probe's:
        a review found it unbounded with DW_STATEMENT_TIMEOUT_SECONDS=0, and up to 6 s otherwise)."""
        started = time.monotonic()
        with translate_errors():
            async with self.pool.connection(timeout=seconds) as conn:
                left = max(seconds - (time.monotonic() - started), 0.05)
                with answer_within(conn, left, what="the readiness probe's bound"):
                    await conn.execute("SELECT 1")


async def _fetch_all(cur: psycopg.AsyncCursor[DictRow]) -> list[Row]:
    return await cur.fetchall()


async def _fetch_one(cur: psycopg.AsyncCursor[DictRow]) -> Row | None:
    return await cur.fetchone()


async def _fetch_nothing(cur: psycopg.AsyncCursor[DictRow]) -> None:
    return None

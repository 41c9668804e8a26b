"""Live execution events: one LISTEN connection per process fans notifications out to every
stream that follows an execution (no polling loop per client). The NOTIFY comes from a trigger on
dw.execution_events (channel dw_events_<execution id without dashes>). It fires only for executions
listed in dw.event_listeners, which a hub fills while it follows them, and its payload is constant so a
transaction's events fold into one notification: a wake-up, after which the stream reads its rows.

psycopg's notifies() owns the connection while it waits, so one reader task is the connection's
only user: it waits for notifications in short windows and runs LISTEN/UNLISTEN requests between
them. Notifications that arrive meanwhile are kept by libpq and delivered in the next window.

The connection is checked, not trusted: a quiet one is pinged every PING_SECONDS, every wait for an
answer is bounded by ANSWER_SECONDS (past it the connection is severed), and a lost connection is
opened again, with a backoff, for as long as any stream follows an execution; once back, it listens to
everything followed again and every stream re-reads the log. A stream whose LISTEN could not be made
goes on by looking at the log by itself until then.

When the process stops, end_streams() ends every live stream at once (after the events it has not
sent yet), so that the server does not wait on clients that would follow a run for hours; an SSE
client reconnects with Last-Event-ID and resumes where it was.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import psycopg
import psycopg.conninfo
import structlog
from psycopg import sql

from dataworkflows.data.executions import add_event_listener, remove_event_listener
from dataworkflows.db import RECONNECT_MAX_DELAY_SECONDS, STATEMENT_ANSWER_GRACE_SECONDS, answer_within, shut_down
from dataworkflows.errors import DataWorkflowsError
from dataworkflows.tcp_liveness import tcp_liveness
from dataworkflows.tenancy import ALL_TENANTS, MAINTENANCE_ROLE

log = structlog.get_logger("dataworkflows.events")

FINAL_EVENTS = frozenset({"execution_succeeded", "execution_failed", "execution_cancelled", "execution_timedout"})
_WINDOW_SECONDS = 0.1
# A quiet connection is asked for an answer this often, and any wait for one is bounded by
# ANSWER_SECONDS (EventHub's ping_seconds and answer_seconds; see _serve).
PING_SECONDS = 10.0
ANSWER_SECONDS = 10.0
_BOUND = "the event listener's bound"
# The first wait before connecting again after a loss; it doubles up to RECONNECT_MAX_DELAY_SECONDS.
_FIRST_RECONNECT_SECONDS = 0.25


Command = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


def _conninfo_keys(conninfo: str) -> set[str]:
    try:
        return set(psycopg.conninfo.conninfo_to_dict(conninfo))
    except psycopg.ProgrammingError:
        return set()


def _said(exc: BaseException) -> str:
    """An error for a log line: a timeout's str() is empty."""
    return str(exc) or type(exc).__name__


def channel(execution_id: UUID) -> str:
    return "dw_events_" + execution_id.hex


class EventHub:
    """Subscriptions by execution: LISTEN while someone follows it, UNLISTEN when the last leaves."""

    def __init__(
        self,
        conninfo: str,
        *,
        role: str | None = None,
        ping_seconds: float = PING_SECONDS,
        answer_seconds: float = ANSWER_SECONDS,
    ) -> None:
        self.conninfo = conninfo
        self._ping_seconds = ping_seconds
        self._answer_seconds = answer_seconds
        self._connected = False
        self._lost = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        # The hub's connection serves every tenant's streams (each stream checks its caller may
        # see the execution before it subscribes): it acts as the application role, across
        # tenants, and its dw.event_listeners rows take their execution's tenant.
        self.role = role or None
        self.listener_id = uuid.uuid4().hex
        self._subscribers: dict[str, set[asyncio.Queue[int | None]]] = {}
        self._followed: set[str] = set()
        # Requests for the reader (LISTEN, UNLISTEN), oldest first; one whose caller stopped waiting (its
        # future done) is passed over.
        self._commands: collections.deque[tuple[Command, asyncio.Future[None]]] = collections.deque()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self._ending = False

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            # In a context of its own: the reader serves every stream, not the request (its log
            # fields, its tenant) that happened to start it.
            self._reader = asyncio.create_task(self._run(), name="event-hub", context=contextvars.Context())

    async def _run(self) -> None:
        """The reader: connects, and while anything is followed or asked for connects again after a loss
        (at most RECONNECT_MAX_DELAY_SECONDS apart), so that streams get their wake-ups back without
        waiting for another stream to start; ends when nothing is (the next request starts it again)."""
        delay = 0.0
        while not self._closed:
            self._connected = False
            try:
                await self._serve()
            except (psycopg.Error, DataWorkflowsError) as exc:
                if self._connected or delay == 0.0:
                    self._lost = True
                    log.warning("event listener connection lost", error=_said(exc))
                    # Every stream re-reads from the database: what it missed meanwhile is in the log.
                    self._wake_all()
            # Requests waiting now are failed at once, not after their callers' 10 s: a new stream
            # looks at the log by itself (the next connection listens for it), a stream that leaves
            # leaves. Kept, they kept the reader reconnecting after the last stream had gone (a review).
            self._fail_pending()
            if self._connected:
                delay = 0.0
            if self._closed or not self._subscribers:
                return
            delay = min(max(delay * 2, _FIRST_RECONNECT_SECONDS), RECONNECT_MAX_DELAY_SECONDS)
            await asyncio.sleep(delay)

    async def _serve(self) -> None:
        """One connection's life: LISTEN to everything followed, then notifications in short windows, the
        requests between them, and a ping when the connection has been quiet for ping_seconds. Each wait
        for an answer is bounded by answer_seconds (answer_within severs the connection past it): a server
        that stopped answering (its process frozen, a partition TCP has not noticed yet) left the hub
        waiting, the streams without their wake-ups and every new stream's LISTEN unanswered."""
        conninfo = self.conninfo
        settings = tcp_liveness(conninfo)
        if "connect_timeout" not in _conninfo_keys(conninfo):
            settings["connect_timeout"] = str(max(1, round(self._answer_seconds)))
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, **settings) as conn:
            self._conn = conn
            await self._set_up(conn)
            self._connected = True
            if self._lost:
                self._lost = False
                log.info("event listener connected again", following=len(self._subscribers))
            # Events written while the hub was away came without a wake-up: the streams look now.
            self._wake_all()
            quiet_since = time.monotonic()
            while not self._closed:
                if await self._run_commands(conn):
                    quiet_since = time.monotonic()
                async for notify in conn.notifies(timeout=_WINDOW_SECONDS):
                    quiet_since = time.monotonic()
                    for queue in list(self._subscribers.get(notify.channel, ())):
                        queue.put_nowait(0)
                if time.monotonic() - quiet_since >= self._ping_seconds:
                    with answer_within(conn, self._answer_seconds, what=_BOUND):
                        await conn.execute("SELECT 1")
                    quiet_since = time.monotonic()

    async def _set_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A new connection's session (its role, every tenant), and LISTEN to everything followed."""
        with answer_within(conn, self._answer_seconds, what=_BOUND) as deadline:
            # The server ends a statement that waits (on a lock: a LISTEN's row while someone holds
            # dw.event_listeners) before the hub would cut the connection: cut, the backend stayed in
            # the lock's queue, and each reconnection left one more there (a review).
            await conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(self._statement_ms()),))
            deadline.restart()
            if self.role is not None:
                # Across tenants: the maintenance role (the application role is a member).
                await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(MAINTENANCE_ROLE)))
                deadline.restart()
            await conn.execute("SELECT set_config('dw.tenant_id', %s, false)", (ALL_TENANTS,))
            deadline.restart()
            # After a reconnect, listen again to everything that is followed.
            for name in list(self._subscribers):
                try:
                    await self._follow(UUID(hex=name.removeprefix("dw_events_")))(conn)
                except psycopg.Error as exc:
                    if conn.broken or deadline.severed:
                        raise
                    # That stream looks at the log by itself; the others are followed.
                    log.warning("following an execution live failed; its stream polls", error=str(exc))
                deadline.restart()

    def _statement_ms(self) -> int:
        """The hub's statement_timeout: STATEMENT_ANSWER_GRACE_SECONDS less than answer_seconds, as the
        pools' (half of it when it is that short)."""
        seconds = self._answer_seconds
        seconds = (
            seconds - STATEMENT_ANSWER_GRACE_SECONDS if seconds > 2 * STATEMENT_ANSWER_GRACE_SECONDS else seconds / 2
        )
        return max(1, round(seconds * 1000))

    async def _run_commands(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """The requests waiting (LISTEN, UNLISTEN), each bounded by answer_seconds; whether any was run."""
        ran = False
        while self._commands:
            command, done = self._commands.popleft()
            if done.done():
                continue  # its caller stopped waiting
            ran = True
            try:
                with answer_within(conn, self._answer_seconds, what=_BOUND):
                    await command(conn)
            except asyncio.CancelledError:
                # close(): the request's caller is answered now, not at its 10 s.
                if not done.done():
                    done.set_exception(ConnectionError("the event listener stopped"))
                raise
            except (psycopg.Error, DataWorkflowsError) as exc:
                if not done.done():
                    done.set_exception(exc)
                if conn.broken or not isinstance(exc, psycopg.Error):
                    raise
                # A refused statement (autocommit: nothing else is undone) fails its request only;
                # the connection serves the other streams (it took them all down, and each
                # reconnection made the same request fail again).
                continue
            if not done.done():
                done.set_result(None)
        return ran

    def _wake_all(self) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(None)

    def _fail_pending(self) -> None:
        while self._commands:
            _, done = self._commands.popleft()
            if not done.done():
                done.set_exception(ConnectionError("the event listener stopped"))

    async def _request(self, command: Command) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commands.append((command, done))
        self._ensure_reader()
        await asyncio.wait_for(done, 10)

    def _follow(self, execution_id: UUID) -> Command:
        async def command(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel(execution_id))))
            await add_event_listener(conn, execution_id, self.listener_id)

        return command

    def _unfollow(self, execution_id: UUID) -> Command:
        async def command(conn: psycopg.AsyncConnection[Any]) -> None:
            await remove_event_listener(conn, execution_id, self.listener_id)
            await conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel(execution_id))))

        return command

    @contextlib.asynccontextmanager
    async def subscribe(self, execution_id: UUID) -> AsyncIterator[asyncio.Queue[int | None]]:
        """A queue of event ids for one execution; LISTEN is active when this is entered."""
        name = channel(execution_id)
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        first = name not in self._subscribers
        self._subscribers.setdefault(name, set()).add(queue)
        try:
            # A stopping hub follows nothing new: such a stream sends what is there and ends.
            if first and not self._ending:
                self._followed.add(name)
                try:
                    await self._request(self._follow(execution_id))
                except (psycopg.Error, DataWorkflowsError, ConnectionError, TimeoutError) as exc:
                    # The stream goes on without wake-ups (it looks at the log by itself, at least every
                    # _KEEPALIVE_SECONDS) until the hub is back: its reconnection listens to every
                    # execution followed, this one included. It raised out of the stream, which ended with an error.
                    log.warning(
                        "following an execution live failed; its stream polls until the hub is back", error=_said(exc)
                    )
            yield queue
        finally:
            subscribers = self._subscribers.get(name)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[name]
                    followed = name in self._followed
                    self._followed.discard(name)
                    # Without a connection there is no LISTEN to undo: the next one listens only to what
                    # is followed then (the listener row is pruned later).
                    if followed and not self._closed and self._connected:
                        try:
                            await self._request(self._unfollow(execution_id))
                        except Exception as exc:
                            # Harmless (a stale listener row is pruned later), but visible.
                            log.warning("could not stop following an execution", error=_said(exc))

    def end_streams(self) -> None:
        """The process is stopping: every stream ends after its next read of the log, and new
        streams only send what is already there (see `ending`)."""
        self._ending = True
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(None)

    @property
    def ending(self) -> bool:
        return self._ending

    async def close(self) -> None:
        self._ending = True
        self._closed = True
        if self._reader is not None:
            if not self._reader.done() and self._conn is not None:
                # A wait on a server that does not answer ends at once: cancelled instead, psycopg sends
                # a cancel request and waits up to 5 s for the statement to end.
                shut_down(self._conn, why="the event listener stops: its connection is shut down")
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        # A request the cancelled reader had not run (a stream starting as the process stops) is
        # answered now, not at its caller's 10 s.
        self._fail_pending()

    @property
    def listening(self) -> int:
        return len(self._subscribers)


def is_final(event_type: str) -> bool:
    return event_type in FINAL_EVENTS


__all__ = ["FINAL_EVENTS", "EventHub", "channel", "is_final"]

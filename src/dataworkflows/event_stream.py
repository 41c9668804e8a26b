"""Live execution events: one LISTEN connection per process fans notifications out to every
stream that follows an execution (no polling loop per client). The NOTIFY comes from a trigger on
dw.execution_events (channel dw_events_<execution id without dashes>). It fires only for executions
listed in dw.event_listeners, which a hub fills while it follows them, and its payload is constant so a
transaction's events fold into one notification: a wake-up, after which the stream reads its rows.

psycopg's notifies() owns the connection while it waits, so one reader task is the connection's
only user: it waits for notifications in short windows, and between them makes what the connection
listens to match what streams follow (EventHub). Notifications that arrive meanwhile are kept by
psycopg and delivered in the next window.

The connection is checked, not trusted: a quiet one is pinged every PING_SECONDS, every wait for an
answer is bounded by ANSWER_SECONDS (past it the connection is severed; the session's statement_timeout
ends a statement that waits on a lock first), and a lost connection is opened again, with a backoff,
for as long as any stream follows an execution; once back, it listens to everything followed again and
every stream re-reads the log. A stream whose LISTEN is not made within FOLLOW_WAIT_SECONDS (no
connection, a refusal, which is tried again) goes on by looking at the log by itself until it is.

When the process stops, end_streams() ends every live stream at once (after the events it has not
sent yet), so that the server does not wait on clients that would follow a run for hours; an SSE
client reconnects with Last-Event-ID and resumes where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import psycopg
import structlog
from psycopg import sql

from dataworkflows.answers import answer_within, shut_down
from dataworkflows.data.executions import add_event_listener, remove_event_listener, renew_event_listeners
from dataworkflows.db import RECONNECT_MAX_DELAY_SECONDS, STATEMENT_ANSWER_GRACE_SECONDS
from dataworkflows.errors import DataWorkflowsError
from dataworkflows.tcp_liveness import given_settings, tcp_liveness
from dataworkflows.tenancy import ALL_TENANTS, MAINTENANCE_ROLE

log = structlog.get_logger("dataworkflows.events")

FINAL_EVENTS = frozenset({"execution_succeeded", "execution_failed", "execution_cancelled", "execution_timedout"})
_WINDOW_SECONDS = 0.1
# A quiet connection is asked for an answer this often, and any wait for one is bounded by
# ANSWER_SECONDS (EventHub's ping_seconds and answer_seconds; see _serve).
PING_SECONDS = 10.0
ANSWER_SECONDS = 10.0
_BOUND = "the event listener's bound"
# How long a joining stream waits for its LISTEN before it goes on looking at the log by itself, and how
# soon a refused LISTEN is tried again.
FOLLOW_WAIT_SECONDS = 2.0
FOLLOW_RETRY_SECONDS = 2.0
FOLLOW_RETRY_MAX_SECONDS = 30.0
# The hub's lock_timeout (below its statement_timeout).
LOCK_TIMEOUT_MS = 1000
# A connection that lived this long was not flapping: the next one after its loss is opened at once.
_STABLE_SECONDS = 10.0
# How often the hub renews its dw.event_listeners rows' `since`: the worker prunes rows older than a day
# (those of a process that died without removing them), and a run followed by overlapping streams for
# longer lost its notifications (a review).
LISTENER_RENEW_SECONDS = 3600.0
# The first wait before connecting again after a loss; it doubles up to RECONNECT_MAX_DELAY_SECONDS.
_FIRST_RECONNECT_SECONDS = 0.25


Command = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


def _said(exc: BaseException) -> str:
    """An error for a log line: a timeout's str() is empty."""
    return str(exc) or type(exc).__name__


def channel(execution_id: UUID) -> str:
    return "dw_events_" + execution_id.hex


class EventHub:
    """Subscriptions by execution: LISTEN while someone follows it, UNLISTEN when the last leaves.

    The reader keeps what the connection listens to (`_listening`) in line with what streams follow
    (`_subscribers`), between notification windows: it follows what is followed and not listened to
    (again after a refusal, FOLLOW_RETRY_SECONDS later), and unfollows what is listened to and no longer
    followed. A new connection listens to nothing, so the same pass follows everything again. Streams
    never send the reader requests: a stream that joins waits (FOLLOW_WAIT_SECONDS at most) for its
    LISTEN, a stream that leaves does not wait at all."""

    def __init__(
        self,
        conninfo: str,
        *,
        role: str | None = None,
        ping_seconds: float = PING_SECONDS,
        answer_seconds: float = ANSWER_SECONDS,
        follow_wait_seconds: float = FOLLOW_WAIT_SECONDS,
        renew_seconds: float = LISTENER_RENEW_SECONDS,
    ) -> None:
        self.conninfo = conninfo
        self._renew_seconds = renew_seconds
        self._ping_seconds = ping_seconds
        self._answer_seconds = answer_seconds
        self._follow_wait_seconds = follow_wait_seconds
        self._connected = False
        self._lost = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        # The hub's connection serves every tenant's streams (each stream checks its caller may
        # see the execution before it subscribes): it acts as the application role, across
        # tenants, and its dw.event_listeners rows take their execution's tenant.
        self.role = role or None
        self.listener_id = uuid.uuid4().hex
        # Channel -> the queues of the streams that follow it.
        self._subscribers: dict[str, set[asyncio.Queue[int | None]]] = {}
        # Channels the current connection listens to, and has a dw.event_listeners row for.
        self._listening: set[str] = set()
        # Channel -> when a follow that was refused may be tried again (time.monotonic()), and the wait
        # before that try (doubling, up to FOLLOW_RETRY_MAX_SECONDS).
        self._retry: dict[str, tuple[float, float]] = {}
        # Channel -> the joining streams waiting for its LISTEN.
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self._ending = False

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            # In a context of its own: the reader serves every stream, not the request (its log
            # fields, its tenant) that happened to start it.
            self._reader = asyncio.create_task(self._run(), name="event-hub", context=contextvars.Context())

    async def _run(self) -> None:
        """The reader: connects, and while anything is followed connects again after a loss (at most
        RECONNECT_MAX_DELAY_SECONDS apart, later while connections die young), so that streams get their
        wake-ups back without waiting for another stream to start. A live connection is kept (pinged)
        when nothing is followed; after a loss with nothing followed the reader ends, and the next
        stream starts it again."""
        delay = 0.0
        while not self._closed:
            self._connected = False
            began = time.monotonic()
            try:
                await self._serve()
            except (psycopg.Error, DataWorkflowsError) as exc:
                if self._connected or delay == 0.0:
                    self._lost = True
                    log.warning("event listener connection lost", error=_said(exc))
            self._listening.clear()
            # Streams waiting for their LISTEN go on by themselves now, not after their wait: the next
            # connection listens for them.
            self._release_waiters(ConnectionError("the event listener has no connection"))
            if self._connected and time.monotonic() - began >= _STABLE_SECONDS:
                delay = 0.0
            if self._closed or not self._subscribers:
                return
            delay = min(max(delay * 2, _FIRST_RECONNECT_SECONDS), RECONNECT_MAX_DELAY_SECONDS)
            await asyncio.sleep(delay)

    async def _serve(self) -> None:
        """One connection's life: notifications in short windows, and between them what is followed made
        to match what is listened to, and a ping when the connection has been quiet for ping_seconds. Each
        wait for an answer is bounded by answer_seconds (answer_within severs the connection past it): a
        server that stopped answering (its process frozen, a partition TCP has not noticed yet) left the
        hub waiting, the streams without their wake-ups and every new stream's LISTEN unanswered."""
        conninfo = self.conninfo
        settings = tcp_liveness(conninfo)
        if "connect_timeout" not in (given_settings(conninfo) or set()):
            settings["connect_timeout"] = str(max(1, round(self._answer_seconds)))
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, **settings) as conn:
            self._conn = conn
            await self._set_up(conn)
            self._connected = True
            first = True
            quiet_since = renewed = time.monotonic()
            while not self._closed:
                if await self._reconcile(conn):
                    quiet_since = time.monotonic()
                if first:
                    first = False
                    if self._lost:
                        self._lost = False
                        log.info("event listener connected again", following=len(self._listening))
                    # Events written while the hub was away came without a wake-up: the streams look now.
                    self._wake_all()
                async for notify in conn.notifies(timeout=_WINDOW_SECONDS):
                    quiet_since = time.monotonic()
                    for queue in list(self._subscribers.get(notify.channel, ())):
                        queue.put_nowait(0)
                if time.monotonic() - renewed >= self._renew_seconds:
                    await self._renew(conn)
                    quiet_since = renewed = time.monotonic()
                if time.monotonic() - quiet_since >= self._ping_seconds:
                    with answer_within(conn, self._answer_seconds, what=_BOUND):
                        await conn.execute("SELECT 1")
                    quiet_since = time.monotonic()

    async def _set_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A new connection's session: its statement_timeout, its role, every tenant."""
        with answer_within(conn, self._answer_seconds, what=_BOUND) as deadline:
            # The server ends a statement that waits (on a lock: a LISTEN's row while someone holds
            # dw.event_listeners) before the hub would cut the connection: cut, the backend stayed in
            # the lock's queue, and each reconnection left one more there (a review).
            await conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(self._statement_ms()),))
            deadline.restart()
            # A lock that holds a LISTEN's row holds the reader, and so every stream's wake-ups: its wait
            # is short, and the refused LISTEN is tried again later.
            await conn.execute(
                "SELECT set_config('lock_timeout', %s, false)", (str(min(LOCK_TIMEOUT_MS, self._statement_ms())),)
            )
            deadline.restart()
            # The connection is idle between notifications by design: a server's idle_session_timeout
            # (PostgreSQL 14 and later) below the ping's interval ended it every few seconds, and each
            # reconnection listened again to every run and woke every stream (a review).
            await conn.execute(
                "SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'"
            )
            deadline.restart()
            if self.role is not None:
                # Across tenants: the maintenance role (the application role is a member).
                await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(MAINTENANCE_ROLE)))
                deadline.restart()
            await conn.execute("SELECT set_config('dw.tenant_id', %s, false)", (ALL_TENANTS,))

    async def _renew(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Its rows are still in use (the prune goes by their age); the round trip is a ping too. A refusal
        is said and tried again at the next renewal; a lost connection raises."""
        try:
            with answer_within(conn, self._answer_seconds, what=_BOUND):
                await renew_event_listeners(conn, self.listener_id)
        except psycopg.Error as exc:
            if conn.broken:
                raise
            log.warning("the event listener could not renew its listener rows", error=_said(exc))

    def _statement_ms(self) -> int:
        """The hub's statement_timeout: STATEMENT_ANSWER_GRACE_SECONDS less than answer_seconds, as the
        pools' (half of it when it is that short)."""
        seconds = self._answer_seconds
        seconds = (
            seconds - STATEMENT_ANSWER_GRACE_SECONDS if seconds > 2 * STATEMENT_ANSWER_GRACE_SECONDS else seconds / 2
        )
        return max(1, round(seconds * 1000))

    async def _reconcile(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Follows what streams follow and the connection does not listen to (not while the process stops,
        nor before a failed follow's retry time), and unfollows what it listens to and nobody follows;
        whether it said anything to the server. A refused statement (autocommit: nothing else is undone)
        is tried again later; a lost connection raises."""
        said = await self._follow_joining(conn)
        for name in [name for name in self._listening if name not in self._subscribers]:
            said = True
            # Done or not, the stream is gone: a row left behind is pruned later (a day).
            self._listening.discard(name)
            if not await self._said_to_server(conn, self._unfollow, name):
                log.warning("could not stop following an execution; its listener row is pruned later", channel=name)
        for name in [name for name in self._retry if name not in self._subscribers]:
            del self._retry[name]
        return said

    async def _follow_joining(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """_reconcile's follows; whether any was tried."""
        joining = [] if self._ending else [name for name in self._subscribers if name not in self._listening]
        said = False
        for name in joining:
            if self._retry.get(name, (0.0, 0.0))[0] > time.monotonic():
                continue
            said = True
            # Streams that no longer wait for it (their wait ended, or a refusal before) have read the
            # log without it: once it is made they look again (events written meanwhile sent no NOTIFY).
            stale = name in self._retry or not any(not waiter.done() for waiter in self._waiters.get(name, ()))
            if await self._said_to_server(conn, self._follow, name):
                self._listening.add(name)
                self._retry.pop(name, None)
                self._release_waiters(None, name)
                if stale:
                    self._wake(name)
                continue
            # From the attempt's end (a lock's wait took up to LOCK_TIMEOUT_MS of it).
            self._refused(name, time.monotonic())
            self._release_waiters(ConnectionError("its LISTEN was refused; tried again later"), name)
            # The others wait for the next pass: a lock that refused one would hold the reader, and
            # every stream's wake-ups, for each of them in turn (a review).
            break
        return said

    def _refused(self, name: str, now: float) -> None:
        """A follow the server refused: tried again after FOLLOW_RETRY_SECONDS, doubling."""
        previous = self._retry.get(name)
        wait = FOLLOW_RETRY_SECONDS if previous is None else min(previous[1] * 2, FOLLOW_RETRY_MAX_SECONDS)
        self._retry[name] = (now + wait, wait)

    async def _said_to_server(
        self, conn: psycopg.AsyncConnection[Any], command: Callable[[UUID], Command], name: str
    ) -> bool:
        """Runs a follow or unfollow, bounded by answer_seconds: whether the server did it. A refusal is
        answered False, and logged unless it is a follow refused before (its retries wait longer each
        time); a lost or severed connection raises."""
        try:
            with answer_within(conn, self._answer_seconds, what=_BOUND):
                await command(UUID(hex=name.removeprefix("dw_events_")))(conn)
        except psycopg.Error as exc:
            if conn.broken:
                raise
            if name not in self._retry:
                log.warning("the event listener's statement was refused", channel=name, error=_said(exc))
            return False
        return True

    def _wake(self, name: str) -> None:
        for queue in list(self._subscribers.get(name, ())):
            queue.put_nowait(None)

    def _wake_all(self) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(None)

    def _release_waiters(self, error: BaseException | None, name: str | None = None) -> None:
        """Answers the streams waiting for a LISTEN (one channel's, or all): made (None), or not (error)."""
        names = [name] if name is not None else list(self._waiters)
        for each in names:
            for waiter in self._waiters.pop(each, []):
                if not waiter.done():
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)

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
        """A queue of wake-ups for one execution. When this is entered, the execution's LISTEN is made,
        or it could not be within follow_wait_seconds (the stream looks at the log by itself until the
        reader has made it: FIRST_LOOK in the API's stream, then at least every keepalive)."""
        name = channel(execution_id)
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        self._subscribers.setdefault(name, set()).add(queue)
        waiter: asyncio.Future[None] | None = None
        try:
            # A stopping hub follows nothing new: such a stream sends what is there and ends.
            if name not in self._listening and not self._ending and not self._closed:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.setdefault(name, []).append(waiter)
                self._ensure_reader()
                try:
                    async with asyncio.timeout(self._follow_wait_seconds):
                        await waiter
                except (ConnectionError, TimeoutError) as exc:
                    # Until then it failed the stream: it raised out of it, which ended with an error.
                    if not self._ending:
                        log.warning("following an execution live is not done yet; its stream polls", error=_said(exc))
            yield queue
        finally:
            # Its wait ended (answered, timed out, or the stream left while waiting): not kept.
            waiting = self._waiters.get(name)
            if waiter is not None and waiting is not None and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[name]
            subscribers = self._subscribers.get(name)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    # The reader unfollows it at its next pass (0.1 s): leaving waits for nothing.
                    del self._subscribers[name]

    def end_streams(self) -> None:
        """The process is stopping: every stream ends after its next read of the log, and new
        streams only send what is already there (see `ending`)."""
        self._ending = True
        # A stream still waiting for its LISTEN goes on now: it sends what is there and ends (it
        # waited its FOLLOW_WAIT_SECONDS, past a short shutdown grace, and was cut off mid-body).
        self._release_waiters(ConnectionError("the process is stopping"))
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
        # A stream joining as the process stops is answered now, not at the end of its wait.
        self._release_waiters(ConnectionError("the event listener stopped"))

    @property
    def listening(self) -> int:
        return len(self._subscribers)


def is_final(event_type: str) -> bool:
    return event_type in FINAL_EVENTS


__all__ = ["FINAL_EVENTS", "EventHub", "channel", "is_final"]

"""Live execution events: one LISTEN connection per process fans notifications out to every
stream that follows an execution (no polling loop per client). The NOTIFY comes from a trigger on
dw.execution_events (channel dw_events_<execution id without dashes>). It fires only for executions
listed in dw.event_listeners, which a hub fills while it follows them, and its payload is constant so a
transaction's events fold into one notification: a wake-up, after which the stream reads its rows.

psycopg's notifies() owns the connection while it waits, so one reader task is the connection's
only user: it waits for notifications in short windows and runs LISTEN/UNLISTEN requests between
them. Notifications that arrive meanwhile are kept by libpq and delivered in the next window.

When the process stops, end_streams() ends every live stream at once (after the events it has not
sent yet), so that the server does not wait on clients that would follow a run for hours; an SSE
client reconnects with Last-Event-ID and resumes where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import psycopg
import structlog
from psycopg import sql

from dataworkflows.data.executions import add_event_listener, remove_event_listener
from dataworkflows.tenancy import ALL_TENANTS, MAINTENANCE_ROLE

log = structlog.get_logger("dataworkflows.events")

FINAL_EVENTS = frozenset({"execution_succeeded", "execution_failed", "execution_cancelled", "execution_timedout"})
_WINDOW_SECONDS = 0.1


Command = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


def channel(execution_id: UUID) -> str:
    return "dw_events_" + execution_id.hex


class EventHub:
    """Subscriptions by execution: LISTEN while someone follows it, UNLISTEN when the last leaves."""

    def __init__(self, conninfo: str, *, role: str | None = None) -> None:
        self.conninfo = conninfo
        # The hub's connection serves every tenant's streams (each stream checks its caller may
        # see the execution before it subscribes): it acts as the application role, across
        # tenants, and its dw.event_listeners rows take their execution's tenant.
        self.role = role or None
        self.listener_id = uuid.uuid4().hex
        self._subscribers: dict[str, set[asyncio.Queue[int | None]]] = {}
        self._followed: set[str] = set()
        self._commands: asyncio.Queue[tuple[Command, asyncio.Future[None]]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self._ending = False

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            # In a context of its own: the reader serves every stream, not the request (its log
            # fields, its tenant) that happened to start it.
            self._reader = asyncio.create_task(self._run(), name="event-hub", context=contextvars.Context())

    async def _run(self) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                if self.role is not None:
                    # Across tenants: the maintenance role (the application role is a member).
                    await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(MAINTENANCE_ROLE)))
                await conn.execute("SELECT set_config('dw.tenant_id', %s, false)", (ALL_TENANTS,))
                # After a reconnect, listen again to everything that is followed.
                for name in list(self._subscribers):
                    await self._follow(UUID(hex=name.removeprefix("dw_events_")))(conn)
                while not self._closed:
                    while not self._commands.empty():
                        command, done = self._commands.get_nowait()
                        try:
                            await command(conn)
                        except psycopg.Error as exc:
                            if not done.done():
                                done.set_exception(exc)
                            raise
                        if not done.done():
                            done.set_result(None)
                    async for notify in conn.notifies(timeout=_WINDOW_SECONDS):
                        for queue in list(self._subscribers.get(notify.channel, ())):
                            queue.put_nowait(0)
        except psycopg.Error as exc:
            log.warning("event listener connection lost", error=str(exc))
        finally:
            # Fail pending requests and wake every stream: streams re-read from the database.
            while not self._commands.empty():
                _, done = self._commands.get_nowait()
                if not done.done():
                    done.set_exception(ConnectionError("the event listener stopped"))
            for queues in self._subscribers.values():
                for queue in queues:
                    queue.put_nowait(None)

    async def _request(self, command: Command) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commands.put_nowait((command, done))
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
                await self._request(self._follow(execution_id))
            yield queue
        finally:
            subscribers = self._subscribers.get(name)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[name]
                    followed = name in self._followed
                    self._followed.discard(name)
                    if followed and not self._closed:
                        try:
                            await self._request(self._unfollow(execution_id))
                        except Exception as exc:
                            # Harmless (a stale listener row is pruned later), but visible.
                            log.warning("could not stop following an execution", error=str(exc))

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
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    @property
    def listening(self) -> int:
        return len(self._subscribers)


def is_final(event_type: str) -> bool:
    return event_type in FINAL_EVENTS


__all__ = ["FINAL_EVENTS", "EventHub", "channel", "is_final"]

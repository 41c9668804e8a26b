"""How long a call waits for the database's answer, bounded on the client's side.

A server that answers nothing (its backend stopped by SIGSTOP, a frozen VM or container, a pooler
such as pgbouncer in front of a partitioned server) is one that PostgreSQL's own statement_timeout
cannot end, and TCP cannot see it either: the kernel or the pooler keeps the connection alive, so
keepalives and tcp_user_timeout (dataworkflows.tcp_liveness) are answered. Without a bound of its
own, a caller waits for as long as the server is stopped.

Two bounds, one way of ending a wait (shut_down: the socket is shut down, whatever waits on it reads
EOF at once, and the pool discards the connection):

- AnswerWatch: a pool's bound on every call made on a connection it has lent (make_pool's
  answer_seconds: the API's DW_STATEMENT_TIMEOUT_SECONDS and its grace, the worker's
  DW_WORKER_ANSWER_SECONDS). It covers every caller of the pool, the data layer and Procrastinate's
  queries alike, because it sits in the connection's own wait for each answer (WatchedConnection). A
  single timer per pool checks the calls waiting, so a call pays a clock read and two dict operations,
  not a timer of its own. Work that may rightly wait longer (ANALYZE, retention's batches) runs inside
  `unbounded_answers()`.
- answer_within: an explicit bound around a block on one connection (the event hub's connection, the
  readiness probe), restarted after each answer.

A statement the server did finish may have committed before its answer was lost, as with any lost
connection: the API's writes are idempotent by their request ids or refuse a repeat, and a worker's
records are fenced by its lease. A statement that was merely slow goes on in its backend until that
backend notices the client is gone: the pools' sessions set client_connection_check_interval
(PostgreSQL 14 and later), so a running statement stops within CLIENT_CHECK_SECONDS of the sever."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.connection_async
import structlog
from psycopg.abc import PQGen
from psycopg.rows import TupleRow

from dataworkflows import errors

_log = structlog.get_logger("dataworkflows.db")

# How often a backend whose pool bounds its answers checks, while it runs a statement, that its client
# is still there (client_connection_check_interval): a statement its client gave up stops this soon.
CLIENT_CHECK_SECONDS = 5.0

_UNBOUNDED: contextvars.ContextVar[bool] = contextvars.ContextVar("dw_answers_unbounded", default=False)


@contextlib.contextmanager
def unbounded_answers() -> Iterator[None]:
    """Calls made inside (and in tasks started inside) wait for their answers as long as they take,
    whatever their pool's AnswerWatch: for work that may rightly run long (an ANALYZE of a large
    table, a retention batch's deletes). It is the waiting task's context that counts: work handed to a
    task that exists already (group commit's flusher, which writes its callers' records together) keeps
    that task's bound, and a task started inside keeps none for its whole life, so start none here that
    outlives the block's purpose. Neither ANALYZE nor retention goes through such tasks."""
    token = _UNBOUNDED.set(True)
    try:
        yield
    finally:
        _UNBOUNDED.reset(token)


class AnswerTimeout(psycopg.OperationalError):
    """The database did not answer within a pool's bound, and the connection was severed. An
    OperationalError without a SQLSTATE, as psycopg's own for a lost connection: every caller that
    rides out a lost connection (the worker's retries, the data layer's DatabaseUnavailable, a 503)
    treats it as one."""


def answer_timed_out(exc: BaseException) -> bool:
    """Whether the error is, or was caused by, an AnswerTimeout (the data layer wraps it)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        if isinstance(current, AnswerTimeout):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class AnswerWatch:
    """A pool's bound on the wait for each answer on the connections it lends (see the module's doc).
    `what` names the setting in the error."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        # How often the waiting calls are checked: a call is severed between `seconds` and `seconds`
        # plus this after its wait began.
        self.period = min(1.0, max(seconds / 4, 0.05))
        # Each waiting call: (when it began, when its counted wait began, its longest stall so far).
        self._waiting: dict[WatchedConnection, tuple[float, float, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        # When the timer is due: a check that runs later than that ran behind a stalled event loop.
        self._due = 0.0

    def begin(self, conn: WatchedConnection) -> None:
        now = time.monotonic()
        self._waiting[conn] = (now, now, 0.0)
        if self._timer is None:
            self._schedule()

    def end(self, conn: WatchedConnection) -> None:
        self._waiting.pop(conn, None)

    def _schedule(self) -> None:
        self._due = time.monotonic() + self.period
        self._timer = asyncio.get_running_loop().call_later(self.period, self._check)

    def _check(self) -> None:
        self._timer = None
        now = time.monotonic()
        stalled = now - self._due
        if stalled > self.period:
            # The event loop itself was held (a CPU-bound step in some task: a large answer's parse):
            # a call may not even have been sent meanwhile, and its time is not the server's silence.
            # It is not counted (a size review: a 15 s stall severed a worker's calls, its runs were
            # taken over and their HTTP calls made again). Only the part of a call's wait inside the
            # lateness is: a call begun after the check was due (by the task that held the loop, once it
            # let go) was not held by it, and is not given the stall on top of its bound (a review).
            # What a call is given back in all is capped: its bound, or its longest single stall when
            # that is longer. A busy loop (a task holding it 0.2 s at a time, again and again) made
            # every check late, and each lateness was given back: a 1 s bound took 2.8 s, and longer
            # holds stretched it without end (a review). Between holds the loop runs, the call is sent
            # and its answer read: the holds' sum is not the call's lost time, as one long stall's is.
            # A call on a silent server is severed within twice the larger of the two (plus a check's
            # period and lateness); an answer that came meanwhile still saves it (readable, below).
            for conn, (began, since, longest) in self._waiting.items():
                longest = max(longest, min(stalled, now - began))
                self._waiting[conn] = (began, min(since + stalled, now, began + max(self.seconds, longest)), longest)
        for conn, (_, since, _) in list(self._waiting.items()):
            # An answer waiting to be read is one that came: the event loop, not the server, was late (a
            # stall in another task past the bound, a review); the next check sees it read, or not.
            if now - since >= self.seconds and not (conn.closed or readable(conn)):
                del self._waiting[conn]
                conn.answer_severed = True
                shut_down(conn, bound=f"{self.seconds:g} s ({self.what})")
        if self._waiting:
            self._schedule()


class WatchedConnection(psycopg.AsyncConnection[TupleRow]):
    """The pools' connection class: while a pool with an AnswerWatch lends it (`answer_watch` set by
    the pool's getconn, cleared by its putconn), each wait for the server's answer is watched. A
    connection the pool did not lend (Procrastinate's LISTEN connection, made with the pool's class
    and settings, which rightly waits for notifications for ever) is not."""

    answer_watch: AnswerWatch | None = None
    answer_severed: bool = False

    async def wait(
        self,
        gen: PQGen[Any],
        interval: float = psycopg.connection_async._WAIT_INTERVAL,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg's signature
    ) -> Any:
        watch = self.answer_watch
        # A wait with a timeout of its own (psycopg's notifies()) is bounded already.
        if watch is None or timeout is not None or _UNBOUNDED.get():
            return await super().wait(gen, interval, timeout)
        self.answer_severed = False  # this wait's: an earlier one's sever fails this one as a lost connection
        watch.begin(self)
        try:
            return await super().wait(gen, interval, timeout)
        except psycopg.Error as exc:
            if self.answer_severed:
                raise AnswerTimeout(f"the database did not answer within {watch.seconds:g} s ({watch.what})") from exc
            raise
        finally:
            watch.end(self)


class _Deadline:
    """The timer of answer_within: it severs the connection `seconds` after it was last (re)started."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], seconds: float | None) -> None:
        self._conn = conn
        self.seconds = seconds
        self.severed = False
        self._timer: asyncio.TimerHandle | None = None
        self.restart()

    def restart(self) -> None:
        """An answer came: the next wait has the whole time again."""
        if not self.seconds or self.severed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.seconds, self._sever)

    def _sever(self) -> None:
        self.severed = True
        shut_down(self._conn)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


@contextlib.contextmanager
def answer_within(
    conn: psycopg.AsyncConnection[Any],
    seconds: float | None,
    *,
    what: str,
) -> Iterator[_Deadline]:
    """Bounds how long the block waits on the connection for an answer: past `seconds` without one (the
    block restarts the deadline after each answer it gets: a transaction of several statements, each
    answered in time, is not cut short by their sum, a review), the connection's socket is shut down,
    the statement waiting on it fails at once, and the block raises DatabaseUnavailable naming `what`.
    `seconds` None or 0: no bound.

    Shutting the socket down, rather than cancelling the task, keeps psycopg's cancellation path out:
    that sends the server a cancel request and waits for it, another 10 s against a server that is not
    answering."""
    deadline = _Deadline(conn, seconds)
    try:
        yield deadline
    except psycopg.Error as exc:
        if deadline.severed:
            raise errors.DatabaseUnavailable(f"the database did not answer within {seconds:g} s ({what})") from exc
        raise
    finally:
        deadline.cancel()


def readable(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has sent something the open connection has not read yet (an answer, a FATAL
    message, EOF): a poll of its socket with a zero timeout."""
    fd = conn.pgconn.socket
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    found, _, errored = select.select([fd], [], [fd], 0)  # Windows: no poll()
    return bool(found or errored)


def shut_down(conn: psycopg.AsyncConnection[Any], *, why: str | None = None, bound: str | None = None) -> None:
    """Shuts the connection's socket down in both directions (a duplicate of its descriptor, so that libpq
    still owns and closes the original): whatever waits on it reads EOF at once, with no cancel request
    sent and waited for. `why`: logged with the backend's pid (at info: a deliberate shutdown), None for
    a bound's own warning (naming the `bound` when given)."""
    if conn.closed:
        return
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:
        # Already disconnected (ENOTCONN): the wait on it ends by itself.
        _log.info("could not shut a connection down", error=str(exc))
        return
    if why is None:
        _log.warning(
            "gave up waiting for the database's answer: connection severed",
            backend_pid=conn.info.backend_pid,
            **({"bound": bound} if bound else {}),
        )
    else:
        _log.info(why, backend_pid=conn.info.backend_pid)

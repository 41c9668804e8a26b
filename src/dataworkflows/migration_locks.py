"""Lock waits of `migrate`. A migration that alters a table waits for every open transaction that
touched it (an old worker's, a long report), and while it waits every later reader and writer of
that table waits behind it: the queue stalls. So each migration transaction runs with a
lock_timeout (SET LOCAL); one that times out is rolled back and tried again after a pause (the
queue moves meanwhile), a few times, then `migrate` fails naming the session it waited for, which
a second connection reads from pg_blocking_pids while the migration waits (PostgreSQL forgets it
once the wait ends)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import psycopg
import structlog

from dataworkflows.errors import MigrationError

log = structlog.get_logger("dataworkflows.migrations")

T = TypeVar("T")

Connect = Callable[[], psycopg.Connection[Any]]


# A no-transaction migration that gave up: what it may have left (the upgrade review found an index
# left INVALID, and maintained on every write, by a migrate that a pg_dump's snapshot held up).
_PART_APPLIED = (
    " A statement of it may have run: an index it was building CONCURRENTLY is left INVALID (and is"
    " kept up to date on every write meanwhile) until the next migrate drops it and builds it again;"
    " a running pg_dump (or any long transaction, on any table) holds such a build up."
)


@dataclass(frozen=True)
class LockPolicy:
    """How long one migration transaction may wait for a lock (each wait also holds up the queue's
    readers and writers that long; 0: no limit), how many times it is tried, and the pause before
    the second try (doubled before each further one)."""

    timeout_seconds: float = 2.0
    attempts: int = 5
    backoff_seconds: float = 0.5

    def pause(self, attempt: int) -> float:
        return float(self.backoff_seconds * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Blocker:
    pid: int
    application_name: str | None
    state: str | None
    transaction_seconds: float | None
    query: str | None

    def describe(self) -> str:
        if self.state is None and self.application_name is None:
            return f"pid {self.pid} (a prepared transaction, or a session that has ended)"
        seconds = "" if self.transaction_seconds is None else f", in a transaction for {self.transaction_seconds:.0f} s"
        return (
            f"pid {self.pid} (application_name {self.application_name or ''!r}, state {self.state!r}{seconds}, "
            f"last query {self.query!r})"
        )


_BLOCKERS = """
SELECT b.pid, a.application_name, a.state, extract(epoch FROM now() - a.xact_start)::float8,
       left(a.query, 200)
  FROM unnest(pg_blocking_pids(%s)) AS b(pid)
  LEFT JOIN pg_stat_activity a ON a.pid = b.pid
 ORDER BY b.pid
"""


class _BlockerWatch:
    """While a migration runs, asks every `interval` seconds (from a connection of its own, opened
    on the first ask: a migration that ends sooner costs nothing) who it waits for."""

    def __init__(self, connect: Connect, pid: int, interval: float) -> None:
        self._connect = connect
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="migrate-lock-watch", daemon=True)
        self.blockers: list[Blocker] = []

    def __enter__(self) -> _BlockerWatch:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self._stop.wait(self._interval):
                if conn is None:
                    conn = self._connect()
                rows = conn.execute(_BLOCKERS, (self._pid,)).fetchall()
                if rows:
                    self.blockers = [Blocker(*row) for row in rows]
        except psycopg.Error as exc:  # a diagnostic only: the migration goes on without it
            log.debug("cannot watch the migration's lock waits", error=str(exc))
        finally:
            if conn is not None:
                conn.close()


class LockRetry:
    """Runs migration transactions on `conn` under `policy`."""

    def __init__(self, conn: psycopg.Connection[Any], policy: LockPolicy, connect: Connect) -> None:
        self.conn = conn
        self.policy = policy
        self._connect = connect

    def run(self, what: str, work: Callable[[], T], *, transactional: bool = True) -> T:
        """`work()` in one transaction (or, not `transactional`, under a session lock_timeout),
        again after a pause when it times out on a lock."""
        policy = self.policy
        timeout = f"{max(int(policy.timeout_seconds * 1000), 0)}ms"
        interval = min(max(policy.timeout_seconds / 3, 0.05), 0.5)
        seen: list[Blocker] = []
        for attempt in range(1, max(policy.attempts, 1) + 1):
            if policy.timeout_seconds <= 0:  # no limit: nothing to report on
                return self._once(work, timeout, transactional)
            watch = _BlockerWatch(self._connect, self.conn.info.backend_pid, interval)
            try:
                with watch:
                    return self._once(work, timeout, transactional)
            except psycopg.errors.LockNotAvailable:
                seen = watch.blockers or seen
                if attempt >= policy.attempts:
                    break
                pause = policy.pause(attempt)
                log.warning(
                    "migration waited too long for a lock; trying again",
                    migration=what,
                    attempt=attempt,
                    pause_seconds=pause,
                    blockers=[b.describe() for b in seen],
                )
                time.sleep(pause)
        who = "; ".join(b.describe() for b in seen) or "a session that let go before it could be seen"
        raise MigrationError(
            f"{what} could not take its locks: it waited {policy.timeout_seconds:g} s, {policy.attempts} times, "
            f"for {who}.{' Nothing of it was applied.' if transactional else _PART_APPLIED} End that transaction (or "
            "stop what holds it: a worker or report of the previous release) and run `dataworkflows migrate` "
            "again (DW_MIGRATE_LOCK_TIMEOUT_SECONDS sets the wait)."
        )

    def _once(self, work: Callable[[], T], timeout: str, transactional: bool) -> T:
        conn = self.conn
        if transactional:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
                return work()
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (timeout,))
        try:
            return work()
        finally:
            conn.execute("RESET lock_timeout")

"""The worker process: a Procrastinate worker draining the executions queue (FOR UPDATE SKIP
LOCKED), running each execution through the runtime, plus a recovery loop that re-queues runs
whose worker vanished. Scale out by starting more processes, on any host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import sys
import time
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import procrastinate
import psycopg
import psycopg_pool
import structlog
from procrastinate import connector as procrastinate_connector
from procrastinate import jobs, manager
from procrastinate import sql as procrastinate_sql
from procrastinate import worker as procrastinate_worker
from procrastinate.job_context import JobContext
from prometheus_client import start_http_server

from dataworkflows import metrics, traces
from dataworkflows.actions import ActionServices, default_registry
from dataworkflows.actions.template_render import DocumentServices
from dataworkflows.answers import unbounded_answers
from dataworkflows.circuit_breaker import CircuitBreakers
from dataworkflows.clock import CLOCK, SYNC_SECONDS, synchronize
from dataworkflows.compensations import CompensationRunner
from dataworkflows.conditions import ConditionPool, ConditionUnavailable
from dataworkflows.config import Settings
from dataworkflows.credentials import (
    ChainedCredentialProvider,
    Cipher,
    CredentialProvider,
    DatabaseCredentialProvider,
    EnvCredentialProvider,
)
from dataworkflows.data.control import listen_for_control
from dataworkflows.data.operations import Recovery
from dataworkflows.data.runs import acquired_from_row, fetch_run_jobs, release_fetched_lease
from dataworkflows.db import RECONNECT_MAX_DELAY_SECONDS, Database, make_pool
from dataworkflows.deadlines import time_out_overdue
from dataworkflows.errors import ConfigurationError, DatabaseUnavailable, DataWorkflowsError
from dataworkflows.http_client import make_http_client
from dataworkflows.resources import DatabaseResources
from dataworkflows.runtime import Runtime, RuntimeSettings
from dataworkflows.sandbox_pool import run_scope
from dataworkflows.tcp_liveness import tcp_liveness
from dataworkflows.template_pool import TemplatePool
from dataworkflows.tenancy import DEFAULT_TENANT, all_tenants, tenant_scope

log = structlog.get_logger("dataworkflows.worker")

RUN_EXECUTION_TASK = "dw.run_execution"
# How long a stopping fetch loop may take to start the jobs its last fetch took (see
# ResilientJobManager.hand_out_fetched): it starts them as fast as it has slots, which it had when it
# fetched them, so only a loop whose slots all stay busy waits this long.
HAND_OUT_SECONDS = 0.5
# How long a fetch that found the queue drained (fewer due jobs than it asked for) stands for the
# queue, while no new job is heard of: a fetch asked for within that time is not sent (see
# ResilientJobManager.fetch_job). Shorter than Procrastinate's polling interval (5 s), so that a fetch
# loop's poll, which looks for the jobs no notification announces (queued for later and now due,
# given back by another worker), always reaches the database.
NOTHING_NEW_SECONDS = 1.0
# How far ahead a parked run's wake-up time gets a timer of its own in the waker (Waker.wake_at): each
# holds about 570 bytes until its time, and the poll wakes a later one at most DW_WORKER_POLL_SECONDS
# late (a day's delay, a month's approval timeout).
WAKE_HINT_HORIZON_SECONDS = 600.0
# Queued by dw.finish_execution_v1 when a parent ends with children it can no longer wait for.
CANCEL_CHILDREN_TASK = "dw.cancel_children"
# Queued by dw.fire_schedule_v1 when a tick of a schedule whose overlap policy is cancelOther finds
# runs of the schedule still going whose rows another transaction holds (it cancels the others itself).
CANCEL_OVERLAPPED_TASK = "dw.cancel_overlapped"
# Runs a run's compensation steps (queued by the run's end: dw.queue_compensations_v1).
COMPENSATE_TASK = "dw.compensate"


def new_worker_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


def build_app(runtime: Runtime) -> procrastinate.App:
    """A Procrastinate app whose tasks run an execution, and cancel the children of a parent that ended."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())

    @app.task(name=RUN_EXECUTION_TASK, queue=runtime.settings.queue, pass_context=True)
    async def run_execution(context: JobContext, execution_id: str, tenant_id: str | None = None) -> None:
        structlog.contextvars.bind_contextvars(execution_id=execution_id)
        job_manager = context.app.job_manager
        fetched = job_manager if isinstance(job_manager, ResilientJobManager) else None
        job_id = context.job.id
        try:
            # The run executes as its tenant (row-level security): the job names it; a job queued
            # before jobs did (an upgrade) is looked up.
            tenant = tenant_id or await _tenant_of(runtime.db, execution_id)
            with tenant_scope(tenant or DEFAULT_TENANT):
                try:
                    # The lease, when the fetch took it with the job (dw.fetch_run_jobs_v2).
                    lease = fetched.take_acquired(job_id) if fetched is not None and job_id is not None else None
                    acquired = acquired_from_row(lease) if lease is not None else None
                    # The job id only where the job's end may be written by the run's last record: the
                    # job manager then knows not to write it again.
                    ends_job = fetched is not None and runtime.job_finished is not None
                    await runtime.run_execution(
                        uuid.UUID(execution_id),
                        acquired=acquired,
                        job_id=job_id if ends_job else None,
                        job_worker=context.job.worker_id if ends_job else None,
                    )
                except Exception as exc:
                    if fetched is not None and job_id in fetched.ended_in_record:
                        # The run ended, and its job with it, before this went wrong: nothing is
                        # left to retry or to hand to an operator.
                        log.error("error after the run ended", error=describe(exc), exc_info=exc)
                        return
                    if connection_broken(exc):
                        # The database went away under the run (a restart, an outage): not the job's
                        # failure. The run resumes as after a lost worker (its lease expires and
                        # recovery queues it again; one not leased yet is found Pending without a
                        # job) and this job ends. As a failure it stayed a failed job for good, with a
                        # job_failed dead letter, for runs that then succeeded (a review: 2 of 40 runs
                        # over a PostgreSQL restart).
                        log.warning("the database went away under the run; recovery resumes it", error=describe(exc))
                        return
                    if isinstance(exc, ConditionUnavailable):
                        # No sandbox helper could be started for an edge's condition (the process or
                        # file limit): the worker's trouble, like a lost database; the node's record
                        # was not written and the run resumes as after a lost worker.
                        log.warning(
                            "no condition helper could be started; recovery resumes the run", error=describe(exc)
                        )
                        return
                    # The job failed (the run itself is resumed by recovery once its lease
                    # expires): keep the evidence where an operator looks, then let Procrastinate
                    # mark it failed.
                    await _record_job_failure(runtime, context, execution_id, exc)
                    raise
        finally:
            structlog.contextvars.unbind_contextvars("execution_id")

    @app.task(name=CANCEL_CHILDREN_TASK, queue=runtime.settings.queue, retry=5)
    async def cancel_children(parent_execution_id: str) -> None:
        tenant = await _tenant_of(runtime.db, parent_execution_id)
        if tenant is None:
            return
        with tenant_scope(tenant):
            asked = await runtime.db.control.cancel_children(uuid.UUID(parent_execution_id))
        if asked:
            log.info(
                "children cancelled with their parent", parent_execution_id=parent_execution_id, children=len(asked)
            )

    @app.task(name=CANCEL_OVERLAPPED_TASK, queue=runtime.settings.queue, retry=5)
    async def cancel_overlapped(
        execution_ids: list[str], tenant_id: str, reason: str, trigger_id: str | None = None
    ) -> None:
        with tenant_scope(tenant_id):
            asked = await runtime.db.control.cancel_overlapped([uuid.UUID(i) for i in execution_ids], reason)
        log.info(
            "runs cancelled for a schedule's newer tick (overlap cancelOther)",
            trigger_id=trigger_id,
            asked=[str(i) for i in asked],
            passed_over=len(execution_ids) - len(asked),
        )

    runner = CompensationRunner(
        data=runtime.db.compensations,
        plans=runtime.plans,
        kinds=runtime.kinds,
        worker_id=runtime.settings.worker_id,
        park_threshold_seconds=runtime.settings.park_threshold_seconds,
        stopping=runtime.stopping,
    )

    @app.task(name=COMPENSATE_TASK, queue=runtime.settings.queue, retry=5)
    async def compensate(run_id: str, tenant_id: str) -> None:
        # Retried by Procrastinate when it raises (a lost database); a job that stalled with its
        # worker, or failed for good, is queued again by recovery (dw.recover_executions_v1).
        structlog.contextvars.bind_contextvars(execution_id=run_id)
        try:
            with tenant_scope(tenant_id), run_scope(run_id):
                outcome = await runner.run(uuid.UUID(run_id))
            log.info("compensation job ended", outcome=outcome)
        finally:
            structlog.contextvars.unbind_contextvars("execution_id")

    return app


async def _tenant_of(db: Database, execution_id: str) -> str | None:
    """The tenant of an execution (None: no such execution, or not an id)."""
    try:
        execution = uuid.UUID(execution_id)
    except ValueError:
        return None
    with all_tenants():
        return await db.executions.tenant_of(execution)


class Backoff:
    """Delays between attempts while the database is away: 0.5 s, doubling, at most
    RECONNECT_MAX_DELAY_SECONDS (2 s), as the pools' own reconnects (dataworkflows.db.CappedReconnect):
    once the server is back, a listener, a fetch loop or a write waiting to be retried is back within
    that. (At most 10 s, the listener and a fetch loop that could not register were deaf for up to
    10 s after the server came back; the pools' attempts come and go without a word once it is up,
    and a worker makes a handful of attempts every 2 s while it is down.)"""

    def __init__(self, first: float = 0.5, cap: float = RECONNECT_MAX_DELAY_SECONDS) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


def connection_lost(exc: BaseException) -> bool:
    """Whether an error means the connection or the server went away (worth retrying), as
    opposed to a bug or a refused statement. Procrastinate wraps psycopg's errors, so the
    causes are searched too."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseUnavailable | psycopg.OperationalError):
            return True  # includes psycopg_pool's PoolTimeout and the 57P* shutdown errors
        if isinstance(current, psycopg.Error) and (current.sqlstate or "").startswith(("08", "57P")):
            return True
        current = current.__cause__ or current.__context__
    return False


def connection_broken(exc: BaseException) -> bool:
    """Narrower than connection_lost: the connection itself broke or none could be had (a class-08
    or 57P SQLSTATE, a client-side error without one, the pool's timeout), not a statement the
    server refused (a deadlock, a serialization failure, a timeout, a full disk: OperationalErrors
    too, with their own SQLSTATEs)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseUnavailable | psycopg_pool.PoolTimeout):
            return True
        if isinstance(current, psycopg.Error):
            sqlstate = current.sqlstate or ""
            if sqlstate.startswith(("08", "57P")):
                return True
            if isinstance(current, psycopg.OperationalError) and not sqlstate:
                return True
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> str:
    """The error that explains a failure: Procrastinate's "Database error." hides its cause."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, psycopg.Error | DataWorkflowsError):
            break
        current = current.__cause__
    found = current or exc
    return f"{type(found).__name__}: {str(found).strip()}"[:500]


async def stopped_within(stop: asyncio.Event, delay: float) -> bool:
    """Sleeps `delay` seconds, or less if `stop` is set; returns whether it was."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await stop.wait()
    return stop.is_set()


@dataclass(frozen=True)
class LeaseWithFetch:
    """What the worker's fetch needs to take runs' leases in the fetch's own transaction
    (dw.fetch_run_jobs_v2): the lease's owner and length, whether first nodes may start, the most
    jobs one fetch takes (DW_WORKER_FETCH_BATCH) and the slots of each fetch loop (its share of the
    process's concurrency, the smallest when shares differ)."""

    owner: str
    lease_seconds: float
    start: Callable[[], bool]
    batch: int = 1
    slots: int = 1


class ResilientJobManager(manager.JobManager):
    """Procrastinate's job manager, made to ride out a lost connection or a restarting server.

    Left alone, Procrastinate stops a worker on the first database error in its fetch loop,
    heartbeat or LISTEN reconnection: running jobs are cancelled after the grace period and
    run_worker_async ends (measured: a killed backend or a PostgreSQL restart ended the process).
    Here such errors are logged and retried with a backoff instead; only errors that are not about
    the connection propagate (the supervisor in run_worker restarts the loop then).

    With `lease`, a fetch that hands out a run job takes the run's lease in the same transaction
    (dw.fetch_run_jobs_v2; the task finds it with take_acquired), and a job that the run's last
    write ended (the record that ended the run, dw.record_attempt_v6, or its park,
    dw.park_execution_v3; runtime.job_finished adds it to ended_in_record) is not finished again: a
    two-node run costs three transactions, not five.

    A fetch takes up to `lease.batch` jobs in one transaction, never more than the fetch loop has
    free slots (its slots less the jobs it holds): Procrastinate's loop asks for one job per free
    slot, so it gets the first at once and the others from `fetched` on its next turns, without a
    round trip. A stopping worker hands a loop the jobs its last fetch took before telling it to
    stop (hand_out_fetched); jobs a loop never asked for are given back, at the latest when it
    unregisters.

    A fetch is not sent when it would find nothing: when a fetch of the same queues that began after
    the last news of a job (a notification heard by any of the process's listeners, a job it queued
    again) found fewer jobs than it asked for, less than NOTHING_NEW_SECONDS ago, with every
    listener listening; and while the queue is found drained, a fetch that began after the latest
    news and is still in flight is waited for, and answers for this one. Procrastinate's loop
    fetches again after every job it gets, and every fetch loop of the process hears every
    notification: without this, a lone run cost two empty fetches besides its own (each a
    transaction, and as much worker CPU again). And a fetch that found nothing while a notification
    came is sent again: the job may have committed after the fetch's snapshot, and Procrastinate's
    loop forgets the notification once its fetch returns (it clears its new-job event after every
    fetch), so the job waited for the next notification or poll.
    """

    def __init__(
        self,
        connector: procrastinate_connector.BaseConnector,
        stop: asyncio.Event,
        lease: LeaseWithFetch | None = None,
    ) -> None:
        super().__init__(connector)
        self.stop = stop
        self.lease = lease
        # Per job id: the lease its fetch took (dw.fetch_run_jobs_v2's acquire columns), until the
        # job's task takes it.
        self.acquired: dict[int, dict[str, Any]] = {}
        # Jobs whose run's last write (its ending record, its park) ended them: already written.
        self.ended_in_record: set[int] = set()
        # Per Procrastinate worker id: the jobs fetch_job handed out whose end is not recorded yet.
        self.in_hand: dict[int, set[int]] = {}
        # Per Procrastinate worker id: jobs a batched fetch took that fetch_job has not handed out yet.
        self.fetched: dict[int, deque[jobs.Job]] = {}
        # Procrastinate worker ids with a fetch in flight; and per id, while hand_out_fetched waits,
        # an event set once that loop has no fetch in flight and nothing in `fetched`.
        self._fetching: set[int] = set()
        self._settled: dict[int, asyncio.Event] = {}
        # The fetch loops' notification callbacks, while they listen.
        self.listeners: list[manager.NotificationCallback] = []
        # News of jobs that may be due, counted (see fetch_job); per queue list, the count when the
        # latest fetch that found the queue drained began, and when it began (monotonic seconds).
        self._news = 0
        self._drained: dict[tuple[str, ...] | None, tuple[int, float]] = {}
        # Per queue list: whether the latest fetch to end found the queue drained; the latest fetch
        # in flight, with the news count when it began and a future done when it ends.
        self._last_drained: dict[tuple[str, ...] | None, bool] = {}
        self._in_flight: dict[tuple[str, ...] | None, tuple[int, asyncio.Future[None]]] = {}
        # Listeners between a lost connection and their next LISTEN: notifications go unheard.
        self._deaf = 0
        # Per queue list: the LISTEN connection the fetch loops reading those queues share.
        self._shared_listens: dict[tuple[str, ...] | None, _SharedListen] = {}

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> jobs.Job | None:
        waiting = self.fetched.get(worker_id)
        if waiting:
            # Taken by this loop's last fetch, with the slot Procrastinate's loop now holds for it.
            taken = waiting.popleft()
            self.in_hand.setdefault(worker_id, set()).add(taken.id or 0)
            self._check_settled(worker_id)
            return taken
        if self.stop.is_set():
            return None  # stopping: the jobs fetched already are handed out, no new ones fetched
        queues = None if queues is None else list(queues)
        if await self._nothing_new(queues):
            metrics.FETCHES.labels("skipped").inc()
            return None
        if self.stop.is_set():
            return None
        self._fetching.add(worker_id)
        try:
            while True:
                news = self._news
                job = await self._fetch_with_retries(queues, worker_id)
                if job is not None or news == self._news or self.stop.is_set():
                    return job
                # Nothing due, and news of a job came while this fetch ran: look again (see above).
        finally:
            self._fetching.discard(worker_id)
            self._check_settled(worker_id)

    async def _fetch_with_retries(self, queues: Iterable[str] | None, worker_id: int) -> jobs.Job | None:
        backoff = Backoff()
        answer_lost = False
        while True:
            try:
                if answer_lost:
                    await self._requeue_lost_fetches(worker_id)
                    answer_lost = False
                job = await self._fetch(queues, worker_id)
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                answer_lost = True
                if self.stop.is_set():
                    # Unregistering clears the worker id of a job this fetch may have taken,
                    # and recovery re-queues its run.
                    log.warning("fetching a job failed while stopping", error=describe(exc))
                    return None
                delay = backoff.next()
                log.warning("fetching a job failed; retrying", error=describe(exc), retry_in=delay)
                if await stopped_within(self.stop, delay):
                    return None
                continue
            if job is not None and job.id is not None:
                self.in_hand.setdefault(worker_id, set()).add(job.id)
            return job

    async def _nothing_new(self, queues: Iterable[str] | None) -> bool:
        """Whether a fetch of `queues` now would find nothing due, as far as this process can know
        (see the class's docstring). While the queue is found drained, a fetch of the same queues
        that began after the latest news and is in flight answers for this one: it is waited for
        (each notification wakes every fetch loop at once, and one fetch is enough for one job)."""
        if not self.listeners or self._deaf:
            return False  # jobs may be queued unheard: every fetch looks
        key = _queues_key(queues)
        flight = self._in_flight.get(key)
        if flight is not None and flight[0] == self._news and self._last_drained.get(key):
            await asyncio.shield(flight[1])
        mark = self._drained.get(key)
        return mark is not None and mark[0] == self._news and time.monotonic() - mark[1] < NOTHING_NEW_SECONDS

    def _found(self, queues: Iterable[str] | None, news: int, began: float, *, took: int, drained: bool) -> None:
        """Notes a fetch's outcome: it began when the news count was `news`, at `began`, took `took`
        jobs and found the queue drained (fewer due jobs than it asked for) or not."""
        metrics.FETCHES.labels("jobs" if took else "empty").inc()
        key = _queues_key(queues)
        self._last_drained[key] = drained
        if not drained:
            return
        mark = self._drained.get(key)
        if mark is None or news >= mark[0]:
            self._drained[key] = (news, began)

    def _heard_of_jobs(self) -> None:
        """News that a job may be due: the next fetch looks, whatever the last one found."""
        self._news += 1

    async def _fetch(self, queues: Iterable[str] | None, worker_id: int) -> jobs.Job | None:
        key = _queues_key(queues)
        flight = (self._news, asyncio.get_running_loop().create_future())
        self._in_flight[key] = flight
        try:
            return await self._fetch_now(queues, worker_id)
        finally:
            flight[1].set_result(None)
            if self._in_flight.get(key) is flight:
                del self._in_flight[key]

    async def _fetch_now(self, queues: Iterable[str] | None, worker_id: int) -> jobs.Job | None:
        news, began = self._news, time.monotonic()
        lease = self.lease
        if lease is None:
            return await self._fetch_one(queues, worker_id, news, began)
        # This fetch fills a slot of its own (Procrastinate's loop holds one for it); the others
        # free are the loop's slots less the jobs it holds.
        limit = max(1, min(lease.batch, lease.slots - len(self.in_hand.get(worker_id, ()))))
        try:
            rows = await fetch_run_jobs(
                self.connector,
                queues=queues,
                worker_id=worker_id,
                run_task=RUN_EXECUTION_TASK,
                owner=lease.owner,
                lease_seconds=lease.lease_seconds,
                start=lease.start(),
                limit=limit,
            )
        except Exception as exc:
            if connection_broken(exc):
                raise  # fetch_job retries, and hands back what a lost answer fetched
            # Refused (an acquire raised, a deadlock, a full disk): it rolled back and every job is
            # still queued. Fetch one as Procrastinate does: the run's own acquire meets the error
            # again, in the job's task, where it is retried or fails the job where an operator
            # looks, instead of stopping this fetch loop.
            log.warning("fetching jobs with their runs' leases failed; fetching one alone", error=describe(exc))
            return await self._fetch_one(queues, worker_id, news, began)
        self._found(queues, news, began, took=len(rows), drained=len(rows) < limit)
        fetched = [jobs.Job.from_row(row) for row in rows]
        for job, row in zip(fetched, rows, strict=True):
            if row["outcome"] is not None and job.id is not None:
                self.acquired[job.id] = {key: row[key] for key in ("outcome", "lease_token", "run", "nodes", "started")}
        if not fetched:
            return None
        if len(fetched) > 1:
            self.fetched.setdefault(worker_id, deque()).extend(fetched[1:])
        return fetched[0]

    async def _fetch_one(
        self, queues: Iterable[str] | None, worker_id: int, news: int, began: float
    ) -> jobs.Job | None:
        """One job, as Procrastinate fetches it (no lease taken)."""
        job = await super().fetch_job(queues, worker_id)
        self._found(queues, news, began, took=0 if job is None else 1, drained=job is None)
        return job

    def take_acquired(self, job_id: int) -> dict[str, Any] | None:
        """The lease the job's fetch took for its run (None: it took none; the run acquires)."""
        return self.acquired.pop(job_id, None)

    async def _requeue_lost_fetches(self, worker_id: int) -> None:
        """A fetch whose connection died may have committed all the same (measured with
        `pg_ctl -m immediate`): its job is then 'doing' for this worker, which never got it, and the
        worker's live heartbeat keeps recovery from re-queuing the run. Such jobs go back to 'todo'."""
        held = self.in_hand.get(worker_id, set()) | {job.id for job in self.fetched.get(worker_id, ())}
        for job in await self.list_jobs_async(status="doing", worker_id=worker_id):
            if job.id is not None and job.id not in held:
                log.warning("re-queuing a job fetched by a call that lost its answer", job_id=job.id)
                # The fetch may have taken its run's lease too: give it back, or the run would wait
                # for the lease to expire and for recovery (counted as a lost worker). First: while
                # the job is 'doing' for this live worker, recovery leaves the run alone; once it is
                # queued, a fetch may take it at once and must find the lease free.
                await self._release_lease(job, token=None, queue=None, reason="fetch_answer_lost")
                await super().retry_job(job)
                self._heard_of_jobs()

    async def _release_lease(self, job: jobs.Job, *, token: int | None, queue: str | None, reason: str) -> None:
        """Gives back the lease `job`'s fetch took for its run, if the run still holds that very lease
        (this worker, this job: see dw.release_fetched_lease_v1)."""
        lease = self.lease
        args = job.task_kwargs or {}
        execution_id, tenant = args.get("execution_id"), args.get("tenant_id")
        if lease is None or job.task_name != RUN_EXECUTION_TASK or not execution_id or not tenant or job.id is None:
            return
        try:
            released = await release_fetched_lease(
                self.connector,
                execution_id=str(execution_id),
                tenant=str(tenant),
                owner=lease.owner,
                job_id=job.id,
                token=token,
                queue=queue,
                reason=reason,
            )
        except Exception as exc:
            # The lease expires and recovery re-queues the run: slower, not lost.
            log.warning("could not give back a fetched lease", job_id=job.id, error=describe(exc))
            return
        if released:
            log.info("gave back the lease of a fetched run", job_id=job.id, execution_id=execution_id, reason=reason)

    async def hand_out_fetched(self, worker_id: int, seconds: float) -> None:
        """The process is stopping, and the loop of `worker_id` with it: the jobs its last fetch took
        (their runs' first nodes started, as nodes in flight), that fetch's answer included when it
        is still in flight, are handed out to the loop while it has slots, for at most `seconds`,
        before it is told to stop; they run as runs already running do when a worker stops (the
        nodes in flight end, then the run hands itself back). Those left are given back at once,
        before their leases could expire."""
        if worker_id in self._fetching or self.fetched.get(worker_id):
            settled = self._settled[worker_id] = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await settled.wait()
            self._settled.pop(worker_id, None)
        await self._give_back_fetched(worker_id)

    def _check_settled(self, worker_id: int) -> None:
        settled = self._settled.get(worker_id)
        if settled is not None and worker_id not in self._fetching and not self.fetched.get(worker_id):
            settled.set()

    async def _give_back_fetched(self, worker_id: int) -> None:
        """The loop of `worker_id` stops with jobs its last batched fetch took and it never asked
        for: each goes back to the queue, its run's lease given back first (while the job is 'doing'
        for this live worker, recovery leaves the run alone; once queued, a fetch may take it at once
        and must find the lease free). Nodes the fetch started stay Running: the next holder records
        them as interrupted, not counted against the retry budget, and runs them again."""
        waiting = self.fetched.pop(worker_id, None)
        for job in waiting or ():
            untaken = self.acquired.pop(job.id or 0, None)
            if untaken is not None and untaken.get("outcome") == "acquired":
                await self._release_lease(job, token=untaken.get("lease_token"), queue=None, reason="fetched_not_run")
            log.info("giving back a fetched job the stopping worker did not run", job_id=job.id)
            await self.retry_job(job)

    async def update_heartbeat(self, worker_id: int) -> None:
        try:
            await super().update_heartbeat(worker_id)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            # The next beat (one interval later) is the retry.
            log.warning("worker heartbeat failed; retrying at the next beat", error=describe(exc))

    async def unregister_worker(self, worker_id: int) -> None:
        await self._give_back_fetched(worker_id)
        try:
            await super().unregister_worker(worker_id)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            # Its heartbeat goes stale and the next worker to start prunes it.
            log.warning("could not unregister the Procrastinate worker", error=describe(exc))

    async def listen_for_jobs(
        self, *, on_notification: manager.NotificationCallback, queues: Iterable[str] | None = None
    ) -> None:
        """Each fetch loop's listener (Procrastinate starts one per loop). The loops of a process that
        read the same queues share one LISTEN connection: every notification used to reach each
        loop's connection, waking a PostgreSQL backend (which reads the notification queue in a
        transaction of its own) and this process once per loop for the same news. The first loop to
        listen starts the shared listener; each caller waits on it until cancelled (its loop
        stopping), and the last one to leave stops it. A failure of the shared listener that is not
        the connection's (a bug) reaches every loop waiting on it, as each loop's own did."""
        key = _queues_key(queues)
        shared = self._shared_listens.get(key)
        if shared is None or shared.task.done():
            shared = _SharedListen(self, queues)
            self._shared_listens[key] = shared
        shared.callbacks.append(on_notification)
        self.listeners.append(on_notification)
        try:
            await asyncio.shield(shared.task)
        finally:
            self.listeners.remove(on_notification)
            shared.callbacks.remove(on_notification)
            if not shared.callbacks:
                if self._shared_listens.get(key) is shared:
                    del self._shared_listens[key]
                shared.stop()

    async def _dispatch(
        self, callbacks: list[manager.NotificationCallback], *, channel: str, notification: jobs.Notification
    ) -> None:
        """A notification the shared listener heard, to every fetch loop listening through it."""
        if notification["type"] == "job_inserted":
            self._heard_of_jobs()
        for callback in list(callbacks):
            await callback(channel=channel, notification=notification)

    async def _listen_for_jobs(
        self, *, on_notification: manager.NotificationCallback, queues: Iterable[str] | None
    ) -> None:
        """The shared listener: a LISTEN connection, opened again with a backoff whenever it is lost.
        From the loss until the next LISTEN is in place the listener counts as deaf (every fetch is
        sent, see _nothing_new); once it is, the loops are woken to look for the jobs whose
        notifications nobody heard meanwhile. Looking before the LISTEN would leave a job queued
        between the look and the LISTEN to the next poll (up to 5 s)."""
        backoff = Backoff()
        deaf = False
        wake_up: jobs.JobInserted = {"type": "job_inserted", "job_id": 0}

        async def listening() -> None:
            nonlocal deaf
            if deaf:
                deaf = False
                self._deaf -= 1
                await on_notification(channel="", notification=wake_up)

        try:
            while True:
                started = time.monotonic()
                try:
                    await self._listen_once(on_notification=on_notification, queues=queues, listening=listening)
                    error = "the LISTEN connection was lost"
                except Exception as exc:
                    if not connection_lost(exc):
                        raise
                    error = describe(exc)
                if not deaf:
                    deaf = True
                    self._deaf += 1
                if time.monotonic() - started > backoff.cap:
                    # A connection that served a while: open the next one at once (a backend killed
                    # alone), backing off only if that fails too (the server restarting).
                    backoff.reset()
                    delay = 0.0
                else:
                    delay = backoff.next()
                log.warning("listening for new jobs failed; reconnecting", error=error, retry_in=delay)
                await asyncio.sleep(delay)
        finally:
            if deaf:
                self._deaf -= 1

    async def _listen_once(
        self,
        *,
        on_notification: manager.NotificationCallback,
        queues: Iterable[str] | None,
        listening: Callable[[], Awaitable[None]],
    ) -> None:
        """One LISTEN connection, until it is lost (returns, or raises while connecting); `listening` is
        awaited once its LISTEN is in place. Procrastinate's PsycopgConnector.listen_notify opens a
        lost connection again by itself, silently: the notifications sent in between went unheard
        while this process took the listener for listening, so a fetch loop that had found its queue
        drained waited for the next poll. Here the connection is Procrastinate's (its pool's
        connection settings, its LISTEN statement, its loop over the notifications), opened once a
        call."""
        connector = self.connector
        if not isinstance(connector, procrastinate.PsycopgConnector):
            await listening()  # another connector (the in-memory one of tests): its own listener
            await super().listen_for_jobs(on_notification=on_notification, queues=queues)
            return

        async def heard(*, channel: str, payload: str) -> None:
            await on_notification(channel=channel, notification=json.loads(payload))

        async with connector._get_standalone_connection() as connection:
            listen = procrastinate_sql.queries["listen_queue"]
            for channel in manager.get_channel_for_queues(queues=queues):
                await connection.execute(query=connector._make_dynamic_query(query=listen, channel_name=channel))
            await listening()
            # Returns when the connection is lost (psycopg's OperationalError), raises otherwise.
            await connector._loop_notify(on_notification=heard, connection=connection)

    async def finish_job(self, job: jobs.Job, status: jobs.Status, delete_job: bool) -> None:
        await self._persist(job, lambda: super(ResilientJobManager, self).finish_job(job, status, delete_job))

    async def retry_job(
        self,
        job: jobs.Job,
        retry_at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        await self._persist(
            job,
            lambda: super(ResilientJobManager, self).retry_job(
                job, retry_at=retry_at, priority=priority, queue=queue, lock=lock
            ),
        )
        self._heard_of_jobs()  # queued again, announced by no notification

    async def _persist(self, job: jobs.Job, write: Callable[[], Awaitable[None]]) -> None:
        """Records a job's end, retrying while the connection is lost: a job left 'doing' on a
        live worker would keep recovery from re-queuing its run."""
        try:
            if job.id in self.ended_in_record:
                return  # the record that ended the run ended its job (dw.record_attempt_v6)
            await self._persist_with_retries(job, write)
        finally:
            for held in self.in_hand.values():
                held.discard(job.id or 0)
            self.ended_in_record.discard(job.id or 0)
            untaken = self.acquired.pop(job.id or 0, None)
            if untaken is not None and untaken.get("outcome") == "acquired":
                # The job's task ended without taking the lease its fetch took (cancelled before it
                # began): give it back and queue the run again, rather than leave it to expire.
                await self._release_lease(
                    job, token=untaken.get("lease_token"), queue=job.queue, reason="job_ended_before_run"
                )

    async def _persist_with_retries(self, job: jobs.Job, write: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff()
        attempt = 0
        while True:
            attempt += 1
            try:
                await write()
                return
            except Exception as exc:
                if not connection_lost(exc):
                    # Refused: a lost earlier attempt may have been applied before its connection
                    # died, or recovery removed the job of a worker it took for dead (its heartbeat
                    # went stale). Either way the job is not 'doing' for this worker any more.
                    # Raising here would only end Procrastinate's job task with an unretrieved
                    # exception. Expected after a lost lease: one line (its traceback, 35 lines of
                    # driver frames a refused job, at debug).
                    log.warning(
                        "the job's end was refused; it is no longer this worker's",
                        job_id=job.id,
                        attempt=attempt,
                        error=describe(exc),
                    )
                    log.debug("the refused job end's traceback", job_id=job.id, exc_info=exc)
                    return
                if self.stop.is_set():
                    # A forced stop (a second signal) closes the pool under it: expected, and taken
                    # care of, so a warning rather than an error that pages someone.
                    log.warning(
                        "could not record the job's end; recovery will close it", job_id=job.id, error=describe(exc)
                    )
                    return
                delay = backoff.next()
                log.warning(
                    "recording the job's end failed; retrying", job_id=job.id, error=describe(exc), retry_in=delay
                )
                await stopped_within(self.stop, delay)


def _queues_key(queues: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if queues is None else tuple(sorted(queues))


class _SharedListen:
    """One LISTEN connection (ResilientJobManager._listen_for_jobs, reconnecting) and the fetch loops'
    callbacks it hands each notification to (ResilientJobManager.listen_for_jobs)."""

    def __init__(self, owner: ResilientJobManager, queues: Iterable[str] | None) -> None:
        self.callbacks: list[manager.NotificationCallback] = []

        async def dispatch(*, channel: str, notification: jobs.Notification) -> None:
            await owner._dispatch(self.callbacks, channel=channel, notification=notification)

        self.task: asyncio.Task[None] = asyncio.create_task(
            owner._listen_for_jobs(on_notification=dispatch, queues=queues), name="shared-listener"
        )
        self._stopping = False

    def stop(self) -> None:
        """Cancels the listener until it has ended, in a task of its own (the last caller may itself be
        cancelled): Procrastinate's listener waits with asyncio.wait_for, which in Python 3.11 drops a
        cancellation that races with a notification's arrival."""
        if not self._stopping and not self.task.done():
            self._stopping = True
            stopping = asyncio.create_task(_cancel_until_done(self.task), name="shared-listener-stop")
            _STOPPING_LISTENERS.add(stopping)
            stopping.add_done_callback(_STOPPING_LISTENERS.discard)


# The tasks that stop shared listeners (the loop keeps only weak references to tasks).
_STOPPING_LISTENERS: set[asyncio.Task[None]] = set()


async def _cancel_until_done(task: asyncio.Task[Any]) -> None:
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    failure = None if task.cancelled() else task.exception()
    if failure is not None:
        log.warning("the shared job listener failed as it stopped", error=describe(failure))


def credential_provider(settings: Settings, db: Database) -> CredentialProvider:
    """Stored connections (when DW_CREDENTIALS_KEY is set) first, then DW_CONNECTION_<NAME>."""
    providers: list[CredentialProvider] = []
    if settings.credentials_key:
        providers.append(DatabaseCredentialProvider(db.connections, Cipher.from_setting(settings.credentials_key)))
    providers.append(EnvCredentialProvider())
    return ChainedCredentialProvider(providers)


def build_services(settings: Settings, db: Database, http: Any, templates: Any = None) -> ActionServices:
    """The services actions use; core.template.render needs `templates` (the worker's TemplatePool)."""
    documents = None
    if templates is not None:
        documents = DocumentServices(db, templates, inline_bytes=settings.document_inline_bytes)
    return ActionServices(
        credentials=credential_provider(settings, db),
        http=http,
        resources=DatabaseResources(db, claim_seconds=settings.resource_claim_seconds),
        endpoints={"slack": settings.slack_api_url, "monday": settings.monday_api_url},
        documents=documents,
    )


async def _record_job_failure(runtime: Runtime, context: JobContext, execution_id: str, exc: Exception) -> None:
    job = context.job
    try:
        execution = uuid.UUID(execution_id)
    except ValueError:
        execution = None
    error = {
        "code": "job_failed",
        "message": f"{type(exc).__name__}: {exc}"[:2000],
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }
    try:
        await runtime.db.operations.record_job_failure(
            job_id=job.id,
            execution_id=execution,
            payload={"task": job.task_name, "args": job.task_kwargs, "queue": job.queue},
            error=error,
            attempts=job.attempts + 1,
        )
    except DataWorkflowsError as record_error:
        log.error("could not record the failed job", job_id=job.id, error=str(record_error))


async def update_queue_metrics(db: Database, queue: str | None = None) -> None:
    """The queue gauges, per queue and status; `queue` (the worker's own) is exported from the
    start, at 0 while it holds no job (it was absent until one came, and an alert on it read the
    series as missing rather than empty: ops review)."""
    if queue is not None:
        _known_queue_labels.update({(queue, "todo"), (queue, "doing")})
    rows = await db.operations.queue_depth()
    seen = set()
    for row in rows:
        metrics.QUEUE_DEPTH.labels(row.queue_name, row.status).set(row.jobs)
        seen.add((row.queue_name, row.status))
    for queue, status in _known_queue_labels - seen:
        metrics.QUEUE_DEPTH.labels(queue, status).set(0)
    _known_queue_labels.update(seen)
    oldest: dict[str, float] = {}
    for row in rows:
        if row.status == "todo" and row.oldest_seconds is not None:
            oldest[row.queue_name] = row.oldest_seconds
    for queue in {q for q, _ in _known_queue_labels}:
        metrics.QUEUE_OLDEST.labels(queue).set(oldest.get(queue, 0.0))
    waiting = {row.status: row.runs for row in await db.control.waiting_runs()}
    for status in ("Waiting", "Suspended"):
        metrics.WAITING_RUNS.labels(status).set(waiting.get(status, 0))


_known_queue_labels: set[tuple[str, str]] = set()


async def recovery_loop(db: Database, settings: Settings) -> None:
    """Every worker runs this; SKIP LOCKED in the procedure keeps them from doubling up."""
    while True:
        await asyncio.sleep(settings.recovery_interval_seconds)
        try:
            recovered = await db.operations.recover(
                max_recoveries=settings.max_recoveries,
                stalled_worker_seconds=settings.stalled_worker_seconds,
                queue=settings.queue,
            )
        except Exception as exc:
            # Never let the loop die: it is what re-queues runs whose worker vanished.
            log.warning("recovery pass failed", error=str(exc), error_type=type(exc).__name__)
            continue
        count_recoveries(recovered)
        try:
            await db.executions.prune_event_listeners(max_age_seconds=86400.0)
            await update_queue_metrics(db, settings.queue)
        except Exception as exc:
            log.warning("queue metrics update failed", error=str(exc))
        await time_out_overdue(db)
        await analyze_stale_run_tables(db)
        await prune_webhook_deliveries(db, settings)
        await prune_events(db, settings)
        await prune_schedule_ticks(db, settings)
        await prune_rate_buckets(db)


# What a recovery that ends a run ended it with (the others re-queue it).
RECOVERY_END_STATUS = {"failed": "Failed", "cancelled": "Cancelled"}


def count_recoveries(recovered: Iterable[Recovery]) -> None:
    """A recovery pass's metrics and log lines: every recovery by action, and a run it ended among the
    executions finished, as a worker's end of it would have been counted."""
    for recovery in recovered:
        metrics.RECOVERIES.labels(recovery.action).inc()
        status = RECOVERY_END_STATUS.get(recovery.action)
        if status is not None and recovery.workflow_id is not None:
            metrics.EXECUTIONS_FINISHED.labels(recovery.workflow_id, status).inc()
        log.warning(
            "execution recovered",
            execution_id=str(recovery.execution_id),
            workflow_id=recovery.workflow_id,
            action=recovery.action,
        )


async def analyze_stale_run_tables(db: Database) -> list[str]:
    """Analyzes the run tables whose planner statistics are missing or far behind: a new database's
    first burst would run on plans made without them until autovacuum's next round (see
    sql/procedures/statistics.sql). A failure is logged and tried again at the next pass."""
    try:
        # An ANALYZE of a large table may rightly take longer than DW_WORKER_ANSWER_SECONDS.
        with unbounded_answers():
            analyzed = await db.operations.analyze_stale_run_tables()
    except Exception as exc:
        log.warning("analyzing the run tables failed", error=str(exc), error_type=type(exc).__name__)
        return []
    if analyzed:
        log.info("analyzed run tables whose statistics were missing or far behind", tables=analyzed)
    return analyzed


async def prune_webhook_deliveries(db: Database, settings: Settings) -> int:
    """Deletes a batch of webhook delivery rows older than DW_WEBHOOK_RETENTION_DAYS."""
    return await _prune("webhook deliveries", settings.webhook_retention_days, db.webhooks.prune)


async def prune_events(db: Database, settings: Settings) -> int:
    """Deletes a batch of published events older than DW_WEBHOOK_RETENTION_DAYS (as deliveries)."""
    return await _prune("events", settings.webhook_retention_days, db.events.prune)


async def prune_schedule_ticks(db: Database, settings: Settings) -> int:
    """Deletes a batch of schedule tick rows older than DW_SCHEDULE_TICK_RETENTION_DAYS (each
    schedule's newest tick stays)."""
    return await _prune("schedule ticks", settings.schedule_tick_retention_days, db.schedules.prune_ticks)


async def prune_rate_buckets(db: Database) -> int:
    """Deletes a batch of the API's token buckets that are full again (a full bucket and no bucket
    mean the same), so the table holds only callers seen lately."""
    try:
        deleted = await db.limits.prune_buckets()
    except Exception as exc:
        log.warning("pruning API rate buckets failed", error=str(exc), error_type=type(exc).__name__)
        return 0
    if deleted:
        log.debug("pruned API rate buckets", deleted=deleted)
    return deleted


async def _prune(what: str, retention_days: float, prune: Callable[..., Awaitable[int]]) -> int:
    """One batch of a retention (workers share the work; 0 days keeps everything); a failure is
    logged and tried again at the next pass."""
    if retention_days <= 0:
        return 0
    try:
        deleted = await prune(keep_seconds=retention_days * 86400.0)
    except Exception as exc:
        log.warning(f"pruning {what} failed", error=str(exc), error_type=type(exc).__name__)
        return 0
    if deleted:
        log.info(f"pruned {what}", deleted=deleted, retention_days=retention_days)
    return deleted


async def synchronize_clock(db: Database) -> None:
    """Measures how far this host's clock is from the database's (clock.py: the worker reads the
    database's); a failure keeps the last offset, and the next pass measures again."""
    try:
        await synchronize(db)
    except Exception as exc:
        log.warning("reading the database's clock failed", error=describe(exc))


class Waker:
    """Queues the run jobs of parked runs whose wake-up time has come (dw.wake_due_runs_v1): every
    DW_WORKER_POLL_SECONDS, and at the wake-up times of the runs this worker parked itself
    (Runtime.wake_hint), so those fire on time. Parked runs keep their wake-up time on the
    execution row rather than as jobs scheduled for later, which every Procrastinate fetch would
    walk past (measured in bench/waits.py: 7.5 ms a fetch with 10,000 of them, against 0.3 ms)."""

    BATCH = 500

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.kick = asyncio.Event()
        self._slots: set[int] = set()

    def wake_at(self, when: datetime) -> None:
        """Runs a pass at `when` (2 ms after: the database's clock decides what is due). Wake-ups
        within the same 10 ms are one pass, at the end of those 10 ms, when every one of them is due:
        one timer for 10,000 runs parked until the same time, and at most one per 10 ms for runs
        parked further (each timer is held in memory until then). A pass before a wake-up's time
        would leave that run to the next poll, DW_WORKER_POLL_SECONDS later: the shared pass ran at
        the first wake-up's time until 2026-12-04, and bench/waits.py's paced timers saw one of 200
        fire 1 s late in some runs. A wake-up more than WAKE_HINT_HORIZON_SECONDS ahead is left to the poll:
        its timer was held until then, one per 10 ms of distinct times (a worker parking a run with a
        30-day approval timeout each second held 2.6 million of them a month on, 1.5 GB: a review)."""
        loop = asyncio.get_running_loop()
        delay = max(CLOCK.seconds_until(when), 0.0) + 0.002
        if delay > WAKE_HINT_HORIZON_SECONDS:
            return
        slot = math.ceil((loop.time() + delay) * 100)
        if slot in self._slots:
            return
        self._slots.add(slot)

        def wake() -> None:
            self._slots.discard(slot)
            self.kick.set()

        loop.call_at(slot / 100, wake)

    async def run(self, stop: asyncio.Event) -> None:
        synchronized = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.worker_poll_seconds):
                    await self.kick.wait()
            self.kick.clear()
            if time.monotonic() - synchronized >= SYNC_SECONDS:
                synchronized = time.monotonic()
                await synchronize_clock(self.db)
            try:
                while await self.db.operations.wake_due_runs(limit=self.BATCH, queue=self.settings.queue) == self.BATCH:
                    continue  # more are due: the next batch now
            except Exception as exc:
                # Never let the loop die: it is what wakes parked runs (recovery is the backstop).
                log.warning("waking parked runs failed", error=describe(exc))


def start_scheduler(db: Database, settings: Settings, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The scheduler's loop (workers/scheduler.py: it fires due schedule ticks), unless
    DW_SCHEDULER_INTERVAL_SECONDS is 0 or less."""
    if settings.scheduler_interval_seconds <= 0:
        return []
    # Imported here: the scheduler uses this module's helpers (Backoff, describe).
    from dataworkflows.workers.scheduler import Scheduler

    return [asyncio.create_task(Scheduler(db, settings).run(stop), name="scheduler")]


def start_retention(db: Database, settings: Settings, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The retention job's loop (workers/retention.py: it removes finished runs past their
    retention), unless DW_RETENTION_INTERVAL_SECONDS is 0 or less."""
    # Imported here: the retention job uses this module's helpers (describe, stopped_within).
    from dataworkflows.workers.retention import start_retention as start

    return start(db, settings, stop)


async def control_listener(conninfo: str, runtime: Runtime, stop: asyncio.Event) -> None:
    """LISTEN dw_control: a cancel or suspend request, or a wait that a signal or a decision
    resolved, for a run this process holds reaches that run at once (its lease renewal would tell
    it within lease_seconds / 3). Reconnects with a backoff; after a reconnection every run this
    process holds checks, since notifications sent meanwhile are lost."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, **tcp_liveness(conninfo)
            ) as conn:
                await listen_for_control(conn)
                backoff.reset()
                runtime.poke_all()
                while not stop.is_set():
                    async for notify in conn.notifies(timeout=1.0):
                        _poke(runtime, notify.payload)
        except Exception as exc:
            if not connection_lost(exc):
                log.error("control listener failed", error=describe(exc), exc_info=exc)
            else:
                log.warning("control listener lost its connection; reconnecting", error=describe(exc))
        if await stopped_within(stop, backoff.next()):
            return


def _poke(runtime: Runtime, payload: str) -> None:
    try:
        execution_id = uuid.UUID(payload)
    except ValueError:
        log.warning("ignoring a dw_control notification that is not an execution id", payload=payload[:100])
        return
    runtime.poke(execution_id)


class LazyLogExtra(Mapping[str, Any]):
    """A log call's extra fields, built the first time logging reads them. Logging reads a call's
    `extra` only when it makes a record, that is when the logger is enabled for the call's level."""

    __slots__ = ("_build", "_fields")

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self._build: Callable[[], dict[str, Any]] | None = build
        self._fields: dict[str, Any] = {}

    def _built(self) -> dict[str, Any]:
        if self._build is not None:
            self._fields, self._build = self._build(), None
        return self._fields

    def __getitem__(self, key: str) -> Any:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


class FetchLoop(procrastinate_worker.Worker):
    """Procrastinate's worker (a fetch loop), its log calls' context built only for records that are
    made. Procrastinate builds it for each of its four log calls per job (the job's fields as a dict,
    its worker's, its result's), whether or not the call's level is logged, and in a worker
    (configure_logging keeps Procrastinate's loggers at warning and above) only a failure's is:
    measured with py-spy in a 2-node drain, 4.7% of the worker process's samples."""

    def _log_extra(
        self,
        action: str,
        context: JobContext | None,
        job_result: Any,
        **kwargs: Any,
    ) -> Any:
        build = super()._log_extra
        return LazyLogExtra(lambda: build(action, context, job_result, **kwargs))


async def run_fetch_loop(app: procrastinate.App, options: dict[str, Any], stop: asyncio.Event) -> None:
    """One Procrastinate worker (a fetch loop) until it ends, or until `stop` is set: then its own
    graceful stop (running jobs get the grace period, then are cancelled). Not by cancelling it: a
    cancellation that arrived while the worker was starting could be lost, and the worker then
    never stopped (measured: `up` stopped right after it was ready hung in 2 of 4 tries, its fetch
    loop task "cancelling" in Worker.run's shield with no stop requested; Python 3.11's
    asyncio.wait_for, which psycopg_pool uses to wait for a connection, drops a cancellation that
    races with the end of its wait)."""
    # What App.run_worker_async does, keeping the worker at hand (Procrastinate leaves these untyped).
    untyped: Any = app
    untyped.perform_import_paths()
    worker: Any = FetchLoop(app=app, **{**app.worker_defaults, **options})
    running = asyncio.ensure_future(worker.run())
    # run() resets its stop request on its first step: from the next one on, stop() holds.
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            manager = app.job_manager
            if isinstance(manager, ResilientJobManager) and worker.worker_id is not None:
                await manager.hand_out_fetched(worker.worker_id, HAND_OUT_SECONDS)
            worker.stop()
        await running
    finally:
        stopping.cancel()
        running.cancel()


async def supervise_fetch_loop(app: procrastinate.App, options: dict[str, Any], stop: asyncio.Event) -> None:
    """Runs one Procrastinate fetch loop until `stop` is set, starting it again (after a backoff)
    whenever it ends: Procrastinate ends a worker on errors ResilientJobManager does not absorb
    (registering while the server is down, a side task failing), and the process must not."""
    backoff = Backoff()
    name = options.get("name")
    while not stop.is_set():
        started = time.monotonic()
        try:
            await run_fetch_loop(app, options, stop)
            error = "the fetch loop stopped"
        except Exception as exc:
            if stop.is_set():
                log.warning("fetch loop failed while stopping", fetch_loop=name, error=describe(exc))
                return
            error = describe(exc)
            if not connection_lost(exc):
                # Not the database being away: a bug or a mismatch (Procrastinate's schema) that a
                # restart may not cure. Keep the whole trace where an operator looks.
                log.error("fetch loop failed", fetch_loop=name, error=error, exc_info=exc)
        if stop.is_set():
            return
        if time.monotonic() - started > backoff.cap:
            backoff.reset()
        delay = backoff.next()
        log.warning("fetch loop ended; restarting it", fetch_loop=name, error=error, retry_in=delay)
        await stopped_within(stop, delay)


def fetch_loops(settings: Settings, concurrency: int) -> int:
    """How many fetch loops a worker of `concurrency` runs (DW_WORKER_FETCHERS, at most one a slot)."""
    return max(1, min(settings.worker_fetchers, concurrency))


async def run_fetch_loops(
    app: procrastinate.App,
    runtime: Runtime,
    settings: Settings,
    *,
    worker_id: str,
    concurrency: int,
    stop: asyncio.Event,
) -> None:
    """Runs DW_WORKER_FETCHERS supervised fetch loops sharing `concurrency` until `stop` is set,
    then lets the runs stop (see Runtime.stop_starting) and the loops end."""
    fetchers = fetch_loops(settings, concurrency)
    common: dict[str, Any] = {
        "queues": [settings.queue],
        "shutdown_graceful_timeout": settings.shutdown_grace_seconds,
        # Signals are handled by run_worker, once, for every fetch loop.
        "install_signal_handlers": False,
        "delete_jobs": "successful",
        "update_heartbeat_interval": max(settings.stalled_worker_seconds / 3, 1.0),
        "stalled_worker_timeout": settings.stalled_worker_seconds,
    }
    shares = [concurrency // fetchers + (1 if i < concurrency % fetchers else 0) for i in range(fetchers)]
    loops = [
        asyncio.create_task(
            supervise_fetch_loop(app, {**common, "concurrency": share, "name": f"{worker_id}#{i}"}, stop)
        )
        for i, share in enumerate(shares)
    ]
    stop_task = asyncio.create_task(stop.wait())
    # The supervisors end only once stop is set (or on a bug: then the worker stops too).
    await asyncio.wait({*loops, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    # From now on no run starts another attempt: each lets its running attempts end and
    # hands itself back. Procrastinate's graceful stop gives running jobs the grace period,
    # then cancels them (the runtime hands those executions back at once); the loops end by
    # themselves (run_fetch_loop). A supervisor that ended without a stop request (a bug) takes
    # the others down with it.
    runtime.stop_starting()
    if not stop.is_set():
        for task in loops:
            task.cancel()
    results = await asyncio.gather(*loops, return_exceptions=True)
    stop_task.cancel()
    failures = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
    if failures:
        raise failures[0]


def _hang_up(stop: asyncio.Event) -> None:
    from dataworkflows.serving import detach_from_terminal

    detach_from_terminal()
    stop.set()


async def close_all(*closes: Callable[[], Awaitable[object]]) -> None:
    """Runs every close of a stopping worker, in order, even past one that fails: a pool that failed to
    close skipped the database pool's close and the traces' flush after it (a review). The first failure
    is raised once all have run; the others are logged."""
    first: Exception | None = None
    for close in closes:
        try:
            await close()
        except Exception as exc:
            if first is None:
                first = exc
            else:
                log.warning("a worker's close failed", error=str(exc), error_type=type(exc).__name__)
    if first is not None:
        raise first


def _interrupt_closing(signum: int, frame: Any) -> None:
    from dataworkflows.serving import detach_from_terminal

    if signum == signal.SIGHUP:
        detach_from_terminal()
    with contextlib.suppress(OSError, ValueError):
        print(f"{signal.Signals(signum).name} again: stopping at once (exit code 130)", file=sys.stderr, flush=True)
    raise KeyboardInterrupt


async def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    install_signal_handlers: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Runs a worker until it is asked to stop (SIGINT, SIGTERM, SIGHUP, or `stop` being set)."""
    settings.validate()  # before any pool or helper process opens
    if not settings.database_url:
        raise ConfigurationError("DATABASE_URL is not set")
    concurrency = concurrency or settings.worker_concurrency
    # Before the pool opens: an installed package's action that cannot be loaded (ConfigurationError)
    # left the open pool's tasks behind, which asyncio.run waited for: the worker hung (a review).
    registry = default_registry()
    worker_id = new_worker_id()
    traces.start()  # OTLP traces when an endpoint is configured (README "Traces")
    if settings.worker_metrics_port:
        where = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
        try:
            start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
        except OSError as exc:
            # A busy port or a host name that does not resolve was a traceback, exit 1: a bad setting,
            # said as one (exit 2), before the worker takes any job.
            raise ConfigurationError(
                f"the worker's metrics endpoint cannot listen on {where} (--metrics-port, DW_WORKER_METRICS_HOST):"
                f" {exc.strerror or exc}"
            ) from None
        log.info("worker metrics", url=f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics")
    # Procrastinate keeps a listen connection and one per fetch; the runtime needs one per
    # concurrent database call; the scheduler (PARALLEL batches, the one-by-one retry, the delay
    # lookup) and the recovery and wake loops take a few more. Size for all.
    pool = make_pool(
        settings.database_url,
        min_size=2,
        max_size=max(settings.pool_max_size, concurrency + 8),
        name="worker",
        role=settings.database_role,
        default_workflow_timeout=settings.default_workflow_timeout_seconds,
        max_runs_per_tree=settings.max_runs_per_tree,
        idle_in_transaction_seconds=settings.idle_in_transaction_seconds,
        # A server that answers nothing while TCP stays alive holds no call longer than this (README
        # "Lost connections"); 0: no bound.
        answer_seconds=settings.worker_answer_seconds,
        answer_setting="DW_WORKER_ANSWER_SECONDS",
        # A new connection compiles the run's procedures before its first run needs them.
        warm_up=True,
    )
    await pool.open(wait=True, timeout=30)
    db = Database(pool)
    try:
        # Before the first runs plan their calls: statistics for a new database's run tables.
        await analyze_stale_run_tables(db)
        # Eight more are opened (and warmed) in the background, and kept: psycopg_pool opens the ones
        # a burst asks for one at a time, so a fresh worker's first burst waited for each in turn. Not
        # before the worker starts (a server short of free connections would stop it), and not all
        # of them (three workers' 28 each at once ran a test server out of connections).
        await pool.resize(min_size=min(10, pool.max_size), max_size=pool.max_size)
    except BaseException:
        # A pool left open keeps tasks that asyncio.run waits for, for ever (a review: a worker that
        # failed here hung, and `up` with it, until killed -9).
        await pool.close()
        raise
    conditions = ConditionPool(size=2)
    # Transforms (up to 60 s each) in helpers of their own: conditions never queue behind them.
    # Helpers start when first asked for, so a worker that runs no transform starts none.
    transforms = ConditionPool(size=2)
    templates = TemplatePool(
        size=2, timeout_seconds=settings.template_timeout_seconds, max_steps=settings.template_max_steps
    )
    http = make_http_client(
        settings.allowed_hosts,
        circuits=CircuitBreakers(settings.circuit_breaker_failures, settings.circuit_breaker_open_seconds),
    )
    services = build_services(settings, db, http, templates)
    runtime = Runtime(
        db,
        registry,
        RuntimeSettings(
            worker_id=worker_id,
            queue=settings.queue,
            lease_seconds=settings.lease_seconds,
            park_threshold_seconds=settings.park_threshold_seconds,
            throttle_delay_seconds=settings.throttle_delay_seconds,
            max_nesting_depth=settings.max_nesting_depth,
            max_interruptions=settings.max_interruptions,
            max_run_scope_bytes=settings.max_run_scope_bytes,
            group_commit=settings.worker_group_commit,
        ),
        conditions,
        services,
        templates=templates,
        transforms=transforms,
    )
    stop_event = stop or asyncio.Event()
    app = build_app(runtime)
    lease = LeaseWithFetch(
        owner=worker_id,
        lease_seconds=settings.lease_seconds,
        start=lambda: not runtime.stopping.is_set(),
        batch=settings.worker_fetch_batch,
        slots=concurrency // fetch_loops(settings, concurrency),
    )
    job_manager = ResilientJobManager(app.connector, stop_event, lease)
    app.job_manager = job_manager
    runtime.job_finished = job_manager.ended_in_record.add
    waker = Waker(db, settings)
    runtime.wake_hint = waker.wake_at
    structlog.contextvars.bind_contextvars(worker_id=worker_id)
    log.info("worker starting", concurrency=concurrency, queue=settings.queue)
    # The maintenance loops work across tenants (their tasks keep the scope they were created in);
    # jobs run each in its run's tenant.
    with all_tenants():
        # Before any run is taken: its times are the database's (clock.py).
        await synchronize_clock(db)
        retaining = start_retention(db, settings, stop_event)
        recovery = asyncio.create_task(recovery_loop(db, settings))
        waking = asyncio.create_task(waker.run(stop_event), name="waker")
        scheduling = start_scheduler(db, settings, stop_event)
    control = asyncio.create_task(control_listener(settings.database_url, runtime, stop_event), name="control")
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_event.set)
        # A closed terminal stops the worker like SIGTERM (its runs handed back), its output
        # going to /dev/null from then on instead of failing on the dead terminal.
        loop.add_signal_handler(signal.SIGHUP, _hang_up, stop_event)
    try:
        async with app.open_async(pool=pool):
            await run_fetch_loops(app, runtime, settings, worker_id=worker_id, concurrency=concurrency, stop=stop_event)
    finally:
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            # Not their default action while the worker closes (SIGTERM's ended the process at once,
            # without the command's `finally`, and an embedded server it had started ran on for
            # nobody: a review): they interrupt like Ctrl-C, as before the loop took them.
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, _interrupt_closing)
        for task in (recovery, control, waking, *scheduling, *retaining):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await close_all(
            conditions.close,
            transforms.close,
            templates.close,
            http.aclose,
            pool.close,
            lambda: asyncio.to_thread(traces.flush),
        )
        log.info("worker stopped")

"""The DAG runner: runs one execution under a lease, checkpointing every attempt.

run_execution(execution_id), called by the worker's Procrastinate task:
1. take the lease (dw.try_acquire_execution_v6: a fencing token, the run and its node checkpoints;
   on the run's first acquire, its first nodes started in the same transaction) or leave: held by
   a live worker, finished, or throttled by its workflow's limits (then re-queued for later);
2. load the compiled plan (cached per process by workflow/version); an attempt that was in flight
   when a previous worker died is recorded as interrupted and retried;
3. run Ready nodes with bounded parallelism: each attempt goes to the node's kind
   (dataworkflows.node_kinds), dataworkflows.outcomes decides what its result means, and one fenced
   transaction records the attempt, the checkpoint, the event and the edge decisions
   (dw.record_attempt_v6), which also starts the nodes the attempt made Ready (as many as there
   are free parallel slots: Slots) and ends the run when nothing is left to do;
4. retries back off: a short backoff waits in-process, a long one parks the execution (lease
   released, run job deferred to the due time);
5. finish with dw.complete_execution_v4 (which ends the run's job too), unless the last node's
   record ended the run (a success with no outputs to render). A failed node with no
   failure/always edge that fired fails the run at once; running work is cancelled and nodes that
   never started are Skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
import structlog

from dataworkflows import metrics, traces
from dataworkflows.actions import ActionRegistry, ActionServices
from dataworkflows.checkpoints import Acquired, LeaseRenewal, NodeState, Throttle, WaitCheckpoint
from dataworkflows.clock import now
from dataworkflows.conditions import ConditionUnavailable
from dataworkflows.data.group_commit import GroupCommit
from dataworkflows.data.runs import PlanCache
from dataworkflows.db import Database
from dataworkflows.errors import DatabaseUnavailable, DataWorkflowsError, InvalidInput, LeaseLost
from dataworkflows.foreach import KeptItems
from dataworkflows.json_depth import nul_pointer, printable_pointer
from dataworkflows.node_attempts import NodeAttempts, RunContext
from dataworkflows.node_kinds import ExpressionSandbox, NodeKinds, default_node_kinds
from dataworkflows.outcomes import ConditionEvaluator, Decision
from dataworkflows.sandbox_pool import run_scope
from dataworkflows.scrubbing import Scrubber, scrubbing
from dataworkflows.statuses import ExecutionStatus, NodeStatus, Verdict
from dataworkflows.template_pool import TemplateRenderer
from dataworkflows.templating import TemplateRefused, TemplateRenderError, TemplateUnavailable

log = structlog.get_logger("dataworkflows.runtime")
# At most this many pokes for runs not held are kept (Runtime.early_pokes).
EARLY_POKES = 10_000
# A lease renewal that lost its connection is tried again this soon, then twice as long each time in a
# row (at most the renewal interval).
LEASE_RETRY_SECONDS = 1.0
# After the database refused to start work because an operator's request is pending (a node's
# start, a forEach's items, a child), nothing of the run starts for this long: its loop reads the
# request meanwhile (and holds, or finds it withdrawn).
REFUSAL_PAUSE_SECONDS = 0.5
# The statuses _launch_ready may start a node from when it has no wait (Running: a resumable attempt;
# Waiting: a retry that came due).
_LAUNCHABLE = frozenset({NodeStatus.READY, NodeStatus.RUNNING, NodeStatus.WAITING})


@dataclass(frozen=True)
class RuntimeSettings:
    worker_id: str
    queue: str = "executions"
    lease_seconds: float = 30.0
    park_threshold_seconds: float = 30.0
    throttle_delay_seconds: float = 2.0
    # Children nest at most this deep (DW_MAX_NESTING_DEPTH): a root is at depth 0.
    max_nesting_depth: int = 8
    # DW_MAX_INTERRUPTIONS: a node interrupted more often than this fails (too_many_interruptions).
    max_interruptions: int = 10
    # DW_MAX_RUN_SCOPE_BYTES: the most bytes of outputs a run keeps for its later nodes to read.
    max_run_scope_bytes: int = 64 * 1024 * 1024
    # DW_WORKER_GROUP_COMMIT: the most attempt records of concurrent runs one transaction commits
    # together (dataworkflows.data.group_commit); 1: each record is a transaction of its own.
    group_commit: int = 32


class Runtime:
    """Shared by every execution a worker process runs."""

    def __init__(
        self,
        db: Database,
        registry: ActionRegistry,
        settings: RuntimeSettings,
        conditions: ConditionEvaluator,
        services: ActionServices | None = None,
        *,
        templates: TemplateRenderer,
        kinds: NodeKinds | None = None,
        transforms: ExpressionSandbox | None = None,
    ) -> None:
        self.db = db
        self.data = db.runs
        self.settings = settings
        self.data.group_commit = (
            GroupCommit(db, self.data, max_batch=settings.group_commit) if settings.group_commit > 1 else None
        )
        self.conditions = conditions
        # Renders a successful run's declared outputs.
        self.templates = templates
        # Transform nodes evaluate in `transforms` when given: helpers of their own, so that a
        # condition (a second at most) never waits behind transforms (up to a minute each) that
        # hold every helper; else in the conditions' sandbox.
        expressions = transforms or (conditions if isinstance(conditions, ExpressionSandbox) else None)
        self.kinds = kinds or default_node_kinds(registry, templates, services, expressions)
        self.plans = PlanCache(self.data)
        # Set when the worker is asked to stop: no run starts another attempt; each hands itself
        # back once its running attempts have ended (within the worker's grace period).
        self.stopping = asyncio.Event()
        # The runs this process holds, for pokes (a control request or a resolved wait).
        self.active: dict[UUID, _Run] = {}
        # Pokes for runs this process did not hold when they came, oldest first: a notification can
        # arrive between a run's acquire and its registration here (it was dropped, and the run
        # went on with what its acquire read until its next lease renewal). A run registered after
        # its poke checks at once.
        self.early_pokes: dict[UUID, float] = {}
        # forEach item states carried between the wakes of parked runs (a forEach of subworkflow
        # items takes its items up again at each child's end): dropped when a run ends here
        # otherwise than parked, and bounded.
        self.kept_items = KeptItems()
        # Told when a run parks until a time (a throttled run included), so the worker can queue its
        # wake-up job then rather than at the next polling interval (set by the worker process).
        self.wake_hint: Callable[[datetime], None] | None = None
        # Told the id of a run's Procrastinate job when the record that ended the run ended the job
        # too (dw.record_attempt_v6), so the worker does not finish it again (set by the worker).
        self.job_finished: Callable[[int], None] | None = None

    def stop_starting(self) -> None:
        """From now on, no new node attempt starts in this process."""
        self.stopping.set()

    def poke(self, execution_id: UUID) -> None:
        """Something changed for this run outside the worker (NOTIFY dw_control): if this process
        holds it, it checks now instead of at its next lease renewal."""
        run = self.active.get(execution_id)
        if run is not None:
            run.poke()
            return
        at = time.monotonic()
        self.early_pokes.pop(execution_id, None)
        self.early_pokes[execution_id] = at
        # Kept for a minute (an acquire's way to its registration takes milliseconds), at most
        # EARLY_POKES of them: a stale one costs a run acquired later one lease renewal.
        while self.early_pokes:
            oldest, when = next(iter(self.early_pokes.items()))
            if at - when <= 60.0 and len(self.early_pokes) <= EARLY_POKES:
                break
            del self.early_pokes[oldest]

    def poke_all(self) -> None:
        """Notifications may have been missed (the listener reconnected): every run checks."""
        for run in list(self.active.values()):
            run.poke()

    async def _retry_throttled(
        self, execution_id: UUID, throttle: Throttle | None, job_id: int | None, job_worker: int | None
    ) -> None:
        """A root run its workflow's limits hold back tries again: at its turn under the rate limit,
        else after DW_THROTTLE_DELAY_SECONDS, or sooner when a root run that held a concurrency slot
        ends (dw.hand_over_slot_v1 queues the held-back run whose look comes first). It stays
        Pending and waits on its row, with no job, until then (dw.park_throttled_run_v1); the job it
        ran under ends with that write."""
        retry_at = throttle.retry_at if throttle is not None else None
        later = retry_at or now() + timedelta(seconds=self.settings.throttle_delay_seconds)
        parked = await self.data.park_throttled(execution_id, wake_at=later, job_id=job_id, job_worker=job_worker)
        if parked.job_finished and job_id is not None and self.job_finished is not None:
            self.job_finished(job_id)
        if parked.parked and self.wake_hint is not None:
            self.wake_hint(later)
        log.info(
            "execution throttled by its workflow's limits",
            execution_id=str(execution_id),
            throttled_by=throttle.throttled_by if throttle is not None else "concurrency",
            retry_at=later.isoformat(),
        )

    async def run_execution(
        self,
        execution_id: UUID,
        *,
        acquired: Acquired | None = None,
        job_id: int | None = None,
        job_worker: int | None = None,
    ) -> str:
        """Runs (or resumes) one execution; returns what happened, for logs and tests. `acquired`:
        the lease, when the worker's fetch took it with the job (dw.fetch_run_jobs_v2); `job_id`
        and `job_worker`: the Procrastinate job running the run and the Procrastinate worker that
        fetched it: the record that ends the run ends the job too. Its conditions, transforms and
        templates take the run's share of the sandbox helpers (sandbox_pool.run_scope)."""
        with run_scope(str(execution_id)):
            return await self._run_execution(execution_id, acquired=acquired, job_id=job_id, job_worker=job_worker)

    async def _run_execution(
        self,
        execution_id: UUID,
        *,
        acquired: Acquired | None,
        job_id: int | None,
        job_worker: int | None,
    ) -> str:
        settings = self.settings
        if acquired is None:
            acquired = await self.data.acquire(
                execution_id,
                owner=settings.worker_id,
                lease_seconds=settings.lease_seconds,
                start=not self.stopping.is_set(),
            )
        if acquired.outcome == "throttled":
            await self._retry_throttled(execution_id, acquired.throttle, job_id, job_worker)
            return acquired.outcome
        if acquired.outcome != "acquired":
            # held, finished (a cancel requested while nobody held it ends the run there),
            # suspended, not_found.
            log.debug("execution not acquired", execution_id=str(execution_id), outcome=acquired.outcome)
            return acquired.outcome
        assert acquired.run is not None and acquired.lease_token is not None
        info = acquired.run
        plan = await self.plans.get(info.workflow_id, info.version)
        run = RunContext(
            execution_id=execution_id,
            token=acquired.lease_token,
            info=info,
            plan=plan,
            state={c.node_id: NodeState.from_checkpoint(c) for c in acquired.nodes},
            data=self.data,
            kinds=self.kinds,
            conditions=self.conditions,
            worker_id=settings.worker_id,
            park_threshold_seconds=settings.park_threshold_seconds,
            max_nesting_depth=settings.max_nesting_depth,
            max_interruptions=settings.max_interruptions,
            max_scope_bytes=settings.max_run_scope_bytes,
            stopping=self.stopping,
            job_id=job_id,
            job_worker=job_worker,
            kept_items=self.kept_items,
            log=log.bind(
                execution_id=str(execution_id),
                workflow_id=info.workflow_id,
                version=info.version,
                worker_id=settings.worker_id,
                principal=info.principal_id,
                correlation_id=info.correlation_id,
            ),
        )
        for node_id in acquired.started:
            run.state[node_id].prestarted = True
        holder = _Run(self, run)
        self.active[execution_id] = holder
        if self.early_pokes.pop(execution_id, None) is not None:
            holder.poke()
        outcome = None
        try:
            # The run's trigger values, and the secrets its nodes resolve, are scrubbed from the
            # errors it records and the lines it logs (its node tasks inherit the scrubber).
            with scrubbing(Scrubber.for_trigger(run.trigger)):
                # In the execution's span (a child of the stored trace context) when tracing is on.
                outcome = await traces.execution(
                    self.db, execution_id, info.workflow_id, info.version, settings.worker_id, holder.execute
                )
                return outcome
        finally:
            if outcome != "parked":
                # Ended, suspended, handed back or lost: its next holder reads its items afresh.
                self.kept_items.drop_run(execution_id)
            if self.active.get(execution_id) is holder:
                del self.active[execution_id]
            if run.job_finished and job_id is not None and self.job_finished is not None:
                self.job_finished(job_id)


class _Run:
    """One execution, while this worker holds its lease: which nodes run when, parking, stopping
    and the run's end. Each node's attempts are NodeAttempts'."""

    def __init__(self, runtime: Runtime, run: RunContext) -> None:
        self.runtime = runtime
        self.ctx = run
        self.attempts = NodeAttempts(run)
        self.running: dict[str, asyncio.Task[Decision | None]] = {}
        # Shorthands for what the loop reads all the time.
        self.data, self.settings, self.state, self.log = run.data, runtime.settings, run.state, run.log
        self.execution_id, self.token, self.info, self.plan = run.execution_id, run.token, run.info, run.plan
        self.lease_lost = run.lease_lost
        # An operator's request the holder acts on: "cancel" or "suspend" (None: carry on).
        self.control: str | None = None
        # The cancel came when every node had ended: renewals still carry it, the run ignores it.
        self.cancel_too_late = False
        if run.info.suspend_requested:
            # Nothing new starts: the interrupted attempts are recorded, then the run is suspended.
            self.control = "suspend"
            run.suspending.set()
        # Set by a poke, a renewal that brought news, or a wait that came due: the loop looks again.
        self.wakeup = asyncio.Event()
        self.check_requested = False
        # When the database last refused a start of this run (time.monotonic(); see _refused).
        self.refused_at: float | None = None
        # Not before this time does the loop ask again to fire waits it believes due (the
        # database's clock decides; this keeps a small skew from spinning the loop).
        self.next_fire_check: datetime | None = None
        run.slots.available = self._free_slots
        run.request_check = self._refused

    def _free_slots(self) -> int:
        """Parallel slots a node's record may fill with the nodes it makes Ready: its own (it ends)
        and the free ones; none while nothing new may start (the worker stops, an operator's
        request is pending, the run is past its deadline)."""
        if self.ctx.holding() or self.control is not None or self.check_requested:
            return 0
        if self.info.deadline_at is not None and now() >= self.info.deadline_at:
            return 0
        pending = sum(1 for state in self.state.values() if state.prestarted)
        return max(self.plan.max_parallel_actions - self._slots_taken() - pending + 1, 0)

    def _slots_taken(self) -> int:
        """Running node tasks, and the slots granted to their records in flight (see Slots)."""
        return len(self.running) + self.ctx.slots.reserved

    def _refused(self) -> None:
        """The database refused to start work because an operator's request is pending that this
        worker has not taken in: the loop reads the request now, and starts nothing for
        REFUSAL_PAUSE_SECONDS. Without the pause, a renewal that failed (the request not taken in)
        let the loop take the node up again at once, to be refused again: a review counted 3,905
        refused item starts in 2 s."""
        self.refused_at = time.monotonic()
        self.poke()

    def _refusal_pause(self) -> float:
        """Seconds left of the pause after the latest refusal (0: none)."""
        if self.refused_at is None:
            return 0.0
        return max(self.refused_at + REFUSAL_PAUSE_SECONDS - time.monotonic(), 0.0)

    def poke(self) -> None:
        self.check_requested = True
        self.ctx.pokes += 1
        self.unpark()
        self.wakeup.set()

    def unpark(self) -> None:
        """A parked forEach looks at its items again (a child of one may have ended)."""
        for state in self.state.values():
            state.parked = False

    async def execute(self) -> str:
        self.log.info("execution acquired", lease_token=self.token)
        metrics.EXECUTIONS_STARTED.labels(self.info.workflow_id).inc()
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"lease-{self.execution_id}")
        try:
            return await self._drive()
        except LeaseLost:
            metrics.LEASES_LOST.inc()
            self.log.warning("lease lost; another worker owns this execution now")
            await self._cancel_running()
            return "lease_lost"
        except Exception:
            # The database went away (or worse): stop every node task now, so none keeps running
            # beside the worker that resumes this run once the lease expires.
            await self._cancel_running()
            raise
        except asyncio.CancelledError:
            # The grace period is over and attempts were still running: give the run back so
            # another worker resumes it now, instead of waiting for the lease to expire.
            await self._cancel_running()
            await asyncio.shield(self._hand_back())
            raise
        finally:
            heartbeat.cancel()
            # Bounded: a heartbeat that swallowed its cancellation (Python 3.11's wait_for can drop
            # one that arrives with a pooled connection) must not hold the run's end for ever.
            await asyncio.wait({heartbeat}, timeout=max(self.settings.lease_seconds, 1.0))
            if not heartbeat.done():
                self.log.error("lease heartbeat did not stop when cancelled; leaving it")

    async def _hand_back(self, reason: str = "worker_shutdown", why: str = "shutdown") -> str:
        """Releases the lease and re-queues the run for another worker (this one is stopping, or
        the run must be read afresh from its checkpoints)."""
        try:
            await self.data.release(self.execution_id, self.token, queue=self.settings.queue, reason=reason)
        except DataWorkflowsError as exc:
            # Not fatal: the lease expires and recovery re-queues the run; but say so.
            self.log.warning(f"could not hand the execution back on {why}", error=str(exc))
        else:
            self.log.info(f"execution released for another worker ({why})")
        return "released"

    async def _heartbeat(self) -> None:
        interval = max(self.settings.lease_seconds / 3, 0.2)
        delay = interval
        failed = 0
        while True:
            await asyncio.sleep(delay)
            try:
                renewal = await self.data.renew_lease(
                    self.execution_id, self.token, lease_seconds=self.settings.lease_seconds
                )
            except Exception as exc:
                # Keep trying; if the lease expires meanwhile, fencing protects the data. A lost
                # connection is tried again sooner than the interval, 1 s and then doubling (a renewal
                # that waited out DW_WORKER_ANSWER_SECONDS on a silent connection, 10 s, and then the
                # interval again lost the default 30 s lease: a review); anything else at the interval.
                # The first failure in a row is a warning, the next ones are info (a review: an outage
                # wrote one a second for every run in flight).
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise asyncio.CancelledError() from exc  # the run ended: nothing to say
                (self.log.info if failed else self.log.warning)(
                    "lease renewal failed", error=str(exc), error_type=type(exc).__name__, failures_in_a_row=failed + 1
                )
                soon = LEASE_RETRY_SECONDS * 2 ** min(failed, 16) if isinstance(exc, DatabaseUnavailable) else interval
                delay = min(interval, soon)
                failed += 1
                continue
            delay, failed = interval, 0
            if not renewal.renewed:
                if renewal.ended:
                    # The run ended under this lease: most often by its own last record, whose
                    # answer can reach the run after this renewal's (under load, a while after).
                    # The run's end cancels this task. A run still going when the lease it held
                    # would have run out did not end it itself (a cancel while its worker had
                    # stopped beating), and is told its lease is gone.
                    await asyncio.sleep(self.settings.lease_seconds)
                self.lease_lost.set()
                return
            if self._apply(renewal):
                self.wakeup.set()
            if any(s.parked for s in self.state.values()):
                # In case a NOTIFY for an item's child went missing.
                self.unpark()
                self.wakeup.set()

    async def _check_now(self) -> None:
        """A poke: renew the lease now and take in what the renewal says."""
        try:
            renewal = await self.data.renew_lease(
                self.execution_id, self.token, lease_seconds=self.settings.lease_seconds
            )
        except DatabaseUnavailable as exc:
            # As for the heartbeat: a blip; the next renewal carries the same news.
            self.log.warning("checking the run after a notification failed", error=str(exc))
            return
        if not renewal.renewed:
            if renewal.ended:
                # Ended under this lease, most often by a record of this run not taken in yet: the
                # run learns it from that answer, or from its next write (fenced) if it was not its own.
                return
            raise LeaseLost()
        self._apply(renewal)

    def _apply(self, renewal: LeaseRenewal) -> bool:
        """Takes in a control request and waits resolved by others; returns whether anything changed."""
        changed = False
        for wait in renewal.waits:
            state = self.state.get(wait.node_id)
            if state is not None and state.wait is not None and state.wait.id == wait.id and state.wait.is_open:
                state.wait = wait
                changed = True
        control = None if self.cancel_too_late and renewal.control == "cancel" else renewal.control
        if control != self.control:
            self.log.info("control request", control=control, previous=self.control)
            self.control = control
            if self.control == "suspend":
                self.ctx.suspending.set()
            else:
                self.ctx.suspending.clear()
            changed = True
        return changed

    async def _cancel_running(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, LeaseLost):
                continue
            except Exception:
                # The run is ending anyway; a node task's own failure must still leave a trace.
                self.log.exception("node task failed while the run was stopping", task=task.get_name())
        self.running.clear()

    async def _drive(self) -> str:
        decided = self._decided_failure()
        if decided is not None:
            return await self._fail_node(*decided)
        unhandled = await self.attempts.recover_interrupted()
        if unhandled is not None:
            return await self._fail_node(*unhandled)
        lost_waiter = asyncio.create_task(self.lease_lost.wait())
        stop_waiter = asyncio.create_task(self.runtime.stopping.wait())
        wake_waiter = asyncio.create_task(self.wakeup.wait())
        try:
            while True:
                if self.lease_lost.is_set():
                    raise LeaseLost()
                if wake_waiter.done():
                    self.wakeup.clear()
                    wake_waiter = asyncio.create_task(self.wakeup.wait())
                # Wake up for a stop request until it has come (a done task would wake every wait).
                waiters = {lost_waiter, wake_waiter} if stop_waiter.done() else {lost_waiter, stop_waiter, wake_waiter}
                ended = await self._step(waiters)
                if ended is not None:
                    return ended
        finally:
            lost_waiter.cancel()
            stop_waiter.cancel()
            wake_waiter.cancel()

    def _decided_failure(self) -> tuple[str, dict[str, Any] | None] | None:
        """A node whose unhandled failure a previous holder recorded and then stopped (died, or
        handed the run back) before it ended the run: that record decided the outcome, so the run
        ends now as that holder would have ended it (fail fast: Failed, the node's dead letter, and
        whatever else is in flight stopped by the run's end), not as a run with nothing left to do.
        The first such node in plan order, if two failed at once."""
        for node_id in self.ctx.order:
            state = self.state[node_id]
            if state.failed_unhandled:
                self.log.warning("a node's unhandled failure was recorded before the run's end", node_id=node_id)
                return node_id, state.error
        return None

    async def _step(self, waiters: set[asyncio.Task[Any]]) -> str | None:
        """Launches what is due and waits for something to happen; returns how the run ended, if it did."""
        if self.check_requested:
            self.check_requested = False
            await self._check_now()
        if self.control == "cancel":
            return await self._cancel()
        at = now()
        if self.info.deadline_at is not None and at >= self.info.deadline_at:
            error = {"code": "workflow_timeout", "message": "the workflow ran past its workflowTimeout"}
            return await self._finish(ExecutionStatus.TIMED_OUT, error)
        await self._fire_due_waits(at)
        self._launch_ready(at)
        if not self.running:
            if self.control == "suspend":
                # Withdrawn (None): look again from the top, where nodes start once more.
                return await self._suspend()
            if self.runtime.stopping.is_set() and self._startable_now(at):
                return await self._hand_back()
            pause = self._refusal_pause()
            if pause > 0:
                # Nothing starts until the request is read (or the pause ends): not idle.
                await asyncio.wait(waiters, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
                return None
            return await self._idle(at, waiters)
        done, _ = await asyncio.wait(
            {*self.running.values(), *waiters}, timeout=self._next_wakeup(at), return_when=asyncio.FIRST_COMPLETED
        )
        # Node tasks first: the last one's record may have ended the run, and a lease renewal that
        # raced with that end reports the lease lost.
        for task in sorted(done, key=lambda t: t in waiters):
            if task in waiters:
                if self.lease_lost.is_set():
                    raise LeaseLost()
                continue  # the stop request (nothing new starts from now on) or a wake-up
            ended = await self._collect(task)
            if ended is not None:
                return ended
        return None

    async def _idle(self, at: datetime, waiters: set[asyncio.Task[Any]]) -> str | None:
        """Nothing runs: wait for a retry due soon, park (retries due later, waits), or end the run."""
        retries = [s.retry_due for s in self.state.values() if s.retry_due is not None]
        delay = self._retry_delay(retries, at)
        if delay is not None and delay <= self.settings.park_threshold_seconds:
            await asyncio.wait(waiters, timeout=max(delay, 0), return_when=asyncio.FIRST_COMPLETED)
            return None
        waiting_on = self._waiting_on()
        if retries or waiting_on:
            return await self._park(waiting_on=waiting_on)
        unfinished = [n for n in self.ctx.order if not self.state[n].status.is_final]
        if not unfinished:
            return await self._succeed()
        stuck = {"code": "stuck", "message": f"no runnable node, but nodes are unfinished: {unfinished}"}
        return await self._finish(ExecutionStatus.FAILED, stuck)

    def _waiting_on(self) -> list[str]:
        """What the run's nodes wait for, if anything: wait kinds, and "items" for a parked forEach."""
        kinds = {s.open_wait.kind for s in self.state.values() if s.open_wait is not None}
        if any(s.parked for s in self.state.values()):
            kinds.add("items")
        return sorted(kinds)

    def _retry_delay(self, retries: list[datetime], at: datetime) -> float | None:
        """Seconds until the next retry (or the deadline, if sooner), when it may be waited for in
        this process: not while stopping or while an operator's request is pending."""
        if not retries or self.runtime.stopping.is_set() or self.control is not None:
            return None
        wake = min(retries)
        if self.info.deadline_at is not None:
            wake = min(wake, self.info.deadline_at)  # wake up in time to time out
        return (wake - at).total_seconds()

    async def _succeed(self) -> str:
        """Every node is done: the run succeeds, with its declared outputs rendered over what its
        nodes produced. An outputs template that fails (a skipped node's outputs, a typo) fails the
        run with outputs_error: the definition promised values the run cannot give; so does one the
        sandbox refused to run (it timed out recently and a flood of it waits: as its timeout
        would). A template helper that cannot start raises, and recovery resumes the run later to
        try again."""
        if self.plan.outputs is None:
            return await self._finish(ExecutionStatus.SUCCEEDED, None)
        try:
            outputs = await self.runtime.templates.render(self.plan.outputs, self.ctx.scope())
        except TemplateRefused as exc:
            error = {"code": "outputs_error", "message": f"the workflow's outputs were not rendered: {exc.message}"}
            return await self._finish(ExecutionStatus.FAILED, error)
        except TemplateUnavailable:
            raise
        except TemplateRenderError as exc:
            error = {"code": "outputs_error", "message": f"the workflow's outputs could not be rendered: {exc.message}"}
            return await self._finish(ExecutionStatus.FAILED, error)
        # A value PostgreSQL stores in no JSON (a NUL character): its completion was refused at every
        # try, the run Running until recovery gave up on it, worker_lost (a review).
        where = nul_pointer(outputs, "")
        if where is not None:
            at = printable_pointer(where) or "the value"
            message = f"the workflow's outputs cannot be stored: {at} holds a NUL character (U+0000)"
            return await self._finish(ExecutionStatus.FAILED, {"code": "outputs_error", "message": message})
        try:
            return await self._finish(ExecutionStatus.SUCCEEDED, None, outputs=outputs)
        except (InvalidInput, TypeError, msgspec.EncodeError) as exc:
            # Any other value refused (the completion's transaction rolled back): said, not retried.
            refused = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            message = f"the workflow's outputs cannot be stored: {refused}"[:2000]
            return await self._finish(ExecutionStatus.FAILED, {"code": "outputs_error", "message": message})

    async def _park(self, *, waiting_on: list[str]) -> str:
        """Gives the lease up; the database queues the wake-up job (if a time is due at all)."""
        parked = await self.data.park(
            self.execution_id,
            self.token,
            queue=self.settings.queue,
            job_id=self.ctx.job_id,
            job_worker=self.ctx.job_worker,
        )
        # The run's job ended with the park (dw.park_execution_v3): the worker does not finish it.
        self.ctx.job_finished = self.ctx.job_finished or parked.job_finished
        if parked.outcome == "cancelled":
            metrics.EXECUTIONS_FINISHED.labels(self.info.workflow_id, ExecutionStatus.CANCELLED.value).inc()
            self.log.info("execution cancelled (the request came as it parked)")
            return ExecutionStatus.CANCELLED.value
        if parked.outcome == "suspended":
            self.log.info("execution suspended (the request came as it parked)")
            return "suspended"
        wake_at = parked.wake_at
        metrics.EXECUTIONS_PARKED.inc()
        self.log.info(
            "execution parked", wake_at=wake_at.isoformat() if wake_at else None, waiting_on=waiting_on or ["retry"]
        )
        if wake_at is not None and self.runtime.wake_hint is not None:
            self.runtime.wake_hint(wake_at)
        return "parked"

    async def _fire_due_waits(self, at: datetime) -> None:
        """Timers that came due while this worker holds the run fire now (and timeouts expire)."""
        if (self.next_fire_check is not None and at < self.next_fire_check) or not self._due_waits(at):
            return
        for wait in await self.data.fire_due_waits(self.execution_id, self.token):
            state = self.state.get(wait.node_id)
            if state is not None and state.wait is not None and state.wait.id == wait.id:
                state.wait = wait
        # Still open: the database's clock is behind ours; ask again shortly, not in a spin.
        self.next_fire_check = at + timedelta(seconds=0.1) if self._due_waits(at) else None

    def _due_waits(self, at: datetime) -> list[WaitCheckpoint]:
        return [
            s.wait
            for s in self.state.values()
            if s.wait is not None and s.wait.is_open and s.wait.wakes_at is not None and s.wait.wakes_at <= at
        ]

    def _startable_now(self, at: datetime) -> bool:
        """Whether a node could start (or record its resolved wait) now: a stopping worker hands
        such a run back rather than parking it."""
        return any(
            s.status == NodeStatus.READY
            or (s.status == NodeStatus.RUNNING and not s.parked)
            or s.resolved_wait is not None
            or (s.retry_due is not None and s.retry_due <= at)
            for s in self.state.values()
        )

    async def _cancel(self) -> str | None:
        """An operator cancelled the run: running attempts stop, the run ends Cancelled. None when
        the cancel came too late (see _cancel_too_late)."""
        stopped = bool(self.running)
        await self._cancel_running()
        cancellation = await self.data.cancel(
            self.execution_id, self.token, job_id=self.ctx.job_id, job_worker=self.ctx.job_worker
        )
        if cancellation.outcome == "too_late":
            return await self._cancel_too_late(stopped=stopped)
        # The run's job ended with it (dw.cancel_execution_v3): the worker does not finish it.
        self.ctx.job_finished = self.ctx.job_finished or cancellation.job_finished
        metrics.CONTROL_APPLIED.labels("cancel").inc()
        metrics.EXECUTIONS_FINISHED.labels(self.info.workflow_id, ExecutionStatus.CANCELLED.value).inc()
        self.log.info("execution cancelled")
        return ExecutionStatus.CANCELLED.value

    async def _cancel_too_late(self, *, stopped: bool) -> str | None:
        """The run's outcome was decided when the cancel took effect (dw.cancel_too_late_v1: every
        node had ended, the last one perhaps while the request was on its way, or one failed
        unhandled): nothing is left to stop, so the loop ends it as it would have (Succeeded with
        its outputs, or Failed), and that end records cancel_too_late. None: carry on. If node tasks
        were stopped on the way here, a record of theirs committed without this run taking in its
        answer: the run is handed back, and the worker that takes it reads its checkpoints afresh."""
        self.cancel_too_late = True
        self.control = None
        self.log.info("cancel came too late: the run's outcome was decided")
        if stopped:
            return await self._hand_back(reason="cancel_too_late", why="a cancel that came too late")
        return None

    async def _suspend(self) -> str | None:
        """An operator suspended the run and its attempts have ended: it holds nothing from now on.
        None when the suspension was withdrawn meanwhile, or came too late (the run goes on)."""
        suspension = await self.data.suspend(
            self.execution_id,
            self.token,
            worker=self.settings.worker_id,
            job_id=self.ctx.job_id,
            job_worker=self.ctx.job_worker,
        )
        # The run's job ended with it unless the suspension was withdrawn (dw.suspend_execution_v2).
        self.ctx.job_finished = self.ctx.job_finished or suspension.job_finished
        outcome = suspension.outcome
        if outcome == "suspended":
            metrics.CONTROL_APPLIED.labels("suspend").inc()
            self.log.info("execution suspended")
            return "suspended"
        if outcome == "cancelled":
            metrics.CONTROL_APPLIED.labels("cancel").inc()
            metrics.EXECUTIONS_FINISHED.labels(self.info.workflow_id, ExecutionStatus.CANCELLED.value).inc()
            self.log.info("execution cancelled (the request came as it was being suspended)")
            return ExecutionStatus.CANCELLED.value
        if outcome == "too_late":
            # Every node ended (or one failed unhandled) while the request was pending: nothing is
            # left to hold back, and the loop ends the run as it would have (dw.outcome_decided_v1).
            self.log.info("suspension came too late: the run's outcome was decided")
        self.control = None  # resumed before it took effect, or too late
        self.ctx.suspending.clear()
        return None

    async def _collect(self, task: asyncio.Task[Decision | None]) -> str | None:
        node_id = task.get_name().removeprefix("node-")
        self.running.pop(node_id, None)
        try:
            decision = task.result()
        except (LeaseLost, DatabaseUnavailable, ConditionUnavailable):
            # Fenced out, the database away, or no helper for an edge's condition (its edges were
            # not decided, so nothing was recorded): the lease/recovery resume it.
            raise
        except Exception as exc:
            # An engine bug must end the run with a reason, not crash the job and loop through
            # recoveries.
            self.log.exception("node task crashed", node_id=node_id)
            error = {"code": "engine_error", "nodeId": node_id, "message": f"{type(exc).__name__}: {exc}"}
            return await self._finish(ExecutionStatus.FAILED, error, dead_letter=(node_id, error))
        if decision is not None and decision.verdict == Verdict.FAILED_UNHANDLED:
            return await self._fail_node(node_id, decision.error)
        if self.ctx.succeeded_by_record:
            # The last node's record ended the run (dw.record_attempt_v6): nothing runs any more.
            metrics.EXECUTIONS_FINISHED.labels(self.info.workflow_id, ExecutionStatus.SUCCEEDED.value).inc()
            self.log.info("execution finished", status=ExecutionStatus.SUCCEEDED.value, error=None)
            return ExecutionStatus.SUCCEEDED.value
        return None

    async def _fail_node(self, node_id: str, cause: dict[str, Any] | None) -> str:
        """Fail fast: a node failed and no failure/always edge took the failure."""
        message = f"node {node_id!r} failed"
        if cause and cause.get("message"):
            message += f": {cause['message']}"
        error = {"code": "node_failed", "nodeId": node_id, "message": message, "cause": cause}
        return await self._finish(ExecutionStatus.FAILED, error, dead_letter=(node_id, cause or error))

    def _next_wakeup(self, at: datetime) -> float | None:
        # A retry that is due but has no free slot waits for a running node, not for the clock
        # (counting it would make the wait time 0 and spin); so does every retry once the worker is
        # stopping (nothing new starts).
        candidates: list[datetime] = []
        pause = self._refusal_pause()
        if pause > 0:
            candidates.append(at + timedelta(seconds=pause))  # then nodes may start again
        retries = self._slots_taken() < self.plan.max_parallel_actions and not self.ctx.holding() and not pause
        for node_id, state in self.state.items():
            wait = state.wait
            if wait is None:
                # A retry (a Waiting node with no wait) that may start once due.
                if retries and (due := state.retry_due) is not None and node_id not in self.running:
                    candidates.append(due)
            elif wait.is_open and wait.wakes_at is not None:
                # A timer or timeout that comes due while other nodes run is fired by this worker.
                candidates.append(max(wait.wakes_at, self.next_fire_check or wait.wakes_at))
        if self.info.deadline_at is not None:
            candidates.append(self.info.deadline_at)
        return max((min(candidates) - at).total_seconds(), 0.0) if candidates else None

    def _launch_prestarted(self) -> None:
        """Nodes whose attempt the acquire or another node's record started: they are in flight
        already, so they run even if the worker has begun to hold back."""
        for node_id, state in self.state.items():
            if state.prestarted and node_id not in self.running:
                state.prestarted = False
                self.running[node_id] = asyncio.create_task(
                    self.attempts.run_node(node_id, resume=True), name=f"node-{node_id}"
                )

    def _launch_ready(self, at: datetime) -> None:
        self._launch_prestarted()
        if self.ctx.holding() or self._refusal_pause() > 0:
            return
        for node_id in self.ctx.order:
            if self._slots_taken() >= self.plan.max_parallel_actions:
                return
            if node_id in self.running:
                continue
            state = self.state[node_id]
            if state.wait is None and state.status not in _LAUNCHABLE:
                continue  # Pending or final, with no wait resolved: the branches below start nothing
            work: Coroutine[Any, Any, Decision | None]
            if state.resolved_wait is not None:
                work = self.attempts.resume_wait(node_id)
            elif state.status == NodeStatus.RUNNING:
                if state.parked:
                    continue  # until an item's child ends or a retry comes due (a poke unparks it)
                # A resumable attempt (forEach) that a previous holder, or a pause, left half-way.
                work = self.attempts.run_node(node_id, resume=True, left_over=True)
            elif state.status == NodeStatus.READY or (state.retry_due is not None and state.retry_due <= at):
                work = self.attempts.run_node(node_id)
            else:
                continue
            self.running[node_id] = asyncio.create_task(work, name=f"node-{node_id}")

    async def _finish(
        self,
        status: ExecutionStatus,
        error: dict[str, Any] | None,
        dead_letter: tuple[str, dict[str, Any] | None] | None = None,
        outputs: Any = None,
    ) -> str:
        await self._cancel_running()
        node, node_error = dead_letter or (None, None)
        ended_job = await self.data.complete(
            self.execution_id,
            self.token,
            status=status,
            error=error,
            dead_letter_node=node,
            dead_letter_error=node_error,
            outputs=outputs,
            job_id=self.ctx.job_id,
            job_worker=self.ctx.job_worker,
        )
        # The run's job ended with it (dw.complete_execution_v4): the worker does not finish it.
        self.ctx.job_finished = self.ctx.job_finished or ended_job
        metrics.EXECUTIONS_FINISHED.labels(self.info.workflow_id, status.value).inc()
        self.log.info("execution finished", status=status.value, error=error)
        return status.value

"""The DAG runner: runs one execution under a lease, checkpointing every attempt.

run_execution(execution_id), called by the worker's Procrastinate task:
1. try-acquire the lease (fencing token) or leave: held by a live worker, finished, or throttled
   (then re-queued later);
2. load the compiled plan (cached per process by workflow/version) and the node checkpoints; an
   attempt that was in flight when a previous worker died is recorded as interrupted and retried;
3. run Ready nodes with bounded parallelism; per attempt: render parameters, run the action under
   its timeout, then record the attempt, the node state, the event and the edge decisions in one
   transaction (dw.record_attempt_v1, fenced by the token);
4. retriable failures back off: a short backoff waits in-process, a long one parks the execution
   (lease released, run job deferred to the due time);
5. finish with dw.complete_execution_v1. A failed node with no failure/always edge that fired
   fails the run at once; running work is cancelled and nodes that never started are Skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import msgspec
import structlog

from dataworkflows import metrics
from dataworkflows.actions import (
    ActionContext,
    ActionError,
    ActionRegistry,
    ActionResult,
    ActionServices,
    UnknownActionType,
)
from dataworkflows.conditions import ConditionError, ConditionTimeout
from dataworkflows.db import Database, jsonb
from dataworkflows.definitions import EdgeWhen, RoutePolicy
from dataworkflows.errors import DatabaseUnavailable, DataWorkflowsError, InvalidInput, LeaseLost
from dataworkflows.planning import Plan, PlanNode, plan_from_json
from dataworkflows.retry import backoff_seconds
from dataworkflows.statuses import AttemptStatus, ExecutionStatus, NodeStatus
from dataworkflows.template_pool import TemplateRenderer
from dataworkflows.templating import TemplateRenderError

log = structlog.get_logger("dataworkflows.runtime")


class ConditionEvaluator(Protocol):
    async def evaluate(self, expr: str, scope: dict[str, Any]) -> bool: ...


@dataclass(frozen=True)
class RuntimeSettings:
    worker_id: str
    queue: str = "executions"
    lease_seconds: float = 30.0
    park_threshold_seconds: float = 30.0
    throttle_delay_seconds: float = 2.0


class PlanCache:
    """Compiled plans by (workflow, version); versions are immutable, so entries never go stale."""

    def __init__(self, db: Database, max_entries: int = 512) -> None:
        self._db = db
        self._plans: OrderedDict[tuple[str, int], tuple[Plan, dict[str, PlanNode]]] = OrderedDict()
        self._max = max_entries
        self.loads = 0

    async def get(self, workflow_id: str, version: int) -> tuple[Plan, dict[str, PlanNode]]:
        key = (workflow_id, version)
        cached = self._plans.get(key)
        if cached is not None:
            self._plans.move_to_end(key)
            return cached
        row = await self._db.fetch_one("get_plan", id=workflow_id, version=version)
        if row is None:
            raise DataWorkflowsError(f"no compiled plan for {workflow_id} v{version}")
        plan = plan_from_json(row["plan"])
        entry = (plan, {node.id: node for node in plan.nodes})
        self.loads += 1
        self._plans[key] = entry
        if len(self._plans) > self._max:
            self._plans.popitem(last=False)
        return entry


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _link_json(link: Any) -> dict[str, Any]:
    data = msgspec.to_builtins(link)
    assert isinstance(data, dict)
    return data


def _error_json(error: ActionError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    data = msgspec.to_builtins(error)
    assert isinstance(data, dict)
    return data


@dataclass
class _NodeOutcome:
    node_id: str
    status: NodeStatus
    unhandled_failure: bool = False
    error: dict[str, Any] | None = None


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
    ) -> None:
        self.db = db
        self.registry = registry
        self.settings = settings
        self.conditions = conditions
        self.templates = templates
        self.services = services
        self.plans = PlanCache(db)
        # Set when the worker is asked to stop: no run starts another attempt; each hands itself
        # back once its running attempts have ended (within the worker's grace period).
        self.stopping = asyncio.Event()

    def stop_starting(self) -> None:
        """From now on, no new node attempt starts in this process."""
        self.stopping.set()

    async def run_execution(self, execution_id: UUID) -> str:
        """Runs (or resumes) one execution; returns what happened, for logs and tests."""
        row = await self.db.fetch_one(
            "acquire_run", id=execution_id, owner=self.settings.worker_id, lease_seconds=self.settings.lease_seconds
        )
        assert row is not None
        outcome = str(row["outcome"])
        if outcome == "throttled":
            await self.db.fetch_one(
                "defer_run",
                id=execution_id,
                queue=self.settings.queue,
                scheduled_at=_now() + timedelta(seconds=self.settings.throttle_delay_seconds),
            )
            log.info("execution throttled by the workflow's concurrency limit", execution_id=str(execution_id))
            return outcome
        if outcome != "acquired":
            log.debug("execution not acquired", execution_id=str(execution_id), outcome=outcome)
            return outcome
        run = _Run(self, execution_id, int(row["lease_token"]))
        return await run.execute(row["run"], row["nodes"])


@dataclass
class _Run:
    runtime: Runtime
    execution_id: UUID
    token: int
    status: dict[str, NodeStatus] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    # Attempts made before the latest redrive: a node's retry budget counts from here.
    attempt_base: dict[str, int] = field(default_factory=dict)
    next_at: dict[str, datetime] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    running: dict[str, asyncio.Task[_NodeOutcome]] = field(default_factory=dict)
    lease_lost: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def db(self) -> Database:
        return self.runtime.db

    @property
    def settings(self) -> RuntimeSettings:
        return self.runtime.settings

    async def execute(self, info: dict[str, Any], node_states: list[dict[str, Any]]) -> str:
        """Runs the execution whose lease this run holds (info and node_states come with the lease)."""
        self.workflow_id = str(info["workflowId"])
        self.version = int(info["version"])
        self.trigger: dict[str, Any] = info["trigger"] or {}
        self.principal_id: str | None = info["principalId"]
        self.deadline: datetime | None = _timestamp(info["deadlineAt"])
        self.log = log.bind(
            execution_id=str(self.execution_id),
            workflow_id=self.workflow_id,
            version=self.version,
            worker_id=self.settings.worker_id,
            principal=self.principal_id,
            correlation_id=info["correlationId"],
        )
        self.plan, self.nodes = await self.runtime.plans.get(self.workflow_id, self.version)
        for state in node_states:
            node_id = state["nodeId"]
            self.status[node_id] = NodeStatus(state["status"])
            self.attempts[node_id] = int(state["attempts"])
            self.attempt_base[node_id] = int(state["attemptBase"])
            next_at = _timestamp(state["nextAttemptAt"])
            if next_at is not None:
                self.next_at[node_id] = next_at
            if state["status"] == NodeStatus.SUCCEEDED:
                self.outputs[node_id] = state["outputs"]
        self.order = [node.id for node in self.plan.nodes]
        self.log.info("execution acquired", lease_token=self.token)
        metrics.EXECUTIONS_STARTED.labels(self.workflow_id).inc()

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
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _hand_back(self) -> str:
        """Releases the lease and re-queues the run for another worker (this one is stopping)."""
        try:
            await self.db.fetch_one(
                "release_execution",
                id=self.execution_id,
                token=self.token,
                queue=self.settings.queue,
                reason="worker_shutdown",
            )
        except DataWorkflowsError as exc:
            # Not fatal: the lease expires and recovery re-queues the run; but say so.
            self.log.warning("could not hand the execution back on shutdown", error=str(exc))
        else:
            self.log.info("execution released for another worker (shutdown)")
        return "released"

    async def _heartbeat(self) -> None:
        interval = max(self.settings.lease_seconds / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            try:
                row = await self.db.fetch_one(
                    "renew_lease", id=self.execution_id, token=self.token, lease_seconds=self.settings.lease_seconds
                )
            except Exception as exc:
                # A blip: keep trying; if the lease expires meanwhile, fencing protects the data.
                self.log.warning("lease renewal failed", error=str(exc), error_type=type(exc).__name__)
                continue
            if not (row and row["renewed"]):
                self.lease_lost.set()
                return

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

    def _final(self, node_id: str) -> bool:
        return self.status[node_id].is_final

    async def _drive(self) -> str:
        interrupted = await self._recover_interrupted()
        if interrupted is not None:
            return await self._fail_node(interrupted)
        lost_waiter = asyncio.create_task(self.lease_lost.wait())
        stop_waiter = asyncio.create_task(self.runtime.stopping.wait())
        try:
            while True:
                if self.lease_lost.is_set():
                    raise LeaseLost()
                # Wake up for a stop request until it has come (a done task would wake every wait).
                waiters = {lost_waiter} if stop_waiter.done() else {lost_waiter, stop_waiter}
                if self.runtime.stopping.is_set() and not self.running:
                    return await self._hand_back()
                now = _now()
                if self.deadline is not None and now >= self.deadline:
                    return await self._finish(
                        ExecutionStatus.TIMED_OUT,
                        {"code": "workflow_timeout", "message": "the workflow ran past its workflowTimeout"},
                    )
                self._launch_ready(now)
                if not self.running:
                    waiting = [self.next_at[n] for n, s in self.status.items() if s == NodeStatus.WAITING]
                    if waiting:
                        wake = min(waiting)
                        if self.deadline is not None:
                            wake = min(wake, self.deadline)  # wake up in time to time out
                        delay = (wake - now).total_seconds()
                        if delay > self.settings.park_threshold_seconds:
                            await self.db.fetch_one(
                                "park_execution",
                                id=self.execution_id,
                                token=self.token,
                                wake_at=wake,
                                queue=self.settings.queue,
                            )
                            metrics.EXECUTIONS_PARKED.inc()
                            self.log.info("execution parked until a retry is due", wake_at=wake.isoformat())
                            return "parked"
                        await asyncio.wait(waiters, timeout=max(delay, 0), return_when=asyncio.FIRST_COMPLETED)
                        continue
                    if all(self._final(n) for n in self.order):
                        return await self._finish(ExecutionStatus.SUCCEEDED, None)
                    stuck = [n for n in self.order if not self._final(n)]
                    return await self._finish(
                        ExecutionStatus.FAILED,
                        {"code": "stuck", "message": f"no runnable node, but nodes are unfinished: {stuck}"},
                    )
                timeout = self._next_wakeup(now)
                done, _ = await asyncio.wait(
                    {*self.running.values(), *waiters}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if task is lost_waiter:
                        raise LeaseLost()
                    if task is stop_waiter:
                        continue
                    node_id = task.get_name().removeprefix("node-")
                    try:
                        outcome = task.result()
                    except (LeaseLost, DatabaseUnavailable):
                        raise  # fenced out, or the database is away: the lease/recovery resume it
                    except Exception as exc:
                        # An engine bug must end the run with a reason, not crash the job and loop
                        # through recoveries.
                        self.log.exception("node task crashed", node_id=node_id)
                        return await self._finish(
                            ExecutionStatus.FAILED,
                            {"code": "engine_error", "nodeId": node_id, "message": f"{type(exc).__name__}: {exc}"},
                        )
                    assert isinstance(outcome, _NodeOutcome)
                    self.running.pop(outcome.node_id, None)
                    if outcome.unhandled_failure:
                        return await self._fail_node(outcome)
        finally:
            lost_waiter.cancel()
            stop_waiter.cancel()

    async def _fail_node(self, outcome: _NodeOutcome) -> str:
        """Fail fast: a node failed and no failure/always edge took the failure."""
        message = f"node {outcome.node_id!r} failed"
        if outcome.error and outcome.error.get("message"):
            message += f": {outcome.error['message']}"
        return await self._finish(
            ExecutionStatus.FAILED,
            {"code": "node_failed", "nodeId": outcome.node_id, "message": message, "cause": outcome.error},
        )

    def _next_wakeup(self, now: datetime) -> float | None:
        # A retry that is due but has no free slot waits for a running node, not for the clock
        # (counting it would make the wait time 0 and spin).
        slots_free = len(self.running) < self.plan.max_parallel_actions
        candidates = [
            self.next_at[n]
            for n, s in self.status.items()
            if slots_free and s == NodeStatus.WAITING and n not in self.running and n in self.next_at
        ]
        if self.deadline is not None:
            candidates.append(self.deadline)
        if not candidates:
            return None
        return max((min(candidates) - now).total_seconds(), 0.0)

    def _launch_ready(self, now: datetime) -> None:
        if self.runtime.stopping.is_set():
            return
        limit = self.plan.max_parallel_actions
        for node_id in self.order:
            if len(self.running) >= limit:
                return
            if node_id in self.running:
                continue
            state = self.status[node_id]
            due = state == NodeStatus.WAITING and self.next_at.get(node_id, now) <= now
            if state == NodeStatus.READY or due:
                self.running[node_id] = asyncio.create_task(self._run_node(node_id), name=f"node-{node_id}")

    async def _finish(self, status: ExecutionStatus, error: dict[str, Any] | None) -> str:
        await self._cancel_running()
        await self.db.fetch_one(
            "complete_execution", id=self.execution_id, token=self.token, status=status.value, error=error
        )
        metrics.EXECUTIONS_FINISHED.labels(self.workflow_id, status.value).inc()
        self.log.info("execution finished", status=status.value, error=error)
        return status.value

    def _scope(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "nodes": self.outputs,
            "execution": {
                "id": str(self.execution_id),
                "workflowId": self.workflow_id,
                "version": self.version,
                "principal": self.principal_id,
            },
        }

    async def _recover_interrupted(self) -> _NodeOutcome | None:
        """An attempt that was in flight when its worker died is recorded as interrupted; the
        node is retried if its policy allows, so a Succeeded node never runs again. Returns an
        unhandled failure, if recording one ended a node for good."""
        for node_id in self.order:
            if self.status[node_id] != NodeStatus.RUNNING:
                continue
            node = self.nodes[node_id]
            attempt = self.attempts[node_id]
            now = _now()
            result = ActionResult.retriable(
                "attempt_interrupted", "the worker running this attempt stopped before recording its outcome"
            )
            self.log.warning("recording interrupted attempt", node_id=node_id, attempt=attempt)
            outcome = await self._record(node, attempt, None, result, now, now, retry_in_process=False)
            if outcome is not None and outcome.unhandled_failure:
                return outcome
        return None

    async def _run_node(self, node_id: str) -> _NodeOutcome:
        node = self.nodes[node_id]
        rendered: dict[str, Any] | None = None
        while True:
            row = await self.db.fetch_one("start_node_attempt", id=self.execution_id, token=self.token, node_id=node_id)
            assert row is not None
            attempt = int(row["attempt"])
            self.status[node_id] = NodeStatus.RUNNING
            self.attempts[node_id] = attempt
            node_log = self.log.bind(node_id=node_id, attempt=attempt, action_type=node.action_type)
            start = _now()
            result: ActionResult
            try:
                if rendered is None and not node.rerender_on_retry and attempt > 1:
                    # Resumed after a park or a crash: reuse what an earlier attempt rendered.
                    rendered = await self._earlier_parameters(node.id)
                if rendered is None or node.rerender_on_retry:
                    rendered = None
                    # Templates also see the attempt number: with rerenderOnRetry each attempt
                    # renders its own parameters; without it, attempt 1's are reused.
                    rendered = await self.runtime.templates.render(
                        node.parameters, {**self._scope(), "attempt": attempt}
                    )
                result = await self._invoke(node, attempt, rendered, node_log)
            except TemplateRenderError as exc:
                result = ActionResult.failed(exc.code, exc.message)
            end = _now()
            outcome = await self._record(node, attempt, rendered, result, start, end, retry_in_process=True)
            if outcome is None:
                continue  # short backoff done in-process; next attempt
            return outcome

    async def _earlier_parameters(self, node_id: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one("earlier_parameters", id=self.execution_id, node_id=node_id)
        return None if row is None else row["parameters"]

    async def _invoke(self, node: PlanNode, attempt: int, rendered: dict[str, Any], node_log: Any) -> ActionResult:
        try:
            action = self.runtime.registry.get(node.action_type)
        except UnknownActionType as exc:
            return ActionResult.failed(exc.code, exc.message)
        try:
            params = msgspec.convert(rendered, action.Params)
        except msgspec.ValidationError as exc:
            return ActionResult.failed("invalid_parameters", f"parameters are invalid after rendering: {exc}")
        ctx = ActionContext(
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            workflow_version=self.version,
            node_id=node.id,
            attempt=attempt,
            max_attempts=node.retry.max_attempts,
            trigger=self.trigger,
            principal_id=self.principal_id,
            log=node_log,
            services=self.runtime.services,
        )
        started = time.monotonic()
        try:
            return await asyncio.wait_for(action.execute(ctx, params), node.timeout_seconds)
        except TimeoutError:
            return ActionResult(
                AttemptStatus.TIMED_OUT,
                error=ActionError(
                    "action_timeout", f"the action ran longer than its {node.timeout_seconds:g}s timeout"
                ),
            )
        except Exception as exc:
            # An action that raises is a bug or an unexpected condition: fail the attempt with
            # the exception named (not retried: a crash half-way may already have side effects).
            node_log.exception("action raised", elapsed=time.monotonic() - started)
            return ActionResult.failed("action_exception", f"{type(exc).__name__}: {exc}")

    async def _decide_edges(self, node: PlanNode, succeeded: bool) -> list[bool]:
        fired: list[bool] = []
        matched = False
        for edge in node.edges:
            ok = edge.when == EdgeWhen.ALWAYS or (edge.when == EdgeWhen.SUCCESS) == succeeded
            if ok and matched and node.route_policy == RoutePolicy.FIRST_MATCH:
                ok = False
            if ok and edge.condition is not None:
                try:
                    ok = await self.runtime.conditions.evaluate(edge.condition, self._scope())
                except ConditionTimeout:
                    raise
                except ConditionError as exc:
                    ok = False
                    await self.db.execute(
                        "record_event",
                        token=self.token,
                        id=self.execution_id,
                        node_id=node.id,
                        type="condition_error",
                        details=jsonb({"target": edge.target, "condition": edge.condition, "error": exc.message}),
                    )
            matched = matched or ok
            fired.append(ok)
        return fired

    async def _record(
        self,
        node: PlanNode,
        attempt: int,
        rendered: dict[str, Any] | None,
        result: ActionResult,
        start: datetime,
        end: datetime,
        *,
        retry_in_process: bool,
    ) -> _NodeOutcome | None:
        """Checkpoints one attempt. Returns None when the node should be retried in-process now."""
        status = result.status
        retriable = status in (AttemptStatus.RETRIABLE_FAILURE, AttemptStatus.TIMED_OUT)
        next_at: datetime | None = None
        fired: list[bool] = []
        delay = 0.0
        error = _error_json(result.error)
        if status == AttemptStatus.SUCCEEDED:
            # Outputs must be visible to the conditions of this node's own edges.
            self.outputs[node.id] = result.outputs
            try:
                fired = await self._decide_edges(node, succeeded=True)
            except ConditionTimeout as exc:
                # The node fails: its failure/always edges are decided below, like any failure.
                self.outputs.pop(node.id, None)
                status = AttemptStatus.FAILED
                error = {"code": exc.code, "message": exc.message}
                fired = []
                node_status = NodeStatus.FAILED
            else:
                node_status = NodeStatus.SUCCEEDED
        elif retriable and attempt - self.attempt_base.get(node.id, 0) < node.retry.max_attempts:
            retry_after = result.error.retry_after if result.error else None
            delay = backoff_seconds(node.retry, attempt, retry_after)
            next_at = end + timedelta(seconds=delay)
            node_status = NodeStatus.WAITING
        else:
            node_status = NodeStatus.FAILED
            if retriable:
                error = {**(error or {}), "attemptsExhausted": attempt - self.attempt_base.get(node.id, 0)}
        if node_status == NodeStatus.FAILED and not fired:
            try:
                fired = await self._decide_edges(node, succeeded=False)
            except ConditionTimeout as exc:
                error = {**(error or {}), "conditionError": {"code": exc.code, "message": exc.message}}
                fired = [False] * len(node.edges)

        handled = any(
            f and e.when in (EdgeWhen.FAILURE, EdgeWhen.ALWAYS) for f, e in zip(fired, node.edges, strict=False)
        )
        unhandled = node_status == NodeStatus.FAILED and not handled
        try:
            changes = await self.db.record_attempt(
                execution_id=self.execution_id,
                token=self.token,
                node_id=node.id,
                attempt=attempt,
                action_type=node.action_type,
                attempt_status=status.value,
                parameters=rendered,
                outputs=result.outputs if status == AttemptStatus.SUCCEEDED else (result.outputs or None),
                error=error,
                start_time=start,
                end_time=end,
                worker=self.settings.worker_id,
                node_status=node_status.value,
                next_attempt_at=next_at,
                # An unhandled failure ends the run: its edges stay undecided, so a redrive resumes
                # exactly here.
                fired=None if unhandled else fired,
                resource_links=[_link_json(link) for link in result.resource_links] or None,
            )
        except (InvalidInput, TypeError, msgspec.EncodeError) as exc:
            # What the attempt produced cannot be stored (not JSON, or refused by PostgreSQL, such
            # as a NUL character): the transaction rolled back, so record a failure that says so
            # instead, without the offending values. Not retried: the same input would do it again.
            if result.error is not None and result.error.code == "unrecordable_result":
                raise
            self.outputs.pop(node.id, None)
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.log.warning("attempt result could not be stored", node_id=node.id, attempt=attempt, error=message)
            unrecordable = ActionResult.failed(
                "unrecordable_result", f"the attempt's parameters or outputs could not be stored: {message}"[:2000]
            )
            return await self._record(node, attempt, None, unrecordable, start, end, retry_in_process=retry_in_process)
        metrics.ATTEMPTS.labels(node.action_type, status.value).inc()
        metrics.NODE_DURATION.labels(node.action_type, status.value).observe((end - start).total_seconds())
        if node_status == NodeStatus.WAITING:
            metrics.RETRIES.labels(node.action_type).inc()
        self.status[node.id] = node_status
        if next_at is not None:
            self.next_at[node.id] = next_at
        for change in changes:
            self.status[change["node_id"]] = NodeStatus(change["status"])
        self.log.info(
            "attempt recorded",
            node_id=node.id,
            attempt=attempt,
            attempt_status=status.value,
            node_status=node_status.value,
            retry_in=round(delay, 3) if next_at else None,
        )
        if node_status == NodeStatus.WAITING:
            if retry_in_process and delay <= self.settings.park_threshold_seconds:
                sleep_task = asyncio.ensure_future(asyncio.sleep(delay))
                lost = asyncio.ensure_future(self.lease_lost.wait())
                stopping = asyncio.ensure_future(self.runtime.stopping.wait())
                try:
                    await asyncio.wait({sleep_task, lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleep_task.cancel()
                    lost.cancel()
                    stopping.cancel()
                if self.lease_lost.is_set():
                    raise LeaseLost()
                if not self.runtime.stopping.is_set():
                    return None
                # Stopping: the node stays Waiting with its due time; the next worker retries it.
            return _NodeOutcome(node.id, NodeStatus.WAITING)
        if node_status == NodeStatus.FAILED:
            return _NodeOutcome(node.id, NodeStatus.FAILED, unhandled_failure=unhandled, error=error)
        return _NodeOutcome(node.id, node_status)

"""Runs a run's compensation (README "Compensation"): after the run ended Failed, TimedOut or
Cancelled, the compensating action of each node that had Succeeded, the last to succeed first, one
at a time (a saga's backward recovery). Each step is an action attempt like a node's: its parameters
rendered over the run's scope (in the sandbox), its action run under its timeout, retried by its
retry policy, its secrets kept out of what is recorded. The steps are rows (dw.compensations); the
worker that runs the run's dw.compensate job claims them in order and records each attempt. A step
whose worker died is claimed again when its claim runs out (its attempt interrupted: at least once,
as every action attempt is).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import msgspec
import structlog

from dataworkflows import metrics
from dataworkflows.actions import ActionResult
from dataworkflows.clock import now
from dataworkflows.data.compensations import Claim, CompensationData, CompensationScope
from dataworkflows.data.runs import PlanCache
from dataworkflows.errors import InvalidInput
from dataworkflows.json_depth import too_deep
from dataworkflows.node_kinds import Attempt, AttemptContext, NodeKinds
from dataworkflows.outcomes import error_json
from dataworkflows.planning import PlanNode
from dataworkflows.retry import backoff_seconds
from dataworkflows.scrubbing import Scrubber, scrubbing
from dataworkflows.statuses import AttemptStatus

log = structlog.get_logger(__name__)

# The attempts a step's retry policy retries (as a node's).
_RETRYABLE = frozenset({AttemptStatus.RETRIABLE_FAILURE, AttemptStatus.TIMED_OUT})


async def _stopped_within(stop: asyncio.Event, delay: float) -> bool:
    """Sleeps `delay` seconds, or less if `stop` is set; returns whether it was."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await stop.wait()
    return stop.is_set()


async def _no_earlier_parameters() -> dict[str, Any] | None:
    return None


@dataclass
class CompensationRunner:
    """Runs the compensation steps of one run after another (one worker's dw.compensate job)."""

    data: CompensationData
    plans: PlanCache
    kinds: NodeKinds
    worker_id: str
    park_threshold_seconds: float
    stopping: asyncio.Event

    async def run(self, execution_id: UUID) -> str:
        """Runs the run's steps until none is left (done), another worker holds one (held: a job is
        queued for when its claim runs out), the next is a child's compensation under way (waiting),
        or the next waits past the park threshold or the worker stops (later: a job is queued for
        it)."""
        while True:
            claim = await self.data.claim(execution_id, self.worker_id)
            if claim.outcome in ("done", "waiting"):
                # waiting: the next step is a child run's compensation, under way; its end queues
                # this run's job again.
                return claim.outcome
            if claim.outcome == "held":
                # Another worker holds the step. Should that worker be gone, the step is claimed
                # again when its claim runs out: a job for then (a live holder goes on to the next
                # step, and that job finds it held again, or nothing left).
                assert claim.due_at is not None
                await self.data.defer(execution_id, claim.due_at)
                return claim.outcome
            if claim.outcome == "later":
                assert claim.due_at is not None
                delay = (claim.due_at - now()).total_seconds()
                # Waited for in the job, but not past the worker's stop: a plain sleep held a
                # stopping worker for its whole grace, and the job was cut off at its end.
                if (
                    delay > self.park_threshold_seconds
                    or self.stopping.is_set()
                    or await _stopped_within(self.stopping, max(delay, 0.0))
                ):
                    await self.data.defer(execution_id, claim.due_at)
                    return "later"
                continue
            await self._attempt(execution_id, claim)
            if self.stopping.is_set():
                # The next step is another job's, queued now (this worker is going away).
                await self.data.defer(execution_id, None)
                return "later"

    async def _attempt(self, execution_id: UUID, claim: Claim) -> None:
        assert claim.node_id is not None and claim.attempt is not None
        scope = await self.data.scope(execution_id)
        assert scope is not None
        plan = await self.plans.get(scope.workflow_id, scope.workflow_version)
        node = next((n for n in plan.nodes if n.id == claim.node_id), None)
        step = _step_node(node) if node is not None else None
        bound = log.bind(execution_id=str(execution_id), node_id=claim.node_id, attempt=claim.attempt)
        if step is None:
            # The plan is immutable: a step is queued only for a node whose plan has a compensation.
            result = ActionResult.failed("compensation_missing", f"the plan has no compensation for {claim.node_id}")
            await self._record(execution_id, claim, step, Attempt(None, result), bound)
            return
        trigger = scope.trigger if isinstance(scope.trigger, dict) else {}
        context = AttemptContext(
            node=step,
            attempt=claim.attempt,
            execution_id=execution_id,
            workflow_id=scope.workflow_id,
            workflow_version=scope.workflow_version,
            trigger=trigger,
            principal_id=scope.principal_id,
            scope=_template_scope(execution_id, scope, trigger),
            log=bound,
            earlier_parameters=_no_earlier_parameters,
            park_threshold_seconds=self.park_threshold_seconds,
            # The attempts before its latest redrive: the idempotency generation its action sees.
            generation=claim.attempt - (claim.tries or claim.attempt),
            # Its requests carry a key of their own, not the node's (its refund is not its charge).
            compensating=True,
        )
        # The run's trigger values, and the secrets the action resolves, are scrubbed from what is
        # recorded and logged, as for the run's own attempts.
        with scrubbing(Scrubber.for_trigger(trigger)) as scrubber:
            outcome = await self.kinds.get("action").attempt(context)
            assert isinstance(outcome, Attempt)
            await self._record(execution_id, claim, step, outcome, bound, scrubber)

    async def _record(
        self,
        execution_id: UUID,
        claim: Claim,
        step: PlanNode | None,
        outcome: Attempt,
        bound: Any,
        scrubber: Scrubber | None = None,
    ) -> None:
        deep = too_deep("parameters", outcome.parameters) or too_deep("outputs", outcome.result.outputs)
        if deep is not None:
            outcome = Attempt(None, _unrecordable(deep))
        try:
            recorded = await self._write(execution_id, claim, step, outcome, scrubber)
        except (InvalidInput, TypeError, msgspec.EncodeError) as exc:
            # PostgreSQL refused what the attempt produced (a NUL character, a lone surrogate): the
            # failure is recorded instead, without the values. Not retried: it would do it again.
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            outcome = Attempt(None, _unrecordable(message))
            recorded = await self._write(execution_id, claim, step, outcome, scrubber)
        if not recorded:
            bound.warning("compensation attempt not recorded: its claim ran out and another worker took it")
            return
        verdict, error = recorded
        metrics.COMPENSATION_ATTEMPTS.labels(verdict).inc()
        bound.info("compensation attempt", outcome=verdict, error=error)

    async def _write(
        self, execution_id: UUID, claim: Claim, step: PlanNode | None, outcome: Attempt, scrubber: Scrubber | None
    ) -> tuple[str, Any] | None:
        """Records the attempt (dw.record_compensation_v1); its verdict and error, or None when the
        claim had run out and another worker had taken the step."""
        assert claim.node_id is not None and claim.attempt is not None
        tries = claim.tries or claim.attempt
        result = outcome.result
        error = error_json(result)
        if scrubber is not None and error is not None:
            error = scrubber.error(error)
        verdict, retry_at = "Failed", None
        if result.status == AttemptStatus.SUCCEEDED:
            verdict = "Succeeded"
        elif result.status in _RETRYABLE and step is not None and tries < step.retry.max_attempts:
            retry_after = result.error.retry_after if result.error is not None else None
            verdict = "Retry"
            retry_at = now() + timedelta(seconds=backoff_seconds(step.retry, tries, retry_after))
        recorded = await self.data.record(
            execution_id,
            claim.node_id,
            claim.attempt,
            verdict,
            parameters=outcome.parameters,
            outputs=result.outputs if result.status == AttemptStatus.SUCCEEDED else None,
            error=error,
            retry_at=retry_at,
            # The resources its action reported (secrets already scrubbed by the action kind).
            resource_links=[msgspec.to_builtins(link) for link in result.resource_links],
        )
        return (verdict, error) if recorded else None


def _step_node(node: PlanNode) -> PlanNode | None:
    """The node as its compensation's action attempt sees it: the compensation's action,
    parameters (rendered at each attempt), timeout and retries, under the node's id (the resources
    the node claimed are its compensation's to release)."""
    compensation = node.compensation
    if compensation is None:
        return None
    return msgspec.structs.replace(
        node,
        action_type=compensation.action_type,
        parameters=compensation.parameters,
        timeout_seconds=compensation.timeout_seconds,
        retry=compensation.retry,
        rerender_on_retry=True,
        kind="action",
    )


def _template_scope(execution_id: UUID, scope: CompensationScope, trigger: dict[str, Any]) -> dict[str, Any]:
    """What a compensation's templates read: the run's scope at its end (trigger, nodes: the outputs
    of its Succeeded nodes, errors: those of its Failed ones), `execution` with the run's end
    (`status`, `error`), and `compensation`: the end it undoes (`cause`: the run's own, or the
    parent's whose compensation undoes it) and the run's `parent` (null for a root)."""
    execution = {
        "id": str(execution_id),
        "workflowId": scope.workflow_id,
        "version": scope.workflow_version,
        "principal": scope.principal_id,
        "status": scope.status,
        "error": scope.error,
    }
    compensation = scope.compensation if isinstance(scope.compensation, dict) else {"cause": None, "parent": None}
    return {
        "trigger": trigger,
        "nodes": scope.nodes,
        "errors": scope.errors,
        "execution": execution,
        "compensation": compensation,
    }


def _unrecordable(message: str) -> ActionResult:
    """The failure recorded for an attempt whose parameters or outputs cannot be stored."""
    return ActionResult.failed(
        "unrecordable_result", f"the compensation's parameters or outputs could not be stored: {message}"[:2000]
    )

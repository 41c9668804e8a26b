"""What an attempt's result means for its node: decided here, written elsewhere. Pure module.

`decide` takes a node's policy (its plan node: retry policy, edges, route policy), the attempt's
result and the retry budget, and returns a Decision: the node's verdict (succeeded, retry at a
time, failed and handled by a failure/always edge, failed with nothing to handle it), the attempt
status to record, the error, and which outgoing edges fire. Edge conditions are evaluated by the
evaluator passed in (the sandboxed ConditionPool at run time, a fake in tests); a condition that
throws does not fire its edge and is reported in `condition_errors`; one that times out fails the
node (success path) or leaves every edge unfired (failure path); one that no helper could evaluate
(ConditionUnavailable: the worker's trouble, not the condition's) raises, once it waited a moment
for one (UNAVAILABLE_PAUSES), and decides nothing. The runtime writes a Decision with one fenced
call (dw.record_attempt_v6, whose p_outcome is a Verdict value).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import msgspec

from dataworkflows.actions import ActionResult
from dataworkflows.conditions import ConditionError, ConditionTimeout, ConditionUnavailable
from dataworkflows.definitions import EdgeWhen, RoutePolicy
from dataworkflows.planning import PlanNode
from dataworkflows.retry import backoff_seconds
from dataworkflows.statuses import AttemptStatus, Verdict


class ConditionEvaluator(Protocol):
    async def evaluate(self, expr: str, scope: dict[str, Any]) -> bool: ...


@dataclass(frozen=True)
class ConditionFailure:
    """A condition that threw: its edge did not fire; the run's log records why."""

    target: str
    condition: str
    message: str


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    attempt_status: AttemptStatus
    error: dict[str, Any] | None
    # One entry per outgoing edge, in order; empty when the edges stay undecided (retry, or an
    # unhandled failure, so that a redrive resumes exactly there).
    fired: tuple[bool, ...] = ()
    retry_at: datetime | None = None
    retry_delay: float = 0.0
    condition_errors: tuple[ConditionFailure, ...] = field(default_factory=tuple)


def error_json(result: ActionResult) -> dict[str, Any] | None:
    if result.error is None:
        return None
    data = msgspec.to_builtins(result.error)
    assert isinstance(data, dict)
    return data


def retries_left(node: PlanNode, attempt: int, attempt_base: int) -> bool:
    """Whether the node may try again after `attempt`. A redrive sets attempt_base to the attempts
    made before it, so the node gets a fresh budget of retry.max_attempts."""
    return attempt - attempt_base < node.retry.max_attempts


async def decide(
    node: PlanNode,
    result: ActionResult,
    *,
    attempt: int,
    attempt_base: int,
    ended_at: datetime,
    scope: Mapping[str, Any],
    conditions: ConditionEvaluator,
) -> Decision:
    """The node's next state after this attempt, and the edges that fire. `scope` is what
    conditions see (trigger, nodes, execution); on success they also see this node's outputs."""
    edges = _EdgeDecider(node, scope, conditions)
    if result.status == AttemptStatus.SUCCEEDED:
        return await _succeeded(node, result, edges)
    if result.status in (AttemptStatus.RETRIABLE_FAILURE, AttemptStatus.TIMED_OUT):
        if retries_left(node, attempt, attempt_base):
            retry_after = result.error.retry_after if result.error else None
            # Counted within the budget: interruptions and attempts before a redrive do not
            # lengthen the backoff.
            delay = backoff_seconds(node.retry, attempt - attempt_base, retry_after)
            return Decision(
                Verdict.RETRY,
                result.status,
                error_json(result),
                retry_at=ended_at + timedelta(seconds=delay),
                retry_delay=delay,
            )
        exhausted = {**(error_json(result) or {}), "attemptsExhausted": attempt - attempt_base}
        return await _failed(node, result.status, exhausted, edges)
    return await _failed(node, result.status, error_json(result), edges)


INTERRUPTED = "attempt_interrupted"
TOO_MANY_INTERRUPTIONS = "too_many_interruptions"


def interruption_error(
    interruptions: int, max_interruptions: int, *, what: str = "node", message: str | None = None
) -> tuple[bool, dict[str, Any]]:
    """The error an interrupted attempt of a node or a forEach item (`what`) is recorded with, and
    whether it is past DW_MAX_INTERRUPTIONS (too_many_interruptions: it fails) or goes again
    (attempt_interrupted, with `message` or the usual one). `interruptions` counts this one."""
    if interruptions > max_interruptions:
        return True, {
            "code": TOO_MANY_INTERRUPTIONS,
            "message": f"the {what}'s attempts were interrupted {interruptions} times (DW_MAX_INTERRUPTIONS is "
            f"{max_interruptions}): its worker keeps stopping or dying while it runs",
            "interruptions": interruptions,
        }
    message = message or "the worker running this attempt stopped before recording its outcome"
    return False, {"code": INTERRUPTED, "message": message, "interruptions": interruptions}


async def interrupted_decision(
    node: PlanNode,
    *,
    interruptions: int,
    max_interruptions: int,
    ended_at: datetime,
    scope: Mapping[str, Any],
    conditions: ConditionEvaluator,
) -> Decision:
    """An attempt its worker cut short (handed back after the grace period, or lost with a killed
    worker): the node goes again at once and the retry budget is untouched (the record moves the
    node's attempt_base past it). `interruptions` counts this one; past max_interruptions the node
    fails with too_many_interruptions, decided like any failure (a failure edge may take it), so
    an attempt that keeps killing its worker still ends."""
    exceeded, error = interruption_error(interruptions, max_interruptions)
    if exceeded:
        return await _failed(node, AttemptStatus.FAILED, error, _EdgeDecider(node, scope, conditions))
    return Decision(Verdict.RETRY, AttemptStatus.RETRIABLE_FAILURE, error, retry_at=ended_at, retry_delay=0.0)


async def _succeeded(node: PlanNode, result: ActionResult, edges: _EdgeDecider) -> Decision:
    try:
        fired = await edges.decide(succeeded=True, outputs=result.outputs)
    except ConditionTimeout as exc:
        # The node fails: its failure/always edges are decided like any failure's.
        return await _failed(node, AttemptStatus.FAILED, {"code": exc.code, "message": exc.message}, edges)
    return Decision(Verdict.SUCCEEDED, result.status, error_json(result), fired, condition_errors=edges.errors)


async def _failed(node: PlanNode, status: AttemptStatus, error: dict[str, Any] | None, edges: _EdgeDecider) -> Decision:
    # A condition that times out here does not fire its edge, and the node's other edges are decided as
    # they would be: an unconditioned failure or always edge beside it still takes the failure (a
    # review: it fired nothing, so the handler was Skipped and the run failed unhandled).
    fired = await edges.decide(succeeded=False, error=error, timeouts_fire_nothing=False)
    if edges.timed_out is not None:
        error = {**(error or {}), "conditionError": {"code": edges.timed_out.code, "message": edges.timed_out.message}}
    handled = any(f and e.when in (EdgeWhen.FAILURE, EdgeWhen.ALWAYS) for f, e in zip(fired, node.edges, strict=True))
    if not handled:
        return Decision(Verdict.FAILED_UNHANDLED, status, error, condition_errors=edges.errors)
    return Decision(Verdict.FAILED_HANDLED, status, error, fired, condition_errors=edges.errors)


class _EdgeDecider:
    """Evaluates a node's outgoing edges in order, remembering conditions that threw."""

    def __init__(self, node: PlanNode, scope: Mapping[str, Any], conditions: ConditionEvaluator) -> None:
        self.node = node
        self.scope = scope
        self.conditions = conditions
        self.errors: tuple[ConditionFailure, ...] = ()
        # The first condition that timed out, when decide() was told to go on past it.
        self.timed_out: ConditionTimeout | None = None

    async def decide(
        self,
        *,
        succeeded: bool,
        outputs: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        timeouts_fire_nothing: bool = True,
    ) -> tuple[bool, ...]:
        """Which edges fire, in order. A condition that times out raises ConditionTimeout, unless
        `timeouts_fire_nothing` is false: then its edge does not fire, the others are decided, and the
        timeout is kept in `timed_out`."""
        fired: list[bool] = []
        matched = False
        scope: dict[str, Any] | None = None
        for edge in self.node.edges:
            ok = edge.when == EdgeWhen.ALWAYS or (edge.when == EdgeWhen.SUCCESS) == succeeded
            if ok and matched and self.node.route_policy == RoutePolicy.FIRST_MATCH:
                ok = False
            if ok and edge.condition is not None:
                if scope is None:
                    scope = self._scope(outputs, error)
                ok = await self._evaluate_or_not(edge.target, edge.condition, scope, timeouts_fire_nothing)
            matched = matched or ok
            fired.append(ok)
        return tuple(fired)

    def _scope(self, outputs: dict[str, Any] | None, error: dict[str, Any] | None) -> dict[str, Any]:
        # The node's own outputs (or its error, when it failed) are visible to the conditions of its
        # edges: a failure edge may route by the error's code.
        scope = dict(self.scope)
        if outputs is not None:
            scope["nodes"] = {**self.scope.get("nodes", {}), self.node.id: outputs}
        if error is not None:
            scope["errors"] = {**self.scope.get("errors", {}), self.node.id: error}
        return scope

    async def _evaluate_or_not(self, target: str, condition: str, scope: dict[str, Any], raise_timeout: bool) -> bool:
        try:
            return await self._evaluate(target, condition, scope)
        except ConditionTimeout as exc:
            if raise_timeout:
                raise
            self.timed_out = self.timed_out or exc
            return False

    async def _evaluate(self, target: str, condition: str, scope: dict[str, Any]) -> bool:
        for pause in UNAVAILABLE_PAUSES:
            try:
                return await self._evaluate_once(target, condition, scope)
            except ConditionUnavailable:
                await asyncio.sleep(pause)
        return await self._evaluate_once(target, condition, scope)

    async def _evaluate_once(self, target: str, condition: str, scope: dict[str, Any]) -> bool:
        try:
            return await self.conditions.evaluate(condition, scope)
        except ConditionTimeout:
            raise
        except ConditionError as exc:
            self.errors = (*self.errors, ConditionFailure(target, condition, exc.message))
            return False


# How long an edge's condition waits, in turn, for a sandbox helper that could not be started (the
# process or file limit reached for a moment) before it gives up with ConditionUnavailable. Given up,
# the node's attempt, which is over (its action's call made), is recorded as interrupted once the
# run's lease runs out, and the node runs again: a review saw an action run twice for one refused fork.
UNAVAILABLE_PAUSES = (0.1, 0.5, 2.0)

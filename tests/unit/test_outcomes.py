"""Routing and retry rules, decided without a database (dataworkflows.outcomes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dataworkflows.actions import ActionResult
from dataworkflows.conditions import ConditionError, ConditionTimeout
from dataworkflows.definitions import EdgeWhen, RoutePolicy
from dataworkflows.outcomes import Decision, decide
from dataworkflows.planning import PlanEdge, PlanNode, PlanRetry
from dataworkflows.statuses import AttemptStatus, NodeStatus, Verdict

ENDED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SCOPE: dict[str, Any] = {"trigger": {"n": 2}, "nodes": {"earlier": {"x": 1}}, "execution": {"id": "e"}}


class FakeConditions:
    """Conditions by their source text: True/False, or "error"/"timeout" to raise."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = answers or {}
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def evaluate(self, expr: str, scope: dict[str, Any]) -> bool:
        self.seen.append((expr, scope))
        answer = self.answers.get(expr, True)
        if answer == "error":
            raise ConditionError("TypeError: x is undefined")
        if answer == "timeout":
            raise ConditionTimeout("condition ran longer than 1s and was stopped")
        return bool(answer)


def node(
    *edges: PlanEdge, max_attempts: int = 3, route: RoutePolicy = RoutePolicy.PARALLEL, node_id: str = "n"
) -> PlanNode:
    retry = PlanRetry(
        max_attempts=max_attempts,
        initial_delay_seconds=1.0,
        backoff_multiplier=2.0,
        max_delay_seconds=60.0,
        jitter=False,
    )
    return PlanNode(
        id=node_id,
        action_type="core.echo",
        parameters={},
        incoming=0,
        edges=tuple(edges),
        timeout_seconds=10.0,
        retry=retry,
        route_policy=route,
        rerender_on_retry=False,
    )


def edge(target: str, when: EdgeWhen = EdgeWhen.SUCCESS, condition: str | None = None) -> PlanEdge:
    return PlanEdge(target=target, when=when, condition=condition)


async def run(
    plan_node: PlanNode,
    result: ActionResult,
    *,
    attempt: int = 1,
    attempt_base: int = 0,
    conditions: FakeConditions | None = None,
) -> Decision:
    return await decide(
        plan_node,
        result,
        attempt=attempt,
        attempt_base=attempt_base,
        ended_at=ENDED,
        scope=SCOPE,
        conditions=conditions or FakeConditions(),
    )


async def test_success_fires_success_and_always_edges() -> None:
    plan_node = node(edge("a"), edge("f", EdgeWhen.FAILURE), edge("z", EdgeWhen.ALWAYS))
    decision = await run(plan_node, ActionResult.succeeded({"echo": "hi"}))
    assert decision.verdict == Verdict.SUCCEEDED and decision.verdict.node_status == NodeStatus.SUCCEEDED
    assert decision.fired == (True, False, True)
    assert decision.attempt_status == AttemptStatus.SUCCEEDED and decision.retry_at is None


async def test_a_retriable_failure_retries_with_backoff_until_the_budget_is_spent() -> None:
    plan_node = node(edge("a"), max_attempts=3)
    first = await run(plan_node, ActionResult.retriable("busy", "try later"), attempt=1)
    assert (first.verdict, first.retry_delay, first.retry_at) == (Verdict.RETRY, 1.0, ENDED + timedelta(seconds=1))
    assert first.fired == () and first.verdict.node_status == NodeStatus.WAITING
    second = await run(plan_node, ActionResult.retriable("busy", "try later"), attempt=2)
    assert (second.verdict, second.retry_delay) == (Verdict.RETRY, 2.0)
    last = await run(plan_node, ActionResult.retriable("busy", "try later"), attempt=3)
    assert last.verdict == Verdict.FAILED_UNHANDLED
    assert last.error is not None and last.error["attemptsExhausted"] == 3 and last.error["code"] == "busy"


async def test_retry_after_wins_when_longer_and_timeouts_are_retried() -> None:
    plan_node = node(max_attempts=2)
    slow_down = await run(plan_node, ActionResult.retriable("rate_limited", "429", retry_after=7.5))
    assert slow_down.retry_delay == 7.5
    timed_out = ActionResult(AttemptStatus.TIMED_OUT)
    assert (await run(plan_node, timed_out)).verdict == Verdict.RETRY
    assert (await run(plan_node, timed_out, attempt=2)).verdict == Verdict.FAILED_UNHANDLED


async def test_a_redrive_gives_a_fresh_retry_budget() -> None:
    plan_node = node(max_attempts=2)
    # Attempts 1 and 2 failed before the redrive (attempt_base 2): attempts 3 and 4 are the new budget.
    assert (await run(plan_node, ActionResult.retriable("x", "y"), attempt=3, attempt_base=2)).verdict == Verdict.RETRY
    exhausted = await run(plan_node, ActionResult.retriable("x", "y"), attempt=4, attempt_base=2)
    assert exhausted.verdict == Verdict.FAILED_UNHANDLED and exhausted.error is not None
    assert exhausted.error["attemptsExhausted"] == 2


async def test_a_permanent_failure_is_not_retried() -> None:
    decision = await run(node(edge("a"), max_attempts=5), ActionResult.failed("bad", "no"))
    assert decision.verdict == Verdict.FAILED_UNHANDLED and decision.fired == ()
    assert decision.error is not None and (decision.error["code"], decision.error["message"]) == ("bad", "no")


async def test_failure_and_always_edges_handle_a_failure() -> None:
    handled = await run(node(edge("ok"), edge("recover", EdgeWhen.FAILURE)), ActionResult.failed("bad", "no"))
    assert handled.verdict == Verdict.FAILED_HANDLED and handled.fired == (False, True)
    always = await run(node(edge("ok"), edge("cleanup", EdgeWhen.ALWAYS)), ActionResult.failed("bad", "no"))
    assert always.verdict == Verdict.FAILED_HANDLED and always.fired == (False, True)
    # A failure edge whose condition is false does not handle it.
    conditions = FakeConditions({"trigger.n > 5": False})
    unhandled = await run(
        node(edge("recover", EdgeWhen.FAILURE, "trigger.n > 5")),
        ActionResult.failed("bad", "no"),
        conditions=conditions,
    )
    assert unhandled.verdict == Verdict.FAILED_UNHANDLED and unhandled.fired == ()


async def test_first_match_fires_only_the_first_satisfied_edge() -> None:
    conditions = FakeConditions({"a": False, "b": True, "c": True})
    plan_node = node(
        edge("x", condition="a"), edge("y", condition="b"), edge("z", condition="c"), route=RoutePolicy.FIRST_MATCH
    )
    decision = await run(plan_node, ActionResult.succeeded(), conditions=conditions)
    assert decision.fired == (False, True, False)
    # Once one matched, later conditions are not even evaluated.
    assert [expr for expr, _ in conditions.seen] == ["a", "b"]
    parallel = node(edge("x", condition="a"), edge("y", condition="b"), edge("z", condition="c"))
    assert (await run(parallel, ActionResult.succeeded(), conditions=conditions)).fired == (False, True, True)


async def test_conditions_see_the_nodes_own_outputs_on_success_only() -> None:
    conditions = FakeConditions()
    await run(node(edge("a", condition="nodes.n.v === 1")), ActionResult.succeeded({"v": 1}), conditions=conditions)
    assert conditions.seen[-1][1]["nodes"] == {"earlier": {"x": 1}, "n": {"v": 1}}
    assert SCOPE["nodes"] == {"earlier": {"x": 1}}, "the caller's scope is not changed"
    await run(node(edge("a", EdgeWhen.FAILURE, condition="true")), ActionResult.failed("x", "y"), conditions=conditions)
    assert conditions.seen[-1][1]["nodes"] == {"earlier": {"x": 1}}


async def test_a_condition_that_throws_does_not_fire_and_is_reported() -> None:
    conditions = FakeConditions({"broken": "error"})
    decision = await run(
        node(edge("a", condition="broken"), edge("b")), ActionResult.succeeded(), conditions=conditions
    )
    assert decision.verdict == Verdict.SUCCEEDED and decision.fired == (False, True)
    assert [(f.target, f.condition) for f in decision.condition_errors] == [("a", "broken")]
    assert "undefined" in decision.condition_errors[0].message


async def test_a_condition_timeout_on_success_fails_the_node_and_routes_the_failure() -> None:
    conditions = FakeConditions({"slow": "timeout"})
    plan_node = node(edge("a", condition="slow"), edge("recover", EdgeWhen.FAILURE))
    decision = await run(plan_node, ActionResult.succeeded({"v": 1}), conditions=conditions)
    assert decision.verdict == Verdict.FAILED_HANDLED and decision.fired == (False, True)
    assert decision.attempt_status == AttemptStatus.FAILED
    assert decision.error is not None and decision.error["code"] == "condition_timeout"


async def test_a_condition_timeout_on_the_failure_path_does_not_fire_its_edge() -> None:
    conditions = FakeConditions({"slow": "timeout"})
    plan_node = node(edge("recover", EdgeWhen.FAILURE, condition="slow"))
    decision = await run(plan_node, ActionResult.failed("bad", "no"), conditions=conditions)
    assert decision.verdict == Verdict.FAILED_UNHANDLED
    assert decision.error is not None and decision.error["conditionError"]["code"] == "condition_timeout"


@pytest.mark.parametrize("when", [EdgeWhen.FAILURE, EdgeWhen.ALWAYS])
async def test_a_condition_timeout_on_the_failure_path_leaves_the_other_handlers(when: EdgeWhen) -> None:
    """A review: a failed node's timed-out condition fired none of its edges, so an unconditioned failure
    (or always) handler beside it was Skipped and the run failed unhandled, while the same timeout on a
    success edge routed the failure. The timed-out edge does not fire; the others are decided."""
    conditions = FakeConditions({"slow": "timeout"})
    plan_node = node(edge("handler", when), edge("other", EdgeWhen.FAILURE, condition="slow"))
    decision = await run(plan_node, ActionResult.failed("bad", "no"), conditions=conditions)
    assert decision.verdict == Verdict.FAILED_HANDLED and decision.fired == (True, False)
    assert decision.error is not None and decision.error["code"] == "bad"
    assert decision.error["conditionError"]["code"] == "condition_timeout"
    # firstMatch: the timed-out edge matched nothing, so the next one may.
    first_match = node(
        edge("other", EdgeWhen.FAILURE, condition="slow"), edge("handler", when), route=RoutePolicy.FIRST_MATCH
    )
    decision = await run(first_match, ActionResult.failed("bad", "no"), conditions=conditions)
    assert decision.verdict == Verdict.FAILED_HANDLED and decision.fired == (False, True)


@pytest.mark.parametrize("status", [AttemptStatus.FAILED, AttemptStatus.RETRIABLE_FAILURE])
async def test_no_edges_means_an_unhandled_failure(status: AttemptStatus) -> None:
    result = ActionResult(status)
    decision = await run(node(max_attempts=1), result)
    assert decision.verdict == Verdict.FAILED_UNHANDLED


def test_the_verdicts_are_the_outcomes_record_attempt_accepts() -> None:
    """The procedure maps p_outcome to a node status itself: both sides must name the same four."""
    from dataworkflows.sqlfiles import load_procedures

    source = "\n".join(text for _, text in load_procedures())
    body = source[source.index("FUNCTION dw.record_attempt_v6") :]
    body = body[: body.index("$$;")]
    for verdict in Verdict:
        assert f"WHEN '{verdict.value}' THEN '{verdict.node_status.value}'" in body, verdict


def test_the_run_task_name_is_spelled_once_in_sql_and_python() -> None:
    from dataworkflows.sqlfiles import load_procedures
    from dataworkflows.workers.app import RUN_EXECUTION_TASK

    source = "\n".join(text for _, text in load_procedures())
    defer = source[source.index("FUNCTION dw.defer_run_job_v1") :]
    assert f"p_queue, '{RUN_EXECUTION_TASK}'" in defer[: defer.index("$$;")]

"""Compiles a validated definition into the plan workers run: node order, incoming edge counts,
edges (implicit list-order edges made explicit), timeouts and retry policies in seconds.

Compiled once at publish time and stored in dw.workflow_plans; workers cache it by
(workflow, version) and never recompile. Pure module.
"""

from __future__ import annotations

from typing import Any

import msgspec

from dataworkflows.definitions import (
    EdgeWhen,
    RetryPolicy,
    RoutePolicy,
    WorkflowDefinition,
    parse_duration,
)

PLAN_FORMAT = 1


class PlanRetry(msgspec.Struct, frozen=True, rename="camel"):
    max_attempts: int
    initial_delay_seconds: float
    backoff_multiplier: float
    max_delay_seconds: float
    jitter: bool


class PlanEdge(msgspec.Struct, frozen=True, rename="camel"):
    target: str
    when: EdgeWhen
    condition: str | None = None


class PlanNode(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    action_type: str
    parameters: dict[str, Any]
    incoming: int
    edges: tuple[PlanEdge, ...]
    timeout_seconds: float
    retry: PlanRetry
    route_policy: RoutePolicy
    rerender_on_retry: bool
    # The node kind that runs it (dataworkflows.node_kinds); plans compiled before kinds existed
    # hold only actions.
    kind: str = "action"


class Plan(msgspec.Struct, frozen=True, rename="camel"):
    format: int
    workflow_id: str
    version: int
    start_node: str
    max_parallel_actions: int
    workflow_timeout_seconds: float | None
    implicit_order: bool
    nodes: tuple[PlanNode, ...]
    # The definition's `outputs` templates (plans compiled before they existed have none).
    outputs: dict[str, Any] | None = None


def _retry(policy: RetryPolicy) -> PlanRetry:
    return PlanRetry(
        max_attempts=policy.max_attempts,
        initial_delay_seconds=parse_duration(policy.initial_delay),
        backoff_multiplier=policy.backoff_multiplier,
        max_delay_seconds=parse_duration(policy.max_delay),
        jitter=policy.jitter,
    )


def compile_plan(definition: WorkflowDefinition, version: int) -> Plan:
    """The plan for a definition that passed validation."""
    orchestration = definition.orchestration
    default_retry = orchestration.retry_policy or RetryPolicy()
    default_timeout = parse_duration(orchestration.default_action_timeout)
    implicit = not definition.has_edges

    edges_of: dict[str, tuple[PlanEdge, ...]] = {}
    if implicit:
        for current, following in zip(definition.nodes, definition.nodes[1:], strict=False):
            edges_of[current.id] = (PlanEdge(target=following.id, when=EdgeWhen.SUCCESS),)
    else:
        for node in definition.nodes:
            edges_of[node.id] = tuple(
                PlanEdge(target=e.target_node, when=e.when, condition=e.condition) for e in node.edges
            )

    incoming = {node.id: 0 for node in definition.nodes}
    for edges in edges_of.values():
        for edge in edges:
            incoming[edge.target] += 1

    nodes = tuple(
        PlanNode(
            id=node.id,
            # Other kinds are named by their kind (node_states.action_type, metrics labels).
            action_type=node.action_type or node.node_type.value,
            parameters=node.parameters,
            incoming=incoming[node.id],
            edges=edges_of.get(node.id, ()),
            timeout_seconds=parse_duration(node.timeout) if node.timeout else default_timeout,
            retry=_retry(node.retry_policy or default_retry),
            route_policy=node.route_policy,
            rerender_on_retry=node.rerender_on_retry,
            kind=node.node_type.value,
        )
        for node in definition.nodes
    )
    return Plan(
        format=PLAN_FORMAT,
        workflow_id=definition.id,
        version=version,
        start_node=definition.start_node,
        max_parallel_actions=orchestration.max_parallel_actions,
        workflow_timeout_seconds=(
            parse_duration(orchestration.workflow_timeout) if orchestration.workflow_timeout else None
        ),
        implicit_order=implicit,
        nodes=nodes,
        outputs=definition.outputs,
    )


def plan_to_json(plan: Plan) -> dict[str, Any]:
    data = msgspec.to_builtins(plan)
    assert isinstance(data, dict)
    return data


def plan_from_json(data: Any) -> Plan:
    return msgspec.convert(data, Plan)

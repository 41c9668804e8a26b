"""Compiles a validated definition into the plan workers run: node order, incoming edge counts,
edges (implicit list-order edges made explicit), timeouts and retry policies in seconds.

Compiled once at publish time and stored in dw.workflow_plans; workers cache it by
(workflow, version) and never recompile. Pure module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec

from dataworkflows.definitions import (
    COMPENSATE_ON,
    Compensation,
    EdgeWhen,
    NodeType,
    RetryPolicy,
    RoutePolicy,
    WorkflowDefinition,
    parse_duration,
)
from dataworkflows.templating import SCOPE_METHOD_NAMES, has_template

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


class PlanCompensation(msgspec.Struct, frozen=True, rename="camel"):
    """A node's compensating action (definitions.Compensation), its timeout and retries resolved."""

    action_type: str
    parameters: dict[str, Any]
    timeout_seconds: float
    retry: PlanRetry


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
    # Whether anything in the run can read this node's outputs (see outputs_read): if not, its
    # worker neither loads nor keeps them. Plans compiled before it existed: every node's.
    outputs_used: bool = True
    # What undoes its effect when the run does not succeed (None: nothing).
    compensation: PlanCompensation | None = None


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
    # Its runs' priority when a start gives none (orchestration.priority; read by
    # dw.start_run_v1). Plans compiled before it existed have none: 0.
    priority: int | None = None
    # The ends of a run (Failed, TimedOut, Cancelled) after which its Succeeded nodes' compensations
    # run, last to succeed first, and its succeeded children's compensations
    # (dw.publish_workflow_v1 stores it beside the plan, for the run's end to read:
    # workflow_plans.compensate_on). None when no node has one and the definition names none: the
    # run's end then looks only for succeeded children.
    compensate_on: tuple[str, ...] | None = None


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

    read = outputs_read(definition)
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
            outputs_used=read is None or node.id in read,
            compensation=_compensation(node.compensation, default_retry, default_timeout),
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
        priority=orchestration.priority,
        compensate_on=_compensate_on(definition),
    )


def _compensate_on(definition: WorkflowDefinition) -> tuple[str, ...] | None:
    """The ends of a run that compensate: None when no node has a compensation and the definition
    names none (its run's end then undoes its succeeded children, if any, on all three ends: their
    own plans say what they undo). A compensateOn named without a compensation of its own governs
    the children (`[]`: they are not undone either)."""
    chosen = definition.orchestration.compensate_on
    if chosen is not None:
        return chosen
    if all(node.compensation is None for node in definition.nodes):
        return None
    return COMPENSATE_ON


def _compensation(
    compensation: Compensation | None, default_retry: RetryPolicy, default_timeout: float
) -> PlanCompensation | None:
    if compensation is None:
        return None
    return PlanCompensation(
        action_type=compensation.action_type,
        parameters=compensation.parameters,
        timeout_seconds=parse_duration(compensation.timeout) if compensation.timeout else default_timeout,
        retry=_retry(compensation.retry_policy or default_retry),
    )


# `nodes` as a word (also as a property, `globalThis.nodes`: over-counting is safe), then how it is
# read: `.name` (not a method call), `["name"]` / `['name']`, or `.get("name")`, the name alone
# between the brackets. Anything else (`nodes[key]`, `nodes['a' + b]`, `nodes?.a`, `nodes.items()`,
# `nodes | tojson`, `Object.keys(nodes)`, or the word in plain text) may read any node, and so may a
# name of one of the mapping's own methods (`nodes.values`, `nodes['valueOf']`:
# templating.SCOPE_METHOD_NAMES).
_NODES = re.compile(r"(?<![\w$])nodes(?![\w$])")
_ATTRIBUTE = re.compile(r"\s*\.\s*([A-Za-z_$][\w$]*)(?![\w$])(?!\s*\()")
_ITEM = re.compile(r"""\s*(?P<open>\[|\.\s*get\s*\()\s*(?P<q>['"])(?P<name>(?:(?!(?P=q))[^\\])*)(?P=q)\s*[\])]""")


# Ways into the scope of a JavaScript condition or expression that do not spell `nodes`: the
# sandbox's wrapper variables, eval, and escapes that can spell it (dataworkflows.condition_sandbox).
_DYNAMIC = re.compile(r"__|dukpy|\beval\b|\bFunction\b|\\[ux]")


def outputs_read(definition: WorkflowDefinition) -> set[str] | None:
    """The nodes whose outputs a template, condition or expression of the definition can read (its
    nodes' parameter templates, a transform's expression, its edges' conditions, its outputs), or
    None when one may read any node's. A conservative reading of the text: a node that is named is
    read, and a use of `nodes` that does not name one (a variable key, the whole object) or a way
    into the scope that does not spell it reads every node's."""
    names: set[str] = set()
    for text in _texts(definition):
        if _DYNAMIC.search(text):
            return None
        for found in _NODES.finditer(text):
            rest = text[found.end() :]
            item = _ITEM.match(rest)
            attribute = None if item else _ATTRIBUTE.match(rest)
            if item is not None:
                name = item.group("name")
                # `nodes['items']`, `nodes['valueOf']`: a method of the mapping, which reaches every
                # node (templating.SCOPE_METHOD_NAMES); `nodes.get('items')` names a node.
                if item.group("open") == "[" and name in SCOPE_METHOD_NAMES:
                    return None
                names.add(name)
            elif attribute is not None and attribute.group(1) not in SCOPE_METHOD_NAMES:
                names.add(attribute.group(1))
            else:
                return None
    return names


def _texts(definition: WorkflowDefinition) -> Iterator[str]:
    """What is evaluated against the run's scope: templates (plain text is not), a transform's
    JavaScript expression, edge conditions (JavaScript), compensations' templates."""
    for node in definition.nodes:
        for text in _strings(node.parameters):
            if node.node_type == NodeType.TRANSFORM or has_template(text):
                yield text
        for edge in node.edges:
            if edge.condition:
                yield edge.condition
        if node.compensation is not None:
            yield from (text for text in _strings(node.compensation.parameters) if has_template(text))
    yield from (text for text in _strings(definition.outputs) if has_template(text))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def plan_to_json(plan: Plan) -> dict[str, Any]:
    data = msgspec.to_builtins(plan)
    assert isinstance(data, dict)
    return data


def plan_from_json(data: Any) -> Plan:
    return msgspec.convert(data, Plan)

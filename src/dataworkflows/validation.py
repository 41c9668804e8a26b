"""Definition validation: every problem, each with a JSON pointer (RFC 6901).

The shape is checked on the raw JSON, before parsing, so one bad node does not hide the others;
ids, edges and the graph are checked on the parsed definition. Pure module.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from typing import Any, Union

import msgspec

from dataworkflows.definitions import (
    COMPENSATE_ON,
    Edge,
    Node,
    NodeType,
    RetryPolicy,
    WorkflowDefinition,
    parse_definition,
    parse_duration,
)
from dataworkflows.errors import HeaderRefused
from dataworkflows.foreach import check_parameters as check_foreach_parameters
from dataworkflows.json_depth import json_depth
from dataworkflows.json_text import json_type
from dataworkflows.principal_ids import has_unprintable_character as has_unprintable_character
from dataworkflows.priorities import MAX_RUN_PRIORITY, MIN_RUN_PRIORITY
from dataworkflows.rate_limits import MAX_CONCURRENT_EXECUTIONS, MAX_RATE_PER_MINUTE
from dataworkflows.subworkflows import check_parameters as check_subworkflow_parameters
from dataworkflows.templating import has_template
from dataworkflows.transforms import check_parameters as check_transform_parameters
from dataworkflows.waits import check_parameters as check_wait_parameters

# Workflow, node and template ids share one pattern. \Z, not $: "$" also matches before a
# trailing newline.
ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
ID_RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
MAX_NODES = 1000
MAX_DISPLAY_NAME = 200
MAX_EDGES_PER_NODE = 100
MAX_CONDITION_LENGTH = 4096
MAX_DEPTH = 64
MAX_DURATION_SECONDS = 366 * 86400


class Problem(msgspec.Struct, frozen=True):
    pointer: str
    code: str
    message: str


def pointer_escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def unknown_fields(value: dict[str, Any], known: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(pointer, code, message) for each key of an object that is not one of `known`."""
    return [
        (f"/{pointer_escape(key)}", "unknown_field", f"unknown field; expected one of {', '.join(known)}")
        for key in value
        if key not in known
    ]


def join_pointer(base: str, *tokens: str | int) -> str:
    return base + "".join("/" + pointer_escape(t) for t in tokens)


def has_control_character(text: str) -> bool:
    """Whether the text holds a control character (C0 with tab and line breaks, DEL, C1): never part
    of a name, a principal or a header value, and a line break in one would forge log lines."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)


def sent_text(value: str) -> str | None:
    """A request header's value as the client wrote it, or None when its bytes are not UTF-8 text.
    ASGI servers hand header bytes over decoded as latin-1, so UTF-8 arrives garbled (`José` as
    `JosÃ©`) and its continuation bytes 0x80-0x9F look like C1 control characters; encoding back to
    latin-1 gives the bytes that were sent."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


def header_text(name: str, value: str, most: int, *, strip: bool = False) -> str:
    """A header's value as the client wrote it, stripped of surrounding whitespace when asked, taken
    whole or refused (HeaderRefused, never cut): over `most` characters (not bytes), or holding a
    control, format or separator character. UTF-8 is read as UTF-8 (see sent_text); other bytes as
    latin-1, which is what browsers' fetch and most HTTP libraries send for characters up to U+00FF
    (`José` as the single byte 0xE9), and what every release read before."""
    text = sent_text(value) or value
    if strip:
        text = text.strip()
    if len(text) > most:
        raise HeaderRefused(f"{name} must be at most {most} characters (this one has {len(text)})")
    if has_unprintable_character(text):
        raise HeaderRefused(f"{name} must not contain control, invisible or line-separator characters")
    return text


def is_valid_id(value: Any) -> bool:
    """Whether a value is a string that ID_PATTERN accepts (a workflow, node or template id)."""
    return isinstance(value, str) and ID_PATTERN.match(value) is not None


# A hook to check a node's parameters for its action type: returns problems relative to the
# parameters object, or None when the action type is unknown.
ParameterChecker = Callable[[str, dict[str, Any], str], list[Problem] | None]
# A hook to check that a condition compiles: returns an error message or None.
ConditionChecker = Callable[[str], str | None]


def validate_definition(
    raw: Any,
    *,
    check_parameters: ParameterChecker | None = None,
    check_condition: ConditionChecker | None = None,
) -> list[Problem]:
    """All problems with a raw workflow definition; an empty list means it is valid."""
    problems: list[Problem] = []
    if json_depth(raw, MAX_DEPTH) > MAX_DEPTH:
        return [Problem("", "too_deep", f"the definition is nested deeper than {MAX_DEPTH} levels")]
    if not _check_struct(raw, WorkflowDefinition, "", problems):
        return problems
    if problems:
        # Structural problems make semantic checks unreliable (nodes may be missing ids),
        # but the per-node checks below still run where the shape allows.
        _semantic_checks_on_raw(raw, problems, check_parameters, check_condition)
        return _dedupe(problems)
    definition = parse_definition(raw)
    _semantic_checks(definition, problems, check_parameters, check_condition)
    return _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str, str]] = set()
    result = []
    for problem in problems:
        key = (problem.pointer, problem.code, problem.message)
        if key not in seen:
            seen.add(key)
            result.append(problem)
    return result


def _check_struct(raw: Any, cls: type[msgspec.Struct], pointer: str, problems: list[Problem]) -> bool:
    if not isinstance(raw, dict):
        problems.append(Problem(pointer or "", "type", f"must be a JSON object, not {json_type(raw)}"))
        return False
    fields = msgspec.structs.fields(cls)
    known = {f.encode_name: f for f in fields}
    for key in raw:
        if key not in known:
            expected = ", ".join(sorted(known))
            problems.append(
                Problem(
                    join_pointer(pointer, key), "unknown_field", f"unknown field {key!r} (expected one of: {expected})"
                )
            )
    for f in fields:
        if f.encode_name not in raw:
            if f.required:
                problems.append(Problem(join_pointer(pointer, f.encode_name), "required", "is required"))
            continue
        _check_value(raw[f.encode_name], f.type, join_pointer(pointer, f.encode_name), problems)
    return True


def _check_value(value: Any, tp: Any, pointer: str, problems: list[Problem]) -> None:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        _check_struct(value, tp, pointer, problems)
        return
    if _is_optional(tp):
        if value is None:
            return
        inner = _only_other_type(tp)
        if inner is not None:
            _check_value(value, inner, pointer, problems)
            return
    item_type = _struct_item_type(tp)
    if item_type is not None:
        _check_struct_items(value, item_type, pointer, problems)
        return
    try:
        msgspec.convert(value, tp)
    except msgspec.ValidationError as exc:
        problems.append(Problem(pointer, "type", _clean_msgspec_message(str(exc))))


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _only_other_type(tp: Any) -> Any:
    """The one type besides None in an optional type (`X | None`), or None when there are several."""
    rest = [a for a in typing.get_args(tp) if a is not type(None)]
    return rest[0] if len(rest) == 1 else None


def _struct_item_type(tp: Any) -> type[msgspec.Struct] | None:
    """The item type of a list or tuple of structs (checked item by item, for a pointer each)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) not in (tuple, list) or not args or not isinstance(tp, types.GenericAlias):
        return None
    item_type = args[0]
    if isinstance(item_type, type) and issubclass(item_type, msgspec.Struct):
        return item_type
    return None


def _check_struct_items(value: Any, item_type: type[msgspec.Struct], pointer: str, problems: list[Problem]) -> None:
    if not isinstance(value, list):
        problems.append(Problem(pointer, "type", f"must be a JSON array, not {json_type(value)}"))
        return
    for index, item in enumerate(value):
        _check_struct(item, item_type, join_pointer(pointer, index), problems)


def _clean_msgspec_message(message: str) -> str:
    return message.replace("`", "").split(" - at ")[0]


def _semantic_checks_on_raw(
    raw: dict[str, Any],
    problems: list[Problem],
    check_parameters: ParameterChecker | None,
    check_condition: ConditionChecker | None,
) -> None:
    """Best-effort checks for definitions that are not well-formed: each well-formed node still
    gets its action, parameter and condition checks so the report is complete."""
    nodes = raw.get("nodes")
    if not isinstance(nodes, list):
        return
    for index, node_raw in enumerate(nodes):
        try:
            node = msgspec.convert(node_raw, Node)
        except msgspec.ValidationError:
            continue
        _check_node_local(node, f"/nodes/{index}", problems, check_parameters, check_condition)


def _semantic_checks(
    definition: WorkflowDefinition,
    problems: list[Problem],
    check_parameters: ParameterChecker | None,
    check_condition: ConditionChecker | None,
) -> None:
    _check_workflow_fields(definition, problems)
    if not definition.nodes:
        problems.append(Problem("/nodes", "required", "must contain at least one node"))
        return
    if len(definition.nodes) > MAX_NODES:
        problems.append(Problem("/nodes", "too_many", f"at most {MAX_NODES} nodes are allowed"))
    index_of = _check_nodes(definition, problems, check_parameters, check_condition)
    if definition.start_node not in index_of:
        problems.append(Problem("/startNode", "unknown_node", f"start node {definition.start_node!r} is not a node id"))
    for index, node in enumerate(definition.nodes):
        _check_edge_targets(node, f"/nodes/{index}", index_of, problems)
    _check_graph(definition, index_of, problems)
    _check_orchestration(definition, problems)
    _check_delays_within_timeout(definition, problems)


def _check_delays_within_timeout(definition: WorkflowDefinition, problems: list[Problem]) -> None:
    """A wait's literal time not shorter than the definition's own workflowTimeout: a delay's
    duration (every run that reaches it would time out there), a signal's or an approval's timeout
    (its timeout, and the failure edge that routes it, could never come: the run times out first),
    an approval's escalation.after (its escalation would never come). Its deadline counts from the
    run's start. Not checked against the server's default deadline, which a definition without one
    gets as a root run but not as a child (its parent's), nor for a templated value or an `until`."""
    written = definition.orchestration.workflow_timeout
    if written is None:
        return
    try:
        limit = parse_duration(written)
    except ValueError:
        return  # reported as /orchestration/workflowTimeout
    for index, node in enumerate(definition.nodes):
        for pointer, value, what in _wait_times(node):
            if not isinstance(value, str) or "{{" in value or "{%" in value:
                continue
            try:
                seconds = parse_duration(value)
            except ValueError:
                continue  # reported with the node's parameters
            if seconds >= limit:
                problems.append(
                    Problem(
                        f"/nodes/{index}/parameters/{pointer}",
                        "exceeds_timeout",
                        f"the {what} ({value}) is not shorter than orchestration.workflowTimeout ({written}): "
                        + _NEVER[what],
                    )
                )


# What a wait's time past the run's deadline means (the problem's message).
_NEVER = {
    "delay": "every run that reaches it would time out there",
    "timeout": "the run would time out first, and the wait's timeout (and its failure edge) never come",
    "escalation": "the run would time out first, and its escalation never come",
}


def _wait_times(node: Node) -> list[tuple[str, Any, str]]:
    """(pointer under parameters, value, what) of a waiting node's literal times."""
    parameters = node.parameters
    if node.node_type == NodeType.DELAY:
        return [("duration", parameters.get("duration"), "delay")]
    if node.node_type not in (NodeType.SIGNAL, NodeType.APPROVAL):
        return []
    times = [("timeout", parameters.get("timeout"), "timeout")]
    escalation = parameters.get("escalation")
    if node.node_type == NodeType.APPROVAL and isinstance(escalation, dict):
        times.append(("escalation/after", escalation.get("after"), "escalation"))
    return times


def _check_workflow_fields(definition: WorkflowDefinition, problems: list[Problem]) -> None:
    if not ID_PATTERN.match(definition.id):
        problems.append(Problem("/id", "format", f"must be {ID_RULE}"))
    if not definition.display_name.strip():
        problems.append(Problem("/displayName", "required", "must not be empty"))
    elif len(definition.display_name) > MAX_DISPLAY_NAME:
        # It had no limit (100,000 characters were taken), and every list and page shows it.
        problems.append(
            Problem(
                "/displayName",
                "too_long",
                f"at most {MAX_DISPLAY_NAME} characters (it has {len(definition.display_name)})",
            )
        )


def _check_nodes(
    definition: WorkflowDefinition,
    problems: list[Problem],
    check_parameters: ParameterChecker | None,
    check_condition: ConditionChecker | None,
) -> dict[str, int]:
    """Each node's id and its own fields; returns the index of each node id's first use."""
    index_of: dict[str, int] = {}
    for index, node in enumerate(definition.nodes):
        if node.id in index_of:
            problems.append(
                Problem(
                    f"/nodes/{index}/id",
                    "duplicate",
                    f"node id {node.id!r} is already used by /nodes/{index_of[node.id]}",
                )
            )
        else:
            index_of[node.id] = index
        if not ID_PATTERN.match(node.id):
            problems.append(Problem(f"/nodes/{index}/id", "format", f"must be {ID_RULE}"))
        _check_node_local(node, f"/nodes/{index}", problems, check_parameters, check_condition)
    return index_of


def _check_edge_targets(node: Node, pointer: str, index_of: dict[str, int], problems: list[Problem]) -> None:
    if len(node.edges) > MAX_EDGES_PER_NODE:
        problems.append(Problem(f"{pointer}/edges", "too_many", f"at most {MAX_EDGES_PER_NODE} edges"))
    targets: set[str] = set()
    for edge_index, edge in enumerate(node.edges):
        target_pointer = f"{pointer}/edges/{edge_index}/targetNode"
        if edge.target_node not in index_of:
            problems.append(
                Problem(target_pointer, "unknown_node", f"edge target {edge.target_node!r} is not a node id")
            )
        elif edge.target_node == node.id:
            problems.append(Problem(target_pointer, "cycle", f"node {node.id!r} has an edge to itself"))
        if edge.target_node in targets:
            problems.append(
                Problem(target_pointer, "duplicate", f"node {node.id!r} already has an edge to {edge.target_node!r}")
            )
        targets.add(edge.target_node)


def _check_graph(definition: WorkflowDefinition, index_of: dict[str, int], problems: list[Problem]) -> None:
    """Order, cycles, the start node's incoming edges and reachability."""
    if not definition.has_edges:
        _check_list_order(definition, index_of, problems)
        return
    # An edge to a node that does not exist leaves no graph to reason about.
    if any(p.code == "unknown_node" for p in problems):
        return
    cycle = find_cycle(definition)
    if cycle:
        problems.append(Problem("/nodes", "cycle", "the graph has a cycle: " + " -> ".join(cycle)))
    elif definition.start_node in index_of:
        _check_start_has_no_incoming_edges(definition, problems)
        _check_reachable(definition, problems)


def _check_list_order(definition: WorkflowDefinition, index_of: dict[str, int], problems: list[Problem]) -> None:
    # Seeds' bundles 1-2: no edges at all means "run the nodes in list order".
    if definition.nodes and definition.start_node in index_of and definition.nodes[0].id != definition.start_node:
        problems.append(
            Problem(
                "/startNode",
                "order",
                "a workflow without edges runs its nodes in list order, so startNode must be the first node",
            )
        )


def _check_start_has_no_incoming_edges(definition: WorkflowDefinition, problems: list[Problem]) -> None:
    if any(edge.target_node == definition.start_node for node in definition.nodes for edge in node.edges):
        problems.append(Problem("/startNode", "start_has_incoming", "the start node must have no incoming edges"))


def _check_reachable(definition: WorkflowDefinition, problems: list[Problem]) -> None:
    reachable = reachable_from(definition, definition.start_node)
    for index, node in enumerate(definition.nodes):
        if node.id not in reachable:
            problems.append(
                Problem(f"/nodes/{index}", "unreachable", f"node {node.id!r} is not reachable from the start node")
            )


def _check_node_local(
    node: Node,
    pointer: str,
    problems: list[Problem],
    check_parameters: ParameterChecker | None,
    check_condition: ConditionChecker | None,
) -> None:
    if node.timeout is not None:
        _check_duration(node.timeout, f"{pointer}/timeout", problems, positive=True)
    if node.retry_policy is not None:
        _check_retry_policy(node.retry_policy, f"{pointer}/retryPolicy", problems)
    if node.node_type != NodeType.ACTION:
        _check_kind(node, pointer, problems, check_parameters, check_condition)
    elif not node.action_type:
        problems.append(Problem(f"{pointer}/actionType", "required", "an action node needs an actionType"))
    elif check_parameters is not None:
        found = check_parameters(node.action_type, node.parameters, f"{pointer}/parameters")
        if found is None:
            problems.append(
                Problem(f"{pointer}/actionType", "unknown_action_type", f"unknown action type {node.action_type!r}")
            )
        else:
            problems.extend(found)
    for edge_index, edge in enumerate(node.edges):
        _check_edge(edge, f"{pointer}/edges/{edge_index}", problems, check_condition)
    if node.compensation is not None:
        _check_compensation(node, f"{pointer}/compensation", problems, check_parameters)


def _check_compensation(
    node: Node, pointer: str, problems: list[Problem], check_parameters: ParameterChecker | None
) -> None:
    """An action node's compensation: a known action with parameters it accepts, its own timeout and
    retry policy. Other kinds have none: a wait, a transform or a subworkflow has no effect of its own
    to undo (a subworkflow's child compensates its own nodes), and a forEach's items would need one
    each."""
    compensation = node.compensation
    assert compensation is not None
    if node.node_type != NodeType.ACTION:
        kind = _a_node_of(str(node.node_type))
        problems.append(
            Problem(pointer, "not_allowed", f"only an action node has a compensation, and this is {kind}; remove it")
        )
        return
    if compensation.timeout is not None:
        _check_duration(compensation.timeout, f"{pointer}/timeout", problems, positive=True)
    if compensation.retry_policy is not None:
        _check_retry_policy(compensation.retry_policy, f"{pointer}/retryPolicy", problems)
    if not compensation.action_type:
        problems.append(Problem(f"{pointer}/actionType", "required", "a compensation needs an actionType"))
    elif check_parameters is not None:
        found = check_parameters(compensation.action_type, compensation.parameters, f"{pointer}/parameters")
        if found is None:
            problems.append(
                Problem(
                    f"{pointer}/actionType", "unknown_action_type", f"unknown action type {compensation.action_type!r}"
                )
            )
        else:
            problems.extend(found)


def _what_bounds(node: Node) -> str | None:
    """What bounds the time a node of another kind than action takes, where its node `timeout` would
    be ignored (None: it runs an action per item, which the timeout bounds)."""
    if node.node_type == NodeType.DELAY:
        return "it waits its duration (or until its time)"
    if node.node_type in (NodeType.SIGNAL, NodeType.APPROVAL):
        return "its wait ends after parameters.timeout"
    if node.node_type == NodeType.TRANSFORM:
        return "its expression's time limit is parameters.timeout"
    if node.node_type == NodeType.SUBWORKFLOW or (
        node.node_type == NodeType.FOR_EACH and node.parameters.get("action") is None
    ):
        return "it waits for its children, whose workflowTimeout (or the parent's deadline) bounds them"
    return None


def _check_kind(
    node: Node,
    pointer: str,
    problems: list[Problem],
    check_parameters: ParameterChecker | None,
    check_condition: ConditionChecker | None,
) -> None:
    """A node of another kind than action: no actionType, no timeout unless it runs an action per item,
    and parameters its kind accepts."""
    kind = _a_node_of(str(node.node_type))
    if node.action_type:
        problems.append(Problem(f"{pointer}/actionType", "not_allowed", f"{kind} has no actionType; remove it"))
    bounded_by = _what_bounds(node)
    if node.timeout is not None and bounded_by is not None:
        problems.append(
            Problem(
                f"{pointer}/timeout",
                "not_allowed",
                f"a node's timeout bounds an action's attempt, and {kind} runs none: {bounded_by}; remove timeout",
            )
        )
    if node.node_type == NodeType.TRANSFORM:
        found = check_transform_parameters(node.parameters)
        expression = node.parameters.get("expression")
        if not found and check_condition is not None and isinstance(expression, str):
            error = check_condition(expression)
            if error is not None:
                found.append(("/expression", "expression_syntax", error))
    elif node.node_type == NodeType.SUBWORKFLOW:
        found = check_subworkflow_parameters(node.parameters)
    elif node.node_type == NodeType.FOR_EACH:
        found = check_foreach_parameters(node.parameters)
        if not found and check_parameters is not None and node.parameters.get("action") is not None:
            found = _check_item_action(node.parameters["action"], f"{pointer}/parameters/action", check_parameters)
    else:
        found = check_wait_parameters(node.node_type, node.parameters)
    for relative, code, message in found:
        problems.append(Problem(f"{pointer}/parameters{relative}", code, message))


def _check_item_action(
    action: dict[str, Any], pointer: str, check_parameters: ParameterChecker
) -> list[tuple[str, str, str]]:
    """A forEach's item action: a known action type whose parameters it accepts (as for an action
    node; they may also use `item` and `index`). Problems are relative to the node's parameters."""
    action_type = action["actionType"]
    found = check_parameters(action_type, action.get("parameters") or {}, f"{pointer}/parameters")
    if found is None:
        return [("/action/actionType", "unknown_action_type", f"unknown action type {action_type!r}")]
    prefix = pointer.rsplit("/parameters/action", 1)[0] + "/parameters"
    return [(p.pointer.removeprefix(prefix), p.code, p.message) for p in found]


def _check_edge(edge: Edge, pointer: str, problems: list[Problem], check_condition: ConditionChecker | None) -> None:
    if edge.condition is None:
        return
    if not edge.condition.strip():
        problems.append(Problem(f"{pointer}/condition", "required", "must not be empty (omit it instead)"))
        return
    if len(edge.condition) > MAX_CONDITION_LENGTH:
        problems.append(Problem(f"{pointer}/condition", "too_long", f"at most {MAX_CONDITION_LENGTH} characters"))
        return
    if check_condition is None:
        return
    error = check_condition(edge.condition)
    if error is not None:
        problems.append(Problem(f"{pointer}/condition", "condition_syntax", error))


def _check_retry_policy(policy: RetryPolicy, pointer: str, problems: list[Problem]) -> None:
    if not 1 <= policy.max_attempts <= 100:
        problems.append(Problem(f"{pointer}/maxAttempts", "range", "must be between 1 and 100"))
    if not 1.0 <= policy.backoff_multiplier <= 10.0:
        problems.append(Problem(f"{pointer}/backoffMultiplier", "range", "must be between 1 and 10"))
    _check_duration(policy.initial_delay, f"{pointer}/initialDelay", problems, positive=False)
    _check_duration(policy.max_delay, f"{pointer}/maxDelay", problems, positive=False)


def _check_duration(text: str, pointer: str, problems: list[Problem], *, positive: bool) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        problems.append(Problem(pointer, "duration", str(exc)))
        return
    if positive and seconds <= 0:
        problems.append(Problem(pointer, "range", "must be longer than zero"))
    if seconds > MAX_DURATION_SECONDS:
        problems.append(Problem(pointer, "range", "must be at most 366 days"))


def _check_orchestration(definition: WorkflowDefinition, problems: list[Problem]) -> None:
    orchestration = definition.orchestration
    if not 1 <= orchestration.max_parallel_actions <= 1000:
        problems.append(Problem("/orchestration/maxParallelActions", "range", "must be between 1 and 1000"))
    _check_duration(
        orchestration.default_action_timeout, "/orchestration/defaultActionTimeout", problems, positive=True
    )
    if orchestration.workflow_timeout is not None:
        _check_duration(orchestration.workflow_timeout, "/orchestration/workflowTimeout", problems, positive=True)
    if orchestration.retry_policy is not None:
        _check_retry_policy(orchestration.retry_policy, "/orchestration/retryPolicy", problems)
    limits = (
        ("maxConcurrentExecutions", orchestration.max_concurrent_executions, MAX_CONCURRENT_EXECUTIONS),
        ("rateLimitPerMinute", orchestration.rate_limit_per_minute, MAX_RATE_PER_MINUTE),
    )
    for name, value, most in limits:
        if value is not None and not 1 <= value <= most:
            problems.append(Problem(f"/orchestration/{name}", "range", f"must be between 1 and {most} (or null)"))
    _check_compensate_on(orchestration.compensate_on, problems)
    priority = orchestration.priority
    if priority is not None and not MIN_RUN_PRIORITY <= priority <= MAX_RUN_PRIORITY:
        problems.append(
            Problem(
                "/orchestration/priority",
                "range",
                f"must be between {MIN_RUN_PRIORITY} and {MAX_RUN_PRIORITY} (higher runs first; or null)",
            )
        )


def _check_compensate_on(ends: tuple[str, ...] | None, problems: list[Problem]) -> None:
    """orchestration.compensateOn: some of the ends COMPENSATE_ON names, each once (empty: never)."""
    for index, end in enumerate(ends or ()):
        if end not in COMPENSATE_ON:
            problems.append(
                Problem(
                    f"/orchestration/compensateOn/{index}",
                    "enum",
                    f"must be one of {', '.join(COMPENSATE_ON)} (the ends of a run that compensate)",
                )
            )
        elif end in (ends or ())[:index]:
            problems.append(Problem(f"/orchestration/compensateOn/{index}", "duplicate", f"{end!r} is already listed"))


def find_cycle(definition: WorkflowDefinition) -> list[str] | None:
    """A cycle as a path that starts and ends at the same node, or None."""
    graph = {node.id: [edge.target_node for edge in node.edges] for node in definition.nodes}
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    stack_path: list[str] = []

    def visit(start: str) -> list[str] | None:
        # Iterative DFS: definitions may be deep chains.
        iterators = [iter(graph.get(start, []))]
        color[start] = grey
        stack_path.append(start)
        while iterators:
            for target in iterators[-1]:
                if target not in color:
                    continue
                if color[target] == grey:
                    return [*stack_path[stack_path.index(target) :], target]
                if color[target] == white:
                    color[target] = grey
                    stack_path.append(target)
                    iterators.append(iter(graph.get(target, [])))
                    break
            else:
                iterators.pop()
                color[stack_path.pop()] = black
        return None

    for node_id in graph:
        if color[node_id] == white:
            found = visit(node_id)
            if found:
                return found
    return None


def reachable_from(definition: WorkflowDefinition, start: str) -> set[str]:
    graph = {node.id: [edge.target_node for edge in node.edges] for node in definition.nodes}
    seen = {start}
    frontier = [start]
    while frontier:
        current = frontier.pop()
        for target in graph.get(current, []):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def registry_parameter_checker(registry: Any) -> ParameterChecker:
    """Checks parameters against the action's Params struct. Values that are templates
    ({{ ... }}) are rendered at run time, so only their field names are checked here."""

    def check(action_type: str, parameters: dict[str, Any], pointer: str) -> list[Problem] | None:
        if action_type not in registry:
            return None
        params_type = registry.get(action_type).Params
        fields = {f.encode_name: f for f in msgspec.structs.fields(params_type)}
        if any(has_template(value) for value in parameters.values()):
            found = []
            for key in parameters:
                if key not in fields:
                    found.append(Problem(join_pointer(pointer, key), "unknown_field", f"unknown parameter {key!r}"))
            for name, f in fields.items():
                if f.required and name not in parameters:
                    found.append(Problem(join_pointer(pointer, name), "required", "is required"))
            return found
        try:
            msgspec.convert(parameters, params_type)
        except msgspec.ValidationError as exc:
            message = str(exc)
            sub = ""
            if " - at `$." in message:
                sub = message.split(" - at `$.")[1].rstrip("`").split("[")[0].split(".")[0]
            target = join_pointer(pointer, sub) if sub else pointer
            return [Problem(target, "invalid_parameter", _clean_msgspec_message(message))]
        return []

    return check


def _a_node_of(node_type: str) -> str:
    """ "an approval node", "a delay node"."""
    return f"{'an' if node_type[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {node_type} node"

"""Turns a submitted definition into something storable, the one way the API, the examples loader
and the tests all use: its edge conditions compiled in the condition sandbox, every problem reported
(each with a JSON pointer), then parsed and checksummed; and compiles its plan at publish time.

Pure module: the sandbox comes in as a ConditionSandbox (dataworkflows.conditions.ConditionPool)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from dataworkflows import templating
from dataworkflows.actions import ActionRegistry, UnknownActionType, connector_of
from dataworkflows.definitions import WorkflowDefinition, checksum, parse_definition
from dataworkflows.errors import DefinitionError
from dataworkflows.planning import compile_plan, plan_to_json
from dataworkflows.validation import Problem, registry_parameter_checker, validate_definition

# Each distinct condition is compiled in the sandbox: bound the work one definition causes.
MAX_CONDITIONS = 500
# Characters of run-time template text (strings holding {{, {% or {#) in one definition: compiling
# them to check their syntax takes about 5 ms per kB in the API's process (a 1 MB body of lookups
# took 4.8 s), and each worker compiles them again. The same bound holds for workflow templates and
# webhooks' payloadTemplates (templating.MAX_TEMPLATE_CHARS).
MAX_TEMPLATE_CHARS = templating.MAX_TEMPLATE_CHARS


class ConditionSandbox(Protocol):
    """What preparing a definition needs from the condition sandbox."""

    async def check_many(self, expressions: list[str]) -> dict[str, str | None]:
        """For each expression, None when it compiles, else the error."""
        ...


@dataclass(frozen=True)
class ConnectionUse:
    """A connection a definition names (or its action's default), where, and by which action:
    checked at publish against the stored connection's allow-list and kind (the action's
    connector)."""

    pointer: str
    name: str
    action_type: str
    connector: str


@dataclass(frozen=True)
class PreparedDefinition:
    definition: WorkflowDefinition
    raw: dict[str, Any]
    checksum: str
    # The connections its action nodes (and forEach actions) name; one chosen by a template is
    # known only at run time and is checked there.
    connections: tuple[ConnectionUse, ...] = ()


def collect_conditions(raw: Any) -> list[str]:
    """Every edge condition and transform expression in a raw definition (for checking in the
    sandbox first)."""
    found: list[str] = []
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    if not isinstance(nodes, list):
        return found
    for node in nodes:
        expression = transform_expression(node)
        if expression is not None:
            found.append(expression)
        edges = node.get("edges") if isinstance(node, dict) else None
        if not isinstance(edges, list):
            continue
        for edge in edges:
            if isinstance(edge, dict) and isinstance(edge.get("condition"), str) and edge["condition"].strip():
                found.append(edge["condition"])
    return found


def transform_expression(node: Any) -> str | None:
    """A transform node's JavaScript expression, if the node is one and has a non-empty one."""
    if not isinstance(node, dict) or node.get("nodeType") != "transform":
        return None
    parameters = node.get("parameters")
    expression = parameters.get("expression") if isinstance(parameters, dict) else None
    return expression if isinstance(expression, str) and expression.strip() else None


async def prepare_definition(
    raw: Any,
    registry: ActionRegistry,
    conditions: ConditionSandbox,
    *,
    expected_id: str | None = None,
) -> PreparedDefinition:
    """Validates and parses a raw definition; raises DefinitionError listing every problem.

    `expected_id` is the id of the workflow being updated, which the definition must keep."""
    expressions = list(dict.fromkeys(collect_conditions(raw)))
    if len(expressions) > MAX_CONDITIONS:
        raise DefinitionError(
            [Problem("/nodes", "too_many", f"at most {MAX_CONDITIONS} distinct edge conditions per workflow")]
        )
    errors = await conditions.check_many(expressions) if expressions else {}
    problems = validate_definition(
        raw,
        check_parameters=registry_parameter_checker(registry),
        check_condition=lambda expr: errors.get(expr),
    )
    if isinstance(raw, dict):
        problems.extend(_id_mismatch(raw, expected_id))
        # In a thread: the event loop goes on serving other requests while a large one compiles.
        problems.extend(await asyncio.to_thread(_template_syntax, raw))
    if problems:
        raise DefinitionError(problems)
    assert isinstance(raw, dict)
    return PreparedDefinition(parse_definition(raw), raw, checksum(raw), connection_uses(raw, registry))


def connection_uses(raw: dict[str, Any], registry: ActionRegistry) -> tuple[ConnectionUse, ...]:
    """Every connection a valid definition's actions will ask for, when it is known before the run:
    a literal `connection` parameter, or the action's default (slack.post-message: "slack")."""
    found: list[ConnectionUse] = []
    for index, node in enumerate(raw.get("nodes") or []):
        compensation = node.get("compensation") if isinstance(node, dict) else None
        if isinstance(compensation, dict):
            parameters = compensation.get("parameters")
            pointer = f"/nodes/{index}/compensation/parameters"
            use = _connection_of(registry, compensation.get("actionType"), parameters or {}, pointer)
            if use is not None:
                found.append(use)
        if not isinstance(node, dict) or not isinstance(node.get("parameters"), dict):
            continue
        parameters = node["parameters"]
        if node.get("nodeType", "action") == "action" and isinstance(node.get("actionType"), str):
            use = _connection_of(registry, node["actionType"], parameters, f"/nodes/{index}/parameters")
        elif node.get("nodeType") == "forEach" and isinstance(parameters.get("action"), dict):
            action = parameters["action"]
            pointer = f"/nodes/{index}/parameters/action/parameters"
            use = _connection_of(registry, action.get("actionType"), action.get("parameters") or {}, pointer)
        else:
            use = None
        if use is not None:
            found.append(use)
    return tuple(found)


def _connection_of(registry: ActionRegistry, action_type: Any, parameters: Any, pointer: str) -> ConnectionUse | None:
    try:
        action = registry.get(str(action_type))
    except UnknownActionType:
        return None
    field = next((f for f in msgspec.structs.fields(action.Params) if f.encode_name == "connection"), None)
    if field is None or not isinstance(parameters, dict):
        return None
    value = parameters.get("connection", field.default)
    if not isinstance(value, str) or not value or "{{" in value or "{%" in value:
        return None  # none, or chosen by a template: checked when the node runs
    return ConnectionUse(f"{pointer}/connection", value, action.type_name, connector_of(action))


def _id_mismatch(raw: dict[str, Any], expected_id: str | None) -> list[Problem]:
    if expected_id is not None and raw.get("id") not in (None, expected_id):
        return [Problem("/id", "mismatch", f"must be {expected_id!r}, the workflow being updated")]
    return []


def _template_syntax(raw: dict[str, Any]) -> list[Problem]:
    """Run-time templates in node parameters (a transform's are JavaScript, not templates) and in the
    workflow's outputs that do not compile, or that hold more than MAX_TEMPLATE_CHARS in all (then
    the one that goes over is named, and none after it is compiled)."""
    nodes = raw.get("nodes")
    if not isinstance(nodes, list):
        return []
    parts = [
        (f"/nodes/{index}/parameters", node["parameters"])
        for index, node in enumerate(nodes)
        if isinstance(node, dict) and "parameters" in node and node.get("nodeType") != "transform"
    ]
    # A compensation's parameters are templates over the run's scope too.
    parts.extend(
        (f"/nodes/{index}/compensation/parameters", node["compensation"]["parameters"])
        for index, node in enumerate(nodes)
        if isinstance(node, dict)
        and isinstance(node.get("compensation"), dict)
        and "parameters" in node["compensation"]
    )
    if isinstance(raw.get("outputs"), dict):
        parts.append(("/outputs", raw["outputs"]))
    found = []
    total = 0
    for pointer, value in parts:
        total += templating.template_chars(value)
        if total > MAX_TEMPLATE_CHARS:
            message = (
                f"a workflow's templates hold at most {MAX_TEMPLATE_CHARS} characters in all; with this "
                f"one they hold {total}: move large fixed text out of templates, or split the workflow"
            )
            found.append(Problem(pointer, "too_large", message))
            break
        error = templating.check_template(value)
        if error:
            found.append(Problem(pointer, "template_syntax", error))
    return found


def compile_for_publish(definition: WorkflowDefinition, version: int) -> dict[str, Any]:
    """The execution plan of a prepared definition, as stored in dw.workflow_plans."""
    return plan_to_json(compile_plan(definition, version))

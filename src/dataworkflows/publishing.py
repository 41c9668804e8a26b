"""Turns a submitted definition into something storable: validated (every problem reported),
parsed, checksummed; and compiles its plan at publish time. Pure module: condition syntax is
checked by the caller (in the sandbox) and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataworkflows import templating
from dataworkflows.actions import ActionRegistry
from dataworkflows.definitions import WorkflowDefinition, checksum, parse_definition
from dataworkflows.errors import DefinitionError
from dataworkflows.planning import compile_plan, plan_to_json
from dataworkflows.validation import Problem, registry_parameter_checker, validate_definition


@dataclass(frozen=True)
class PreparedDefinition:
    definition: WorkflowDefinition
    raw: dict[str, Any]
    checksum: str


def collect_conditions(raw: Any) -> list[str]:
    """Every edge condition in a raw definition (for checking in the sandbox first)."""
    found: list[str] = []
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    if not isinstance(nodes, list):
        return found
    for node in nodes:
        edges = node.get("edges") if isinstance(node, dict) else None
        if not isinstance(edges, list):
            continue
        for edge in edges:
            if isinstance(edge, dict) and isinstance(edge.get("condition"), str) and edge["condition"].strip():
                found.append(edge["condition"])
    return found


def prepare_definition(
    raw: Any,
    registry: ActionRegistry,
    condition_errors: dict[str, str | None] | None = None,
    *,
    expected_id: str | None = None,
) -> PreparedDefinition:
    """Validates and parses; raises DefinitionError listing every problem."""
    errors = condition_errors or {}
    problems = validate_definition(
        raw,
        check_parameters=registry_parameter_checker(registry),
        check_condition=lambda expr: errors.get(expr),
    )
    if isinstance(raw, dict):
        if expected_id is not None and raw.get("id") not in (None, expected_id):
            problems.append(Problem("/id", "mismatch", f"must be {expected_id!r}, the workflow being updated"))
        nodes = raw.get("nodes")
        if isinstance(nodes, list):
            for index, node in enumerate(nodes):
                if isinstance(node, dict) and "parameters" in node:
                    error = templating.check_template(node["parameters"])
                    if error:
                        problems.append(Problem(f"/nodes/{index}/parameters", "template_syntax", error))
    if problems:
        raise DefinitionError(problems)
    assert isinstance(raw, dict)
    return PreparedDefinition(parse_definition(raw), raw, checksum(raw))


def compile_for_publish(definition: WorkflowDefinition, version: int) -> dict[str, Any]:
    return plan_to_json(compile_plan(definition, version))

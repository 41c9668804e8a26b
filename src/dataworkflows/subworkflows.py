"""The subworkflow node kind's rules: its parameters, at publish time and once rendered. Pure module.

    {"id": "charge", "nodeType": "subworkflow",
     "parameters": {"workflowId": "charge-card", "version": 3,
                    "input": {"orderId": "{{ trigger.orderId }}"}, "waitForCompletion": true}}

- workflowId: the child workflow (a literal id: publishing checks that it exists);
- version: a published version of it (default: its current version when the child starts);
- input: the child's trigger, templated over trigger, nodes and execution (default {});
- waitForCompletion (default true): the node waits, holding no worker, and gets the child's
  outputs when it succeeds, or fails with child_failed, child_cancelled or child_timed_out (the
  child's error as its cause); false: the node succeeds at once with the child's execution id.

The child starts in the node attempt's checkpoint transaction (dw.begin_child_v2), one level deeper
than its parent; past DW_MAX_NESTING_DEPTH the node fails with nesting_too_deep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from dataworkflows.json_text import json_preview, json_type

WORKFLOW_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
# The error dw.begin_child_v2 and dw.begin_item_child_v2 refuse a child's start with while an
# operator's cancel or suspension of the parent is pending: no child starts, nothing fails.
CONTROL_REQUEST_PENDING = "control_request_pending"


class SubworkflowParameterError(ValueError):
    """Rendered parameters that do not describe a child (the node fails with invalid_parameters)."""


class SubworkflowParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    workflow_id: str
    version: int | str | None = None
    input: dict[str, Any] | str | None = None
    wait_for_completion: bool | str = True


@dataclass(frozen=True)
class ChildSpec:
    """What dw.begin_child_v2 starts."""

    workflow_id: str
    version: int | None
    input: dict[str, Any]
    wait: bool


# Versions are PostgreSQL integers: a larger number names no version (and psycopg would send it as
# a bigint or numeric, which no procedure takes).
MAX_VERSION = 2**31 - 1


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_parameters(parameters: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Publish-time problems as (relative pointer, code, message)."""
    try:
        params = msgspec.convert(parameters, SubworkflowParams)
    except msgspec.ValidationError as exc:
        return [("", "invalid_parameters", str(exc))]
    problems: list[tuple[str, str, str]] = []
    if _templated(params.workflow_id) or not WORKFLOW_ID.match(params.workflow_id):
        problems.append(("/workflowId", "invalid", "workflowId must be the id of a workflow (not a template)"))
    if isinstance(params.version, int) and (isinstance(params.version, bool) or not 1 <= params.version <= MAX_VERSION):
        problems.append(("/version", "range", f"version must be a version number (1 to {MAX_VERSION})"))
    elif isinstance(params.version, str) and not _templated(params.version):
        problems.append(("/version", "invalid", "version must be a number (or a template that renders one)"))
    if isinstance(params.input, str) and not _templated(params.input):
        problems.append(("/input", "invalid", "input must be an object (or a template that renders one)"))
    if isinstance(params.wait_for_completion, str) and not _templated(params.wait_for_completion):
        problems.append(("/waitForCompletion", "invalid", "waitForCompletion must be true or false"))
    return problems


def child_spec(rendered: Any) -> ChildSpec:
    """The child a rendered node starts; SubworkflowParameterError when the values do not make one."""
    try:
        params = msgspec.convert(rendered, SubworkflowParams)
    except msgspec.ValidationError as exc:
        raise SubworkflowParameterError(f"parameters are invalid after rendering: {exc}") from None
    version = params.version
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION
    ):
        raise SubworkflowParameterError(
            f"version must be a version number (1 to {MAX_VERSION}), not {json_preview(version)}"
        )
    child_input = {} if params.input is None else params.input
    if not isinstance(child_input, dict):
        raise SubworkflowParameterError(
            f"input must render to an object (the child's trigger), not {json_type(child_input)}:"
            f" {json_preview(child_input)}"
        )
    if not isinstance(params.wait_for_completion, bool):
        raise SubworkflowParameterError("waitForCompletion must be true or false")
    return ChildSpec(params.workflow_id, version, child_input, params.wait_for_completion)


def referenced_workflows(plan_nodes: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """(node index, pointer under the node, workflow id) for every child a plan's nodes may start:
    subworkflow nodes and forEach nodes that run a subworkflow per item."""
    found: list[tuple[int, str, str]] = []
    for index, node in enumerate(plan_nodes):
        parameters = node.get("parameters") or {}
        if node.get("kind") == "subworkflow" and isinstance(parameters.get("workflowId"), str):
            found.append((index, "/parameters/workflowId", parameters["workflowId"]))
        sub = parameters.get("subworkflow") if node.get("kind") == "forEach" else None
        if isinstance(sub, dict) and isinstance(sub.get("workflowId"), str):
            found.append((index, "/parameters/subworkflow/workflowId", sub["workflowId"]))
    return found


def pinned_versions(plan_nodes: list[dict[str, Any]]) -> list[tuple[int, str, str, int]]:
    """(node index, pointer to the version, workflow id, version) for every child a plan's nodes
    start at a literal version (a templated one is resolved per run)."""
    found: list[tuple[int, str, str, int]] = []
    for index, node in enumerate(plan_nodes):
        parameters = node.get("parameters") or {}
        candidates = []
        if node.get("kind") == "subworkflow":
            candidates.append(("/parameters/version", parameters))
        if node.get("kind") == "forEach" and isinstance(parameters.get("subworkflow"), dict):
            candidates.append(("/parameters/subworkflow/version", parameters["subworkflow"]))
        for pointer, params in candidates:
            version, workflow_id = params.get("version"), params.get("workflowId")
            if isinstance(version, int) and not isinstance(version, bool) and isinstance(workflow_id, str):
                found.append((index, pointer, workflow_id, version))
    return found

"""The workflow definition as a JSON Schema (draft 2020-12), for editors and the OpenAPI document.

Built from the same structs and limits that validation uses (dataworkflows.definitions,
dataworkflows.validation, the node kinds' parameter structs and each action's Params), so the
schema follows the code; `schemas/workflow-definition.schema.json` is its output for the built-in
actions and a test keeps the two in step. Regenerate it with

    python -m dataworkflows.definition_schema schemas/workflow-definition.schema.json

What the schema cannot say (it is a help for editors, not the validator): edges must name existing
nodes, the graph must be acyclic and reachable, conditions and templates must compile, a duration
must be at most 366 days and a timeout longer than zero. The API's 422 answer reports those, each
with a JSON pointer. Where a value may be a template (`{{ ... }}`, rendered at run time) the schema
accepts any string holding one. Pure module.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import msgspec

from dataworkflows import foreach, transforms, waits
from dataworkflows.actions import ActionRegistry, builtin_actions
from dataworkflows.definitions import COMPENSATE_ON, EdgeWhen, NodeType, Orchestration, RetryPolicy, RoutePolicy
from dataworkflows.priorities import MAX_RUN_PRIORITY, MIN_RUN_PRIORITY
from dataworkflows.rate_limits import MAX_CONCURRENT_EXECUTIONS, MAX_RATE_PER_MINUTE
from dataworkflows.validation import MAX_CONDITION_LENGTH, MAX_EDGES_PER_NODE, MAX_NODES

SCHEMA_ID = "urn:dataworkflows:workflow-definition"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]

# ECMA-262 forms of the Python patterns (validation.ID_PATTERN, definitions._DURATION, waits.SIGNAL_NAME).
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
DURATION_PATTERN = (
    r"^\s*[Pp](?!\s*$)(\d+(\.\d+)?[Ww])?(\d+(\.\d+)?[Dd])?"
    r"([Tt](?=\d)(\d+(\.\d+)?[Hh])?(\d+(\.\d+)?[Mm])?(\d+(\.\d+)?[Ss])?)?\s*$"
)
SIGNAL_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
TEMPLATE_PATTERN = r"\{\{|\{%"
NOT_BLANK = r"\S"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _or_template(schema: Schema) -> Schema:
    return {"anyOf": [schema, _ref("Template")]}


def _struct_defaults(cls: type[msgspec.Struct]) -> dict[str, Any]:
    return {
        f.encode_name: f.default
        for f in msgspec.structs.fields(cls)
        if f.default is not msgspec.NODEFAULT and isinstance(f.default, (str, int, float, bool))
    }


def _common_defs() -> dict[str, Schema]:
    return {
        "Id": {
            "type": "string",
            "pattern": ID_PATTERN,
            "description": "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            "examples": ["order-intake"],
        },
        "Duration": {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "An ISO 8601 duration such as PT30S, PT5M, PT1H, P1DT2H or P2W (at most 366 days)",
            "examples": ["PT30S", "PT5M", "PT1H"],
        },
        "PositiveDuration": {
            **_ref("Duration"),
            # A digit other than 0 somewhere: longer than zero.
            "pattern": "[1-9]",
            "description": "An ISO 8601 duration longer than zero (at most 366 days)",
            "examples": ["PT30S", "PT5M"],
        },
        "Template": {
            "type": "string",
            "pattern": TEMPLATE_PATTERN,
            "description": "A Jinja2 template ({{ expression }}), rendered when the node runs, over trigger, "
            "nodes (node id -> outputs), errors (node id -> a failed node's error), execution and attempt; a value "
            "that is exactly one {{ expression }} "
            "keeps its JSON type",
            "examples": ["{{ trigger.orderId }}"],
        },
        "Condition": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_CONDITION_LENGTH,
            "pattern": NOT_BLANK,
            "description": "JavaScript over trigger, nodes, errors and execution, coerced to a boolean; evaluated in "
            "a sandbox (1 s limit); a syntax error is reported when the definition is validated",
            "examples": ["trigger.amount > 1000"],
        },
    }


def _retry_policy() -> Schema:
    defaults = _struct_defaults(RetryPolicy)
    return {
        "type": "object",
        "description": "Retries of RetriableFailure and timed-out attempts, with exponential backoff and jitter",
        "properties": {
            "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 100, "default": defaults["maxAttempts"]},
            "initialDelay": {**_ref("Duration"), "default": defaults["initialDelay"]},
            "backoffMultiplier": {
                "type": "number",
                "minimum": 1,
                "maximum": 10,
                "default": defaults["backoffMultiplier"],
            },
            "maxDelay": {**_ref("Duration"), "default": defaults["maxDelay"]},
            "jitter": {"type": "boolean", "default": defaults["jitter"]},
        },
        "additionalProperties": False,
    }


def _orchestration() -> Schema:
    defaults = _struct_defaults(Orchestration)
    return {
        "type": "object",
        "description": "Run-wide settings",
        "properties": {
            "maxParallelActions": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "default": defaults["maxParallelActions"],
                "description": "Ready nodes that run at once in one execution",
            },
            "defaultActionTimeout": {
                **_ref("PositiveDuration"),
                "default": defaults["defaultActionTimeout"],
                "description": "Each attempt's timeout where its node sets none",
            },
            "workflowTimeout": {
                **_nullable(_ref("PositiveDuration")),
                "description": "Ends the run as TimedOut (default DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS, one hour)",
            },
            "retryPolicy": _nullable(_ref("RetryPolicy")),
            "maxConcurrentExecutions": {
                **_nullable({"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENT_EXECUTIONS}),
                "description": "Root runs of this workflow at once (publishing sets it; null clears)",
            },
            "rateLimitPerMinute": {
                **_nullable({"type": "integer", "minimum": 1, "maximum": MAX_RATE_PER_MINUTE}),
                "description": "Root runs started per minute (publishing sets it; null clears)",
            },
            "priority": {
                **_nullable({"type": "integer", "minimum": MIN_RUN_PRIORITY, "maximum": MAX_RUN_PRIORITY}),
                "description": "Its runs' priority when a start gives none (higher first; children: their parent's)",
            },
            "compensateOn": {
                **_nullable({"type": "array", "items": {"enum": list(COMPENSATE_ON)}, "uniqueItems": True}),
                "description": "The ends of a run after which its nodes' compensations, and its succeeded children's, "
                "run (default: all three)",
            },
        },
        "additionalProperties": False,
    }


def _compensation() -> Schema:
    return {
        "type": "object",
        "description": "An action run after the run's end (see orchestration.compensateOn) for each node that "
        "had Succeeded, the last to succeed first; its parameters are templates over the run's scope",
        "properties": {
            "actionType": _ref("ActionType"),
            "parameters": {"type": "object", "description": "What the action takes"},
            "retryPolicy": _nullable(_ref("RetryPolicy")),
            "timeout": {
                **_nullable(_ref("PositiveDuration")),
                "description": "Each attempt's timeout (default: orchestration.defaultActionTimeout)",
            },
        },
        "required": ["actionType"],
        "additionalProperties": False,
        "allOf": [_ref("ActionParameters")],
    }


def _edge() -> Schema:
    return {
        "type": "object",
        "description": "Fires when `when` matches the source node's outcome and `condition`, if any, is true",
        "properties": {
            "targetNode": {**_ref("Id"), "description": "The id of another node"},
            "when": {"enum": [w.value for w in EdgeWhen], "default": EdgeWhen.SUCCESS.value},
            "condition": _nullable(_ref("Condition")),
        },
        "required": ["targetNode"],
        "additionalProperties": False,
    }


def _node() -> Schema:
    kinds = [kind.value for kind in NodeType]
    return {
        "type": "object",
        "properties": {
            "id": _ref("Id"),
            "nodeType": {
                "enum": kinds,
                "default": NodeType.ACTION.value,
                "description": "action (the default) runs actionType; the other kinds take no actionType",
            },
            "actionType": {"type": "string", "description": "An action type (GET /api/v1/actions lists them)"},
            "parameters": {"type": "object", "description": "What the node's kind or action takes"},
            "edges": {"type": "array", "items": _ref("Edge"), "maxItems": MAX_EDGES_PER_NODE},
            "retryPolicy": _nullable(_ref("RetryPolicy")),
            "timeout": {
                **_nullable(_ref("PositiveDuration")),
                "description": "Each attempt's timeout (default: orchestration.defaultActionTimeout)",
            },
            "routePolicy": {
                "enum": [p.value for p in RoutePolicy],
                "default": RoutePolicy.PARALLEL.value,
                "description": "parallel fires every satisfied edge; firstMatch only the first, in order",
            },
            "rerenderOnRetry": {
                "type": "boolean",
                "default": False,
                "description": "Render the parameters again for each attempt (default: once per node)",
            },
            "description": _nullable({"type": "string"}),
            "compensation": {
                **_nullable(_ref("Compensation")),
                "description": "What undoes this action node's effect when the run does not succeed",
            },
        },
        "required": ["id"],
        "additionalProperties": False,
        "allOf": [
            {
                # A node without nodeType is an action node.
                "if": {"properties": {"nodeType": {"const": kind}}}
                if kind == NodeType.ACTION
                else {"properties": {"nodeType": {"const": kind}}, "required": ["nodeType"]},
                "then": _ref(f"{kind[0].upper()}{kind[1:]}Node"),
            }
            for kind in kinds
        ],
    }


def _kind_node(parameters: Schema, description: str) -> Schema:
    """A node of a kind other than action: its parameters, and no actionType."""
    return {
        "description": description,
        "properties": {"actionType": {"const": ""}, "parameters": parameters, "compensation": {"type": "null"}},
        "required": ["nodeType", "parameters"],
    }


def _subworkflow_parameters() -> Schema:
    return {
        "type": "object",
        "properties": {
            "workflowId": {**_ref("Id"), "description": "The child workflow (a literal id, not a template)"},
            "version": _nullable(_or_template({"type": "integer", "minimum": 1})),
            "input": {
                **_nullable(_or_template({"type": "object"})),
                "description": "The child's trigger (templates see trigger, nodes, execution; in a forEach, item "
                "and index)",
            },
            "waitForCompletion": {**_or_template({"type": "boolean"}), "default": True},
        },
        "required": ["workflowId"],
        "additionalProperties": False,
    }


def _wait_nodes() -> dict[str, Schema]:
    duration = _or_template(_ref("Duration"))
    timeout = _or_template(_ref("PositiveDuration"))
    delay = {
        "type": "object",
        "properties": {
            "duration": duration,
            # Python's ISO 8601 reading, wider than JSON Schema's date-time: no offset means UTC.
            "until": {
                "type": "string",
                "description": "An ISO 8601 timestamp (UTC without an offset), or a template",
                "examples": ["2026-12-24T18:00:00Z"],
            },
        },
        "oneOf": [{"required": ["duration"]}, {"required": ["until"]}],
        "additionalProperties": False,
    }
    signal = {
        "type": "object",
        "properties": {
            "name": _or_template({"type": "string", "pattern": SIGNAL_NAME_PATTERN}),
            "correlationKey": _nullable({"type": "string", "minLength": 1, "maxLength": 500}),
            "timeout": _nullable(timeout),
        },
        "required": ["name"],
        "additionalProperties": False,
    }
    approvers = {"type": "array", "items": {"type": "string", "pattern": NOT_BLANK}, "minItems": 1}
    approval = {
        "type": "object",
        "properties": {
            "approvers": {
                **_or_template({**approvers, "maxItems": waits.MAX_APPROVERS}),
                "description": "Principal ids",
            },
            "quorum": {
                "anyOf": [{"enum": ["any", "all"]}, {"type": "integer", "minimum": 1}, _ref("Template")],
                "default": "any",
            },
            "timeout": _nullable(timeout),
            "title": _nullable({"type": "string"}),
            "description": _nullable({"type": "string"}),
            "escalation": _nullable(
                {
                    "type": "object",
                    "description": "After `after`, these approvers may decide too (shorter than the timeout)",
                    "properties": {
                        "after": timeout,
                        "approvers": {**_or_template({**approvers, "maxItems": waits.MAX_APPROVERS})},
                    },
                    "required": ["after", "approvers"],
                    "additionalProperties": False,
                }
            ),
        },
        "required": ["approvers"],
        "additionalProperties": False,
    }
    return {
        "DelayNode": _kind_node(delay, "Waits for a duration or until a time (a timer)"),
        "SignalNode": _kind_node(
            signal, "Waits for POST /api/v1/executions/{id}/signals/{name}; the payload becomes its outputs"
        ),
        "ApprovalNode": _kind_node(approval, "Waits for approvers' decisions (POST /api/v1/approvals/{id}/decision)"),
    }


def _other_kind_nodes() -> dict[str, Schema]:
    transform = {
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "minLength": 1,
                "maxLength": transforms.MAX_EXPRESSION_LENGTH,
                "pattern": NOT_BLANK,
                "description": "JavaScript over trigger, nodes, errors and execution; its value becomes the outputs",
            },
            "timeout": {**_ref("PositiveDuration"), "default": f"PT{transforms.DEFAULT_TIMEOUT_SECONDS:g}S"},
        },
        "required": ["expression"],
        "additionalProperties": False,
    }
    item_action = {
        "type": "object",
        "properties": {"actionType": _ref("ActionType"), "parameters": {"type": "object"}},
        "required": ["actionType"],
        "additionalProperties": False,
        "allOf": [_ref("ActionParameters")],
    }
    for_each = {
        "type": "object",
        "properties": {
            "items": {"anyOf": [{"type": "array"}, _ref("Template")]},
            "action": {**item_action, "description": "Runs per item; its templates also see item and index"},
            "subworkflow": {**_ref("SubworkflowParameters"), "description": "A child execution per item"},
            "concurrency": {
                "type": "integer",
                "minimum": 1,
                "maximum": foreach.MAX_CONCURRENCY,
                "default": foreach.DEFAULT_CONCURRENCY,
            },
            "onItemFailure": {"enum": list(foreach.ON_ITEM_FAILURE), "default": foreach.ON_ITEM_FAILURE[0]},
            "maxItems": {
                "type": "integer",
                "minimum": 1,
                "maximum": foreach.HARD_MAX_ITEMS,
                "default": foreach.DEFAULT_MAX_ITEMS,
            },
        },
        "required": ["items"],
        "oneOf": [{"required": ["action"]}, {"required": ["subworkflow"]}],
        "additionalProperties": False,
    }
    return {
        "TransformNode": _kind_node(transform, "A JavaScript expression whose value becomes the node's outputs"),
        "SubworkflowNode": _kind_node(_ref("SubworkflowParameters"), "Starts a child execution of another workflow"),
        "ForEachNode": _kind_node(for_each, "An action, or a child execution, per element of a list"),
    }


def _templatable(schema: Any) -> Any:
    """A parameter schema where any value may instead be a template (rendered at run time)."""
    if not isinstance(schema, dict) or not schema or set(schema) <= {"default", "description", "title"}:
        return schema
    inner = {key: value for key, value in schema.items() if key not in ("default", "title")}
    if "anyOf" in inner:
        inner["anyOf"] = [_templatable(branch) for branch in inner["anyOf"]]
    if isinstance(inner.get("properties"), dict):
        inner["properties"] = {name: _templatable(value) for name, value in inner["properties"].items()}
    if isinstance(inner.get("additionalProperties"), dict):
        inner["additionalProperties"] = _templatable(inner["additionalProperties"])
    if isinstance(inner.get("items"), dict):
        inner["items"] = _templatable(inner["items"])
    if inner == {"type": "string"}:
        result: Schema = inner
    else:
        result = {"anyOf": [inner, _ref("Template")]}
    if "default" in schema:
        result["default"] = schema["default"]
    return result


def _inline_refs(schema: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    """msgspec's schema with its local references replaced by what they name (params are not recursive)."""
    if depth > 20:
        raise ValueError("parameter schemas nest too deep")
    if isinstance(schema, list):
        return [_inline_refs(item, defs, depth + 1) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _inline_refs(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]), defs, depth + 1)
    return {key: _inline_refs(value, defs, depth + 1) for key, value in schema.items()}


def _parameters(name: str, action: Any) -> Schema:
    """An action's parameters: its Params struct's schema, where any value may be a template."""
    description = f"{name}: {getattr(action, 'description', '')}".rstrip(": ")
    try:
        (ref,), defs = msgspec.json.schema_components([action.Params], ref_template="#/$defs/{name}")
        params: Schema = _templatable(_inline_refs(ref, defs))
    except (TypeError, ValueError, KeyError):
        # An installed action whose Params msgspec cannot describe: an object, unchecked here.
        return {"type": "object", "description": description}
    # The template alternative is for the values inside: the parameters themselves are an object.
    if "anyOf" in params:
        params = params["anyOf"][0]
    params.pop("title", None)
    params["description"] = description
    return params


def _action_defs(registry: ActionRegistry) -> dict[str, Schema]:
    types = registry.types()
    result: dict[str, Schema] = {
        "ActionType": {"enum": types, "description": "The action types this engine knows (GET /api/v1/actions)"},
    }
    cases = []
    for name in types:
        params = result[f"Parameters.{name}"] = _parameters(name, registry.get(name))
        then: Schema = {"properties": {"parameters": _ref(f"Parameters.{name}")}}
        if params.get("required"):
            # Left out, the parameters are {}: which lacks what is required.
            then["required"] = ["parameters"]
        cases.append({"if": {"properties": {"actionType": {"const": name}}, "required": ["actionType"]}, "then": then})
    result["ActionParameters"] = {"description": "The parameters each action type takes", "allOf": cases}
    return result


def definition_schema(registry: ActionRegistry | None = None) -> Schema:
    """The JSON Schema of a workflow definition, for the actions in `registry` (default: the built-in ones)."""
    registry = registry or ActionRegistry(builtin_actions())
    defs: dict[str, Schema] = {
        **_common_defs(),
        "Node": _node(),
        "Edge": _edge(),
        "RetryPolicy": _retry_policy(),
        "Orchestration": _orchestration(),
        "Compensation": _compensation(),
        "ActionNode": {
            "description": "Runs an action (the default kind)",
            "properties": {"actionType": _ref("ActionType")},
            "required": ["actionType"],
            "allOf": [_ref("ActionParameters")],
        },
        **_wait_nodes(),
        **_other_kind_nodes(),
        "SubworkflowParameters": _subworkflow_parameters(),
        **_action_defs(registry),
    }
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "$comment": "Generated from the engine's validation code (python -m dataworkflows.definition_schema); "
        "do not edit by hand.",
        "title": "DataWorkflows workflow definition",
        "description": "A workflow: nodes (actions and other kinds), the edges between them, retries and "
        "timeouts. A definition without edges runs its nodes in list order. The API validates more than "
        "this schema can say (edge targets, cycles, reachability, conditions and templates that compile).",
        "type": "object",
        "properties": {
            "id": _ref("Id"),
            "displayName": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK},
            "description": _nullable({"type": "string"}),
            "startNode": {
                **_ref("Id"),
                "description": "The node the run starts at (the first node, in a workflow without edges)",
            },
            "nodes": {"type": "array", "items": _ref("Node"), "minItems": 1, "maxItems": MAX_NODES},
            "orchestration": _ref("Orchestration"),
            "metadata": _nullable({"type": "object"}),
            "outputs": {
                **_nullable({"type": "object"}),
                "description": "The run's own outputs: templates over trigger, nodes and execution, rendered when "
                "the run succeeds",
            },
        },
        "required": ["id", "displayName", "startNode", "nodes"],
        "additionalProperties": False,
        "$defs": defs,
    }


def render(schema: Schema) -> str:
    """The schema file's text: two-space indents, a final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render(definition_schema())
    if not args:
        sys.stdout.write(text)
        return 0
    with open(args[0], "w", encoding="utf-8") as out:
        out.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The transform node kind's rules: `{"nodeType": "transform", "parameters": {"expression": "...",
"timeout": "PT5S"}}`. The expression is JavaScript over `trigger`, `nodes` and `execution`, evaluated
in the condition sandbox (dataworkflows.conditions); its value, as JSON, becomes the node's outputs
(an object as it is, any other value as `{"value": ...}`). Pure module.
"""

from __future__ import annotations

from typing import Any

from dataworkflows.definitions import parse_duration

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_TIMEOUT_SECONDS = 60.0
MAX_EXPRESSION_LENGTH = 16_384
# The largest value a transform may return, in bytes of JSON.
MAX_OUTPUT_BYTES = 1_000_000


def check_parameters(parameters: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Publish-time problems as (relative pointer, code, message). The expression's syntax is
    checked in the sandbox, with the edge conditions."""
    problems: list[tuple[str, str, str]] = []
    unknown = sorted(set(parameters) - {"expression", "timeout"})
    if unknown:
        problems.append((f"/{unknown[0]}", "unknown_field", "a transform takes only expression and timeout"))
    expression = parameters.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        problems.append(("/expression", "required", "a transform needs a JavaScript expression"))
    elif len(expression) > MAX_EXPRESSION_LENGTH:
        problems.append(("/expression", "too_long", f"at most {MAX_EXPRESSION_LENGTH} characters"))
    timeout = parameters.get("timeout")
    if timeout is not None:
        try:
            seconds = parse_duration(timeout)
        except ValueError as exc:
            problems.append(("/timeout", "duration", str(exc)))
        else:
            if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
                problems.append(("/timeout", "range", f"must be longer than zero and at most {MAX_TIMEOUT_SECONDS:g}s"))
    return problems


def timeout_seconds(parameters: dict[str, Any]) -> float:
    timeout = parameters.get("timeout")
    return DEFAULT_TIMEOUT_SECONDS if timeout is None else parse_duration(timeout)


def outputs_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"value": value}

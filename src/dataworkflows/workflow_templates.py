"""Workflow templates: stored, versioned definitions with declared parameters.

A template document:
    {"id", "displayName", "description",
     "parameters": [{"name", "type", "required", "default", "description"}],
     "definition": { ...a workflow definition whose strings may use [[ config.x ]] and [[ workflowId ]]... }}
Instantiation checks the config against the declared parameters (missing, extra and mistyped
values are each a problem with a pointer), renders the [[ ]] templates in the sandbox (a value that
is exactly one [[ expression ]] keeps its JSON type) and returns a definition to validate as usual.
Run-time {{ }} templates in the definition pass through untouched. Pure module.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from dataworkflows.json_depth import any_string
from dataworkflows.template_pool import TemplateRenderer
from dataworkflows.templating import (
    TemplateRenderError,
    any_template_chars,
    check_instantiation_template,
    check_template,
    too_much_template_text,
)
from dataworkflows.validation import ID_RULE, Problem, is_valid_id, join_pointer

ParameterType = Literal["string", "number", "integer", "boolean", "object", "array"]

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


class TemplateParameter(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    name: str
    type: ParameterType = "string"
    # Required unless it has a default (or says required: false, then it is null when omitted).
    required: bool | None = None
    default: Any = msgspec.UNSET
    description: str | None = None

    @property
    def is_required(self) -> bool:
        if self.required is not None:
            return self.required
        return self.default is msgspec.UNSET


class WorkflowTemplateDocument(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    id: str
    display_name: str
    definition: dict[str, Any]
    description: str | None = None
    parameters: tuple[TemplateParameter, ...] = ()


def _a(kind: str) -> str:
    """'an integer', 'a string' (it said "must be a integer")."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _matches(value: Any, kind: str) -> bool:
    if kind in ("number", "integer") and isinstance(value, bool):
        return False
    return isinstance(value, _PYTHON_TYPES[kind])


def validate_template(
    raw: Any, *, compile_templates: bool = True
) -> tuple[WorkflowTemplateDocument | None, list[Problem]]:
    """The parsed document and every problem with it. Its templates are compiled to check their syntax
    (seconds for the largest: call it off the event loop) unless `compile_templates` is false (a stored
    template, checked when it was stored); their text is bounded first (templating.MAX_TEMPLATE_CHARS)."""
    try:
        document = msgspec.convert(raw, WorkflowTemplateDocument)
    except msgspec.ValidationError as exc:
        message = str(exc)
        pointer = ""
        if " - at `$." in message:
            pointer = "/" + message.split(" - at `$.")[1].rstrip("`").replace(".", "/").replace("[", "/").replace(
                "]", ""
            )
        return None, [Problem(pointer, "invalid", message.split(" - at ")[0].replace("`", ""))]
    problems: list[Problem] = []
    if not is_valid_id(document.id):
        problems.append(Problem("/id", "format", f"must be {ID_RULE}"))
    seen: set[str] = set()
    for index, parameter in enumerate(document.parameters):
        pointer = f"/parameters/{index}"
        if not parameter.name.isidentifier():
            problems.append(Problem(f"{pointer}/name", "format", "must be an identifier (letters, digits, _)"))
        if parameter.name in seen:
            problems.append(Problem(f"{pointer}/name", "duplicate", f"parameter {parameter.name!r} is declared twice"))
        seen.add(parameter.name)
        has_default = parameter.default is not msgspec.UNSET and parameter.default is not None
        if has_default and not _matches(parameter.default, parameter.type):
            problems.append(Problem(f"{pointer}/default", "type", f"must be {_a(parameter.type)}"))
    if not compile_templates:
        return document, problems
    # Bounded before anything is compiled: 20,000 lookups (660 kB) took 10 s (a review).
    too_large = too_much_template_text(any_template_chars(document.definition), "a workflow template's strings")
    if too_large is not None:
        return document, [*problems, Problem("/definition", "too_large", too_large)]
    error = check_instantiation_template(document.definition)
    if error:
        problems.append(Problem("/definition", "template_syntax", error))
    problems.extend(_definition_problems(document.definition))
    return document, problems


# What every instantiation would lack (a placeholder fills a value, never a missing key).
_REQUIRED_KEYS = ("id", "displayName", "startNode", "nodes")


def _definition_problems(definition: dict[str, Any]) -> list[Problem]:
    """What no instantiation can mend, found when the template is stored (it was found at every
    instantiation): a definition's required keys, placeholders in keys, and run-time ({{ }})
    templates that do not compile (those without [[ ]] or [% %] in them: a placeholder may complete
    the others)."""
    problems = [
        Problem(f"/definition/{key}", "required", "is required (its value may be a [[ ]] placeholder)")
        for key in _REQUIRED_KEYS
        if key not in definition
    ]
    stack: list[tuple[str, Any]] = [("/definition", definition)]
    while stack:
        pointer, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((join_pointer(pointer, str(key)), item) for key, item in value.items())
            problems.extend(_placeholder_keys(pointer, value))
        elif isinstance(value, list):
            stack.extend((f"{pointer}/{index}", item) for index, item in enumerate(value))
        elif isinstance(value, str) and "[[" not in value and "[%" not in value:
            error = check_template(value)
            if error:
                problems.append(Problem(pointer, "template_syntax", error))
    return sorted(problems, key=lambda problem: problem.pointer)


def _placeholder_keys(pointer: str, value: dict[str, Any]) -> list[Problem]:
    """Keys that hold [[ ]] or [% %]: only values are rendered, so the key stayed as written and every
    instantiation failed on it ("unknown field [[ config.k ]]"). A placeholder fills a value, never
    a key (README "Workflow templates")."""
    return [
        Problem(
            join_pointer(pointer, key),
            "placeholder_in_key",
            "a [[ ]] placeholder fills a value, never an object's key (keys are not rendered)",
        )
        for key in value
        if "[[" in key or "[%" in key
    ]


def resolve_config(parameters: tuple[TemplateParameter, ...], config: Any) -> tuple[dict[str, Any], list[Problem]]:
    """The config with defaults applied, and every problem (missing, extra, mistyped)."""
    if not isinstance(config, dict):
        return {}, [Problem("/config", "type", "must be a JSON object")]
    declared = {p.name: p for p in parameters}
    problems = _undeclared(config, declared)
    values: dict[str, Any] = {}
    for name, parameter in declared.items():
        pointer = join_pointer("/config", name)
        if name in config:
            values[name] = config[name]
            problems.extend(_config_value_problems(config[name], parameter, pointer))
        elif parameter.is_required:
            problems.append(Problem(pointer, "required", "is required"))
        else:
            values[name] = None if parameter.default is msgspec.UNSET else parameter.default
    return values, problems


def _undeclared(config: dict[str, Any], declared: dict[str, TemplateParameter]) -> list[Problem]:
    expected = ", ".join(sorted(declared)) or "none"
    return [
        Problem(
            join_pointer("/config", key),
            "unknown_parameter",
            f"the template declares no parameter {key!r} (declared: {expected})",
        )
        for key in config
        if key not in declared
    ]


def _config_value_problems(value: Any, parameter: TemplateParameter, pointer: str) -> list[Problem]:
    if _has_braces(value):
        return [
            Problem(
                pointer,
                "template_injection",
                "config values must not contain { or } (two values side by side could form a run-time {{ }} template)",
            )
        ]
    if value is None and parameter.is_required:
        return [Problem(pointer, "required", "is required and must not be null")]
    if value is not None and not _matches(value, parameter.type):
        return [Problem(pointer, "type", f"must be {_a(parameter.type)}")]
    return []


def _has_braces(value: Any) -> bool:
    return any_string(value, lambda text: "{" in text or "}" in text)


async def instantiate(
    document: WorkflowTemplateDocument, workflow_id: str, config: Any, templates: TemplateRenderer
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The rendered workflow definition, or the problems that stopped it. Rendering goes through
    `templates`, so a template that loops without end fails its budget instead of stalling the
    caller (the API)."""
    problems: list[Problem] = []
    if not is_valid_id(workflow_id):
        problems.append(Problem("/workflowId", "format", f"must be {ID_RULE}"))
    values, config_problems = resolve_config(document.parameters, config)
    problems.extend(config_problems)
    if problems:
        return None, problems
    try:
        rendered = await templates.instantiate(document.definition, {"config": values, "workflowId": workflow_id})
    except TemplateRenderError as exc:
        # The field that failed (/definition/description), as a config or validation problem
        # names its own; it said /definition, whichever field it was. A render stopped by the
        # clock cannot say where it was.
        where = exc.attributes.get("path")
        return None, [Problem("/definition" + (where if isinstance(where, str) else ""), exc.code, exc.message)]
    if not isinstance(rendered, dict):
        return None, [Problem("/definition", "type", "the rendered definition is not a JSON object")]
    if rendered.get("id") != workflow_id:
        return None, [
            Problem("/definition/id", "mismatch", "the template's definition must use [[ workflowId ]] as its id")
        ]
    return rendered, []


def prefix_problems(problems: list[Problem], prefix: str) -> list[Problem]:
    return [Problem(prefix + p.pointer, p.code, p.message) for p in problems]


__all__ = [
    "TemplateParameter",
    "WorkflowTemplateDocument",
    "instantiate",
    "prefix_problems",
    "resolve_config",
    "validate_template",
]

"""Parameter templating: Jinja2's ImmutableSandboxedEnvironment with StrictUndefined.

Templates see trigger, nodes (node id -> outputs) and execution. A value that is exactly one
{{ expression }} keeps the expression's JSON type (a number stays a number); anything else
renders to a string. Reaching Python internals (``''.__class__``) is refused by the sandbox.
Pure module.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jinja2
import msgspec
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dataworkflows.errors import DataWorkflowsError

_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


class _JsonSandbox(ImmutableSandboxedEnvironment):
    """Template data is JSON: `trigger.items` means the key "items", not dict.items."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_env = _JsonSandbox(undefined=jinja2.StrictUndefined, autoescape=False)


class TemplateRenderError(DataWorkflowsError):
    """The parameter template could not be rendered."""

    code = "template_error"


def has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    return False


@functools.lru_cache(maxsize=2048)
def _compile_expression(expr: str) -> Any:
    return _env.compile_expression(expr, undefined_to_none=False)


@functools.lru_cache(maxsize=2048)
def _compile_template(source: str) -> jinja2.Template:
    return _env.from_string(source)


def check_template(value: Any) -> str | None:
    """None when every template in the value compiles, else the first error."""
    try:
        _walk_compile(value)
    except jinja2.TemplateError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _walk_compile(value: Any) -> None:
    if isinstance(value, str) and has_template(value):
        match = _WHOLE_EXPRESSION.match(value)
        if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
            _compile_expression(match.group("expr"))
        else:
            _compile_template(value)
    elif isinstance(value, dict):
        for item in value.values():
            _walk_compile(item)
    elif isinstance(value, list):
        for item in value:
            _walk_compile(item)


def render(value: Any, scope: dict[str, Any], path: str = "") -> Any:
    """Renders every template in a JSON value; TemplateRenderError names the failing path."""
    if isinstance(value, str):
        if not has_template(value):
            return value
        try:
            match = _WHOLE_EXPRESSION.match(value)
            if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
                result = _compile_expression(match.group("expr"))(**scope)
                if isinstance(result, jinja2.Undefined):
                    # Force StrictUndefined to raise its descriptive error.
                    str(result)
                return _to_json(result, path)
            return _compile_template(value).render(**scope)
        except TemplateRenderError:
            raise
        except Exception as exc:
            # Jinja raises plain Python errors at render time too (TypeError, ZeroDivisionError...):
            # all of them are the template's fault, never a reason to crash the run.
            where = f" at {path}" if path else ""
            raise TemplateRenderError(f"template error{where}: {type(exc).__name__}: {exc}") from exc
    if isinstance(value, dict):
        return {k: render(v, scope, f"{path}/{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope, f"{path}/{i}") for i, v in enumerate(value)]
    return value


def _to_json(value: Any, path: str) -> Any:
    try:
        return msgspec.to_builtins(value)
    except TypeError as exc:
        raise TemplateRenderError(
            f"template at {path or '/'} produced a {type(value).__name__}, which is not JSON"
        ) from exc

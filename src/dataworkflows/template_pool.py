"""Renders templates without letting one of them stall the process that asked.

A template that only looks values up (`{{ trigger.user }}`, `Hi {{ nodes.a.echo }}`) does work in
proportion to the data it copies, so it renders here, in process, in microseconds. Anything else
(loops, filters, calls, operators) renders in a sandboxed helper process (template_sandbox) under
the step budget of dataworkflows.templating; a render that runs past the wall-clock limit gets its
helper killed and fails with template_budget_exceeded. Meanwhile this process's event loop only
waits on a pipe: lease renewals, other runs and health checks go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from dataworkflows import templating
from dataworkflows.json_text import unencodable
from dataworkflows.sandbox_pool import SandboxBusy, SandboxGone, SandboxPool, SandboxTimeout
from dataworkflows.templating import TemplateBudgetExceeded, TemplateRefused, TemplateRenderError, TemplateUnavailable

# TemplatePool._in_process's answer for a value a helper must render.
_TO_A_HELPER = object()


class TemplateRenderer(Protocol):
    async def render(self, value: Any, scope: dict[str, Any]) -> Any: ...

    async def instantiate(self, value: Any, scope: dict[str, Any]) -> Any: ...


class _Answer(msgspec.Struct):
    id: int
    ok: bool
    value: Any = None
    code: str | None = None
    error: str | None = None
    # Document templates' errors: where in which template of the set.
    template: str | None = None
    line: int | None = None
    column: int | None = None
    # Values' errors: the JSON pointer of the value that failed.
    path: str | None = None


class TemplatePool:
    """Templates rendered in process when they only look values up, in helpers otherwise."""

    def __init__(
        self,
        size: int = 2,
        *,
        timeout_seconds: float = 5.0,
        max_steps: int = templating.DEFAULT_MAX_STEPS,
        memory_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.max_steps = max_steps
        self._pool = SandboxPool(
            "dataworkflows.template_sandbox",
            size=size,
            timeout_seconds=timeout_seconds,
            memory_bytes=memory_bytes,
            # An answer holds up to MAX_RENDERED_CHARS characters, each up to 6 bytes escaped.
            max_line_bytes=8 * templating.MAX_RENDERED_CHARS,
            # A fresh helper's start is not counted against the first render's time limit.
            warm_up={"op": "render", "value": "", "scope": {}},
        )
        self._decoder = msgspec.json.Decoder(_Answer)
        self.in_process = 0
        self.sandboxed = 0

    @property
    def helpers_killed(self) -> int:
        return self._pool.helpers_killed

    async def render(self, value: Any, scope: dict[str, Any]) -> Any:
        """Renders the run-time ({{ }}) templates in a JSON value."""
        if templating.is_lookup_only(value):
            rendered = self._in_process(templating.render, value, scope)
            if rendered is not _TO_A_HELPER:
                return rendered
        return await self._sandboxed("render", value, _narrowed(value, scope))

    async def instantiate(self, value: Any, scope: dict[str, Any]) -> Any:
        """Renders the [[ ]] templates of a workflow template."""
        if templating.is_lookup_only_instantiation(value):
            rendered = self._in_process(templating.render_instantiation, value, scope)
            if rendered is not _TO_A_HELPER:
                return rendered
        return await self._sandboxed("instantiate", value, scope)

    def _in_process(self, render: Callable[..., Any], value: Any, scope: dict[str, Any]) -> Any:
        """The value rendered here, or _TO_A_HELPER when its filters were given more than a lookup's
        work (templating.NotInProcess): a helper renders it then, to the same value."""
        try:
            rendered = render(value, scope, templating.RenderBudget(self.max_steps, in_process=True))
        except templating.NotInProcess:
            return _TO_A_HELPER
        self.in_process += 1
        return _storable(rendered)

    async def document(
        self, name: str, sources: dict[str, str], data: dict[str, Any], format: str, *, as_html: bool = False
    ) -> dict[str, Any]:
        """Renders the document template `name` of a set ({name: body}, for includes, imports and
        extends) in a helper: {"document", "contentType"} (dataworkflows.documents.render)."""
        request = {"op": "document", "name": name, "sources": sources, "data": data, "format": format}
        value = await self._call(request | {"asHtml": as_html, "maxSteps": self.max_steps})
        assert isinstance(value, dict)
        return value

    async def check_document(self, name: str, body: str) -> None:
        """Compiles a document template body in a helper; TemplateRenderError with its line if it cannot."""
        await self._call({"op": "check_document", "name": name, "value": body})

    async def _sandboxed(self, op: str, value: Any, scope: dict[str, Any]) -> Any:
        return await self._call({"op": op, "value": value, "scope": scope, "maxSteps": self.max_steps})

    async def _call(self, request: dict[str, Any]) -> Any:
        self.sandboxed += 1
        try:
            # What the request runs, without the data it runs on: a template that ran past its
            # limit runs in the suspects' lane (sandbox_pool).
            key = msgspec.json.encode({name: part for name, part in request.items() if name not in ("scope", "data")})
            line = await self._pool.call(request, key=key.decode())
        except SandboxBusy as exc:
            # Not run, so not the template's budget: too many of it wait now; the node retries.
            raise TemplateRefused(f"the template was not rendered: {exc}") from exc
        except SandboxTimeout as exc:
            raise TemplateBudgetExceeded(
                f"the template ran longer than {self._pool.timeout_seconds:g}s and was stopped"
            ) from exc
        except SandboxGone as exc:
            # Twice in a row (the pool retries once), or no helper could start: not the template's
            # fault as far as anyone can tell (a template's own memory blow-up is a MemoryError the
            # helper reports), so the node retries.
            raise TemplateUnavailable(f"no template helper could render: {exc}") from exc
        answer = self._decoder.decode(line)
        if answer.ok:
            return answer.value
        message = answer.error or "the template could not be rendered"
        where = {"template": answer.template, "line": answer.line, "column": answer.column, "path": answer.path}
        where = {key: value for key, value in where.items() if value is not None}
        if answer.code == TemplateBudgetExceeded.code:
            raise TemplateBudgetExceeded(message, **where)
        raise TemplateRenderError(message, **where)

    async def close(self) -> None:
        await self._pool.close()


def _narrowed(value: Any, scope: dict[str, Any]) -> dict[str, Any]:
    """The part of the scope the value's templates can read: node outputs can be large, and each
    sandboxed render copies what it is given through a pipe (and into the helper's memory)."""
    names, node_ids = templating.referenced_scope(value)
    narrowed = {name: scope[name] for name in names if name in scope}
    if node_ids is not None and isinstance(narrowed.get("nodes"), dict):
        outputs = narrowed["nodes"]
        narrowed["nodes"] = {node_id: outputs[node_id] for node_id in node_ids if node_id in outputs}
    return narrowed


def _storable(rendered: Any) -> Any:
    """What an in-process render made, refused as a helper's answer is (not_json) when it is no JSON
    value: a string literal's escape can make a lone surrogate ({{ '\\ud800' }}), which went on into
    parameters, a forEach's items, a webhook's payload or an instantiated definition and crashed a
    node task (engine_error) or an API request (500) further on (a review). One msgspec encode."""
    problem = unencodable(rendered)
    if problem is not None:
        raise TemplateRenderError(f"not JSON: {problem}")
    return rendered

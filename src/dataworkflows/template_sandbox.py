"""The template helper process: renders Jinja2 templates under a budget, one request a line.

Started by dataworkflows.template_pool with an empty environment, an empty working directory and
resource limits (as root: chrooted into that directory as nobody). The parent kills it when a
render runs past its wall-clock limit. Protocol: one JSON object per line on stdin,
{"id", "op": "render"|"instantiate", "value", "scope", "maxSteps"}, or for document templates
{"id", "op": "document", "name", "sources", "data", "format", "asHtml", "maxSteps"} and
{"id", "op": "check_document", "name", "value"}; one JSON answer per line on stdout,
{"id", "ok": true, "value"} or {"id", "ok": false, "code", "error"} (documents' errors add
"template", "line" and "column" where known; a value's render, the "path" of the value that failed).
"""

from __future__ import annotations

import contextlib
import encodings
import importlib
import pkgutil
from typing import Any

import msgspec

from dataworkflows import documents, templating
from dataworkflows.confinement import drop_privileges, serve


class Request(msgspec.Struct):
    id: int
    op: str
    value: Any = None
    scope: dict[str, Any] = {}
    maxSteps: int = templating.DEFAULT_MAX_STEPS
    name: str = ""
    sources: dict[str, str] = {}
    data: dict[str, Any] = {}
    format: str = "text"
    asHtml: bool = False


def _warm_up() -> None:
    """Import and compile what rendering reaches lazily, while the file system is still there."""
    # Modules Jinja's filters and globals import on first use (pprint, striptags, lipsum), and every
    # text codec ('x'.encode('idna') loads its module on first use).
    for module in ("pprint", "html", "json", "jinja2.constants", "jinja2.debug"):
        importlib.import_module(module)
    for codec in pkgutil.iter_modules(encodings.__path__):
        with contextlib.suppress(ImportError, LookupError):  # platform-only codecs (mbcs, oem)
            importlib.import_module(f"encodings.{codec.name}")
    scope = {"trigger": {"a": [3, 1, 2], "s": "x"}, "nodes": {}, "execution": {}, "attempt": 1}
    templating.render(
        "{% for i in trigger.a | sort %}{{ loop.index }}{{ i | string | upper }}{% endfor %}"
        "{{ trigger | tojson }}{{ trigger.s | replace('x', 'y') | title | trim }}{{ 1.5 | round }}"
        "{{ trigger.a | map('string') | join(',') }}{{ trigger.a | sum }}{{ '%d' % 1 }}",
        scope,
    )
    templating.render_instantiation("[[ config.x | default(1) ]]", {"config": {}, "workflowId": "w"})
    # Jinja imports its traceback rewriting (jinja2.debug) on the first error a template raises.
    for failing in ("{{ 1 / 0 }}", "{{ nope }}", "{% for i in range(3) %}{{ i.x.y }}{% endfor %}"):
        try:
            templating.render(failing, scope)
        except templating.TemplateRenderError:
            continue
    sources = {"base": "{% block b %}{% endblock %}", "page": "{% extends 'base' %}{% block b %}{{ x }}{% endblock %}"}
    documents.render("page", sources, {"x": "<b>"}, "html")
    documents.render("page", sources, {"x": "*a*"}, "markdown", as_html=True)
    for failing in ("{{ nope }}", "{% include 'other' %}", "{% for %}"):
        try:
            documents.render("main", {"main": failing}, {}, "text")
        except templating.TemplateRenderError:
            continue


def _document(request: Request, budget: templating.RenderBudget) -> Any:
    if request.op == "check_document":
        documents.check(request.name, str(request.value))
        return None
    return documents.render(
        request.name, request.sources, request.data, request.format, as_html=request.asHtml, budget=budget
    )


def _answer(request: Request) -> dict[str, Any]:
    budget = templating.RenderBudget(max_steps=request.maxSteps)
    try:
        if request.op == "render":
            value = templating.render(request.value, request.scope, budget)
        elif request.op == "instantiate":
            value = templating.render_instantiation(request.value, request.scope, budget)
        elif request.op in ("document", "check_document"):
            value = _document(request, budget)
        else:
            return {"id": request.id, "ok": False, "code": "bad_request", "error": f"unknown op {request.op!r}"}
    except templating.TemplateRenderError as exc:
        where: dict[str, Any] = {
            key: exc.attributes[key] for key in ("template", "line", "column", "path") if key in exc.attributes
        }
        return {"id": request.id, "ok": False, "code": exc.code, "error": exc.message, **where}
    except MemoryError:
        raise  # serve() retires a helper that ran out of memory
    except Exception as exc:
        # Anything else a template's output could provoke is the template's failure, answered as
        # such: a helper that died here would cost a 503 and a restart, twice (the pool retries).
        return {"id": request.id, "ok": False, "code": "template_error", "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"id": request.id, "ok": True, "value": value}


def main() -> None:
    _warm_up()
    drop_privileges()
    # Rendering leaves no state behind (every render gets a fresh budget and scope).
    serve(Request, _answer, intact=lambda: True)


if __name__ == "__main__":
    main()

"""Document templates: Jinja2 templates of a template set, rendered into a document.

The same sandboxed environment and budget of work as every other template (dataworkflows.templating):
loop iterations, calls (macros too) and filters are steps, and the rendered characters are counted.
A template may include, import or extend the other templates of its own set, by name, through an
in-memory loader: there is no file system, and a name outside the set is not found. HTML documents
are autoescaped. Pure module; the API renders through template_pool, in a helper process.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import types
from collections.abc import Callable
from typing import Any

import jinja2
import jinja2.meta
import markupsafe

from dataworkflows import templating
from dataworkflows.templating import RenderBudget, TemplateRenderError

CONTENT_TYPES = {
    "text": "text/plain; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
}
HTML = CONTENT_TYPES["html"]
FORMATS = tuple(CONTENT_TYPES)
MAX_BODY_CHARS = 200_000
# What one render may load: the bodies of its set's templates together (they travel to a helper).
MAX_SET_CHARS = 4_000_000

# The templates the render in progress may load: {name: source} of its set.
_sources: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("document_sources", default=None)


def _current(name: str) -> str | None:
    return (_sources.get() or {}).get(name)


class _SetLoader(jinja2.BaseLoader):
    """Loads the templates of the render's set from memory; anything else is not found."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source = _current(template)
        if source is None:
            raise jinja2.TemplateNotFound(template)
        # The file name is the template's name: tracebacks then point into templates by name. A compiled
        # template is reused while its source is the same (in any set: the same source compiles the same).
        return source, template, lambda: _current(template) == source


class _FreshModuleTemplate(jinja2.Template):
    """A template whose module (what `{% import %}` gives) is made anew for every import.

    Jinja keeps an imported template's module on its compiled template; compiled templates are
    reused across renders (and tenants) while their source is the same, so a mutable value at an
    imported template's top level (a namespace(), a cycler()) would carry one render's data into
    the next. Made per import, nothing outlives its render."""

    def _get_default_module(self, ctx: jinja2.runtime.Context | None = None) -> jinja2.environment.TemplateModule:
        if ctx is not None:
            keys = ctx.globals_keys - self.globals.keys()
            if keys:
                return self.make_module({k: ctx.parent[k] for k in keys})
        return self.make_module()


def _in_json_string(value: Any) -> Any:
    """How a `{{ }}` of a JSON template writes its value: as the inside of a JSON string (quotes,
    backslashes and control characters escaped), so that data cannot close the string and add or
    override fields (`"user": "{{ name }}"` with a name holding `", "admin": true`); booleans and
    None in JSON's words, objects and arrays as JSON (templating.as_text; a number is its digits).
    What is already safe is written as it is: `| tojson` (a value as JSON, quotes included), a
    macro's output, `| safe`."""
    if hasattr(value, "__html__"):
        return value
    # null, true, false, and objects and arrays as JSON, as any template writes a value into text.
    text = str(templating.as_text(value))
    # Safe where it is written: json.dumps escapes it for a JSON string (S704 is about HTML).
    return markupsafe.Markup(json.dumps(text, ensure_ascii=False)[1:-1])  # noqa: S704


def _environment(autoescape: bool, finalize: Callable[[Any], Any] | None = None) -> templating._JsonSandbox:
    env = templating._JsonSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        loader=_SetLoader(),
        cache_size=256,
        finalize=finalize,
    )
    env.template_class = _FreshModuleTemplate
    env.globals["range"] = templating.SAFE_RANGE
    return env


_plain = _environment(autoescape=False)
_escaped = _environment(autoescape=True)
# JSON documents: autoescaped for a JSON string (_in_json_string), so that macros' output, which
# autoescaping marks safe, is not escaped twice.
_json = _environment(autoescape=True, finalize=_in_json_string)
# `a ~ b` with a safe part (`| tojson`, a macro's output) escapes the other parts for a JSON string too.
_json.concat_escape = _in_json_string
_ENVIRONMENTS = {"html": _escaped, "json": _json}


def _column(source: str | None, line: int | None) -> int | None:
    """Jinja reports lines only: the column of the first tag on the line (else its first character)."""
    if source is None or line is None:
        return None
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return None
    text = lines[line - 1]
    starts = [i for i in (text.find("{{"), text.find("{%")) if i >= 0]
    if starts:
        return min(starts) + 1
    return len(text) - len(text.lstrip()) + 1


def _traceback_location(exc: BaseException, sources: dict[str, str]) -> tuple[str | None, int | None]:
    """The innermost template frame of an error raised while rendering (Jinja rewrites tracebacks
    so that template frames carry the template's file name, here its name, and line)."""
    found: tuple[str | None, int | None] = (None, None)
    tb: types.TracebackType | None = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in sources:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _located(message: str, name: str | None, line: int | None, sources: dict[str, str]) -> dict[str, Any]:
    return {
        "template": name,
        "line": line,
        "column": _column(sources.get(name or ""), line),
        "reason": message,
    }


def needed_sources(name: str, sources: dict[str, str], limit: int | None = None) -> dict[str, str]:
    """The templates of a set that rendering `name` can load: it, and those it includes, imports or
    extends, and theirs (by name, transitively). Shipping the whole set made a render fail as soon
    as unrelated templates made it pass MAX_SET_CHARS. A reference by expression (`{% include var %}`)
    may load any: then the whole set. A body that does not parse is kept (its render names the error).
    Parsing costs about 1.7 ms per kB of dense template: past `limit` characters it stops (what it
    returns is then over the limit, which the caller refuses). Callers use it only for a set over
    the limit, off the event loop (sources_for_render)."""
    needed: dict[str, str] = {}
    total = 0
    pending = [name]
    while pending:
        current = pending.pop()
        if current in needed or current not in sources:
            continue
        needed[current] = sources[current]
        total += len(sources[current])
        if limit is not None and total > limit:
            return needed
        try:
            found = list(jinja2.meta.find_referenced_templates(_plain.parse(sources[current], name=current)))
        except (jinja2.TemplateSyntaxError, RecursionError, MemoryError, ValueError, TypeError, SyntaxError):
            continue
        if any(ref is None for ref in found):
            return dict(sources)
        pending.extend(ref for ref in found if isinstance(ref, str))
    return needed


async def sources_for_render(name: str, sources: dict[str, str]) -> dict[str, str]:
    """What a render of `name` ships to its helper: the whole set while it is within MAX_SET_CHARS
    (nothing to parse), else only the templates it loads (needed_sources, in a thread: the worker's
    and the API's event loops go on). Over MAX_SET_CHARS still: the caller refuses the render."""
    if sum(len(body) for body in sources.values()) <= MAX_SET_CHARS:
        return sources
    return await asyncio.to_thread(needed_sources, name, sources, MAX_SET_CHARS)


def check(name: str, body: str) -> None:
    """Compiles a template body; TemplateRenderError with its name, line and column if it cannot."""
    try:
        _plain.compile(body, name=name, filename=name)
    except jinja2.TemplateSyntaxError as exc:
        where = _located(exc.message or str(exc), name, exc.lineno, {name: body})
        raise TemplateRenderError(_describe(where), **where) from None
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError, SyntaxError) as exc:
        # SyntaxError: Python's own parser gave up (about 200 nested filter calls).
        raise TemplateRenderError(
            f"template {name!r} cannot be compiled: {type(exc).__name__}", template=name
        ) from None


def _describe(where: dict[str, Any]) -> str:
    place = f"template {where['template']!r}" if where.get("template") else "the template"
    if where.get("line"):
        place += f", line {where['line']}"
        if where.get("column"):
            place += f", column {where['column']}"
    return f"{place}: {where['reason']}"


def render(
    name: str,
    sources: dict[str, str],
    data: dict[str, Any],
    format: str,
    *,
    as_html: bool = False,
    budget: RenderBudget | None = None,
) -> dict[str, Any]:
    """Renders the template `name` of a set ({name: body}) with `data` as its variables:
    {"document", "contentType"}. Errors are TemplateRenderError (TemplateBudgetExceeded past the
    budget) with the template's name, line and column where known."""
    budget = budget or RenderBudget()
    env = _ENVIRONMENTS.get(format, _plain)
    budget_token = templating._budget.set(budget)
    sources_token = _sources.set(sources)
    try:
        document = templating._bounded(env.get_template(name).generate(data), budget)
        return _finish(name, document, format, as_html)
    except TemplateRenderError as exc:
        raise _with_location(exc, type(exc), exc.message, name, sources) from None
    except jinja2.TemplateNotFound as exc:
        message = (
            f"template {exc.name!r} is not in this template set; templates may include, import or extend "
            "only templates of their own set, by name"
        )
        raise _with_location(exc, TemplateRenderError, message, name, sources) from None
    except jinja2.TemplateSyntaxError as exc:
        where = _located(exc.message or str(exc), exc.name or name, exc.lineno, sources)
        raise TemplateRenderError(_describe(where), **where) from None
    except RecursionError as exc:
        message = "the template recursed too deeply (includes or macros calling themselves)"
        raise _with_location(exc, templating.TemplateBudgetExceeded, message, name, sources) from None
    except MemoryError as exc:
        # A width or count no budget sees ahead (tojson's indent) ran the process out of memory: the
        # template's budget, as for a node's parameters (templating), not a "MemoryError: " failure.
        message = "the template ran out of memory"
        raise _with_location(exc, templating.TemplateBudgetExceeded, message, name, sources) from None
    except Exception as exc:
        # Jinja raises plain Python errors at render time (TypeError, ZeroDivisionError...): the
        # template's fault, never a crash.
        message = f"{type(exc).__name__}: {exc}"
        raise _with_location(exc, TemplateRenderError, message, name, sources) from None
    finally:
        _sources.reset(sources_token)
        templating._budget.reset(budget_token)


def _with_location(
    exc: BaseException, cls: type[TemplateRenderError], message: str, name: str, sources: dict[str, str]
) -> TemplateRenderError:
    if getattr(exc, "template", None) is not None:
        return exc if isinstance(exc, cls) else cls(message, **getattr(exc, "attributes", {}))
    template, line = _traceback_location(exc, sources)
    where = _located(message, template or name, line, sources)
    return cls(_describe(where), **where)


def _finish(name: str, document: str, format: str, as_html: bool) -> dict[str, Any]:
    if "\x00" in document:
        # PostgreSQL's text and jsonb hold no NUL: a run could not store the document (the preview
        # could show it), so no render makes one.
        line = document.count("\n", 0, document.index("\x00")) + 1
        message = "the rendered document contains a NUL character (U+0000), which cannot be stored"
        raise TemplateRenderError(f"template {name!r}: {message}", template=name, line=line, reason=message)
    if format == "json":
        try:
            json.loads(document, parse_constant=_not_json, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            message = (
                f"the rendered document is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} of the document"
            )
            raise TemplateRenderError(
                f"template {name!r}: {message}", template=name, line=exc.lineno, column=exc.colno, reason=message
            ) from None
        except RecursionError:
            # Said as what it is about, not as Python's "maximum recursion depth exceeded".
            message = "the rendered document is not acceptable JSON: it nests deeper than a JSON parser goes"
            raise TemplateRenderError(f"template {name!r}: {message}", template=name, reason=message) from None
        except ValueError as exc:
            # NaN/Infinity, a number past Python's digit limit, a key twice in an object.
            said = str(exc) if isinstance(exc, _DuplicateKey) else f"{type(exc).__name__}: {str(exc)[:200]}"
            message = f"the rendered document is not acceptable JSON: {said}"
            raise TemplateRenderError(f"template {name!r}: {message}", template=name, reason=message) from None
    if format == "markdown" and as_html:
        html = _markdown().render(document)
        if len(html) > templating.MAX_RENDERED_CHARS:
            # Reference links multiply: the HTML is bounded like any rendered document.
            message = f"the document as HTML is longer than {templating.MAX_RENDERED_CHARS} characters"
            raise TemplateRenderError(f"template {name!r}: {message}", template=name, reason=message)
        return {"document": html, "contentType": HTML}
    return {"document": document, "contentType": CONTENT_TYPES[format]}


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose key comes twice is refused: which value counts depends on the reader's parser."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(f"the key {json.dumps(key, ensure_ascii=False)[:100]} appears twice in one object")
        seen[key] = value
    return seen


def _markdown() -> Any:
    global _md
    if _md is None:
        from markdown_it import MarkdownIt

        # CommonMark with raw HTML disabled: HTML in the Markdown source comes out escaped. Tables
        # (GitHub's pipe tables) too: the sample brief's milestones came out as a paragraph of pipes.
        _md = MarkdownIt("commonmark", {"html": False}).enable("table")
    return _md


_md: Any = None

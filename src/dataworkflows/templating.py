"""Parameter templating: Jinja2's ImmutableSandboxedEnvironment with StrictUndefined.

Run-time templates ({{ ... }}) see trigger, nodes (node id -> outputs), errors (node id -> a failed
node's error), execution and attempt.
A value that is exactly one {{ expression }} keeps the expression's JSON type (a number stays a
number); anything else renders to a string. Reaching Python internals (``''.__class__``) is refused
by the sandbox. Workflow templates use the same machinery with [[ ... ]] delimiters at
instantiation time. Pure module.

Every render runs under a budget of work (RenderBudget): loop iterations and calls (macros,
methods, the range global) count as steps, integers may not grow past MAX_INT_BITS, and the
characters a render produces are counted across the whole value, not per string. Past the budget,
TemplateBudgetExceeded. The budget is deterministic; the wall-clock limit and the isolation that
keep a worker's event loop responsive come from rendering in helper processes (template_pool).
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
from typing import Any

import jinja2
import markupsafe
import msgspec
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dataworkflows.errors import DataWorkflowsError


class TemplateRenderError(DataWorkflowsError):
    """The parameter template could not be rendered."""

    code = "template_error"


class TemplateUnavailable(TemplateRenderError):
    """No template helper could render right now (it could not start, or died): worth a retry."""

    code = "template_unavailable"


class TemplateRefused(TemplateUnavailable):
    """Not rendered: the template ran past its limit recently and too many of it wait for the
    sandbox's suspects' lane (dataworkflows.sandbox_pool.SandboxBusy). A node's parameters retry it
    (a TemplateUnavailable); a run's outputs fail as its timeout would."""


class TemplateBudgetExceeded(TemplateRenderError):
    """The template did more work than a render may (steps, integer size or time)."""

    code = "template_budget_exceeded"


MAX_RENDERED_CHARS = 1_000_000
MAX_RANGE = 10_000
# Loop iterations plus calls in one render. A document looping over 1,000 rows of 50 columns
# takes about 100,000; a million takes roughly a second of CPU in a helper.
DEFAULT_MAX_STEPS = 1_000_000
# About 308 decimal digits, the range of a double: enough for any real number in a workflow;
# (10**64)**64 is far past it.
MAX_INT_BITS = 1024


class NotInProcess(TemplateRenderError):
    """An in-process render would do more than a lookup's work (its filters given more than
    MAX_IN_PROCESS_FILTER_CHARS, or arrays and objects past MAX_IN_PROCESS_VALUE_CHARS to write): a
    helper renders the value instead (its answer is the same; only where the work is done differs).
    Only a RenderBudget(in_process=True) raises it, and its caller (TemplatePool) takes it."""

    code = "template_not_in_process"


# What the filters of one in-process render (is_lookup_only values, rendered by the worker or the
# API) may be given in all, in characters: their work stays about a lookup's, and a template that
# would do more (`{{ trigger.big | upper | length }}` written a thousand times) goes to a helper,
# where a render's time is limited.
MAX_IN_PROCESS_FILTER_CHARS = MAX_RENDERED_CHARS
# The largest array or object (its JSON's characters, about) an in-process render writes: making it
# JSON is a walk in Python (its size, its numbers' finiteness, its conversion), 0.2 s of the event
# loop for 250,000 empty arrays (a review); larger, a helper renders the value, where that walk is
# not the worker's.
MAX_IN_PROCESS_VALUE_CHARS = 65_536


class RenderBudget:
    """The work one render may do. Not thread-safe: one budget per render call. `in_process`: the
    render runs in the caller's process, so its filters' input is limited too (NotInProcess)."""

    __slots__ = ("chars", "filter_chars", "max_chars", "max_steps", "steps", "value_chars")

    def __init__(
        self, max_steps: int = DEFAULT_MAX_STEPS, max_chars: int = MAX_RENDERED_CHARS, *, in_process: bool = False
    ) -> None:
        self.max_steps = max_steps
        self.max_chars = max_chars
        self.steps = 0
        self.chars = 0
        self.filter_chars: int | None = MAX_IN_PROCESS_FILTER_CHARS if in_process else None
        # What is left of the arrays and objects an in-process render may write, in all: each is a walk
        # in Python, and a value just under the limit written fifteen times (fifteen parameters, or
        # fifteen times in one text) held the event loop 15 times as long (a review).
        self.value_chars: int | None = MAX_IN_PROCESS_VALUE_CHARS if in_process else None

    def written_value(self, value: Any) -> None:
        """Charges an array or object an in-process render writes (nothing for a helper's)."""
        if self.value_chars is None or not isinstance(value, (list, tuple, dict)):
            return
        self.value_chars -= _estimate(value, max(self.value_chars, 0) + 1)
        if self.value_chars < 0:
            raise NotInProcess("the template writes more arrays and objects than an in-process render takes")

    def in_reach(self, value: Any) -> None:
        """An in-process render (nothing for a helper's) hands an array or object of more than
        MAX_IN_PROCESS_VALUE_CHARS to a helper before it walks it any further: a filter's result is
        measured up to MAX_RENDERED_CHARS, and a text filter's input up to its budget, both walks in
        Python (`{{ trigger.l | default(0) }}` of 300,000 empty arrays held the event loop ~60 ms,
        `| string` of 600,000 ~130 ms, before the value's writing handed it over: a review)."""
        if (
            self.filter_chars is not None
            and isinstance(value, (list, tuple, dict))
            and _estimate(value, MAX_IN_PROCESS_VALUE_CHARS) > MAX_IN_PROCESS_VALUE_CHARS
        ):
            raise NotInProcess("the template's filters were given more than an in-process render takes")

    def filter_input(self, name: str, value: Any) -> None:
        """Charges a filter's input to an in-process render (nothing for a helper's): its size, or
        one for a filter that does not go through its input."""
        if self.filter_chars is None:
            return
        weight = _FILTER_WEIGHTS.get(name, 1)
        if name in _CONSTANT_TIME_FILTERS:
            self.filter_chars -= 1
        elif isinstance(value, (list, tuple, dict)):
            # Written as text (as_text), so no larger than a value an in-process render writes.
            self.in_reach(value)
            self.filter_chars -= _estimate(value, max(self.filter_chars, 0) // weight + 1) * weight
        elif isinstance(value, str):
            self.filter_chars -= len(value) * weight
        else:
            self.filter_chars -= 1
        if self.filter_chars < 0:
            raise NotInProcess("the template's filters were given more than an in-process render takes")

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise TemplateBudgetExceeded(
                f"the template ran more than {self.max_steps:,} loop iterations and calls; "
                "it was stopped (template_budget_exceeded)"
            )

    def produce(self, chars: int) -> None:
        self.chars += chars
        if self.chars > self.max_chars:
            raise _too_big("the rendered value")


# The budget of the render in progress (set by _Renderer.render; a render never awaits, so a
# context variable is enough to keep concurrent renders apart).
_budget: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar("template_budget", default=None)


def _step() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.step()


def _check_int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        # Not "grew": the integer may be a trigger's, only looked up.
        raise TemplateBudgetExceeded(f"an integer in the template is larger than {MAX_INT_BITS} bits")
    return value


_WIDE_FORMAT = re.compile(r"[%{][^%{}]*?\d{7,}")


def _estimate(value: Any, limit: int) -> int:
    """Roughly how many characters a value serializes to, stopping once past `limit` (shared
    references count every time, which is what serializing them costs). A string is its length:
    rendered, it is its characters; only a string inside a list or object gains quotes."""
    if isinstance(value, str):
        return len(value)
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2 + len(item)
            if len(item) > limit:
                # As for a list: copying a million keys onto the stack was its own walk (a review).
                return limit + 1
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            total += 2 + len(item)
            if len(item) > limit:
                return limit + 1
            stack.extend(item)
        else:
            total += 8
        if total > limit:
            return total
    return total


def _too_big(what: str) -> TemplateBudgetExceeded:
    # Output past the size limit is part of the render's budget (README "Template budget").
    return TemplateBudgetExceeded(f"{what} would exceed {MAX_RENDERED_CHARS} characters")


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to a join that refuses oversized results (Jinja's own str_join does not),
    and makes every loop iteration a counted step (nested loops multiply, so each level counts)."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._loop_bodies = {*getattr(self, "_loop_bodies", ()), id(node.body)}
        if node.test is not None:
            # A filtered loop (`for x in xs if test`) skips its body for rejected items: count every
            # item it looks at, not only those it keeps.
            counted = nodes.Call(nodes.EnvironmentAttribute("counted"), [node.iter], [], None, None, lineno=node.lineno)
            node = nodes.For(node.target, counted, node.body, node.else_, node.test, node.recursive, lineno=node.lineno)
        super().visit_For(node, frame)

    def blockvisit(self, body: Any, frame: Frame) -> None:
        if id(body) in getattr(self, "_loop_bodies", ()):
            # A direct call at the top of each iteration: going through the sandbox's call()
            # would cost more than the iteration itself.
            self.writeline("environment.loop_step()")
        super().blockvisit(body, frame)

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        """Jinja writes an output whose value it can compute while compiling as a constant, running
        its filters and operators then: outside every render budget, in the process that compiles
        (the API's, at publish). Only plain text is constant here; everything else runs at render
        time, under the budget (and, for untrusted templates, in the sandbox helper)."""
        if not isinstance(node, nodes.TemplateData):
            raise nodes.Impossible()
        return str(super()._output_child_to_const(node, frame, finalize))

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _MissingKey(jinja2.StrictUndefined):
    """A key a JSON object lacks whose name is one of dict's methods (`trigger.items`, `trigger.get`):
    undefined like any missing key (`default()` applies; printing or testing it fails), not the
    method, whose text (a memory address) was rendered and which tested true; called, it is still
    the method (`row.items()`, `trigger.get('k', 1)`)."""

    __slots__ = ("_method",)
    # What the sandbox and Jinja's Context.call look up before a call (an undefined value's
    # attributes raise).
    unsafe_callable = False
    alters_data = False
    jinja_pass_arg = None

    def __init__(self, method: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(*args, **kwargs)


class _JsonSandbox(ImmutableSandboxedEnvironment):
    """Template data is JSON: `trigger.items` means the key "items", not dict.items. Operators that
    can build huge values ('a' * 10**9, 10**10**10) are checked, which also stops Jinja from
    folding such constants at compile time."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, **options: Any) -> None:
        # No constant folding while compiling (Jinja's optimizer; and see _BoundedCodeGenerator):
        # a constant expression's filters ran at compile time, outside every budget, once for each
        # filter around them (a template of 290 kB took 50 s to compile).
        options.setdefault("optimized", False)
        # A value written into text is written as JSON writes it (as_text), unless the caller
        # writes it otherwise (JSON documents escape it for a JSON string).
        if options.get("finalize") is None:
            options["finalize"] = as_text
        super().__init__(**options)
        # Padding filters take a width: the cheapest way to build a huge string.
        for name in ("center", "indent", "wordwrap", "format"):
            self.filters.pop(name, None)
        # Filters are called directly by compiled templates, not through call(): they count as
        # steps here, and their results are bounded like calls'.
        self.filters = {name: _bounded_filter(name, function) for name, function in self.filters.items()}
        for name in ("join", "string", "urlencode"):
            self.filters[name] = _text_filter(self.filters[name], name)
        for name in _STRING_FILTERS:
            self.filters[name] = _text_input(self.filters[name])
        self.filters["xmlattr"] = _xmlattr_values(self.filters["xmlattr"])
        # Outermost: an in-process render's filter is charged its input as given, before the text
        # filters write a value that is not a string as JSON (as_text, which goes through all of
        # it: charged after that, `{{ trigger.list | upper }}` wrote a large list, then went to a
        # helper, which wrote it again).
        for name in (*_LINEAR_FILTERS, *_DEFAULT_FILTERS):
            self.filters[name] = _charged_filter(name, self.filters[name])

    def counted(self, iterable: Any) -> Any:
        """Yields the items of a filtered loop, each a step."""
        for item in iterable:
            _step()
            yield item

    def loop_step(self) -> None:
        """Called at the top of every loop iteration."""
        _step()

    def bounded_concat(self, parts: Any) -> str:
        # `a ~ b` writes its values as text as an output does (as_text: null, not None).
        pieces = [part if hasattr(part, "__html__") else str(as_text(part)) for part in parts]
        if sum(len(piece) for piece in pieces) > MAX_RENDERED_CHARS:
            raise _too_big("a concatenation")
        if self.autoescape and any(hasattr(piece, "__html__") for piece in pieces):
            # As Jinja's own join with autoescaping on: what is safe (a macro's output, `| safe`,
            # `| tojson`) stays as it is, and the rest is escaped once, the environment's way.
            escape = self.concat_escape
            return markupsafe.Markup("").join(p if hasattr(p, "__html__") else escape(p) for p in pieces)
        return "".join(pieces)

    # How `~` escapes a part that is not safe, with autoescaping on (HTML's way; JSON documents
    # escape for a JSON string).
    concat_escape: Callable[[Any], Any] = staticmethod(markupsafe.escape)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        for argument in (*args, *kwargs.values()):
            if isinstance(argument, int) and not isinstance(argument, bool) and abs(argument) > MAX_RENDERED_CHARS:
                raise TemplateBudgetExceeded(
                    f"a number argument above {MAX_RENDERED_CHARS} is not allowed in templates"
                )
        # The sandbox wraps str.format; the format string is the wrapped method's __self__.
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        is_format = getattr(__obj, "__name__", "") in ("format", "format_map")
        if is_format and isinstance(owner, str) and _WIDE_FORMAT.search(owner):
            raise _too_big("a formatted string")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, (str, list, tuple, dict)) and _estimate(result, MAX_RENDERED_CHARS) > MAX_RENDERED_CHARS:
            raise _too_big("a call result")
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict):
            if attribute in obj:
                return obj[attribute]
            found = super().getattr(obj, attribute)
            if callable(found) and not isinstance(found, jinja2.Undefined):
                # A missing key named like one of dict's methods: missing, as any other key.
                return _MissingKey(found, hint=None, obj=obj, name=attribute)
            return found
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _step()
        if operator == "**":
            return _bounded_power(left, right)
        if operator == "*":
            return _bounded_product(left, right)
        if operator == "%":
            return _bounded_format(left, right)
        return _bounded_sum(left, right)


def _bounded_power(left: Any, right: Any) -> Any:
    """An integer power whose result would pass MAX_INT_BITS is the budget's refusal, before it is
    computed (0, 1 and -1 to any power stay small). Anything else is cheap: a float power overflows
    (an error) or is infinite (refused as a result). Exponents were capped at 64, which refused
    `2 ** 65` and `10 ** 100`, integers well within the budget the README promises."""
    if (
        _is_int(left)
        and _is_int(right)
        and right > 0
        and abs(left) > 1
        and (abs(left).bit_length() - 1) * right >= MAX_INT_BITS
    ):
        raise TemplateBudgetExceeded(f"an integer in the template would grow past {MAX_INT_BITS} bits")
    return left**right


def _bounded_product(left: Any, right: Any) -> Any:
    if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise TemplateBudgetExceeded(f"an integer in the template would grow past {MAX_INT_BITS} bits")
    # A repeated sequence: 'ab' * n and n * 'ab' alike.
    for sequence, count in ((left, right), (right, left)):
        sized = isinstance(sequence, (str, list, tuple)) and isinstance(count, int)
        if sized and _repeated_size(sequence, count) > MAX_RENDERED_CHARS:
            raise _too_big("a template value")
    return left * right


def _repeated_size(sequence: str | list[Any] | tuple[Any, ...], count: int) -> int:
    """What _estimate would say of `sequence * count`, without building it: a string's characters,
    or a list's items and separators with one pair of brackets (the only part not repeated)."""
    if count <= 0:
        return 0
    size = _estimate(sequence, MAX_RENDERED_CHARS)
    if isinstance(sequence, str):
        return size * count
    return 2 + (size - 2) * count


def _bounded_format(left: Any, right: Any) -> Any:
    if isinstance(left, str) and _WIDE_FORMAT.search(left):
        raise _too_big("a formatted string")
    result = left % right
    if isinstance(result, str) and len(result) > MAX_RENDERED_CHARS:
        raise _too_big("a formatted string")
    return result


def _bounded_sum(left: Any, right: Any) -> Any:
    if _estimate(left, MAX_RENDERED_CHARS) + _estimate(right, MAX_RENDERED_CHARS) > MAX_RENDERED_CHARS:
        raise _too_big("a template value")
    return _check_int(left + right)


# Filters whose int argument sets how much they build (slice(3000000) makes three million lists).
_COUNT_FILTERS = frozenset({"slice", "batch"})


def _bounded_filter(name: str, function: Any) -> Any:
    @functools.wraps(function)  # keeps Jinja's pass_context/pass_environment marker
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _step()
        if name in _COUNT_FILTERS:
            for argument in (*args[1:], *kwargs.values()):
                if _is_int(argument) and abs(argument) > MAX_RANGE:
                    raise TemplateBudgetExceeded(f"{name}() takes counts up to {MAX_RANGE} in templates")
        result = function(*args, **kwargs)
        budget = _budget.get()
        if budget is not None:
            budget.in_reach(result)
        if isinstance(result, (str, list, tuple, dict)) and _estimate(result, MAX_RENDERED_CHARS) > MAX_RENDERED_CHARS:
            raise _too_big(f"the {name} filter's result")
        return _check_int(result)

    return bounded


def _charged_filter(name: str, function: Any) -> Any:
    """The filter, charging its input to an in-process render's budget (RenderBudget.filter_input)."""
    # The filter's first argument is Jinja's context or environment when it asks for one.
    at = 0 if getattr(function, "jinja_pass_arg", None) is None else 1

    @functools.wraps(function)  # keeps Jinja's pass_context/pass_environment marker
    def charged(*args: Any, **kwargs: Any) -> Any:
        budget = _budget.get()
        if budget is not None and len(args) > at:
            budget.filter_input(name, args[at])
        return function(*args, **kwargs)

    return charged


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The most characters a definition's (a workflow template's, a webhook's payloadTemplate's) templates
# may hold in all: each is compiled when it is stored, at about 5 ms per kB (a 1 MB body of lookups
# took 4.8 s), and a body under the API's size limit could hold 20,000 of them (10 s).
MAX_TEMPLATE_CHARS = 131_072


class _Renderer:
    def __init__(self, env: jinja2.Environment, start: str, end: str, block: str) -> None:
        self.env = env
        self.markers = (start, block)
        self.whole = re.compile(rf"^\s*{re.escape(start)}(?P<expr>.*?){re.escape(end)}\s*$", re.DOTALL)
        self.start, self.end = start, end
        self.compile_expression = functools.lru_cache(maxsize=512)(self._compile_expression)
        self.compile_template = functools.lru_cache(maxsize=512)(env.from_string)

    def _compile_expression(self, expr: str) -> Any:
        return self.env.compile_expression(expr, undefined_to_none=False)

    def has_template(self, value: Any) -> bool:
        if isinstance(value, str):
            start, block = self.markers
            return start in value or block in value
        if isinstance(value, dict):
            return any(self.has_template(v) for v in value.values())
        if isinstance(value, list):
            return any(self.has_template(v) for v in value)
        return False

    def _whole_expression(self, value: str) -> str | None:
        match = self.whole.match(value)
        if match and self.start not in match.group("expr") and self.end not in match.group("expr"):
            expr = match.group("expr")
            # Jinja's whitespace control (`{{- x -}}`, `{{+ x }}`) trims text around the tag, which a
            # whole value has none of: not part of the expression (it was taken for `- x -`, a
            # syntax error at publish).
            if expr[:1] in ("-", "+"):
                expr = expr[1:]
            if expr[-1:] == "-":
                expr = expr[:-1]
            return expr
        return None

    def check(self, value: Any) -> str | None:
        try:
            self._walk_compile(value)
        except (jinja2.TemplateError, TemplateRenderError) as exc:
            return f"{type(exc).__name__}: {exc}"
        except (RecursionError, MemoryError, ValueError, TypeError, OverflowError, SyntaxError) as exc:
            # The compiler itself gave up (e.g. thousands of nested parentheses; Python's parser
            # takes fewer than 200 nested calls: SyntaxError).
            return f"the template cannot be compiled: {type(exc).__name__}"
        return None

    def _walk_compile(self, value: Any) -> None:
        if isinstance(value, str) and self.has_template(value):
            expr = self._whole_expression(value)
            if expr is not None:
                self.compile_expression(expr)
            else:
                self.compile_template(value)
        elif isinstance(value, dict):
            for item in value.values():
                self._walk_compile(item)
        elif isinstance(value, list):
            for item in value:
                self._walk_compile(item)

    def render(self, value: Any, scope: dict[str, Any], budget: RenderBudget) -> Any:
        token = _budget.set(budget)
        try:
            return self._render(value, scope, "", budget)
        finally:
            _budget.reset(token)

    def _render(self, value: Any, scope: dict[str, Any], path: str, budget: RenderBudget) -> Any:
        if isinstance(value, str):
            if not self.has_template(value):
                return value
            try:
                expr = self._whole_expression(value)
                if expr is not None:
                    result = self.compile_expression(expr)(**scope)
                    if isinstance(result, jinja2.Undefined):
                        str(result)  # StrictUndefined raises its descriptive error here
                    if isinstance(result, _LAZY):
                        # The array it yields, as in text (it failed as "not JSON"); each item a
                        # step, so an endless generator ends at the step budget.
                        result = _drained(result)
                    budget.written_value(result)
                    budget.produce(_estimate(result, budget.max_chars - budget.chars))
                    return _to_json(_check_int(result), path)
                return _bounded(self.compile_template(value).generate(**scope), budget)
            except TemplateRenderError as exc:
                # Which value failed (a JSON pointer into the rendered value), for a caller that
                # points at it: a budget's refusal does not say, and an instantiation's problem
                # pointed at the whole definition.
                _located(exc, path)
                raise
            except MemoryError:
                # A width or count no budget sees ahead (tojson's indent) ran the process out of
                # memory: the template's budget, as a string past the size limit is.
                where = f" at {path}" if path else ""
                raise TemplateBudgetExceeded(f"the template{where} ran out of memory", path=path) from None
            except Exception as exc:
                # Jinja raises plain Python errors at render time too (TypeError,
                # ZeroDivisionError, RecursionError...): all are the template's fault, never a
                # reason to crash.
                where = f" at {path}" if path else ""
                raise TemplateRenderError(f"template error{where}: {type(exc).__name__}: {exc}", path=path) from exc
        if isinstance(value, dict):
            return {k: self._render(v, scope, f"{path}/{_pointer_token(k)}", budget) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, scope, f"{path}/{i}", budget) for i, v in enumerate(value)]
        return value

    def is_lookup_only(self, value: Any) -> bool:
        """Whether every template in the value only looks values up (`{{ trigger.a }}`,
        `Hi {{ nodes.x['y'] }}`), through at most a few linear filters (`{{ trigger.a | upper }}`,
        `{{ trigger.a | default('-') }}`: _LINEAR_FILTERS): no loops, calls, other filters or
        operators. Such a template does work proportional to the data it copies, so it is safe to
        render anywhere."""
        if isinstance(value, str):
            return not self.has_template(value) or self._lookup_only_source(value)
        if isinstance(value, dict):
            return all(self.is_lookup_only(v) for v in value.values())
        if isinstance(value, list):
            return all(self.is_lookup_only(v) for v in value)
        return True

    @functools.lru_cache(maxsize=2048)  # noqa: B019 - two module-level renderers, never collected
    def references(self, source: str) -> tuple[frozenset[str], frozenset[str] | None]:
        try:
            return _references(self.env.parse(source))
        except Exception:  # a syntax error: the render reports it; ship everything meanwhile
            return (
                frozenset(
                    {"trigger", "nodes", "errors", "execution", "compensation", "attempt", "config", "workflowId"}
                ),
                None,
            )

    @functools.lru_cache(maxsize=2048)  # noqa: B019 - two module-level renderers, never collected
    def _lookup_only_source(self, source: str) -> bool:
        try:
            tree = self.env.parse(source)
        except Exception:  # a syntax error: let the full renderer report it
            return False
        return all(_is_lookup_node(node) for node in tree.find_all(nodes.Node))


def _pointer_token(key: Any) -> str:
    # RFC 6901: a key with "/" or "~" in it is still one token of the pointer.
    return str(key).replace("~", "~0").replace("/", "~1")


def _located(exc: TemplateRenderError, path: str) -> None:
    """Marks where in the value the error arose, unless a deeper value did already."""
    if "path" not in exc.attributes:
        exc.attributes["path"] = path


# Names under which `nodes` answers with a method of its own rather than a node's outputs: Jinja looks
# an attribute up on the mapping before its items (and an item the mapping lacks up as an attribute),
# and a JavaScript object inherits Object.prototype's. `nodes.values`, `nodes['items']()` and
# `nodes['valueOf']()` reach every node without naming one, so they read every node
# (planning.outputs_read, _references).
SCOPE_METHOD_NAMES = frozenset(name for name in dir(dict) if not name.startswith("_")) | frozenset(
    {"constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable", "toLocaleString", "toString", "valueOf"}
)


def _references(tree: nodes.Template) -> tuple[frozenset[str], frozenset[str] | None]:
    names = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    uses = sum(1 for n in tree.find_all(nodes.Name) if n.name == "nodes" and n.ctx == "load")
    # The call of each callee, found in one walk of the tree: looked up per `nodes.get`, a template of
    # thousands of them (within MAX_TEMPLATE_CHARS) walked the tree once each, and held the worker's
    # event loop for minutes (a review: 4,000 took 40 s) as a helper's render narrowed its scope.
    calls = {id(call.node): call for call in tree.find_all(nodes.Call)}
    # Each use of `nodes` as the node it names (None: a use that may read any node).
    lookups = [_node_named(item, calls) for item in tree.find_all((nodes.Getattr, nodes.Getitem))]
    named = [name for name in lookups if name != ""]
    # Every use of `nodes` must be a lookup of one named node; any other use may read them all.
    if len(named) != uses or None in named:
        return frozenset(names), None
    return frozenset(names), frozenset(name for name in named if name is not None)


def _is_nodes(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "nodes" and node.ctx == "load"


def _node_named(item: nodes.Node, calls: dict[int, nodes.Call]) -> str | None:
    """The node a lookup on `nodes` names; "" for a lookup on something else, None for one that may
    read any node: a name of the mapping's own methods (SCOPE_METHOD_NAMES), called or not, but
    `nodes.get('a'[, default])`, which reads a, as planning.outputs_read takes it. Until this,
    `nodes.items()` counted as a read of a node "items", and a helper's render got none of the
    outputs (a loop over them rendered nothing, and `nodes.get('a').echo` failed)."""
    assert isinstance(item, (nodes.Getattr, nodes.Getitem))
    if not _is_nodes(item.node):
        return ""
    if isinstance(item, nodes.Getattr):
        name = item.attr
    elif isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
        name = item.arg.value
    else:
        return None
    if name == "get" and isinstance(item, nodes.Getattr):
        return _got(calls.get(id(item)))
    return None if name in SCOPE_METHOD_NAMES else name


def _got(call: nodes.Call | None) -> str | None:
    """The node `nodes.get('a'[, default])` reads (`call`: the call of that `nodes.get`, if it is
    called); None when `nodes.get` is not called so."""
    if call is None or not call.args or call.kwargs or call.dyn_args or call.dyn_kwargs:
        return None
    first = call.args[0]
    return first.value if isinstance(first, nodes.Const) and isinstance(first.value, str) else None


_LOOKUP_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Getattr, nodes.Const)

# Filters whose work is proportional to the value they are given (as a lookup's copy is), and that
# take no argument but constants: a template of lookups and these is rendered in process too, not
# in a helper (a helper's round trip cost a run about as much CPU as a step of it, docs/performance.md).
# The same environment renders it either way, so the value is the same.
_LINEAR_FILTERS = frozenset(
    {"upper", "lower", "trim", "capitalize", "title", "string", "length", "count", "first", "last"}
)
# ...and `default` (`d`), with at most its two constant arguments (the value, and whether a falsy
# value counts as undefined).
_DEFAULT_FILTERS = frozenset({"default", "d"})
# What a character of a filter's input costs an in-process render's budget, where it is not one:
# `title` splits its input into words and makes two strings of each (about 0.5 us a character on a
# busy host, 10 to 50 times upper's): 1,000,000 characters of "a-a-a-..." held the event loop for
# 0.4 s (a review).
_FILTER_WEIGHTS = {"title": 20}
# Of those, the ones that do not go through their input (RenderBudget.filter_input).
_CONSTANT_TIME_FILTERS = frozenset({"length", "count", "first", "last", *_DEFAULT_FILTERS})


def _is_lookup_node(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Filter):
        if node.kwargs or node.dyn_args is not None or node.dyn_kwargs is not None or node.node is None:
            return False
        if node.name in _DEFAULT_FILTERS:
            return len(node.args) <= 2 and all(isinstance(arg, nodes.Const) for arg in node.args)
        return node.name in _LINEAR_FILTERS and not node.args
    if isinstance(node, nodes.Getitem):
        return isinstance(node.arg, nodes.Const)
    if isinstance(node, nodes.Name):
        return node.ctx == "load"
    return type(node) in _LOOKUP_NODES


def _safe_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise TemplateBudgetExceeded(f"range() is limited to {MAX_RANGE} items in templates")
    return result


class _Range:
    """range() in templates: at most MAX_RANGE items (the sandbox's own limit is per call, and nested
    loops multiply it). Printed as `range`: a function's repr would show a memory address and an
    internal name."""

    def __call__(self, *args: int) -> range:
        return _safe_range(*args)

    def __repr__(self) -> str:
        return "range"


SAFE_RANGE = _Range()


def _bounded(chunks: Any, budget: RenderBudget) -> str:
    """Joins rendered output, stopping as soon as the render's output grows past the limit (a loop
    that prints forever ends here, not in memory)."""
    parts: list[str] = []
    for chunk in chunks:
        budget.produce(len(chunk))
        parts.append(chunk)
    return "".join(parts)


def _plain_string(value: Any) -> Any:
    """A str subclass as a plain string: `tojson`, `e` and `safe` answer markupsafe.Markup, which is
    text (msgspec refuses subclasses of str); an iterator inside a value (`[xs | reverse]`) as the
    array it yields, as a whole one is; anything else is not JSON."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, _LAZY):
        return _drained(value)
    if isinstance(value, jinja2.Undefined):
        # In a list or a dict (`[trigger.x, trigger.typo]`): StrictUndefined, or the sandbox's
        # refusal of an attribute, raises its own words here, as a bare `{{ trigger.typo }}`
        # does ("produced a list, which is not JSON" said nothing of the typo).
        str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _counted_json(value: Any) -> Any:
    """_plain_string for a whole template's value, whose size was estimated before an iterator in
    it was drained (as 8 characters): what the iterator yields counts against the render's size too."""
    if isinstance(value, _LAZY):
        items = _drained(value)
        budget = _budget.get()
        if budget is not None:
            budget.produce(_estimate(items, budget.max_chars - budget.chars))
        return items
    return _plain_string(value)


def _to_json(value: Any, path: str) -> Any:
    try:
        result = msgspec.to_builtins(value, enc_hook=_counted_json)
    except TypeError as exc:
        raise TemplateRenderError(
            f"template at {path or '/'} produced a {type(value).__name__}, which is not JSON"
        ) from exc
    # JSON has no NaN or infinity: written out, they became null without a word (`{{ 1e308 * 10 }}`,
    # `{{ 'nan' | float }}`), and the next node read null.
    number = _non_finite(result)
    if number is not None:
        raise TemplateRenderError(f"template at {path or '/'} produced {number}, which JSON cannot hold")
    return result


def _non_finite(value: Any) -> float | None:
    """The first NaN or infinity in a JSON value, None when there is none."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def as_text(value: Any) -> Any:
    """A value written into text (`"Total: {{ nodes.calc }}"`), as JSON writes it: null, true and
    false, objects and arrays as JSON; strings and numbers as themselves. Jinja wrote Python's words
    (None, True, {'a': 1}) into messages and bodies. A value that is a whole template keeps its type
    (_to_json), and this does not apply to it. An iterator (`| reverse`, `| map(…)` without
    `| list`, a dict's `.values()`) is written as the array it yields (Jinja wrote its repr, a memory
    address). NaN or an infinity anywhere in it fails the render, as in a whole template: JSON has
    neither."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise TemplateRenderError(f"a template wrote {value} into text, which JSON cannot hold")
    if isinstance(value, _LAZY):
        value = _drained(value)
    if isinstance(value, (dict, list, tuple)):
        budget = _budget.get()
        if budget is not None:
            budget.written_value(value)
        try:
            data = msgspec.to_builtins(value, enc_hook=_plain_string)
        except TypeError:
            return value  # not JSON (a range, say): Jinja's own text, as before
        number = _non_finite(data)
        if number is not None:
            raise TemplateRenderError(f"a template wrote {number} into text, which JSON cannot hold")
        return msgspec.json.encode(data).decode()
    return value


# What Jinja would write as its repr: iterators (`| reverse`, `| map`) and a dict's views (`.values()`).
_LAZY = (Iterator, KeysView, ValuesView, ItemsView)


def _drained(items: Any) -> list[Any]:
    """An iterator's items, each a step of the render's budget; more than the output's size limit
    could hold (each item is a character at least) is refused."""
    drained: list[Any] = []
    for item in items:
        _step()
        if len(drained) >= MAX_RENDERED_CHARS:
            raise _too_big("an iterator written into text")
        drained.append(item)
    return drained


def _text_filter(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    """`join`, `string` and `urlencode` write values into text as an output does (as_text)."""
    if name == "join":

        @functools.wraps(function)
        def joined(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
            # The attribute first (`join(', ', attribute='name')`), then each item's text.
            if attribute is not None:
                value = map(make_attrgetter(eval_ctx.environment, attribute), value)
            return function(eval_ctx, _as_text_items(value), d)

        return joined

    @functools.wraps(function)
    def written(value: Any, *args: Any, **kwargs: Any) -> Any:
        if name == "string":
            return function(as_text(value), *args, **kwargs)
        return function(_url_items(value), *args, **kwargs)

    return written


# Filters that take text and make str() of anything else: `{{ trigger.none | upper }}` was NONE,
# `| trim` None, `| replace` of an object Python's {'a': None}.
_STRING_FILTERS = (
    "capitalize",
    "lower",
    "upper",
    "title",
    "trim",
    "truncate",
    "replace",
    "striptags",
    "wordcount",
    "urlize",
    "e",
    "escape",
    "forceescape",
    # Marks text as not to be escaped: a value that is not text was Python's words (`None`,
    # `{'k': None}`), now its JSON, marked.
    "safe",
)


def _text_input(function: Callable[..., Any]) -> Callable[..., Any]:
    """A text filter given a value that is not a string takes it as an output writes it (as_text)."""
    # The filter's first argument is Jinja's context or environment when it asks for one.
    at = 0 if getattr(function, "jinja_pass_arg", None) is None else 1

    @functools.wraps(function)
    def written(*args: Any, **kwargs: Any) -> Any:
        if len(args) > at and not isinstance(args[at], (str, jinja2.Undefined)):
            args = (*args[:at], as_text(args[at]), *args[at + 1 :])
        return function(*args, **kwargs)

    return written


def _xmlattr_values(function: Callable[..., Any]) -> Callable[..., Any]:
    """`xmlattr` writes each attribute's value as an output does (as_text: `true`, not `True`; an
    object as JSON). A null value still leaves its attribute out, as Jinja documents."""

    @functools.wraps(function)
    def written(eval_ctx: Any, d: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(d, dict):
            d = {k: v if v is None or isinstance(v, (str, jinja2.Undefined)) else as_text(v) for k, v in d.items()}
        return function(eval_ctx, d, *args, **kwargs)

    return written


def _as_text_items(value: Any) -> Any:
    """What `join` takes, each item's (or each value's) text as an output writes it."""
    if isinstance(value, _LAZY):
        value = _drained(value)
    if isinstance(value, dict):
        return {k: as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_text(v) for v in value]
    return value


def _url_items(value: Any) -> Any:
    """What `urlencode` takes: a value, an object or a list of (key, value) pairs, each key and value
    as an output writes it. Jinja quotes str() of what is not a string: a lone `null` or `false`
    came out as `None`, `False`; and each pair of a list was made one JSON string, which no longer
    unpacked into key and value (`[['a', 1]] | urlencode` failed)."""
    if isinstance(value, _LAZY):
        value = _drained(value)
    if isinstance(value, dict):
        return {as_text(k): as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_url_pair(item) for item in value]
    return as_text(value)


def _url_pair(item: Any) -> Any:
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return (as_text(item[0]), as_text(item[1]))
    return item  # not a pair: urlencode says so, as Jinja's does


_runtime_env = _JsonSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
_runtime = _Renderer(_runtime_env, "{{", "}}", "{%")
_instantiation_env = _JsonSandbox(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    variable_start_string="[[",
    variable_end_string="]]",
    block_start_string="[%",
    block_end_string="%]",
    comment_start_string="[#",
    comment_end_string="#]",
)
_instantiation = _Renderer(_instantiation_env, "[[", "]]", "[%")
# The sandbox's range() limit (default 100,000) is per call; nested loops multiply it.
for _env in (_runtime_env, _instantiation_env):
    _env.globals["range"] = SAFE_RANGE


def has_template(value: Any) -> bool:
    """Whether a JSON value holds a run-time ({{ }}) template anywhere."""
    return _runtime.has_template(value)


def check_template(value: Any) -> str | None:
    """None when every run-time template in the value compiles, else the first error."""
    return _runtime.check(value)


def template_chars(value: Any) -> int:
    """How many characters the run-time templates in a JSON value hold (plain strings not counted)."""
    return sum(len(source) for source in _template_strings(value))


def any_template_chars(value: Any) -> int:
    """How many characters the strings of a JSON value that hold a run-time or an instantiation ([[ ]])
    template hold, each string once (a workflow template's definition holds both)."""
    if isinstance(value, str):
        return len(value) if _runtime.has_template(value) or _instantiation.has_template(value) else 0
    if isinstance(value, dict):
        return sum(any_template_chars(item) for item in value.values())
    if isinstance(value, list):
        return sum(any_template_chars(item) for item in value)
    return 0


def too_much_template_text(chars: int, what: str) -> str | None:
    """The refusal of `what` whose templates hold `chars` characters, past MAX_TEMPLATE_CHARS (None
    within it). Compiling costs about 5 ms per kB, on whatever thread does it."""
    if chars <= MAX_TEMPLATE_CHARS:
        return None
    return (
        f"{what} hold at most {MAX_TEMPLATE_CHARS} characters of templates in all; these hold {chars}: move"
        " large fixed text out of templates"
    )


def render(value: Any, scope: dict[str, Any], budget: RenderBudget | None = None) -> Any:
    """Renders every run-time template in a JSON value under a budget of work;
    TemplateRenderError names the path, TemplateBudgetExceeded says the budget ran out."""
    return _runtime.render(value, scope, budget or RenderBudget())


def referenced_scope(value: Any) -> tuple[frozenset[str], frozenset[str] | None]:
    """The top-level names the run-time templates in a value read, and the node ids they read
    under `nodes` (None: they may read any node, e.g. `nodes[name]` or `nodes | list`). Lets a
    render ship only that part of the scope to its helper."""
    names: set[str] = set()
    node_ids: set[str] | None = set()
    for source in _template_strings(value):
        found_names, found_ids = _runtime.references(source)
        names |= found_names
        node_ids = None if node_ids is None or found_ids is None else node_ids | found_ids
    return frozenset(names), None if node_ids is None else frozenset(node_ids)


def _template_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if _runtime.has_template(value) else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _template_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _template_strings(v)]
    return []


def is_lookup_only(value: Any) -> bool:
    """Whether the value's run-time templates only look values up (safe to render in process)."""
    return _runtime.is_lookup_only(value)


def null_lookups(source: str, scope: dict[str, Any]) -> list[str]:
    """The lookups written into a text template (`order-{{ trigger.a }}-{{ trigger.b }}`) that are
    null in `scope`, as written (`trigger.b`), in order; [] for a template that does more than look
    values up (what it does is rendered in a helper, not here) or that is one whole expression.
    Evaluated in process, as is_lookup_only templates are rendered: a lookup runs no code."""
    if not isinstance(source, str) or _runtime._whole_expression(source) is not None or not is_lookup_only(source):
        return []
    try:
        tree = _runtime.env.parse(source)
    except jinja2.TemplateSyntaxError:
        return []
    found: list[str] = []
    for output in tree.find_all(nodes.Output):
        for expression in output.nodes:
            if isinstance(expression, nodes.TemplateData):
                continue
            shown, value = _looked_up(expression, scope)
            if shown is not None and value is None:
                found.append(shown)
    return found


def _looked_up(node: nodes.Node, scope: dict[str, Any]) -> tuple[str | None, Any]:
    """A lookup expression as written, and its value in scope (None, undefined: (None, None)); the
    sandbox's own attribute and item rules."""
    env = _runtime.env
    if isinstance(node, nodes.Name):
        return (node.name, scope[node.name]) if node.name in scope else (None, None)
    if isinstance(node, nodes.Const):
        return None, node.value
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        shown, inner = _looked_up(node.node, scope)
        if shown is None or inner is None:
            return None, None
        if isinstance(node, nodes.Getattr):
            value, shown = env.getattr(inner, node.attr), f"{shown}.{node.attr}"
        else:
            assert isinstance(node.arg, nodes.Const)
            value, shown = (
                env.getitem(inner, node.arg.value),
                f"{shown}[{msgspec.json.encode(node.arg.value).decode()}]",
            )
        return (None, None) if isinstance(value, jinja2.Undefined) else (shown, value)
    return None, None


def check_instantiation_template(value: Any) -> str | None:
    return _instantiation.check(value)


def render_instantiation(value: Any, scope: dict[str, Any], budget: RenderBudget | None = None) -> Any:
    """Renders the [[ ... ]] templates of a workflow template; {{ ... }} is left alone."""
    return _instantiation.render(value, scope, budget or RenderBudget())


def is_lookup_only_instantiation(value: Any) -> bool:
    return _instantiation.is_lookup_only(value)

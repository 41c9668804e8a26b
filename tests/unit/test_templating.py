from __future__ import annotations

import functools
import itertools
from typing import Any

import pytest

from dataworkflows import templating
from dataworkflows.templating import (
    RenderBudget,
    TemplateBudgetExceeded,
    TemplateRenderError,
    check_template,
    is_lookup_only,
    render,
)

SCOPE = {
    "trigger": {"user": "ana", "n": 3, "tags": ["a", "b"], "nested": {"ok": True}},
    "nodes": {"first": {"echo": "hi"}},
    "execution": {"id": "e1", "workflowId": "wf"},
}


def test_whole_expression_keeps_its_json_type() -> None:
    params = {
        "count": "{{ trigger.n }}",
        "tags": "{{ trigger.tags }}",
        "flag": "{{ trigger.nested.ok }}",
        "sum": "{{ trigger.n + 1 }}",
    }
    assert render(params, SCOPE) == {"count": 3, "tags": ["a", "b"], "flag": True, "sum": 4}


def test_whitespace_control_is_jinjas_in_a_whole_expression_too() -> None:
    """`{{- x -}}` is Jinja2 (its whitespace control); a value that is only that expression was
    taken apart as the expression `- x -`, refused at publish as a syntax error, and `{{- x }}` as
    `- x`: the number negated, without a word (a review)."""
    params = {
        "count": "{{- trigger.n -}}",
        "plus": "{{+ trigger.tags }}",
        "tight": "{{-trigger.n}}",
        "minus": "{{ -1 }}",
    }
    assert check_template(params) is None
    assert render(params, SCOPE) == {"count": 3, "plus": ["a", "b"], "tight": 3, "minus": -1}
    assert render({"text": "a {{- trigger.n -}} b"}, SCOPE) == {"text": "a3b"}


@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("{{ 'nan' | float }}", "nan"),
        ("{{ 1e308 * 10 }}", "inf"),
        ("{{ [1, -1e308 * 10] }}", "-inf"),
        ("{{ {'a': {'b': ('nan' | float)} } }}", "nan"),
    ],
)
def test_a_number_json_cannot_hold_fails_the_render(template: str, said: str) -> None:
    # It became null when written out, and the next node read null.
    with pytest.raises(TemplateRenderError, match=f"template at /v produced {said}, which JSON cannot hold"):
        render({"v": template}, SCOPE)
    # Nor in text (it was "x nan" for a number, and null inside an array or an object).
    with pytest.raises(TemplateRenderError, match="which JSON cannot hold"):
        render({"v": f"x {template}"}, SCOPE)


def test_filters_answering_markup_render_to_strings() -> None:
    """tojson, e and safe answer markupsafe.Markup (a str subclass): a whole expression of them is the
    text, as inside mixed text (it was refused as not JSON)."""
    scope = {**SCOPE, "trigger": {"a": "x<y", "list": ["<b>"]}}
    rendered = render(
        {
            "json": "{{ trigger | tojson }}",
            "escaped": "{{ trigger.a | e }}",
            "safe": "{{ trigger.a | safe }}",
            "nested": "{{ [trigger.a | e, {'k': trigger.list[0] | e}] }}",
        },
        scope,
    )
    assert rendered == {
        "json": '{"a": "x\\u003cy", "list": ["\\u003cb\\u003e"]}',
        "escaped": "x&lt;y",
        "safe": "x<y",
        "nested": ["x&lt;y", {"k": "&lt;b&gt;"}],
    }
    assert all(type(v) is str for v in (rendered["json"], rendered["escaped"], rendered["nested"][0]))


def test_mixed_text_renders_to_a_string() -> None:
    assert render({"m": "Hello {{ trigger.user }} ({{ nodes.first.echo }})"}, SCOPE) == {"m": "Hello ana (hi)"}
    assert render({"deep": [{"x": "{{ execution.workflowId }}-{{ trigger.n }}"}]}, SCOPE) == {"deep": [{"x": "wf-3"}]}


def test_values_in_text_are_written_as_json_writes_them() -> None:
    """Jinja wrote Python's words into text: None, True, {'ok': True} went into messages and bodies."""
    scope = {"trigger": {"none": None, "yes": True, "no": False, "obj": {"ok": True, "n": None}, "f": 1.5}}
    rendered = render(
        {
            "m": "{{ trigger.none }} {{ trigger.yes }} {{ trigger.no }} {{ trigger.f }}",
            "o": "obj={{ trigger.obj }} list={{ trigger.obj.values() | list }}",
            "concat": "{{ 'id-' ~ trigger.none ~ '-' ~ trigger.yes }}",
            "loop": "{% for k, v in trigger.obj | dictsort %}{{ k }}={{ v }};{% endfor %}",
        },
        scope,
    )
    assert rendered == {
        "m": "null true false 1.5",
        "o": 'obj={"ok":true,"n":null} list=[true,null]',
        "concat": "id-null-true",
        "loop": "n=null;ok=true;",
    }
    # A whole template keeps its type; strings and tojson are as they were.
    assert render({"v": "{{ trigger.none }}", "w": "{{ trigger.obj | tojson }} x"}, scope) == {
        "v": None,
        "w": '{"n": null, "ok": true} x',
    }
    # Through the filters that make text, and an iterator as the array it yields.
    texts = render(
        {
            "join": "{{ trigger.obj.values() | join(',') }}",
            "string": "{{ trigger.yes | string }}",
            "url": "{{ trigger.obj | urlencode }}",
            # A lone value and a list of pairs too (Jinja wrote str(): None, False).
            "urlScalars": "{{ trigger.none | urlencode }}|{{ trigger.no | urlencode }}|{{ trigger.f | urlencode }}",
            "urlPairs": "{{ [['a', trigger.none], ('b', trigger.yes)] | urlencode }}",
            "reversed": "x{{ [trigger.none, 1] | reverse }}",
            "mapped": "{{ [trigger.none, trigger.yes] | map('string') | join('|') }}",
            "attribute": "{{ [trigger.obj, {'n': 1}] | join(', ', attribute='n') }}",
        },
        scope,
    )
    assert texts == {
        "join": "true,null",
        "string": "true",
        "url": "ok=true&n=null",
        "urlScalars": "null|false|1.5",
        "urlPairs": "a=null&b=true",
        "reversed": "x[1,null]",
        "mapped": "null|true",
        "attribute": "null, 1",
    }
    # Filters that take text take a value that is not one as text writes it (Python's str() said
    # NONE, None, {'b': None}).
    assert (
        render(
            "{{ trigger.none | upper }} {{ trigger.none | trim }} {{ trigger.obj | replace('ok', 'k') }} "
            "{{ trigger.yes | capitalize }} {{ trigger.none | e }} {{ trigger.f | replace('.', ',') }}",
            scope,
        )
        == 'NULL null {"k":true,"n":null} True null 1,5'
    )
    # `| safe` of a value that is not text, and `| xmlattr`'s values, the same (Python's repr:
    # x{'k': None, 't': True}, xNone, a="True"); xmlattr still leaves a null attribute out.
    assert render(
        {
            "safe": "x{{ trigger.obj | safe }} {{ trigger.none | safe }} {{ trigger.yes | safe }} {{ 's' | safe }}",
            "xmlattr": "<p{{ {'a': trigger.yes, 'n': trigger.none, 'o': {'k': trigger.none}} | xmlattr }}>",
            "pprint": "{{ trigger.none | pprint }}",
        },
        scope,
    ) == {
        "safe": 'x{"ok":true,"n":null} null true s',
        "xmlattr": '<p a="true" o="{&#34;k&#34;:null}">',
        # By design Python's pretty-printer (the README names it with % and .format()).
        "pprint": "None",
    }
    # NaN or an infinity written into text fails as in a whole template (JSON has neither).
    for template in ("x{{ [1e308 * 10] }}", "x{{ 1e308 * 10 }}", "x{{ {'v': 'nan' | float} }}"):
        with pytest.raises(TemplateRenderError, match="which JSON cannot hold"):
            render(template, scope)
    # Workflow templates' [[ ]] the same.
    assert templating.render_instantiation("[[ x ]] and [[ y ]]", {"x": None, "y": [False]}) == "null and [false]"


def test_an_iterator_as_a_whole_value_is_the_array_it_yields() -> None:
    scope = {"trigger": {"l": ["a", "b"], "big": ["x" * 1000] * 990}}
    # It failed the node as "produced a generator, which is not JSON"; in text it was the array.
    assert render(
        {
            "mapped": "{{ trigger.l | map('upper') }}",
            "reversed": " {{ trigger.l | reverse }} ",
            "values": "{{ {'k': 1}.values() }}",
            "nested": "{{ {'r': trigger.l | reverse} }}",
        },
        scope,
    ) == {"mapped": ["A", "B"], "reversed": ["b", "a"], "values": [1], "nested": {"r": ["b", "a"]}}
    # Bounded as in text: each item is a step, and what it yields counts against the size.
    with pytest.raises(TemplateBudgetExceeded):
        render("{{ range(1000) | map('string') }}", scope, RenderBudget(max_steps=100))
    with pytest.raises(TemplateBudgetExceeded):
        render("{{ trigger.big | reverse }}", scope, RenderBudget(max_chars=100_000))
    with pytest.raises(TemplateBudgetExceeded):
        render("{{ [trigger.big | reverse, trigger.big] }}", scope)
    # An endless one ends at the step budget.
    with pytest.raises(TemplateBudgetExceeded):
        render("{{ trigger.g }}", {"trigger": {"g": itertools.count()}}, RenderBudget(max_steps=1000))


def test_values_without_templates_are_untouched() -> None:
    params = {"a": 1, "b": None, "c": "plain", "d": [True]}
    assert render(params, SCOPE) == params


def test_missing_names_fail_with_the_path() -> None:
    with pytest.raises(TemplateRenderError, match="/m"):
        render({"m": "{{ trigger.missing }}"}, SCOPE)
    with pytest.raises(TemplateRenderError):
        render({"m": "x {{ nodes.nope.echo }}"}, SCOPE)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "x {{ trigger.__class__ }}",
        "{{ trigger.tags.append(1) }}",
        "{{ execution.__init__.__globals__ }}",
    ],
)
def test_python_internals_are_refused(template: str) -> None:
    with pytest.raises(TemplateRenderError):
        render({"m": template}, SCOPE)


def test_check_template_reports_syntax_errors() -> None:
    assert check_template({"a": "{{ ok }}", "b": ["{% if %}"]}) is not None
    assert check_template({"a": "{{ trigger.user }}"}) is None


def test_json_keys_win_over_python_attributes() -> None:
    scope = {"trigger": {"items": [1, 2], "keys": "k", "values": {"get": 5}}}
    assert render(
        {"a": "{{ trigger.items | length }}", "b": "{{ trigger.keys }}", "c": "{{ trigger.values.get }}"}, scope
    ) == {"a": 2, "b": "k", "c": 5}


@pytest.mark.parametrize("template", ["{{ 1 / 0 }}", "{{ trigger.n | length }}", "{{ trigger.user + 1 }}"])
def test_python_errors_while_rendering_are_template_errors(template: str) -> None:
    with pytest.raises(TemplateRenderError):
        render({"m": template}, SCOPE)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ['x' * 1000000] * 1000000 }}",
        "{{ 'x'.ljust(50000000) }}",
        "{{ '%050000000d' % 1 }}",
        "{{ '{:>50000000}'.format(1) }}",
        "{% set s = 'x' * 1000 %}" + "{% set s = s ~ s %}" * 10 + "{{ s }}",
        "{% for i in range(100000) %}x{% endfor %}",
    ],
)
def test_size_bombs_are_refused(template: str) -> None:
    with pytest.raises(TemplateRenderError):
        render({"m": template}, SCOPE)


NESTED_LOOPS_1E9 = (
    "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}{% endfor %}{% endfor %}"
)
NESTED_LOOPS_1E12 = (
    "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)


@pytest.mark.parametrize(
    "template",
    [
        NESTED_LOOPS_1E9,
        NESTED_LOOPS_1E12,
        # Loops in a recursive loop and in macros count too.
        "{% for i in range(10000) recursive %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "{% macro f() %}{% for i in range(10000) %}{% endfor %}{% endmacro %}"
        "{% for i in range(10000) %}{{ f() }}{% endfor %}",
        # Integers: the exponent check alone let (((10**64)**64)**64)**64 run for 17 s.
        "{{ (((10**64)**64)**64)**64 }}",
        "{{ ((10**64)**64)**2 }}",
        "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
    ],
)
def test_work_bombs_exceed_the_budget(template: str) -> None:
    with pytest.raises(TemplateBudgetExceeded) as caught:
        render({"m": template}, SCOPE)
    assert caught.value.code == "template_budget_exceeded"


def test_the_budget_counts_steps_across_the_whole_value() -> None:
    loop = "{% for i in range(600) %}{% endfor %}"
    assert render({"a": loop, "b": loop}, SCOPE, RenderBudget(max_steps=1210)) == {"a": "", "b": ""}
    with pytest.raises(TemplateBudgetExceeded):
        render({"a": loop, "b": loop}, SCOPE, RenderBudget(max_steps=1100))


def test_output_is_bounded_across_the_whole_value() -> None:
    # Each value alone is under the limit; together they are over it.
    big = {"trigger": {"s": "x" * 600_000}}
    with pytest.raises(TemplateRenderError, match="exceed"):
        render({"a": "{{ trigger.s }}", "b": "{{ trigger.s }}"}, big)
    with pytest.raises(TemplateRenderError, match="exceed"):
        render({"a": "<{{ trigger.s }}>", "b": "<{{ trigger.s }}>"}, big)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 1000000 }}",
        "{{ 1000000 * 'x' }}",
        "{{ ('x' * 500000) * 2 }}",
        "{{ 'é' * 1000000 }}",
        "{{ 'x' * 600000 + 'x' * 400000 }}",
        "{{ ('x' * 1000000) | upper }}",
        "<{{ 'x' * 999998 }}>",
    ],
)
def test_the_output_limit_is_exactly_a_million_characters(template: str) -> None:
    # The README's limit: 1,000,000 characters of output. A string's size used to be estimated with
    # its quotes, so 'x' * n was refused from n = 333,334.
    assert len(render({"m": template}, SCOPE)["m"]) == 1_000_000


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 1000001 }}",
        "{{ 1000001 * 'x' }}",
        "{{ ('x' * 500000) * 3 }}",
        "{{ ('x' * 1000) * 1000 * 2 }}",
        "{{ '\U0001f600' * 1000001 }}",
        "{{ 'x' * 600000 + 'x' * 400001 }}",
        "<{{ 'x' * 999999 }}>",
        "{{ ['x'] * 250000 }}",
        "{{ ['x' * 500000] * 2 }}",
        "{{ [['x'] * 1000] * 1000 }}",
    ],
)
def test_one_character_past_the_limit_is_refused(template: str) -> None:
    with pytest.raises(TemplateBudgetExceeded, match="exceed 1000000 characters"):
        render({"m": template}, SCOPE)


def test_the_output_limit_counts_the_whole_value() -> None:
    assert render({"a": "{{ 'x' * 400000 }}", "b": "{{ 'y' * 600000 }}"}, SCOPE) == {
        "a": "x" * 400_000,
        "b": "y" * 600_000,
    }
    with pytest.raises(TemplateRenderError, match="exceed"):
        render({"a": "{{ 'x' * 400000 }}", "b": "{{ 'y' * 600001 }}"}, SCOPE)


def test_ordinary_work_fits_the_budget() -> None:
    scope = {"trigger": {"rows": [{"n": i, "name": f"r{i}"} for i in range(1000)]}}
    table = "{% for row in trigger.rows %}{% for k, v in row.items() %}{{ k }}={{ v }};{% endfor %}{% endfor %}"
    assert render({"t": table}, scope)["t"].startswith("n=0;name=r0;")
    assert render({"n": "{{ 10**64 }}"}, SCOPE) == {"n": 10**64}
    assert render({"n": "{{ (2**50) ** 20 * 8 }}"}, SCOPE) == {"n": 2**1003}
    # Exponents past 64 were refused whatever the result ("exponent too large", template_error):
    # integers of up to 1,024 bits are the budget.
    assert render({"a": "{{ 2 ** 65 }}", "b": "{{ 10 ** 100 }}", "c": "{{ 2 ** 1023 }}"}, SCOPE) == {
        "a": 2**65,
        "b": 10**100,
        "c": 2**1023,
    }
    assert render({"n": "{{ 1 ** 1000000000000 + (-1) ** 1000001 + 0 ** 99999999999 }}"}, SCOPE) == {"n": 0}
    for past in ("{{ 2 ** 1024 }}", "{{ 3 ** 700 }}", "{{ 10 ** 1000000000 }}"):
        with pytest.raises(TemplateBudgetExceeded, match="1024 bits"):
            render({"n": past}, SCOPE)
    # A trigger's integer that large is not one the template "grew".
    with pytest.raises(TemplateBudgetExceeded, match="is larger than 1024 bits"):
        render({"n": "{{ trigger.huge }}"}, {**SCOPE, "trigger": {"huge": 10**400}})


@pytest.mark.parametrize(
    ("value", "lookup_only"),
    [
        ({"a": "{{ trigger.user }}", "b": ["Hi {{ nodes.first.echo }}!", 3, None]}, True),
        ("{{ trigger['user'] }} and {{ execution.id }}", True),
        ("no template", True),
        ("{{ trigger.n + 1 }}", False),
        ("{{ trigger.user | upper }}", True),
        ("{{ trigger.user | trim | title }} ({{ trigger.tags | length }})", True),
        ("{{ trigger.missing | default('-') }} {{ trigger.x | d(0, true) }}", True),
        ("{{ trigger.x | default(trigger.y) }}", False),
        ("{{ trigger.x | default('a', true, 'c') }}", False),
        ("{{ trigger.x | default(boolean=true) }}", False),
        ("{{ trigger.x | trim('x') }}", False),
        ("{{ trigger.tags | join('-') }}", False),
        ("{{ trigger.x | tojson }}", False),
        ("{{ trigger.x | upper(*trigger.args) }}", False),
        ("{% filter upper %}{{ trigger.x }}{% endfilter %}", False),
        ("{{ trigger[trigger.user] }}", False),
        ("{% for i in trigger.tags %}{{ i }}{% endfor %}", False),
        ("{{ trigger.user.upper() }}", False),
        ("{% set x = 1 %}{{ x }}", False),
        ("{{ oops", False),
    ],
)
def test_lookup_only_templates_are_recognised(value: object, lookup_only: bool) -> None:
    assert is_lookup_only(value) is lookup_only


@pytest.mark.parametrize(
    "template",
    [
        # Rejected items of a filtered loop are work too.
        "{% for a in range(300) %}{% for b in range(10000) if b < 0 %}{% endfor %}{% endfor %}",
        # Filters are called without call(): they are steps, and counts they take are bounded.
        "{{ [0] | slice(3000000) | list }}",
        # 600,000 iterations fit the budget; with a filter in each, they do not.
        "{% for i in range(600) %}{% for j in range(1000) %}{% set x = trigger.user | lower %}{% endfor %}{% endfor %}",
    ],
)
def test_loop_filters_and_filters_count_too(template: str) -> None:
    with pytest.raises(TemplateBudgetExceeded):
        render({"m": template}, SCOPE)


def test_a_missing_key_named_like_a_dict_method_is_missing() -> None:
    """`trigger.items` is the key "items": when the object has none, it is undefined like any other
    missing key (it was dict.items, whose text, a memory address, was rendered and tested true), and
    calling it still calls the method."""
    scope = {**SCOPE, "trigger": {"a": 1}}
    assert render({"m": "{{ trigger.items | default('none') }}"}, scope) == {"m": "none"}
    assert render({"m": "{{ trigger.values | default([]) }}"}, scope) == {"m": []}
    for template in ("{{ trigger.items }}", "x {{ trigger.keys }}", "{{ 'yes' if trigger.values else 'no' }}"):
        with pytest.raises(TemplateRenderError, match=r"has no attribute .(items|keys|values)"):
            render({"m": template}, scope)
    assert render({"m": "{% for k, v in trigger.items() %}{{ k }}={{ v }}{% endfor %}"}, scope) == {"m": "a=1"}
    assert render({"m": "{{ trigger.get('b', 2) }}", "k": "{{ trigger.keys() | list }}"}, scope) == {"m": 2, "k": ["a"]}
    # A present key wins, as before; a method that changes the object stays refused.
    assert render({"m": "{{ trigger.items }}"}, {**SCOPE, "trigger": {"items": [1]}}) == {"m": [1]}
    with pytest.raises(TemplateRenderError):
        render({"m": "{{ trigger.update({'b': 2}) }}"}, scope)


def test_checking_a_template_evaluates_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishing checks a definition's templates by compiling them, in the API's process. Jinja
    folds constant expressions while it compiles (its optimizer, and its code generator for output),
    outside every render budget: a 100 kB constant string replaced past the size limit under 190
    `| upper` filters was computed again at each level, and one publish held the API (and, under
    `up`, the worker) for 50 s (sandbox review). Compiling now evaluates no filter or operator:
    everything runs at render time, under the budget, in the sandbox helper."""
    calls: list[str] = []
    env = templating._runtime_env
    for name in ("replace", "upper"):
        real = env.filters[name]

        # wraps: Jinja reads how to call a filter (pass_eval_context) from the function's attributes.
        @functools.wraps(real)
        def counting(*args: Any, __name: str = name, __real: Any = real, **kwargs: Any) -> Any:
            calls.append(__name)
            return __real(*args, **kwargs)

        monkeypatch.setitem(env.filters, name, counting)
    bomb = "{{ 'a' * 3 ~ '" + "b" * 1000 + "' | replace('b', 'bb')" + " | upper" * 20 + " }}"
    mixed = "text {{ '" + "c" * 1000 + "' | replace('c', 'cc') | upper }} more"
    templating._runtime.compile_expression.cache_clear()
    templating._runtime.compile_template.cache_clear()
    for value in (bomb, mixed, {"nested": [bomb]}):
        assert templating.check_template(value) is None
    assert calls == [], "compiling evaluated filters"
    # Rendering still does the work, under the budget.
    assert templating.render(mixed, {}) == "text " + "C" * 2000 + " more"
    assert calls == ["replace", "upper"]


def test_a_template_too_deep_for_python_to_compile_is_a_syntax_problem() -> None:
    """250 nested filters compile to more nested parentheses than Python's parser takes: its
    SyntaxError escaped the check, and publishing answered 500 (sandbox review)."""
    problem = templating.check_template("{{ trigger.x" + " | upper" * 250 + " }}")
    assert problem is not None and "cannot be compiled" in problem, problem


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{{ [trigger.x, trigger.typo] }}", "UndefinedError: 'dict object' has no attribute 'typo'"),
        ("{{ {'a': trigger.typo} }}", "UndefinedError: 'dict object' has no attribute 'typo'"),
        ("{{ ['a'] | map(attribute='nope') | list }}", "has no attribute 'nope'"),
        ("{{ [1, 2] | map(attribute='__class__') | list }}", "SecurityError: access to attribute '__class__'"),
    ],
)
def test_an_undefined_value_in_a_list_or_a_dict_says_what_is_undefined(template: str, words: str) -> None:
    # It said "template at /m produced a list, which is not JSON", nothing of the typo.
    with pytest.raises(TemplateRenderError) as caught:
        render({"m": template}, {**SCOPE, "trigger": {"x": 1}})
    assert words in caught.value.message and "not JSON" not in caught.value.message


def test_null_lookups_names_the_null_values_written_into_text() -> None:
    scope = {"trigger": {"a": None, "b": "x", "c": {"d": None}, "l": [None, 1]}}
    source = "k-{{ trigger.a }}-{{ trigger.b }}-{{ trigger['c'].d }}-{{ trigger.l[0] }}-{{ trigger.l[1] }}"
    assert templating.null_lookups(source, scope) == ["trigger.a", 'trigger["c"].d', "trigger.l[0]"]
    # One whole expression is its value (a null key is refused as such); a template that computes
    # is rendered in a helper, not looked into here; a literal none is written on purpose.
    assert templating.null_lookups("{{ trigger.a }}", scope) == []
    assert templating.null_lookups("{{ trigger.a | default('z') }}-k", scope) == []
    assert templating.null_lookups("{{ none }}-{{ trigger.b }}", scope) == []
    assert templating.null_lookups("no template", scope) == []

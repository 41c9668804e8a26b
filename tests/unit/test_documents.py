"""Document templates rendered in process: the set's loader, autoescaping, formats, error locations
and the budget (the API renders the same code in a helper process)."""

from __future__ import annotations

import json

import pytest

from dataworkflows import documents
from dataworkflows.templating import RenderBudget, TemplateBudgetExceeded, TemplateRenderError

SET = {
    "base": "<h1>{% block title %}{% endblock %}</h1>{% include 'footer' %}",
    "footer": "<p>{{ who }}</p>",
    "macros": "{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}",
    "page": "{% extends 'base' %}{% from 'macros' import twice %}{% block title %}{{ twice(who) }}{% endblock %}",
}


def test_includes_extends_and_imports_load_from_the_set() -> None:
    rendered = documents.render("page", SET, {"who": "<a>"}, "html")
    assert rendered == {
        "document": "<h1>&lt;a&gt;&lt;a&gt;</h1><p>&lt;a&gt;</p>",
        "contentType": "text/html; charset=utf-8",
    }
    # Text is not escaped; the same names in another set are other templates.
    assert documents.render("page", SET, {"who": "<a>"}, "text")["document"] == "<h1><a><a></h1><p><a></p>"
    other = SET | {"footer": "[{{ who }}]"}
    assert documents.render("page", other, {"who": "b"}, "text")["document"] == "<h1>bb</h1>[b]"


@pytest.mark.parametrize("outside", ["secret", "../secret", "/etc/passwd", "other/footer"])
def test_names_outside_the_set_are_not_found(outside: str) -> None:
    with pytest.raises(TemplateRenderError, match="is not in this template set") as caught:
        documents.render("main", {"main": f"x\n{{% include {outside!r} %}}"}, {}, "text")
    assert caught.value.attributes["template"] == "main" and caught.value.attributes["line"] == 2


def test_errors_carry_template_line_and_column() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        documents.check("t", "a\nb {% if %}")
    assert {k: caught.value.attributes[k] for k in ("template", "line", "column")} == {
        "template": "t",
        "line": 2,
        "column": 3,
    }
    with pytest.raises(TemplateRenderError) as caught:
        documents.render("page", SET | {"footer": "\n\n  {{ who.missing }}"}, {"who": {}}, "text")
    assert (caught.value.attributes["template"], caught.value.attributes["line"]) == ("footer", 3)


def test_macros_and_includes_share_one_budget() -> None:
    looping = {"main": "{% from 'm' import f %}{% for i in range(100) %}{{ f() }}{% endfor %}",
               "m": "{% macro f() %}{% for j in range(100) %}{% include 'leaf' %}{% endfor %}{% endmacro %}",
               "leaf": "."}  # fmt: skip
    assert len(documents.render("main", looping, {}, "text", budget=RenderBudget(20_000))["document"]) == 10_000
    with pytest.raises(TemplateBudgetExceeded):
        documents.render("main", looping, {}, "text", budget=RenderBudget(5_000))


def test_json_documents_are_validated_and_markdown_converts() -> None:
    assert documents.render("j", {"j": '{"a": {{ a }}}'}, {"a": 1}, "json")["contentType"] == "application/json"
    with pytest.raises(TemplateRenderError, match="not JSON") as caught:
        documents.render("j", {"j": "{\n  a }"}, {}, "json")
    assert (caught.value.attributes["line"], caught.value.attributes["column"]) == (2, 3)
    # Nested past what a JSON parser goes: said so, not as Python's "maximum recursion depth exceeded".
    with pytest.raises(TemplateRenderError) as deep:
        documents.render("j", {"j": "{{ '[' * 200000 }}{{ ']' * 200000 }}"}, {}, "json")
    assert "nests deeper than a JSON parser goes" in deep.value.message and "Recursion" not in deep.value.message
    html = documents.render("m", {"m": "# {{ t }}\n<script>x</script>"}, {"t": "T"}, "markdown", as_html=True)
    assert html["document"] == "<h1>T</h1>\n<p>&lt;script&gt;x&lt;/script&gt;</p>\n"
    assert html["contentType"] == "text/html; charset=utf-8"


def test_json_documents_escape_values_for_json_strings() -> None:
    """Data cannot close a string and add or override fields (a reviewer's `", "admin": true`)."""
    body = (
        '{% macro pair(k, v) %}{"{{ k }}": "{{ v }}"}{% endmacro %}'
        '{"user": "{{ name }}", "n": {{ n }}, "on": {{ on }}, "none": {{ none }}, "raw": {{ thing | tojson }},'
        ' "pair": {{ pair("k", name) }}, "admin": false}'
    )
    data = {"name": 'x", "admin": true, "q": "O\\Brien\n', "n": 5, "on": True, "none": None, "thing": {"a": "<b>"}}
    rendered = documents.render("j", {"j": body}, data, "json")
    parsed = json.loads(rendered["document"])
    assert parsed == {
        "user": data["name"],
        "n": 5,
        "on": True,
        "none": None,
        "raw": {"a": "<b>"},
        "pair": {"k": data["name"]},
        "admin": False,
    }
    # An object written into a string is its JSON text (it was Python's: {'a': '<b>'}).
    inside = documents.render("j", {"j": '{"s": "{{ thing }}"}'}, data, "json")["document"]
    assert json.loads(inside) == {"s": '{"a":"<b>"}'}
    # And in the other formats, JSON's words: null, true, objects as JSON (autoescaped in HTML).
    text = documents.render("t", {"t": "{{ none }} {{ on }} {{ thing }}"}, data, "text")["document"]
    assert text == 'null true {"a":"<b>"}'
    html = documents.render("h", {"h": "<p>{{ thing }}</p>"}, data, "html")["document"]
    assert "<p>{&#34;a&#34;:&#34;&lt;b&gt;&#34;}</p>" in html
    # `| safe` of a value that is not text is its JSON, marked not to be escaped (it was Python's:
    # {'a': '<b>'} and None); of text, the text as it is.
    marked = "<p>{{ thing | safe }} {{ none | safe }} {{ on | safe }} {{ '<i>' | safe }} {{ '<i>' }}</p>"
    html = documents.render("h", {"h": marked}, data, "html")["document"]
    assert '<p>{"a":"<b>"} null true <i> &lt;i&gt;</p>' in html
    # `~` keeps a safe part as it is and escapes the others once, the document's way: `| tojson ~ ""` was
    # escaped into a string (not JSON), and an html macro's output joined with `~` was escaped twice.
    joined = documents.render(
        "j", {"j": '{"a": {{ name | tojson ~ "" }}, "b": "{{ "[" | safe ~ name }}"}'}, data, "json"
    )
    assert json.loads(joined["document"]) == {"a": data["name"], "b": "[" + data["name"]}
    macro = '{% macro li(v) %}<li>{{ v }}</li>{% endmacro %}{{ li(n) ~ "" }} {{ "<br>" | safe ~ n }}'
    assert documents.render("h", {"h": macro}, {"n": "A&B"}, "html")["document"].startswith(
        "<li>A&amp;B</li> <br>A&amp;B"
    )
    # A key twice in one object is refused: which one counts would depend on the reader.
    with pytest.raises(TemplateRenderError, match='the key "a" appears twice in one object'):
        documents.render("j", {"j": '{"a": 1, "a": {{ n }}}'}, {"n": 2}, "json")


def test_a_document_with_a_nul_character_is_refused_in_every_format() -> None:
    """PostgreSQL cannot store it: a preview showed it and then every run failed unrecordable_result."""
    for format in ("text", "markdown", "html"):
        with pytest.raises(TemplateRenderError, match="NUL character") as caught:
            documents.render("d", {"d": 'a\n"{{ s }}"'}, {"s": "x\x00y"}, format)
        assert caught.value.attributes["line"] == 2
    # In JSON a value's NUL is escaped (\u0000), which text holds; one written raw is refused.
    escaped = documents.render("d", {"d": '{"s": "{{ s }}"}'}, {"s": "x\x00y"}, "json")["document"]
    assert escaped == '{"s": "x\\u0000y"}'
    with pytest.raises(TemplateRenderError, match="NUL character"):
        documents.render("d", {"d": '{"s": "{{ s | safe }}"}'}, {"s": "x\x00y"}, "json")


def test_markdown_tables_convert_to_html() -> None:
    table = "| # | Milestone |\n|---|---|\n| 1 | Design <ok> |\n"
    html = documents.render("m", {"m": table}, {}, "markdown", as_html=True)["document"]
    assert "<table>" in html and "<td>Design &lt;ok&gt;</td>" in html


def test_a_document_template_too_deep_for_python_to_compile_is_refused_by_name() -> None:
    """Python's parser takes fewer than 250 nested filter calls: its SyntaxError escaped the check
    (a 500 where a 422 naming the template belongs)."""
    with pytest.raises(TemplateRenderError, match="cannot be compiled: SyntaxError"):
        documents.check("deep", "{{ title" + " | upper" * 250 + " }}")


def test_a_render_takes_only_the_templates_it_loads() -> None:
    """The whole set went to every render, so a set grown past MAX_SET_CHARS with templates a render
    never loads (added after a pinned version, or simply unrelated) failed it. Only what it includes,
    imports or extends goes, transitively; a reference by expression may load any: the whole set."""
    sources = SET | {"unrelated": "x" * 1000, "broken": "{% if %}"}
    assert documents.needed_sources("page", sources) == SET, "base includes footer"
    assert documents.needed_sources("footer-less", sources) == {}
    dynamic = sources | {"any": "{% include which %}"}
    assert documents.needed_sources("any", dynamic) == dynamic
    assert documents.needed_sources("broken", sources) == {"broken": "{% if %}"}, "kept: its render names the error"
    rendered = documents.render("page", documents.needed_sources("page", sources), {"who": "b"}, "text")
    assert rendered == documents.render("page", SET, {"who": "b"}, "text")
    # Parsing costs: it stops once past the limit (the caller refuses what is over it).
    assert len(documents.needed_sources("page", sources, limit=10)) == 1

from __future__ import annotations

import pytest

from dataworkflows.templating import TemplateRenderError, check_template, render

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


def test_mixed_text_renders_to_a_string() -> None:
    assert render({"m": "Hello {{ trigger.user }} ({{ nodes.first.echo }})"}, SCOPE) == {"m": "Hello ana (hi)"}
    assert render({"deep": [{"x": "{{ execution.workflowId }}-{{ trigger.n }}"}]}, SCOPE) == {"deep": [{"x": "wf-3"}]}


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

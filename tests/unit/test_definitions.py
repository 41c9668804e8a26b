from __future__ import annotations

import json
from typing import Any

import pytest

from dataworkflows.definitions import checksum, parse_definition, parse_duration
from dataworkflows.planning import compile_plan, outputs_read
from tests.conftest import FIXTURES, load_fixture

WORKFLOW_FIXTURES = sorted(
    p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("bundle*/*.json") if "nodes" in json.loads(p.read_text())
)


@pytest.mark.parametrize("name", WORKFLOW_FIXTURES)
def test_seed_fixtures_parse_unchanged(name: str) -> None:
    raw = load_fixture(name)
    definition = parse_definition(raw)
    assert definition.id == raw["id"]
    assert [n.id for n in definition.nodes] == [n["id"] for n in raw["nodes"]]


def test_fixtures_include_the_seed_bundles() -> None:
    assert {
        "bundle1/simple-echo-workflow.json",
        "bundle2/retry-workflow.json",
        "bundle3/fanout-fanin-workflow.json",
        "bundle3/conditional-branch-workflow.json",
    } <= set(WORKFLOW_FIXTURES)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT5M", 300),
        ("PT1H", 3600),
        ("PT0.5S", 0.5),
        ("P1DT2H", 93600),
        ("PT1H30M15S", 5415),
        ("pt10s", 10),
        # Weeks are ISO 8601 too (they were refused as "not an ISO 8601 duration").
        ("P1W", 604800),
        ("P1W2DT1H", 781200),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "5m", "PT-5S", "1 hour", "P1H"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["P1Y", "P2M", "P1Y2M3D", "P1MT1H"])
def test_years_and_months_are_refused_as_having_no_fixed_length(text: str) -> None:
    with pytest.raises(ValueError, match="years and months are not a fixed length; give weeks or days"):
        parse_duration(text)


def test_checksum_ignores_key_order_and_whitespace() -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    reordered = json.loads(json.dumps(dict(reversed(list(raw.items())))))
    spaced = json.loads(json.dumps(raw, indent=8))
    assert checksum(raw) == checksum(reordered) == checksum(spaced)
    changed = {**raw, "displayName": "Other"}
    assert checksum(changed) != checksum(raw)


def test_list_order_workflow_compiles_to_a_chain() -> None:
    plan = compile_plan(parse_definition(load_fixture("bundle1/simple-echo-workflow.json")), 1)
    assert plan.implicit_order
    first, second = plan.nodes
    assert (first.incoming, second.incoming) == (0, 1)
    assert [e.target for e in first.edges] == ["echo2"]
    assert second.edges == ()
    assert first.retry.max_attempts == 3
    assert first.timeout_seconds == 300


def test_fanout_plan_counts_join_edges() -> None:
    plan = compile_plan(parse_definition(load_fixture("bundle3/fanout-fanin-workflow.json")), 2)
    incoming = {n.id: n.incoming for n in plan.nodes}
    assert incoming == {"start": 0, "branch-a": 1, "branch-b": 1, "join": 2}
    assert plan.version == 2 and not plan.implicit_order


def _reads(*texts: str, js: tuple[str, ...] = (), outputs: Any = None) -> set[str] | None:
    nodes: list[dict[str, Any]] = [
        {"id": f"n{i}", "actionType": "core.echo", "parameters": {"message": text}} for i, text in enumerate(texts)
    ]
    nodes += [{"id": f"t{i}", "nodeType": "transform", "parameters": {"expression": text}} for i, text in enumerate(js)]
    nodes.append({"id": "last", "actionType": "core.echo", "parameters": {}})
    raw: dict[str, Any] = {"id": "reads", "displayName": "reads", "startNode": nodes[0]["id"], "nodes": nodes}
    if outputs is not None:
        raw["outputs"] = outputs
    return outputs_read(parse_definition(raw))


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (("{{ nodes.a.echo }}", "{{ nodes['b-c'].x }} and {{ nodes.get(\"d\") }}"), {"a", "b-c", "d"}),
        (("no templates here", "{{ trigger.value }}"), set()),
        # Plain text is not evaluated: it reads nothing.
        (("3 nodes done",), set()),
        # Reads that do not name the node may read any node's outputs.
        (("{{ nodes[key] }}",), None),
        (("{{ nodes.items() | list }}",), None),
        (("{{ nodes | tojson }}",), None),
        (("{{ nodes['a' ~ suffix] }}",), None),
        # A method of the mapping reaches every node: Jinja looks attributes up before items.
        (("{% set f = nodes.values %}{{ f() | list | length }}",), None),
        (("{{ nodes['items']() | list }}",), None),
        (("{{ nodes.get('items').x }}",), {"items"}),
    ],
)
def test_which_outputs_templates_read(texts: tuple[str, ...], expected: set[str] | None) -> None:
    assert _reads(*texts) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("nodes.a.total + nodes['b'].total", {"a", "b"}),
        # A property of that name counts too (it may be the scope's: globalThis.nodes).
        ("globalThis.nodes.c", {"c"}),
        ("nodes?.a", None),
        # Ways into the scope that do not spell nodes.
        ("Object.values(__s)", None),
        ("eval('no' + 'des')", None),
        ("n\\u006fdes.a", None),
        # Object.prototype's valueOf answers the whole object.
        ("nodes['valueOf']().b.total", None),
        ("nodes.valueOf.call(this)", None),
    ],
)
def test_which_outputs_expressions_read(expression: str, expected: set[str] | None) -> None:
    assert _reads(js=(expression,)) == expected


def test_conditions_and_workflow_outputs_read_outputs_too() -> None:
    assert _reads("hi", outputs={"total": "{{ nodes.last.echo }}"}) == {"last"}
    raw = load_fixture("bundle3/conditional-branch-workflow.json")
    plan = compile_plan(parse_definition(raw), 1)
    read = outputs_read(parse_definition(raw))
    assert read is not None
    assert {n.id for n in plan.nodes if n.outputs_used} == read

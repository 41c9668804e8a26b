from __future__ import annotations

import copy
from typing import Any

import pytest

from dataworkflows.actions import default_registry
from dataworkflows.errors import DefinitionError
from dataworkflows.publishing import MAX_CONDITIONS, MAX_TEMPLATE_CHARS, prepare_definition
from dataworkflows.validation import registry_parameter_checker, validate_definition
from tests.conftest import load_fixture


def problems(raw: Any, **kwargs: Any) -> dict[str, str]:
    found = validate_definition(raw, check_parameters=registry_parameter_checker(default_registry()), **kwargs)
    return {p.pointer: p.code for p in found}


def edge(target: str, **extra: Any) -> dict[str, Any]:
    return {"targetNode": target, **extra}


def node(node_id: str, *edges: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "actionType": "core.echo", "parameters": {"message": node_id}, "edges": list(edges), **extra}


def workflow(*nodes: dict[str, Any], start: str = "a") -> dict[str, Any]:
    return {"id": "wf", "displayName": "WF", "startNode": start, "nodes": list(nodes)}


def test_valid_fixtures_have_no_problems() -> None:
    for name in [
        "bundle1/simple-echo-workflow.json",
        "bundle2/retry-workflow.json",
        "bundle3/fanout-fanin-workflow.json",
        "bundle3/conditional-branch-workflow.json",
    ]:
        assert problems(load_fixture(name)) == {}, name


def test_every_problem_is_reported_with_a_pointer() -> None:
    raw = workflow(
        node("a", edge("b"), edge("ghost")),
        node("b", edge("c")),
        node("b", edge("a")),
        {"id": "c", "actionType": "nope.action"},
        node("island"),
        start="missing",
    )
    raw["orchestration"] = {"maxParallelActions": 0, "workflowTimeout": "soon"}
    found = problems(raw)
    assert found["/nodes/0/edges/1/targetNode"] == "unknown_node"
    assert found["/nodes/2/id"] == "duplicate"
    assert found["/nodes/3/actionType"] == "unknown_action_type"
    assert found["/startNode"] == "unknown_node"
    assert found["/orchestration/maxParallelActions"] == "range"
    assert found["/orchestration/workflowTimeout"] == "duration"
    assert len(found) >= 6


def test_structural_problems_in_several_nodes_are_all_reported() -> None:
    raw = workflow(
        {"id": "a", "actionType": 7},
        {"actionType": "core.echo"},
        {"id": "c", "actionType": "core.echo", "edges": [{"target": "a"}]},
        node("d", retryPolicy={"maxAttempts": "three"}),
    )
    raw["displayNam"] = raw.pop("displayName")
    found = problems(raw)
    assert found["/nodes/0/actionType"] == "type"
    assert found["/nodes/1/id"] == "required"
    assert found["/nodes/2/edges/0/targetNode"] == "required"
    assert found["/nodes/2/edges/0/target"] == "unknown_field"
    assert found["/nodes/3/retryPolicy/maxAttempts"] == "type"
    assert found["/displayNam"] == "unknown_field"
    assert found["/displayName"] == "required"


def test_a_display_name_has_a_length_limit() -> None:
    # Every list and page shows it; it had no limit (100,000 characters were taken).
    raw = workflow(node("a"))
    raw["displayName"] = "n" * 200
    assert problems(raw) == {}
    raw["displayName"] = "n" * 201
    assert problems(raw) == {"/displayName": "too_long"}


def test_cycle_is_reported_with_its_path() -> None:
    found = validate_definition(workflow(node("a", edge("b")), node("b", edge("c")), node("c", edge("b"))))
    cycle = [p for p in found if p.code == "cycle"]
    assert cycle and "b -> c -> b" in cycle[0].message


def test_unreachable_nodes_and_self_loops() -> None:
    found = problems(workflow(node("a", edge("b")), node("b"), node("c", edge("c"))))
    assert found["/nodes/2/edges/0/targetNode"] == "cycle"
    found = problems(workflow(node("a", edge("b")), node("b"), node("c", edge("b"))))
    assert found["/nodes/2"] == "unreachable"


def test_parameters_are_checked_against_the_action() -> None:
    found = problems(workflow(node("a", parameters={"message": "x", "delayMs": "slow", "bogus": 1})))
    assert "/nodes/0/parameters/delayMs" in found or "/nodes/0/parameters/bogus" in found
    found = problems(workflow(node("a", parameters={"message": "x", "simulateFailure": "sometimes"})))
    assert found["/nodes/0/parameters/simulateFailure"] == "invalid_parameter"
    # Templated values are checked at run time, but unknown names are caught now.
    found = problems(workflow(node("a", parameters={"delayMs": "{{ trigger.delay }}", "oops": "{{ x }}"})))
    assert found == {"/nodes/0/parameters/oops": "unknown_field"}


def test_list_order_workflows_must_start_at_the_first_node() -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    raw["startNode"] = "echo2"
    assert problems(raw) == {"/startNode": "order"}


def test_condition_syntax_errors_come_from_the_checker() -> None:
    raw = workflow(node("a", edge("b", condition="trigger.(")), node("b"))
    found = problems(raw, check_condition=lambda expr: "SyntaxError" if "(" in expr else None)
    assert found == {"/nodes/0/edges/0/condition": "condition_syntax"}


def test_not_an_object() -> None:
    assert problems([1, 2]) == {"": "type"}
    assert problems({"id": "x", "displayName": "X", "startNode": "a", "nodes": "a"}) == {"/nodes": "type"}


class FakeConditions:
    """A condition sandbox that refuses expressions containing "(" and counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def check_many(self, expressions: list[str]) -> dict[str, str | None]:
        self.asked.append(expressions)
        return {expr: ("SyntaxError" if "(" in expr else None) for expr in expressions}


async def test_prepare_raises_with_every_problem_and_template_syntax() -> None:
    raw = workflow(node("a", parameters={"message": "{{ trigger.user "}), node("b"))
    raw["nodes"][0]["edges"] = [edge("b")]
    with pytest.raises(DefinitionError) as caught:
        await prepare_definition(copy.deepcopy(raw), default_registry(), FakeConditions())
    assert [(p.pointer, p.code) for p in caught.value.problems] == [("/nodes/0/parameters", "template_syntax")]


async def test_a_workflows_template_text_is_bounded_before_it_is_compiled() -> None:
    """Compiling templates to check them costs about 5 ms per kB in the API's process (a 1 MB body of
    lookups took 4.8 s): a definition's templates hold at most MAX_TEMPLATE_CHARS characters in all,
    the part that goes over is named, and plain text does not count."""
    lookup = "{{ trigger.a }} "
    half = lookup * (MAX_TEMPLATE_CHARS // len(lookup) // 2)
    plain = "x" * (MAX_TEMPLATE_CHARS + 1)
    fits = workflow(
        node("a", parameters={"message": half}),
        node("b", parameters={"message": half}),
        node("c", parameters={"message": plain}),
    )
    fits["nodes"][0]["edges"] = [edge("b")]
    fits["nodes"][1]["edges"] = [edge("c")]
    await prepare_definition(copy.deepcopy(fits), default_registry(), FakeConditions())
    over = copy.deepcopy(fits)
    over["nodes"][1]["parameters"]["message"] = half + "{{ trigger.b }}"
    with pytest.raises(DefinitionError) as caught:
        await prepare_definition(over, default_registry(), FakeConditions())
    [problem] = caught.value.problems
    assert (problem.pointer, problem.code) == ("/nodes/1/parameters", "too_large")
    assert f"at most {MAX_TEMPLATE_CHARS} characters in all; with this one they hold {len(half) * 2 + 15}" in (
        problem.message
    )


async def test_prepare_compiles_each_distinct_condition_once_in_the_sandbox() -> None:
    raw = workflow(
        node(
            "a", edge("b", condition="trigger.ok"), edge("c", condition="trigger.("), edge("d", condition="trigger.ok")
        ),
        node("b"),
        node("c"),
        node("d"),
    )
    sandbox = FakeConditions()
    with pytest.raises(DefinitionError) as caught:
        await prepare_definition(raw, default_registry(), sandbox)
    assert sandbox.asked == [["trigger.ok", "trigger.("]]
    assert [(p.pointer, p.code) for p in caught.value.problems] == [("/nodes/0/edges/1/condition", "condition_syntax")]


async def test_prepare_refuses_too_many_distinct_conditions_before_compiling_any() -> None:
    edges = [edge(f"n{i}", condition=f"trigger.n === {i}") for i in range(MAX_CONDITIONS + 1)]
    raw = workflow(node("a", *edges), *(node(f"n{i}") for i in range(MAX_CONDITIONS + 1)))
    sandbox = FakeConditions()
    with pytest.raises(DefinitionError) as caught:
        await prepare_definition(raw, default_registry(), sandbox)
    assert sandbox.asked == []
    assert [(p.pointer, p.code) for p in caught.value.problems] == [("/nodes", "too_many")]


async def test_prepare_keeps_the_id_of_the_workflow_being_updated() -> None:
    raw = workflow(node("a"))
    prepared = await prepare_definition(raw, default_registry(), FakeConditions(), expected_id="wf")
    assert (prepared.definition.id, prepared.checksum.startswith("sha256:")) == ("wf", True)
    with pytest.raises(DefinitionError) as caught:
        await prepare_definition(raw, default_registry(), FakeConditions(), expected_id="other")
    assert [(p.pointer, p.code) for p in caught.value.problems] == [("/id", "mismatch")]


def test_a_waiting_node_with_action_fields_is_told_so_in_plain_words() -> None:
    raw = {
        "id": "x",
        "displayName": "x",
        "startNode": "a",
        "nodes": [
            {
                "id": "a",
                "nodeType": "approval",
                "actionType": "core.echo",
                "timeout": "PT1S",
                "parameters": {"approvers": ["ops"]},
            },
        ],
    }
    found = {p.pointer: p.message for p in validate_definition(raw)}
    assert found["/nodes/0/actionType"] == "an approval node has no actionType; remove it"
    assert "and an approval node runs none" in found["/nodes/0/timeout"]

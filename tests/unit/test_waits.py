"""The waiting kinds' rules (dataworkflows.waits) and their publish-time validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dataworkflows.statuses import AttemptStatus
from dataworkflows.validation import validate_definition
from dataworkflows.waits import WaitParameterError, resolved_result, wait_spec

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_delay_is_a_timer_due_after_its_duration_or_at_its_time() -> None:
    assert wait_spec("delay", {"duration": "PT90S"}, now=NOW).due_at == NOW + timedelta(seconds=90)
    assert wait_spec("delay", {"until": "2026-12-24T18:00:00Z"}, now=NOW).due_at == datetime(
        2026, 12, 24, 18, tzinfo=UTC
    )
    # RFC 3339's lowercase t and z too (a z was refused).
    assert wait_spec("delay", {"until": "2026-12-24t18:00:00z"}, now=NOW).due_at == datetime(
        2026, 12, 24, 18, tzinfo=UTC
    )
    # No offset: UTC.
    assert wait_spec("delay", {"until": "2026-12-24T18:00:00"}, now=NOW).due_at == datetime(
        2026, 12, 24, 18, tzinfo=UTC
    )
    # Another offset: the same instant, in UTC.
    due = wait_spec("delay", {"until": "2026-12-24T18:00:00+05:00"}, now=NOW).due_at
    assert due == datetime(2026, 12, 24, 13, tzinfo=UTC) and due.utcoffset() == timedelta(0)
    # In the past (year 1 too): fires at once.
    assert wait_spec("delay", {"until": "0001-01-01T00:00:00Z"}, now=NOW).due_at.year == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of duration"),
        ({"duration": "PT1S", "until": "2026-12-24T18:00:00Z"}, "exactly one of duration"),
        ({"duration": "soon"}, "ISO 8601 duration"),
        ({"until": "tomorrow"}, "ISO 8601 timestamp"),
        ({"duration": "P400D"}, "366 days"),
        # Past what PostgreSQL and JSON hold once in UTC (the run ended with an engine error, and its
        # waits could no longer be read).
        ({"until": "0001-01-01T00:00:00+05:00"}, "out of range"),
        ({"until": "9999-12-31T23:59:59-05:00"}, "out of range"),
    ],
)
def test_a_delay_refuses_what_is_not_a_time(params: dict[str, Any], message: str) -> None:
    with pytest.raises(WaitParameterError, match=message):
        wait_spec("delay", params, now=NOW)


def test_a_signal_wait_has_a_name_an_optional_key_and_timeout() -> None:
    spec = wait_spec("signal", {"name": "paid", "correlationKey": "o-1", "timeout": "PT1H"}, now=NOW)
    assert (spec.kind, spec.name, spec.correlation_key) == ("signal", "paid", "o-1")
    # A key written as a template and rendered to null is refused; one written null, or left out, is keyless.
    written = {"name": "paid", "correlationKey": "{{ trigger.orderId }}"}
    with pytest.raises(WaitParameterError, match=r"correlationKey \{\{ trigger.orderId \}\} rendered to null"):
        wait_spec("signal", {"name": "paid", "correlationKey": None}, now=NOW, written=written)
    assert wait_spec("signal", {"name": "paid"}, now=NOW, written={"name": "paid"}).correlation_key is None
    keyless = {"name": "paid", "correlationKey": None}
    assert wait_spec("signal", keyless, now=NOW, written=keyless).correlation_key is None
    assert spec.expires_at == NOW + timedelta(hours=1) and spec.due_at is None
    with pytest.raises(WaitParameterError, match="signal name"):
        wait_spec("signal", {"name": "no spaces"}, now=NOW)
    with pytest.raises(WaitParameterError, match="longer than zero"):
        wait_spec("signal", {"name": "x", "timeout": "PT0S"}, now=NOW)


@pytest.mark.parametrize(("quorum", "required"), [("any", 1), ("all", 3), (2, 2)])
def test_an_approval_quorum_is_a_number_of_approvals(quorum: Any, required: int) -> None:
    spec = wait_spec("approval", {"approvers": ["a", "b", "c", "a"], "quorum": quorum}, now=NOW)
    assert spec.details["approvers"] == ["a", "b", "c"] and spec.details["required"] == required


@pytest.mark.parametrize("quorum", [0, 4, "most", True])
def test_an_impossible_quorum_is_refused(quorum: Any) -> None:
    with pytest.raises(WaitParameterError):
        wait_spec("approval", {"approvers": ["a", "b", "c"], "quorum": quorum}, now=NOW)


@pytest.mark.parametrize(
    ("parameters", "said"),
    [
        ({"approvers": ["a" * 201]}, "must be 1-200 characters"),
        ({"approvers": ["ann", "line\nbreak"]}, "must not contain control"),
        ({"approvers": ["\u202eevil"]}, "must not contain control"),
        ({"approvers": ["a"], "title": "t" * 201}, "title must be at most 200"),
        ({"approvers": ["a"], "description": "d" * 2001}, "description must be at most 2000"),
    ],
)
def test_an_approver_no_caller_can_be_is_refused(parameters: dict[str, Any], said: str) -> None:
    """Approvers are principal ids by the API's rule (X-Principal-Id, a token's sub): one it refuses
    could never decide. Title and description are bounded as a display name and a note are."""
    with pytest.raises(WaitParameterError, match=said):
        wait_spec("approval", parameters, now=NOW)
    # Written into the definition, the same is a 422 at publish; a template is checked once rendered.
    node = {"id": "ok", "nodeType": "approval", "parameters": parameters}
    problems = validate_definition({"id": "w", "displayName": "W", "startNode": "ok", "nodes": [node]})
    assert [p.code for p in problems] == ["invalid_parameters"] and said in problems[0].message
    spec = wait_spec("approval", {"approvers": [" " + "a" * 200 + " ", "ज्\u200dञ"], "title": "t" * 200}, now=NOW)
    assert spec.details["approvers"] == ["a" * 200, "ज्\u200dञ"]
    templated = {"approvers": ["{{ trigger.boss }}\n"], "title": "{{ trigger.t }}" + " " * 300}
    node = {"id": "ok", "nodeType": "approval", "parameters": templated}
    assert validate_definition({"id": "w", "displayName": "W", "startNode": "ok", "nodes": [node]}) == []


def test_refused_values_are_quoted_as_json() -> None:
    """Rendered values are quoted in JSON's words (they were Python's: 'most', True)."""
    with pytest.raises(WaitParameterError, match='not "most"'):
        wait_spec("approval", {"approvers": ["a"], "quorum": "most"}, now=NOW)
    with pytest.raises(WaitParameterError, match='until "soon" is not an ISO 8601 timestamp'):
        wait_spec("delay", {"until": "soon"}, now=NOW)


def test_resolved_waits_become_results() -> None:
    assert resolved_result("signal", "received", {"payload": {"a": 1}}).outputs == {"a": 1}
    assert resolved_result("signal", "received", {"payload": [1]}).outputs == {"payload": [1]}
    timed_out = resolved_result("signal", "timed_out", {"code": "wait_timeout", "message": "late"})
    assert timed_out.status == AttemptStatus.FAILED and timed_out.error is not None
    assert timed_out.error.code == "wait_timeout"
    rejected = resolved_result(
        "approval", "rejected", {"decision": "rejected", "decisions": [{"principal": "bob", "decision": "reject"}]}
    )
    assert rejected.error is not None and rejected.error.code == "rejected" and "bob" in rejected.error.message
    assert rejected.outputs["decision"] == "rejected"
    assert resolved_result("timer", "fired", {"lateSeconds": 0.1}).status == AttemptStatus.SUCCEEDED


def _definition(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"id": "w", "displayName": "w", "startNode": nodes[0]["id"], "nodes": list(nodes)}


def test_publish_time_validation_of_waiting_nodes() -> None:
    problems = validate_definition(
        _definition(
            {"id": "a", "nodeType": "delay", "parameters": {"duration": "later"}},
            {"id": "b", "nodeType": "signal", "actionType": "core.echo", "parameters": {"name": "x"}},
            {"id": "c", "nodeType": "approval", "parameters": {"approvers": ["x"], "quorum": 2}},
            {"id": "d", "parameters": {}},
            {"id": "e", "nodeType": "subworkflow", "parameters": {}},
        )
    )
    found = {(p.pointer, p.code) for p in problems}
    assert ("/nodes/0/parameters", "invalid_parameters") in found
    assert ("/nodes/1/actionType", "not_allowed") in found
    assert ("/nodes/2/parameters", "invalid_parameters") in found
    assert ("/nodes/3/actionType", "required") in found
    # A subworkflow needs its workflowId.
    assert ("/nodes/4/parameters", "invalid_parameters") in found


def test_a_node_timeout_where_no_action_attempt_runs_is_refused_at_publish() -> None:
    """A node's `timeout` bounds an action's attempt (and a forEach's action items). A node that runs
    none ignored it without a word (a signal wait with "timeout": "PT1M" waited for good): refused,
    pointing to the field that bounds what the node does."""
    nodes = [
        ({"nodeType": "delay", "parameters": {"duration": "PT1M"}}, "duration"),
        ({"nodeType": "signal", "parameters": {"name": "paid"}}, "parameters.timeout"),
        ({"nodeType": "approval", "parameters": {"approvers": ["x"]}}, "parameters.timeout"),
        ({"nodeType": "transform", "parameters": {"expression": "1"}}, "parameters.timeout"),
        ({"nodeType": "subworkflow", "parameters": {"workflowId": "w2"}}, "workflowTimeout"),
        (
            {"nodeType": "forEach", "parameters": {"items": [1], "subworkflow": {"workflowId": "w2"}}},
            "workflowTimeout",
        ),
    ]
    definition = _definition(*({"id": f"n{i}", "timeout": "PT1M", **node} for i, (node, _) in enumerate(nodes)))
    for i, node in enumerate(definition["nodes"][:-1]):
        node["edges"] = [{"targetNode": f"n{i + 1}"}]
    problems = {p.pointer: p for p in validate_definition(definition)}
    for i, (_, hint) in enumerate(nodes):
        problem = problems.get(f"/nodes/{i}/timeout")
        assert problem is not None and problem.code == "not_allowed", (i, problems)
        assert hint in problem.message, problem.message
    # An action node, and a forEach running an action per item, keep theirs.
    kept = _definition(
        {"id": "a", "actionType": "core.echo", "timeout": "PT1M", "edges": [{"targetNode": "b"}]},
        {
            "id": "b",
            "nodeType": "forEach",
            "timeout": "PT1M",
            "parameters": {"items": [1], "action": {"actionType": "core.echo"}},
        },
    )
    assert [p for p in validate_definition(kept) if p.pointer.endswith("/timeout")] == []


def test_templated_wait_parameters_are_checked_when_rendered() -> None:
    problems = validate_definition(
        _definition(
            {"id": "a", "nodeType": "delay", "parameters": {"until": "{{ trigger.at }}"}},
            {"id": "b", "nodeType": "signal", "parameters": {"name": "{{ trigger.kind }}", "timeout": "PT5M"}},
            {"id": "c", "nodeType": "approval", "parameters": {"approvers": "{{ trigger.people }}", "quorum": "all"}},
        )
    )
    assert problems == []


def test_transform_parameters_are_checked_at_publish() -> None:
    problems = validate_definition(
        _definition(
            {"id": "a", "nodeType": "transform", "parameters": {}},
            {"id": "b", "nodeType": "transform", "parameters": {"expression": "1", "timeout": "PT2M"}},
            {"id": "c", "nodeType": "transform", "parameters": {"expression": "1", "extra": 1}},
            {"id": "d", "nodeType": "transform", "parameters": {"expression": "trigger.n +"}},
        ),
        check_condition=lambda expr: "SyntaxError: parse error" if expr.endswith("+") else None,
    )
    found = {(p.pointer, p.code) for p in problems}
    assert found == {
        ("/nodes/0/parameters/expression", "required"),
        ("/nodes/1/parameters/timeout", "range"),
        ("/nodes/2/parameters/extra", "unknown_field"),
        ("/nodes/3/parameters/expression", "expression_syntax"),
    }


@pytest.mark.parametrize(
    ("duration", "timeout", "refused"),
    [
        ("PT2H", "PT1H", True),
        ("PT1H", "PT1H", True),
        ("PT59M", "PT1H", False),
        ("P2D", None, False),  # the deadline is the server's default, or a parent's: not known here
        ("{{ trigger.wait }}", "PT1H", False),  # known when rendered
    ],
)
def test_a_delay_not_shorter_than_the_workflow_timeout_is_refused_at_publish(
    duration: str, timeout: str | None, refused: bool
) -> None:
    """Every run reaching such a delay would time out there (planning's note: no warning)."""
    definition: dict[str, Any] = {
        "id": "w",
        "displayName": "W",
        "startNode": "d",
        "nodes": [{"id": "d", "nodeType": "delay", "parameters": {"duration": duration}}],
    }
    if timeout is not None:
        definition["orchestration"] = {"workflowTimeout": timeout}
    problems = [(p.pointer, p.code) for p in validate_definition(definition)]
    assert problems == ([("/nodes/0/parameters/duration", "exceeds_timeout")] if refused else [])
    if refused:
        (problem,) = validate_definition(definition)
        assert problem.message == (
            f"the delay ({duration}) is not shorter than orchestration.workflowTimeout ({timeout}): "
            "every run that reaches it would time out there"
        )


@pytest.mark.parametrize(
    ("node", "pointer"),
    [
        ({"nodeType": "signal", "parameters": {"name": "paid", "timeout": "PT1H"}}, "/nodes/0/parameters/timeout"),
        (
            {"nodeType": "approval", "parameters": {"approvers": ["a"], "timeout": "PT2H"}},
            "/nodes/0/parameters/timeout",
        ),
        (
            {
                "nodeType": "approval",
                "parameters": {"approvers": ["a"], "escalation": {"after": "PT1H", "approvers": ["b"]}},
            },
            "/nodes/0/parameters/escalation/after",
        ),
    ],
)
def test_a_wait_timeout_or_escalation_past_the_workflow_timeout_is_refused_at_publish(
    node: dict[str, Any], pointer: str
) -> None:
    """A review's note: a signal's or an approval's timeout, or an escalation, that comes no sooner
    than the run's own workflowTimeout could never come (the run times out first): refused as a
    delay is."""
    definition = {
        "id": "w",
        "displayName": "W",
        "startNode": "n",
        "orchestration": {"workflowTimeout": "PT1H"},
        "nodes": [{"id": "n", **node}],
    }
    assert [(p.pointer, p.code) for p in validate_definition(definition)] == [(pointer, "exceeds_timeout")]
    shorter = {**definition, "orchestration": {"workflowTimeout": "PT3H"}}
    assert validate_definition(shorter) == []

"""Composition node kinds and a run's own outputs (issue 12): transform nodes, declared outputs. The
runtime runs in-process as in test_runtime.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dataworkflows.actions import default_registry
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.runtime import Runtime, RuntimeSettings
from tests.conftest import current_templates, load_fixture
from tests.integration.test_runtime import attempts, echo, make_runtime, nodes, to, wf
from tests.integration.test_waits import kind_node, sql, started


def transform(node_id: str, *edges: dict[str, Any], **params: Any) -> dict[str, Any]:
    return kind_node("transform", node_id, edges, params)


async def test_a_transform_reshapes_data_in_the_sandbox(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf(
        "reshape",
        echo("load", to("shape")),
        transform(
            "shape",
            to("use"),
            expression="({ total: trigger.items.reduce(function (a, b) { return a + b.n; }, 0),"
            " names: trigger.items.map(function (i) { return i.name; }), from: nodes.load.echo })",
        ),
        echo("use", message="{{ nodes.shape.total }} for {{ nodes.shape.names | join(',') }}"),
    )
    execution_id = await started(db, raw, {"items": [{"name": "a", "n": 2}, {"name": "b", "n": 3}]})
    assert await runtime.run_execution(execution_id) == "Succeeded"
    state = await nodes(db, execution_id)
    assert state["shape"]["outputs"] == {"total": 5, "names": ["a", "b"], "from": "load"}
    assert state["use"]["outputs"]["echo"] == "5 for a,b"
    # A value that is not an object is kept under "value".
    scalar = await started(db, wf("scalar", transform("n", expression="trigger.n * 2")), {"n": 21})
    assert await runtime.run_execution(scalar) == "Succeeded"
    assert (await nodes(db, scalar))["n"]["outputs"] == {"value": 42}


@pytest.mark.parametrize(
    ("expression", "timeout", "code", "message"),
    [
        ("(function () { throw new Error('no items') })()", None, "transform_error", "no items"),
        ("(function () { while (true) {} })()", "PT0.5S", "transform_timeout", "0.5s"),
        ("'x'.repeat(2000000)", None, "transform_error", "over 1000000"),
        # Half of a UTF-16 pair: said so, not as Python's codec error.
        ("({a: 'x' + String.fromCharCode(0xd800)})", None, "transform_error", "lone UTF-16 surrogate (\\ud800)"),
        # Nested past what the engine records: 960 levels crashed the worker that recorded it, 975
        # were engine_error (the reply's decoding recursed), 970 made the run unreadable.
        *[
            (
                f"(function () {{ var a = []; for (var i = 0; i < {depth}; i++) a = [a]; return {{v: a}}; }})()",
                None,
                "transform_error",
                "nested deeper than 100 levels",
            )
            for depth in (100, 970, 980)
        ],
        # A value that is not an object is the outputs' "value": one level more (a review: 100 levels
        # passed the sandbox and failed the record, unrecordable_result).
        (
            "(function () { var a = []; for (var i = 0; i < 99; i++) a = [a]; return a; })()",
            None,
            "transform_error",
            "is nested deeper than 100 levels",
        ),
        # JSON has no value for these: they were recorded as null, and a typo ran on as a success.
        ("({total: 2 * trigger.prcie})", None, "transform_error", 'the value at "total" is NaN'),
        ("1e400", None, "transform_error", "the value is Infinity"),
        ("trigger.missing", None, "transform_error", "the expression's value is undefined"),
        # Out of memory: Duktape throws null when it cannot allocate even the error, and the node
        # failed with the message "null".
        (
            "(function () { var a = []; for (;;) a.push(new Array(1e6)); })()",
            None,
            "transform_error",
            "the expression ran out of memory (its helper's limit is 512 MB), or threw null",
        ),
    ],
)
async def test_a_transform_that_throws_loops_or_returns_too_much_fails_its_node(
    db: Database, conditions: ConditionPool, expression: str, timeout: str | None, code: str, message: str
) -> None:
    params: dict[str, Any] = {"expression": expression}
    if timeout:
        params["timeout"] = timeout
    execution_id = await started(db, wf("bad-transform", transform("t", **params)))
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Failed"
    state = (await nodes(db, execution_id))["t"]
    assert state["error"]["code"] == code and message in state["error"]["message"]
    assert [r["status"] for r in await attempts(db, execution_id)] == ["Failed"], "not retried"
    # The pool still works after a helper was killed.
    assert await conditions.evaluate("1 === 1", {"trigger": {}, "nodes": {}, "execution": {}})


async def test_a_transform_syntax_error_is_refused_at_publish(conditions: ConditionPool) -> None:
    from dataworkflows.actions import default_registry
    from dataworkflows.errors import DefinitionError
    from dataworkflows.publishing import prepare_definition

    with pytest.raises(DefinitionError) as refused:
        await prepare_definition(wf("broken", transform("t", expression="trigger.n +")), default_registry(), conditions)
    assert [(p.pointer, p.code) for p in refused.value.problems] == [
        ("/nodes/0/parameters/expression", "expression_syntax")
    ]


async def test_the_transform_example_in_fixtures_runs(db: Database, conditions: ConditionPool) -> None:
    lines = [{"sku": "A1", "qty": 2, "price": 5}, {"sku": "B2", "qty": 1, "price": 7}]
    execution_id = await started(db, load_fixture("bundle6/order-summary-transform-workflow.json"), {"lines": lines})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Succeeded"
    assert (await nodes(db, execution_id))["report"]["outputs"]["echo"] == "2 lines, total 17: A1, B2"


async def test_a_run_returns_its_declared_outputs(db: Database, conditions: ConditionPool) -> None:
    runtime = make_runtime(db, conditions)
    raw = wf("with-outputs", echo("greet", message="hi {{ trigger.user }}"), echo("count", message="{{ trigger.n }}"))
    raw["outputs"] = {"greeting": "{{ nodes.greet.echo }}", "n": "{{ nodes.count.echo }}", "fixed": 1}
    execution_id = await started(db, raw, {"user": "ada", "n": 3})
    assert await runtime.run_execution(execution_id) == "Succeeded"
    execution = await db.executions.get(execution_id)
    assert execution is not None and execution.outputs == {"greeting": "hi ada", "n": 3, "fixed": 1}
    assert await sql(db, "SELECT outputs FROM dw.v_executions WHERE id = %s", execution_id) == [
        ({"greeting": "hi ada", "n": 3, "fixed": 1},)
    ]

    # Outputs that reach for what the run did not produce fail it, saying so.
    broken = wf("bad-outputs", echo("a"))
    broken["outputs"] = {"x": "{{ nodes.missing.echo }}"}
    failed = await started(db, broken)
    assert await runtime.run_execution(failed) == "Failed"
    execution = await db.executions.get(failed)
    assert execution is not None and execution.outputs is None and execution.error is not None
    assert execution.error["code"] == "outputs_error"


async def test_an_outputs_template_that_does_not_compile_is_refused_at_publish(conditions: ConditionPool) -> None:
    from dataworkflows.actions import default_registry
    from dataworkflows.errors import DefinitionError
    from dataworkflows.publishing import prepare_definition

    raw = wf("bad-syntax", echo("a"))
    raw["outputs"] = {"x": "{{ nodes.a.echo "}
    with pytest.raises(DefinitionError) as refused:
        await prepare_definition(raw, default_registry(), conditions)
    assert [(p.pointer, p.code) for p in refused.value.problems] == [("/outputs", "template_syntax")]


async def test_outputs_the_sandbox_refused_to_render_fail_the_run_not_its_job(
    db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outputs template refused without running (it timed out recently and a flood of it waits
    for the sandbox's suspects' lane) fails the run with outputs_error, as its timeout would; it used
    to raise out of the run, fail its job and leave the run Running for recovery, again and again."""
    from dataworkflows.templating import TemplateRefused

    runtime = make_runtime(db, conditions)
    raw = wf("refused-outputs", echo("a"))
    raw["outputs"] = {"x": "{{ nodes.a.echo | upper }}"}
    execution_id = await started(db, raw)

    async def refused(value: Any, scope: Any) -> Any:
        if value == raw["outputs"]:
            raise TemplateRefused("the template was not rendered: it ran past its time limit recently")
        return await real(value, scope)

    real = runtime.templates.render
    monkeypatch.setattr(runtime.templates, "render", refused)
    assert await runtime.run_execution(execution_id) == "Failed"
    execution = await db.executions.get(execution_id)
    assert execution is not None and execution.error is not None
    assert execution.error["code"] == "outputs_error" and "not rendered" in execution.error["message"]


LOOP = "(function () { while (true) {} })()"


async def test_a_condition_never_waits_behind_transforms_that_hold_their_helpers(
    db: Database, conditions: ConditionPool
) -> None:
    """Transforms (up to a minute each) and conditions (a second) shared the worker's two helpers,
    so a run's condition waited behind two other runs' slow transforms for as long as they ran.
    Transforms now evaluate in helpers of their own (Runtime(transforms=...), as the worker does)."""
    transforms = ConditionPool(size=2)
    try:
        runtime = Runtime(
            db,
            default_registry(),
            RuntimeSettings(worker_id="test-worker", lease_seconds=5.0),
            conditions,
            templates=current_templates(),
            transforms=transforms,
        )
        slow = await started(
            db,
            wf(
                "slow-transforms",
                echo("s", to("t1"), to("t2")),
                transform("t1", expression=LOOP, timeout="PT6S"),
                # Another text: not the first one's suspect (sandbox_pool), a helper of its own.
                transform("t2", expression="(function () { for (;;) {} })()", timeout="PT6S"),
            ),
        )
        quick = await started(
            db, wf("quick-condition", echo("a", to("b", condition="trigger.go === true")), echo("b")), {"go": True}
        )
        slow_run = asyncio.create_task(runtime.run_execution(slow))
        for _ in range(200):
            state = await nodes(db, slow)
            if all(state.get(n, {}).get("status") == "Running" for n in ("t1", "t2")):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"the transforms did not start: {state}")
        assert await runtime.run_execution(quick) == "Succeeded"
        assert (await nodes(db, quick))["b"]["status"] == "Succeeded", "the condition held"
        assert not slow_run.done() and transforms.helpers_killed == 0, "it ended while the transforms still ran"
        assert await slow_run == "Failed"
        assert transforms.helpers_killed >= 1 and conditions.helpers_killed == 0
    finally:
        await transforms.close()


@pytest.mark.parametrize(
    ("value", "expression", "message"),
    [
        # Cut to its first line before the scrubber saw the whole value: "Error: bad line1" stayed.
        ("line1-secret\nline2-secret", "'bad ' + trigger.v", "Error: bad [redacted]"),
        # JavaScript's JSON spelling (non-ASCII as it is, the quote escaped), not Python's.
        ('Wörd"1234-secret', "'bad ' + JSON.stringify(trigger.v)", 'Error: bad "[redacted]"'),
    ],
)
async def test_a_transforms_error_never_shows_a_trigger_value(
    db: Database, conditions: ConditionPool, value: str, expression: str, message: str
) -> None:
    raw = wf("leaky", transform("t", expression=f"(function () {{ throw new Error({expression}); }})()"))
    execution_id = await started(db, raw, {"v": value})
    assert await make_runtime(db, conditions).run_execution(execution_id) == "Failed"
    error = (await nodes(db, execution_id))["t"]["error"]
    assert error["code"] == "transform_error" and error["message"] == message, error
    ((text,),) = await sql(db, "SELECT error::text FROM dw.executions WHERE id = %s", execution_id)
    assert "secret" not in text and "line1" not in text, text

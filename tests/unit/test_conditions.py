"""The condition sandbox: real helper processes, no database."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest

from dataworkflows.conditions import ConditionError, ConditionPool, ConditionRefused, ConditionTimeout

SCOPE = {"trigger": {"status": "approved", "n": 2}, "nodes": {"a": {"echo": "x"}}, "execution": {"id": "e"}}
# True on SCOPE, and outside what the worker decides itself (dataworkflows.simple_conditions): a helper
# evaluates it.
HELPER_CONDITION = "trigger.n === 1 + 1"


async def test_conditions_see_trigger_nodes_and_execution(conditions: ConditionPool) -> None:
    assert await conditions.evaluate("trigger.status === 'approved'", SCOPE) is True
    assert await conditions.evaluate("trigger.status !== 'approved'", SCOPE) is False
    assert await conditions.evaluate("nodes.a.echo === 'x' && execution.id === 'e'", SCOPE) is True


async def test_results_are_coerced_to_booleans(conditions: ConditionPool) -> None:
    assert await conditions.evaluate("trigger.n", SCOPE) is True
    assert await conditions.evaluate("''", SCOPE) is False
    assert await conditions.evaluate("null", SCOPE) is False


async def test_process_env_is_empty(conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DW_TEST_SECRET", "hunter2")
    assert await conditions.evaluate("Object.keys(process.env).length === 0", SCOPE) is True
    assert await conditions.evaluate("JSON.stringify(process.env).indexOf('hunter2') === -1", SCOPE) is True


async def test_require_cannot_read_files(conditions: ConditionPool) -> None:
    with pytest.raises(ConditionError):
        await conditions.evaluate("require('/etc/passwd') !== null", SCOPE)
    assert await conditions.evaluate("typeof require === 'undefined'", SCOPE) is True


async def test_conditions_cannot_leave_state_for_the_next(conditions: ConditionPool) -> None:
    with pytest.raises(ConditionError):
        await conditions.evaluate("(globalThis.leak = 1)", SCOPE)
    with pytest.raises(ConditionError):
        await conditions.evaluate("(Object.prototype.leak = 1)", SCOPE)
    assert await conditions.evaluate("typeof leak === 'undefined' && ({}).leak === undefined", SCOPE) is True


async def test_an_infinite_loop_times_out_and_the_helper_is_replaced() -> None:
    pool = ConditionPool(size=1, timeout_seconds=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(ConditionTimeout) as caught:
            await pool.evaluate("(function () { while (true) {} })()", SCOPE)
        assert time.monotonic() - started < 2.0
        assert caught.value.code == "condition_timeout"
        assert pool.helpers_killed == 1
        # The pool works again with a fresh helper.
        assert await pool.evaluate(HELPER_CONDITION, SCOPE) is True
    finally:
        await pool.close()


async def test_runtime_errors_are_condition_errors(conditions: ConditionPool) -> None:
    with pytest.raises(ConditionError, match="ReferenceError"):
        await conditions.evaluate("notDefined > 1", SCOPE)
    with pytest.raises(ConditionError, match="TypeError"):
        await conditions.evaluate("nodes.missing.echo", SCOPE)


async def test_syntax_check(conditions: ConditionPool) -> None:
    found = await conditions.check_many(["trigger.n > 1", "trigger.(", "a b"])
    assert found["trigger.n > 1"] is None
    assert "SyntaxError" in (found["trigger.("] or "")
    assert found["a b"] is not None


async def test_an_expression_that_ends_too_early_is_said_to_be_that(conditions: ConditionPool) -> None:
    # It named the `)` or `;` of the code the expression is compiled in, a character it does not have.
    found = await conditions.check_many(["body.x ==", "foo(", "(a", "a )"])
    assert found["body.x =="] == "SyntaxError: the expression ends before it is complete (it ends with 'body.x ==')"
    assert found["foo("] == "SyntaxError: the expression ends before it is complete (it ends with 'foo(')"
    assert found["(a"] == "SyntaxError: the expression ends before it is complete (it ends with '(a')"
    # Its own `)`: Duktape's words, which are about the expression.
    assert found["a )"] == "SyntaxError: unexpected token in expression: ')'"


async def test_an_expression_that_closes_the_wrappers_parenthesis_is_refused(conditions: ConditionPool) -> None:
    # It compiled inside `return (…\n);` and ran spliced into the wrapper (sandbox review): balanced
    # with the wrapper's parentheses, not its own.
    found = await conditions.check_many(["trigger.x == 1)||(true", "x]||[y", "a, b", "({a: 1})", "[1].map(x => x)"])
    assert found["trigger.x == 1)||(true"] is not None and "SyntaxError" in found["trigger.x == 1)||(true"]
    assert found["x]||[y"] is not None
    assert [found[e] for e in ("a, b", "({a: 1})", "[1].map(x => x)")] == [None, None, None]


async def test_code_that_breaks_out_of_the_expression_is_still_confined(conditions: ConditionPool) -> None:
    # Published, the syntax check refuses it now (it does not compile within brackets); whatever
    # gets to run, the sandbox is what makes it harmless.
    injected = "1); }; globalThis.process.env.X = 1; (function(){ return (1"
    assert (await conditions.check(injected)) is not None
    with pytest.raises(ConditionError):
        await conditions.evaluate(injected, SCOPE)
    assert await conditions.evaluate("Object.keys(process.env).length === 0", SCOPE) is True


async def test_host_bridges_are_closed(conditions: ConditionPool) -> None:
    # dukpy exposes call_python (file reads through dukpy.load_module) and import(): both refuse.
    with pytest.raises(ConditionError, match="No Python Function"):
        await conditions.evaluate("call_python('dukpy.load_module', '/etc/hostname')", SCOPE)
    with pytest.raises(ConditionError):
        await conditions.evaluate("import('/etc/hostname').then(function () { return 1 })", SCOPE)
    assert await conditions.evaluate("Object.isFrozen(process) && Object.keys(process).join() === 'env'", SCOPE)
    for name in ["require", "console"]:
        assert await conditions.evaluate(f"typeof {name} === 'undefined'", SCOPE) is True


async def test_the_scope_is_reached_only_through_the_names_it_binds(conditions: ConditionPool) -> None:
    # The plan keeps a node's outputs in a run's scope only when some text names it (`nodes.a`,
    # planning.outputs_read); a condition or transform that reached the scope through dukpy's global,
    # spelled in pieces, read what a resumed run does not load: its edge fired before a park and
    # failed after one (a condition error, the node behind it Skipped).
    reach = "globalThis['duk' + 'py'].scope"
    assert await conditions.evaluate(f"typeof {reach} === 'undefined'", SCOPE) is True
    assert await conditions.value(f"typeof {reach}", SCOPE, time_limit=5, max_bytes=1000) == "undefined"
    assert await conditions.evaluate("nodes.a.echo === 'x' && trigger.n === 2", SCOPE) is True


async def test_one_condition_cannot_steal_or_forge_anothers_result() -> None:
    pool = ConditionPool(size=1)  # one helper: both conditions share its interpreter
    try:
        attack = (
            "(function () { try { Object.defineProperty(globalThis, 'dukpy', {get: function () {"
            " return {scope: {trigger: {amount: 1e9}, nodes: {}, execution: {}}}; }, set: function () {}}); }"
            " catch (e) {} try { Math = {max: function () { return 1e9; }}; } catch (e) {} return true; })()"
        )
        assert await pool.evaluate(attack, SCOPE) is True
        assert (
            await pool.evaluate("trigger.amount > 1000", {"trigger": {"amount": 5}, "nodes": {}, "execution": {}})
            is False
        )
        assert await pool.evaluate("Math.max(1, 2) === 2", SCOPE) is True
    finally:
        await pool.close()


async def test_validation_cannot_run_host_code(conditions: ConditionPool) -> None:
    breakout = (
        "1\n)}); throw new Error('FILE:' + call_python('dukpy.load_module', '/etc/hostname')[1]); (function(){return (1"
    )
    error = await conditions.check(breakout)
    assert error is not None and "FILE:" not in error


async def test_a_waiter_gets_a_fresh_helper_after_a_timeout() -> None:
    import asyncio

    pool = ConditionPool(size=1, timeout_seconds=0.3)
    try:
        looping = asyncio.create_task(pool.evaluate("(function () { while (true) {} })()", SCOPE))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(pool.evaluate(HELPER_CONDITION, SCOPE))
        with pytest.raises(ConditionTimeout):
            await looping
        assert await asyncio.wait_for(waiting, 5) is True
    finally:
        await pool.close()


async def test_shared_intrinsics_are_frozen_and_a_poisoned_helper_retires() -> None:
    pool = ConditionPool(size=1)
    scope = {"trigger": {"items": [1, 2, 3]}, "nodes": {}, "execution": {}}
    try:
        attacks = [
            "(function(){ try { Object.getPrototypeOf([][Symbol.iterator]()).next = function(){ return {done: true} }"
            " } catch (e) {} return true })()",
            "(function(){ try { Array.prototype.some.call = function(){ return true } } catch (e) {} return true })()",
            "(function(){ try { Object.keys.loot = 1 } catch (e) {} return true })()",
            "(function(){ try { Object.defineProperty(globalThis, 'dukpy', {writable: false}) } catch (e) {}"
            " return true })()",
        ]
        for attack in attacks:
            assert await pool.evaluate(attack, scope) is True
        assert await pool.evaluate("[...trigger.items].length === 3", scope) is True
        assert await pool.evaluate("[1].some.call([1], function () { return false }) === false", scope) is True
        assert await pool.evaluate("Object.keys.loot === undefined", scope) is True
    finally:
        await pool.close()


GROW = "(function () { var a = []; for (;;) { a.push(new Array(1e6)); } })()"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        # Duktape throws null when it cannot even allocate the error (the message was "null"), or
        # its out-of-memory error when it can: which one depends on where the growth stops.
        (GROW, "the expression ran out of memory (its helper's limit is 256 MB)"),
        ("new ArrayBuffer(1e9).byteLength > 0", "the expression ran out of memory (its helper's limit is 256 MB)"),
    ],
)
async def test_code_that_runs_out_of_memory_says_so(expr: str, message: str) -> None:
    """A transform and a condition that run out of memory fail with a message that says so and
    names the helper's limit, and the helper goes on serving."""
    pool = ConditionPool(size=1, timeout_seconds=30.0, memory_bytes=256 * 1024 * 1024)
    try:
        with pytest.raises(ConditionError) as as_transform:
            await pool.value(expr, SCOPE, time_limit=30.0, max_bytes=1000)
        with pytest.raises(ConditionError) as as_condition:
            await pool.evaluate(expr, SCOPE)
        said = {message, message + ", or threw null"}
        assert (as_transform.value.code, as_transform.value.message in said) == ("condition_error", True), as_transform
        assert (as_condition.value.code, as_condition.value.message in said) == ("condition_error", True), as_condition
        assert await pool.evaluate(HELPER_CONDITION, SCOPE) is True
    finally:
        await pool.close()


LOOP = "(function () { while (true) {} })()"


async def test_code_that_timed_out_queues_in_its_own_lane() -> None:
    """A looping condition, once it has timed out, no longer holds the helper everyone shares: a
    good condition sent after three more copies of it is answered before any of them."""
    import asyncio

    pool = ConditionPool(size=1, timeout_seconds=2.0)
    tasks: list[asyncio.Task[bool]] = []
    try:
        with pytest.raises(ConditionTimeout):
            await pool.evaluate(LOOP, SCOPE)
        tasks += [asyncio.create_task(pool.evaluate(LOOP, SCOPE)) for _ in range(3)]
        await asyncio.sleep(0)
        good = asyncio.create_task(pool.evaluate(HELPER_CONDITION, SCOPE))
        tasks.append(good)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        assert done == {good}
        assert good.result() is True
        # The three copies went to the suspects' lane; the good condition did not.
        assert pool._pool.suspect_calls == 3
    finally:
        await _stop(tasks, pool)


async def test_requests_already_waiting_when_their_code_times_out_go_to_its_lane() -> None:
    """Four runs of a loop started at once, two shared helpers: the first two hold them and time
    out; the other two, which waited for a shared helper, go to the suspects' lane when one is handed
    to them (they took the shared helpers a second time: the sandbox review's six runs held both
    three times over, and a good transform behind them waited for every round). A good condition
    sent after them takes a shared helper and is answered while they still loop in the lane."""
    import asyncio

    pool = ConditionPool(size=2, timeout_seconds=1.0)
    tasks: list[asyncio.Task[bool]] = []
    try:
        loops = [asyncio.create_task(pool.evaluate(LOOP, SCOPE)) for _ in range(4)]
        tasks += loops
        await asyncio.sleep(0)
        good = asyncio.create_task(pool.evaluate(HELPER_CONDITION, SCOPE))
        tasks.append(good)
        assert await asyncio.wait_for(good, 30) is True
        assert loops[0].done() and loops[1].done()
        assert not loops[3].done()  # the second in the lane: it waits for the first's whole second
        for loop in loops:
            with pytest.raises(ConditionTimeout):
                await asyncio.wait_for(loop, 30)
        # The two that waited ran in the lane, one after the other.
        assert pool._pool.suspect_calls == 2
        assert pool.helpers_killed == 4
    finally:
        await _stop(tasks, pool)


@pytest.mark.parametrize(("slow", "other"), [(("acme", None), ("globex", None)), (("acme", "r1"), ("acme", "r2"))])
async def test_a_backlog_does_not_stand_in_front_of_another_tenants_or_runs_request(
    slow: tuple[str, str | None], other: tuple[str, str | None]
) -> None:
    """One tenant's (or run's) slow code, each expression different (so none is a suspect), kept
    every helper busy and its backlog queued first: another tenant's (or another run's) condition
    waited for all of it (the sandbox review: an edge condition 57 s behind four looping
    transforms, in one tenant). A freed helper now goes to the waiting tenant, then run, served
    least recently: the other condition runs right after the first loop, before the other two."""
    import asyncio

    from dataworkflows.sandbox_pool import run_scope
    from dataworkflows.tenancy import tenant_scope

    def scope(owner: tuple[str, str | None]) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(tenant_scope(owner[0]))
        if owner[1] is not None:
            stack.enter_context(run_scope(owner[1]))
        return stack

    pool = ConditionPool(size=1, timeout_seconds=1.0)
    tasks: list[asyncio.Task[bool]] = []
    try:
        with scope(slow):
            loops = [
                asyncio.create_task(pool.evaluate(f"(function () {{ var x = {i}; while (true) {{ x++ }} }})()", SCOPE))
                for i in range(3)
            ]
        tasks += loops
        await asyncio.sleep(0.1)
        with scope(other):
            good = asyncio.create_task(pool.evaluate(HELPER_CONDITION, SCOPE))
        tasks.append(good)
        assert await good is True
        assert loops[0].done() and not loops[1].done() and not loops[2].done()
        assert pool._pool.suspect_calls == 0
    finally:
        await _stop(tasks, pool)


async def test_suspicion_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataworkflows import sandbox_pool

    monkeypatch.setattr(sandbox_pool, "SUSPECT_SECONDS", 0.0)
    pool = ConditionPool(size=1, timeout_seconds=0.3)
    try:
        for _ in range(2):
            with pytest.raises(ConditionTimeout):
                await pool.evaluate(LOOP, SCOPE)
        assert pool._pool.suspect_calls == 0
    finally:
        await pool.close()


async def test_suspicion_is_per_tenant() -> None:
    """One tenant's timeout does not send another tenant's runs of the same expression to the lane."""
    from dataworkflows.tenancy import tenant_scope

    pool = ConditionPool(size=1, timeout_seconds=0.3)
    try:
        with tenant_scope("acme"), pytest.raises(ConditionTimeout):
            await pool.evaluate(LOOP, SCOPE)
        with tenant_scope("globex"), pytest.raises(ConditionTimeout):
            await pool.evaluate(LOOP, SCOPE)
        assert pool._pool.suspect_calls == 0
        with tenant_scope("acme"), pytest.raises(ConditionTimeout):
            await pool.evaluate(LOOP, SCOPE)
        assert pool._pool.suspect_calls == 1
    finally:
        await pool.close()


async def test_a_flood_of_suspects_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_SUSPECT_WAITERS waiting for the lane, a suspect is refused at once, not queued."""
    import asyncio

    from dataworkflows import sandbox_pool

    monkeypatch.setattr(sandbox_pool, "MAX_SUSPECT_WAITERS", 1)
    pool = ConditionPool(size=1, timeout_seconds=2.0)
    tasks: list[asyncio.Task[bool]] = []
    try:
        with pytest.raises(ConditionTimeout):
            await pool.evaluate(LOOP, SCOPE)
        suspicion = dict(pool._pool._suspects)
        # One runs in the lane, one waits for it, the third is refused.
        tasks += [asyncio.create_task(pool.evaluate(LOOP, SCOPE)) for _ in range(3)]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        assert done == {tasks[2]}
        with pytest.raises(ConditionRefused, match="was not run: it ran past its time limit recently"):
            tasks[2].result()
        # A refusal ran nothing: the suspicion still ends 10 minutes after the last real timeout.
        assert pool._pool._suspects == suspicion
    finally:
        await _stop(tasks, pool)


async def test_one_tenants_flood_does_not_refuse_another_tenants_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The waiters for the suspects' lane are counted per tenant: acme's flood of its looping
    condition is refused past the limit, globex's suspect request waits for the lane and runs."""
    import asyncio

    from dataworkflows import sandbox_pool
    from dataworkflows.tenancy import tenant_scope

    monkeypatch.setattr(sandbox_pool, "MAX_SUSPECT_WAITERS", 1)
    pool = ConditionPool(size=1, timeout_seconds=1.0)
    tasks: list[asyncio.Task[bool]] = []
    good = HELPER_CONDITION
    try:
        with tenant_scope("acme"), pytest.raises(ConditionTimeout):
            await pool.evaluate(LOOP, SCOPE)
        with tenant_scope("globex"):
            # globex's expression is a suspect too (as if one of its inputs had made it time out).
            pool._pool._suspect(pool._pool._digest(good))
        with tenant_scope("acme"):
            tasks += [asyncio.create_task(pool.evaluate(LOOP, SCOPE)) for _ in range(2)]
        await asyncio.sleep(0)
        with tenant_scope("globex"):
            theirs = asyncio.create_task(pool.evaluate(good, SCOPE))
        tasks.append(theirs)
        assert await asyncio.wait_for(theirs, 30) is True
        assert pool._pool.suspect_calls == 3
    finally:
        await _stop(tasks, pool)


async def test_a_call_cancelled_while_its_helper_starts_leaves_no_helper_behind() -> None:
    """A node cancelled while the helper for its condition warms up: the new helper process is
    killed and its working directory removed, rather than left running."""
    import asyncio
    import os

    pool = ConditionPool(size=1)
    spawned: list[Any] = []
    warming = asyncio.Event()

    async def warm_up(helper: Any, request: Any) -> None:
        spawned.append(helper)
        warming.set()
        await asyncio.Event().wait()  # still starting when the caller goes away

    pool._pool._warm_up = warm_up  # type: ignore[method-assign]
    try:
        task = asyncio.create_task(pool.evaluate("true", SCOPE))
        await warming.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (helper,) = spawned
        assert helper.process.returncode is not None
        assert not os.path.exists(helper.workdir)
    finally:
        await pool.close()


async def _stop(tasks: list[Any], pool: ConditionPool) -> None:
    """Ends a test's evaluations still running (loops in the suspects' lane), then its pool."""
    import asyncio

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await pool.close()

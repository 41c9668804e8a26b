"""Simple edge conditions decided in the worker (dataworkflows.simple_conditions), against the sandbox:
every expression the subset decides must get the answer the sandbox (Duktape, in a helper) gives it."""

from __future__ import annotations

import random
from typing import Any

import pytest

from dataworkflows import simple_conditions
from dataworkflows.conditions import ConditionPool

SCOPE: dict[str, Any] = {
    "trigger": {
        "status": "approved",
        "n": 2,
        "zero": 0,
        "negzero": -0.0,
        "half": 0.5,
        "empty": "",
        "none": None,
        "yes": True,
        "no": False,
        "big": 2**53 + 1,
        "huge": 10**30,
        "list": [1, "two", None, {"k": "v"}],
        "obj": {},
        "date": "2024-05-01",
        "emoji": "\U0001f600",
        "bmp": "\uffff",
        "__proto__": {"x": 1},
        "with space": "s",
        "0": "zero-key",
        "1e3": 1000,
    },
    "nodes": {"check": {"echo": "approved", "count": 3, "items": [{"id": 7}]}, "other": {"echo": "APPROVED"}},
    "execution": {"id": "e-1"},
    "errors": {"check": {"code": "http_error", "status": 503}},
}

# Expressions the subset must decide (on SCOPE), each checked against the sandbox.
DECIDED = [
    "nodes.check.echo === 'approved'",
    "nodes.check.echo !== 'approved'",
    'nodes.check.echo === "approved"',
    "nodes.check.echo == 'approved'",
    "nodes.check.echo != 'APPROVED'",
    "nodes['check']['echo'] === 'approved'",
    "nodes.check.items[0].id === 7",
    "nodes.check.items[0].id === 7.0",
    "nodes.check.count > 2",
    "nodes.check.count >= 3",
    "nodes.check.count < 3",
    "nodes.check.count <= 2.5",
    "trigger.n === 2 && trigger.status === 'approved'",
    "trigger.n === 3 || trigger.status === 'approved'",
    "trigger.n === 3 || trigger.status === 'rejected' && trigger.yes",
    "(trigger.n === 3 || trigger.status === 'approved') && trigger.no",
    "!(trigger.n === 2)",
    "!trigger.no",
    "!trigger.yes",
    "trigger.yes",
    "trigger.zero",
    "trigger.negzero",
    "trigger.half",
    "trigger.empty",
    "trigger.none",
    "trigger.list",
    "trigger.obj",
    "trigger.zero === -0",
    "trigger.negzero === 0",
    "trigger.zero < 0",
    "trigger.half === 0.5",
    "trigger.half === 5e-1",
    "trigger.n === 2e0",
    "trigger.none === null",
    "trigger.none == null",
    "trigger.none !== null",
    "trigger.empty === ''",
    "trigger.yes === true",
    "trigger.yes == true",
    "trigger.no === false",
    "trigger.n === '2'",
    "trigger.status === 2",
    "trigger.yes === 1",
    "trigger.obj === null",
    "trigger.obj !== 'x'",
    "trigger.list === 1",
    "trigger.date > '2024-01-01'",
    "trigger.date < '2024-01-01'",
    "trigger.bmp > 'a'",
    "trigger.status > 'Approved'",
    "trigger['with space'] === 's'",
    "trigger['0'] === 'zero-key'",
    "trigger['1e3'] === 1000",
    "trigger.n > -3",
    "trigger.n === - 2",
    "errors.check.code === 'http_error'",
    "errors.check.status >= 500 && errors.check.status < 600",
    "execution.id === 'e-1'",
    "nodes.check.echo === nodes.other.echo",
    "nodes.check.echo == nodes.check.echo",
    "trigger.n\n===\t2",
    "'x' === 'x'",
]

# Outside the subset, or undecided on SCOPE: left to the sandbox.
UNDECIDED = [
    "trigger.missing === undefined",
    "trigger.missing === 1",
    "trigger.none.x === 1",
    "trigger.status.length === 8",
    "trigger.list.length > 0",
    "trigger.list[9] === 1",
    "trigger.list['0'] === 1",
    "trigger.obj.constructor === 1",
    "trigger.__proto__.x === 1",
    "trigger.big === 9007199254740992",
    "trigger.huge > 1",
    "trigger.emoji > 'a'",
    "trigger.n == '2'",
    "trigger.none == 0",
    "trigger.list == 1",
    "trigger.yes > false",
    "trigger.obj === trigger.obj",
    "!trigger.n === false",
    "trigger.n < 3 < 2",
    "(trigger.n) === 2",
    "trigger.n === (2)",
    "true",
    "trigger.n === 1 + 1",
    "trigger.status === 'a\\'b'",
    "trigger.n === 0x2",
    "trigger.n === 02",
    "trigger.n === 2.",
    "trigger.n === .5",
    "trigger.n === 1e400",
    "trigger.n === 2 // a comment",
    "trigger?.n === 2",
    "typeof trigger === 'object'",
    "trigger.status.toUpperCase() === 'APPROVED'",
    "Math.max(1, 2) === 2",
    "undefined === undefined",
    "trigger.n === NaN",
    "nodes.check.echo === 'approved';",
    "trigger.n === 2 ? true : false",
    "trigger.n in trigger",
    "trigger.n\u00a0=== 2",
]


async def sandbox_answer(pool: ConditionPool, expr: str, scope: dict[str, Any]) -> tuple[bool, Any]:
    # The helper's own answer, past the subset (ConditionPool.evaluate would decide first).
    answer = await pool._call("eval", expr, scope)
    return answer.ok, answer.value if answer.ok else answer.error


async def decided_as_the_sandbox(conditions: ConditionPool, cases: list[tuple[str, dict[str, Any]]]) -> int:
    """Checks every case the subset decides against the sandbox's answer; how many it decided."""
    decided_count = 0
    for expr, scope in cases:
        decided = simple_conditions.decide(expr, scope)
        if decided is None:
            continue
        decided_count += 1
        ok, value = await sandbox_answer(conditions, expr, scope)
        assert ok, (expr, value)
        assert bool(value) is decided, expr
    return decided_count


async def test_what_the_subset_decides_the_sandbox_decides_alike(conditions: ConditionPool) -> None:
    for expr in DECIDED:
        decided = simple_conditions.decide(expr, SCOPE)
        assert decided is not None, expr
        ok, value = await sandbox_answer(conditions, expr, SCOPE)
        assert ok, (expr, value)
        assert bool(value) is decided, expr


def test_what_the_subset_leaves_to_the_sandbox() -> None:
    for expr in UNDECIDED:
        assert simple_conditions.decide(expr, SCOPE) is None, expr


async def test_the_sandbox_decides_what_the_subset_leaves_as_it_always_did(conditions: ConditionPool) -> None:
    # Through the pool: an undecided expression still gets the sandbox's answer, its error included.
    assert await conditions.evaluate("trigger.status.length === 8", SCOPE) is True
    assert await conditions.evaluate("trigger.missing === undefined", SCOPE) is True
    assert await conditions.evaluate("trigger.n == '2'", SCOPE) is True
    with pytest.raises(Exception, match="TypeError"):
        await conditions.evaluate("trigger.none.x === 1", SCOPE)


async def test_a_simple_condition_needs_no_helper() -> None:
    pool = ConditionPool(size=1)

    async def no_helper(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("a helper was asked")

    pool._pool.call = no_helper  # type: ignore[method-assign]
    try:
        assert await pool.evaluate("nodes.check.echo === 'approved' && trigger.n > 1", SCOPE) is True
        assert await pool.evaluate("errors.check.code !== 'http_error'", SCOPE) is False
        with pytest.raises(AssertionError, match="a helper was asked"):
            await pool.evaluate("trigger.status.length === 8", SCOPE)
    finally:
        await pool.close()


def test_errors_are_bound_as_the_sandbox_binds_them() -> None:
    # `errors = __s.errors || {}`: absent or null, an empty object.
    assert simple_conditions.decide("errors", {"trigger": {}}) is True
    assert simple_conditions.decide("errors", {"errors": None}) is True
    assert simple_conditions.decide("errors.x === 1", {"errors": None}) is None
    assert simple_conditions.decide("errors.x === 1", {"errors": 0}) is None
    # An unbound root is undefined: the sandbox says what that gives.
    assert simple_conditions.decide("trigger === null", {}) is None


def test_deep_expressions_are_left_to_the_sandbox() -> None:
    assert simple_conditions.decide("(" * 5000 + "trigger.yes" + ")" * 5000, SCOPE) is None
    chained = " && ".join(["trigger.yes"] * 20_000)
    assert simple_conditions.decide(chained, SCOPE) in (True, None)


# Random expressions of the subset's grammar over tricky values, each against the sandbox.
_VALUES: list[Any] = [
    0,
    -0.0,
    1,
    2,
    -1,
    0.5,
    1e21,
    2**53,
    2**53 + 1,
    "",
    "a",
    "b",
    "A",
    "10",
    "2",
    "\u00e9",
    "\uffff",
    "\U0001f600",
    None,
    True,
    False,
    [],
    [1],
    {},
    {"a": 1},
]
_LITERALS = ["0", "-0", "1", "2", "-1", "0.5", "1e21", "''", "'a'", "'b'", "'10'", "'2'", "true", "false", "null"]
_OPS = ["===", "!==", "==", "!=", "<", "<=", ">", ">="]


def _operand(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_LITERALS)
    return f"trigger.v{rng.randrange(len(_VALUES))}"


def _expression(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 2 and roll < 0.25:
        joiner = rng.choice(["&&", "||"])
        return f"{_expression(rng, depth + 1)} {joiner} {_expression(rng, depth + 1)}"
    if depth < 2 and roll < 0.35:
        return f"!({_expression(rng, depth + 1)})"
    if roll < 0.45:
        return f"trigger.v{rng.randrange(len(_VALUES))}"
    return f"{_operand(rng)} {rng.choice(_OPS)} {_operand(rng)}"


async def test_random_expressions_decide_as_the_sandbox_does(conditions: ConditionPool) -> None:
    rng = random.Random(20261207)
    scope = {"trigger": {f"v{i}": value for i, value in enumerate(_VALUES)}}
    cases = [(_expression(rng), scope) for _ in range(600)]
    # Most of the grammar's expressions are decided here, not only the trivial ones.
    assert await decided_as_the_sandbox(conditions, cases) > 300


async def test_number_literals_of_many_digits_are_left_to_the_sandbox(conditions: ConditionPool) -> None:
    # The sandbox's engine rounds a literal of about 40 digits or more at (or near) the midpoint of two
    # doubles otherwise than Python's float() does: decided here, the answer was not the sandbox's.
    midpoint = "1.00000000000000033306690738754696212708950042724609375"
    expr = f"{midpoint} === 1.0000000000000004"
    assert await sandbox_answer(conditions, expr, SCOPE) == (True, False)
    assert float(midpoint) == 1.0000000000000004  # Python's correctly rounded parse: true
    assert simple_conditions.decide(expr, SCOPE) is None
    assert simple_conditions.decide(f"trigger.n < -{midpoint}e3", SCOPE) is None
    # Up to 20 digits, as ever.
    assert simple_conditions.decide("trigger.half === 0.5000000000000000000", SCOPE) is True
    assert simple_conditions.decide("trigger.n > 1.0000000000000000000e0", SCOPE) is True


# A wider random differential: nested parentheses, `!`, bracket paths into lists and objects, paths
# that miss, every root, whitespace and line breaks, and more literal forms (exponents, -0, long and
# halfway decimals, strings of odd characters).
_WIDE_VALUES: list[Any] = [
    *_VALUES,
    0.1,
    -(2**53),
    2**53 - 1,
    1e-7,
    5e-324,
    "1e3",
    " ",
    "e\u0301",
    "\ue000",
    "\x00",
    "null",
    "0",
    [1, 2, 3],
    [None],
    {"": 0},
    {"constructor": 2},
    {"length": 3},
]
_WIDE_LITERALS = [
    *_LITERALS,
    "- 0",
    "-\n1",
    "0.50",
    "5E-1",
    "1e+21",
    "0.0",
    "0e0",
    "9007199254740993",
    "1.7976931348623157e308",
    "2e-324",
    "0.1000000000000000055511151231257827",
    "1.00000000000000033306690738754696212708950042724609375",
    "1.0000000000000004",
    '""',
    "'\u00e9'",
    "'\uffff'",
    "'\U0001f600'",
    "'\x00'",
    "'\u00a0'",
    "'\t'",
    "'\"'",
    '"\'"',
    "'${x}'",
]
_SPACES = [" ", "", "\n", "\t", "\r\n", "  "]


def _wide_path(rng: random.Random) -> str:
    if rng.random() < 0.1:
        root = rng.choice(["nodes", "errors", "execution"])
        return root + rng.choice(["", ".x", ".a.b", "['x']", ".check.code", ".check"])
    index = rng.randrange(len(_WIDE_VALUES))
    path = "trigger" + rng.choice([f".v{index}", f"['v{index}']", f'["v{index}"]', f" . v{index}", f"[ 'v{index}' ]"])
    value = _WIDE_VALUES[index]
    if isinstance(value, list) and rng.random() < 0.7:
        path += f"[{rng.randrange(4)}]"
    elif isinstance(value, dict) and rng.random() < 0.7:
        path += rng.choice([".a", "['']", ".constructor", ".length", "['__proto__']", "[0]"])
    elif rng.random() < 0.1:
        path += rng.choice([".length", "[0]", ".x"])
    return path


def _wide_expression(rng: random.Random, depth: int = 0) -> str:
    def space() -> str:
        return rng.choice(_SPACES) if rng.random() < 0.3 else " "

    roll = rng.random()
    if depth < 4 and roll < 0.25:
        joiner = rng.choice(["&&", "||"])
        return f"{_wide_expression(rng, depth + 1)}{space()}{joiner}{space()}{_wide_expression(rng, depth + 1)}"
    if depth < 4 and roll < 0.35:
        return f"!{space()}({_wide_expression(rng, depth + 1)})"
    if depth < 4 and roll < 0.42:
        return f"({space()}{_wide_expression(rng, depth + 1)}{space()})"
    if roll < 0.45:
        return f"!{_wide_path(rng)}"
    if roll < 0.55:
        return _wide_path(rng)

    def operand() -> str:
        return rng.choice(_WIDE_LITERALS) if rng.random() < 0.5 else _wide_path(rng)

    return f"{operand()}{space()}{rng.choice(_OPS)}{space()}{operand()}"


async def test_a_wider_random_differential_decides_as_the_sandbox_does(conditions: ConditionPool) -> None:
    rng = random.Random(7)
    values = {f"v{i}": value for i, value in enumerate(_WIDE_VALUES)}
    scopes = [
        {"trigger": values, "nodes": {"check": {"code": "x"}}, "execution": {"x": 1}, "errors": {"check": {"code": 0}}},
        {"trigger": values, "errors": None, "nodes": {}, "execution": {}},
        {"trigger": values, "errors": False, "nodes": {"x": 0}, "execution": None},
    ]
    cases = [(_wide_expression(rng), rng.choice(scopes)) for _ in range(1500)]
    assert await decided_as_the_sandbox(conditions, cases) > 500


async def test_an_index_of_thousands_of_digits_is_left_to_the_sandbox(conditions: ConditionPool) -> None:
    # int() refuses a string of more than 4,300 digits: the ValueError came out of ConditionPool.evaluate
    # (an expression the sandbox checks, and answers, as any other).
    expr = "trigger.list[" + "1" * 5000 + "] === 1"
    assert simple_conditions.decide(expr, SCOPE) is None
    assert await conditions.evaluate(expr, SCOPE) is False

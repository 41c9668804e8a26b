"""Edge conditions simple enough to decide in the worker, exactly as the sandbox would.

Most conditions compare a value of the run with a literal (`nodes.check.status === 'approved'`,
`trigger.amount > 1000`), or join such comparisons with `&&` and `||`. Each one sent to a condition
helper costs a round trip, the scope's encoding and two evaluations in Duktape (the expression, then
the helper's integrity check): in a run of two steps with two edge conditions about as much CPU as
the rest of the run (docs/performance.md). Those are decided here instead, by a parser of a small
subset of JavaScript and an evaluator of it over the scope, never by running the expression.

The subset, and nothing else (anything else, or anything this module is not sure it decides as
Duktape would, goes to the sandbox as before, so the answer is the same either way):

- operands: a path from `trigger`, `nodes`, `execution` or `errors` (the names the sandbox binds)
  through `.name`, `['name']` or `[index]`; a string literal without escapes, a decimal number of
  at most 20 digits (optionally negative), `true`, `false`, `null`;
- a comparison of two operands: `===`, `!==`, `==`, `!=`, `<`, `<=`, `>`, `>=`;
- a bare path (its truthiness), `!` before a path or a parenthesized expression, `&&`, `||`, and
  parentheses.

Evaluation decides only what it can decide exactly, and otherwise says so (the sandbox then runs the
expression): every step of a path must be an own key of an object or an index inside an array
(JavaScript would give `undefined`, a prototype's member or a TypeError: the sandbox gives those, and
its error message); `==`, `!=` and the order comparisons only between values of one type (numbers,
strings without characters past U+FFFF, whose UTF-16 order is their code points' order) where they
mean what `===` and the plain order mean; `===` of two objects (their identity) never; numbers only
finite and within 2^53, where a double holds them exactly. `&&` and `||` short-circuit as
JavaScript's do, so a side that is not evaluated there is not here either, and since the sandbox
coerces the whole value to a boolean (`!!(...)`), the boolean of each side is all that matters.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

# The names the sandbox binds for an expression (condition_sandbox._EVAL).
_ROOTS = frozenset({"trigger", "nodes", "execution", "errors"})
_COMPARISONS = frozenset({"===", "!==", "==", "!=", "<", "<=", ">", ">="})
_MAX_EXACT = 2**53

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n]+)
      | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||[<>!()\[\].-])
      | (?P<num>(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![0-9A-Za-z_$.]))
      | (?P<str>'[^'\\\r\n\u2028\u2029]*'|"[^"\\\r\n\u2028\u2029]*")
      | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)""",
    re.VERBOSE,
)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class _NotSimple(Exception):
    """The expression is outside the subset: the sandbox decides it."""


class _Undecided(Exception):
    """This evaluation is one the subset does not decide exactly: the sandbox decides it."""


# The parsed expression, as tuples:
#   ("lit", value)                    a literal (a number as a float)
#   ("path", root, (step, ...))       a path; a step is a str (a key) or an int (an index)
#   ("cmp", op, left, right)          a comparison of two operands
#   ("not", expr) ("and", a, b) ("or", a, b) ("truthy", path)
Node = tuple[Any, ...]


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise _NotSimple
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise _NotSimple
        self.at += 1
        return token

    def expect(self, text: str) -> None:
        if self.take() != ("op", text):
            raise _NotSimple

    def is_op(self, text: str) -> bool:
        return self.peek() == ("op", text)

    def whole(self) -> Node:
        node = self.disjunction()
        if self.peek() is not None:
            raise _NotSimple
        return node

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.is_op("||"):
            self.take()
            node = ("or", node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.unary()
        while self.is_op("&&"):
            self.take()
            node = ("and", node, self.unary())
        return node

    def unary(self) -> Node:
        if self.is_op("!"):
            self.take()
            if self.is_op("("):
                return ("not", self.parenthesized())
            # `!a === b` is `(!a) === b` in JavaScript: outside the subset.
            operand = self.path()
            if self.peek() is not None and self.peek()[1] in _COMPARISONS:  # type: ignore[index]
                raise _NotSimple
            return ("not", ("truthy", operand))
        if self.is_op("("):
            node = self.parenthesized()
        else:
            left = self.operand()
            token = self.peek()
            if token is not None and token[0] == "op" and token[1] in _COMPARISONS:
                self.take()
                node = ("cmp", token[1], left, self.operand())
            elif left[0] == "path":
                node = ("truthy", left)
            else:
                raise _NotSimple  # a bare literal: a constant condition, left to the sandbox
        # A comparison's value compared again (`a < b < c`, `(a) === b`): outside the subset.
        token = self.peek()
        if token is not None and token[1] in _COMPARISONS:
            raise _NotSimple
        return node

    def parenthesized(self) -> Node:
        self.expect("(")
        node = self.disjunction()
        self.expect(")")
        return node

    def operand(self) -> Node:
        kind, text = self.take()
        if kind == "str":
            return ("lit", text[1:-1])
        if kind == "num":
            return ("lit", _number(text))
        if (kind, text) == ("op", "-"):
            kind, text = self.take()
            if kind != "num":
                raise _NotSimple
            return ("lit", -_number(text))
        if kind == "name":
            if text in ("true", "false"):
                return ("lit", text == "true")
            if text == "null":
                return ("lit", None)
            self.at -= 1
            return self.path()
        raise _NotSimple

    def path(self) -> Node:
        kind, root = self.take()
        if kind != "name" or root not in _ROOTS:
            raise _NotSimple
        steps: list[str | int] = []
        while self.is_op(".") or self.is_op("["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name":
                    raise _NotSimple
                steps.append(name)
                continue
            kind, text = self.take()
            if kind == "str":
                steps.append(text[1:-1])
            elif kind == "num" and text.isdigit() and len(text) <= _MAX_NUMBER_DIGITS:
                # No longer: int() refuses more than 4,300 digits (ValueError, which crashed the
                # evaluation: `trigger.list[111…1]`), and no array is that long anyway.
                steps.append(int(text))
            else:
                raise _NotSimple
            self.expect("]")
        return ("path", root, tuple(steps))


# The most digits a number literal of the subset may have. The sandbox's JavaScript engine (dukpy's)
# rounds a literal of about 40 digits or more otherwise than a correctly rounded parse (Python's
# float()) does when it is at or near the midpoint of two doubles:
# `1.00000000000000033306690738754696212708950042724609375 === 1.0000000000000004` is false there
# (a review's differential found 346 such literals in 4,000). Up to 35 it found none; 20 is ample
# for any literal a condition means (a double's shortest form has at most 17).
_MAX_NUMBER_DIGITS = 20


def _number(text: str) -> float:
    mantissa = text.lower().partition("e")[0]
    if sum(character.isdigit() for character in mantissa) > _MAX_NUMBER_DIGITS:
        raise _NotSimple
    value = float(text)
    if not math.isfinite(value):
        raise _NotSimple
    return value


@functools.lru_cache(maxsize=4096)
def parse(expr: str) -> Node | None:
    """The expression parsed, or None when it is outside the subset (the sandbox decides it)."""
    try:
        return _Parser(_tokens(expr)).whole()
    except (_NotSimple, RecursionError):
        return None


def decide(expr: str, scope: dict[str, Any]) -> bool | None:
    """The condition's value as the sandbox would coerce it (`!!(expr)`), or None when it must go to
    the sandbox: outside the subset, or an evaluation the subset does not decide exactly."""
    node = parse(expr)
    if node is None:
        return None
    try:
        return _boolean(node, scope)
    except (_Undecided, RecursionError):
        return None


def _boolean(node: Node, scope: dict[str, Any]) -> bool:
    kind = node[0]
    if kind == "or":
        return _boolean(node[1], scope) or _boolean(node[2], scope)
    if kind == "and":
        return _boolean(node[1], scope) and _boolean(node[2], scope)
    if kind == "not":
        return not _boolean(node[1], scope)
    if kind == "truthy":
        return _truthy(_value(node[1], scope))
    return _compare(node[1], _value(node[2], scope), _value(node[3], scope))


def _value(node: Node, scope: dict[str, Any]) -> Any:
    if node[0] == "lit":
        return node[1]
    root, steps = node[1], node[2]
    if root == "errors":
        # The sandbox binds `errors = __s.errors || {}`.
        value = scope.get("errors")
        if value is None:
            value = {}
        elif type(value) is not dict:
            raise _Undecided
    elif root in scope:
        value = scope[root]
    else:
        raise _Undecided  # undefined: the sandbox's TypeError, or its `undefined`
    for step in steps:
        own_key = type(step) is str and type(value) is dict and step in value and step != "__proto__"
        if not (own_key or (type(step) is int and type(value) is list and step < len(value))):
            raise _Undecided
        value = value[step]
    return _checked(value)


def _checked(value: Any) -> Any:
    """The value, if it is one the subset compares as JavaScript does; else _Undecided."""
    kind = type(value)
    if kind is int:
        if abs(value) > _MAX_EXACT:
            raise _Undecided
        return float(value)
    if kind is float:
        if not math.isfinite(value) or abs(value) > _MAX_EXACT:
            raise _Undecided
        return value
    if kind in (str, bool, dict, list) or value is None:
        return value
    raise _Undecided


def _truthy(value: Any) -> bool:
    if type(value) in (dict, list):
        return True  # every object is truthy, an empty one too
    return bool(value)  # null, false, 0, -0 and '' are falsy; numbers are finite here


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    kind = type(value)
    if kind is float:
        return "number"
    if kind is str:
        return "string"
    if kind is bool:
        return "boolean"
    return "object"


def _compare(op: str, left: Any, right: Any) -> bool:
    left_kind, right_kind = _kind(left), _kind(right)
    if op in ("===", "!=="):
        if left_kind == "object" and right_kind == "object":
            raise _Undecided  # identity
        same = left_kind == right_kind and left == right
        return same if op == "===" else not same
    if left_kind != right_kind or left_kind == "object":
        raise _Undecided  # JavaScript's coercions
    if op in ("==", "!="):
        return bool(left == right) is (op == "==")
    return _order(op, left_kind, left, right)


def _order(op: str, kind: str, left: Any, right: Any) -> bool:
    """`<`, `<=`, `>`, `>=` of two values of one kind."""
    if kind == "string":
        if _ASTRAL.search(left) or _ASTRAL.search(right):
            raise _Undecided  # UTF-16 order differs from the code points' past U+FFFF
    elif kind != "number":
        raise _Undecided  # booleans and nulls are ordered as numbers in JavaScript
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)

"""JavaScript edge conditions, evaluated in a pool of sandboxed helper processes.

dukpy is not a sandbox: it copies os.environ into process.env, can read files through require,
and has no wall-clock limit. So conditions never run in this process: each helper is started with
an empty environment, an empty working directory, resource limits and no require; a condition
that runs past its time limit gets its helper killed and replaced, and fails with
condition_timeout.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec

from dataworkflows import scrubbing, simple_conditions
from dataworkflows.errors import DataWorkflowsError
from dataworkflows.sandbox_pool import SandboxBusy, SandboxGone, SandboxPool, SandboxTimeout, SandboxUnavailable


class ConditionError(DataWorkflowsError):
    """The condition threw an error."""

    code = "condition_error"


class ConditionTimeout(ConditionError):
    """The condition ran past its time limit."""

    code = "condition_timeout"


class ConditionRefused(ConditionTimeout):
    """Not run: the expression ran past its limit recently and too many of it wait for the
    suspects' lane (dataworkflows.sandbox_pool.SandboxBusy). It fails as its timeout would."""


class ConditionUnavailable(DataWorkflowsError):
    """No helper could be had to evaluate the expression (none could be started: the process or file
    limit, memory; sandbox_pool.SandboxUnavailable). Not the expression's error, and so not a
    ConditionError: an edge condition that meets it decides no route (the node's record raises it
    and the run is resumed later, dataworkflows.outcomes), a transform retries by its policy."""

    code = "condition_unavailable"


class _Answer(msgspec.Struct):
    id: int
    ok: bool
    value: Any = None
    error: str | None = None


class ConditionPool:
    """A small pool of long-lived condition helper processes. Safe to share between tasks."""

    def __init__(
        self,
        size: int = 2,
        *,
        timeout_seconds: float = 1.0,
        memory_bytes: int = 512 * 1024 * 1024,
        recycle_after: int = 10_000,
    ) -> None:
        self._pool = SandboxPool(
            "dataworkflows.condition_sandbox",
            size=size,
            timeout_seconds=timeout_seconds,
            memory_bytes=memory_bytes,
            recycle_after=recycle_after,
            # A fresh helper's start is not counted against the first condition's time limit.
            warm_up={"op": "check", "expr": "true"},
        )
        self._decoder = msgspec.json.Decoder(_Answer)

    @property
    def timeout_seconds(self) -> float:
        return self._pool.timeout_seconds

    @property
    def helpers_killed(self) -> int:
        return self._pool.helpers_killed

    async def _call(
        self, op: str, expr: str, scope: dict[str, Any] | None, *, time_limit: float | None = None, **extra: Any
    ) -> _Answer:
        try:
            line = await self._pool.call(
                {"op": op, "expr": expr, "scope": scope, **extra},
                timeout_seconds=time_limit,
                # An expression that ran past its limit runs in the suspects' lane (sandbox_pool).
                key=None if op == "check" else expr,
            )
        except SandboxBusy as exc:
            what = "the transform" if op == "value" else "condition"
            raise ConditionRefused(f"{what} was not run: {exc}") from None
        except SandboxTimeout:
            limit = self._pool.timeout_seconds if time_limit is None else time_limit
            what = "the transform" if op == "value" else "condition"
            raise ConditionTimeout(f"{what} ran longer than {limit:g}s and was stopped") from None
        except SandboxUnavailable as exc:
            what = "the transform" if op == "value" else "the condition"
            raise ConditionUnavailable(f"{what} was not run: no sandbox helper could be had: {exc}") from exc
        except SandboxGone as exc:
            raise ConditionError(f"the condition helper exited (memory limit or crash): {exc}") from exc
        return self._decoder.decode(line)

    async def evaluate(self, expr: str, scope: dict[str, Any], *, in_worker: bool = True) -> bool:
        """The condition's value, coerced to a boolean. ConditionError if it throws,
        ConditionTimeout if it runs too long. A simple one (dataworkflows.simple_conditions) is
        decided here, as the sandbox would decide it, without a helper's round trip (in_worker=False:
        always in a helper, for a measurement or a comparison)."""
        decided = simple_conditions.decide(expr, scope) if in_worker else None
        if decided is not None:
            return decided
        answer = await self._call("eval", expr, scope)
        if not answer.ok:
            raise ConditionError(_readable(answer.error) or "condition failed")
        return bool(answer.value)

    async def value(self, expr: str, scope: dict[str, Any], *, time_limit: float, max_bytes: int) -> Any:
        """The expression's value as JSON (a transform). ConditionError if it throws or its result is
        larger than max_bytes, ConditionTimeout if it runs longer than `time_limit` seconds."""
        answer = await self._call("value", expr, scope, time_limit=time_limit, max_bytes=max_bytes)
        if not answer.ok:
            raise ConditionError(_readable(answer.error) or "the expression failed")
        return answer.value

    async def check(self, expr: str) -> str | None:
        """None when the expression compiles, else the syntax error."""
        try:
            answer = await self._call("check", expr, None)
        except ConditionTimeout:
            return "the condition took too long to compile"
        return None if answer.ok else incomplete(expr, _readable(answer.error) or "invalid condition")

    async def check_many(self, expressions: list[str]) -> dict[str, str | None]:
        """Checks concurrently, as many at once as the pool has helpers."""
        unique = list(dict.fromkeys(expressions))
        checked = await asyncio.gather(*(self.check(expr) for expr in unique), return_exceptions=True)
        # No helper could be had: nothing was checked, and it is not the expressions' fault (a
        # publish answered 422, "could not be checked", for valid conditions).
        unavailable = next((r for r in checked if isinstance(r, ConditionUnavailable)), None)
        if unavailable is not None:
            raise unavailable
        return {
            expr: (f"the condition could not be checked: {result}" if isinstance(result, BaseException) else result)
            for expr, result in zip(unique, checked, strict=True)
        }

    async def close(self) -> None:
        await self._pool.close()


def _readable(error: str | None) -> str | None:
    """A helper's error as it is recorded: its first line (Duktape adds a stack), at most 500
    characters, cut once the run's scrubber has replaced its values (the whole text: a multi-line
    value is recognized only whole)."""
    if not error:
        return None
    lines = scrubbing.current().text(error).strip().splitlines()
    return lines[0][:500] if lines else None


# Duktape's error when parsing stops at a token: the expression is compiled inside `return (…\n);`,
# so an expression that ends too early (`body.x ==`, `foo(`) fails at the wrapper's `)` or `;`.
_STOPPED_AT = re.compile(r"[Uu]nexpected token(?: in expression)?:? '([);])'")


def incomplete(expr: str, error: str) -> str:
    """The syntax error as the user can read it: one that names the wrapper's `)` or `;` (the
    expression has none) says the expression ends before it is complete, and how it ends."""
    stopped = _STOPPED_AT.search(error)
    if stopped is None or stopped.group(1) in expr:
        return error
    tail = expr.rstrip()[-30:]
    return f"SyntaxError: the expression ends before it is complete (it ends with {tail!r})"

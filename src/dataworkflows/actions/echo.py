"""core.echo: returns its message; can wait and simulate failures (for tests and demos)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

import msgspec

from dataworkflows.actions import ActionContext, ActionResult


class EchoParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    message: Any = "echo"
    # Wait this long before answering (cancelled cleanly by the node timeout).
    delay_ms: int = 0
    # transient: attempts numbered below fail_until_attempt return RetriableFailure;
    # permanent: every attempt fails. Decided from the attempt number, never from process state,
    # so the behaviour survives worker restarts.
    simulate_failure: Literal["transient", "permanent"] | None = None
    fail_until_attempt: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.delay_ms <= 3_600_000:
            raise ValueError("delayMs must be between 0 and 3600000")
        if not 1 <= self.fail_until_attempt <= 1000:
            raise ValueError("failUntilAttempt must be between 1 and 1000")


class EchoAction:
    type_name: ClassVar[str] = "core.echo"
    description: ClassVar[str] = "Returns its message as outputs.echo."
    connector: ClassVar[str] = "core"
    Params: ClassVar[type[msgspec.Struct]] = EchoParams

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        assert isinstance(params, EchoParams)
        if params.delay_ms:
            await asyncio.sleep(params.delay_ms / 1000)
        if params.simulate_failure == "permanent":
            return ActionResult.failed("simulated_permanent_failure", "Simulated permanent failure")
        if params.simulate_failure == "transient" and ctx.attempt < params.fail_until_attempt:
            return ActionResult.retriable(
                "simulated_transient_failure", f"Simulated transient failure (attempt {ctx.attempt})"
            )
        return ActionResult.succeeded({"echo": params.message})

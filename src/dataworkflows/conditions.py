"""JavaScript edge conditions, evaluated in a pool of sandboxed helper processes.

dukpy is not a sandbox: it copies os.environ into process.env, can read files through require,
and has no wall-clock limit. So conditions never run in this process: each helper is started with
an empty environment, an empty working directory, resource limits and no require; a condition
that runs past its time limit gets its helper killed and replaced, and fails with
condition_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import shutil
import sys
import tempfile
from typing import Any

import msgspec
import structlog

from dataworkflows.errors import DataWorkflowsError

log = structlog.get_logger("dataworkflows.conditions")


class ConditionError(DataWorkflowsError):
    """The condition threw an error."""

    code = "condition_error"


class ConditionTimeout(ConditionError):
    """The condition ran past its time limit."""

    code = "condition_timeout"


class _HelperGone(Exception):
    pass


class _Answer(msgspec.Struct):
    id: int
    ok: bool
    value: bool | None = None
    error: str | None = None


def _limit_resources(memory_bytes: int) -> None:
    # Runs in the child between fork and exec.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setsid()


class _Helper:
    def __init__(self, process: asyncio.subprocess.Process, workdir: str) -> None:
        self.process = process
        self.workdir = workdir
        self.uses = 0

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


class ConditionPool:
    """A small pool of long-lived helper processes. Safe to share between tasks."""

    def __init__(
        self,
        size: int = 2,
        *,
        timeout_seconds: float = 1.0,
        memory_bytes: int = 512 * 1024 * 1024,
        recycle_after: int = 10_000,
    ) -> None:
        self.size = size
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        self.recycle_after = recycle_after
        # Capacity is a semaphore: a helper that is killed frees its slot at once, so a waiter
        # never hangs on an idle queue that nobody refills.
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Helper] = []
        self._ids = itertools.count(1)
        self._decoder = msgspec.json.Decoder(_Answer)
        self._encoder = msgspec.json.Encoder()
        self._closed = False
        self.helpers_killed = 0

    async def _spawn(self) -> _Helper:
        workdir = tempfile.mkdtemp(prefix="dw-cond-")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated: ignore PYTHON* variables and the user site directory
            "-m",
            "dataworkflows.condition_sandbox",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=workdir,
            env={},
            preexec_fn=lambda: _limit_resources(self.memory_bytes),
            limit=4 * 1024 * 1024,
        )
        return _Helper(process, workdir)

    async def _acquire(self) -> _Helper:
        if self._closed:
            raise ConditionError("the condition pool is closed")
        await self._slots.acquire()
        try:
            if self._idle:
                return self._idle.pop()
            return await self._spawn()
        except BaseException:
            self._slots.release()
            raise

    async def _release(self, helper: _Helper, healthy: bool) -> None:
        try:
            if healthy and helper.uses < self.recycle_after and not self._closed:
                self._idle.append(helper)
            else:
                await helper.close()
        finally:
            self._slots.release()

    async def _call(self, op: str, expr: str, scope: dict[str, Any] | None) -> _Answer:
        try:
            return await self._call_once(op, expr, scope)
        except _HelperGone:
            # The helper exited before answering (it retires itself when a condition damaged its
            # interpreter): this request deserves a fresh one.
            try:
                return await self._call_once(op, expr, scope)
            except _HelperGone as exc:
                raise ConditionError("the condition helper exited (memory limit or crash)") from exc

    async def _call_once(self, op: str, expr: str, scope: dict[str, Any] | None) -> _Answer:
        helper = await self._acquire()
        healthy = False
        try:
            request_id = next(self._ids)
            assert helper.process.stdin is not None and helper.process.stdout is not None
            payload = self._encoder.encode({"id": request_id, "op": op, "expr": expr, "scope": scope}) + b"\n"
            helper.process.stdin.write(payload)
            try:
                await asyncio.wait_for(helper.process.stdin.drain(), self.timeout_seconds)
                line = await asyncio.wait_for(helper.process.stdout.readline(), self.timeout_seconds)
            except TimeoutError:
                self.helpers_killed += 1
                log.warning("condition timed out; replacing its helper", timeout=self.timeout_seconds)
                raise ConditionTimeout(f"condition ran longer than {self.timeout_seconds:g}s and was stopped") from None
            if not line:
                raise _HelperGone()
            answer = self._decoder.decode(line)
            if answer.id != request_id:
                raise ConditionError("the condition helper answered out of order")
            helper.uses += 1
            healthy = True
            return answer
        finally:
            await self._release(helper, healthy)

    async def evaluate(self, expr: str, scope: dict[str, Any]) -> bool:
        """The condition's value, coerced to a boolean. ConditionError if it throws,
        ConditionTimeout if it runs too long."""
        answer = await self._call("eval", expr, scope)
        if not answer.ok:
            raise ConditionError(answer.error or "condition failed")
        return bool(answer.value)

    async def check(self, expr: str) -> str | None:
        """None when the expression compiles, else the syntax error."""
        try:
            answer = await self._call("check", expr, None)
        except ConditionTimeout:
            return "the condition took too long to compile"
        return None if answer.ok else (answer.error or "invalid condition")

    async def check_many(self, expressions: list[str]) -> dict[str, str | None]:
        """Checks concurrently, as many at once as the pool has helpers."""
        unique = list(dict.fromkeys(expressions))
        checked = await asyncio.gather(*(self.check(expr) for expr in unique), return_exceptions=True)
        return {
            expr: (f"the condition could not be checked: {result}" if isinstance(result, BaseException) else result)
            for expr, result in zip(unique, checked, strict=True)
        }

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            await self._idle.pop().close()

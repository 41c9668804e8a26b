"""The sandbox pool's fair slots (sandbox_pool._FairSlots): a freed slot goes to the waiting tenant
that holds the fewest, served least recently, and within it to its run chosen the same way; no slot
is lost to a caller cancelled while it waited or just after it was granted one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dataworkflows.sandbox_pool import _FairSlots

A, B, C = ("a", None), ("b", None), ("c", None)


async def test_a_freed_slot_goes_to_the_tenant_holding_fewest_then_served_least_recently() -> None:
    slots = _FairSlots(2)
    await slots.acquire(A)
    await slots.acquire(A)
    order: list[str | None] = []

    async def wait(owner: tuple[str, str | None]) -> None:
        await slots.acquire(owner)
        order.append(owner[0])

    waiters = [asyncio.create_task(wait(o)) for o in (A, A, B, C)]
    await asyncio.sleep(0)
    slots.release(A)  # a holds 1; b and c hold none and were never served: b (it came first)
    await asyncio.sleep(0)
    slots.release(A)  # a holds 0 but was served last: c
    await asyncio.sleep(0)
    assert order == ["b", "c"]
    slots.release(B)
    slots.release(C)
    await asyncio.gather(*waiters)
    assert order == ["b", "c", "a", "a"]
    assert (slots.taken, dict(slots.held)) == (2, {A: 2})


async def test_within_a_tenant_a_freed_slot_goes_to_the_run_served_least_recently() -> None:
    """One run of a tenant holding the slots with more queued does not stand in front of the
    tenant's other runs; another tenant still comes first when it holds fewer."""
    slots = _FairSlots(1)
    busy, quiet, other = ("t", "busy"), ("t", "quiet"), ("u", "run")
    await slots.acquire(busy)
    order: list[tuple[str, str]] = []

    async def wait(owner: tuple[str, str]) -> None:
        await slots.acquire(owner)
        order.append(owner)
        slots.release(owner)

    waiters = [asyncio.create_task(wait(o)) for o in (busy, busy, quiet, other)]
    await asyncio.sleep(0)
    slots.release(busy)
    await asyncio.gather(*waiters)
    # u was never served: first; then t's quiet run (never served) before its busy one's backlog.
    assert order == [other, quiet, busy, busy]
    assert (slots.taken, dict(slots.held), slots.waiting, slots.last_grant) == (0, {}, {}, {})


async def test_a_lone_owner_uses_every_slot_and_none_is_lost_to_cancellation() -> None:
    slots = _FairSlots(2)
    await slots.acquire(A)
    await slots.acquire(A)
    cancelled_waiting = asyncio.create_task(slots.acquire(B))
    granted_then_cancelled = asyncio.create_task(slots.acquire(C))
    await asyncio.sleep(0)
    cancelled_waiting.cancel()
    await asyncio.gather(cancelled_waiting, return_exceptions=True)
    assert B not in slots.waiting
    slots.release(A)  # granted to c, which is cancelled before it resumes: the slot is given back
    granted_then_cancelled.cancel()
    await asyncio.gather(granted_then_cancelled, return_exceptions=True)
    assert (slots.taken, dict(slots.held), slots.waiting) == (1, {A: 1}, {})
    await asyncio.wait_for(slots.acquire(("d", None)), 1)
    assert slots.taken == 2


async def test_a_helper_that_could_not_start_leaves_no_directory(tmp_path: Any, monkeypatch: Any) -> None:
    """A spawn that failed (EMFILE, EAGAIN) or whose caller was cancelled left its working directory
    in $TMPDIR for good (a soak test: 7 after a few hundred cancellations)."""
    import errno
    import tempfile

    from dataworkflows.conditions import ConditionPool, ConditionUnavailable

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", refused)
    pool = ConditionPool(size=1)
    try:
        for _ in range(3):
            with pytest.raises(ConditionUnavailable, match=r"could not start a helper: .*Too many open files"):
                await pool.evaluate("true", {})
    finally:
        await pool.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


async def test_a_cancel_that_comes_with_the_helpers_answer_is_not_lost(monkeypatch: Any) -> None:
    """A node task cancelled (the run cancelled or failed fast, the worker's grace over) just as its
    condition's, transform's or template's answer came went on as if nothing had been asked: Python
    3.11's asyncio.wait_for returns the result of a wait that ended as the cancel came and drops the
    cancel, so the task recorded its attempt, and started the nodes after it, under a run being
    stopped. The cancel now reaches the task."""
    from dataworkflows.conditions import ConditionPool

    pool = ConditionPool(size=1)
    try:
        assert await pool.evaluate("true", {}) is True  # a helper is up, warmed
        target: list[asyncio.Task[Any]] = []
        went_on: list[bool] = []
        real = asyncio.StreamReader.readline

        async def readline(self: asyncio.StreamReader) -> bytes:
            line = await real(self)
            target[0].cancel()  # the cancel comes as the answer does
            return line

        async def node_task() -> None:
            await pool.evaluate("1 + 1 == 2", {})
            await asyncio.sleep(0.05)
            went_on.append(True)  # it would record its attempt here

        monkeypatch.setattr(asyncio.StreamReader, "readline", readline)
        task = asyncio.create_task(node_task())
        target.append(task)
        await asyncio.wait({task}, timeout=5)
        monkeypatch.undo()
        assert task.cancelled() and not went_on
    finally:
        await pool.close()

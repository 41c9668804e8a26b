"""The sandbox pool's fair slots (sandbox_pool._FairSlots): a freed slot goes to the waiting owner
that holds the fewest, served least recently; no slot is lost to a caller cancelled while it waited
or just after it was granted one."""

from __future__ import annotations

import asyncio

from dataworkflows.sandbox_pool import _FairSlots


async def test_a_freed_slot_goes_to_the_owner_holding_fewest_then_served_least_recently() -> None:
    slots = _FairSlots(2)
    await slots.acquire("a")
    await slots.acquire("a")
    order: list[str] = []

    async def wait(owner: str) -> None:
        await slots.acquire(owner)
        order.append(owner)

    waiters = [asyncio.create_task(wait(o)) for o in ("a", "a", "b", "c")]
    await asyncio.sleep(0)
    slots.release("a")  # a holds 1; b and c hold none and were never served: b (it came first)
    await asyncio.sleep(0)
    slots.release("a")  # a holds 0 but was served last: c
    await asyncio.sleep(0)
    assert order == ["b", "c"]
    slots.release("b")
    slots.release("c")
    await asyncio.gather(*waiters)
    assert order == ["b", "c", "a", "a"]
    assert (slots.taken, dict(slots.held)) == (2, {"a": 2})


async def test_a_lone_owner_uses_every_slot_and_none_is_lost_to_cancellation() -> None:
    slots = _FairSlots(2)
    await slots.acquire("a")
    await slots.acquire("a")
    cancelled_waiting = asyncio.create_task(slots.acquire("b"))
    granted_then_cancelled = asyncio.create_task(slots.acquire("c"))
    await asyncio.sleep(0)
    cancelled_waiting.cancel()
    await asyncio.gather(cancelled_waiting, return_exceptions=True)
    assert "b" not in slots.waiting
    slots.release("a")  # granted to c, which is cancelled before it resumes: the slot is given back
    granted_then_cancelled.cancel()
    await asyncio.gather(granted_then_cancelled, return_exceptions=True)
    assert (slots.taken, dict(slots.held), slots.waiting) == (1, {"a": 1}, {})
    await asyncio.wait_for(slots.acquire("d"), 1)
    assert slots.taken == 2

"""The worker's waker (workers.app.Waker) runs a pass at each wake-up time the runtime hints, never before it:
a pass that comes too early leaves the run parked until the next poll (DW_WORKER_POLL_SECONDS)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from workers.app import Waker

from dataworkflows.config import Settings


async def test_every_wake_up_gets_a_pass_at_or_after_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    scheduled: list[float] = []  # the loop times at which passes were asked for

    def call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        scheduled.append(when)
        return asyncio.TimerHandle(when, callback, args, loop)

    def call_later(delay: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        return call_at(loop.time() + delay, callback, *args)

    monkeypatch.setattr(loop, "call_at", call_at)
    monkeypatch.setattr(loop, "call_later", call_later)
    waker = Waker(db=None, settings=Settings())  # type: ignore[arg-type]  # wake_at reads no database
    wall, clock = datetime.now(UTC), loop.time()
    # Ten runs parked 5 ms apart (paced timers), then a thousand until one time (a burst).
    offsets = [0.020 + 0.005 * i for i in range(10)]
    for offset in offsets:
        waker.wake_at(wall + timedelta(seconds=offset))
    for _ in range(1000):
        waker.wake_at(wall + timedelta(seconds=0.5))
    for offset in [*offsets, 0.5]:
        due = clock + offset
        # A pass from when it is due, and soon after (the 2 ms the waker adds, then the end of its 10 ms).
        assert any(due <= at <= due + 0.0125 for at in scheduled), (offset, sorted(at - clock for at in scheduled))
    assert len(scheduled) <= len(offsets) + 1, "a thousand wake-ups at one time are one pass"


async def test_wake_ups_far_ahead_hold_no_timer_the_poll_wakes_them() -> None:
    """Each hint held a timer until its time (about 570 bytes, one per 10 ms of distinct wake-up
    times): a worker parking an approval with a 30-day timeout a second held 2.6 million of them
    (1.5 GB) a month on, for a run its poll (DW_WORKER_POLL_SECONDS) wakes at most that late anyway.
    Past WAKE_HINT_HORIZON_SECONDS a hint holds nothing; within it, as before."""
    from workers.app import WAKE_HINT_HORIZON_SECONDS

    waker = Waker(db=None, settings=Settings())  # type: ignore[arg-type]  # wake_at reads no database
    wall = datetime.now(UTC)
    for i in range(10_000):
        waker.wake_at(wall + timedelta(days=30, milliseconds=37 * i))
    assert len(waker._slots) == 0
    for i in range(100):
        waker.wake_at(wall + timedelta(seconds=WAKE_HINT_HORIZON_SECONDS / 2, milliseconds=37 * i))
    assert len(waker._slots) == 100


async def test_a_cancel_that_comes_as_the_wait_ends_is_not_lost() -> None:
    """asyncio.wait_for (Python 3.11) returned the result of a wait that ended in the loop turn its
    task was cancelled, and dropped the cancel: the waker's loop and stopped_within's sleepers went on
    (the waker waited again), and a shutdown that cancelled them could hang. asyncio.timeout keeps the
    cancel (and ruff's TID251 bans wait_for outside the tests)."""
    from workers.app import stopped_within

    went_on: list[str] = []

    async def sleeper(event: asyncio.Event) -> None:
        await stopped_within(event, 5)
        await asyncio.sleep(0)
        went_on.append("stopped_within")

    async def waker_loop(event: asyncio.Event) -> None:
        waker = Waker(db=None, settings=Settings())  # type: ignore[arg-type]
        waker.kick = event
        await waker.run(asyncio.Event())  # never stopped: only its cancel ends it
        went_on.append("waker")

    for make in (sleeper, waker_loop):
        event = asyncio.Event()
        task = asyncio.create_task(make(event))
        await asyncio.sleep(0.01)
        event.set()  # the stop or the kick, and the cancel, in the same loop turn
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        assert task.cancelled(), make.__name__
        if not task.done():
            task.cancel()
    assert went_on == []

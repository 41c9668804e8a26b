"""The pools' answer watch (dataworkflows.answers.AnswerWatch): a call is severed when the server is
silent past the bound, not when the worker's own event loop was held."""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any

import pytest

from dataworkflows import answers
from dataworkflows.answers import AnswerWatch


class Call:
    closed = False


@pytest.fixture
def severed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    cut: list[Any] = []
    monkeypatch.setattr(answers, "readable", lambda conn: False)
    monkeypatch.setattr(answers, "shut_down", lambda conn, **_: cut.append(conn))
    return cut


async def test_a_silent_server_is_severed_past_the_bound(severed: list[Any]) -> None:
    watch = AnswerWatch(0.2, "DW_WORKER_ANSWER_SECONDS")
    call: Any = Call()
    watch.begin(call)
    for _ in range(20):
        await asyncio.sleep(0.05)
        if severed:
            break
    assert severed == [call]


async def test_a_stalled_event_loop_is_not_the_servers_silence(severed: list[Any]) -> None:
    """A size review: a worker's event loop held for 15 s (a large answer parsed) severed its calls as
    if the database had gone silent; its runs were given up, taken over, and their HTTP calls made
    again. The stall's time is not counted; the server's silence after it still is."""
    watch = AnswerWatch(0.2, "DW_WORKER_ANSWER_SECONDS")
    call: Any = Call()
    watch.begin(call)
    time.sleep(0.6)  # the loop held: no task runs, the check is late
    await asyncio.sleep(0.08)  # the late check runs
    assert severed == [], "the stall was taken for the server's silence"
    for _ in range(20):
        await asyncio.sleep(0.05)
        if severed:
            break
    assert severed == [call], "silence after the stall is still bounded"


async def test_a_call_begun_after_a_stall_is_not_given_the_stall(
    severed: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: the stall's length was added to every call waiting when the late check ran, also to
    one that began after the stall (the task that held the loop then made its call, on a frozen
    backend): that call was given the stall on top of its bound (15 s held, 10 s bound: severed 25 s
    after it began, with the loop free all that while). Only the part of its wait in the check's
    lateness is taken off. A clock of the test's own: no timing."""
    clock = [100.0]
    monkeypatch.setattr(answers, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    watch = AnswerWatch(10, "DW_WORKER_ANSWER_SECONDS")  # checked every 1 s
    earlier: Any = Call()
    watch.begin(earlier)  # the check is due at 101
    watch.end(earlier)
    clock[0] = 116.0  # the loop held for 15 s
    call: Any = Call()
    watch.begin(call)  # made by the task that held the loop; the server is silent
    checks = 0
    try:
        while not severed and checks < 40:
            clock[0] += 1.0 if checks else 0.01
            watch._check()
            checks += 1
    finally:
        if watch._timer is not None:
            watch._timer.cancel()
    assert severed == [call]
    assert clock[0] - 116.0 <= 10 + watch.period + 0.01, "the stall before the call began was counted off its wait"


@pytest.mark.parametrize("late", [0.45, 0.9, 5.0])
async def test_a_busy_event_loop_does_not_stretch_a_call_without_end(
    severed: list[Any], monkeypatch: pytest.MonkeyPatch, late: float
) -> None:
    """A review: a task that held the loop again and again (0.2 s at a time, each check ran late
    by more than the watch's period) had every check's lateness taken off the waiting call, so a
    1 s bound on a silent server was 2.8 s, and with longer holds it grew with them, without end
    (four checks late by 5 s: 21 s). A call is given back at most its bound, or its longest single
    stall when that is longer: it is severed within twice that, plus a check's period and
    lateness. Driven checks on a clock of the test's own: no timing."""
    clock = [100.0]
    monkeypatch.setattr(answers, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    watch = AnswerWatch(1, "DW_WORKER_ANSWER_SECONDS")  # checked every 0.25 s
    call: Any = Call()
    watch.begin(call)  # the server is silent
    checks = 0
    try:
        while not severed and checks < 100:
            clock[0] = watch._due + late  # every check runs `late` behind its time
            watch._check()
            checks += 1
    finally:
        if watch._timer is not None:
            watch._timer.cancel()
    assert severed == [call]
    given = max(watch.seconds, late)
    assert clock[0] - 100.0 <= 2 * given + watch.period + late, "the busy loop's lateness was given without end"

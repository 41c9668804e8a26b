"""The pools' answer watch (dataworkflows.answers.AnswerWatch): a call is severed when the server is
silent past the bound, not when the worker's own event loop was held."""

from __future__ import annotations

import asyncio
import time
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

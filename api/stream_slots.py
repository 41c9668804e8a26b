"""Live event streams per caller (DW_MAX_STREAMS_PER_CALLER). A stream holds its HTTP connection and a
task for up to ten minutes, and reads the run's log from the API's pool at every wake-up and keepalive:
one caller that opened thousands (each within the rate limit, a token a request) made every event of
that run thousands of reads at once, exhausted the pool (others' requests waited seconds) and held
thousands of sockets (a review: one principal held 2,389 streams of one run). Past the
limit a new stream is a 429 problem (`too_many_streams`) with Retry-After; a stream's slot is given back
when it ends, however it ends (the run's end, its time up, the client gone, the server stopping).

The count is this process's (streams live in the process that serves them): behind N API processes a
caller may hold N times the limit. The caller is the rate limit's (api/rate_limits.py caller_key): the
tenant and principal, else the client address; in loose mode callers name themselves, so the limit
holds only callers that cannot."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from litestar import Request, Response

from .problems import problem

T = TypeVar("T")

# A refused stream's Retry-After: a slot frees when one of the caller's streams ends, which no server
# can foresee (a stream lasts up to ten minutes); its keepalive interval.
RETRY_AFTER_SECONDS = 15


class StreamSlots:
    """The live streams each caller holds in this process; at most `limit` each (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[tuple[str, str], int] = {}

    def held(self, key: tuple[str, str]) -> int:
        return self._held.get(key, 0)

    def take(self, key: tuple[str, str]) -> StreamSlot | None:
        """A slot for a new stream of this caller, or None when it holds `limit` already."""
        if self.limit and self.held(key) >= self.limit:
            return None
        self._held[key] = self.held(key) + 1
        return StreamSlot(self, key)

    def _give_back(self, key: tuple[str, str]) -> None:
        left = self.held(key) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)


class StreamSlot:
    """One stream's place in its caller's count, given back once (release is idempotent)."""

    def __init__(self, slots: StreamSlots, key: tuple[str, str]) -> None:
        self._slots = slots
        self._key = key
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._give_back(self._key)

    def holding(self, messages: AsyncIterator[T]) -> AsyncIterator[T]:
        """`messages`, giving the slot back when they end, fail or are closed; and when the stream is
        dropped without ever being read (a client gone before its answer started: a generator that never
        ran has no `finally` to run)."""
        held = _held(self, messages)
        weakref.finalize(held, self.release)
        return held


async def _held(slot: StreamSlot, messages: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        async for message in messages:
            yield message
    finally:
        slot.release()


def too_many_streams(request: Request[Any, Any, Any], limit: int) -> Response[dict[str, Any]]:
    """429: the caller holds `limit` live streams in this process already."""
    return problem(
        429,
        "Too many requests",
        f"this caller holds {limit} live event streams already (DW_MAX_STREAMS_PER_CALLER): close one, or read"
        f" the log a page at a time (without Accept: text/event-stream); retry in {RETRY_AFTER_SECONDS} s",
        code="too_many_streams",
        request=request,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )

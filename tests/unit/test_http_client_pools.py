"""The guarded HTTP client's connection pools per destination: bounded, also over a worker's life."""

from __future__ import annotations

import asyncio
import gc
import weakref

import httpx
import pytest
import structlog.testing

from dataworkflows import http_client
from dataworkflows.http_client import GuardedTransport


async def test_retired_pools_are_closed_and_then_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its last 64 destinations, a pool is retired (closed a while later). Each retirement's
    timer stayed in a set for good, and with it the retired pool: a worker whose actions called
    many hosts (an http.request node per customer domain) held one more closed pool for every new
    host, for as long as it ran."""
    monkeypatch.setattr(http_client, "_RETIRE_AFTER_SECONDS", 0.01)
    transport = GuardedTransport()
    retired: list[weakref.ref[httpx.AsyncBaseTransport]] = []
    for n in range(72):  # 8 retired (each pool costs its TLS context: about 60 ms)
        pool = await transport._transport_for(("https", f"host{n}.example.com", 443))
        retired.append(weakref.ref(pool))
    await asyncio.sleep(0.1)  # the retirements' timers fire, and their closes run
    await asyncio.sleep(0)
    gc.collect()
    assert len(transport._per_host) == 64
    assert len(transport._retiring) == 0, "a fired retirement is forgotten"
    assert sum(ref() is not None for ref in retired) == 64, "only the pools in use are held"
    await transport.aclose()


async def test_closing_the_client_closes_the_pools_it_retired(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool retired less than _RETIRE_AFTER_SECONDS before the worker stops still holds its
    connections: closing the client cancelled its timer and left the pool open, its sockets
    closed only by the process's exit (a review)."""
    closed: list[httpx.AsyncBaseTransport] = []

    async def aclose(self: httpx.AsyncHTTPTransport) -> None:
        closed.append(self)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "aclose", aclose)
    transport = GuardedTransport()
    transport._max_hosts = 2  # each pool costs its TLS context
    pools = [await transport._transport_for(("http", f"host{n}.example.com", 80)) for n in range(4)]
    assert len(transport._retiring) == 2
    await transport.aclose()
    assert pools[0] in closed and pools[1] in closed, "the retired pools are closed with the client"
    assert all(pool in closed for pool in pools[2:]), "and the pools in use"
    assert not transport._retiring


async def test_a_pool_that_fails_to_close_leaves_none_of_the_others_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A review: the client closed its pools one after the other and stopped at the first that
    raised, so every pool after it (retired or in use, and the allow-listed destinations' own)
    kept its connections open until the process exited. All are closed; the first failure is
    raised, as it was, and the others are logged."""
    closed: list[httpx.AsyncBaseTransport] = []

    async def aclose(self: httpx.AsyncHTTPTransport) -> None:
        closed.append(self)
        if len(closed) in (1, 3):
            raise OSError(f"close number {len(closed)} failed")

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "aclose", aclose)
    transport = GuardedTransport()
    transport._max_hosts = 2
    pools = [await transport._transport_for(("http", f"host{n}.example.com", 80)) for n in range(4)]
    with structlog.testing.capture_logs() as logs, pytest.raises(OSError, match="close number 1 failed"):
        await transport.aclose()
    assert all(pool in closed for pool in [*pools, transport._transport]), "every pool was closed"
    assert len(closed) == 5
    assert [entry["error"] for entry in logs] == ["close number 3 failed"]
    assert not transport._retiring and not transport._per_host

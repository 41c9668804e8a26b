"""Live event streams per caller (DW_MAX_STREAMS_PER_CALLER, api/stream_slots.py): a review found one
principal holding 2,389 streams of one run, each reading the run's log from the API's pool at every
wake-up (others' requests waited up to 5 s, and the opening burst answered 503)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from dataworkflows.api.app import create_app
from dataworkflows.api.stream_slots import RETRY_AFTER_SECONDS, StreamSlots
from dataworkflows.config import Settings
from dataworkflows.errors import ConfigurationError
from tests.conftest import load_fixture
from tests.fakes import served

STREAM = {"Accept": "text/event-stream"}


@contextlib.asynccontextmanager
async def stream(client: httpx.AsyncClient, path: str, caller: str) -> AsyncIterator[httpx.Response]:
    async with client.stream("GET", path, headers={**STREAM, "X-Principal-Id": caller}) as response:
        if response.status_code == 200:
            # The stream has started (its first page, or its first look's keepalive, is on its way).
            assert response.headers["content-type"].startswith("text/event-stream")
        else:
            await response.aread()
        yield response


async def test_a_caller_past_its_streams_is_refused_until_one_of_them_ends(dsn: str) -> None:
    app = create_app(Settings(database_url=dsn, max_streams_per_caller=2, api_access_log=False))
    async with served(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        created = await client.post(
            "/api/v1/workflows", params={"autoActivate": "true"}, json=load_fixture("bundle1/simple-echo-workflow.json")
        )
        assert created.status_code == 201, created.text
        # No worker: the run stays Pending, and its streams stay open.
        started = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})
        path = f"{started.json()['statusUrl']}/events"
        # A HEAD of a stream ends after its headers, and gives its slot back.
        for _ in range(3):
            head = await client.head(path, headers={**STREAM, "X-Principal-Id": "mallory"})
            assert head.status_code == 200, head.headers
        async with contextlib.AsyncExitStack() as held:
            first = await held.enter_async_context(stream(client, path, "mallory"))
            second = await held.enter_async_context(stream(client, path, "mallory"))
            assert (first.status_code, second.status_code) == (200, 200)
            async with stream(client, path, "mallory") as third:
                assert third.status_code == 429, third.status_code
                assert third.headers["content-type"].startswith("application/problem+json")
                assert third.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
                problem = third.json()
                assert problem["code"] == "too_many_streams" and "DW_MAX_STREAMS_PER_CALLER" in problem["detail"]
            # Another caller has slots of its own; pages of the log are not counted.
            async with stream(client, path, "alice") as other:
                assert other.status_code == 200
            page = await client.get(path, headers={"X-Principal-Id": "mallory"})
            assert page.status_code == 200, page.text
            # Closing one frees its slot (once the server has seen the client go).
            await second.aclose()
            for _ in range(100):
                async with stream(client, path, "mallory") as again:
                    if again.status_code == 200:
                        break
                await asyncio.sleep(0.05)
            assert again.status_code == 200, again.text


async def test_a_stream_never_read_gives_its_slot_back() -> None:
    """A client gone before its answer started: the stream's generator never ran, so no `finally`."""
    slots = StreamSlots(1)
    key = ("default", "principal:mallory")
    slot = slots.take(key)
    assert slot is not None and slots.take(key) is None

    async def messages() -> AsyncIterator[Any]:
        yield 1

    held = slot.holding(messages())
    del held
    gc.collect()
    assert slots.held(key) == 0 and slots.take(key) is not None


async def test_a_stream_read_to_its_end_or_closed_gives_its_slot_back() -> None:
    slots = StreamSlots(1)
    key = ("default", "address:127.0.0.1")

    async def messages() -> AsyncIterator[Any]:
        yield 1
        yield 2

    slot = slots.take(key)
    assert slot is not None
    assert [m async for m in slot.holding(messages())] == [1, 2]
    assert slots.held(key) == 0
    slot = slots.take(key)
    assert slot is not None
    held = slot.holding(messages())
    assert await anext(held) == 1
    await held.aclose()  # type: ignore[attr-defined]
    assert slots.held(key) == 0
    # 0: no limit.
    unlimited = StreamSlots(0)
    assert all(unlimited.take(key) is not None for _ in range(1000))


@pytest.mark.parametrize("value", ["-1", "many", "2147483648", "1.5"])
def test_a_bad_stream_limit_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigurationError, match="DW_MAX_STREAMS_PER_CALLER"):
        Settings.from_env({"DW_MAX_STREAMS_PER_CALLER": value})
    assert Settings.from_env({"DW_MAX_STREAMS_PER_CALLER": "0"}).max_streams_per_caller == 0

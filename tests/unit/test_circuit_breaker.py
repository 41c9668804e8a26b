"""A destination's circuit breaker (dataworkflows.circuit_breaker), with a clock the test moves."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest

from dataworkflows.actions.http import HttpRequestAction, HttpRequestParams
from dataworkflows.circuit_breaker import CircuitBreakers, CircuitOpen, is_failure
from dataworkflows.http_client import GuardedTransport
from dataworkflows.tenancy import tenant_scope
from tests.unit.test_http_answers import action_context

KEY = ("acme", "https", "api.example.com", 443)
FAILED = httpx.Response(503)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breakers(failures: int = 3, open_seconds: float = 10.0) -> tuple[CircuitBreakers, Clock]:
    clock = Clock()
    return CircuitBreakers(failures, open_seconds, clock=clock), clock


def test_failures_in_a_row_open_the_circuit_and_requests_fail_at_once() -> None:
    circuits, clock = breakers()
    for _ in range(3):
        assert circuits.admit(KEY) is False
        circuits.failed(KEY, False, FAILED)
    with pytest.raises(CircuitOpen) as refused:
        circuits.admit(KEY)
    assert refused.value.retry_after == pytest.approx(10.0)
    assert "failed 3 times in a row (the last: HTTP 503)" in str(refused.value)
    clock.now += 4
    with pytest.raises(CircuitOpen) as refused:
        circuits.admit(KEY)
    assert refused.value.retry_after == pytest.approx(6.0)
    # Another destination, or another tenant's calls to this one, are not held up.
    assert circuits.admit(("acme", "https", "other.example.com", 443)) is False
    assert circuits.admit(("globex", *KEY[1:])) is False


def test_a_success_forgets_the_failures() -> None:
    circuits, _ = breakers()
    for _ in range(2):
        circuits.failed(KEY, False, FAILED)
    circuits.succeeded(KEY)
    for _ in range(2):
        circuits.failed(KEY, False, httpx.ConnectError("refused"))
    assert circuits.admit(KEY) is False


def test_after_its_time_one_trial_goes_and_its_outcome_decides() -> None:
    circuits, clock = breakers()
    for _ in range(3):
        circuits.failed(KEY, False, FAILED)
    clock.now += 10
    assert circuits.admit(KEY) is True  # the trial
    with pytest.raises(CircuitOpen, match="a trial request is testing it") as refused:
        circuits.admit(KEY)
    assert refused.value.retry_after == pytest.approx(10.0)  # the trial may take a while
    circuits.failed(KEY, True, httpx.ReadTimeout("slow"))  # the trial failed: open again, for the whole time
    with pytest.raises(CircuitOpen) as refused:
        circuits.admit(KEY)
    assert refused.value.retry_after == pytest.approx(10.0)
    assert "(the last: ReadTimeout)" in str(refused.value)
    clock.now += 10
    assert circuits.admit(KEY) is True
    circuits.succeeded(KEY)
    assert circuits.admit(KEY) is False
    assert not circuits.is_open(KEY)


def test_a_trial_that_ends_without_an_answer_lets_the_next_request_be_the_trial() -> None:
    circuits, clock = breakers()
    for _ in range(3):
        circuits.failed(KEY, False, FAILED)
    clock.now += 10
    assert circuits.admit(KEY) is True
    circuits.abandoned(KEY, True)  # cancelled, say
    assert circuits.admit(KEY) is True


def test_no_circuit_opens_with_failures_0() -> None:
    circuits, _ = breakers(failures=0)
    for _ in range(100):
        circuits.failed(KEY, False, FAILED)
    assert circuits.admit(KEY) is False


@pytest.mark.parametrize(
    ("outcome", "failure"),
    [
        (httpx.Response(500), True),
        (httpx.Response(503), True),
        (httpx.Response(200), False),
        (httpx.Response(404), False),
        (httpx.Response(429), False),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("reset"), True),
        (httpx.ConnectTimeout("no answer"), True),
        (httpx.PoolTimeout("our own pool is full"), None),
        (CircuitOpen("open", retry_after=1.0), None),
        (httpx.LocalProtocolError("Illegal header value b' a'"), None),
        (httpx.UnsupportedProtocol("ftp"), None),
        (ValueError("the caller's"), None),
    ],
)
def test_what_counts_as_the_destinations_failure(outcome: Any, failure: bool | None) -> None:
    assert is_failure(outcome) is failure


async def test_the_transport_stops_sending_to_a_failing_destination_per_tenant() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.host)
        return httpx.Response(502)

    transport = GuardedTransport(["failing.test", "fine.test"], httpx.MockTransport(answer), CircuitBreakers(2, 30.0))
    async with httpx.AsyncClient(transport=transport) as client:
        with tenant_scope("acme"):
            for _ in range(2):
                assert (await client.get("http://failing.test/x")).status_code == 502
            with pytest.raises(CircuitOpen):
                await client.get("http://failing.test/x")
            assert (await client.get("http://fine.test/x")).status_code == 502  # its own circuit
        with tenant_scope("globex"):
            assert (await client.get("http://failing.test/x")).status_code == 502
    assert sent == ["failing.test", "failing.test", "fine.test", "failing.test"]


async def test_http_requests_cut_off_by_their_timeoutms_count_as_the_destinations_timeouts() -> None:
    # A destination that never answers: http.request's timeoutMs deadline (asyncio's) cancels the call
    # before httpx's own timeouts fire, and the transport saw only a cancellation, which it took for the
    # caller's (abandoned): the circuit never opened for the failure it exists for (a review).
    sent: list[str] = []

    async def never(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    circuits = CircuitBreakers(2, 30.0)
    client = httpx.AsyncClient(transport=GuardedTransport(["api.test"], httpx.MockTransport(never), circuits))
    context = action_context(client)
    params = msgspec.convert({"url": "http://api.test/x", "timeoutMs": 20}, HttpRequestParams)
    try:
        with tenant_scope("acme"):
            codes = []
            for _ in range(3):
                result = await HttpRequestAction().execute(context, params)
                codes.append(result.error.code if result.error else None)
    finally:
        await client.aclose()
    assert codes == ["timeout", "timeout", "circuit_open"]
    assert sent == ["/x", "/x"]
    assert circuits.is_open(("acme", "http", "api.test", 80))


async def test_a_request_cancelled_before_its_deadline_is_not_the_destinations_failure() -> None:
    started = asyncio.Event()

    async def never(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    circuits = CircuitBreakers(1, 30.0)
    transport = GuardedTransport(["api.test"], httpx.MockTransport(never), circuits)
    async with httpx.AsyncClient(transport=transport) as client:
        with tenant_scope("acme"):
            far = asyncio.get_running_loop().time() + 3600
            request = client.build_request("GET", "http://api.test/x", extensions={"dataworkflows.deadline": far})
            call = asyncio.ensure_future(client.send(request))
            await started.wait()
            call.cancel()  # a run's cancellation, say
            with pytest.raises(asyncio.CancelledError):
                await call
    assert not circuits.is_open(("acme", "http", "api.test", 80))


async def test_a_request_refused_before_it_is_sent_is_not_the_destinations_failure() -> None:
    # A header value with a leading or trailing space (a template's rendering, say) passes http.request's
    # check, and h11 refuses to write it (LocalProtocolError: invalid_request, permanent). The breaker
    # counted it as the destination's failure, a TransportError: two such requests (here) opened the
    # circuit and a well-formed request of another run was refused as circuit_open (a review).
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    circuits = CircuitBreakers(2, 30.0)
    client = httpx.AsyncClient(transport=GuardedTransport([f"127.0.0.1:{port}"], circuits=circuits))
    context = action_context(client)
    url = f"http://127.0.0.1:{port}/x"
    malformed = msgspec.convert({"url": url, "headers": {"X-Order": " 42"}}, HttpRequestParams)
    fine = msgspec.convert({"url": url, "headers": {"X-Order": "42"}}, HttpRequestParams)
    try:
        with tenant_scope("acme"):
            codes = []
            for params in (malformed, malformed, malformed, fine):
                result = await HttpRequestAction().execute(context, params)
                codes.append(result.error.code if result.error else result.outputs["status"])
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert codes == ["invalid_request", "invalid_request", "invalid_request", 200]
    assert not circuits.is_open(("acme", "http", "127.0.0.1", port))


async def test_a_stopping_worker_runs_every_close_even_past_one_that_fails() -> None:
    from dataworkflows.workers.app import close_all

    ran: list[str] = []

    def close(name: str, fails: bool = False) -> Any:
        async def closing() -> None:
            ran.append(name)
            if fails:
                raise OSError(f"{name} would not close")

        return closing

    with pytest.raises(OSError, match="http would not close"):
        await close_all(close("conditions"), close("http", True), close("pool"), close("traces", True))
    # The database pool's close and the traces' flush ran after the HTTP pools' failed.
    assert ran == ["conditions", "http", "pool", "traces"]

"""The HTTP client connectors use, with SSRF protection by default.

Only http and https. Every request, including each redirect hop, is resolved first and refused
unless every address is public: no loopback, private, link-local (169.254.169.254 and friends),
shared, multicast, reserved or unspecified ranges, in IPv4, IPv6 or IPv4-mapped IPv6 form. The
connection then goes to the address that was checked (Host header and TLS server name keep the
original name), so a DNS answer cannot change between the check and the connect. An explicit
allow-list (DW_HTTP_ALLOWED_HOSTS: host or host:port entries) admits local services for
development and tests.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Iterable

import httpx
import structlog

from dataworkflows.circuit_breaker import CircuitBreakers, is_failure
from dataworkflows.errors import DataWorkflowsError
from dataworkflows.tenancy import current_tenant

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_log = structlog.get_logger("dataworkflows.http")


class BlockedDestination(DataWorkflowsError):
    """The destination is not allowed (SSRF protection)."""

    code = "destination_blocked"


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
        if address.teredo is not None:
            return False
    return bool(address.is_global) and not address.is_multicast and not address.is_reserved


class GuardedTransport(httpx.AsyncBaseTransport):
    """Resolves, checks and pins each request's destination before the real transport sends it."""

    def __init__(
        self,
        allowed: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        circuits: CircuitBreakers | None = None,
    ) -> None:
        self._allowed = {_allow_entry(entry) for entry in allowed if entry.strip()}
        self.circuits = circuits or CircuitBreakers()
        self._transport = transport or httpx.AsyncHTTPTransport()
        # One connection pool per (scheme, host, port): a TLS connection to a pinned IP, verified for
        # one name, is never reused for another name that resolves to the same address.
        self._per_host: OrderedDict[tuple[str, str, int], httpx.AsyncBaseTransport] = OrderedDict()
        self._max_hosts = 64
        # Pools pushed out of _per_host, each with the timer that closes it once its requests can
        # have finished; aclose closes them at once.
        self._retiring: dict[asyncio.TimerHandle, httpx.AsyncBaseTransport] = {}

    def _is_allowed(self, host: str, port: int) -> bool:
        return (host, None) in self._allowed or (host, port) in self._allowed

    async def _transport_for(self, key: tuple[str, str, int]) -> httpx.AsyncBaseTransport:
        transport = self._per_host.get(key)
        if transport is None:
            transport = httpx.AsyncHTTPTransport()
            self._per_host[key] = transport
            if len(self._per_host) > self._max_hosts:
                _, oldest = self._per_host.popitem(last=False)

                # Requests may still be in flight on it: close it once they can have finished. The
                # timer is forgotten once it fired (kept, it held the closed pool for the worker's
                # life: one more for every new host past the last 64, a review).
                def retire(oldest: httpx.AsyncBaseTransport = oldest) -> None:
                    self._retiring.pop(handle, None)
                    _close_soon(oldest)

                handle = asyncio.get_running_loop().call_later(_RETIRE_AFTER_SECONDS, retire)
                self._retiring[handle] = oldest
        else:
            self._per_host.move_to_end(key)
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise BlockedDestination(f"only http and https URLs are allowed, not {url.scheme}:")
        host = url.host.lower().rstrip(".")
        port = url.port or (443 if url.scheme == "https" else 80)
        # The destination's circuit (dataworkflows.circuit_breaker): CircuitOpen, not sent, while it is open.
        key = (current_tenant() or "", url.scheme, host, port)
        trial = self.circuits.admit(key)
        try:
            response = await self._send(request, url, host, port)
        except BaseException as exc:
            if is_failure(exc):
                self.circuits.failed(key, trial, exc)
            elif _deadline_passed(request, exc):
                # The caller's deadline cut the request off (http.request's timeoutMs, or the node's
                # timeout, which expire before httpx's own timeouts do): the destination did not
                # answer in time.
                self.circuits.failed(key, trial, httpx.TimeoutException("the call's deadline passed"))
            else:
                self.circuits.abandoned(key, trial)
            raise
        if is_failure(response):
            self.circuits.failed(key, trial, response)
        else:
            self.circuits.succeeded(key)
        return response

    async def _send(self, request: httpx.Request, url: httpx.URL, host: str, port: int) -> httpx.Response:
        if self._is_allowed(host, port):
            return await self._transport.handle_async_request(request)
        addresses = await _resolve(host, port)
        blocked = [a for a in addresses if not is_public(a)]
        if blocked:
            raise BlockedDestination(
                f"{host} resolves to a non-public address ({blocked[0]}); "
                "add it to DW_HTTP_ALLOWED_HOSTS to allow it deliberately",
                host=host,
            )
        # Send a copy addressed to the checked IP: the caller's request keeps its URL, so redirects
        # resolve against the real host (and are checked again), and Host/SNI keep the name.
        headers = httpx.Headers(request.headers)
        headers["Host"] = url.netloc.decode("ascii")
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = host
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(addresses[0])),
            headers=headers,
            stream=request.stream,
            extensions=extensions,
        )
        transport = await self._transport_for((url.scheme, host, port))
        return await transport.handle_async_request(pinned)

    async def aclose(self) -> None:
        """Closes every pool: retired, the allow-listed destinations', in use. One that fails to close
        does not leave the rest open (a review: the loop stopped at the first, and every pool after it
        kept its connections until the process exited). The first failure is raised once all are
        closed, as one close's was; the others are logged, not lost."""
        for handle in self._retiring:
            handle.cancel()
        pools = [*self._retiring.values(), self._transport, *self._per_host.values()]
        self._retiring.clear()
        self._per_host.clear()
        first: Exception | None = None
        for pool in pools:
            try:
                await pool.aclose()
            except Exception as exc:
                if first is None:
                    first = exc
                else:
                    _log.warning(
                        "closing an HTTP connection pool failed", error=str(exc), error_type=type(exc).__name__
                    )
        if first is not None:
            raise first


_RETIRE_AFTER_SECONDS = 900.0  # longer than any request timeout (timeoutMs is at most 600 s)
_background: set[asyncio.Task[None]] = set()


def _close_soon(transport: httpx.AsyncBaseTransport) -> None:
    task = asyncio.ensure_future(transport.aclose())
    _background.add(task)
    task.add_done_callback(_background.discard)


# A request's extension: the loop time (asyncio's) by which its caller cancels it (a deadline of its
# own around the whole call). A request cancelled at or past it timed out, as far as its destination's
# circuit is concerned; any other cancellation is the caller's business.
DEADLINE_EXTENSION = "dataworkflows.deadline"


# The loop time by which the task's caller cancels whatever it awaits (a node's timeout, set by
# node_kinds around an action): a request cancelled at or past it timed out too.
CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "dataworkflows_call_deadline", default=None
)


def _deadline_passed(request: httpx.Request, exc: BaseException) -> bool:
    if not isinstance(exc, asyncio.CancelledError):
        return False
    deadlines = [d for d in (request.extensions.get(DEADLINE_EXTENSION), CALL_DEADLINE.get()) if d is not None]
    return bool(deadlines) and asyncio.get_running_loop().time() >= min(deadlines)


def _allow_entry(entry: str) -> tuple[str, int | None]:
    """'host', 'host:port', '[v6]' or '[v6]:port' -> (host, port or None)."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise httpx.ConnectError(f"cannot resolve {host}")
    return addresses


def make_http_client(
    allowed_hosts: Iterable[str] = (), *, timeout: float = 30.0, circuits: CircuitBreakers | None = None
) -> httpx.AsyncClient:
    """The shared client: SSRF-guarded, redirects followed (each hop checked), no environment proxies,
    a circuit breaker per destination (`circuits`; by default 5 failures in a row open one for 30 s)."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allowed_hosts, circuits=circuits),
        timeout=timeout,
        follow_redirects=True,
        max_redirects=5,
        trust_env=False,
        headers={"User-Agent": "DataWorkflows/0.1"},
    )

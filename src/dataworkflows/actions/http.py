"""http.request: one HTTP call through the SSRF-guarded client.

408, 425, 429, 500, 502, 503 and 504 answers and transport errors are retriable (Retry-After
honoured); any other status outside expectedStatus is permanent. The response body is capped
(maxResponseBytes). A connection supplies credentials, and says where they may go: its secret is
JSON with "hosts" and "bearer" or "headers"; a request to any other host is refused, redirects to
another origin drop the credentials, and the secret's values are scrubbed from outputs and error
messages. POST, PUT, PATCH and DELETE carry an Idempotency-Key (see HttpRequestParams), so that a
receiver can de-duplicate an attempt that ran twice.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httpx
import msgspec

from dataworkflows import traces
from dataworkflows.actions import ActionContext, ActionResult, ActionServices
from dataworkflows.actions.web import (
    RETRIABLE_STATUSES,
    ResponseTooLarge,
    UnsupportedEncoding,
    decode_body,
    read_capped,
    retry_after_seconds,
    scrub_result,
    secret_for,
    transport_failure,
)
from dataworkflows.connection_kinds import is_field_value, names_repeated, sendable_header_value
from dataworkflows.credentials import Secret
from dataworkflows.http_client import DEADLINE_EXTENSION, BlockedDestination

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")
_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_HIDDEN_RESPONSE_HEADERS = frozenset({"set-cookie", "authorization", "proxy-authenticate", "www-authenticate"})


# What httpx writes from the URL and the body: a node's Host sent a connection's credential to another
# virtual host than its hosts name (behind a proxy that routes by Host, another service: a review),
# and a Content-Length or Transfer-Encoding of its own would frame the request differently from
# what is sent.
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
# httpx's words for a Location header it cannot read (raised as it builds the response).
_BAD_LOCATION = "Invalid URL in location header"


def _check_headers(headers: dict[str, str]) -> None:
    if names_repeated(headers):
        raise ValueError("headers: a name is given twice (header names are case-insensitive)")
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"headers: {name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
        if name.lower() in _FRAMING_HEADERS:
            raise ValueError(f"headers: {name} is written from the url and the body, not given")
        if not is_field_value(value):
            raise ValueError(
                f"headers: {name}'s value must be visible ASCII, spaces and tabs (no line breaks, no other"
                " text: percent-encode it, or send it in the body)"
            )


class HttpRequestParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    url: str
    method: Method = "GET"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    query: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    json: Any = msgspec.UNSET
    form: dict[str, str] | None = None
    body: str | None = None
    timeout_ms: int = 30_000
    # Statuses that count as success; default: any 2xx.
    expected_status: list[int] | None = None
    max_response_bytes: int = 1_048_576
    connection: str | None = None
    follow_redirects: bool = True
    # An Idempotency-Key header so that the receiver can de-duplicate an attempt that ran twice (an
    # interrupted attempt runs again: at least once). None: a key derived from the execution, the
    # node and the attempt (without its interruptions) for POST, PUT, PATCH and DELETE; true: that
    # key for any method; false: no header; a string: that key (templated, like every parameter).
    idempotency_key: str | bool | None = None
    idempotency_header: str = "Idempotency-Key"

    def __post_init__(self) -> None:
        given = [self.json is not msgspec.UNSET, self.form is not None, self.body is not None]
        if sum(given) > 1:
            raise ValueError("give at most one of json, form and body")
        if not self.url.lower().startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        if not 1 <= self.timeout_ms <= 600_000:
            raise ValueError("timeoutMs must be between 1 and 600000")
        if not 1 <= self.max_response_bytes <= 50 * 1024 * 1024:
            raise ValueError("maxResponseBytes must be between 1 and 52428800")
        if not _TOKEN.fullmatch(self.idempotency_header):
            raise ValueError("idempotencyHeader must be a header name (letters, digits and !#$%&'*+-.^_`|~)")
        if isinstance(self.idempotency_key, str) and not _KEY.fullmatch(self.idempotency_key):
            raise ValueError("idempotencyKey must be 1 to 255 printable ASCII characters")
        if self.expected_status is not None and not self.expected_status:
            # An empty list failed every answer, a 200 included.
            raise ValueError("expectedStatus must name at least one status (leave it out for any 2xx)")
        if self.expected_status is not None and not all(100 <= s <= 599 for s in self.expected_status):
            raise ValueError("expectedStatus holds HTTP statuses, 100 to 599")
        _check_headers(self.headers)

    def idempotency(self, ctx: ActionContext) -> str | None:
        """The idempotency key this request sends, if any."""
        key = self.idempotency_key
        if isinstance(key, str):
            return key
        if key is True or (key is None and self.method in _UNSAFE_METHODS):
            return ctx.idempotency_key
        return None


class InvalidConnection(Exception):
    pass


def _connection(secret: Secret) -> tuple[dict[str, str], list[tuple[str, int | None]]]:
    """A connection for http.request is JSON that says where it may be sent:
    {"hosts": ["api.example.com", "api.example.com:8443"], "bearer": "..."} or
    {"hosts": [...], "headers": {"X-Api-Key": "..."}}. A secret without hosts is refused, so a
    workflow cannot send a credential to a server of its choosing."""
    try:
        parsed = json.loads(secret.reveal())
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("hosts"), list) or not parsed["hosts"]:
        raise InvalidConnection(
            'an http.request connection must be JSON naming the hosts it may be sent to: {"hosts": [...], '
            '"bearer": "..."} or {"hosts": [...], "headers": {...}}'
        )
    headers: dict[str, str] = {}
    if isinstance(parsed.get("bearer"), str):
        headers["Authorization"] = f"Bearer {parsed['bearer']}"
    if isinstance(parsed.get("headers"), dict):
        headers.update({str(k): str(v) for k, v in parsed["headers"].items()})
    if not headers:
        raise InvalidConnection("the connection has neither bearer nor headers")
    # Checked when it is stored (dataworkflows.connection_kinds); a connection stored before those
    # checks is refused here, without quoting it.
    for value in headers.values():
        if not sendable_header_value(value):
            raise InvalidConnection("a header value is not visible ASCII (a line break, or other text)")
    if names_repeated(headers):
        raise InvalidConnection("a header is named twice (names are case-insensitive)")
    hosts = []
    for entry in parsed["hosts"]:
        host, _, port = str(entry).lower().partition(":")
        hosts.append((host, int(port) if port.isdigit() else None))
    return headers, hosts


def _host_allowed(url: httpx.URL, hosts: list[tuple[str, int | None]]) -> bool:
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.host.lower().rstrip(".")
    # A host named without a port admits https on its standard port only: the credential never
    # travels in clear text, nor to another service of the same host (a debug port), unless the
    # connection names that port.
    return any(h == host and ((p is None and url.scheme == "https" and port == 443) or p == port) for h, p in hosts)


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host.lower(), url.port or (443 if url.scheme == "https" else 80)


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_MAX_REDIRECTS = 5


class HttpRequestAction:
    type_name: ClassVar[str] = "http.request"
    description: ClassVar[str] = "Calls an HTTP endpoint; outputs status, headers and body."
    connector: ClassVar[str] = "http"
    Params: ClassVar[type[msgspec.Struct]] = HttpRequestParams

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        assert isinstance(params, HttpRequestParams)
        secrets: list[str] = []
        result = await self._execute(ctx, params, secrets)
        return scrub_result(result, secrets)

    async def _execute(self, ctx: ActionContext, params: HttpRequestParams, secrets: list[str]) -> ActionResult:
        services = ctx.require_services()
        url = _request_url(params)
        if isinstance(url, ActionResult):
            return url
        auth_headers = await _auth_headers(services, params, url, secrets)
        if isinstance(auth_headers, ActionResult):
            return auth_headers
        headers = dict(params.headers)
        # Header names are case-insensitive: the node's accept-encoding replaces this one, it is not
        # sent beside it.
        if "accept-encoding" not in {name.lower() for name in headers}:
            headers["Accept-Encoding"] = "gzip, deflate"
        key = params.idempotency(ctx)
        if key is not None and params.idempotency_header.lower() not in {h.lower() for h in headers}:
            headers[params.idempotency_header] = key
        traces.inject(headers)  # the attempt's traceparent, unless the workflow set one
        # timeoutMs is the whole call's deadline: httpx's own timeout bounds each read, and a server
        # sending a byte now and then held the attempt until the node's timeout.
        try:
            async with asyncio.timeout(params.timeout_ms / 1000) as deadline:
                exchange = await _send(services.http, params, url, headers, auth_headers, deadline.when())
                if isinstance(exchange, ActionResult):
                    return exchange
                body = await _read_body(exchange, params.max_response_bytes)
        except TimeoutError:
            if not deadline.expired():
                raise
            return ActionResult.retriable(
                "timeout", f"{params.method} {url.host} took longer than timeoutMs ({params.timeout_ms} ms)"
            )
        if isinstance(body, ActionResult):
            return body
        return _outcome(exchange, body, params.expected_status)


def _request_url(params: HttpRequestParams) -> httpx.URL | ActionResult:
    try:
        url = httpx.URL(params.url)
        if params.query:
            # Merge: httpx's params= would replace a query string already in the URL.
            url = url.copy_merge_params(params.query)
    except httpx.InvalidURL as exc:
        return ActionResult.failed("invalid_url", f"the url is not valid: {exc}")
    return url


async def _auth_headers(
    services: ActionServices, params: HttpRequestParams, url: httpx.URL, secrets: list[str]
) -> dict[str, str] | ActionResult:
    """The connection's headers, once it is known that they may go to `url`; each secret value is
    added to `secrets` (to scrub from the result)."""
    if not params.connection:
        return {}
    secret = await secret_for(services, params.connection)
    if isinstance(secret, ActionResult):
        return secret
    secrets.append(secret.reveal())
    try:
        auth_headers, hosts = _connection(secret)
    except InvalidConnection as exc:
        return ActionResult.failed("connection_invalid", f"connection {params.connection!r}: {exc}")
    secrets.extend(auth_headers.values())
    secrets.extend(v.removeprefix("Bearer ") for v in auth_headers.values())
    if not _host_allowed(url, hosts):
        return ActionResult.failed(
            "connection_host_mismatch",
            f"connection {params.connection!r} may not be sent to {_where(url)} (see its hosts: a host "
            "named without a port admits https on port 443 only)",
        )
    return auth_headers


def _where(url: httpx.URL) -> str:
    """Where a request goes, as the connection's hosts are matched: scheme, host and port (the host
    alone named one that the hosts list, for the port or the scheme that did not match)."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.scheme}://{url.host}:{port}"


def _content(params: HttpRequestParams) -> dict[str, Any]:
    """The request body as httpx's keyword argument (json, data or content), if any."""
    if params.json is not msgspec.UNSET:
        return {"json": params.json}
    if params.form is not None:
        return {"data": params.form}
    if params.body is not None:
        return {"content": params.body.encode()}
    return {}


@dataclass(frozen=True)
class _Exchange:
    """The final response (its body not read yet), and the URL and method that produced it."""

    response: httpx.Response
    url: httpx.URL
    method: str


async def _send(
    client: httpx.AsyncClient,
    params: HttpRequestParams,
    url: httpx.URL,
    headers: dict[str, str],
    auth_headers: dict[str, str],
    deadline: float | None = None,
) -> _Exchange | ActionResult:
    """`deadline`: the loop time at which the call's timeoutMs cancels it; each request carries it
    (http_client.DEADLINE_EXTENSION), so a destination that never answers counts as timed out for its
    circuit (the deadline expires before httpx's own timeouts, which start later)."""
    content = _content(params)
    extensions = {} if deadline is None else {DEADLINE_EXTENSION: deadline}
    origin = _origin(url)
    method: str = params.method
    timeout = params.timeout_ms / 1000
    for _ in range(_MAX_REDIRECTS + 1):
        send_headers = _headers_for(url, origin, headers, auth_headers)
        request = client.build_request(
            method, url, headers=send_headers, timeout=timeout, extensions=extensions, **content
        )
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.RemoteProtocolError as exc:
            if str(exc).startswith(_BAD_LOCATION):
                # httpx reads a redirect's Location as it builds the response: the same answer comes
                # every time (it was a retriable transport_error, retried to the last attempt).
                return ActionResult.failed("invalid_redirect", f"{method} {url.host} redirected badly: {exc}")
            return transport_failure(exc, f"{method} {url.host}")
        except (httpx.HTTPError, OSError, BlockedDestination) as exc:
            return transport_failure(exc, f"{method} {url.host}")
        location = response.headers.get("location")
        if not (params.follow_redirects and response.status_code in _REDIRECTS and location):
            return _Exchange(response, url, method)
        await response.aclose()
        try:
            url = url.join(location)
        except httpx.InvalidURL as exc:
            return ActionResult.failed("invalid_redirect", f"{method} {request.url.host} redirected badly: {exc}")
        if _redirect_becomes_get(method, response.status_code):
            method, content = "GET", {}
    return ActionResult.failed("too_many_redirects", f"more than {_MAX_REDIRECTS} redirects")


def _headers_for(
    url: httpx.URL, origin: tuple[str, str, int], headers: dict[str, str], auth_headers: dict[str, str]
) -> dict[str, str]:
    # Credentials go only to the origin they were given for (redirects are followed one by one,
    # so a hop to another origin carries neither the connection's nor the caller's own
    # Authorization, Cookie or Proxy-Authorization).
    if _origin(url) == origin:
        # The connection's headers replace the node's of the same name in any case: both were sent,
        # and a server reading the first Authorization took the node's instead of the credential.
        replaced = {name.lower() for name in auth_headers}
        return {**{k: v for k, v in headers.items() if k.lower() not in replaced}, **auth_headers}
    return {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}


def _redirect_becomes_get(method: str, status: int) -> bool:
    # As browsers do: 303 always, and 301/302 after a POST, repeat the request as a GET.
    return method != "HEAD" and (status == 303 or (status in (301, 302) and method == "POST"))


async def _read_body(exchange: _Exchange, limit: int) -> bytes | ActionResult:
    response = exchange.response
    try:
        return await read_capped(response, limit)
    except ResponseTooLarge:
        return ActionResult.failed("response_too_large", f"the response is larger than maxResponseBytes ({limit})")
    except UnsupportedEncoding as exc:
        return ActionResult.failed("unsupported_encoding", f"cannot decode the response: {exc}")
    except httpx.HTTPError as exc:
        return transport_failure(exc, f"reading the response from {exchange.url.host}")
    finally:
        await response.aclose()


def _outcome(exchange: _Exchange, body: bytes, expected: list[int] | None) -> ActionResult:
    response = exchange.response
    status = response.status_code
    outputs = {
        "status": status,
        "headers": {k: v for k, v in response.headers.items() if k.lower() not in _HIDDEN_RESPONSE_HEADERS},
        "body": decode_body(response, body),
    }
    if (expected is None and 200 <= status < 300) or (expected and status in expected):
        return ActionResult.succeeded(outputs)
    message = f"{exchange.method} {exchange.url.host} answered {status}"
    if status in RETRIABLE_STATUSES:
        result = ActionResult.retriable(f"http_{status}", message, retry_after_seconds(response))
    else:
        result = ActionResult.failed(f"http_{status}", message)
    return ActionResult(result.status, outputs, result.error)

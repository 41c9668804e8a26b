"""http.request: one HTTP call through the SSRF-guarded client.

429, 408, 425 and 5xx answers and transport errors are retriable (Retry-After honoured); any
other status outside expectedStatus is permanent. The response body is capped (maxResponseBytes).
A connection name supplies credentials: a plain secret becomes `Authorization: Bearer <secret>`;
a JSON object secret {"headers": {...}} supplies those headers. Credentials never reach outputs.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import httpx
import msgspec

from dataworkflows.actions import ActionContext, ActionResult
from dataworkflows.actions.web import (
    RETRIABLE_STATUSES,
    ResponseTooLarge,
    decode_body,
    read_capped,
    retry_after_seconds,
    secret_for,
    transport_failure,
)
from dataworkflows.credentials import Secret
from dataworkflows.http_client import BlockedDestination

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_HIDDEN_RESPONSE_HEADERS = frozenset({"set-cookie", "authorization", "proxy-authenticate", "www-authenticate"})


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


def _auth_headers(secret: Secret) -> dict[str, str]:
    value = secret.reveal()
    if value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("headers"), dict):
            return {str(k): str(v) for k, v in parsed["headers"].items()}
    return {"Authorization": f"Bearer {value}"}


class HttpRequestAction:
    type_name: ClassVar[str] = "http.request"
    description: ClassVar[str] = "Calls an HTTP endpoint; outputs status, headers and body."
    connector: ClassVar[str] = "http"
    Params: ClassVar[type[msgspec.Struct]] = HttpRequestParams

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        assert isinstance(params, HttpRequestParams)
        services = ctx.require_services()
        headers = dict(params.headers)
        if params.connection:
            secret = await secret_for(services, params.connection)
            if isinstance(secret, ActionResult):
                return secret
            headers.update(_auth_headers(secret))
        content: dict[str, Any] = {}
        if params.json is not msgspec.UNSET:
            content["json"] = params.json
        elif params.form is not None:
            content["data"] = params.form
        elif params.body is not None:
            content["content"] = params.body.encode()
        client: httpx.AsyncClient = services.http
        # Merge: httpx's params= would replace a query string already in the URL.
        url = httpx.URL(params.url).copy_merge_params(params.query) if params.query else httpx.URL(params.url)
        request = client.build_request(params.method, url, headers=headers, timeout=params.timeout_ms / 1000, **content)
        try:
            response = await client.send(request, stream=True, follow_redirects=params.follow_redirects)
        except (httpx.HTTPError, OSError, BlockedDestination) as exc:
            return transport_failure(exc, f"{params.method} {request.url.host}")
        try:
            try:
                body = await read_capped(response, params.max_response_bytes)
            except ResponseTooLarge:
                return ActionResult.failed(
                    "response_too_large", f"the response is larger than maxResponseBytes ({params.max_response_bytes})"
                )
            except httpx.HTTPError as exc:
                return transport_failure(exc, f"reading the response from {request.url.host}")
        finally:
            await response.aclose()
        outputs = {
            "status": response.status_code,
            "headers": {k: v for k, v in response.headers.items() if k.lower() not in _HIDDEN_RESPONSE_HEADERS},
            "body": decode_body(response, body),
        }
        expected = params.expected_status
        if (expected is None and 200 <= response.status_code < 300) or (expected and response.status_code in expected):
            return ActionResult.succeeded(outputs)
        message = f"{params.method} {request.url.host} answered {response.status_code}"
        if response.status_code in RETRIABLE_STATUSES:
            result = ActionResult.retriable(f"http_{response.status_code}", message, retry_after_seconds(response))
        else:
            result = ActionResult.failed(f"http_{response.status_code}", message)
        return ActionResult(result.status, outputs, result.error)

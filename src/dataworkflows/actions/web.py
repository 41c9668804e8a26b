"""What connector actions share: status classification, Retry-After, reading a capped body."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from dataworkflows.actions import ActionResult
from dataworkflows.credentials import CredentialNotFound, Secret
from dataworkflows.http_client import BlockedDestination

RETRIABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped at an hour."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), 3600.0)
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return min(max(parsed.timestamp() - time.time(), 0.0), 3600.0)


class ResponseTooLarge(Exception):
    pass


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(int(declared))
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body.extend(chunk)
        if len(body) > limit:
            raise ResponseTooLarge(len(body))
    return bytes(body)


def decode_body(response: httpx.Response, body: bytes) -> Any:
    content_type = response.headers.get("content-type", "")
    text = body.decode(response.encoding or "utf-8", errors="replace")
    if "json" in content_type:
        try:
            return response.json() if not body else _json(body)
        except ValueError:
            return text
    return text


def _json(body: bytes) -> Any:
    import json

    return json.loads(body)


def transport_failure(exc: Exception, what: str) -> ActionResult:
    """Blocked destinations are permanent; network trouble is retriable."""
    if isinstance(exc, BlockedDestination):
        return ActionResult.failed(exc.code, exc.message)
    if isinstance(exc, httpx.TimeoutException):
        return ActionResult.retriable("timeout", f"{what} timed out: {type(exc).__name__}")
    return ActionResult.retriable("transport_error", f"{what} failed: {type(exc).__name__}: {exc}")


async def secret_for(ctx_services: Any, connection: str) -> Secret | ActionResult:
    try:
        secret = await ctx_services.credentials.get(connection)
    except CredentialNotFound as exc:
        return ActionResult.failed(exc.code, exc.message)
    assert isinstance(secret, Secret)
    return secret

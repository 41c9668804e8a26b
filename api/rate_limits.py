"""The API's rate limit per caller (DW_API_RATE_PER_MINUTE, DW_API_RATE_BURST): middleware on the
/api/v1 router (health checks, /metrics and /schema are outside it) that takes a token from the
caller's bucket in PostgreSQL, one statement per request, so that every API process on the database
shares it. Over the limit: 429 problem details with Retry-After and the RateLimit fields
(dataworkflows.rate_limits); within it, the RateLimit fields on the answer.

Who the caller is (caller_key): the tenant and principal id; anonymous callers by client address;
webhook receivers (/api/v1/hooks/{triggerId}) by trigger, since their senders (GitHub, Slack) name no
principal and come from many addresses: one noisy hook cannot starve the others or anyone else.

When the bucket cannot be read (the database is down or slow), the request goes through (fail open)
with a warning at most every 10 s: it will most likely answer 503 itself, and a limiter that failed
closed would turn a database hiccup into refusals of requests that need no database."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import structlog
from litestar import Request
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from dataworkflows.errors import DatabaseUnavailable, DataWorkflowsError
from dataworkflows.rate_limits import BucketPolicy, RateDecision
from dataworkflows.tenancy import DEFAULT_TENANT

from .principals import Principal, authenticate
from .problems import handle_domain_error, rate_limited
from .services import Services, services_of

log = structlog.get_logger("dataworkflows.api")

HOOKS_PATH = "/api/v1/hooks/"
# Webhook buckets belong to no tenant (trigger ids are unique across tenants); not a valid tenant id.
HOOKS_TENANT = "-"
WARNING_INTERVAL_SECONDS = 10.0
# An answer that carries this field already describes a bucket of its own (a hook's 429).
_RATE_LIMIT_FIELD = b"ratelimit-limit"

_last_warning = 0.0


async def caller_principal(request: Request[Any, Any, Any], svc: Services) -> Principal | None:
    """The request's principal (resolved, its token verified, once per request: the auth guard that
    runs after this middleware reuses it), or None when it is refused: the guard answers that
    refusal (authenticate keeps it), and the request draws from its address's bucket meanwhile."""
    try:
        return await authenticate(request, svc.principals)
    except (DataWorkflowsError, HTTPException):
        return None


async def caller_key(request: Request[Any, Any, Any], svc: Services) -> tuple[str, str]:
    """(tenant, subject) of the bucket this request draws from."""
    template = request.scope.get("path_template") or ""
    address = request.client.host if request.client is not None else "unknown"
    if template.startswith(HOOKS_PATH):
        # Before anything is verified, a delivery draws from its sender's bucket: made-up trigger
        # ids do not get a fresh bucket each, and nobody can drain a real trigger's bucket with
        # unsigned junk. The trigger's own bucket is charged once its signature checks out
        # (take_trigger_token, from the hook's handler).
        return HOOKS_TENANT, f"hook-sender:{address[:100]}"
    principal = await caller_principal(request, svc)
    if principal is not None and principal.id:
        return principal.tenant, f"principal:{principal.id[:200]}"
    tenant = principal.tenant if principal is not None else DEFAULT_TENANT
    return tenant, f"address:{address[:100]}"


# Whose rate a hook's 429 is about (not its caller's: every sender of the hook shares the bucket).
HOOK_RATE = "this hook's delivery"


async def take_trigger_token(request: Request[Any, Any, Any], svc: Services, trigger_id: UUID) -> RateDecision | None:
    """A verified webhook delivery takes a token from its trigger's bucket (one noisy hook slows
    only itself): None to go on, or the refusing decision (rate_limited(..., whose=HOOK_RATE) is
    its 429)."""
    policy = svc.rate_policy
    if policy is None:
        return None
    decision = await take_token(request, svc, policy, key=(HOOKS_TENANT, f"hook:{trigger_id}"))
    if decision is None or decision.granted:
        return None
    return decision


async def take_token(
    request: Request[Any, Any, Any], svc: Services, policy: BucketPolicy, *, key: tuple[str, str] | None = None
) -> RateDecision | None:
    """The bucket's answer for this request (its caller's, or `key`'s); None when it could not be
    read (let through)."""
    tenant, subject = key if key is not None else await caller_key(request, svc)
    try:
        level = await svc.db.limits.take_token(
            tenant=tenant, subject=subject, per_second=policy.per_second, burst=policy.burst
        )
    except DatabaseUnavailable:
        # No connection came within DW_DB_TIMEOUT_SECONDS (the server is down, or the pool is
        # exhausted): the request would wait as long again for its own and get the same 503
        # (twice the timeout, as a crash review measured). It gets it now.
        raise
    except Exception as exc:
        global _last_warning
        if time.monotonic() - _last_warning >= WARNING_INTERVAL_SECONDS:
            _last_warning = time.monotonic()
            log.warning(
                "rate limiter unavailable; requests go through unlimited",
                error=str(exc),
                error_type=type(exc).__name__,
            )
        return None
    return policy.decide(tokens=level.tokens, granted=level.granted)


def rate_limit_middleware(app: ASGIApp) -> ASGIApp:
    """Takes a token per request; 429 without one; the RateLimit fields on every answer."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        svc = services_of(scope["litestar_app"].state)
        policy = svc.rate_policy
        request: Request[Any, Any, Any] = Request(scope, receive)
        try:
            decision = None if policy is None else await take_token(request, svc, policy)
        except DatabaseUnavailable as exc:
            # Answered here, as the handlers' 503 is: raised, it passed the metrics middleware as an
            # exception, which counted and logged the request as a 500 (a review).
            response = handle_domain_error(request, exc)
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)
            return
        if decision is None:
            await app(scope, receive, send)
            return
        headers = decision.headers()
        if not decision.granted:
            assert decision.retry_after is not None
            response = rate_limited(request, headers, decision.retry_after)
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)
            return
        encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent = list(message.get("headers", ()))
                # A hook's 429 describes the bucket that refused it (its trigger's, take_trigger_token):
                # the sender's fields as well would be a second, conflicting set of the same names.
                if not any(name.lower() == _RATE_LIMIT_FIELD for name, _ in sent):
                    sent.extend(encoded)
                message["headers"] = sent
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware

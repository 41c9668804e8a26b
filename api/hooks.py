"""/api/v1/hooks/{triggerId}: webhook deliveries that start runs (POST), and what a hook expects (GET).

A delivery is checked in this order, and every outcome is a dw.webhook_deliveries row with its reason
and status code (sql/procedures/webhooks.sql):
  404  no such trigger, not a webhook, deleted (nothing recorded: there is no row to record against),
       or an id that is not a UUID; a disabled one (recorded, reason trigger_disabled: an operator sees
       that a sender still delivers to a hook they turned off);
  413  a body larger than DW_MAX_BODY_BYTES;
  503  a signed trigger while this server has no DW_CREDENTIALS_KEY (or one that does not decrypt
       the secret): it cannot verify anything;
  400  a signature or timestamp header given more than once (repeated_header): which copy is the
       sender's nobody can tell, and the first one was verified (a valid one followed by any other
       was accepted);
  401  a missing, wrong or stale signature (dataworkflows.webhooks: hmac-sha256, github, slack);
  400  a delivery id over 200 characters or holding a control, format (bidi) or separator character,
       a NUL or a lone surrogate (as a requestId must not; the row stores it with those escaped as
       \\uXXXX, as every row of such an id does, whatever its refusal, and its reason says so), a
       body that is not what its Content-Type says (JSON for application/json, */*+json or no
       Content-Type; fields for a form; any other type is kept as UTF-8 text), or one nested too
       deeply;
  422  an activation condition that throws, or a payloadTemplate that cannot render;
  200  {"activated": false}: the activation condition is false (the delivery id is claimed: a replay
       is a duplicate);
  202  accepted: the delivery row and the run are written in one transaction;
  200  "duplicate": true: a delivery id seen before; the first delivery's executionId, nothing started
       (null, with a note, when retention removed that run).
Nothing is cached between requests: each delivery reads its trigger (enabled, config, secret) afresh.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from dataworkflows import webhooks
from dataworkflows.conditions import ConditionError, ConditionUnavailable
from dataworkflows.credentials import Cipher
from dataworkflows.data.webhooks import DeliveryOutcome, HookTrigger
from dataworkflows.db import Database
from dataworkflows.errors import Conflict, DatabaseUnavailable, DataWorkflowsError, InvalidInput, NotFound
from dataworkflows.json_depth import has_nul, json_depth
from dataworkflows.templating import TemplateRenderError, TemplateUnavailable
from dataworkflows.tenancy import all_tenants, tenant_scope
from dataworkflows.webhooks import HookConfig, Refusal

from .openapi_docs import PROBLEMS
from .params import QUERY_IS_PAYLOAD
from .problems import problem, rate_limited, rate_limited_message
from .rate_limits import HOOK_RATE, take_trigger_token
from .schemas import Camel
from .services import Services, ServicesDep

log = structlog.get_logger("dataworkflows.api.hooks")


class HookAnswer(Camel):
    delivery_id: str
    # False when the activation condition was false (nothing started).
    activated: bool
    # True when this delivery id was seen before: the first delivery's execution, nothing new.
    duplicate: bool
    execution_id: UUID | None = None
    status_url: str | None = None
    # Why a duplicate of an accepted delivery names no run: retention removed it (its delivery rows
    # are kept apart from it); null otherwise.
    note: str | None = None


class HookChallenge(Camel):
    """Slack's url_verification answered: its challenge, as the body gave it (null without one)."""

    challenge: Any


class HookInfo(Camel):
    trigger_id: UUID
    name: str
    workflow_id: str
    method: str
    url: str
    # hmac-sha256 | github | slack | none
    signature: str
    # The headers a delivery must carry (the signature's).
    required_headers: list[str]
    signature_header: str | None
    # What is signed, and how the signature header's value is made of it.
    signed_content: str | None
    signature_format: str | None
    timestamp_header: str | None
    timestamp_tolerance_seconds: int | None
    # The headers read for the delivery id, first present wins; without one, the fallback.
    delivery_id_headers: list[str]
    delivery_id_fallback: str
    # Headers copied into the run's payload (lower-case).
    copied_headers: list[str]
    activation_condition: bool
    payload_template: bool
    content_types: str
    max_body_bytes: int


_SIGNED_CONTENT = {
    webhooks.HMAC_SHA256: f"<{webhooks.DW_TIMESTAMP}>.<raw body>",
    webhooks.GITHUB: "<raw body>",
    webhooks.SLACK: f"v0:<{webhooks.SLACK_TIMESTAMP}>:<raw body>",
}
_CONTENT_TYPES = (
    "application/json, */*+json or none: JSON; application/x-www-form-urlencoded: fields; anything else: UTF-8 text"
)


def hook_uuid(trigger_id: str) -> UUID:
    try:
        return UUID(trigger_id)
    except ValueError:
        raise NotFound(f"webhook {trigger_id[:100]!r} not found (not a UUID)") from None


async def require_hook(db: Database, trigger_id: str, *, disabled_too: bool = False) -> HookTrigger:
    """The enabled webhook trigger of a path (or a disabled one, with `disabled_too`): 404 for any
    other id (unknown, another kind, deleted). Senders carry no token: the trigger's id (a random
    UUID) finds it in whichever tenant it is, and the delivery then runs as that tenant."""
    with all_tenants():
        hook = await db.webhooks.trigger(hook_uuid(trigger_id))
    if hook is None or not (hook.enabled or disabled_too):
        raise NotFound(f"webhook {trigger_id} not found (or disabled)")
    return hook


@functools.lru_cache(maxsize=4)
def _cipher(key: str) -> Cipher:
    # The key only: secrets are decrypted per request from the row read for that request.
    return Cipher.from_setting(key)


def _status_of(exc: DataWorkflowsError) -> int:
    for cls, status in ((NotFound, 404), (Conflict, 409), (InvalidInput, 422), (DatabaseUnavailable, 503)):
        if isinstance(exc, cls):
            return status
    return 500


@dataclass
class _Delivery:
    """One POST to a hook, step by step; each step answers a refusal (recorded) or None to go on."""

    svc: Services
    request: Request[Any, Any, Any]
    hook: HookTrigger
    config: HookConfig
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    body: bytes = b""
    body_bytes: int | None = None
    delivery_id: str | None = None
    value: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)

    async def run(self) -> Response[Any]:
        for step in (self._read, self._authenticate, self._throttle, self._parse, self._handshake, self._activate):
            answer = await step()
            if answer is not None:
                return answer
        return await self._accept()

    async def record(self, outcome: str, reason: str | None, status: int) -> DeliveryOutcome | None:
        # Whatever the refusal (an unsigned request to a signed hook included), its id is stored
        # printable: the id is read before anything is checked, and only a valid one is ever claimed.
        recorded = None if self.delivery_id is None else webhooks.recorded_delivery_id(self.delivery_id)
        if recorded != self.delivery_id and reason is not None and webhooks.ESCAPED_ID_NOTE not in reason:
            reason = f"{reason}; {webhooks.ESCAPED_ID_NOTE}"
        return await self.svc.db.webhooks.record(
            self.hook.id,
            delivery_id=None if recorded is None else recorded[: webhooks.MAX_DELIVERY_ID],
            # A refused delivery claims nothing (its hash would block the genuine one).
            content_hash=None
            if outcome == "refused"
            else webhooks.content_hash(self.config, self.request.headers, self.body),
            outcome=outcome,
            reason=reason,
            status_code=status,
            body_bytes=self.body_bytes,
            received_at=self.received_at,
            lapse_seconds=webhooks.lapse_seconds(self.config, self.request.headers),
        )

    async def record_disabled(self) -> None:
        """A delivery to a disabled hook: answered 404 as an unknown one (a sender learns nothing),
        and recorded, so that an operator sees a sender still delivering to a hook they turned off.
        Nothing else is checked (no signature, no body parsing): the row says what came."""
        await self._take_body()
        log.info("webhook delivery refused", trigger_id=str(self.hook.id), status=404, reason="trigger_disabled")
        await self.record("refused", "trigger_disabled: the webhook is disabled", 404)

    async def refuse(self, status: int, title: str, refusal: Refusal) -> Response[Any]:
        log.info("webhook delivery refused", trigger_id=str(self.hook.id), status=status, reason=refusal.code)
        await self.record("refused", f"{refusal.code}: {refusal.message}", status)
        return problem(status, title, refusal.message, code=refusal.code, request=self.request)

    async def _take_body(self) -> bool:
        """Reads the body and the delivery id; False when the body is larger than DW_MAX_BODY_BYTES
        (its size is then the one its Content-Length declares, if any)."""
        try:
            self.body = await self.request.body()
        except RequestEntityTooLarge:
            length = self.request.headers.get("content-length", "")
            self.body_bytes = int(length) if length.isdigit() and len(length) < 10 else None
            return False
        self.body_bytes = len(self.body)
        self.delivery_id = webhooks.delivery_id(self.config, self.request.headers, self.body)
        return True

    async def _read(self) -> Response[Any] | None:
        if await self._take_body():
            return None
        limit = self.svc.settings.max_body_bytes
        refusal = Refusal("body_too_large", f"the request body is larger than {limit} bytes (DW_MAX_BODY_BYTES)")
        return await self.refuse(413, "Request body too large", refusal)

    async def _authenticate(self) -> Response[Any] | None:
        if not self.config.signed:
            return None
        secret, why_not = self._secret()
        if secret is None:
            unverifiable = Refusal("signature_unverifiable", f"this server cannot verify the signature: {why_not}")
            return await self.refuse(503, "Service unavailable", unverifiable)
        # Checked before the signature: verify() reads the first copy, so a valid one followed by
        # anything at all was accepted, and which copy is the sender's nobody can tell.
        repeated = self._repeated(h for h in (self.config.timestamp_header, self.config.signature_header) if h)
        if repeated is not None:
            return await self.refuse(400, "Bad request", Refusal("repeated_header", repeated))
        now = time.time()
        refusal = webhooks.verify(self.config, secret, self.request.headers, self.body, now)
        if refusal is not None and refusal.code == "signature_invalid" and self.hook.previous_secret is not None:
            # Signed with the secret a rotation replaced, while it is still valid (POST .../secret).
            previous = self._decrypted(self.hook.previous_secret)
            if (
                previous is not None
                and webhooks.verify(self.config, previous, self.request.headers, self.body, now) is None
            ):
                return None
        if refusal is not None:
            return await self.refuse(401, "Unauthorized", refusal)
        return None

    async def _throttle(self) -> Response[Any] | None:
        # The trigger's own rate bucket, once the delivery is known to be the sender's (api.rate_limits).
        refused = await take_trigger_token(self.request, self.svc, self.hook.id)
        if refused is None:
            return None
        assert refused.retry_after is not None
        # A delivery row as for every other refusal (the README's "every delivery is a row").
        message = rate_limited_message(refused.retry_after, whose=HOOK_RATE)
        log.info("webhook delivery refused", trigger_id=str(self.hook.id), status=429, reason="rate_limited")
        await self.record("refused", f"rate_limited: {message}", 429)
        return rate_limited(self.request, refused.headers(), refused.retry_after, whose=HOOK_RATE)

    def _repeated(self, names: Iterable[str]) -> str | None:
        """Why a header the signature scheme reads is refused: given more than once, or None."""
        for name in names:
            if len(self.request.headers.getall(name, [])) > 1:
                return f"the {name} header is given more than once"
        return None

    def _secret(self) -> tuple[str | None, str]:
        if not self.svc.settings.credentials_key:
            return None, "DW_CREDENTIALS_KEY is not set"
        if self.hook.secret is None:
            return None, "the trigger has no stored secret"
        secret = self._decrypted(self.hook.secret)
        if secret is None:
            return None, "its secret cannot be decrypted with DW_CREDENTIALS_KEY"
        return secret, ""

    def _decrypted(self, stored: bytes) -> str | None:
        key = self.svc.settings.credentials_key
        try:
            return _cipher(key).decrypt(stored, f"trigger:{self.hook.id}") if key else None
        except DataWorkflowsError:
            return None

    async def _parse(self) -> Response[Any] | None:
        assert self.delivery_id is not None
        bad_id = webhooks.delivery_id_refusal(self.delivery_id)
        if bad_id is not None:
            return await self.refuse(400, "Bad request", bad_id)
        # Two of them (a proxy that added its own): which one is the sender's is anyone's guess, as
        # for two Authorization headers; the first one was taken.
        repeated = self._repeated(self.config.delivery_id_headers)
        if repeated is not None:
            return await self.refuse(400, "Bad request", Refusal("invalid_delivery_id", repeated))
        # The body sits one level down in the run's trigger.
        depth = self.svc.settings.max_trigger_depth - 1
        try:
            self.value = webhooks.parse_body(self.request.headers.get("content-type", ""), self.body, depth)
        except webhooks.BodyError as exc:
            return await self.refuse(400, "Bad request", Refusal("malformed_body", str(exc)))
        self.headers = webhooks.copied_headers(self.config, self.request.headers)
        try:
            self.query = webhooks.pairs_object(webhooks.query_fields(self.request.scope.get("query_string", b"")))
        except webhooks.BodyError as exc:
            return await self.refuse(400, "Bad request", Refusal("malformed_query", str(exc)))
        if has_nul([self.value, self.headers, self.query]):
            refusal = Refusal(
                "nul_character", "the body, a header or the query holds a NUL character, which is not stored"
            )
            return await self.refuse(400, "Bad request", refusal)
        return None

    async def _handshake(self) -> Response[Any] | None:
        """Slack's url_verification (when an Events API URL is registered): the challenge is answered,
        signed like any request; no run starts."""
        if self.config.signature != webhooks.SLACK or not isinstance(self.value, dict):
            return None
        if self.value.get("type") != "url_verification":
            return None
        await self.record("not_activated", "Slack url_verification: the challenge was answered", 200)
        return Response(
            HookChallenge(challenge=self.value.get("challenge")), status_code=200, media_type=MediaType.JSON
        )

    async def _activate(self) -> Response[Any] | None:
        expression = webhooks.activation_expression(self.hook.config)
        if expression is None:
            return None
        headers = webhooks.condition_headers(self.request.headers)
        scope = webhooks.condition_scope(self.value, headers, self.query)
        try:
            active = await self.svc.conditions.evaluate(expression, scope)
        except ConditionUnavailable as exc:
            return await self.refuse(503, "Service unavailable", Refusal(exc.code, exc.message))
        except ConditionError as exc:
            refusal = Refusal("activation_condition_error", f"the activation condition failed: {exc.message}")
            return await self.refuse(422, "Activation condition failed", refusal)
        if active:
            return None
        outcome = await self.record("not_activated", "the activation condition is false", 200)
        if outcome is None:
            raise NotFound(f"webhook {self.hook.id} not found (deleted)")
        return self.answer(outcome)

    async def _payload(self) -> dict[str, Any] | Response[Any]:
        assert self.delivery_id is not None
        fired = webhooks.fired_by(self.hook.id, self.hook.name, self.delivery_id, self.received_at)
        template = self.config.payload_template
        if template is None:
            return webhooks.payload(self.value, self.headers, self.query, fired)
        scope = webhooks.template_scope(self.value, self.headers, self.query)
        try:
            rendered = await self.svc.templates.render(template, scope)
        except TemplateUnavailable as exc:
            return await self.refuse(503, "Service unavailable", Refusal(exc.code, exc.message))
        except TemplateRenderError as exc:
            refusal = Refusal("payload_template_error", f"the payloadTemplate could not be rendered: {exc.message}")
            return await self.refuse(422, "Payload template failed", refusal)
        limit = self.svc.settings.max_trigger_depth
        if json_depth(rendered, limit) > limit:
            refusal = Refusal("payload_template_error", f"the rendered payload is nested deeper than {limit} levels")
            return await self.refuse(422, "Payload template failed", refusal)
        return webhooks.payload(self.value, self.headers, self.query, fired, rendered)

    async def _accept(self) -> Response[Any]:
        built = await self._payload()
        if isinstance(built, Response):
            return built
        assert self.delivery_id is not None and self.body_bytes is not None
        try:
            outcome = await self.svc.db.webhooks.accept(
                self.hook.id,
                delivery_id=self.delivery_id,
                content_hash=webhooks.content_hash(self.config, self.request.headers, self.body),
                payload=built,
                queue=self.svc.settings.queue,
                body_bytes=self.body_bytes,
                received_at=self.received_at,
                lapse_seconds=webhooks.lapse_seconds(self.config, self.request.headers),
            )
        except DataWorkflowsError as exc:
            # The trigger disabled meanwhile, its workflow gone or not runnable (a Draft, archived,
            # disabled): nothing started; the refusal is recorded, the usual problem answered.
            if not isinstance(exc, DatabaseUnavailable):
                await self.record("refused", f"{exc.code}: {exc.message}", _status_of(exc))
            raise
        return self.answer(outcome)

    def answer(self, outcome: DeliveryOutcome) -> Response[Any]:
        assert self.delivery_id is not None
        created = outcome.outcome == "accepted" and outcome.created
        execution_id = outcome.execution_id
        body = HookAnswer(
            delivery_id=self.delivery_id,
            activated=outcome.first_outcome == "accepted",
            duplicate=outcome.outcome == "duplicate" or (outcome.outcome == "accepted" and not outcome.created),
            execution_id=execution_id,
            status_url=None if execution_id is None else f"/api/v1/executions/{execution_id}",
            # An accepted delivery always has its run (one transaction): without one, it was removed.
            note=_RUN_REMOVED if outcome.first_outcome == "accepted" and execution_id is None else None,
        )
        return Response(body, status_code=202 if created else 200, media_type=MediaType.JSON)


_RUN_REMOVED = "the first delivery's run was removed (retention); nothing was started again"


def _fallback(config: HookConfig) -> str:
    """How a delivery without an id header is named (webhooks.delivery_id)."""
    if config.signature == webhooks.SLACK:
        # Slack signs each retry anew: its event id, else the body's hash (not the signed content's).
        return "slack: + the Events API's event_id; else sha256: + hex SHA-256 of the raw body"
    if config.signed:
        return "sha256: + hex SHA-256 of the signed content"
    return (
        f"sha256: + hex SHA-256 of the raw body; the same body again is a duplicate for"
        f" {config.duplicate_window_seconds} s (duplicateWindowSeconds), then a new delivery"
    )


def describe(hook: HookTrigger, max_body_bytes: int) -> HookInfo:
    config = webhooks.parse_config(hook.config)
    signature_header = config.signature_header
    required = [h for h in (config.timestamp_header, signature_header) if h is not None]
    return HookInfo(
        trigger_id=hook.id,
        name=hook.name,
        workflow_id=hook.workflow_id,
        method="POST",
        url=f"/api/v1/hooks/{hook.id}",
        signature=config.signature,
        required_headers=required,
        signature_header=signature_header,
        signed_content=_SIGNED_CONTENT.get(config.signature),
        signature_format=None
        if not config.signed
        else ("v0=" if config.signature == webhooks.SLACK else "sha256=")
        + "<hex HMAC-SHA256 of the signed content, keyed with the trigger's secret>",
        timestamp_header=config.timestamp_header,
        timestamp_tolerance_seconds=webhooks.TOLERANCE_SECONDS if config.timestamp_header else None,
        delivery_id_headers=list(config.delivery_id_headers),
        delivery_id_fallback=_fallback(config),
        copied_headers=list(config.headers),
        activation_condition=config.activation_condition is not None,
        payload_template=config.payload_template is not None,
        content_types=_CONTENT_TYPES,
        max_body_bytes=max_body_bytes,
    )


# The receiver answers a Response (its status depends on the outcome): its bodies are declared here.
ACCEPTED = ResponseSpec(
    data_container=HookAnswer, description="Accepted: the run is started (activated true)", generate_examples=False
)
ANSWERED = ResponseSpec(
    data_container=HookAnswer | HookChallenge,
    generate_examples=False,
    description="Nothing started: a duplicate delivery (duplicate true: the first delivery's run), a false "
    "activation condition (activated false), or Slack's url_verification (its challenge)",
)


class HooksController(Controller):
    path = "/hooks"
    tags = ["webhooks"]

    @post(
        "/{trigger_id:str}",
        status_code=202,
        responses={**PROBLEMS, 202: ACCEPTED, 200: ANSWERED},
        summary="Deliver a webhook: verifies its signature and starts the trigger's workflow (202), "
        "or answers a duplicate or a false activation condition (200)",
        opt={"role": "public", QUERY_IS_PAYLOAD: True},
    )
    async def deliver(
        self, svc: ServicesDep, request: Request[Any, Any, Any], trigger_id: FromPath[str]
    ) -> Response[Any]:
        hook = await require_hook(svc.db, trigger_id, disabled_too=True)
        with tenant_scope(hook.tenant_id):
            delivery = _Delivery(svc, request, hook, webhooks.parse_config(hook.config))
            if not hook.enabled:
                await delivery.record_disabled()
                raise NotFound(f"webhook {trigger_id} not found (or disabled)")
            return await delivery.run()

    @get(
        "/{trigger_id:str}",
        responses=PROBLEMS,
        summary="What the webhook expects (never its secret)",
        # A provider's URL query is its own (a key given twice included), as the delivery's is.
        opt={"role": "public", QUERY_IS_PAYLOAD: True},
    )
    async def expects(self, svc: ServicesDep, trigger_id: FromPath[str]) -> HookInfo:
        return describe(await require_hook(svc.db, trigger_id), svc.settings.max_body_bytes)

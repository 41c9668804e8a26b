"""/api/v1/workflows/{id}/triggers and /api/v1/triggers: schedules and webhooks that start runs.

A schedule's config is checked by dataworkflows.schedules, a webhook's by dataworkflows.webhooks
(its activation condition compiled in the condition sandbox). A signed webhook's secret is generated
unless given, stored encrypted with DW_CREDENTIALS_KEY (AES-256-GCM, bound to the trigger's id), and
answered once, in the creation answer."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from dataworkflows.credentials import Cipher
from dataworkflows.data.triggers import RECENT_RUNS, Trigger
from dataworkflows.db import Database
from dataworkflows.errors import Conflict, InvalidInput, InvalidTriggerConfig, NotFound
from dataworkflows.json_depth import json_depth
from dataworkflows.schedules import Schedule, ScheduleConfigError, next_tick
from dataworkflows.statuses import WebhookOutcome
from dataworkflows.validation import Problem, has_unprintable_character, is_valid_id

from .locations import LOCATION, created
from .openapi_docs import PROBLEMS
from .paging import (
    PAGE_LIMIT,
    PageCursor,
    PageLimit,
    bare_page,
    decode_instant_cursor,
    decode_names_cursor,
    decode_time_cursor,
    decode_time_serial_cursor,
    encode_instant_cursor,
    encode_scoped,
    encode_time_cursor,
    encode_time_serial_cursor,
    next_page_header,
)
from .params import require_one_of
from .schemas import DeliveryRead, SecretRotation, TickRead, TriggerPatch, TriggerRead, TriggerWrite, from_row
from .services import REQUIRES_PRINCIPAL, DatabaseDep, PrincipalDep, Services, ServicesDep
from .workflows import require_workflow

_CHANGE_TRIGGERS = {REQUIRES_PRINCIPAL: "change triggers"}
KINDS = ("schedule", "webhook", "event")
MIN_SECRET_LENGTH = 16
# HMAC takes any length, but a secret is typed or pasted into a sender's settings: past this it is a
# mistake (a file's content, a certificate), and the stored row would carry it (a review: no bound).
MAX_SECRET_LENGTH = 1024


def trigger_uuid(trigger_id: str) -> uuid.UUID:
    """The trigger id of a path; one that is not a UUID names no trigger (404)."""
    try:
        return uuid.UUID(trigger_id)
    except ValueError:
        raise NotFound(f"trigger {trigger_id!r} not found (not a UUID)") from None


async def require_trigger(db: Database, trigger_id: str) -> Trigger:
    found = await db.triggers.get(trigger_uuid(trigger_id))
    if found is None:
        raise NotFound(f"trigger {trigger_id} not found")
    return found


async def require_trigger_of_kind(db: Database, trigger_id: str, kind: str, what: str) -> Trigger:
    """The trigger, which must be of `kind` to have `what`. Another kind's is a 409, as rotating a
    schedule's secret is: the trigger exists (its GET answers), so a 404 would say it was gone."""
    found = await require_trigger(db, trigger_id)
    if found.kind != kind:
        raise Conflict(f"trigger {trigger_id} is a {found.kind}: only a {kind} has {what}")
    return found


def read(trigger: Trigger, *, secret: str | None = None, **listed: Any) -> TriggerRead:
    """The wire form; `listed`: what only the list shows (recent_runs, more_runs)."""
    hook_url = f"/api/v1/hooks/{trigger.id}" if trigger.kind == "webhook" else None
    until = trigger.previous_secret_until
    return from_row(
        TriggerRead,
        trigger,
        hook_url=hook_url,
        secret=secret,
        next_tick_at=_next_tick(trigger),
        previous_secret_until=until if until is not None and until > datetime.now(UTC) else None,
        **listed,
    )


def _next_tick(trigger: Trigger) -> datetime | None:
    """A schedule's next tick. Until a scheduler's pass has stored it (a new or changed schedule), the
    one that pass will find: the first after the schedule was created or changed (workers/scheduler.py).
    The creation answer and `triggers create` said "next -" for a schedule that would fire, and null
    otherwise means it never will (disabled, or failed)."""
    if trigger.next_tick_at is not None or trigger.kind != "schedule" or not trigger.enabled or trigger.error:
        return trigger.next_tick_at
    try:
        schedule = Schedule.from_config(trigger.config)
    except ScheduleConfigError:
        return None
    return next_tick(schedule.cron, schedule.zone, min(trigger.updated_at, datetime.now(UTC)))


async def check_config(svc: Services, kind: str, config: dict[str, Any]) -> None:
    """422 with every problem of the kind's config (pointers under /config)."""
    if kind == "schedule":
        from dataworkflows import schedules

        found = schedules.check_config(config)
        # The payload becomes the runs' trigger (beside firedBy): as deep as an execute's may be.
        limit = svc.settings.max_trigger_depth
        payload = config.get("payload")
        if isinstance(payload, dict) and json_depth(payload, limit) > limit:
            found.append(("/payload", "too_deep", f"nested deeper than {limit} levels (DW_MAX_TRIGGER_DEPTH)"))
    elif kind == "event":
        from dataworkflows import events

        found = events.check_config(config)
    else:
        from dataworkflows import webhooks

        # In a thread: compiling a payloadTemplate (up to templating.MAX_TEMPLATE_CHARS of it) may take
        # seconds, for which the event loop served nobody else (a review: 11 s for 600 kB of lookups).
        found = await asyncio.to_thread(webhooks.check_config, config)
        if not found:
            # The condition as the endpoint evaluates it (wrapped to see body, headers, query).
            found = await webhooks.check_condition(config, svc.conditions.check)
    if found:
        problems = [Problem(f"/config{pointer}", code, message) for pointer, code, message in found]
        raise InvalidTriggerConfig(problems, f"the {kind}'s config has {len(problems)} problem(s)")


def signed(config: dict[str, Any]) -> bool:
    return bool(config.get("signature", "hmac-sha256") != "none")


def new_secret(svc: Services, data: TriggerWrite, trigger_id: uuid.UUID) -> tuple[str | None, bytes | None]:
    """The webhook's secret in clear (to answer once) and encrypted (to store); none for a schedule
    or an unsigned webhook."""
    if data.kind != "webhook" or not signed(data.config):
        if data.secret is not None:
            raise InvalidInput("only a signed webhook has a secret")
        return None, None
    return _encrypted_secret(svc, data.secret, trigger_id)


def _encrypted_secret(svc: Services, given: str | None, trigger_id: uuid.UUID) -> tuple[str, bytes]:
    secret = given if given is not None else secrets.token_urlsafe(32)
    if not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH:
        raise InvalidInput(f"a webhook secret has {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} characters")
    if secret != secret.strip() or has_unprintable_character(secret):
        # Sixteen spaces passed as a secret (a review); a pasted one with its line end would sign
        # nothing the sender signs: both refused, rather than a hook whose every delivery fails.
        raise InvalidInput(
            "a webhook secret has no whitespace at either end and no control or invisible characters (as"
            " pasted with a line end, say)"
        )
    if not svc.settings.credentials_key:
        raise Conflict(
            "a signed webhook's secret is stored encrypted: set DW_CREDENTIALS_KEY (base64 of 32 random bytes; "
            '`dataworkflows up` makes one), or create the webhook unsigned ({"signature": "none"})'
        )
    cipher = Cipher.from_setting(svc.settings.credentials_key)
    return secret, cipher.encrypt(secret, f"trigger:{trigger_id}")


class WorkflowTriggerController(Controller):
    path = "/workflows/{workflow_id:str}/triggers"
    tags = ["triggers"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        response_headers=LOCATION,
        responses=PROBLEMS,
        summary="Add a schedule, a webhook or an event trigger to a workflow (a webhook's secret is answered once)",
        opt={**_CHANGE_TRIGGERS, "role": "author", "also": "operator", "owner": "workflow"},
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        svc: ServicesDep,
        principal: PrincipalDep,
        workflow_id: FromPath[str],
        data: JSONBody[TriggerWrite],
    ) -> Response[TriggerRead]:
        await require_workflow(svc.db, workflow_id)
        if data.kind not in KINDS:
            raise InvalidInput("kind must be schedule, webhook or event")
        if not is_valid_id(data.name):
            raise InvalidInput("a trigger name is 1-128 letters, digits, '.', '_' or '-'")
        await check_config(svc, data.kind, data.config)
        trigger_id = uuid.uuid4()
        secret, encrypted = new_secret(svc, data, trigger_id)
        stored = await svc.db.triggers.create(
            workflow_id=workflow_id,
            kind=data.kind,
            name=data.name,
            enabled=data.enabled,
            config=data.config,
            principal=principal.id,
            trigger_id=trigger_id,
            secret=encrypted,
            priority=data.priority,
            most_event_triggers=svc.settings.max_event_triggers,
        )
        return created(request, read(stored, secret=secret), "triggers", str(trigger_id))

    @get(
        "/",
        responses=PROBLEMS,
        summary="A workflow's triggers (of a kind), oldest first",
        response_headers=next_page_header("/api/v1/workflows/{workflow_id}/triggers?kind=K&cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def list_for_workflow(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        workflow_id: FromPath[str],
        kind: Annotated[str | None, QueryParameter(name="kind", required=False, enum=list(KINDS))] = None,
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[TriggerRead]]:
        # The kind filter as on GET /triggers (it was taken and ignored here, even an unknown kind).
        require_one_of("kind", kind, KINDS)
        scope = ("workflow-triggers", workflow_id, kind)
        after = decode_time_cursor(cursor, scope=scope)
        await require_workflow(db, workflow_id)
        rows = await db.triggers.for_workflow(workflow_id, kind=kind, limit=limit + 1, after=after)
        return bare_page(
            request, rows, limit, read, lambda last: encode_time_cursor(last.created_at, last.id, scope=scope)
        )


class TriggerController(Controller):
    path = "/triggers"
    tags = ["triggers"]

    @get(
        "/",
        responses=PROBLEMS,
        summary="Every trigger (of a kind), by workflow, kind and name",
        response_headers=next_page_header("/api/v1/triggers?kind=K&cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def list_triggers(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        kind: Annotated[str | None, QueryParameter(name="kind", required=False, enum=list(KINDS))] = None,
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[TriggerRead]]:
        require_one_of("kind", kind, KINDS)
        scope = ("triggers", kind)
        rows = await db.triggers.everything(
            kind=kind, limit=limit + 1, after=decode_names_cursor(cursor, 3, scope=scope)
        )

        def with_runs(trigger: Trigger) -> TriggerRead:
            runs = trigger.recent_runs or []
            return read(trigger, recent_runs=runs[:RECENT_RUNS], more_runs=len(runs) > RECENT_RUNS)

        return bare_page(
            request, rows, limit, with_runs, lambda last: encode_scoped(scope, [last.workflow_id, last.kind, last.name])
        )

    @get("/{trigger_id:str}", responses=PROBLEMS, summary="One trigger (never its secret)", opt={"role": "viewer"})
    async def get_trigger(self, db: DatabaseDep, trigger_id: FromPath[str]) -> TriggerRead:
        return read(await require_trigger(db, trigger_id))

    @get(
        "/{trigger_id:str}/deliveries",
        responses=PROBLEMS,
        summary="A webhook's deliveries (of an outcome), newest first; a schedule's id is a 409",
        response_headers=next_page_header("/api/v1/triggers/{trigger_id}/deliveries?outcome=O&cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def list_deliveries(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        trigger_id: FromPath[str],
        outcome: Annotated[
            str | None, QueryParameter(name="outcome", required=False, enum=list(WebhookOutcome))
        ] = None,
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[DeliveryRead]]:
        """Every delivery to the hook that is still kept (DW_WEBHOOK_RETENTION_DAYS), accepted or not,
        with what the hook answered; never the body (an id-less delivery's id is its content hash, which
        its sender was answered with; dw.v_webhook_deliveries hides it from the reporting role)."""
        require_one_of("outcome", outcome, WebhookOutcome)
        scope = ("trigger-deliveries", trigger_id, outcome)
        before = decode_time_serial_cursor(cursor, scope=scope)
        hook = await require_trigger_of_kind(db, trigger_id, "webhook", "deliveries")
        rows = await db.webhooks.deliveries(hook.id, limit=limit + 1, outcome=outcome, before=before)
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(DeliveryRead, row),
            lambda last: encode_time_serial_cursor(last.received_at, last.id, scope=scope),
        )

    @get(
        "/{trigger_id:str}/ticks",
        responses=PROBLEMS,
        summary="A schedule's fired ticks, newest first; a webhook's id is a 409",
        response_headers=next_page_header("/api/v1/triggers/{trigger_id}/ticks?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def list_ticks(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        trigger_id: FromPath[str],
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[TickRead]]:
        """The ticks still kept (DW_SCHEDULE_TICK_RETENTION_DAYS; each schedule's newest always), each
        with the run it started and the missed ticks it stands for."""
        scope = ("trigger-ticks", trigger_id)
        before = decode_instant_cursor(cursor, scope=scope)
        schedule = await require_trigger_of_kind(db, trigger_id, "schedule", "ticks")
        rows = await db.schedules.ticks(schedule.id, limit=limit + 1, before=before)
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(TickRead, row),
            lambda last: encode_instant_cursor(last.tick_at, scope=scope),
        )

    @patch(
        "/{trigger_id:str}",
        responses=PROBLEMS,
        summary="Enable, disable, rename or reconfigure",
        opt={**_CHANGE_TRIGGERS, "role": "author", "also": "operator", "owner": "trigger"},
    )
    async def change(self, svc: ServicesDep, trigger_id: FromPath[str], data: JSONBody[TriggerPatch]) -> TriggerRead:
        current = await require_trigger(svc.db, trigger_id)
        if data.name is not None and not is_valid_id(data.name):
            raise InvalidInput("a trigger name is 1-128 letters, digits, '.', '_' or '-'")
        if data.config is not None:
            await check_config(svc, current.kind, data.config)
            if current.kind == "webhook" and signed(data.config) != current.has_secret:
                raise InvalidInput("a webhook cannot change between signed and unsigned; create a new trigger instead")
        priority = None if data.priority is msgspec.UNSET else data.priority
        changed = await svc.db.triggers.update(
            current.id,
            name=data.name,
            enabled=data.enabled,
            config=data.config,
            priority=priority,
            clear_priority=data.priority is None,
            most_event_triggers=svc.settings.max_event_triggers,
        )
        if changed is None:
            raise NotFound(f"trigger {trigger_id} not found")
        return read(changed)

    @post(
        "/{trigger_id:str}/secret",
        status_code=200,
        responses=PROBLEMS,
        summary="Rotate a signed webhook's secret (answered once); the old one may stay valid a while",
        # Whoever holds the new secret can sign deliveries, and so run the workflow: author and
        # operator, as creating or changing a trigger (it asked author only: an author could start
        # runs credited to the trigger's creator).
        opt={**_CHANGE_TRIGGERS, "role": "author", "also": "operator", "owner": "trigger"},
    )
    async def rotate_secret(
        self, svc: ServicesDep, trigger_id: FromPath[str], data: JSONBody[SecretRotation | None] = None
    ) -> TriggerRead:
        """The hook URL stays: senders switch to the new secret, and until `previousValidSeconds` have
        passed the old one still verifies (until this release a leaked secret meant a new trigger
        under a new URL)."""
        rotation = data or SecretRotation()
        current = await require_trigger(svc.db, trigger_id)
        if current.kind != "webhook" or not current.has_secret:
            raise Conflict("only a signed webhook has a secret to rotate")
        secret, encrypted = _encrypted_secret(svc, rotation.secret, current.id)
        rotated = await svc.db.triggers.rotate_secret(
            current.id, secret=encrypted, keep_seconds=rotation.previous_valid_seconds
        )
        if rotated is None:
            raise NotFound(f"trigger {trigger_id} not found")
        return read(rotated, secret=secret)

    @delete(
        "/{trigger_id:str}",
        status_code=204,
        responses=PROBLEMS,
        summary="Remove a trigger",
        opt={**_CHANGE_TRIGGERS, "role": "author", "owner": "trigger"},
    )
    async def remove(self, db: DatabaseDep, trigger_id: FromPath[str]) -> None:
        if not await db.triggers.delete(trigger_uuid(trigger_id)):
            raise NotFound(f"trigger {trigger_id} not found")

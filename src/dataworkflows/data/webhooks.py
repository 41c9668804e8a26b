"""Webhook deliveries: each one a row with its outcome; an accepted one starts its run in the same
transaction (sql/procedures/webhooks.sql)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from dataworkflows.db import Database


class HookTrigger(msgspec.Struct, frozen=True):
    """A webhook trigger as its endpoint reads it."""

    id: UUID
    tenant_id: str
    workflow_id: str
    name: str
    enabled: bool
    config: dict[str, Any]
    # AES-256-GCM ciphertext (dataworkflows.credentials.Cipher, associated data 'trigger:<id>');
    # None for an unsigned trigger.
    secret: bytes | None
    # The secret a rotation replaced, while it is still valid (the same cipher and associated data).
    previous_secret: bytes | None = None


class DeliveryOutcome(msgspec.Struct, frozen=True):
    # accepted | duplicate | not_activated | refused
    outcome: str
    # The run this delivery started, or the first delivery's run for a duplicate.
    execution_id: UUID | None
    # A duplicate: what the first delivery of this id was (accepted or not_activated).
    first_outcome: str | None
    # Whether a run started now.
    created: bool


class Delivery(msgspec.Struct, frozen=True):
    id: int
    trigger_id: UUID
    delivery_id: str | None
    received_at: datetime
    outcome: str
    reason: str | None
    status_code: int
    execution_id: UUID | None
    body_bytes: int | None
    # An unsigned hook's claim of a body's id that its duplicate window let lapse (migration 0046).
    lapsed_at: datetime | None = None


class WebhookData:
    """What the webhook endpoint reads and writes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def trigger(self, trigger_id: UUID) -> HookTrigger | None:
        """The webhook trigger with this id (None for another kind), enabled or not."""
        return await self._db.fetch_one_as(HookTrigger, "hook_trigger", id=trigger_id)

    async def accept(
        self,
        trigger_id: UUID,
        *,
        delivery_id: str,
        content_hash: str | None,
        payload: dict[str, Any],
        queue: str,
        body_bytes: int,
        received_at: datetime,
        lapse_seconds: int | None = None,
    ) -> DeliveryOutcome:
        """Claims the delivery id and starts the run, or answers the first delivery of that id (a
        claim older than lapse_seconds, when given, lapses: webhooks.lapse_seconds).
        NotFound when the trigger is gone or disabled; WorkflowNotFound/WorkflowNotRunnable when
        its workflow cannot start (nothing is written then)."""
        row = await self._db.fetch_one_as(
            DeliveryOutcome,
            "accept_webhook_delivery",
            trigger_id=trigger_id,
            delivery_id=delivery_id,
            content_hash=content_hash,
            payload=Jsonb(payload),
            queue=queue,
            body_bytes=body_bytes,
            received_at=received_at,
            lapse_seconds=lapse_seconds,
        )
        assert row is not None
        return row

    async def record(
        self,
        trigger_id: UUID,
        *,
        delivery_id: str | None,
        content_hash: str | None,
        outcome: str,
        reason: str | None,
        status_code: int,
        body_bytes: int | None,
        received_at: datetime,
        lapse_seconds: int | None = None,
    ) -> DeliveryOutcome | None:
        """A refused or not_activated delivery's row (None when the trigger was deleted meanwhile).
        A not_activated one claims its delivery id: a replay answers 'duplicate'."""
        return await self._db.fetch_one_as(
            DeliveryOutcome,
            "record_webhook_delivery",
            trigger_id=trigger_id,
            delivery_id=delivery_id,
            content_hash=content_hash,
            outcome=outcome,
            reason=None if reason is None else reason[:1000],
            status_code=status_code,
            body_bytes=body_bytes,
            received_at=received_at,
            lapse_seconds=lapse_seconds,
        )

    async def prune(self, *, keep_seconds: float, limit: int = 10_000) -> int:
        """Deletes up to `limit` deliveries received more than `keep_seconds` ago; returns how many."""
        row = await self._db.fetch_one("prune_webhook_deliveries", keep_seconds=keep_seconds, limit=limit)
        return 0 if row is None else int(row["deleted"])

    async def deliveries(
        self,
        trigger_id: UUID,
        *,
        limit: int = 100,
        outcome: str | None = None,
        before: tuple[datetime, int] | None = None,
    ) -> list[Delivery]:
        """A trigger's deliveries (of an outcome), newest first; `before`: the (received_at, id) of
        the last delivery of the page before."""
        before_at, before_id = before if before is not None else (None, None)
        return await self._db.fetch_all_as(
            Delivery,
            "list_webhook_deliveries",
            trigger_id=trigger_id,
            limit=limit,
            outcome=outcome,
            before_at=before_at,
            before_id=before_id,
        )
